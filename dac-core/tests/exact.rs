//! The exact (dimension-exchange) schedule: the mean in `⌈log2 N⌉ + 2`
//! rounds at most, `log2 N` for powers of two, and unchanged by message
//! loss, delay and duplication.

mod common;

use common::{assert_all_within, distinct_values, inputs, mean_of, options};
use dac_core::sim::{self, Faults, MemberOutcome};
use dac_core::{Config, Error, Graph, Schedule};

fn exact(tol: f64) -> Config {
    Config {
        schedule: Schedule::Exact,
        tol,
        ..Config::default()
    }
}

fn ceil_log2(n: usize) -> u32 {
    usize::BITS - (n - 1).leading_zeros()
}

#[test]
fn mean_to_1e12_within_log_rounds() {
    for n in [1usize, 2, 3, 5, 8, 63, 64, 100, 1000, 1024] {
        for dim in [1, 3] {
            let graph = Graph::exponential(n).unwrap();
            let x = inputs(n, dim, n as u64 * 31 + dim as u64);
            let report = sim::simulate(
                &graph,
                &x,
                dim,
                &options(exact(1e-12), Faults::default(), 0),
            )
            .unwrap();
            let mean = mean_of(&x, dim, |_| true);
            assert_all_within(&report, &mean, 1e-12, &format!("n = {n}, d = {dim}"));
            assert!(report.converged);
            let bound = ceil_log2(n) + 2;
            for node in &report.members {
                let r = node.reduction().unwrap();
                assert!(r.rounds <= bound, "n = {n}: {} rounds > {bound}", r.rounds);
                if n.is_power_of_two() {
                    assert_eq!(r.rounds, ceil_log2(n), "n = {n}");
                }
                assert_eq!(r.rounds, report.rounds, "n = {n}: members stop together");
                assert_eq!(r.residual, 0.0);
                assert_eq!(r.contributors.len(), n);
            }
            // Without faults a round takes one tick.
            assert!(report.ticks <= u64::from(report.rounds) + 1);
        }
    }
}

#[test]
fn hypercube_carries_the_exact_schedule() {
    for n in [16usize, 128] {
        let graph = Graph::hypercube(n).unwrap();
        let x = inputs(n, 2, 5);
        let report =
            sim::simulate(&graph, &x, 2, &options(exact(1e-12), Faults::default(), 0)).unwrap();
        assert_all_within(&report, &mean_of(&x, 2, |_| true), 1e-12, "hypercube");
        assert_eq!(report.rounds, n.trailing_zeros());
    }
}

/// Every member ends with the same bytes, not only the same value within
/// rounding, for every size (folded or not), with loss, delay and
/// duplication, and when a member crashes after its input was combined
/// (the others adopt the result of one that completed the phase): SPMD
/// code that branches on a result takes the same branch everywhere.
/// Before, the two partners of an exchange moved their masses through
/// the flows in opposite directions and kept values that differed in the
/// last bits (8 distinct values over 8 members).
#[test]
fn every_member_ends_with_the_same_bytes() {
    for n in [2usize, 3, 5, 7, 8, 13, 64, 100, 1000] {
        let graph = Graph::exponential(n).unwrap();
        let x = inputs(n, 3, n as u64 * 7);
        let lossy = Faults {
            drop: 0.2,
            duplicate: 0.1,
            max_delay: 2,
            ..Faults::default()
        };
        for faults in [Faults::default(), lossy] {
            let report =
                sim::simulate(&graph, &x, 3, &options(exact(1e-12), faults.clone(), 5)).unwrap();
            assert_all_within(&report, &mean_of(&x, 3, |_| true), 1e-12, "exact");
            assert_eq!(distinct_values(&report).len(), 1, "n = {n}, {faults:?}");
        }
    }
}

/// Loss, delay and duplication only cost time: every member completes the
/// same rounds with the same value.
#[test]
fn faults_in_transit_change_nothing_but_time() {
    for n in [37usize, 64] {
        let graph = Graph::exponential(n).unwrap();
        let x = inputs(n, 2, 9);
        let clean =
            sim::simulate(&graph, &x, 2, &options(exact(1e-12), Faults::default(), 0)).unwrap();
        let faults = Faults {
            drop: 0.3,
            duplicate: 0.2,
            max_delay: 3,
            ..Faults::default()
        };
        for seed in 0..4 {
            let lossy =
                sim::simulate(&graph, &x, 2, &options(exact(1e-12), faults.clone(), seed)).unwrap();
            assert_all_within(&lossy, &mean_of(&x, 2, |_| true), 1e-12, "lossy exact");
            assert_eq!(lossy.rounds, clean.rounds);
            assert!(lossy.ticks > clean.ticks, "the faults were exercised");
            assert!(lossy.messages.dropped > 0 && lossy.messages.duplicated > 0);
        }
    }
}

/// A member that crashes before sending anything takes every member off
/// the fast path: they fall back to Metropolis on the repaired graph and
/// agree on the mean of the survivors.
#[test]
fn crash_before_the_first_exchange_falls_back_to_the_survivors_mean() {
    let n = 40;
    let graph = Graph::exponential(n).unwrap();
    let x = inputs(n, 1, 3);
    let faults = Faults {
        crashes: vec![(11, 0)],
        ..Faults::default()
    };
    let report = sim::simulate(&graph, &x, 1, &options(exact(1e-10), faults, 1)).unwrap();
    assert_all_within(&report, &mean_of(&x, 1, |i| i != 11), 1e-10, "fallback");
    assert_eq!(report.contributors.unwrap().departed(), &[11]);
    assert!(
        report.rounds > ceil_log2(n) + 2,
        "the fallback took extra rounds"
    );
}

/// A member that crashes after its input was combined is still in the
/// result of every member whose exchanges all happened, and the others
/// adopt that result: all agree on the mean of all inputs.
#[test]
fn crash_after_combining_keeps_the_full_exact_mean() {
    let n = 64;
    let graph = Graph::exponential(n).unwrap();
    let x = inputs(n, 2, 4);
    for (crash_round, drop) in [(3, 0.0), (5, 0.0), (2, 0.25)] {
        let faults = Faults {
            crashes: vec![(9, crash_round)],
            drop,
            ..Faults::default()
        };
        let report = sim::simulate(&graph, &x, 2, &options(exact(1e-12), faults, 2)).unwrap();
        assert_all_within(&report, &mean_of(&x, 2, |_| true), 1e-12, "late crash");
        let contributors = report.contributors.clone().unwrap();
        assert_eq!(
            contributors.len(),
            n,
            "the crashed member's input is in the value"
        );
        assert!(matches!(report.members[9], MemberOutcome::Crashed { .. }));
        assert_eq!(distinct_values(&report).len(), 1, "crash at {crash_round}");
    }
}

#[test]
fn topologies_without_the_pairs_are_rejected() {
    for graph in [Graph::ring(8).unwrap(), Graph::torus(4, 4).unwrap()] {
        let err = sim::simulate(
            &graph,
            &[0.0; 16][..graph.len()],
            1,
            &options(exact(1e-9), Faults::default(), 0),
        )
        .unwrap_err();
        assert!(matches!(err, Error::ExactNeedsEdge { .. }), "{err}");
    }
}
