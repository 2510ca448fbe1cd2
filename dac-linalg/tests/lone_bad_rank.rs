//! One rank passes a bad argument (or one the others do not pass): every
//! rank fails alike, naming it, instead of the others waiting for a rank
//! that gave up; and the next call on the same communicators works.
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
    CgOptions, LinalgError, LstsqOptions, Solver, cg, gaussian_linear, grid_posterior, lstsq,
    matvec_rows,
};
use nalgebra::{DMatrix, DVector};
use ndarray::{Array1, Array2, Axis, Slice};
use odd_rank::{ODD, RANKS, assert_names_odd, max_diff, run};

/// Rank `rank`'s rows of a matrix with `RANKS * rows` rows.
fn mine<T: Clone>(a: &ndarray::Array<T, ndarray::Ix2>, rank: usize) -> Array2<T> {
    let rows = a.nrows() / RANKS;
    a.slice_axis(Axis(0), Slice::from(rank * rows..(rank + 1) * rows))
        .to_owned()
}

fn mine_1d(b: &Array1<f64>, rank: usize) -> Array1<f64> {
    let rows = b.len() / RANKS;
    b.slice_axis(Axis(0), Slice::from(rank * rows..(rank + 1) * rows))
        .to_owned()
}

/// The 1-D Poisson matrix (`RANKS * 3` rows), a right-hand side and the
/// central solution.
fn poisson() -> (Array2<f64>, Array1<f64>, Vec<f64>) {
    let n = 3 * RANKS;
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
    (a, b, x.iter().copied().collect())
}

/// `RANKS * 5` rows of a well-conditioned least-squares problem, and the
/// central solution with `ridge`.
fn regression(ridge: f64) -> (Array2<f64>, Array2<f64>, Vec<f64>) {
    let (m, n) = (5 * RANKS, 3);
    let a = Array2::from_shape_fn((m, n), |(i, j)| {
        ((i * 31 + j * 17) as f64 * 0.618).sin() + f64::from(u8::from(i % n == j))
    });
    let b = Array2::from_shape_fn((m, 1), |(i, _)| (i as f64 * 0.37).cos());
    let an = DMatrix::from_fn(m, n, |i, j| a[(i, j)]);
    let bn = DVector::from_fn(m, |i, _| b[(i, 0)]);
    let lhs = an.transpose() * &an + DMatrix::identity(n, n) * ridge;
    let x = lhs.lu().solve(&(an.transpose() * bn)).unwrap();
    (a, b, x.iter().copied().collect())
}

#[test]
fn cg_with_another_max_iter_on_one_rank_fails_every_rank_naming_it() {
    let (a, b, want) = poisson();
    let results = run(|comm| {
        let rank = comm.rank();
        let (a, b) = (mine(&a, rank), mine_1d(&b, rank));
        let options = CgOptions {
            max_iter: if rank == ODD { 2 } else { 1000 },
            ..CgOptions::default()
        };
        let bad = cg(comm, &a, &b, &options);
        let next = cg(comm, &a, &b, &CgOptions::default());
        (bad, next)
    });
    let (bad, next): (Vec<_>, Vec<_>) = results.into_iter().unzip();
    assert_names_odd(&bad);
    for got in next {
        let got = got.unwrap();
        assert!(max_diff(&got.x, &want) <= 1e-9, "{got:?}");
    }
}

#[test]
fn lstsq_with_other_max_refinements_on_one_rank_fails_every_rank_naming_it() {
    let (a, b, want) = regression(0.0);
    let results = run(|comm| {
        let rank = comm.rank();
        let (a, b) = (mine(&a, rank), mine(&b, rank));
        let options = LstsqOptions {
            max_refinements: if rank == ODD { 0 } else { 6 },
            ..LstsqOptions::default()
        };
        let bad = lstsq(comm, &a, &b, &options);
        let next = lstsq(comm, &a, &b, &LstsqOptions::default());
        (bad, next)
    });
    let (bad, next): (Vec<_>, Vec<_>) = results.into_iter().unzip();
    assert_names_odd(&bad);
    for got in next {
        let got = got.unwrap();
        assert!(max_diff(&got.x, &want) <= 1e-10, "{got:?}");
    }
}

#[test]
fn lstsq_with_another_ridge_on_one_rank_names_it_on_every_rank() {
    let (a, b, _) = regression(0.0);
    let results = run(|comm| {
        let rank = comm.rank();
        let options = LstsqOptions {
            ridge: if rank == ODD { 0.5 } else { 0.0 },
            ..LstsqOptions::default()
        };
        lstsq(comm, &mine(&a, rank), &mine(&b, rank), &options)
    });
    assert_names_odd(&results);
}

/// A rank whose condition estimate falls on the other side of
/// `max_condition` (here: because it passes another one) solves as the
/// majority does and takes the same number of reductions.
#[test]
fn lstsq_keeps_every_rank_in_step_when_one_estimates_the_condition_otherwise() {
    let (a, b, want) = regression(0.0);
    for max_refinements in [0, 1, 2] {
        let results = run(|comm| {
            let rank = comm.rank();
            let options = LstsqOptions {
                max_refinements,
                max_condition: if rank == ODD { 0.0 } else { 1e14 },
                ..LstsqOptions::default()
            };
            let fit = lstsq(comm, &mine(&a, rank), &mine(&b, rank), &options);
            let next = lstsq(
                comm,
                &mine(&a, rank),
                &mine(&b, rank),
                &LstsqOptions::default(),
            );
            (fit, next)
        });
        let refinements: Vec<usize> = results
            .iter()
            .map(|(fit, _)| fit.as_ref().unwrap().refinements)
            .collect();
        assert!(
            refinements.iter().all(|&r| r == refinements[0]),
            "{max_refinements}: {refinements:?}"
        );
        for (fit, next) in results {
            let (fit, next) = (fit.unwrap(), next.unwrap());
            assert_eq!(fit.solver, Solver::Cholesky);
            assert!(max_diff(&fit.x, &want) <= 1e-10, "{fit:?}");
            assert!(max_diff(&next.x, &want) <= 1e-10, "{next:?}");
        }
    }
}

#[test]
fn gaussian_linear_with_another_noise_var_on_one_rank_names_it_on_every_rank() {
    let (x, y, _) = regression(0.0);
    let y = y.column(0).to_owned();
    let (m0, s0) = (Array1::zeros(3), Array2::eye(3));
    let results = run(|comm| {
        let rank = comm.rank();
        let noise_var = if rank == ODD { 0.6 } else { 0.5 };
        gaussian_linear(
            comm,
            &mine(&x, rank),
            &mine_1d(&y, rank),
            &m0,
            &s0,
            noise_var,
        )
    });
    assert_names_odd(&results);
}

#[test]
fn grid_posterior_with_a_nan_log_prior_on_one_rank_fails_every_rank_naming_it() {
    // Beta(1, 1) prior; rank r saw r + 1 successes in 4 trials.
    let grid = Array2::from_shape_fn((9, 1), |(i, _)| (i + 1) as f64 / 10.0);
    let results = run(|comm| {
        let rank = comm.rank();
        let s = (rank + 1) as f64;
        let loglik =
            |t: ndarray::ArrayView1<'_, f64>| s * t[0].ln() + (4.0 - s) * (1.0 - t[0]).ln();
        let bad = grid_posterior(
            comm,
            &grid,
            |t| {
                if rank == ODD && t[0] > 0.5 {
                    f64::NAN
                } else {
                    0.0
                }
            },
            loglik,
        );
        let next = grid_posterior(comm, &grid, |_| 0.0, loglik);
        (bad, next)
    });
    // Posterior Beta(1 + 10, 1 + 6) on the grid.
    let log: Vec<f64> = grid
        .column(0)
        .iter()
        .map(|t| 10.0 * t.ln() + 6.0 * (1.0 - t).ln())
        .collect();
    let top = log.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = log.iter().map(|l| (l - top).exp()).collect();
    let total: f64 = w.iter().sum();
    let want: Vec<f64> = w.iter().map(|v| v / total).collect();
    for (rank, (bad, next)) in results.into_iter().enumerate() {
        match bad {
            Err(LinalgError::NonFinite { ranks, detail }) => {
                assert_eq!(ranks, vec![ODD], "rank {rank}");
                assert_eq!(detail.contains("log_prior"), rank == ODD, "{detail}");
            }
            other => panic!("rank {rank}: {other:?}"),
        }
        assert!(max_diff(&next.unwrap(), &want) <= 1e-12);
    }
}

#[test]
fn matvec_rows_with_wider_rows_on_one_rank_names_it_on_every_rank() {
    let results = run(|comm| {
        let n = if comm.rank() == ODD { 3 } else { 2 };
        matvec_rows(comm, &Array2::zeros((2, n)), &Array1::zeros(n))
    });
    assert_same_shape_error_naming(results, &format!("[{ODD}]"));
}

/// Every rank's error is the same Shape reason, which contains `naming`.
fn assert_same_shape_error_naming<T: std::fmt::Debug>(
    results: Vec<Result<T, LinalgError>>,
    naming: &str,
) {
    let reasons: Vec<String> = results
        .into_iter()
        .map(|r| match r {
            Err(LinalgError::Shape { reason }) => reason,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(reasons[0].contains(naming), "{}", reasons[0]);
    assert!(reasons.iter().all(|r| r == &reasons[0]), "{reasons:?}");
}

/// A rank with another number of columns makes the normal equations
/// another length: every rank names it, not the rank that noticed.
#[test]
fn lstsq_with_another_n_on_one_rank_names_it_on_every_rank() {
    // Which rank notices first is a race: repeat it.
    for _ in 0..10 {
        let results = run(|comm| {
            let n = if comm.rank() == ODD { 3 } else { 2 };
            let a = Array2::from_shape_fn((4, n), |(i, j)| (i + 2 * j + comm.rank()) as f64);
            lstsq(comm, &a, &Array2::ones((4, 1)), &LstsqOptions::default())
        });
        assert_same_shape_error_naming(results, &format!("rank {ODD} has"));
    }
}

/// The same for `matvec` with another number of rows.
#[test]
fn matvec_with_another_m_on_one_rank_names_it_on_every_rank() {
    for _ in 0..10 {
        let results = run(|comm| {
            let m = if comm.rank() == ODD { 5 } else { 4 };
            dac_linalg::matvec(comm, &Array2::ones((m, 2)), &Array1::ones(2))
        });
        assert_same_shape_error_naming(results, &format!("rank {ODD} has"));
    }
}
