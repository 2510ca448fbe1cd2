//! The distributed products against the same products computed centrally.
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use dac_core::{Communicator, threaded};
use dac_linalg::{LinalgError, dot, gram, matvec, matvec_rows, norm2, rmatvec};
use ndarray::{Array1, Array2, Axis, Slice};
use proptest::prelude::*;

/// Splits `0..total` into `parts` consecutive pieces of the given sizes.
fn ranges(sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut start = 0;
    sizes
        .iter()
        .map(|&n| {
            start += n;
            start - n..start
        })
        .collect()
}

fn close(a: f64, b: f64, scale: f64) -> bool {
    (a - b).abs() <= 1e-12 * scale.max(1.0)
}

fn matrix(rows: usize, cols: usize, seed: f64) -> Array2<f64> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        ((i * 7 + j * 13) as f64 * 0.37 + seed).sin() * 10f64.powi((j % 3) as i32)
    })
}

fn vector(n: usize, seed: f64) -> Array1<f64> {
    Array1::from_shape_fn(n, |i| (i as f64 * 1.3 + seed).cos() * 3.0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn products_match_the_central_ones(
        pieces in prop::collection::vec(0usize..6, 1..=8),
        m in 1usize..5,
        seed in -3.0f64..3.0,
    ) {
        let parts = ranges(&pieces);
        let total: usize = pieces.iter().sum();
        let x = vector(total, seed);
        let y = vector(total, seed + 1.0);
        let a = matrix(m, total, seed); // m × total, split by columns
        let b = matrix(total, m, seed); // total × m, split by rows
        let w = vector(m, seed + 2.0);
        let results = threaded::run(pieces.len(), threaded::Options::default(), |comm| {
            let r = Slice::from(parts[comm.rank()].clone());
            let (xi, yi) = (x.slice_axis(Axis(0), r), y.slice_axis(Axis(0), r));
            let (a_cols, b_rows) = (a.slice_axis(Axis(1), r), b.slice_axis(Axis(0), r));
            (
                dot(comm, &xi, &yi),
                norm2(comm, &xi),
                matvec(comm, &a_cols, &xi).unwrap(),
                matvec_rows(comm, &b_rows, &w).unwrap(),
                rmatvec(comm, &b_rows, &yi).unwrap(),
                gram(comm, &b_rows).unwrap(),
            )
        })
        .unwrap();
        let (d, n) = (x.dot(&y), x.dot(&x).sqrt());
        let (ax, bw, bty, btb) = (a.dot(&x), b.dot(&w), b.t().dot(&y), b.t().dot(&b));
        let scale = |v: &Array1<f64>| v.iter().fold(1.0f64, |m, x| m.max(x.abs()));
        for (dr, nr, axr, bwr, btyr, btbr) in results {
            if total == 0 {
                prop_assert!(matches!(dr, Err(LinalgError::Empty { .. })), "dot of nothing");
                prop_assert!(matches!(nr, Err(LinalgError::Empty { .. })), "norm of nothing");
            } else {
                prop_assert!(close(dr.unwrap(), d, x.dot(&x) + y.dot(&y)));
                prop_assert!(close(nr.unwrap(), n, n));
            }
            prop_assert_eq!(axr.len(), m);
            for (u, v) in axr.iter().zip(&ax) { prop_assert!(close(*u, *v, scale(&ax) * 10.0)); }
            prop_assert_eq!(bwr.len(), total);
            for (u, v) in bwr.iter().zip(&bw) { prop_assert!(close(*u, *v, scale(&bw))); }
            for (u, v) in btyr.iter().zip(&bty) { prop_assert!(close(*u, *v, scale(&bty) * 10.0)); }
            prop_assert_eq!(btbr.dim(), (m, m));
            let gs = btb.iter().fold(1.0f64, |m, x| m.max(x.abs()));
            for (u, v) in btbr.iter().zip(&btb) { prop_assert!(close(*u, *v, gs * 10.0)); }
        }
    }
}

/// Runs `body` on `n` ranks and returns the errors every rank got.
fn errors<T: Send + std::fmt::Debug>(
    n: usize,
    body: impl Fn(&mut threaded::ThreadComm<'_>) -> dac_linalg::Result<T> + Sync,
) -> Vec<LinalgError> {
    threaded::run(n, threaded::Options::default(), |comm| body(comm))
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap_err())
        .collect()
}

#[test]
fn a_shape_error_on_one_rank_fails_every_rank() {
    // dot: rank 1's x and y differ in length.
    for e in errors(3, |comm| {
        let y = vector(if comm.rank() == 1 { 3 } else { 4 }, 0.0);
        dot(comm, &vector(4, 0.0), &y)
    }) {
        assert!(
            matches!(&e, LinalgError::Shape { reason } if reason.contains("[1]")),
            "{e}"
        );
    }
    // matvec: rank 2 has another number of rows.
    for e in errors(4, |comm| {
        let m = if comm.rank() == 2 { 4 } else { 3 };
        matvec(comm, &matrix(m, 2, 0.0), &vector(2, 0.0))
    }) {
        assert!(
            matches!(&e, LinalgError::Shape { reason } if reason.contains("A x")),
            "{e}"
        );
    }
    // matvec_rows: rank 0's rows are wider than the others'.
    for e in errors(3, |comm| {
        let n = if comm.rank() == 0 { 3 } else { 2 };
        matvec_rows(comm, &matrix(2, n, 0.0), &vector(n, 0.0))
    }) {
        assert!(matches!(&e, LinalgError::Shape { .. }), "{e}");
    }
    // rmatvec: rank 1's y does not match its rows.
    for e in errors(2, |comm| {
        let r = if comm.rank() == 1 { 2 } else { 3 };
        rmatvec(comm, &matrix(3, 2, 0.0), &vector(r, 0.0))
    }) {
        assert!(
            matches!(&e, LinalgError::Shape { reason } if reason.contains("[1]")),
            "{e}"
        );
    }
}

#[test]
fn non_finite_input_on_one_rank_fails_every_rank_and_the_next_call_works() {
    let results = threaded::run(3, threaded::Options::default(), |comm| {
        let mut a = matrix(2, 3, 0.0);
        if comm.rank() == 2 {
            a[(1, 2)] = f64::NAN;
        }
        let bad = gram(comm, &a);
        let good = gram(comm, &matrix(2, 3, 0.0)).unwrap();
        (comm.rank(), bad, good)
    })
    .unwrap();
    let one = matrix(2, 3, 0.0);
    let want = one.t().dot(&one) * 3.0;
    for (rank, bad, good) in results {
        match bad {
            Err(LinalgError::NonFinite { ranks, detail }) => {
                assert_eq!(ranks, vec![2]);
                assert_eq!(detail.contains("A[(1, 2)] = NaN"), rank == 2, "{detail}");
            }
            other => panic!("rank {rank}: {other:?}"),
        }
        for (u, v) in good.iter().zip(&want) {
            assert!(close(*u, *v, 1e3));
        }
    }
}

#[test]
fn rows_come_back_in_rank_order() {
    let results = threaded::run(4, threaded::Options::default(), |comm| {
        // Rank r holds r rows, each equal to (r, 1).
        let r = comm.rank();
        let rows = Array2::from_shape_fn((r, 2), |(_, j)| if j == 0 { r as f64 } else { 1.0 });
        matvec_rows(comm, &rows, &ndarray::array![10.0, 1.0]).unwrap()
    })
    .unwrap();
    let want = [11.0, 21.0, 21.0, 31.0, 31.0, 31.0];
    for v in results {
        assert_eq!(v.len(), 6);
        for (u, w) in v.iter().zip(want) {
            assert!(close(*u, w, 31.0), "{v:?}");
        }
        assert_eq!(v.len_of(Axis(0)), 6);
    }
}
