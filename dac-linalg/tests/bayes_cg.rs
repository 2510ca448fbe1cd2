//! Bayesian updates and conjugate gradient against closed forms and
//! central solves.
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use dac_core::{Communicator, threaded};
use dac_linalg::{CgOptions, LinalgError, cg, gaussian_linear, grid_posterior};
use nalgebra::{DMatrix, DVector};
use ndarray::{Array1, Array2, Axis, Slice, array};
use proptest::prelude::*;

fn noise(i: usize, j: usize) -> f64 {
    ((i * 31 + j * 17) as f64 * 0.618).sin()
}

fn starts(pieces: &[usize]) -> Vec<usize> {
    let mut s = vec![0];
    for p in pieces {
        s.push(s.last().unwrap() + p);
    }
    s
}

/// The central posterior of the Gaussian linear model.
fn central(
    x: &Array2<f64>,
    y: &Array1<f64>,
    m0: &Array1<f64>,
    s0: &Array2<f64>,
    var: f64,
) -> (DVector<f64>, DMatrix<f64>) {
    let p = x.ncols();
    let xn = DMatrix::from_fn(x.nrows(), p, |i, j| x[(i, j)]);
    let yn = DVector::from_iterator(y.len(), y.iter().copied());
    let p0 = DMatrix::from_fn(p, p, |i, j| s0[(i, j)])
        .try_inverse()
        .unwrap();
    let m0 = DVector::from_iterator(p, m0.iter().copied());
    let cov = (&p0 + xn.transpose() * &xn / var).try_inverse().unwrap();
    let mean = &cov * (p0 * m0 + xn.transpose() * yn / var);
    (mean, cov)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn gaussian_posterior_matches_the_central_one(
        pieces in prop::collection::vec(0usize..10, 1..=8),
        p in 1usize..4,
        seed in 0usize..100,
    ) {
        let m: usize = pieces.iter().sum();
        let x = Array2::from_shape_fn((m, p), |(i, j)| noise(i + seed, j));
        let y = Array1::from_shape_fn(m, |i| noise(i, seed) * 2.0);
        let m0 = Array1::from_shape_fn(p, |j| j as f64 * 0.5);
        let s0 = Array2::from_shape_fn((p, p), |(i, j)| if i == j { 2.0 } else { 0.3 });
        let s = starts(&pieces);
        let results = threaded::run(pieces.len(), threaded::Options::default(), |comm| {
            let r = Slice::from(s[comm.rank()]..s[comm.rank() + 1]);
            gaussian_linear(comm, &x.slice_axis(Axis(0), r), &y.slice_axis(Axis(0), r), &m0, &s0, 0.5).unwrap()
        }).unwrap();
        let (mean, cov) = central(&x, &y, &m0, &s0, 0.5);
        for post in results {
            for j in 0..p {
                prop_assert!((post.mean[j] - mean[j]).abs() <= 1e-9 * mean.amax().max(1.0));
                for k in 0..p {
                    prop_assert!((post.cov[(j, k)] - cov[(j, k)]).abs() <= 1e-9 * cov.amax());
                }
            }
        }
    }
}

#[test]
fn feeding_the_posterior_back_equals_one_update_on_all_the_data() {
    let (m, p) = (30, 2);
    let x = Array2::from_shape_fn((m, p), |(i, j)| noise(i, j));
    let y = Array1::from_shape_fn(m, |i| noise(i, 9));
    let (m0, s0) = (array![0.0, 1.0], array![[1.0, 0.2], [0.2, 3.0]]);
    let results = threaded::run(3, threaded::Options::default(), |comm| {
        let rank = comm.rank();
        let at = |k: usize| Slice::from(k * 10 + rank * 3..k * 10 + rank * 3 + 3);
        // First batch: rows 0..9 (3 per rank), then rows 10..19, 20..29.
        let mut post = gaussian_linear(
            comm,
            &x.slice_axis(Axis(0), at(0)),
            &y.slice_axis(Axis(0), at(0)),
            &m0,
            &s0,
            0.3,
        )
        .unwrap();
        for k in 1..3 {
            post = gaussian_linear(
                comm,
                &x.slice_axis(Axis(0), at(k)),
                &y.slice_axis(Axis(0), at(k)),
                &post.mean,
                &post.cov,
                0.3,
            )
            .unwrap();
        }
        post
    })
    .unwrap();
    let rows: Vec<usize> = (0..3)
        .flat_map(|k| (0..3).flat_map(move |r| k * 10 + r * 3..k * 10 + r * 3 + 3))
        .collect();
    let xs = x.select(Axis(0), &rows);
    let ys = y.select(Axis(0), &rows);
    let (mean, cov) = central(&xs, &ys, &m0, &s0, 0.3);
    for post in results {
        for j in 0..p {
            assert!((post.mean[j] - mean[j]).abs() <= 1e-9);
            for k in 0..p {
                assert!((post.cov[(j, k)] - cov[(j, k)]).abs() <= 1e-9);
            }
        }
    }
}

#[test]
fn a_beta_bernoulli_grid_posterior_matches_the_closed_form() {
    // Prior Beta(2, 3); rank r saw (r + 3) successes in 10 trials.
    let grid = Array2::from_shape_fn((199, 1), |(i, _)| (i + 1) as f64 / 200.0);
    let results = threaded::run(4, threaded::Options::default(), |comm| {
        let s = (comm.rank() + 3) as f64;
        let f = 10.0 - s;
        grid_posterior(
            comm,
            &grid,
            |t| t[0].ln() + 2.0 * (1.0 - t[0]).ln(),
            |t| s * t[0].ln() + f * (1.0 - t[0]).ln(),
        )
        .unwrap()
    })
    .unwrap();
    // Posterior Beta(2 + 18, 3 + 22), normalised on the grid.
    let (a, b) = (20.0, 25.0);
    let log: Vec<f64> = grid
        .column(0)
        .iter()
        .map(|t| (a - 1.0) * t.ln() + (b - 1.0) * (1.0 - t).ln())
        .collect();
    let top = log.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = log.iter().map(|l| (l - top).exp()).collect();
    let total: f64 = w.iter().sum();
    for post in results {
        assert!((post.sum() - 1.0).abs() <= 1e-12);
        for (u, v) in post.iter().zip(&w) {
            assert!((u - v / total).abs() <= 1e-9, "{u} vs {}", v / total);
        }
    }
    // A point impossible on one rank (θ = 0 after a success) gets 0.
    let edge = array![[0.0], [0.5]];
    for post in threaded::run(2, threaded::Options::default(), |comm| {
        let r = comm.rank();
        grid_posterior(
            comm,
            &edge,
            |_| 0.0,
            |t| if r == 0 { t[0].ln() } else { 0.0 },
        )
        .unwrap()
    })
    .unwrap()
    {
        assert_eq!(post.to_vec(), vec![0.0, 1.0]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random uneven splits over 1–8 ranks, some ranks holding no rows.
    #[test]
    fn cg_solves_spd_systems_split_by_rows(
        pieces in prop::collection::vec(0usize..8, 1..=8),
        seed in 0usize..100,
    ) {
        let n: usize = pieces.iter().sum();
        prop_assume!(n > 0);
        // SPD: B Bᵀ + n I.
        let bm = Array2::from_shape_fn((n, n), |(i, j)| noise(i + seed, j));
        let a = bm.dot(&bm.t()) + Array2::<f64>::eye(n) * n as f64;
        let b = Array1::from_shape_fn(n, |i| noise(i, 3 + seed) * 4.0);
        let s = starts(&pieces);
        let options = CgOptions::default();
        let results = threaded::run(pieces.len(), threaded::Options::default(), |comm| {
            let r = Slice::from(s[comm.rank()]..s[comm.rank() + 1]);
            cg(comm, &a.slice_axis(Axis(0), r), &b.slice_axis(Axis(0), r), &options).unwrap()
        })
        .unwrap();
        let an = DMatrix::from_fn(n, n, |i, j| a[(i, j)]);
        let want = an
            .lu()
            .solve(&DVector::from_iterator(n, b.iter().copied()))
            .unwrap();
        let b_norm = b.dot(&b).sqrt();
        for r in results {
            prop_assert!(r.iterations <= n + 1, "{} iterations", r.iterations);
            prop_assert!(r.residual_norm <= options.tol * b_norm);
            // The true residual of the returned x.
            let true_resid = &b - &a.dot(&r.x);
            prop_assert!(true_resid.dot(&true_resid).sqrt() <= 2.0 * options.tol * b_norm);
            for (u, v) in r.x.iter().zip(want.iter()) {
                prop_assert!((u - v).abs() <= 1e-9 * want.amax());
            }
        }
    }
}

#[test]
fn cg_reports_non_convergence_and_bad_systems_on_every_rank() {
    let n = 6;
    // Six distinct eigenvalues: CG needs six iterations.
    let a = Array2::from_diag(&Array1::from_shape_fn(n, |i| (i + 1) as f64));
    let b = Array1::from_elem(n, 1.0);
    let few = CgOptions {
        tol: 1e-14,
        max_iter: 2,
    };
    for r in threaded::run(2, threaded::Options::default(), |comm| {
        let rows = Slice::from(comm.rank() * 3..comm.rank() * 3 + 3);
        cg(
            comm,
            &a.slice_axis(Axis(0), rows),
            &b.slice_axis(Axis(0), rows),
            &few,
        )
    })
    .unwrap()
    {
        assert!(
            matches!(r, Err(LinalgError::NotConverged { iterations: 2, .. })),
            "{r:?}"
        );
    }
    // Not square: 3 + 2 rows of 6 columns.
    for r in threaded::run(2, threaded::Options::default(), |comm| {
        let k = 3 - comm.rank();
        cg(
            comm,
            &a.slice_axis(Axis(0), Slice::from(..k)),
            &b.slice_axis(Axis(0), Slice::from(..k)),
            &CgOptions::default(),
        )
    })
    .unwrap()
    {
        assert!(matches!(r, Err(LinalgError::Shape { .. })), "{r:?}");
    }
    // Negative definite.
    let neg = -&a;
    for r in threaded::run(2, threaded::Options::default(), |comm| {
        let rows = Slice::from(comm.rank() * 3..comm.rank() * 3 + 3);
        cg(
            comm,
            &neg.slice_axis(Axis(0), rows),
            &b.slice_axis(Axis(0), rows),
            &CgOptions::default(),
        )
    })
    .unwrap()
    {
        assert!(
            matches!(r, Err(LinalgError::InvalidArgument { .. })),
            "{r:?}"
        );
    }
}
