//! Message-level tests of one engine, driven by hand.

use super::*;
use crate::graph::Graph;

/// Engines on `graph`, each with input `[i, 2i]`.
fn engines(graph: &Graph, config: &Config) -> Vec<Engine> {
    engines_with(graph, config, |i| vec![i as f64, 2.0 * i as f64])
}

/// Engines on `graph`, member `i` with input `input(i)`.
fn engines_with(graph: &Graph, config: &Config, input: impl Fn(usize) -> Vec<f64>) -> Vec<Engine> {
    let d = graph.diameter().unwrap();
    (0..graph.len())
        .map(|i| {
            let peers: Vec<usize> = graph.neighbors(i).collect();
            let setup = NodeSetup {
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
fn outgoing(e: &mut Engine) -> Vec<(usize, OwnedMessage)> {
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

fn metropolis() -> Config {
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
        // Drop everything node 2 says on even ticks, and everything sent
        // to node 4 on every third tick.
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
    // Everyone gets round 0 except node 2, which misses node 0's message.
    for (from, to, m) in &wire {
        if !(*from == 0 && *to == 2) {
            nodes[*to].receive(*from, &m.as_message()).unwrap();
        }
    }
    assert_eq!(nodes[0].advance(), Progress::Advanced);
    assert_eq!(nodes[2].advance(), Progress::Blocked);
    assert_eq!(nodes[2].waiting_for(), vec![0]);
    // Node 2 retransmits its round-0 message; node 0, now in round 1,
    // answers with its round-0 message.
    let from_two = wire.iter().find(|(f, t, _)| *f == 2 && *t == 0).unwrap();
    nodes[0].receive(2, &from_two.2.as_message()).unwrap();
    let replies = outgoing(&mut nodes[0]);
    let resend = replies
        .iter()
        .find(|(to, m)| *to == 2 && m.header.round == 0)
        .expect("round 0 resent to node 2");
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
    let mut short = good.clone();
    short.payload.pop();
    let mut nan = good.clone();
    nan.payload[0] = f64::NAN;
    let mut bad_event = good.clone();
    bad_event.events.push(Event::Departed { node: 99 });
    let mut no_reason = good.clone();
    no_reason.header.kind = Kind::Abort;
    let cases: [(usize, OwnedMessage); 5] = [
        (1, short),
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
    // A dimension mismatch tells the host what to report.
    let mut longer = good.clone();
    longer.payload.push(1.0);
    let violation = nodes[0].receive(1, &longer.as_message()).unwrap_err();
    assert_eq!(
        violation.dimension_mismatch(0, 2),
        Some(AbortReason::DimensionMismatch {
            rank: 0,
            expected: 3,
            found: 2
        })
    );
    assert!(nodes[0].receive(1, &good.as_message()).is_ok());
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
        Event::Departed { node: 2 },
        Event::InputChanged { node: 1, seq: 3 },
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
            done(vec![Event::Departed { node: 2 }], near.clone()),
            Contradiction::ResultMembers,
        ),
        (
            done(vec![Event::InputChanged { node: 1, seq: 1 }], near),
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
        NodeSetup {
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
    nodes[0].set_peers(&[1, 2], 1).unwrap(); // node 0 is in round 1: starts at 2
    step(&mut nodes);
    step(&mut nodes);
    // Node 0 cannot pass its own start (round 2) before it hears node 2.
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

/// One member's plain round messages of a tick: `(from, index, header,
/// payload)`.
type Batch = Vec<(usize, usize, Header, Vec<f64>)>;

/// The state that decides a member's result, bit for bit.
fn state_bits(e: &Engine) -> (u32, Phase, Vec<u64>, Vec<u64>, u64, u32, bool) {
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

/// Taking a whole round's messages at once (`advance_with_round_from`)
/// gives bit for bit what receiving them one by one and then advancing
/// gives, both when the shortcut applies (also to a batch that arrived in
/// reverse order) and when a tampered batch (a duplicate, a non-finite
/// value, a missing message) sends it down the general path. Before the
/// first tampered batch, every round took the shortcut.
#[test]
fn a_round_taken_at_once_equals_receiving_then_advancing() {
    // d = 8 has more flows than the shortcut saves on the stack.
    for dim in [1usize, 2, 8] {
        // Degrees 3 to 6: the Metropolis weight of an edge depends on which
        // end has the larger degree.
        let regular = Graph::random_regular(10, 3, 5).unwrap();
        let mut edges: Vec<_> = regular.edges().collect();
        edges.extend(
            [2, 5, 7, 9]
                .iter()
                .filter(|&&b| !regular.has_edge(0, b))
                .map(|&b| (0, b)),
        );
        let graph = Graph::from_edges(10, &edges).unwrap();
        assert!(graph.max_degree() > graph.min_degree());
        let input = |i: usize| (0..dim).map(|k| (i * 7 + k) as f64 / 3.0).collect();
        let make = || engines_with(&graph, &metropolis(), input);
        let (mut at_once, mut one_by_one) = (make(), make());
        let mut finished = false;
        for tick in 0..5_000u32 {
            if tick == 5 {
                // Until now, the shortcut took every round (it buffers
                // nothing, receiving buffers every message).
                assert!(at_once.iter().all(|e| e.inbox.is_none()));
                assert!(one_by_one.iter().all(|e| e.inbox.is_some()));
            }
            // Both sets hand out the same messages.
            let mut batches: Vec<Batch> = vec![Vec::new(); graph.len()];
            let mut other = Vec::new();
            for i in 0..graph.len() {
                at_once[i].tick();
                one_by_one[i].tick();
                let (a, b) = (outgoing(&mut at_once[i]), outgoing(&mut one_by_one[i]));
                assert_eq!(
                    format!("{a:?}"),
                    format!("{b:?}"),
                    "tick {tick}, member {i}"
                );
                for (to, m) in a {
                    let index = at_once[to].peers().position(|p| p == i).unwrap();
                    if m.header.kind == Kind::Round && m.events.is_empty() {
                        batches[to].push((i, index, m.header, m.payload));
                    } else {
                        other.push((i, to, m));
                    }
                }
            }
            for (from, to, m) in &other {
                let (a, b) = (
                    at_once[*to].receive(*from, &m.as_message()),
                    one_by_one[*to].receive(*from, &m.as_message()),
                );
                assert_eq!(a, b);
            }
            for (to, batch) in batches.iter_mut().enumerate() {
                batch.sort_by_key(|m| m.1);
                match (tick, to) {
                    (5, 0) if !batch.is_empty() => batch.push(batch[0].clone()),
                    (7, 1) if !batch.is_empty() => batch[0].3[0] = f64::NAN,
                    (9, 2) => drop(batch.pop()),
                    (11, 3) => batch.reverse(),
                    _ => {}
                }
                let messages = batch.iter().map(|(f, i, h, p)| (*f, *i, *h, &p[..]));
                // As the simulator looks messages up: the one message from
                // each neighbour, or none.
                let message_of = |_: usize, peer: u32| {
                    let mut from_peer = batch.iter().filter(|m| m.0 == peer as usize);
                    match (from_peer.next(), from_peer.next()) {
                        (Some((_, _, h, p)), None) => Some((*h, &p[..])),
                        _ => None,
                    }
                };
                let violations = match at_once[to].advance_with_round_from(message_of) {
                    Some(_) => 0,
                    None => {
                        let violations = at_once[to].receive_plain_rounds(messages.clone());
                        at_once[to].advance();
                        violations
                    }
                };
                let expected = one_by_one[to].receive_plain_rounds(messages);
                one_by_one[to].advance();
                assert_eq!(violations, expected, "tick {tick}, member {to}");
                assert_eq!(
                    state_bits(&at_once[to]),
                    state_bits(&one_by_one[to]),
                    "tick {tick}, member {to}"
                );
            }
            if at_once.iter().all(|e| e.phase() != Phase::Running) {
                finished = true;
                break;
            }
        }
        assert!(finished, "d = {dim}: did not finish");
        let n = graph.len() as f64;
        for i in 0..graph.len() {
            let (a, b) = (
                at_once[i].take_outcome().unwrap().unwrap(),
                one_by_one[i].take_outcome().unwrap().unwrap(),
            );
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
            for (k, v) in a.value.iter().enumerate() {
                let mean = (0..graph.len())
                    .map(|j| (j * 7 + k) as f64 / 3.0)
                    .sum::<f64>()
                    / n;
                assert!(
                    (v - mean).abs() <= 1e-9 * mean.abs().max(1.0),
                    "member {i}: {v} vs {mean}"
                );
            }
        }
    }
}
mod membership;
