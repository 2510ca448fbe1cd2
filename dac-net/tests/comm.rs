//! Reductions between members over loopback libp2p, one thread per member.
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_close, exact_mean, input, run_job};
use dac_net::{Comm, Communicator, Topology};

fn mean_and_sum_are_exact(n: usize) {
    for d in [1, 1000, 1_000_000] {
        let results = run_job(
            n,
            |_, b| b,
            |comm| {
                let x = input(comm.rank(), d);
                let mean = comm.allreduce_mean(&x).unwrap();
                let sum = comm.allreduce_sum(&x).unwrap();
                (mean, sum)
            },
        );
        let all: Vec<usize> = (0..n).collect();
        let exact = exact_mean(&all, d);
        let exact_sum: Vec<f64> = exact.iter().map(|m| m * n as f64).collect();
        for (rank, (mean, sum)) in results.iter().enumerate() {
            assert_close(
                &mean.value,
                &exact,
                &format!("n={n} d={d} rank {rank} mean"),
            );
            assert_close(
                &sum.value,
                &exact_sum,
                &format!("n={n} d={d} rank {rank} sum"),
            );
            assert_eq!(mean.contributors.to_vec(), all);
            assert!(mean.residual <= 1e-12, "residual {}", mean.residual);
        }
        // The exact schedule is the default: ⌈log2 n⌉ + 2 rounds at most.
        let bound = (n as f64).log2().ceil() as u32 + 2;
        assert!(results.iter().all(|(m, _)| m.rounds <= bound), "n={n}");
        // Every member holds the same bytes.
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for (rank, (mean, sum)) in results.iter().enumerate() {
            assert_eq!(
                bits(&mean.value),
                bits(&results[0].0.value),
                "n={n} rank {rank}"
            );
            assert_eq!(
                bits(&sum.value),
                bits(&results[0].1.value),
                "n={n} rank {rank}"
            );
        }
    }
}

#[test]
fn one_member() {
    mean_and_sum_are_exact(1);
}

#[test]
fn two_members() {
    mean_and_sum_are_exact(2);
}

#[test]
fn three_members() {
    mean_and_sum_are_exact(3);
}

#[test]
fn eight_members() {
    mean_and_sum_are_exact(8);
}

#[test]
fn a_hundred_reductions_in_sequence() {
    let n = 4;
    let results = run_job(
        n,
        |_, b| b,
        |comm| {
            (0..100)
                .map(|i| {
                    let x: Vec<f64> = input(comm.rank(), 3).iter().map(|v| v * i as f64).collect();
                    comm.allreduce_mean(&x).unwrap().value
                })
                .collect::<Vec<_>>()
        },
    );
    let exact = exact_mean(&[0, 1, 2, 3], 3);
    for values in results {
        for (i, v) in values.iter().enumerate() {
            let want: Vec<f64> = exact.iter().map(|e| e * i as f64).collect();
            assert_close(v, &want, &format!("reduction {i}"));
        }
    }
}

#[test]
fn metropolis_on_a_ring_and_explicit_bootstrap() {
    // Rank 0 listens on a known port; the others join through it.
    let addr = common::free_local_addr();
    let n = 5;
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|rank| {
                let addr = addr.clone();
                scope.spawn(move || {
                    let mut b = Comm::builder()
                        .size(n)
                        .rank(rank)
                        .topology(Topology::Ring)
                        .tol(1e-13);
                    b = if rank == 0 {
                        b.listen(addr)
                    } else {
                        b.bootstrap([addr])
                    };
                    let mut comm = b.build().unwrap();
                    assert_eq!(comm.config().schedule, dac_net::Schedule::Metropolis);
                    let r = comm.allreduce_mean(&input(rank, 2)).unwrap();
                    comm.shutdown().unwrap();
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    let exact = exact_mean(&[0, 1, 2, 3, 4], 2);
    for r in results {
        // Metropolis stops within tol of the mean; compare at that scale.
        for (v, e) in r.value.iter().zip(&exact) {
            assert!((v - e).abs() <= 1e-13 * 10.0, "{v} vs {e}");
        }
        assert!(
            r.rounds > 3,
            "an iterative schedule takes more than a few rounds"
        );
    }
}

/// The iterative schedules end with the same bytes on every member too
/// (one member finishes with its estimate; the others adopt its result):
/// Metropolis and Laplacian on a ring of 6, 10 reductions each.
#[test]
fn the_iterative_schedules_give_every_member_the_same_bytes() {
    let n = 6;
    for schedule in [
        dac_net::Schedule::Metropolis,
        dac_net::Schedule::Laplacian { eps: 0.3 },
    ] {
        let results = run_job(
            n,
            |_, b| b.topology(Topology::Ring).schedule(schedule).tol(1e-10),
            |comm| {
                (0..10)
                    .map(|k| {
                        let mut x = input(comm.rank(), 4);
                        x[0] += k as f64;
                        comm.allreduce_mean(&x).unwrap()
                    })
                    .collect::<Vec<_>>()
            },
        );
        let all: Vec<usize> = (0..n).collect();
        for k in 0..10 {
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let first = bits(&results[0][k].value);
            let mut exact = exact_mean(&all, 4);
            exact[0] += k as f64;
            for (rank, r) in results.iter().enumerate() {
                let what = format!("{schedule:?}, reduction {k}, rank {rank}");
                assert_eq!(bits(&r[k].value), first, "{what}");
                assert_eq!(r[k].contributors.to_vec(), all, "{what}");
                // Within the tolerance of the exact mean.
                let scale = exact.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                for (v, e) in r[k].value.iter().zip(&exact) {
                    assert!((v - e).abs() <= 1e-9 * scale, "{what}: {v} vs {e}");
                }
            }
        }
    }
}
