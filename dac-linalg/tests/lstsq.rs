//! Least squares against a centralised SVD solve.
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use dac_core::{Communicator, threaded};
use dac_linalg::{LinalgError, Lstsq, LstsqOptions, Solver, lstsq};
use nalgebra::DMatrix;
use ndarray::{Array2, Axis, Slice};
use proptest::prelude::*;

fn to_na(a: &Array2<f64>) -> DMatrix<f64> {
    DMatrix::from_fn(a.nrows(), a.ncols(), |i, j| a[(i, j)])
}

/// The minimum-norm least-squares solution, centrally (SVD).
fn reference(a: &Array2<f64>, b: &Array2<f64>) -> DMatrix<f64> {
    let svd = to_na(a).svd(true, true);
    let tol = 1e-10 * svd.singular_values.max();
    svd.solve(&to_na(b), tol).unwrap()
}

fn cond(a: &Array2<f64>) -> f64 {
    let s = to_na(a).singular_values();
    s.max() / s.min()
}

fn rel_err(x: &Array2<f64>, want: &DMatrix<f64>) -> f64 {
    let got = to_na(x);
    (got - want).norm() / want.norm().max(1e-300)
}

/// Solves on `pieces.len()` ranks, rank `i` holding the next `pieces[i]` rows.
fn solve(a: &Array2<f64>, b: &Array2<f64>, pieces: &[usize], options: LstsqOptions) -> Vec<Lstsq> {
    let mut starts = vec![0];
    for p in pieces {
        starts.push(starts.last().unwrap() + p);
    }
    threaded::run(pieces.len(), threaded::Options::default(), |comm| {
        let r = Slice::from(starts[comm.rank()]..starts[comm.rank() + 1]);
        lstsq(
            comm,
            &a.slice_axis(Axis(0), r),
            &b.slice_axis(Axis(0), r),
            &options,
        )
        .unwrap()
    })
    .unwrap()
}

fn noise(i: usize, j: usize) -> f64 {
    ((i * 31 + j * 17) as f64 * 0.618).sin()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn well_conditioned_problems_match_the_central_solve(
        pieces in prop::collection::vec(0usize..12, 1..=8),
        n in 1usize..5,
        k in 1usize..3,
        seed in 0usize..1000,
    ) {
        let m: usize = pieces.iter().sum();
        prop_assume!(m >= n + 2);
        let a = Array2::from_shape_fn((m, n), |(i, j)| noise(i + seed, j) + if i % n == j { 2.0 } else { 0.0 });
        let b = Array2::from_shape_fn((m, k), |(i, j)| noise(i, j + seed) * 5.0);
        prop_assume!(cond(&a) < 1e3);
        let want = reference(&a, &b);
        for r in solve(&a, &b, &pieces, LstsqOptions::default()) {
            prop_assert!(rel_err(&r.x, &want) <= 1e-9, "error {}", rel_err(&r.x, &want));
            prop_assert_eq!(r.solver, Solver::Cholesky);
            let resid = (to_na(&a) * &want - to_na(&b)).norm();
            prop_assert!((r.residual_norm - resid).abs() <= 1e-9 * resid.max(1.0));
        }
    }
}

/// Columns in units 10^4 and more apart, nearly collinear, plus an
/// intercept: cond(A) ≈ 10^6–10^7.
fn badly_scaled() -> (Array2<f64>, Array2<f64>) {
    let m = 240;
    let scales = [1.0, 1e3, 1e-2, 1e2, 1.0];
    let a = Array2::from_shape_fn((m, 6), |(i, j)| {
        let t = i as f64 / m as f64;
        match j {
            5 => 1.0, // intercept
            // Column 3 is nearly column 0 plus column 1 (in their units).
            3 => scales[3] * (t + t * t + 1e-4 * noise(i, 9)),
            _ => scales[j] * (t.powi(j as i32 + 1) + 0.1 * noise(i, j)),
        }
    });
    let b = Array2::from_shape_fn((m, 2), |(i, j)| {
        1.0 + 3.0 * a[(i, 0)] - 2e-4 * a[(i, 1)] + 500.0 * a[(i, 2)] + noise(i, j + 20)
    });
    (a, b)
}

#[test]
fn badly_scaled_problems_keep_their_accuracy() {
    let (a, b) = badly_scaled();
    let c = cond(&a);
    assert!((1e6..=1e7).contains(&c), "cond(A) = {c:e}");
    let want = reference(&a, &b);
    for pieces in [vec![240], vec![100, 0, 140], vec![30; 8]] {
        for r in solve(&a, &b, &pieces, LstsqOptions::default()) {
            let e = rel_err(&r.x, &want);
            assert!(e <= 1e-8, "{pieces:?}: relative error {e:e}, {r:?}");
            assert_eq!(r.solver, Solver::Cholesky);
            assert!(r.condition.is_finite() && r.condition > 1.0);
        }
    }
}

#[test]
fn a_singular_problem_says_so_and_gives_the_minimum_norm_solution() {
    // Column 2 duplicates column 0: AᵀA is singular.
    let m = 50;
    let a = Array2::from_shape_fn((m, 4), |(i, j)| {
        let j = if j == 2 { 0 } else { j };
        noise(i, j) + (i % 4 == j) as usize as f64
    });
    let b = Array2::from_shape_fn((m, 1), |(i, _)| noise(i, 7) * 3.0);
    let want = reference(&a, &b);
    for r in solve(&a, &b, &[20, 30], LstsqOptions::default()) {
        assert_eq!(r.solver, Solver::RankRevealing { rank: 3 });
        assert!(r.condition > 1e14, "condition {:e}", r.condition);
        let e = rel_err(&r.x, &want);
        assert!(e <= 1e-6, "relative error {e:e}");
    }
}

#[test]
fn ridge_matches_its_closed_form() {
    let (m, n) = (40, 3);
    let a = Array2::from_shape_fn((m, n), |(i, j)| noise(i, j));
    let b = Array2::from_shape_fn((m, 1), |(i, _)| noise(i, 5));
    let ridge = 0.7;
    let (an, bn) = (to_na(&a), to_na(&b));
    let lhs = an.transpose() * &an + DMatrix::identity(n, n) * ridge;
    let want = lhs.lu().solve(&(an.transpose() * bn)).unwrap();
    let options = LstsqOptions {
        ridge,
        ..LstsqOptions::default()
    };
    for r in solve(&a, &b, &[13, 27], options) {
        assert!(rel_err(&r.x, &want) <= 1e-10);
    }
}

/// With the intercept exempted, the fit is scikit-learn's `Ridge(alpha =
/// ridge, fit_intercept = True)`, whose closed form centres the data:
/// `β = (X_cᵀX_c + λI)⁻¹ X_cᵀ y_c`, intercept `ȳ − x̄ᵀβ`. Penalising the
/// intercept too (the default) gives another answer.
#[test]
fn ridge_with_an_exempt_intercept_is_scikit_learns_ridge() {
    let (m, p) = (60, 3);
    // Features with a nonzero mean, so the intercept matters.
    let x = Array2::from_shape_fn((m, p), |(i, j)| 3.0 + noise(i, j) * (j + 1) as f64);
    let y: Vec<f64> = (0..m)
        .map(|i| 40.0 + 2.0 * x[(i, 0)] - x[(i, 2)] + noise(i, 7))
        .collect();
    let ridge = 5.0;
    // The closed form, centrally.
    let xm: Vec<f64> = (0..p).map(|j| x.column(j).mean().unwrap()).collect();
    let ym = y.iter().sum::<f64>() / m as f64;
    let xc = DMatrix::from_fn(m, p, |i, j| x[(i, j)] - xm[j]);
    let yc = nalgebra::DVector::from_fn(m, |i, _| y[i] - ym);
    let beta = (xc.transpose() * &xc + DMatrix::identity(p, p) * ridge)
        .lu()
        .solve(&(xc.transpose() * yc))
        .unwrap();
    let intercept = ym - (0..p).map(|j| xm[j] * beta[j]).sum::<f64>();
    // The same model as least squares with a column of ones first.
    let a = Array2::from_shape_fn(
        (m, p + 1),
        |(i, j)| if j == 0 { 1.0 } else { x[(i, j - 1)] },
    );
    let b = Array2::from_shape_fn((m, 1), |(i, _)| y[i]);
    let want = DMatrix::from_fn(
        p + 1,
        1,
        |j, _| if j == 0 { intercept } else { beta[j - 1] },
    );
    let exempt = LstsqOptions {
        ridge,
        intercept: Some(0),
        ..LstsqOptions::default()
    };
    for r in solve(&a, &b, &[17, 0, 43], exempt) {
        assert!(rel_err(&r.x, &want) <= 1e-10, "{}", rel_err(&r.x, &want));
    }
    let all = LstsqOptions {
        ridge,
        ..LstsqOptions::default()
    };
    for r in solve(&a, &b, &[17, 0, 43], all) {
        assert!(rel_err(&r.x, &want) > 1e-3, "{}", rel_err(&r.x, &want));
    }
}

#[test]
fn an_intercept_outside_a_or_different_on_one_rank_fails_every_rank() {
    let a = Array2::from_shape_fn((10, 2), |(i, j)| noise(i, j));
    let b = Array2::from_shape_fn((10, 1), |(i, _)| noise(i, 3));
    let results = threaded::run(3, threaded::Options::default(), |comm| {
        let rank = comm.rank();
        let options = |intercept| LstsqOptions {
            ridge: 1.0,
            intercept,
            ..LstsqOptions::default()
        };
        let outside = lstsq(comm, &a, &b, &options(Some(if rank == 1 { 2 } else { 0 })));
        let differ = lstsq(comm, &a, &b, &options((rank != 2).then_some(0)));
        let fine = lstsq(comm, &a, &b, &options(Some(1)));
        (rank, outside, differ, fine)
    })
    .unwrap();
    for (rank, outside, differ, fine) in results {
        // Every rank names rank 1; rank 1 also says why.
        assert!(
            matches!(&outside, Err(LinalgError::InvalidArgument { ranks, detail })
                if ranks == &vec![1]
                    && (rank != 1 || detail.contains("intercept = 2 is not a column of A"))),
            "{outside:?}"
        );
        assert!(
            matches!(&differ, Err(LinalgError::InvalidArgument { ranks, .. }) if ranks == &vec![2]),
            "{differ:?}"
        );
        assert!(fine.is_ok(), "{fine:?}");
    }
}

#[test]
fn bad_arguments_fail_on_every_rank() {
    let a = Array2::from_shape_fn((10, 2), |(i, j)| noise(i, j));
    let b = Array2::from_shape_fn((10, 1), |(i, _)| noise(i, 3));
    // Rank 1 passes another ridge; rank 2 a negative one in a second call.
    let results = threaded::run(3, threaded::Options::default(), |comm| {
        let rank = comm.rank();
        let ridge = if rank == 1 { 0.5 } else { 0.0 };
        let differ = lstsq(
            comm,
            &a,
            &b,
            &LstsqOptions {
                ridge,
                ..LstsqOptions::default()
            },
        );
        let ridge = if rank == 2 { -1.0 } else { 0.0 };
        let negative = lstsq(
            comm,
            &a,
            &b,
            &LstsqOptions {
                ridge,
                ..LstsqOptions::default()
            },
        );
        let rows = if rank == 0 { 9 } else { 10 };
        let shape = lstsq(
            comm,
            &a,
            &b.slice_axis(Axis(0), Slice::from(..rows)),
            &LstsqOptions::default(),
        );
        (differ, negative, shape)
    })
    .unwrap();
    for (differ, negative, shape) in results {
        assert!(
            matches!(differ, Err(LinalgError::InvalidArgument { .. })),
            "{differ:?}"
        );
        assert!(
            matches!(&negative, Err(LinalgError::InvalidArgument { ranks, .. }) if ranks == &vec![2]),
            "{negative:?}"
        );
        assert!(matches!(shape, Err(LinalgError::Shape { .. })), "{shape:?}");
    }
    // No rows anywhere.
    let empty = Array2::<f64>::zeros((0, 2));
    let none = Array2::<f64>::zeros((0, 1));
    for r in threaded::run(2, threaded::Options::default(), |comm| {
        lstsq(comm, &empty, &none, &LstsqOptions::default())
    })
    .unwrap()
    {
        assert!(matches!(r, Err(LinalgError::Empty { .. })), "{r:?}");
    }
}
