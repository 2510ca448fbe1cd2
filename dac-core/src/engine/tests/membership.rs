//! Departures, partitions and exclusion, driven by hand: a value always
//! matches its contributors, a member without a quorum stops, and a member
//! the others went on without learns so.

use super::*;
use crate::error::Error;

/// A hand-driven network: engines and links that can be cut.
struct Net {
    nodes: Vec<Engine>,
    /// `cut[from][to]`: messages from `from` to `to` are lost.
    cut: Vec<Vec<bool>>,
}

impl Net {
    fn new(nodes: Vec<Engine>) -> Net {
        let n = nodes.len();
        Net {
            nodes,
            cut: vec![vec![false; n]; n],
        }
    }

    /// Cuts the links between the members of `a` and those of `b`, both
    /// ways.
    fn partition(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.cut[x][y] = true;
                self.cut[y][x] = true;
            }
        }
    }

    /// One tick: every member ticks and sends, links deliver what is not
    /// cut, every member advances as far as it can.
    fn tick(&mut self) {
        let mut wire = Vec::new();
        for (i, e) in self.nodes.iter_mut().enumerate() {
            e.tick();
            wire.extend(outgoing(e).into_iter().map(|(to, m)| (i, to, m)));
        }
        for (from, to, m) in wire {
            if !self.cut[from][to] {
                self.nodes[to].receive(from, &m.as_message()).unwrap();
            }
        }
        for e in &mut self.nodes {
            e.advance();
        }
    }

    fn run(&mut self, ticks: usize) {
        for _ in 0..ticks {
            if self.nodes.iter().all(|e| e.phase() != Phase::Running) {
                return;
            }
            self.tick();
        }
    }

    fn outcome(&self, i: usize) -> &Result<Reduction> {
        self.nodes[i].outcome().expect("the member finished")
    }
}

/// Inputs `[i + 1, 10 (i + 1)]`.
fn input(i: usize) -> Vec<f64> {
    vec![i as f64 + 1.0, 10.0 * (i as f64 + 1.0)]
}

fn mean_of(ranks: &[usize]) -> Vec<f64> {
    let n = ranks.len() as f64;
    (0..2)
        .map(|k| ranks.iter().map(|&r| input(r)[k]).sum::<f64>() / n)
        .collect()
}

/// `r` is the exact mean of its contributors' inputs (a few ulps for the
/// exact schedule).
fn assert_exact_over_contributors(r: &Reduction, tol: f64) {
    let exact = mean_of(&r.contributors.to_vec());
    for (v, e) in r.value.iter().zip(&exact) {
        assert!(
            (v - e).abs() <= tol * e.abs().max(1.0),
            "value {:?} is not the mean {exact:?} of contributors {:?}",
            r.value,
            r.contributors.to_vec()
        );
    }
}

fn exact() -> Config {
    Config {
        schedule: Schedule::Exact,
        ..Config::default()
    }
}

/// The race the issue saw over SIGSTOP: member 2 exchanges round 0 with
/// member 3, then finds every other member gone. Its value must be its own
/// input (contributors `[2]`), not the half of 2 and 3 it held after the
/// exchange.
#[test]
fn a_member_left_alone_after_an_exchange_returns_only_its_own_input() {
    let graph = Graph::complete(4).unwrap();
    let mut nodes = engines_with(&graph, &exact(), input);
    let sent: Vec<Vec<(usize, OwnedMessage)>> = nodes.iter_mut().map(outgoing).collect();
    for (from, to) in [(2, 3), (3, 2)] {
        let m = &sent[from].iter().find(|(t, _)| *t == to).unwrap().1;
        nodes[to].receive(from, &m.as_message()).unwrap();
    }
    assert_eq!(nodes[2].advance(), Progress::Advanced);
    assert_eq!(nodes[2].round(), 1);
    // Its mass is now the half of members 2 and 3.
    for gone in [0, 1, 3] {
        nodes[2].peer_departed(gone);
    }
    let mut progress = Progress::Advanced;
    for _ in 0..10 {
        // As a host does: the repaired neighbour set (nobody is left).
        if nodes[2].pending_reconfiguration() {
            nodes[2].set_peers(&[], 1).unwrap();
        }
        let _ = outgoing(&mut nodes[2]);
        progress = nodes[2].advance();
        if progress == Progress::Finished {
            break;
        }
    }
    assert_eq!(progress, Progress::Finished);
    let r = nodes[2].take_outcome().unwrap().unwrap();
    assert_eq!(r.contributors.to_vec(), vec![2]);
    assert_eq!(r.value, input(2));
}

/// The same in the iterative schedule: a member whose only neighbour
/// departs after a round returns its own input.
#[test]
fn an_iterative_member_left_alone_returns_only_its_own_input() {
    let graph = Graph::from_edges(2, &[(0, 1)]).unwrap();
    let mut nodes = engines_with(&graph, &metropolis(), input);
    let sent: Vec<Vec<(usize, OwnedMessage)>> = nodes.iter_mut().map(outgoing).collect();
    nodes[0].receive(1, &sent[1][0].1.as_message()).unwrap();
    assert_eq!(nodes[0].advance(), Progress::Advanced);
    nodes[0].peer_departed(1);
    // The host hands over the repaired (empty) neighbour set.
    assert!(nodes[0].pending_reconfiguration());
    nodes[0].set_peers(&[], 1).unwrap();
    let _ = outgoing(&mut nodes[0]);
    assert_eq!(nodes[0].advance(), Progress::Finished);
    let r = nodes[0].take_outcome().unwrap().unwrap();
    assert_eq!(r.contributors.to_vec(), vec![0]);
    assert_eq!(r.value, input(0));
}

/// Proven departures shrink the quorum's base, so crashed members never
/// stop the survivors, however many.
#[test]
fn survivors_of_crashes_go_on_whatever_their_number() {
    for crashed in [vec![3], vec![2, 3], vec![1, 2, 3]] {
        let graph = Graph::complete(4).unwrap();
        let mut net = Net::new(engines_with(&graph, &metropolis(), input));
        let all: Vec<usize> = (0..4).collect();
        let live: Vec<usize> = all
            .iter()
            .copied()
            .filter(|r| !crashed.contains(r))
            .collect();
        net.partition(&crashed, &all);
        for &s in &live {
            for &c in &crashed {
                net.nodes[s].peer_departed(c);
            }
        }
        for &c in &crashed {
            net.nodes[c].leave();
        }
        net.run(1000);
        for &s in &live {
            let r = net.outcome(s).as_ref().unwrap();
            assert_eq!(r.contributors.to_vec(), live, "crashed {crashed:?}");
            assert_exact_over_contributors(r, 1e-9);
        }
    }
}

/// Suspicions count against the quorum: with two of four members silent,
/// neither half has a strict majority, and both stop.
#[test]
fn an_even_split_stops_both_halves() {
    let graph = Graph::complete(4).unwrap();
    let mut net = Net::new(engines_with(&graph, &metropolis(), input));
    net.partition(&[0, 1], &[2, 3]);
    for (a, b) in [(0, 2), (0, 3), (1, 2), (1, 3)] {
        net.nodes[a].peer_suspected(b);
        net.nodes[b].peer_suspected(a);
    }
    net.run(1000);
    for i in 0..4 {
        assert_eq!(
            net.outcome(i),
            &Err(Error::Partitioned {
                rank: i,
                live: 2,
                base: 4
            })
        );
    }
}

/// Three against one: the majority goes on with its exact mean, the
/// minority member stops.
#[test]
fn the_majority_side_goes_on_and_the_minority_stops() {
    for config in [metropolis(), exact()] {
        let graph = Graph::complete(4).unwrap();
        let mut net = Net::new(engines_with(&graph, &config, input));
        net.partition(&[1], &[0, 2, 3]);
        for other in [0, 2, 3] {
            net.nodes[1].peer_suspected(other);
            net.nodes[other].peer_suspected(1);
        }
        net.run(1000);
        assert!(
            matches!(
                net.outcome(1),
                // It stops at the second suspicion, with 2 of 4 live.
                Err(Error::Partitioned {
                    rank: 1,
                    live: 2,
                    base: 4
                })
            ),
            "{:?}: {:?}",
            config.schedule,
            net.outcome(1)
        );
        for i in [0, 2, 3] {
            let r = net.outcome(i).as_ref().unwrap();
            assert_eq!(r.contributors.to_vec(), vec![0, 2, 3]);
            assert_exact_over_contributors(r, 1e-9);
        }
    }
}

/// With two members, a silent peer stops both; a crashed one leaves the
/// survivor with its own input.
#[test]
fn two_members_stop_on_silence_and_go_on_after_a_crash() {
    let graph = Graph::complete(2).unwrap();
    let mut net = Net::new(engines_with(&graph, &metropolis(), input));
    net.partition(&[0], &[1]);
    net.nodes[0].peer_suspected(1);
    net.run(100);
    assert!(matches!(net.outcome(0), Err(Error::Partitioned { .. })));

    let mut net = Net::new(engines_with(&graph, &metropolis(), input));
    net.partition(&[0], &[1]);
    net.nodes[0].peer_departed(1);
    net.run(100);
    let r = net.outcome(0).as_ref().unwrap();
    assert_eq!(r.contributors.to_vec(), vec![0]);
    assert_eq!(r.value, input(0));
}

/// A member that stops for want of a quorum tells its side: here only
/// member 0 sees the cut, and member 1, whose own links look fine, stops
/// with it instead of waiting for it forever.
#[test]
fn a_member_without_a_quorum_takes_its_side_with_it() {
    let graph = Graph::complete(5).unwrap();
    let mut net = Net::new(engines_with(&graph, &metropolis(), input));
    net.partition(&[0, 1], &[2, 3, 4]);
    for other in [2, 3, 4] {
        net.nodes[0].peer_suspected(other);
        for m in [0, 1] {
            net.nodes[other].peer_suspected(m);
        }
    }
    net.run(1000);
    for i in [0, 1] {
        assert!(
            matches!(net.outcome(i), Err(Error::Partitioned { rank, .. }) if *rank == i),
            "member {i}: {:?}",
            net.outcome(i)
        );
    }
    for i in [2, 3, 4] {
        let r = net.outcome(i).as_ref().unwrap();
        assert_eq!(r.contributors.to_vec(), vec![2, 3, 4]);
        assert_exact_over_contributors(r, 1e-9);
    }
}

/// A member the others suspected falsely (it is alive, its links work) is
/// told so by the first member it talks to, and stops as excluded; the
/// others go on without it.
#[test]
fn a_falsely_suspected_member_is_told_it_was_excluded() {
    for config in [metropolis(), exact()] {
        let graph = Graph::complete(4).unwrap();
        let mut net = Net::new(engines_with(&graph, &config, input));
        for other in [0, 1, 2] {
            net.nodes[other].peer_suspected(3);
        }
        net.run(1000);
        assert_eq!(net.outcome(3), &Err(Error::Excluded { rank: 3 }));
        for i in 0..3 {
            let r = net.outcome(i).as_ref().unwrap();
            assert_exact_over_contributors(r, 1e-9);
            assert!(!r.contributors.contains(3) || config.schedule == Schedule::Exact);
        }
    }
}

/// A result that leaves this member out is not adopted as its own.
#[test]
fn a_result_without_us_is_an_exclusion() {
    let graph = Graph::complete(3).unwrap();
    let mut nodes = engines_with(&graph, &metropolis(), input);
    let mut header = Header::new(Kind::Done, 5);
    header.streak = 0.0;
    let done = OwnedMessage {
        header,
        events: vec![Event::Departed { member: 2 }],
        payload: mean_of(&[0, 1]),
        abort: None,
    };
    nodes[2].receive(0, &done.as_message()).unwrap();
    assert_eq!(nodes[2].outcome(), Some(&Err(Error::Excluded { rank: 2 })));
    // A member it names, which does not know of 2's departure, refuses
    // it: no honest member finishes in a view the others have not been
    // through.
    assert_eq!(
        nodes[1].receive(0, &done.as_message()),
        Err(Violation::Contradicts {
            peer: 0,
            kind: Kind::Done,
            what: Contradiction::ResultMembers
        })
    );
    assert_eq!(nodes[1].outcome(), None);
}

/// A member that left is gone, not suspected: it never costs the others
/// their quorum.
#[test]
fn members_that_leave_do_not_count_against_the_quorum() {
    let graph = Graph::complete(3).unwrap();
    let mut net = Net::new(engines_with(&graph, &metropolis(), input));
    net.nodes[1].leave();
    net.nodes[2].leave();
    net.run(100);
    let r = net.outcome(0).as_ref().unwrap();
    assert_eq!(r.contributors.to_vec(), vec![0]);
    assert_eq!(r.value, input(0));
}

/// Reliable links need no ticks, in any interleaving: members that learn
/// of a departure at the start, in the exact schedule (where one member
/// skips rounds its departed partner would have taken, and runs ahead of
/// the others), all finish, exact over the same contributors. Delivery
/// keeps each link in order, as a stream does, and otherwise picks a random
/// link each step. (A too-strict guard against messages far ahead once
/// dropped one of these for good: a deadlock.)
#[test]
fn reliable_links_need_no_ticks_after_a_departure() {
    use rand::{RngExt, SeedableRng};
    use std::collections::{BTreeMap, VecDeque};
    let live = [0usize, 1, 3];
    for seed in 0..500u64 {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed);
        let graph = Graph::complete(4).unwrap();
        let mut nodes = engines_with(&graph, &exact(), input);
        for &i in &live {
            nodes[i].peer_departed(2);
            let others: Vec<usize> = live.iter().copied().filter(|&p| p != i).collect();
            nodes[i].set_peers(&others, 2).unwrap();
        }
        let mut links: BTreeMap<(usize, usize), VecDeque<OwnedMessage>> = BTreeMap::new();
        for _ in 0..10_000 {
            for &i in &live {
                loop {
                    for (to, m) in outgoing(&mut nodes[i]) {
                        links.entry((i, to)).or_default().push_back(m);
                    }
                    if nodes[i].advance() != Progress::Advanced {
                        break;
                    }
                }
                for (to, m) in outgoing(&mut nodes[i]) {
                    links.entry((i, to)).or_default().push_back(m);
                }
            }
            if live.iter().all(|&i| nodes[i].phase() != Phase::Running) {
                break;
            }
            let busy: Vec<(usize, usize)> = links
                .iter()
                .filter(|(key, q)| key.1 != 2 && !q.is_empty())
                .map(|(k, _)| *k)
                .collect();
            let state: Vec<_> = live
                .iter()
                .map(|&i| (i, nodes[i].round(), nodes[i].waiting_for()))
                .collect();
            assert!(
                !busy.is_empty(),
                "seed {seed}: stuck with nothing in flight: {state:?}"
            );
            let (from, to) = busy[rng.random_range(0..busy.len())];
            let m = links.get_mut(&(from, to)).unwrap().pop_front().unwrap();
            nodes[to].receive(from, &m.as_message()).unwrap();
        }
        let first = nodes[0]
            .outcome()
            .unwrap()
            .as_ref()
            .unwrap()
            .contributors
            .clone();
        for &i in &live {
            let r = nodes[i].outcome().expect("finished").as_ref().unwrap();
            assert_exact_over_contributors(r, 1e-12);
            assert_eq!(r.contributors, first, "seed {seed}: member {i}");
        }
    }
}
