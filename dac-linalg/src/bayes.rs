//! Bayesian updates from data split across ranks: the conjugate Gaussian
//! linear model in information form, and the general form on a grid.

use dac_core::Communicator;
use nalgebra::{DMatrix, DVector};
use ndarray::{Array1, Array2, ArrayBase, ArrayView1, Data, Ix1, Ix2};

use crate::check::{Ballot, Verdict, dissenters, reduce_checked};
use crate::error::{LinalgError, Result};

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
    let ballot = Ballot::new(verdict).with_values(&fingerprint);
    let sums = reduce_checked(comm, ballot, &data, "XᵀX and Xᵀy")?;
    let ranks = sums.ranks.clone();
    let odd = dissenters(&ranks, |a, b| {
        same_prior(sums.tally.values(a), sums.tally.values(b))
    });
    if !odd.is_empty() {
        return Err(LinalgError::InvalidArgument {
            ranks: odd,
            detail: "the ranks pass different priors, noise variances or widths: every rank \
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
pub(crate) fn same_prior(a: &[f64], b: &[f64]) -> bool {
    a.iter()
        .zip(b)
        .all(|(a, b)| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0))
}

/// `prior_cov⁻¹`, or `None` if `prior_cov` is not symmetric positive
/// definite.
pub(crate) fn precision_of<V: Data<Elem = f64>>(
    prior_cov: &ArrayBase<V, Ix2>,
) -> Option<DMatrix<f64>> {
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
pub(crate) fn posterior<U: Data<Elem = f64>>(
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
            detail: "the posterior precision is not positive definite (ill-conditioned prior)"
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
    let sums = reduce_checked(comm, Ballot::new(verdict), &data, "the grid")?;
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
