//! Bayesian updates from data split across ranks: the conjugate Gaussian
//! linear model in information form, and the general form on a grid.

use std::collections::BTreeMap;

use dac_core::Communicator;
use nalgebra::{DMatrix, DVector};
use ndarray::{Array1, Array2, ArrayBase, ArrayView1, Data, Ix1, Ix2};

use crate::check::{Verdict, ballot, dissenters, reduce_checked, slot};
use crate::error::{LinalgError, Result};
use crate::replicated::{Check, Replicated};

/// A Gaussian posterior, the same on every rank.
#[derive(Clone, Debug, PartialEq)]
pub struct Posterior {
    /// Posterior mean (`p`).
    pub mean: Array1<f64>,
    /// Posterior covariance (`p × p`).
    pub cov: Array2<f64>,
    /// Consensus rounds used.
    pub rounds: u32,
}

/// The posterior of `y = X β + ε`, `ε ~ N(0, noise_var·I)`, with the prior
/// `β ~ N(prior_mean, prior_cov)`, from rows of `X` and `y` split across
/// ranks (rank `i` holds `x_rows`, `r_i × p`, and the matching `y`).
///
/// Information form, exact: one reduction sums `X_iᵀX_i` and `X_iᵀy_i`;
/// then `Λ = Σ₀⁻¹ + XᵀX / σ²`, `cov = Λ⁻¹`, `mean = Λ⁻¹ (Σ₀⁻¹ μ₀ + Xᵀy / σ²)`.
/// Feeding the result back as the next prior gives the same answer as one
/// update on all the data. Every rank must pass the same prior and
/// `noise_var`.
///
/// # Errors
/// [`LinalgError::Shape`] (rows of `y`, prior shapes, ranks disagreeing on
/// `p`), [`LinalgError::NonFinite`], [`LinalgError::InvalidArgument`]
/// (`noise_var ≤ 0`, a prior covariance that is not symmetric positive
/// definite, ranks passing different priors), [`LinalgError::Incomplete`],
/// or the reduction's error — on every rank alike, naming the same ranks.
pub fn gaussian_linear<C, S, T, U, V>(
    comm: &mut C,
    x_rows: &ArrayBase<S, Ix2>,
    y: &ArrayBase<T, Ix1>,
    prior_mean: &ArrayBase<U, Ix1>,
    prior_cov: &ArrayBase<V, Ix2>,
    noise_var: f64,
) -> Result<Posterior>
where
    C: Communicator,
    S: Data<Elem = f64>,
    T: Data<Elem = f64>,
    U: Data<Elem = f64>,
    V: Data<Elem = f64>,
{
    let (r, p) = x_rows.dim();
    let mut verdict = Verdict::operands(("X", x_rows), "rows", r, ("y", y));
    if prior_mean.len() != p || prior_cov.dim() != (p, p) {
        verdict.shape(|| {
            format!(
                "X has {p} columns but the prior mean has {} entries and the prior covariance is {:?}",
                prior_mean.len(),
                prior_cov.dim()
            )
        });
    }
    verdict.finite("prior_cov", prior_cov);
    verdict.finite("prior_mean", prior_mean);
    if !(noise_var > 0.0 && noise_var.is_finite()) {
        verdict.argument(|| format!("noise_var = {noise_var} must be positive"));
    }
    let prior_precision = if verdict.is_ok() {
        let precision = precision_of(prior_cov);
        if precision.is_none() {
            verdict.argument(|| "prior_cov is not symmetric positive definite".into());
        }
        precision
    } else {
        None
    };
    let mut data = Vec::with_capacity(p * p + p);
    if verdict.is_ok() {
        data.extend(x_rows.t().dot(x_rows).iter());
        data.extend(x_rows.t().dot(y).iter());
    } else {
        data.resize(p * p + p, 0.0);
    }
    // What every rank must agree on, compared after the reduction.
    let fingerprint = [
        p as f64,
        noise_var,
        prior_mean.iter().sum::<f64>(),
        prior_cov.iter().map(|v| v.abs()).sum::<f64>(),
    ];
    let sums = reduce_checked(comm, verdict, &fingerprint, &data, "XᵀX and Xᵀy")?;
    let ranks: Vec<usize> = (0..comm.size()).collect();
    let odd = dissenters(&ranks, |a, b| same_prior(&sums.meta[a], &sums.meta[b]));
    if !odd.is_empty() {
        return Err(LinalgError::InvalidArgument {
            ranks: odd,
            detail: "; the ranks pass different priors, noise variances or widths: every rank \
                     must pass the same"
                .into(),
        });
    }
    let Some(prior_precision) = prior_precision else {
        // Unreachable: a bad verdict failed the reduction on every rank.
        return Err(LinalgError::InvalidArgument {
            ranks: vec![comm.rank()],
            detail: String::new(),
        });
    };
    posterior(
        &prior_precision,
        prior_mean,
        &sums.data,
        noise_var,
        comm.size(),
        sums.rounds,
    )
}

/// Whether two ranks' fingerprints of their priors (as a reduction
/// returned them) are the same.
fn same_prior(a: &[f64], b: &[f64]) -> bool {
    a.iter()
        .zip(b)
        .all(|(a, b)| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0))
}

/// `prior_cov⁻¹`, or `None` if `prior_cov` is not symmetric positive
/// definite.
fn precision_of<V: Data<Elem = f64>>(prior_cov: &ArrayBase<V, Ix2>) -> Option<DMatrix<f64>> {
    let p = prior_cov.nrows();
    let cov = DMatrix::from_fn(p, p, |i, j| prior_cov[(i, j)]);
    let symmetric = (0..p).all(|i| {
        (0..i).all(|j| (cov[(i, j)] - cov[(j, i)]).abs() <= 1e-12 * cov[(i, j)].abs().max(1e-300))
    });
    let chol = cov.cholesky()?;
    symmetric.then(|| chol.inverse())
}

/// The posterior from the prior and the summed `XᵀX | Xᵀy` (row-major
/// `p × p`, then `p`), on each of the `size` ranks.
fn posterior<U: Data<Elem = f64>>(
    prior_precision: &DMatrix<f64>,
    prior_mean: &ArrayBase<U, Ix1>,
    sums: &[f64],
    noise_var: f64,
    size: usize,
    rounds: u32,
) -> Result<Posterior> {
    let p = prior_mean.len();
    let xtx = DMatrix::from_row_slice(p, p, &sums[..p * p]);
    let xty = DVector::from_column_slice(&sums[p * p..p * p + p]);
    let mu0 = DVector::from_iterator(p, prior_mean.iter().copied());
    let precision = prior_precision + &xtx / noise_var;
    let precision = (&precision + precision.transpose()) * 0.5;
    // Found on every rank alike from the shared sums (short of copies that
    // straddle the edge of positive definiteness in their last bits).
    let Some(chol) = precision.clone().cholesky() else {
        return Err(LinalgError::InvalidArgument {
            ranks: (0..size).collect(),
            detail: "; the posterior precision is not positive definite (ill-conditioned prior)"
                .into(),
        });
    };
    let mean = chol.solve(&(prior_precision * mu0 + xty / noise_var));
    let cov = chol.inverse();
    Ok(Posterior {
        mean: Array1::from_iter(mean.iter().copied()),
        cov: Array2::from_shape_fn((p, p), |(i, j)| 0.5 * (cov[(i, j)] + cov[(j, i)])),
        rounds,
    })
}

/// [`gaussian_linear`] for a [`Replicated`] job: the rows of `X` and `y`
/// are cut into the job's partitions, and this rank passes those it holds
/// as `partition id → (X_p, y_p)`.
///
/// One sum of `X_pᵀX_p | X_pᵀy_p` with every partition counted exactly
/// once (a departed holder's partitions come from a standby), whose
/// holders' hashes are compared at the job's checkpoints. The ranks'
/// priors and noise variances are compared in the same reduction.
///
/// # Errors
/// As [`gaussian_linear`], except that an invalid prior or `noise_var` on
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
    let fingerprints = ballot(rank, size, &fingerprint);
    let (sums, votes) = job.reduce(
        comm,
        len,
        &contributions,
        &fingerprints,
        Check::WhenDue,
        verdict,
    )?;
    let odd = dissenters(&votes.ranks, |a, b| {
        same_prior(slot(&votes.sum, a, 3), slot(&votes.sum, b, 3))
    });
    if !odd.is_empty() {
        return Err(LinalgError::InvalidArgument {
            ranks: odd,
            detail: "; the ranks pass different priors or noise variances: every rank must \
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

/// The seed paper's general form on a grid: `π(θ) ∝ π₀(θ)·exp(Σ_i ln μ_i(θ))`
/// at each grid point `θ` (a row of `grid`), where rank `i` evaluates its own
/// log-likelihood `local_loglik(θ) = ln μ_i(y_i, θ)`. Returns the
/// posterior probabilities of the grid points (summing to 1), the same on
/// every rank.
///
/// One reduction sums the local log-likelihoods; normalising is
/// log-sum-exp safe. A log-likelihood or log-prior of `-∞` (an impossible
/// point) gives that point probability 0.
///
/// # Errors
/// [`LinalgError::NonFinite`] for a `+∞` or NaN log-likelihood or
/// log-prior; [`LinalgError::Shape`] if ranks have grids of different
/// sizes; [`LinalgError::Empty`] for an empty grid or one where every point
/// is impossible; [`LinalgError::Incomplete`]; the reduction's error — on
/// every rank alike (every rank must pass the same `log_prior`).
pub fn grid_posterior<C, S, P, L>(
    comm: &mut C,
    grid: &ArrayBase<S, Ix2>,
    log_prior: P,
    local_loglik: L,
) -> Result<Array1<f64>>
where
    C: Communicator,
    S: Data<Elem = f64>,
    P: Fn(ArrayView1<'_, f64>) -> f64,
    L: Fn(ArrayView1<'_, f64>) -> f64,
{
    let points = grid.nrows();
    let mut verdict = Verdict::ok();
    verdict.finite("grid", grid);
    let ll: Vec<f64> = grid.rows().into_iter().map(&local_loglik).collect();
    if let Some((i, v)) = ll
        .iter()
        .enumerate()
        .find(|(_, v)| v.is_nan() || **v == f64::INFINITY)
    {
        verdict.not_finite(|| format!("local_loglik at grid point {i} is {v}"));
    }
    // Evaluated before the reduction, so that a bad one fails every rank.
    let log_priors: Vec<f64> = grid.rows().into_iter().map(&log_prior).collect();
    if let Some((i, v)) = log_priors
        .iter()
        .enumerate()
        .find(|(_, v)| v.is_nan() || **v == f64::INFINITY)
    {
        verdict.not_finite(|| format!("log_prior at grid point {i} is {v}"));
    }
    // Finite parts, then a count of impossible (−∞) points.
    let mut data: Vec<f64> = ll
        .iter()
        .map(|&v| if v.is_finite() { v } else { 0.0 })
        .collect();
    data.extend(
        ll.iter()
            .map(|&v| f64::from(u8::from(v == f64::NEG_INFINITY))),
    );
    let sums = reduce_checked(comm, verdict, &[points as f64], &data, "the grid")?;
    if points == 0 {
        return Err(LinalgError::Empty {
            what: "an empty grid",
        });
    }
    let log_post: Vec<f64> = log_priors
        .iter()
        .enumerate()
        .map(|(i, &prior)| {
            let impossible = sums.data[points + i] > 0.5 || prior == f64::NEG_INFINITY;
            if impossible {
                f64::NEG_INFINITY
            } else {
                prior + sums.data[i]
            }
        })
        .collect();
    let top = log_post.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if top == f64::NEG_INFINITY {
        return Err(LinalgError::Empty {
            what: "every grid point has probability 0",
        });
    }
    let weights: Vec<f64> = log_post.iter().map(|&l| (l - top).exp()).collect();
    let total: f64 = weights.iter().sum();
    Ok(weights.into_iter().map(|w| w / total).collect())
}
