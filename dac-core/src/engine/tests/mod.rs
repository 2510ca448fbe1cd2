//! Message-level tests of one engine, driven by hand.

use super::*;
use crate::graph::Graph;

/// Engines on `graph`, each with input `[i, 2i]`.
fn engines(graph: &Graph, config: &Config) -> Vec<Engine> {
    engines_with(graph, config, |i| vec![i as f64, 2.0 * i as f64])
}

/// Engines on `graph`, member `i` with input `input(i)`.
pub(super) fn engines_with(
    graph: &Graph,
    config: &Config,
    input: impl Fn(usize) -> Vec<f64>,
) -> Vec<Engine> {
    let d = graph.diameter().unwrap();
    (0..graph.len())
        .map(|i| {
            let peers: Vec<usize> = graph.neighbors(i).collect();
            let setup = MemberSetup {
                id: i,
                members: graph.len(),
                peers: &peers,
                diameter_bound: d,
            };
            Engine::new(config, setup, &input(i)).unwrap()
        })
        .collect()
}

/// Everything `e` hands out now, expanded to (to, message).
pub(super) fn outgoing(e: &mut Engine) -> Vec<(usize, OwnedMessage)> {
    let peers: Vec<usize> = e.peers().collect();
    let mut out = Vec::new();
    e.poll_outgoing(|target, m| match target {
        Target::Peers => out.extend(peers.iter().map(|&p| (p, m.to_owned()))),
        Target::Peer(p) => out.push((p, m.to_owned())),
    });
    out
}

/// Runs to the end with a delivery policy applied to every tick's
/// messages; returns each member's result.
fn run(
    mut nodes: Vec<Engine>,
    mut policy: impl FnMut(&mut Vec<(usize, usize, OwnedMessage)>),
) -> Vec<Reduction> {
    for _ in 0..10_000 {
        let mut wire = Vec::new();
        for (i, e) in nodes.iter_mut().enumerate() {
            e.tick();
            wire.extend(outgoing(e).into_iter().map(|(to, m)| (i, to, m)));
        }
        policy(&mut wire);
        for (from, to, m) in &wire {
            nodes[*to].receive(*from, &m.as_message()).unwrap();
        }
        for e in &mut nodes {
            e.advance();
        }
        if nodes.iter().all(|e| e.phase() != Phase::Running) {
            return nodes
                .iter_mut()
                .map(|e| e.take_outcome().unwrap().unwrap())
                .collect();
        }
    }
    panic!("did not finish");
}

pub(super) fn metropolis() -> Config {
    Config {
        schedule: Schedule::Metropolis,
        tol: 1e-10,
        ..Config::default()
    }
}

/// Duplicated and reordered messages are idempotent: every member ends with
/// bit-for-bit the value of the plain run.
#[test]
fn duplicates_and_reordering_change_nothing() {
    let graph = Graph::random_regular(12, 3, 4).unwrap();
    let plain = run(engines(&graph, &metropolis()), |_| {});
    let shuffled = run(engines(&graph, &metropolis()), |wire| {
        let copies: Vec<_> = wire.iter().map(|(f, t, m)| (*f, *t, m.clone())).collect();
        wire.extend(copies);
        wire.reverse();
    });
    assert_eq!(plain, shuffled);
    let mean = [5.5, 11.0];
    for r in &plain {
        let v = &r.value;
        assert!((v[0] - mean[0]).abs() < 1e-9 && (v[1] - mean[1]).abs() < 1e-9);
    }
}

/// Lost messages are recovered by retransmission: the logical run is the
/// same (every member completes the same rounds), and every value is within
/// the tolerance (a member may adopt a neighbour's certified result instead
/// of completing the last round itself).
#[test]
fn lost_messages_are_recovered() {
    let graph = Graph::ring(6).unwrap();
    let plain = run(engines(&graph, &metropolis()), |_| {});
    let mut tick = 0;
    let lossy = run(engines(&graph, &metropolis()), |wire| {
        tick += 1;
        // Drop everything member 2 says on even ticks, and everything sent
        // to member 4 on every third tick.
        wire.retain(|(from, to, _)| !(tick % 2 == 0 && *from == 2 || tick % 3 == 0 && *to == 4));
    });
    for (p, l) in plain.iter().zip(&lossy) {
        assert_eq!(p.rounds, l.rounds);
        assert_eq!(p.contributors, l.contributors);
        for (a, b) in p.value.iter().zip(&l.value) {
            assert!((a - b).abs() <= 2e-10 * a.abs().max(1.0), "{a} vs {b}");
        }
    }
}

#[test]
fn a_stale_round_message_is_answered_with_the_missed_round() {
    let graph = Graph::ring(3).unwrap();
    let mut nodes = engines(&graph, &metropolis());
    let wire: Vec<_> = (0..3)
        .flat_map(|i| {
            outgoing(&mut nodes[i])
                .into_iter()
                .map(move |(to, m)| (i, to, m))
        })
        .collect();
    // Everyone gets round 0 except member 2, which misses member 0's message.
    for (from, to, m) in &wire {
        if !(*from == 0 && *to == 2) {
            nodes[*to].receive(*from, &m.as_message()).unwrap();
        }
    }
    assert_eq!(nodes[0].advance(), Progress::Advanced);
    assert_eq!(nodes[2].advance(), Progress::Blocked);
    assert_eq!(nodes[2].waiting_for(), vec![0]);
    // Node 2 retransmits its round-0 message; member 0, now in round 1,
    // answers with its round-0 message.
    let from_two = wire.iter().find(|(f, t, _)| *f == 2 && *t == 0).unwrap();
    nodes[0].receive(2, &from_two.2.as_message()).unwrap();
    let replies = outgoing(&mut nodes[0]);
    let resend = replies
        .iter()
        .find(|(to, m)| *to == 2 && m.header.round == 0)
        .expect("round 0 resent to member 2");
    nodes[2].receive(0, &resend.1.as_message()).unwrap();
    assert_eq!(nodes[2].advance(), Progress::Advanced);
    assert_eq!(nodes[2].round(), 1);
}

#[test]
fn malformed_messages_are_rejected_and_change_nothing() {
    let graph = Graph::ring(3).unwrap();
    let mut nodes = engines(&graph, &metropolis());
    let good = outgoing(&mut nodes[1])
        .into_iter()
        .find(|(to, _)| *to == 0)
        .unwrap()
        .1;
    let before = (nodes[0].mass().to_vec(), nodes[0].round(), nodes[0].view());
    let mut padded_hello = good.clone();
    padded_hello.header.kind = Kind::Hello;
    let mut nan = good.clone();
    nan.payload[0] = f64::NAN;
    let mut bad_event = good.clone();
    bad_event.events.push(Event::Departed { member: 99 });
    let mut no_reason = good.clone();
    no_reason.header.kind = Kind::Abort;
    let cases: [(usize, OwnedMessage); 5] = [
        (1, padded_hello),
        (1, nan),
        (1, bad_event),
        (1, no_reason),
        (7, good.clone()),
    ];
    for (from, m) in cases {
        assert!(nodes[0].receive(from, &m.as_message()).is_err());
        assert_eq!(
            (nodes[0].mass().to_vec(), nodes[0].round(), nodes[0].view()),
            before
        );
    }
    // Another dimension is no violation: the engine fails the reduction
    // for everyone, and says why.
    for (kind, extra) in [(Kind::Round, 1), (Kind::Done, 0)] {
        let mut nodes = engines(&graph, &metropolis());
        let mut longer = good.clone();
        longer.header.kind = kind;
        longer.payload = vec![1.0; 3 + extra];
        assert_eq!(nodes[0].receive(1, &longer.as_message()), Ok(()));
        let reason = AbortReason::DimensionMismatch {
            rank: 0,
            expected: 3,
            found: 2,
        };
        assert_eq!(nodes[0].status().phase, Phase::Failed);
        assert_eq!(nodes[0].take_outcome(), Some(Err(reason.into())));
        let told: Vec<_> = outgoing(&mut nodes[0])
            .into_iter()
            .filter(|(_, m)| m.header.kind == Kind::Abort)
            .map(|(to, m)| (to, m.abort))
            .collect();
        assert_eq!(told, vec![(1, Some(reason)), (2, Some(reason))], "{kind:?}");
        // Finished, it answers without complaint.
        assert!(nodes[0].receive(1, &good.as_message()).is_ok());
    }
}

/// A round is only completed after its own message went out, so a host
/// that loops on `advance` cannot skip a round its peers need.
#[test]
fn advance_waits_for_the_round_message_to_go_out() {
    let graph = Graph::ring(3).unwrap();
    let mut nodes = engines(&graph, &metropolis());
    let from_others: Vec<_> = [1, 2]
        .into_iter()
        .flat_map(|i| {
            outgoing(&mut nodes[i])
                .into_iter()
                .map(move |(to, m)| (i, to, m))
        })
        .filter(|(_, to, _)| *to == 0)
        .collect();
    for (from, _, m) in &from_others {
        nodes[0].receive(*from, &m.as_message()).unwrap();
    }
    assert_eq!(nodes[0].advance(), Progress::Blocked);
    assert_eq!(outgoing(&mut nodes[0]).len(), 2);
    assert_eq!(nodes[0].advance(), Progress::Advanced);
}

#[test]
fn a_finished_neighbours_result_is_adopted() {
    let graph = Graph::ring(3).unwrap();
    let mut nodes = engines(&graph, &metropolis());
    let events = vec![
        Event::Departed { member: 2 },
        Event::InputChanged { member: 1, seq: 3 },
    ];
    // Member 0 has been through the view the result was reached in.
    let news = OwnedMessage {
        header: Header::new(Kind::Events, 0),
        events: events.clone(),
        payload: Vec::new(),
        abort: None,
    };
    nodes[0].receive(1, &news.as_message()).unwrap();
    // A value within the convergence tolerance of member 0's estimate.
    let value: Vec<f64> = nodes[0].estimate().iter().map(|e| e + 1e-11).collect();
    let mut header = Header::new(Kind::Done, 42);
    header.streak = 1e-11;
    let done = OwnedMessage {
        header,
        events,
        payload: value.clone(),
        abort: None,
    };
    nodes[0].receive(1, &done.as_message()).unwrap();
    assert_eq!(nodes[0].advance(), Progress::Finished);
    let r = nodes[0].take_outcome().unwrap().unwrap();
    assert_eq!(r.value, value);
    assert_eq!(r.rounds, 42);
    assert_eq!(r.contributors.to_vec(), vec![0, 1]);
    assert_eq!(r.contributors.input_version(1), Some(3));
    assert!(nodes[0].take_misbehaviour().is_empty());
    // It now answers with that result (and fences 2, which it dropped).
    let out = outgoing(&mut nodes[0]);
    assert!(out.iter().any(|(_, m)| m.header.kind == Kind::Done));
    assert!(
        out.iter()
            .all(|(to, m)| m.header.kind == Kind::Done
                || (*to == 2 && m.header.kind == Kind::Events))
    );
}

/// A result that contradicts what the receiver knows is refused, reported
/// and leaves its state unchanged: a value far outside the tolerance of
/// its own estimate, a departure it does not know of, an input change it
/// does not know of.
#[test]
fn a_result_that_contradicts_the_receiver_is_refused() {
    let graph = Graph::ring(3).unwrap();
    let mut nodes = engines(&graph, &metropolis());
    let done = |events: Vec<Event>, payload: Vec<f64>| OwnedMessage {
        header: Header::new(Kind::Done, 40),
        events,
        payload,
        abort: None,
    };
    let near: Vec<f64> = nodes[0].estimate();
    let cases = [
        (
            done(Vec::new(), vec![12345.0, 0.0]),
            Contradiction::ResultValue,
        ),
        (
            done(vec![Event::Departed { member: 2 }], near.clone()),
            Contradiction::ResultMembers,
        ),
        (
            done(vec![Event::InputChanged { member: 1, seq: 1 }], near),
            Contradiction::ResultMembers,
        ),
    ];
    for (message, what) in cases {
        let before = state_bits(&nodes[0]);
        assert_eq!(
            nodes[0].receive(1, &message.as_message()),
            Err(Violation::Contradicts {
                peer: 1,
                kind: Kind::Done,
                what
            })
        );
        assert_eq!(state_bits(&nodes[0]), before);
        assert_eq!(nodes[0].phase(), Phase::Running);
    }
}

/// In the exact phase no result is adopted: it is kept, and checked when
/// the member holds the exact mean itself. A result of another shape is
/// refused at once, and so is one that came before this member's input
/// could have reached its sender.
#[test]
fn the_exact_phase_checks_a_result_against_its_own_mean() {
    let graph = Graph::complete(4).unwrap();
    let config = Config::default();
    assert_eq!(config.schedule, Schedule::Exact);
    let mut nodes = engines(&graph, &config);
    let done = |round: u32, value: f64| OwnedMessage {
        header: Header::new(Kind::Done, round),
        events: Vec::new(),
        payload: vec![value, 2.0 * value],
        abort: None,
    };
    // The exact mean of [i, 2i] over 0..4 is [1.5, 3].
    assert_eq!(
        nodes[0].receive(3, &done(1, 1.5).as_message()),
        Err(Violation::Contradicts {
            peer: 3,
            kind: Kind::Done,
            what: Contradiction::ResultShape
        })
    );
    // Before 0 sent anything, nobody can hold the mean of its input.
    let premature = |peer| {
        Err(Violation::Contradicts {
            peer,
            kind: Kind::Done,
            what: Contradiction::Premature,
        })
    };
    assert_eq!(
        nodes[0].receive(3, &done(2, 1.5).as_message()),
        premature(3)
    );
    // Its round-0 message (to 1) carries its input to 1 and 3; that of
    // round 1 (to 2) to 2.
    let first = outgoing(&mut nodes[0]);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, 1);
    nodes[1].receive(0, &first[0].1.as_message()).unwrap();
    assert_eq!(
        nodes[0].receive(2, &done(2, 1.5).as_message()),
        premature(2)
    );
    nodes[0].receive(3, &done(2, 12345.0).as_message()).unwrap();
    nodes[0].receive(1, &done(2, 1.5).as_message()).unwrap();
    assert_eq!(nodes[0].phase(), Phase::Running);
    let mut reports = Vec::new();
    while nodes.iter().any(|e| e.phase() == Phase::Running) {
        let mut wire = Vec::new();
        for (i, e) in nodes.iter_mut().enumerate() {
            wire.extend(outgoing(e).into_iter().map(|(to, m)| (i, to, m)));
        }
        for (from, to, m) in &wire {
            nodes[*to].receive(*from, &m.as_message()).unwrap();
        }
        for (i, e) in nodes.iter_mut().enumerate() {
            e.advance();
            reports.extend(e.take_misbehaviour().into_iter().map(|v| (i, v)));
        }
    }
    for e in &mut nodes {
        assert_eq!(e.take_outcome().unwrap().unwrap().value, vec![1.5, 3.0]);
    }
    let lie = Violation::Contradicts {
        peer: 3,
        kind: Kind::Done,
        what: Contradiction::ResultValue,
    };
    assert_eq!(reports, vec![(0, lie)]);
}
#[test]
fn an_abort_spreads_with_its_reason() {
    let graph = Graph::ring(4).unwrap();
    let mut nodes = engines(&graph, &metropolis());
    let reason = AbortReason::NonFiniteInput {
        rank: 3,
        index: 0,
        value: f64::INFINITY,
    };
    let peers = [0, 2];
    let mut aborted = Engine::aborted(
        MemberSetup {
            id: 3,
            members: 4,
            peers: &peers,
            diameter_bound: 2,
        },
        reason,
    );
    for (to, m) in outgoing(&mut aborted) {
        nodes[to].receive(3, &m.as_message()).unwrap();
    }
    for i in [0, 2] {
        assert_eq!(nodes[i].phase(), Phase::Failed);
        assert_eq!(
            nodes[i].outcome(),
            Some(&Err(Error::NonFiniteInput {
                rank: 3,
                index: 0,
                value: f64::INFINITY
            }))
        );
    }
}

/// Two members that open an edge at different rounds agree to exchange
/// from the later start.
#[test]
fn new_edges_open_at_the_later_start() {
    // A path 0 – 1 – 2; then 0 and 2 are joined (as after a repair).
    let graph = Graph::from_edges(3, &[(0, 1), (1, 2)]).unwrap();
    let mut nodes = engines(&graph, &metropolis());
    let step = |nodes: &mut Vec<Engine>| {
        let wire: Vec<_> = (0..nodes.len())
            .flat_map(|i| {
                nodes[i].tick();
                outgoing(&mut nodes[i])
                    .into_iter()
                    .map(move |(to, m)| (i, to, m))
            })
            .collect::<Vec<_>>();
        for (from, to, m) in wire {
            nodes[to].receive(from, &m.as_message()).unwrap();
        }
        for e in nodes.iter_mut() {
            e.advance();
        }
    };
    step(&mut nodes);
    nodes[0].set_peers(&[1, 2], 1).unwrap(); // member 0 is in round 1: starts at 2
    step(&mut nodes);
    step(&mut nodes);
    // Node 0 cannot pass its own start (round 2) before it hears member 2.
    assert_eq!(nodes[0].round(), 2);
    assert_eq!(nodes[0].waiting_for(), vec![2]);
    nodes[2].set_peers(&[0, 1], 1).unwrap();
    let start2 = nodes[2].round() + 1;
    assert!(start2 > 2);
    step(&mut nodes);
    assert_eq!(nodes[0].since(2), Some(start2));
    assert_eq!(nodes[2].since(0), Some(start2));
    // Once both know both starts and that the other knows, hellos stop,
    // even with retransmission ticks.
    for _ in 0..4 {
        step(&mut nodes);
    }
    for e in &mut nodes {
        e.tick();
        e.tick();
        assert!(
            outgoing(e)
                .iter()
                .all(|(_, m)| m.header.kind != Kind::Hello)
        );
    }
    for r in run(nodes, |_| {}) {
        assert!(
            (r.value[0] - 1.0).abs() < 1e-9 && (r.value[1] - 2.0).abs() < 1e-9,
            "{r:?}"
        );
    }
}

/// The state that decides a member's result, bit for bit.
pub(super) fn state_bits(e: &Engine) -> (u32, Phase, Vec<u64>, Vec<u64>, u64, u32, bool) {
    let bits = |xs: &[f64]| xs.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let flows = e.peers().flat_map(|p| bits(e.flow(p).unwrap())).collect();
    let (counter, attach) = (e.counter, e.attach_events);
    (
        e.round(),
        e.phase(),
        bits(e.mass()),
        flows,
        e.residual().to_bits(),
        counter,
        attach,
    )
}

mod membership;
