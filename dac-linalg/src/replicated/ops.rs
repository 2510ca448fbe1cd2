//! Dot products, matrix–vector products and Gram matrices of a
//! [`Replicated`] job's partitions.
//!
//! Each function takes the partitions this rank holds, keyed by partition
//! id, as [`crate::lstsq_replicated`] does. Every contribution is a
//! deterministic function of its partition, so the holders' hashes are
//! compared at the job's checkpoints ([`crate::ReplicatedOptions::checkpoint_every`]).

use std::collections::BTreeMap;

use dac_core::Communicator;
use ndarray::{Array1, Array2};

use super::digest::decode_count;
use super::{Check, PartitionSum, Replicated};
use crate::check::{Ballot, Verdict};
use crate::error::{LinalgError, Result};
use crate::ops::{from_upper_triangle, upper_triangle};

/// Sums `contribution(part)` (`len` values each) over the job's
/// partitions; with a local `problem` (this rank's verdict on its input),
/// this rank contributes zeros and the call fails on every rank.
pub(super) fn sum_parts<C: Communicator, T>(
    comm: &mut C,
    job: &mut Replicated,
    len: usize,
    parts: &BTreeMap<usize, T>,
    problem: Verdict,
    contribution: impl Fn(usize, &T) -> Vec<f64>,
) -> Result<PartitionSum> {
    let contributions = parts
        .iter()
        .map(|(&p, part)| {
            let c = if problem.is_ok() {
                contribution(p, part)
            } else {
                vec![0.0; len]
            };
            (p, c)
        })
        .collect();
    job.reduce(
        comm,
        len,
        &contributions,
        Check::WhenDue,
        Ballot::new(problem),
    )
    .map(|(sum, _)| sum)
}

/// A verdict with the shape problem `problem`, if any.
fn shaped(problem: Option<String>) -> Verdict {
    let mut verdict = Verdict::ok();
    if let Some(reason) = problem {
        verdict.shape(|| reason);
    }
    verdict
}

/// Where each partition's rows sit when a matrix is split by rows into the
/// job's partitions (in partition order): `offsets[p]..offsets[p + 1]`.
#[derive(Debug)]
pub(super) struct PartitionRows {
    pub(super) offsets: Vec<usize>,
    pub(super) rounds: u64,
}

impl PartitionRows {
    /// The rows in all.
    pub(super) fn total(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0)
    }

    /// `rows` of partition `p` placed at its offset in a vector of all the
    /// rows.
    pub(super) fn place(&self, p: usize, rows: &[f64]) -> Vec<f64> {
        let mut full = vec![0.0; self.total()];
        let at = self.offsets[p];
        full[at..at + rows.len()].copy_from_slice(rows);
        full
    }

    /// Sums the row counts of the job's partitions (`rows[p]` for those
    /// this rank holds), with this rank's verdict on its input. A lost
    /// partition fails the call even with
    /// [`crate::ReplicatedOptions::allow_degraded`]: its rows' place is unknown.
    pub(super) fn share<C: Communicator>(
        comm: &mut C,
        job: &mut Replicated,
        rows: &BTreeMap<usize, usize>,
        verdict: Verdict,
    ) -> Result<PartitionRows> {
        let partitions = job.placement().partitions();
        let sums = sum_parts(comm, job, partitions, rows, verdict, |p, &r| {
            let mut c = vec![0.0; partitions];
            c[p] = r as f64;
            c
        })?;
        if let Some(&partition) = sums.lost.first() {
            return Err(LinalgError::PartitionLost { partition });
        }
        let mut offsets = vec![0];
        for &count in &sums.value {
            offsets.push(offsets[offsets.len() - 1] + decode_count(count)?);
        }
        Ok(PartitionRows {
            offsets,
            rounds: sums.rounds,
        })
    }
}

/// [`crate::dot`] for a [`Replicated`] job: `Σ_p x_p · y_p`, where this
/// rank passes the partitions it holds as `partition id → (x_p, y_p)`.
///
/// # Errors
/// [`LinalgError::Shape`] (some `x_p` and `y_p` differ in length, or
/// partitions that are not this rank's), [`LinalgError::NonFinite`],
/// [`LinalgError::Empty`] (no entries at all),
/// [`LinalgError::PartitionLost`], [`LinalgError::ReplicaMismatch`] or the
/// reduction's error, on every rank alike. With
/// [`crate::ReplicatedOptions::allow_degraded`] the sum over the surviving
/// partitions ([`Replicated::lost`] lists the others).
pub fn dot_replicated<C: Communicator>(
    comm: &mut C,
    job: &mut Replicated,
    parts: &BTreeMap<usize, (Array1<f64>, Array1<f64>)>,
) -> Result<f64> {
    let problem = parts.iter().find_map(|(p, (x, y))| {
        (x.len() != y.len()).then(|| {
            format!(
                "rank {}: partition {p} has x of {} entries and y of {}",
                comm.rank(),
                x.len(),
                y.len()
            )
        })
    });
    let sums = sum_parts(comm, job, 2, parts, shaped(problem), |_, (x, y)| {
        vec![x.dot(y), x.len() as f64]
    })?;
    if sums.value[1] < 0.5 {
        return Err(LinalgError::Empty {
            what: "dot of two vectors with no entries",
        });
    }
    Ok(sums.value[0])
}

/// [`crate::matvec_rows`] for a [`Replicated`] job: `A x` for `A` split by
/// rows into the job's partitions (this rank passes its `A_p` by
/// partition id) and the full `x` on every rank. The result has the rows
/// of every partition, in partition order.
///
/// Two sums: the partitions' row counts, then the product.
///
/// # Errors
/// As [`dot_replicated`], with [`LinalgError::Shape`] for an `A_p` whose
/// width is not `x`'s length. A lost partition fails the call even with
/// [`crate::ReplicatedOptions::allow_degraded`] (its rows would be missing).
pub fn matvec_rows_replicated<C: Communicator>(
    comm: &mut C,
    job: &mut Replicated,
    parts: &BTreeMap<usize, Array2<f64>>,
    x: &Array1<f64>,
) -> Result<Array1<f64>> {
    let n = x.len();
    let problem = parts.iter().find_map(|(p, a)| {
        (a.ncols() != n).then(|| {
            format!(
                "rank {}: partition {p} has {} columns but x has {n} entries",
                comm.rank(),
                a.ncols()
            )
        })
    });
    let rows = parts.iter().map(|(&p, a)| (p, a.nrows())).collect();
    let layout = PartitionRows::share(comm, job, &rows, shaped(problem))?;
    let sums = sum_parts(comm, job, layout.total(), parts, Verdict::ok(), |p, a| {
        layout.place(p, &a.dot(x).to_vec())
    })?;
    if let Some(&partition) = sums.lost.first() {
        return Err(LinalgError::PartitionLost { partition });
    }
    Ok(Array1::from(sums.value))
}

/// [`crate::rmatvec`] for a [`Replicated`] job: `Aᵀ y = Σ_p A_pᵀ y_p`
/// (`n` values), where this rank passes its partitions as `partition id →
/// (A_p, y_p)`.
///
/// # Errors
/// As [`dot_replicated`], with [`LinalgError::Shape`] for an `A_p` that is
/// not `n` wide or a `y_p` that does not match its rows.
pub fn rmatvec_replicated<C: Communicator>(
    comm: &mut C,
    job: &mut Replicated,
    n: usize,
    parts: &BTreeMap<usize, (Array2<f64>, Array1<f64>)>,
) -> Result<Array1<f64>> {
    let problem = parts.iter().find_map(|(p, (a, y))| {
        (a.ncols() != n || y.len() != a.nrows()).then(|| {
            format!(
                "rank {}: partition {p} has A {:?} and y of {} entries, expected {n} columns",
                comm.rank(),
                a.dim(),
                y.len()
            )
        })
    });
    let sums = sum_parts(comm, job, n, parts, shaped(problem), |_, (a, y)| {
        a.t().dot(y).to_vec()
    })?;
    Ok(Array1::from(sums.value))
}

/// [`crate::gram`] for a [`Replicated`] job: `AᵀA = Σ_p A_pᵀA_p` (`n × n`,
/// symmetric), where this rank passes its `A_p` by partition id. Only the
/// upper triangle travels (and is hashed).
///
/// # Errors
/// As [`dot_replicated`], with [`LinalgError::Shape`] for an `A_p` that is
/// not `n` wide.
pub fn gram_replicated<C: Communicator>(
    comm: &mut C,
    job: &mut Replicated,
    n: usize,
    parts: &BTreeMap<usize, Array2<f64>>,
) -> Result<Array2<f64>> {
    let problem = parts.iter().find_map(|(p, a)| {
        (a.ncols() != n).then(|| {
            format!(
                "rank {}: partition {p} has {} columns, not {n}",
                comm.rank(),
                a.ncols()
            )
        })
    });
    let sums = sum_parts(
        comm,
        job,
        n * (n + 1) / 2,
        parts,
        shaped(problem),
        |_, a| upper_triangle(&a.t().dot(a)).collect(),
    )?;
    Ok(from_upper_triangle(n, sums.value))
}
