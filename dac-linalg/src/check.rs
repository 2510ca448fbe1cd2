//! One reduction that carries every rank's verdict on its own input next to
//! the data, so that a problem on one rank fails the call on all of them.
//!
//! The reduced vector is `[shape flags (size) | non-finite flags (size) |
//! integers (size × k) | data]`. A rank with a bad input contributes zeros
//! as data and raises its flag; the sum then tells every rank who failed.
//! Integers (local row counts, lengths) are placed at the rank's own slot,
//! so that every rank learns every rank's value exactly (the sum of one
//! integer and zeros, rounded).

use dac_core::{Communicator, Error};
use ndarray::{ArrayBase, Data, Dimension};

use crate::error::{LinalgError, Result};

/// What a rank found wrong with its own input, before any reduction.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    shape: Option<String>,
    non_finite: Option<String>,
}

impl Verdict {
    pub(crate) fn ok() -> Verdict {
        Verdict::default()
    }

    /// Records a local shape problem (the first one is kept).
    pub(crate) fn shape(&mut self, reason: impl FnOnce() -> String) {
        if self.shape.is_none() {
            self.shape = Some(reason());
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
        self.shape.is_none() && self.non_finite.is_none()
    }
}

/// The summed data and the integers of every rank.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) data: Vec<f64>,
    /// `ints[r]`: the `k` integers rank `r` contributed.
    pub(crate) ints: Vec<Vec<usize>>,
}

/// Sums `data` (zeros on a rank whose verdict is bad) and the ranks'
/// `ints` over all ranks, then fails on every rank if any rank's verdict
/// is bad or a member departed. `what` names the data in the error for
/// ranks that contributed vectors of different lengths.
pub(crate) fn reduce_checked<C: Communicator>(
    comm: &mut C,
    verdict: Verdict,
    ints: &[usize],
    data: &[f64],
    what: &str,
) -> Result<Checked> {
    let (size, rank, k) = (comm.size(), comm.rank(), ints.len());
    let mut payload = vec![0.0; size * (2 + k)];
    if verdict.shape.is_some() {
        payload[rank] = 1.0;
    }
    if verdict.non_finite.is_some() {
        payload[size + rank] = 1.0;
    }
    for (j, &v) in ints.iter().enumerate() {
        payload[2 * size + rank * k + j] = v as f64;
    }
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
                found.saturating_sub(size * (2 + k)),
                expected.saturating_sub(size * (2 + k))
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
    let ints = (0..size)
        .map(|r| {
            (0..k)
                .map(|j| sum[2 * size + r * k + j].round().max(0.0) as usize)
                .collect()
        })
        .collect();
    Ok(Checked {
        data: sum[size * (2 + k)..].to_vec(),
        ints,
    })
}
