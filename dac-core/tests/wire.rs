//! The wire types survive a serde round trip (feature `serde`).
#![cfg(feature = "serde")]

use dac_core::engine::{AbortReason, Event, Header, Kind, OwnedMessage, ViewId};

#[test]
fn messages_round_trip_through_serde() {
    let header = Header {
        kind: Kind::Round,
        round: 7,
        view: ViewId(0xDEAD_BEEF),
        degree: 4,
        counter: 2,
        flags: 1,
        proposal: 19,
        streak: 3.5e-10,
        epoch: 1e-3,
    };
    let messages = [
        OwnedMessage {
            header,
            events: vec![
                Event::Departed { member: 3 },
                Event::InputChanged { member: 1, seq: 2 },
            ],
            payload: vec![1.5, -2.25, 1.0],
            abort: None,
        },
        OwnedMessage {
            header: Header {
                kind: Kind::Abort,
                ..header
            },
            events: Vec::new(),
            payload: Vec::new(),
            abort: Some(AbortReason::DimensionMismatch {
                rank: 2,
                expected: 3,
                found: 4,
            }),
        },
    ];
    for message in messages {
        let text = serde_json::to_string(&message).unwrap();
        let back: OwnedMessage = serde_json::from_str(&text).unwrap();
        assert_eq!(back, message);
    }
}
