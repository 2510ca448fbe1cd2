//! Replicated conjugate gradient: holders' hashes compared every `k`
//! iterations on an iterate made bit-identical first, a cheating holder
//! caught and its iterations redone, departed holders and publishers,
//! against the central Cholesky solve; over the test communicator of
//! `common`, whose ranks' copies of every result differ in the last bits.
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{Loss, run};
use dac_core::Communicator;
use dac_linalg::{
    Cg, CgOptions, LinalgError, Placement, ReplicaEvent, Replicated, ReplicatedOptions,
    cg_replicated,
};
use nalgebra::{DMatrix, DVector};
use ndarray::{Array1, Array2, Axis, Slice};

const N: usize = 24;
const PARTITIONS: usize = 12;
const RANKS: usize = 6;
const OPTIONS: CgOptions = CgOptions {
    tol: 1e-12,
    max_iter: 200,
};

/// Checks every 3 iterations.
const EVERY_3: ReplicatedOptions = ReplicatedOptions {
    checkpoint_every: 3,
    allow_degraded: false,
};

/// The 1-D Poisson matrix, a right-hand side that is 0 at `zero`, and the
/// central solution.
fn system(zero: usize) -> (Array2<f64>, Array1<f64>, Vec<f64>) {
    let a = Array2::from_shape_fn((N, N), |(i, j)| match i.abs_diff(j) {
        0 => 2.0,
        1 => -1.0,
        _ => 0.0,
    });
    let b = Array1::from_shape_fn(N, |i| {
        if i == zero {
            0.0
        } else {
            1.0 + ((i * 7) as f64 * 0.3).sin()
        }
    });
    let an = DMatrix::from_fn(N, N, |i, j| a[(i, j)]);
    let x = an
        .cholesky()
        .unwrap()
        .solve(&DVector::from_iterator(N, b.iter().copied()));
    (a, b, x.iter().copied().collect())
}

/// Two rows of `a` and `b` per partition.
fn partition(a: &Array2<f64>, b: &Array1<f64>, p: usize) -> (Array2<f64>, Array1<f64>) {
    let rows = Slice::from(2 * p..2 * p + 2);
    (
        a.slice_axis(Axis(0), rows).to_owned(),
        b.slice_axis(Axis(0), rows).to_owned(),
    )
}

/// Solves on every rank, rank `r` holding its partitions of `(a, b)`, or
/// of `cheat.1` when `r == cheat.0`; lost ranks as `losses` say.
#[allow(clippy::type_complexity)]
fn solve(
    pl: &Placement,
    options: ReplicatedOptions,
    (a, b): (&Array2<f64>, &Array1<f64>),
    cheat: Option<(usize, &Array2<f64>)>,
    losses: &[(usize, Loss)],
) -> Vec<(
    Result<Cg, LinalgError>,
    Vec<usize>,
    Vec<usize>,
    Vec<ReplicaEvent>,
)> {
    run(RANKS, losses, |comm| {
        let rank = comm.rank();
        let mine: BTreeMap<usize, _> = pl
            .held_by(rank)
            .into_iter()
            .map(|p| match cheat {
                Some((c, wrong)) if c == rank => (p, partition(wrong, b, p)),
                _ => (p, partition(a, b, p)),
            })
            .collect();
        let mut job = Replicated::new(pl.clone(), options);
        let out = cg_replicated(comm, &mut job, N, &mine, &OPTIONS);
        (out, job.departed(), job.excluded(), job.take_events())
    })
    .into_iter()
    .flatten()
    .collect()
}

fn max_diff(x: &Array1<f64>, want: &[f64]) -> f64 {
    x.iter()
        .zip(want)
        .map(|(u, v)| (u - v).abs())
        .fold(0.0, f64::max)
}

#[test]
fn a_departed_holder_or_publisher_changes_nothing_in_the_solution() {
    let (a, b, want) = system(N);
    let pl = Placement::new(PARTITIONS, RANKS, 2).unwrap();
    let plain = solve(&pl, EVERY_3, (&a, &b), None, &[]);
    let reference = plain[0].0.clone().unwrap();
    assert!(max_diff(&reference.x, &want) <= 1e-9);
    assert!(reference.iterations > 6, "{}", reference.iterations);
    // The same bits on every rank, even without checks: the solution was
    // published.
    let unchecked = ReplicatedOptions {
        checkpoint_every: 0,
        ..EVERY_3
    };
    let never = solve(&pl, unchecked, (&a, &b), None, &[]);
    let first = never[0].0.clone().unwrap();
    assert!(max_diff(&first.x, &want) <= 1e-9);
    for (runs, reference) in [(&plain, &reference), (&never, &first)] {
        for (out, ..) in runs {
            assert_eq!(out.as_ref().unwrap().x, reference.x);
        }
    }
    // Reductions: row counts 0–1 (checked: the job's reduction 0), b 2
    // (the job's reduction 1: not due), iteration 0: publish 3, hashes 4,
    // A p 5; iterations 1–2: 6–7; iteration 3: publish 8, hashes 9, A p 10.
    // The publisher is rank 0.
    for losses in [
        vec![(0, Loss::Before(3))],
        vec![(0, Loss::After(3))],
        vec![(0, Loss::Before(4))],
        vec![(3, Loss::Before(6))],
        vec![(3, Loss::After(6))],
        vec![(0, Loss::Before(8)), (3, Loss::Before(9))],
        vec![(5, Loss::Before(10))],
    ] {
        let survivors = solve(&pl, EVERY_3, (&a, &b), None, &losses);
        assert_eq!(survivors.len(), RANKS - losses.len());
        for (out, departed, excluded, _) in survivors {
            let out = out.unwrap();
            assert!(
                max_diff(&out.x, reference.x.as_slice().unwrap()) <= 1e-9,
                "{losses:?}: {}",
                max_diff(&out.x, reference.x.as_slice().unwrap())
            );
            assert!(max_diff(&out.x, &want) <= 1e-9);
            let mut lost: Vec<usize> = losses.iter().map(|l| l.0).collect();
            lost.sort_unstable();
            assert_eq!((departed, excluded), (lost, vec![]), "{losses:?}");
        }
    }
}

/// The first holder (the contributor) of partition `bad` with one entry of
/// its rows off, in column `zero` where `b` is 0: its contribution is right
/// at iteration 0 (`p = b`) and wrong from iteration 1 on.
fn cheater(pl: &Placement, a: &Array2<f64>, bad: usize, zero: usize) -> (usize, Array2<f64>) {
    let mut wrong = a.clone();
    wrong[(2 * bad, zero)] += 1e-3;
    (pl.holders(bad)[0], wrong)
}

#[test]
fn with_three_replicas_a_cheating_holder_is_excluded_and_its_iterations_are_redone() {
    let (bad, zero) = (2, 16);
    let (a, b, want) = system(zero);
    let pl = Placement::new(PARTITIONS, RANKS, 3).unwrap();
    let (cheat, wrong) = cheater(&pl, &a, bad, zero);
    let results = solve(&pl, EVERY_3, (&a, &b), Some((cheat, &wrong)), &[]);
    assert_eq!(results.len(), RANKS);
    for (out, _, excluded, events) in results {
        let out = out.unwrap();
        assert!(
            max_diff(&out.x, &want) <= 1e-9,
            "{}",
            max_diff(&out.x, &want)
        );
        assert_eq!(excluded, vec![cheat]);
        let mismatches: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, ReplicaEvent::ReplicaMismatch { .. }))
            .collect();
        assert_eq!(
            mismatches,
            vec![&ReplicaEvent::ReplicaMismatch {
                partition: bad,
                ranks: vec![cheat]
            }]
        );
    }
}

#[test]
fn with_two_replicas_a_cheating_holder_fails_every_rank() {
    let (bad, zero) = (2, 16);
    let (a, b, _) = system(zero);
    let pl = Placement::new(PARTITIONS, RANKS, 2).unwrap();
    let (cheat, wrong) = cheater(&pl, &a, bad, zero);
    let results = solve(&pl, EVERY_3, (&a, &b), Some((cheat, &wrong)), &[]);
    assert_eq!(results.len(), RANKS);
    for (out, ..) in results {
        match out {
            Err(LinalgError::ReplicaMismatch { partition, ranks }) => {
                assert_eq!(partition, bad);
                assert!(ranks.contains(&cheat) && ranks.len() == 2, "{ranks:?}");
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
    }
}

#[test]
fn with_one_replica_a_lost_holder_fails_every_survivor_even_when_degraded() {
    let (a, b, _) = system(N);
    let pl = Placement::new(PARTITIONS, RANKS, 1).unwrap();
    let gone = pl.held_by(4);
    for allow_degraded in [false, true] {
        let options = ReplicatedOptions {
            allow_degraded,
            ..EVERY_3
        };
        for (out, ..) in solve(&pl, options, (&a, &b), None, &[(4, Loss::Before(7))]) {
            assert_eq!(
                out.unwrap_err(),
                LinalgError::PartitionLost { partition: gone[0] }
            );
        }
    }
}
