//! Every schedule ends a reduction with the same bytes on every member:
//! in the iterative schedules (and the exact schedule's fallback after a
//! departure) one member finishes with its estimate and the others adopt
//! its result, so SPMD code that branches on a result takes the same
//! branch everywhere. Before, every member finished with its own estimate,
//! and the values of one reduction differed in their last bits.

mod common;

use common::{assert_all_within, distinct_values, inputs, mean_of, options};
use dac_core::sim::{self, Faults, MemberOutcome, Report};
use dac_core::threaded::{self, Options};
use dac_core::{Communicator, Config, Graph, Schedule, Topology};

/// How many distinct bit patterns the finished members' values have.
fn distinct(report: &Report) -> usize {
    distinct_values(report).len()
}

fn config(schedule: Schedule) -> Config {
    Config {
        schedule,
        tol: 1e-10,
        ..Config::default()
    }
}

#[test]
fn the_iterative_schedules_end_with_the_same_bytes_everywhere() {
    let lossy = Faults {
        drop: 0.1,
        duplicate: 0.05,
        max_delay: 2,
        ..Faults::default()
    };
    let graphs = [
        ("ring 7", Graph::ring(7).unwrap()),
        ("ring 16", Graph::ring(16).unwrap()),
        ("torus 36", Graph::torus_for(36).unwrap()),
        (
            "random 4-regular 50",
            Graph::random_regular(50, 4, 3).unwrap(),
        ),
    ];
    for (name, graph) in &graphs {
        let n = graph.len();
        let x = inputs(n, 3, n as u64);
        let mean = mean_of(&x, 3, |_| true);
        let max_degree = graph.max_degree() as f64;
        for schedule in [
            Schedule::Metropolis,
            Schedule::Laplacian {
                eps: 0.9 / (max_degree + 1.0),
            },
        ] {
            for (faults, seed) in [
                (Faults::default(), 0),
                (lossy.clone(), 1),
                (lossy.clone(), 2),
            ] {
                let what = format!("{name}, {schedule:?}, seed {seed}");
                let report =
                    sim::simulate(graph, &x, 3, &options(config(schedule), faults, seed)).unwrap();
                assert_all_within(&report, &mean, 1e-9, &what);
                assert_eq!(distinct(&report), 1, "{what}");
                // The rounds are the finishing member's, on every member.
                let rounds: Vec<u32> = report
                    .members
                    .iter()
                    .filter_map(MemberOutcome::reduction)
                    .map(|r| r.rounds)
                    .collect();
                assert!(rounds.iter().all(|&r| r == rounds[0]), "{what}: {rounds:?}");
            }
        }
    }
}

/// A crash before the first exchange takes the exact schedule to its
/// Metropolis fallback over the survivors, which ends the same way; so
/// does a crash of the member that would finish first (member 0).
#[test]
fn the_exact_fallback_after_a_crash_ends_with_the_same_bytes_everywhere() {
    for (n, crashed) in [(13usize, 5usize), (13, 0), (40, 0), (40, 11)] {
        let graph = Graph::exponential(n).unwrap();
        let x = inputs(n, 2, 17 + n as u64);
        let faults = Faults {
            crashes: vec![(crashed, 0)],
            ..Faults::default()
        };
        let report =
            sim::simulate(&graph, &x, 2, &options(config(Schedule::Exact), faults, 3)).unwrap();
        let mean = mean_of(&x, 2, |i| i != crashed);
        let what = format!("n = {n}, member {crashed} crashed");
        assert_all_within(&report, &mean, 1e-9, &what);
        assert_eq!(distinct(&report), 1, "{what}");
    }
}

/// The threaded transport, over threads and real time: Metropolis on a
/// ring of 9, 20 reductions, every member's bytes equal in each.
#[test]
fn the_threaded_transport_ends_metropolis_with_the_same_bytes_everywhere() {
    let n = 9;
    let options = Options {
        topology: Topology::Ring,
        config: Config {
            schedule: Schedule::Metropolis,
            tol: 1e-10,
            ..Config::default()
        },
        ..Options::default()
    };
    let results = threaded::run(n, options, |comm| {
        (0..20)
            .map(|k| {
                let x = [
                    comm.rank() as f64 * 0.37 + k as f64,
                    1.0 / (comm.rank() + 1) as f64,
                ];
                comm.allreduce_mean(&x).unwrap().value
            })
            .collect::<Vec<_>>()
    })
    .unwrap();
    for k in 0..20 {
        let first: Vec<u64> = results[0][k].iter().map(|v| v.to_bits()).collect();
        for (rank, r) in results.iter().enumerate() {
            let bits: Vec<u64> = r[k].iter().map(|v| v.to_bits()).collect();
            assert_eq!(bits, first, "reduction {k}, rank {rank}");
        }
        let mean0 = (0..n).map(|r| r as f64 * 0.37 + k as f64).sum::<f64>() / n as f64;
        assert!((results[0][k][0] - mean0).abs() <= 1e-9 * mean0.abs().max(1.0));
    }
}
