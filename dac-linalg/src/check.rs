//! One reduction that carries every rank's verdict on its own input next to
//! the data, so that a problem on one rank fails the call on all of them.
//!
//! The reduced vector is `[shape flags | non-finite flags | argument flags
//! (size each) | metadata (size × k) | data]`. A rank with a bad input
//! contributes zeros as data and raises its flag; the sum then tells every
//! rank who failed. Metadata (local row counts, lengths, options) sits at
//! the rank's own slot, so that every rank learns every rank's values (the
//! sum of one value and zeros: exact for integers once rounded, and within
//! the reduction's tolerance for the others).

use dac_core::{Communicator, Error};
use ndarray::{ArrayBase, Data, Dimension, Ix2};

use crate::error::{LinalgError, Result};

/// What a rank found wrong with its own input, before any reduction.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    shape: Option<String>,
    non_finite: Option<String>,
    argument: Option<String>,
}

impl Verdict {
    pub(crate) fn ok() -> Verdict {
        Verdict::default()
    }

    /// The verdict on a matrix operand and a second operand that must match
    /// one of its dimensions here: `other` must have `expected` entries (a
    /// vector) or rows (a matrix), `matrix`'s `dimension` on this rank
    /// ("rows" or "columns"), and both must be finite.
    pub(crate) fn operands<S, T, D>(
        (matrix_name, matrix): (&str, &ArrayBase<S, Ix2>),
        dimension: &str,
        expected: usize,
        (other_name, other): (&str, &ArrayBase<T, D>),
    ) -> Verdict
    where
        S: Data<Elem = f64>,
        T: Data<Elem = f64>,
        D: Dimension,
    {
        let mut verdict = Verdict::ok();
        let found = other.shape().first().copied().unwrap_or(0);
        if found != expected {
            let unit = if other.ndim() == 1 { "entries" } else { "rows" };
            verdict.shape(|| {
                format!(
                    "{matrix_name} has {expected} {dimension} here but {other_name} has {found} {unit}"
                )
            });
        }
        verdict.finite(matrix_name, matrix);
        verdict.finite(other_name, other);
        verdict
    }

    /// Records a local shape problem (the first one is kept).
    pub(crate) fn shape(&mut self, reason: impl FnOnce() -> String) {
        if self.shape.is_none() {
            self.shape = Some(reason());
        }
    }

    /// Records an invalid argument (an option out of its range).
    pub(crate) fn argument(&mut self, reason: impl FnOnce() -> String) {
        if self.argument.is_none() {
            self.argument = Some(reason());
        }
    }

    /// Records a non-finite value found otherwise than in an array.
    pub(crate) fn not_finite(&mut self, reason: impl FnOnce() -> String) {
        if self.non_finite.is_none() {
            self.non_finite = Some(reason());
        }
    }

    /// Checks that `a` holds only finite values.
    pub(crate) fn finite<S, D>(&mut self, name: &str, a: &ArrayBase<S, D>)
    where
        S: Data<Elem = f64>,
        D: Dimension,
    {
        if self.non_finite.is_some() {
            return;
        }
        if let Some((index, value)) = a.indexed_iter().find(|(_, v)| !v.is_finite()) {
            self.non_finite = Some(format!("{name}[{index:?}] = {value}"));
        }
    }

    pub(crate) fn is_ok(&self) -> bool {
        self.shape.is_none() && self.non_finite.is_none() && self.argument.is_none()
    }
}

/// The summed data and the metadata of every rank.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) data: Vec<f64>,
    /// `meta[r]`: the `k` values rank `r` contributed.
    pub(crate) meta: Vec<Vec<f64>>,
    /// Consensus rounds the reduction took.
    pub(crate) rounds: u32,
}

impl Checked {
    /// Metadata value `j` of rank `r` as a count.
    pub(crate) fn count(&self, r: usize, j: usize) -> usize {
        self.meta[r][j].round().max(0.0) as usize
    }
}

/// Sums `data` (zeros on a rank whose verdict is bad) and the ranks'
/// `meta` over all ranks, then fails on every rank if any rank's verdict
/// is bad or a member departed. `what` names the data in the error for
/// ranks that contributed vectors of different lengths.
pub(crate) fn reduce_checked<C: Communicator>(
    comm: &mut C,
    verdict: Verdict,
    meta: &[f64],
    data: &[f64],
    what: &str,
) -> Result<Checked> {
    let (size, rank, k) = (comm.size(), comm.rank(), meta.len());
    let head = size * (3 + k);
    let mut payload = vec![0.0; head];
    if verdict.shape.is_some() {
        payload[rank] = 1.0;
    }
    if verdict.non_finite.is_some() {
        payload[size + rank] = 1.0;
    }
    if verdict.argument.is_some() {
        payload[2 * size + rank] = 1.0;
    }
    payload[3 * size + rank * k..3 * size + (rank + 1) * k].copy_from_slice(meta);
    let ok = verdict.is_ok();
    payload.extend(data.iter().map(|&x| if ok { x } else { 0.0 }));
    let reduction = comm.allreduce_sum(&payload).map_err(|e| match e {
        Error::DimensionMismatch {
            rank: r,
            expected,
            found,
        } => LinalgError::Shape {
            reason: format!(
                "{what} differs between ranks: rank {r} has {} values, a neighbour {}",
                found.saturating_sub(head),
                expected.saturating_sub(head)
            ),
        },
        other => LinalgError::Consensus(other),
    })?;
    if reduction.contributors.len() < size {
        return Err(LinalgError::Incomplete {
            departed: (0..size)
                .filter(|&r| !reduction.contributors.contains(r))
                .collect(),
        });
    }
    let rounds = reduction.rounds;
    let sum = reduction.value;
    let flagged =
        |offset: usize| -> Vec<usize> { (0..size).filter(|&r| sum[offset + r] > 0.5).collect() };
    let bad_shape = flagged(0);
    if !bad_shape.is_empty() {
        let mine = verdict
            .shape
            .map(|s| format!("; rank {rank}: {s}"))
            .unwrap_or_default();
        return Err(LinalgError::Shape {
            reason: format!("the local pieces of rank(s) {bad_shape:?} do not fit{mine}"),
        });
    }
    let bad_values = flagged(size);
    if !bad_values.is_empty() {
        return Err(LinalgError::NonFinite {
            ranks: bad_values,
            detail: verdict
                .non_finite
                .map(|s| format!("; here: {s}"))
                .unwrap_or_default(),
        });
    }
    let bad_arguments = flagged(2 * size);
    if !bad_arguments.is_empty() {
        return Err(LinalgError::InvalidArgument {
            ranks: bad_arguments,
            detail: verdict
                .argument
                .map(|s| format!("; here: {s}"))
                .unwrap_or_default(),
        });
    }
    let meta = (0..size)
        .map(|r| sum[3 * size + r * k..3 * size + (r + 1) * k].to_vec())
        .collect();
    Ok(Checked {
        data: sum[head..].to_vec(),
        meta,
        rounds,
    })
}

/// Where this rank's rows sit in a matrix split by rows.
#[derive(Debug)]
pub(crate) struct RowLayout {
    /// Rows held by lower ranks.
    pub(crate) offset: usize,
    /// Rows in all.
    pub(crate) total: usize,
    /// Consensus rounds the reduction took.
    pub(crate) rounds: u32,
}

/// Shares every rank's row count and width (and its verdict) in one
/// checked reduction; fails on every rank if the widths differ.
pub(crate) fn row_layout<C: Communicator>(
    comm: &mut C,
    verdict: Verdict,
    rows: usize,
    cols: usize,
) -> Result<RowLayout> {
    let shapes = reduce_checked(
        comm,
        verdict,
        &[rows as f64, cols as f64],
        &[],
        "the row counts",
    )?;
    let size = comm.size();
    if let Some(other) = (0..size).find(|&o| shapes.count(o, 1) != cols) {
        return Err(LinalgError::Shape {
            reason: format!(
                "rank {} has rows of {cols} columns, rank {other} of {}",
                comm.rank(),
                shapes.count(other, 1)
            ),
        });
    }
    Ok(RowLayout {
        offset: (0..comm.rank()).map(|o| shapes.count(o, 0)).sum(),
        total: (0..size).map(|o| shapes.count(o, 0)).sum(),
        rounds: shapes.rounds,
    })
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array2};

    use super::Verdict;

    /// The second operand must match the named dimension; the first
    /// problem of each kind is the one reported.
    #[test]
    fn operands_name_the_mismatch_and_the_first_non_finite_value() {
        let mut a = Array2::<f64>::zeros((2, 3));
        let x = Array1::<f64>::zeros(2);
        let v = Verdict::operands(("A", &a), "columns", 3, ("x", &x));
        assert_eq!(
            v.shape.as_deref(),
            Some("A has 3 columns here but x has 2 entries")
        );
        assert_eq!(v.non_finite, None);

        let b = Array2::<f64>::zeros((4, 1));
        a[(1, 2)] = f64::NAN;
        let v = Verdict::operands(("A", &a), "rows", 2, ("b", &b));
        assert_eq!(
            v.shape.as_deref(),
            Some("A has 2 rows here but b has 4 rows")
        );
        assert_eq!(v.non_finite.as_deref(), Some("A[(1, 2)] = NaN"));

        let mut y = Array1::<f64>::zeros(2);
        y[1] = f64::INFINITY;
        a[(1, 2)] = 0.0;
        let v = Verdict::operands(("A", &a), "rows", 2, ("y", &y));
        assert!(v.shape.is_none());
        assert_eq!(v.non_finite.as_deref(), Some("y[1] = inf"));
        assert!(!v.is_ok());
    }
}
