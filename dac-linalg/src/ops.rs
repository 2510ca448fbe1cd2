//! Dot products, norms and matrix–vector products of distributed data.

use dac_core::Communicator;
use ndarray::{Array1, Array2, ArrayBase, Data, Ix1, Ix2};

use crate::check::{Ballot, RowLayout, Verdict, reduce_checked, row_layout};
use crate::error::{LinalgError, Result};

/// `Σ_i x_i · y_i`: the dot product of two vectors split across ranks
/// (any split, including empty pieces; each rank's `x_i` and `y_i` have the
/// same length).
///
/// # Errors
/// [`LinalgError::Shape`] if some rank's `x_i` and `y_i` differ in length,
/// [`LinalgError::NonFinite`], [`LinalgError::Empty`] if the global vectors
/// are empty, [`LinalgError::Incomplete`] if a member departed, or the
/// reduction's error — on every rank alike.
pub fn dot<C, S, T>(comm: &mut C, x: &ArrayBase<S, Ix1>, y: &ArrayBase<T, Ix1>) -> Result<f64>
where
    C: Communicator,
    S: Data<Elem = f64>,
    T: Data<Elem = f64>,
{
    let mut verdict = Verdict::ok();
    if x.len() != y.len() {
        verdict.shape(|| format!("x has {} entries, y has {}", x.len(), y.len()));
    }
    verdict.finite("x", x);
    verdict.finite("y", y);
    let local = if verdict.is_ok() { x.dot(y) } else { 0.0 };
    let ballot = Ballot::new(verdict).with_values(&[x.len() as f64]);
    let checked = reduce_checked(comm, ballot, &[local], "the dot product")?;
    if (0..comm.size()).all(|r| checked.tally.count(r, 0) == 0) {
        return Err(LinalgError::Empty {
            what: "dot of two vectors with no entries",
        });
    }
    Ok(checked.data[0])
}

/// `‖x‖₂` of a vector split across ranks.
///
/// The local sums of squares are added, so entries beyond about `1e154`
/// overflow; the reduction then fails with an overflow error.
///
/// # Errors
/// As [`dot`].
pub fn norm2<C, S>(comm: &mut C, x: &ArrayBase<S, Ix1>) -> Result<f64>
where
    C: Communicator,
    S: Data<Elem = f64>,
{
    dot(comm, x, x).map(f64::sqrt)
}

/// `A x` for `A` partitioned by columns: rank `i` holds the columns
/// `a_cols` (`m × k_i`) and the matching entries `x` (`k_i`); every rank
/// gets the full `A x` (`m`). Pieces may have no columns.
///
/// # Errors
/// [`LinalgError::Shape`] if a rank's `x` does not match its columns or the
/// ranks disagree on `m`; [`LinalgError::NonFinite`];
/// [`LinalgError::Incomplete`]; the reduction's error.
pub fn matvec<C, S, T>(
    comm: &mut C,
    a_cols: &ArrayBase<S, Ix2>,
    x: &ArrayBase<T, Ix1>,
) -> Result<Array1<f64>>
where
    C: Communicator,
    S: Data<Elem = f64>,
    T: Data<Elem = f64>,
{
    let (m, k) = a_cols.dim();
    let verdict = Verdict::operands(("A", a_cols), "columns", k, ("x", x));
    let local = if verdict.is_ok() {
        a_cols.dot(x)
    } else {
        Array1::zeros(m)
    };
    let checked = reduce_checked(comm, Ballot::new(verdict), &local.to_vec(), "A x")?;
    Ok(Array1::from(checked.data))
}

/// `A x` for `A` partitioned by rows: rank `i` holds the rows `a_rows`
/// (`r_i × n`) and the full `x` (`n`); every rank gets the full `A x`
/// (`Σ r_i`, in rank order). Takes two reductions (the row counts, then the
/// product).
///
/// # Errors
/// [`LinalgError::Shape`] if a rank's `x` does not match its columns or the
/// ranks disagree on `n`; as [`matvec`] otherwise.
pub fn matvec_rows<C, S, T>(
    comm: &mut C,
    a_rows: &ArrayBase<S, Ix2>,
    x: &ArrayBase<T, Ix1>,
) -> Result<Array1<f64>>
where
    C: Communicator,
    S: Data<Elem = f64>,
    T: Data<Elem = f64>,
{
    let (r, n) = a_rows.dim();
    let verdict = Verdict::operands(("A", a_rows), "columns", n, ("x", x));
    let ok = verdict.is_ok();
    let RowLayout { offset, total, .. } = row_layout(comm, verdict, r, n)?;
    let mut full = vec![0.0; total];
    if ok {
        for (slot, v) in full[offset..offset + r].iter_mut().zip(a_rows.dot(x)) {
            *slot = v;
        }
    }
    let checked = reduce_checked(comm, Ballot::ok(), &full, "A x")?;
    Ok(Array1::from(checked.data))
}

/// `Aᵀ y` for `A` partitioned by rows: rank `i` holds the rows `a_rows`
/// (`r_i × n`) and the matching entries `y` (`r_i`); every rank gets the
/// full `Aᵀ y` (`n`).
///
/// # Errors
/// As [`matvec`].
pub fn rmatvec<C, S, T>(
    comm: &mut C,
    a_rows: &ArrayBase<S, Ix2>,
    y: &ArrayBase<T, Ix1>,
) -> Result<Array1<f64>>
where
    C: Communicator,
    S: Data<Elem = f64>,
    T: Data<Elem = f64>,
{
    let (r, n) = a_rows.dim();
    let verdict = Verdict::operands(("A", a_rows), "rows", r, ("y", y));
    let local = if verdict.is_ok() {
        a_rows.t().dot(y)
    } else {
        Array1::zeros(n)
    };
    let checked = reduce_checked(comm, Ballot::new(verdict), &local.to_vec(), "Aᵀ y")?;
    Ok(Array1::from(checked.data))
}

/// `AᵀA` for `A` partitioned by rows (rank `i` holds `a_rows`, `r_i × n`):
/// the sum of the local Gram matrices, symmetric, on every rank. Only the
/// upper triangle travels.
///
/// # Errors
/// [`LinalgError::Shape`] if the ranks disagree on `n`;
/// [`LinalgError::NonFinite`]; [`LinalgError::Incomplete`]; the
/// reduction's error.
pub fn gram<C, S>(comm: &mut C, a_rows: &ArrayBase<S, Ix2>) -> Result<Array2<f64>>
where
    C: Communicator,
    S: Data<Elem = f64>,
{
    let n = a_rows.ncols();
    let mut verdict = Verdict::ok();
    verdict.finite("A", a_rows);
    let mut upper = Vec::with_capacity(n * (n + 1) / 2);
    if verdict.is_ok() {
        upper.extend(upper_triangle(&a_rows.t().dot(a_rows)));
    } else {
        upper.resize(n * (n + 1) / 2, 0.0);
    }
    let checked = reduce_checked(comm, Ballot::new(verdict), &upper, "the Gram matrix")?;
    Ok(from_upper_triangle(n, checked.data))
}

/// The upper triangle of the square matrix `g`, row by row: what travels
/// for a symmetric matrix.
pub(crate) fn upper_triangle(g: &Array2<f64>) -> impl Iterator<Item = f64> + '_ {
    let n = g.nrows();
    (0..n).flat_map(move |i| (i..n).map(move |j| g[(i, j)]))
}

/// The symmetric `n × n` matrix whose upper triangle, row by row, starts
/// `values` (missing values are 0).
pub(crate) fn from_upper_triangle(n: usize, values: impl IntoIterator<Item = f64>) -> Array2<f64> {
    let mut g = Array2::zeros((n, n));
    let mut next = values.into_iter();
    for i in 0..n {
        for j in i..n {
            let v = next.next().unwrap_or(0.0);
            g[(i, j)] = v;
            g[(j, i)] = v;
        }
    }
    g
}
