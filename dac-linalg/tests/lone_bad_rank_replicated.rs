//! One rank of a replicated job passes a bad argument (or one the others
//! do not pass): every rank fails alike, naming it, instead of the others
//! waiting for a rank that gave up; and the next call on the same
//! communicators works.
//!
//! Over the threaded transport with a 5 s timeout. Code that lets one rank
//! return early leaves the others waiting for it (until the timeout),
//! going on without it, or pairing its next call with their current one:
//! each test asserts the same error on every rank, then checks the next
//! call.
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod odd_rank;

use dac_core::Communicator;
use dac_linalg::{
    CgOptions, LinalgError, LstsqOptions, Placement, Replicated, ReplicatedOptions, cg_replicated,
    gaussian_linear_replicated, lstsq_replicated,
};
use nalgebra::{DMatrix, DVector};
use ndarray::{Array1, Array2, Axis, Slice};
use odd_rank::{ODD, RANKS, assert_names_odd, max_diff, run};
use std::collections::BTreeMap;

const PARTITIONS: usize = 8;
/// Columns of the least-squares problem.
const COLS: usize = 3;

fn placement() -> Placement {
    Placement::new(PARTITIONS, RANKS, 2).unwrap()
}

fn job() -> Replicated {
    Replicated::new(placement(), ReplicatedOptions::default())
}

type Blocks = BTreeMap<usize, (Array2<f64>, Array2<f64>)>;

/// A least-squares problem of 5 rows per partition, `rank`'s partitions of
/// it, and the central solution.
fn regression(rank: usize) -> (Blocks, Vec<f64>) {
    let m = 5 * PARTITIONS;
    let a = Array2::from_shape_fn((m, COLS), |(i, j)| {
        ((i * 31 + j * 17) as f64 * 0.618).sin() + f64::from(u8::from(i % COLS == j))
    });
    let b = Array2::from_shape_fn((m, 1), |(i, _)| (i as f64 * 0.37).cos());
    let an = DMatrix::from_fn(m, COLS, |i, j| a[(i, j)]);
    let bn = DVector::from_fn(m, |i, _| b[(i, 0)]);
    let x = (an.transpose() * &an)
        .lu()
        .solve(&(an.transpose() * bn))
        .unwrap();
    let blocks = placement()
        .held_by(rank)
        .into_iter()
        .map(|p| {
            let rows = Slice::from(5 * p..5 * p + 5);
            (
                p,
                (
                    a.slice_axis(Axis(0), rows).to_owned(),
                    b.slice_axis(Axis(0), rows).to_owned(),
                ),
            )
        })
        .collect();
    (blocks, x.iter().copied().collect())
}

type Rows = BTreeMap<usize, (Array2<f64>, Array1<f64>)>;

/// The 1-D Poisson matrix of `n` rows cut into `placement`'s partitions
/// (equal blocks of rows), `rank`'s partitions of it, and the central
/// solution.
fn poisson(placement: &Placement, n: usize, rank: usize) -> (Rows, Vec<f64>) {
    let a = Array2::from_shape_fn((n, n), |(i, j)| match i.abs_diff(j) {
        0 => 2.0,
        1 => -1.0,
        _ => 0.0,
    });
    let b = Array1::from_shape_fn(n, |i| 1.0 + (i as f64 * 0.7).sin());
    let x = DMatrix::from_fn(n, n, |i, j| a[(i, j)])
        .cholesky()
        .unwrap()
        .solve(&DVector::from_iterator(n, b.iter().copied()));
    let rows = n / placement.partitions();
    let parts = placement
        .held_by(rank)
        .into_iter()
        .map(|p| {
            let r = Slice::from(rows * p..rows * (p + 1));
            (
                p,
                (
                    a.slice_axis(Axis(0), r).to_owned(),
                    b.slice_axis(Axis(0), r).to_owned(),
                ),
            )
        })
        .collect();
    (parts, x.iter().copied().collect())
}

/// Rank `ODD` alone calls `lstsq_replicated` with `odd`: every rank fails
/// naming it, and the next call, with the default options everywhere,
/// pairs up and agrees with the central solve.
fn odd_lstsq_options_fail_every_rank(odd: LstsqOptions) {
    let results = run(|comm| {
        let (blocks, _) = regression(comm.rank());
        let options = if comm.rank() == ODD {
            odd
        } else {
            LstsqOptions::default()
        };
        let bad = lstsq_replicated(comm, &mut job(), (COLS, 1), &blocks, &options);
        let next = lstsq_replicated(
            comm,
            &mut job(),
            (COLS, 1),
            &blocks,
            &LstsqOptions::default(),
        );
        (bad, next)
    });
    let (bad, next): (Vec<_>, Vec<_>) = results.into_iter().unzip();
    assert_names_odd(&bad);
    let (_, want) = regression(0);
    for got in next {
        let got = got.unwrap();
        assert!(max_diff(&got.x, &want) <= 1e-10, "{got:?}");
    }
}

#[test]
fn lstsq_replicated_with_a_negative_ridge_on_one_rank_fails_every_rank_naming_it() {
    odd_lstsq_options_fail_every_rank(LstsqOptions {
        ridge: -1.0,
        ..LstsqOptions::default()
    });
}

#[test]
fn lstsq_replicated_with_another_ridge_on_one_rank_fails_every_rank_naming_it() {
    odd_lstsq_options_fail_every_rank(LstsqOptions {
        ridge: 0.5,
        ..LstsqOptions::default()
    });
}

#[test]
fn lstsq_replicated_with_other_max_refinements_on_one_rank_fails_every_rank_naming_it() {
    let default = LstsqOptions::default();
    assert_ne!(default.max_refinements, 0);
    odd_lstsq_options_fail_every_rank(LstsqOptions {
        max_refinements: 0,
        ..default
    });
}

#[test]
fn cg_replicated_with_a_bad_tol_on_one_rank_fails_every_rank_naming_it() {
    let n = 2 * PARTITIONS;
    let results = run(|comm| {
        let (parts, _) = poisson(&placement(), n, comm.rank());
        let options = CgOptions {
            tol: if comm.rank() == ODD { 0.0 } else { 1e-10 },
            ..CgOptions::default()
        };
        let bad = cg_replicated(comm, &mut job(), n, &parts, &options);
        let next = cg_replicated(comm, &mut job(), n, &parts, &CgOptions::default());
        (bad, next)
    });
    let (bad, next): (Vec<_>, Vec<_>) = results.into_iter().unzip();
    assert_names_odd(&bad);
    let (_, want) = poisson(&placement(), n, 0);
    for got in next {
        let got = got.unwrap();
        assert!(max_diff(&got.x, &want) <= 1e-8, "{got:?}");
    }
}

#[test]
fn cg_replicated_with_another_max_iter_on_one_rank_fails_every_rank_naming_it() {
    let n = 2 * PARTITIONS;
    let results = run(|comm| {
        let (parts, _) = poisson(&placement(), n, comm.rank());
        let options = CgOptions {
            max_iter: if comm.rank() == ODD { 2 } else { 1000 },
            ..CgOptions::default()
        };
        let bad = cg_replicated(comm, &mut job(), n, &parts, &options);
        let next = cg_replicated(comm, &mut job(), n, &parts, &CgOptions::default());
        (bad, next)
    });
    let (bad, next): (Vec<_>, Vec<_>) = results.into_iter().unzip();
    assert_names_odd(&bad);
    let (_, want) = poisson(&placement(), n, 0);
    for got in next {
        let got = got.unwrap();
        assert!(max_diff(&got.x, &want) <= 1e-8, "{got:?}");
    }
}

/// A rank that holds no partition cannot see that its `n` is wrong in its
/// own data: the row counts every rank shares show it.
#[test]
fn cg_replicated_with_another_n_on_a_rank_holding_no_partition_fails_every_rank_naming_it() {
    // Two partitions of one holder each: ranks 2 and 3 hold none.
    let sparse = Placement::new(2, RANKS, 1).unwrap();
    assert!(sparse.held_by(ODD).is_empty());
    let n = 8;
    let results = run(|comm| {
        let (parts, _) = poisson(&sparse, n, comm.rank());
        let job = || Replicated::new(sparse.clone(), ReplicatedOptions::default());
        let mine = if comm.rank() == ODD { n + 1 } else { n };
        let bad = cg_replicated(comm, &mut job(), mine, &parts, &CgOptions::default());
        let next = cg_replicated(comm, &mut job(), n, &parts, &CgOptions::default());
        (bad, next)
    });
    let (_, want) = poisson(&sparse, n, 0);
    for (rank, (bad, next)) in results.into_iter().enumerate() {
        match bad {
            Err(LinalgError::Shape { reason }) => {
                assert!(
                    reason.contains(&format!("[{ODD}]")),
                    "rank {rank}: {reason}"
                );
            }
            other => panic!("rank {rank}: {other:?}"),
        }
        let next = next.unwrap();
        assert!(max_diff(&next.x, &want) <= 1e-8, "{next:?}");
    }
}

#[test]
fn a_placement_for_another_job_size_on_one_rank_fails_every_rank_naming_it() {
    // The same number of partitions and holder slots, for 5 ranks.
    let other = Placement::new(PARTITIONS, RANKS + 1, 2).unwrap();
    let len = 3;
    let contribution = |p: usize| vec![p as f64, 1.0, -0.5 * p as f64];
    let held = |pl: &Placement, rank: usize| -> BTreeMap<usize, Vec<f64>> {
        pl.held_by(rank)
            .into_iter()
            .map(|p| (p, contribution(p)))
            .collect()
    };
    for check in [true, false] {
        let results = run(|comm| {
            let rank = comm.rank();
            let pl = if rank == ODD {
                other.clone()
            } else {
                placement()
            };
            let mut bad_job = Replicated::new(pl.clone(), ReplicatedOptions::default());
            let bad = bad_job.allreduce_sum(comm, len, &held(&pl, rank), check);
            let next = job().allreduce_sum(comm, len, &held(&placement(), rank), check);
            (bad, next)
        });
        let (bad, next): (Vec<_>, Vec<_>) = results.into_iter().unzip();
        assert_names_odd(&bad);
        let want: Vec<f64> = (0..PARTITIONS)
            .map(contribution)
            .fold(vec![0.0; len], |s, c| {
                s.iter().zip(&c).map(|(a, b)| a + b).collect()
            });
        for got in next {
            let got = got.unwrap();
            assert!(max_diff(&got.value, &want) <= 1e-12, "{got:?}");
        }
    }
}

/// The noise variances 0.5, 0.5, 0.8 and 0.2 sum to 4 × 0.5: a sum of the
/// ranks' values alone would let ranks 0 and 1 go on.
#[test]
fn gaussian_linear_replicated_with_other_noise_vars_names_them_on_every_rank() {
    let results = run(|comm| {
        let (blocks, _) = regression(comm.rank());
        let parts: Rows = blocks
            .into_iter()
            .map(|(p, (x, y))| (p, (x, y.column(0).to_owned())))
            .collect();
        let noise_var = [0.5, 0.5, 0.8, 0.2][comm.rank()];
        gaussian_linear_replicated(
            comm,
            &mut job(),
            &parts,
            &Array1::zeros(COLS),
            &Array2::eye(COLS),
            noise_var,
        )
    });
    for (rank, got) in results.iter().enumerate() {
        match got {
            Err(LinalgError::InvalidArgument { ranks, .. }) => {
                assert_eq!(ranks, &vec![2, 3], "rank {rank}: {got:?}");
            }
            other => panic!("rank {rank}: {other:?}"),
        }
    }
}
