//! Bayesian linear regression over a replicated job:
//! [`gaussian_linear_replicated`].

use std::collections::BTreeMap;

use dac_core::Communicator;
use ndarray::{Array1, Array2, ArrayBase, Data, Ix1, Ix2};

use super::{Check, Replicated};
use crate::bayes::{Posterior, posterior, precision_of, same_prior};
use crate::check::{Ballot, Verdict, dissenters};
use crate::error::{LinalgError, Result};

/// [`gaussian_linear`](crate::gaussian_linear) for a [`Replicated`] job: the rows of `X` and `y`
/// are cut into the job's partitions, and this rank passes those it holds
/// as `partition id → (X_p, y_p)`.
///
/// One sum of `X_pᵀX_p | X_pᵀy_p` with every partition counted exactly
/// once (a departed holder's partitions come from a standby), whose
/// holders' hashes are compared at the job's checkpoints. The ranks'
/// priors and noise variances are compared in the same reduction.
///
/// # Errors
/// As [`gaussian_linear`](crate::gaussian_linear), except that an invalid prior or `noise_var` on
/// any rank is [`LinalgError::InvalidArgument`] on every rank (naming the
/// ranks that passed one; so are different ones, naming the ranks outside
/// the largest group that agrees), plus [`LinalgError::PartitionLost`],
/// [`LinalgError::ReplicaMismatch`], and [`LinalgError::Shape`] for
/// partitions that are not this rank's. With
/// [`crate::ReplicatedOptions::allow_degraded`] the posterior given the
/// surviving partitions ([`Replicated::lost`] lists the others).
pub fn gaussian_linear_replicated<C, U, V>(
    comm: &mut C,
    job: &mut Replicated,
    parts: &BTreeMap<usize, (Array2<f64>, Array1<f64>)>,
    prior_mean: &ArrayBase<U, Ix1>,
    prior_cov: &ArrayBase<V, Ix2>,
    noise_var: f64,
) -> Result<Posterior>
where
    C: Communicator,
    U: Data<Elem = f64>,
    V: Data<Elem = f64>,
{
    let (rank, size, p) = (comm.rank(), comm.size(), prior_mean.len());
    // A bad prior or partition is found here but reported in the reduction
    // below, so that every rank fails alike even if only this one has it.
    let mut verdict = Verdict::ok();
    let prior_precision = if prior_cov.dim() != (p, p) {
        verdict.argument(|| {
            format!(
                "the prior mean has {p} entries but the prior covariance is {:?}",
                prior_cov.dim()
            )
        });
        None
    } else if !(noise_var > 0.0 && noise_var.is_finite()) {
        verdict.argument(|| format!("noise_var = {noise_var} must be positive"));
        None
    } else if prior_mean
        .iter()
        .chain(prior_cov.iter())
        .any(|v| !v.is_finite())
    {
        verdict.argument(|| "the prior is not finite".into());
        None
    } else {
        let precision = precision_of(prior_cov);
        if precision.is_none() {
            verdict.argument(|| "prior_cov is not symmetric positive definite".into());
        }
        precision
    };
    if let Some((part, (x, y))) = parts
        .iter()
        .find(|(_, (x, y))| x.ncols() != p || y.len() != x.nrows())
    {
        verdict.shape(|| {
            format!(
                "rank {rank}: partition {part} has X {:?} and y of {} entries, expected {p} columns",
                x.dim(),
                y.len()
            )
        });
    }
    let len = p * p + p;
    let contributions = parts
        .iter()
        .map(|(&part, (x, y))| {
            let mut c = Vec::with_capacity(len);
            if verdict.is_ok() {
                c.extend(x.t().dot(x).iter());
                c.extend(x.t().dot(y).iter());
            } else {
                c.resize(len, 0.0);
            }
            (part, c)
        })
        .collect();
    // What every rank must agree on, at this rank's slot: compared after
    // the reduction.
    let fingerprint = if prior_precision.is_some() {
        [
            noise_var,
            prior_mean.iter().sum::<f64>(),
            prior_cov.iter().map(|v| v.abs()).sum::<f64>(),
        ]
    } else {
        [0.0; 3]
    };
    let ballot = Ballot::new(verdict).with_values(&fingerprint);
    let (sums, priors) = job.reduce(comm, len, &contributions, Check::WhenDue, ballot)?;
    let odd = dissenters(&priors.ranks, |a, b| {
        same_prior(priors.values(a), priors.values(b))
    });
    if !odd.is_empty() {
        return Err(LinalgError::InvalidArgument {
            ranks: odd,
            detail: "the ranks pass different priors or noise variances: every rank must \
                     pass the same"
                .into(),
        });
    }
    let Some(prior_precision) = prior_precision else {
        // Unreachable: a bad verdict failed the reduction on every rank.
        return Err(LinalgError::InvalidArgument {
            ranks: vec![rank],
            detail: String::new(),
        });
    };
    let rounds = u32::try_from(sums.rounds).unwrap_or(u32::MAX);
    posterior(
        &prior_precision,
        prior_mean,
        &sums.value,
        noise_var,
        size,
        rounds,
    )
}
