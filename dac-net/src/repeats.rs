//! The budget of repeated frames a member may send: a flood of valid but
//! redundant frames is misbehaviour, however well formed each one is.

use dac_core::engine::Kind;

use crate::wire::Frame;

/// Repeated frames (a round, or a message, already seen in the same
/// reduction, or a frame of a reduction older than the previous one) a
/// member may send in one reduction, at once and per second after that.
/// An honest member repeats a frame only when its retransmission timer
/// fires (after half a second of waiting, then less and less often); a
/// member beyond the budget floods, and is cut off.
pub(crate) const REPEAT_BURST: f64 = 16.0;
pub(crate) const REPEAT_RATE: f64 = 8.0;

/// The repeated frames one member has sent in its latest reduction: a
/// token bucket of [`REPEAT_BURST`], refilled at [`REPEAT_RATE`] a second,
/// and what it has sent in that reduction.
#[derive(Debug)]
pub(crate) struct Repeats {
    /// The latest reduction the member sent a frame of.
    op: u64,
    /// The latest round message's round in that reduction.
    round: Option<u32>,
    /// Other messages seen in that reduction (kind, round, flags and view:
    /// the hellos of one handshake differ in their flags, the news of two
    /// departures in its view).
    seen: Vec<(Kind, u32, u8, u64)>,
    tokens: f64,
    at: tokio::time::Instant,
}

/// Other messages remembered per reduction; beyond that every one counts
/// as a repeat (an honest member sends a handful).
const MAX_SEEN: usize = 64;

impl Repeats {
    pub(crate) fn new() -> Repeats {
        Repeats {
            op: 0,
            round: None,
            seen: Vec::new(),
            tokens: REPEAT_BURST,
            at: tokio::time::Instant::now(),
        }
    }

    /// Notes `frame`; false when it is a repeat beyond the budget.
    pub(crate) fn admit(&mut self, frame: &Frame, now: tokio::time::Instant) -> bool {
        if frame.op > self.op {
            // A new reduction: a new budget.
            self.op = frame.op;
            self.round = None;
            self.seen.clear();
            self.tokens = REPEAT_BURST;
        } else {
            let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
            self.tokens = (self.tokens + REPEAT_RATE * elapsed).min(REPEAT_BURST);
        }
        self.at = now;
        let h = &frame.message.header;
        let repeat = if frame.op + 1 < self.op {
            true
        } else if frame.op + 1 == self.op {
            // A late answer about the previous reduction (a deferred
            // result, a resend it asked for): not a repeat of this one.
            false
        } else if h.kind == Kind::Round {
            match self.round {
                Some(r) if h.round <= r => true,
                _ => {
                    self.round = Some(h.round);
                    false
                }
            }
        } else {
            let key = (h.kind, h.round, h.flags, h.view.0);
            if self.seen.contains(&key) || self.seen.len() >= MAX_SEEN {
                true
            } else {
                self.seen.push(key);
                false
            }
        };
        if !repeat {
            return true;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dac_core::engine::{Header, OwnedMessage};
    use tokio::time::{Duration, Instant};

    fn frame(op: u64, kind: Kind, round: u32, flags: u8) -> Frame {
        let mut header = Header {
            kind,
            round,
            view: Default::default(),
            degree: 1,
            counter: 0,
            flags: 0,
            proposal: 0,
            streak: 0.0,
            epoch: 0.0,
        };
        header.flags = flags;
        Frame {
            op,
            shape: 0,
            message: OwnedMessage {
                header,
                events: Vec::new(),
                payload: Vec::new(),
                abort: None,
            },
        }
    }

    /// What honest members send, many reductions a second: rounds in
    /// order, a handshake's hellos (one start, other flags), a late answer
    /// about the previous reduction, a resend now and then.
    #[test]
    fn honest_traffic_fits_however_fast_the_reductions() {
        let mut budget = Repeats::new();
        let start = Instant::now();
        for op in 1..=2000u64 {
            // 2000 reductions in a second.
            let now = start + Duration::from_micros(500 * op);
            for round in 0..5 {
                assert!(budget.admit(&frame(op, Kind::Round, round, 0), now));
            }
            for flags in [0, 2, 6] {
                assert!(budget.admit(&frame(op, Kind::Hello, 3, flags), now));
            }
            assert!(budget.admit(&frame(op - 1, Kind::Done, 5, 0), now));
            // A retransmission.
            assert!(budget.admit(&frame(op, Kind::Round, 4, 0), now));
        }
    }

    /// The same frame again and again: cut off after the burst.
    #[test]
    fn a_flood_in_one_reduction_is_refused_after_the_burst() {
        let mut budget = Repeats::new();
        let now = Instant::now();
        let copy = frame(7, Kind::Round, 0, 0);
        assert!(budget.admit(&copy, now));
        let admitted = (0..1000).take_while(|_| budget.admit(&copy, now)).count();
        assert_eq!(admitted, REPEAT_BURST as usize);
        // Hellos of the same handshake step, and frames of long-gone
        // reductions, count the same way.
        let mut budget = Repeats::new();
        let hello = frame(3, Kind::Hello, 2, 2);
        assert!(budget.admit(&hello, now));
        assert_eq!(
            (0..1000).take_while(|_| budget.admit(&hello, now)).count(),
            16
        );
        let mut budget = Repeats::new();
        assert!(budget.admit(&frame(10, Kind::Round, 0, 0), now));
        let old = frame(3, Kind::Round, 0, 0);
        assert_eq!(
            (0..1000).take_while(|_| budget.admit(&old, now)).count(),
            16
        );
    }

    /// Repeats spread over time are allowed at the refill rate.
    #[test]
    fn slow_repeats_are_refilled() {
        let mut budget = Repeats::new();
        let start = Instant::now();
        let copy = frame(1, Kind::Round, 0, 0);
        assert!(budget.admit(&copy, start));
        for k in 1..=1000u64 {
            // Four a second: half the refill rate.
            let now = start + Duration::from_millis(250 * k);
            assert!(budget.admit(&copy, now), "repeat {k}");
        }
    }
}
