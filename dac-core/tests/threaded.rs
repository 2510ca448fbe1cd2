//! The in-memory threaded transport behind `Communicator`.

mod common;

use common::{inputs, max_norm, mean_of};
use dac_core::threaded::{self, Options};
use dac_core::{Communicator, Config, Error, Schedule, Topology};

fn assert_close(value: &[f64], expected: &[f64], tol: f64, context: &str) {
    let bound = tol * max_norm(expected).max(1.0);
    let err = value
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert_eq!(value.len(), expected.len(), "{context}");
    assert!(err <= bound, "{context}: error {err:e} above {bound:e}");
}

#[test]
fn allreduce_mean_and_sum_on_every_rank() {
    for n in [1usize, 2, 3, 8] {
        for dim in [1usize, 1000] {
            let x = inputs(n, dim, (n * dim) as u64);
            let mean = mean_of(&x, dim, |_| true);
            let sum: Vec<f64> = mean.iter().map(|m| m * n as f64).collect();
            let results = threaded::run(n, Options::default(), |comm| {
                let mine = &x[comm.rank() * dim..(comm.rank() + 1) * dim];
                (comm.allreduce_mean(mine), comm.allreduce_sum(mine))
            })
            .unwrap();
            for (rank, (m, s)) in results.into_iter().enumerate() {
                let context = format!("n = {n}, d = {dim}, rank {rank}");
                let (m, s) = (m.unwrap(), s.unwrap());
                assert_close(&m.value, &mean, 1e-12, &context);
                assert_close(&s.value, &sum, 1e-12, &context);
                assert_eq!(m.contributors.len(), n);
                assert!(m.rounds <= usize::BITS - n.leading_zeros() + 2);
            }
        }
    }
}

#[test]
fn a_hundred_reductions_in_sequence() {
    let n = 5;
    let results = threaded::run(n, Options::default(), |comm| {
        (0..100)
            .map(|k| {
                let x = [(comm.rank() * k) as f64, k as f64];
                comm.allreduce_mean(&x).map(|r| r.value)
            })
            .collect::<Vec<_>>()
    })
    .unwrap();
    for per_rank in results {
        for (k, value) in per_rank.into_iter().enumerate() {
            let expected = [2.0 * k as f64, k as f64]; // mean of rank·k over ranks 0..5
            assert_close(&value.unwrap(), &expected, 1e-12, &format!("reduction {k}"));
        }
    }
}

#[test]
fn iterative_schedules_on_other_topologies() {
    let cases = [
        (Topology::Ring, Schedule::Metropolis),
        (Topology::Torus, Schedule::Metropolis),
        (
            Topology::RandomRegular { degree: 3 },
            Schedule::Laplacian { eps: 0.25 },
        ),
        (Topology::Complete, Schedule::Metropolis),
    ];
    for (topology, schedule) in cases {
        let n = 12;
        let x = inputs(n, 3, 77);
        let mean = mean_of(&x, 3, |_| true);
        let options = Options {
            topology: topology.clone(),
            config: Config {
                schedule,
                tol: 1e-10,
                ..Config::default()
            },
            ..Options::default()
        };
        let results = threaded::run(n, options, |comm| {
            comm.allreduce_mean(&x[comm.rank() * 3..comm.rank() * 3 + 3])
        })
        .unwrap();
        let rounds = results[0].as_ref().unwrap().rounds;
        for r in results {
            let r = r.unwrap();
            assert_close(&r.value, &mean, 1e-10, &format!("{topology} {schedule}"));
            assert_eq!(r.rounds, rounds, "all ranks stop at the same round");
        }
    }
}

/// A rank with a NaN input makes every rank fail with the same error
/// naming it, and the next reduction works again.
#[test]
fn a_bad_input_fails_every_rank_with_its_error() {
    let n = 6;
    for schedule in [Schedule::Exact, Schedule::Metropolis] {
        let options = Options {
            config: Config {
                schedule,
                ..Config::default()
            },
            ..Options::default()
        };
        let results = threaded::run(n, options, |comm| {
            let bad = if comm.rank() == 2 { f64::NAN } else { 1.0 };
            let first = comm.allreduce_mean(&[1.0, bad]);
            let second = comm.allreduce_mean(&[comm.rank() as f64]);
            (first, second)
        })
        .unwrap();
        for (rank, (first, second)) in results.into_iter().enumerate() {
            match first {
                Err(Error::NonFiniteInput {
                    rank: 2,
                    index: 1,
                    value,
                }) => assert!(value.is_nan()),
                other => panic!("rank {rank}: expected NonFiniteInput from rank 2, got {other:?}"),
            }
            assert_close(&second.unwrap().value, &[2.5], 1e-12, "after the error");
        }
    }
}

/// Every rank names the same culprit: the rank whose length differs from
/// the others', not the rank that happened to notice.
#[test]
fn mismatched_lengths_fail_every_rank_naming_the_same_rank() {
    let n = 8;
    // Which rank notices first is a race: repeat it.
    for (attempt, schedule) in [Schedule::Exact, Schedule::Metropolis]
        .into_iter()
        .cycle()
        .take(20)
        .enumerate()
    {
        let options = Options {
            config: Config {
                schedule,
                ..Config::default()
            },
            ..Options::default()
        };
        let results = threaded::run(n, options, |comm| {
            let len = if comm.rank() == 3 { 2 } else { 3 };
            let first = comm.allreduce_mean(&vec![1.0; len]);
            let second = comm.allreduce_mean(&[comm.rank() as f64]);
            (first, second)
        })
        .unwrap();
        for (rank, (first, second)) in results.into_iter().enumerate() {
            assert_eq!(
                first.unwrap_err(),
                Error::DimensionMismatch {
                    rank: 3,
                    expected: 3,
                    found: 2
                },
                "{schedule:?}, attempt {attempt}, rank {rank}"
            );
            assert_close(&second.unwrap().value, &[3.5], 1e-9, "after the error");
        }
    }
}

/// Two ranks with a NaN: every rank names the lower of them.
#[test]
fn two_bad_inputs_are_named_alike_on_every_rank() {
    let results = threaded::run(6, Options::default(), |comm| {
        let bad = matches!(comm.rank(), 1 | 4);
        let first = comm.allreduce_mean(&[1.0, if bad { f64::NAN } else { 2.0 }]);
        let second = comm.allreduce_mean(&[comm.rank() as f64]);
        (first, second)
    })
    .unwrap();
    for (rank, (first, second)) in results.into_iter().enumerate() {
        match first {
            Err(Error::NonFiniteInput {
                rank: 1,
                index: 1,
                value,
            }) => assert!(value.is_nan()),
            other => panic!("rank {rank}: expected NonFiniteInput from rank 1, got {other:?}"),
        }
        assert_close(&second.unwrap().value, &[2.5], 1e-12, "after the error");
    }
}

#[test]
fn invalid_setups_are_rejected_before_threads_start() {
    let bad_tol = Options {
        config: Config {
            tol: 0.0,
            ..Config::default()
        },
        ..Options::default()
    };
    assert!(matches!(
        threaded::run(3, bad_tol, |_| ()),
        Err(Error::InvalidConfig { field: "tol", .. })
    ));
    let exact_on_ring = Options {
        topology: Topology::Ring,
        ..Options::default()
    };
    assert!(matches!(
        threaded::run(8, exact_on_ring, |_| ()),
        Err(Error::ExactNeedsEdge { .. })
    ));
    assert!(matches!(
        threaded::run(0, Options::default(), |_| ()),
        Err(Error::InvalidGraph { .. })
    ));
}

#[test]
fn a_panicking_rank_is_reported() {
    let err = threaded::run(2, Options::default(), |comm| {
        assert!(comm.rank() != 1, "rank 1 fails on purpose");
    })
    .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err}");
}
