//! Least squares over a replicated job: [`lstsq_replicated`].

use std::collections::BTreeMap;

use dac_core::Communicator;
use ndarray::Array2;

use super::{Check, Replicated};
use crate::LinalgError;
use crate::check::{Ballot, Verdict, at_limit};
use crate::error::Result;
use crate::lstsq::{
    Lstsq, LstsqOptions, Refinement, count, solve_and_refine, to_ndarray, unpack_normal,
};
use crate::ops::upper_triangle;

/// [`lstsq`](crate::lstsq) for a [`Replicated`] job: the rows of `A` and `b` are cut
/// into the job's partitions, and this rank passes the partitions it holds
/// as `partition id → (A_p, b_p)`. `shape` is `(n, k)`: the columns of `A`
/// and of `b` (so a rank that holds no partition knows them too).
///
/// The normal equations are summed with every partition counted exactly
/// once. A partition whose contributor departs is added by a standby
/// holder, so the answer is the full-data one. At a checkpoint the
/// holders' hashes of `A_pᵀA_p | A_pᵀb_p` are compared (see
/// [`crate::replicated`]). The refinement steps depend on the current
/// solution, whose copies differ between ranks in the last bits. They are
/// replicated and contributed exactly once, but not hashed.
///
/// # Errors
/// As [`lstsq`](crate::lstsq) (an invalid or different `ridge` on any rank is
/// [`LinalgError::InvalidArgument`] on every rank, naming the ranks that
/// passed one), plus [`LinalgError::PartitionLost`] and
/// [`LinalgError::ReplicaMismatch`]; [`LinalgError::Shape`] also for
/// partitions that are not this rank's or whose shapes differ from
/// `shape`. With [`crate::ReplicatedOptions::allow_degraded`] the answer
/// is the fit to the surviving partitions; check
/// [`Replicated::take_events`] and [`Replicated::departed`] to learn what
/// happened. A partition lost during a refinement step (after the normal
/// equations summed it) makes the call start again over the survivors, so
/// that the steps and the normal matrix always cover the same partitions;
/// `rounds` counts the abandoned attempt too.
pub fn lstsq_replicated<C: Communicator>(
    comm: &mut C,
    job: &mut Replicated,
    shape: (usize, usize),
    parts: &BTreeMap<usize, (Array2<f64>, Array2<f64>)>,
    options: &LstsqOptions,
) -> Result<Lstsq> {
    let mut spent = 0;
    loop {
        let (mut fit, lost_in_normal) = lstsq_replicated_once(comm, job, shape, parts, options)?;
        fit.rounds += spent;
        // `lost` only grows, and every rank sees the same reductions'
        // contributors, so every rank takes the same branch, at most once
        // per partition.
        if job.lost().len() == lost_in_normal {
            return Ok(fit);
        }
        spent = fit.rounds;
    }
}

/// One attempt of [`lstsq_replicated`]: the fit, and how many partitions
/// were lost when the normal equations had been summed.
fn lstsq_replicated_once<C: Communicator>(
    comm: &mut C,
    job: &mut Replicated,
    shape: (usize, usize),
    parts: &BTreeMap<usize, (Array2<f64>, Array2<f64>)>,
    options: &LstsqOptions,
) -> Result<(Lstsq, usize)> {
    let (n, k) = shape;
    let (rank, size) = (comm.rank(), comm.size());
    // Both checks are reported in the reduction below, so that every rank
    // fails alike even if only this one found a problem.
    let mut verdict = Verdict::ok();
    options.check(n, &mut verdict);
    if let Some((p, (a, b))) = parts
        .iter()
        .find(|(_, (a, b))| a.ncols() != n || b.ncols() != k || b.nrows() != a.nrows())
    {
        verdict.shape(|| {
            format!(
                "rank {rank}: partition {p} has A {:?} and b {:?}, expected n = {n} columns of A and k = {k} of b",
                a.dim(),
                b.dim()
            )
        });
    }
    let len = n * (n + 1) / 2 + n * k + 1;
    let contributions: BTreeMap<usize, Vec<f64>> = parts
        .iter()
        .map(|(&p, (a, b))| {
            let mut c = Vec::with_capacity(len);
            if verdict.is_ok() {
                c.extend(upper_triangle(&a.t().dot(a)));
                c.extend(a.t().dot(b).iter());
                c.push(a.nrows() as f64);
            } else {
                c.resize(len, 0.0);
            }
            (p, c)
        })
        .collect();
    // Every rank's ridge options, compared after the reduction.
    let ballot = Ballot::new(verdict).with_values(&options.votes());
    let (sums, ridges) = job.reduce(comm, len, &contributions, Check::WhenDue, ballot)?;
    options.agreed(&ridges.ranks, |r| ridges.values(r))?;
    if n == 0 || sums.value[len - 1] < 0.5 {
        return Err(LinalgError::Empty {
            what: "least squares without rows or columns",
        });
    }
    let lost_in_normal = job.lost().len();
    let (g, c) = unpack_normal(&sums.value, n, k);
    let fit = solve_and_refine(&g, &c, options, sums.rounds, |x, vote| {
        let xa = to_ndarray(x);
        let steps: BTreeMap<usize, Vec<f64>> = parts
            .iter()
            .map(|(&p, (a, b))| {
                let resid = b - &a.dot(&xa);
                let mut data: Vec<f64> = a.t().dot(&resid).iter().copied().collect();
                data.push(resid.iter().map(|v| v * v).sum());
                (p, data)
            })
            .collect();
        let ballot = Ballot::ok().with_votes(&vote);
        let (step, votes) = job.reduce(comm, n * k + 1, &steps, Check::No, ballot)?;
        let limit = at_limit(
            (rank, size),
            vote[2] > 0.5,
            (count(votes.votes[2]), votes.ranks.len()),
            "max_refinements",
            |flags| job.sum_ballot(comm, flags),
        )?;
        Ok(Refinement {
            grad: step.value[..n * k].to_vec(),
            residual2: step.value[n * k],
            stop_votes: votes.votes[0],
            cholesky_votes: votes.votes[1],
            voters: votes.ranks.len(),
            limit,
            abandon: job.lost().len() != lost_in_normal,
            rounds: step.rounds,
        })
    })?;
    Ok((fit, lost_in_normal))
}
