//! Crashes, graceful leaves, input changes and `max_rounds`: the survivors
//! agree on the exact mean of exactly the inputs they report.

mod common;

use common::{assert_all_within, inputs, mean_of, options};
use dac_core::sim::{self, Faults, InputChange, MemberOutcome};
use dac_core::{Config, Error, Graph, Schedule};
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

fn config(schedule: Schedule, tol: f64) -> Config {
    Config {
        schedule,
        tol,
        ..Config::default()
    }
}

/// `k` distinct members crashing at random rounds below `last_round`.
fn random_crashes(n: usize, k: usize, last_round: u32, seed: u64) -> Vec<(usize, u32)> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut ids: Vec<usize> = (0..n).collect();
    ids.shuffle(&mut rng);
    ids.into_iter()
        .take(k)
        .map(|id| (id, rng.random_range(0..last_round)))
        .collect()
}

#[test]
fn survivors_converge_to_the_mean_of_the_survivors() {
    let n = 64;
    let graphs = [
        ("random 4-regular", Graph::random_regular(n, 4, 7).unwrap()),
        ("exponential", Graph::exponential(n).unwrap()),
        ("torus", Graph::torus(8, 8).unwrap()),
    ];
    for (name, graph) in graphs {
        for (k, seed) in [(1, 1), (3, 2), (6, 3), (10, 4)] {
            let crashes = random_crashes(n, k, 40, seed);
            for drop in [0.0, 0.2] {
                let faults = Faults {
                    crashes: crashes.clone(),
                    drop,
                    max_delay: if drop > 0.0 { 2 } else { 0 },
                    ..Faults::default()
                };
                let x = inputs(n, 2, seed);
                let config = config(Schedule::Metropolis, 1e-10);
                let report = sim::simulate(&graph, &x, 2, &options(config, faults, seed)).unwrap();
                let crashed: Vec<usize> = {
                    let mut c: Vec<usize> = crashes.iter().map(|c| c.0).collect();
                    c.sort_unstable();
                    c
                };
                let context = format!("{name}, crashes {crashes:?}, drop {drop}");
                assert_all_within(
                    &report,
                    &mean_of(&x, 2, |i| !crashed.contains(&i)),
                    1e-10,
                    &context,
                );
                let contributors = report.contributors.clone().expect("survivors agree");
                assert_eq!(contributors.departed(), &crashed[..], "{context}");
                assert_eq!(report.survivors(), n - k, "{context}");
                for i in &crashed {
                    assert!(matches!(report.members[*i], MemberOutcome::Crashed { .. }));
                }
            }
        }
    }
}

/// Two crashes cut a ring in two; the repair bridges each gap so the
/// survivors still reach one common mean.
#[test]
fn a_ring_cut_twice_is_repaired() {
    let n = 24;
    let graph = Graph::ring(n).unwrap();
    let x = inputs(n, 1, 11);
    let faults = Faults {
        crashes: vec![(5, 10), (17, 30)],
        ..Faults::default()
    };
    let report = sim::simulate(
        &graph,
        &x,
        1,
        &options(config(Schedule::Metropolis, 1e-9), faults, 0),
    )
    .unwrap();
    assert_all_within(
        &report,
        &mean_of(&x, 1, |i| i != 5 && i != 17),
        1e-9,
        "ring",
    );
    assert_eq!(report.contributors.unwrap().departed(), &[5, 17]);
}

#[test]
fn a_member_that_leaves_is_excluded() {
    let n = 32;
    for schedule in [Schedule::Metropolis, Schedule::Laplacian { eps: 0.1 }] {
        for drop in [0.0, 0.3] {
            let graph = Graph::random_regular(n, 4, 3).unwrap();
            let x = inputs(n, 3, 8);
            let faults = Faults {
                leaves: vec![(13, 7)],
                drop,
                ..Faults::default()
            };
            let report =
                sim::simulate(&graph, &x, 3, &options(config(schedule, 1e-9), faults, 5)).unwrap();
            assert_all_within(&report, &mean_of(&x, 3, |i| i != 13), 1e-9, "leave");
            assert_eq!(report.contributors.unwrap().departed(), &[13]);
            assert_eq!(report.members[13], MemberOutcome::Left { round: 7 });
        }
    }
}

/// The estimate follows a changed input, and the result says which
/// version of that input it contains.
#[test]
fn estimates_follow_changed_inputs() {
    let n = 32;
    let graph = Graph::exponential(n).unwrap();
    let x = inputs(n, 2, 12);
    let new_input = vec![1e3, -2e3];
    for drop in [0.0, 0.3] {
        let faults = Faults {
            input_changes: vec![InputChange {
                member: 4,
                round: 20,
                input: new_input.clone(),
            }],
            drop,
            ..Faults::default()
        };
        let report = sim::simulate(
            &graph,
            &x,
            2,
            &options(config(Schedule::Metropolis, 1e-10), faults, 1),
        )
        .unwrap();
        let mut changed = x.clone();
        changed[8..10].copy_from_slice(&new_input);
        assert_all_within(
            &report,
            &mean_of(&changed, 2, |_| true),
            1e-10,
            "input change",
        );
        let contributors = report.contributors.unwrap();
        assert_eq!(contributors.input_version(4), Some(1));
        assert_eq!(contributors.input_version(5), Some(0));
    }
}

/// In the exact schedule a change after the inputs were combined is too
/// late for the members whose exchanges all happened: every member agrees
/// on the mean of the starting inputs, and says so (version 0).
#[test]
fn exact_results_name_the_input_versions_they_contain() {
    let n = 64;
    let graph = Graph::exponential(n).unwrap();
    let x = inputs(n, 1, 13);
    let faults = Faults {
        input_changes: vec![InputChange {
            member: 4,
            round: 3,
            input: vec![5e3],
        }],
        ..Faults::default()
    };
    let report = sim::simulate(
        &graph,
        &x,
        1,
        &options(config(Schedule::Exact, 1e-12), faults, 0),
    )
    .unwrap();
    assert_all_within(&report, &mean_of(&x, 1, |_| true), 1e-12, "late change");
    assert_eq!(report.contributors.unwrap().input_version(4), Some(0));
}

#[test]
fn max_rounds_is_a_typed_error_on_every_member() {
    let graph = Graph::ring(32).unwrap();
    let x = inputs(32, 1, 2);
    let config = Config {
        schedule: Schedule::Metropolis,
        tol: 1e-12,
        max_rounds: 50,
    };
    let report = sim::simulate(&graph, &x, 1, &options(config, Faults::default(), 0)).unwrap();
    assert!(!report.converged);
    for node in &report.members {
        match node {
            MemberOutcome::Failed(Error::NotConverged { rounds, residual }) => {
                assert_eq!(*rounds, 50);
                assert!(
                    *residual > 1e-12 && residual.is_finite(),
                    "residual {residual}"
                );
            }
            other => panic!("expected NotConverged, got {other:?}"),
        }
    }
}
