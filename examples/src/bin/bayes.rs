//! `bayes`: Bayesian updates from data split across ranks.
//!
//! ```text
//! target/debug/dacrun -n 4 -- target/debug/bayes
//! ```
//!
//! 1. A conjugate Gaussian linear model `y = X β + ε`, `ε ~ N(0, σ²)`, prior
//!    `β ~ N(0, 10·I)`, 2000 observations split by rows: the posterior of
//!    `dac_linalg::gaussian_linear` against the closed form on all the data,
//!    and again as two updates, the first posterior the second prior.
//! 2. A coin's bias `θ` from 600 tosses split across ranks, prior
//!    Beta(2, 2), on a grid of 199 points: `dac_linalg::grid_posterior`
//!    against the Beta posterior on the same grid.

use std::process::ExitCode;

use clap::Parser;
use dac_examples::{BoxError, Check, Comm, EXIT_STATUSES, block, run_with, uniform};
use dac_linalg::gaussian_linear;
use nalgebra::{DMatrix, DVector};
use ndarray::{Array1, Array2, Axis};

const TOL: f64 = 1e-9;
const BETA: [f64; 3] = [1.0, -2.0, 0.5];
const NOISE_VAR: f64 = 0.25;

/// Observation `i`: a row of `X` and `y` (Box–Muller noise of variance σ²).
fn observation(i: usize) -> ([f64; 3], f64) {
    let x = [1.0, uniform(5, i as u64), 3.0 * uniform(6, i as u64)];
    let (u, v) = ((uniform(7, i as u64) + 1.0) / 2.0, uniform(8, i as u64));
    let noise = (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::PI * v).cos();
    (
        x,
        x.iter().zip(BETA).map(|(a, b)| a * b).sum::<f64>() + NOISE_VAR.sqrt() * noise,
    )
}

/// Bayesian updates from data split across ranks: a Gaussian linear model
/// (in one update and in two) and a coin's bias on a grid. No arguments.
#[derive(Parser)]
#[command(version, after_help = EXIT_STATUSES)]
struct Args {}

fn body(comm: &mut Comm, check: &mut Check) -> Result<(), BoxError> {
    let (m, p, tosses) = (2000, BETA.len(), 600);
    if check.verbose() {
        println!(
            "{m} observations and {tosses} coin tosses over {} rank(s)",
            comm.size()
        );
    }
    let rows = block(m, comm.rank(), comm.size());
    let (x, y): (Vec<[f64; 3]>, Vec<f64>) = rows.map(observation).unzip();
    let x = Array2::from_shape_fn((x.len(), p), |(i, j)| x[i][j]);
    let y = Array1::from(y);
    let (mean0, cov0) = (Array1::zeros(p), Array2::eye(p) * 10.0);
    let post = gaussian_linear(comm, &x, &y, &mean0, &cov0, NOISE_VAR)?;
    // Two updates: the first half of each rank's rows, then the rest.
    let half = x.nrows() / 2;
    let (x1, x2) = x.view().split_at(Axis(0), half);
    let (y1, y2) = y.view().split_at(Axis(0), half);
    let first = gaussian_linear(comm, &x1, &y1, &mean0, &cov0, NOISE_VAR)?;
    let second = gaussian_linear(comm, &x2, &y2, &first.mean, &first.cov, NOISE_VAR)?;

    // The closed form on all the data in one process.
    let (xs, ys): (Vec<[f64; 3]>, Vec<f64>) = (0..m).map(observation).unzip();
    let xa = DMatrix::from_fn(m, p, |i, j| xs[i][j]);
    let precision = DMatrix::identity(p, p) / 10.0 + xa.transpose() * &xa / NOISE_VAR;
    let cov = precision.try_inverse().ok_or("singular precision")?;
    let mean = &cov * (xa.transpose() * DVector::from_vec(ys)) / NOISE_VAR;
    let cov_rows = cov.transpose(); // row-major order, like ndarray's
    check.vector("posterior mean", &post.mean, &mean, TOL);
    check.vector("posterior covariance", &post.cov, &cov_rows, TOL);
    check.vector("mean after two updates", &second.mean, &mean, TOL);
    check.vector("covariance after two updates", &second.cov, &cov_rows, TOL);

    // A coin with P(heads) = 0.3: toss i is heads when its number < 0.3.
    let heads = |i: usize| (uniform(9, i as u64) + 1.0) / 2.0 < 0.3;
    let mine = block(tosses, comm.rank(), comm.size());
    let (k, t) = (
        mine.clone().filter(|&i| heads(i)).count() as f64,
        mine.len() as f64,
    );
    let grid = Array2::from_shape_fn((199, 1), |(i, _)| (i + 1) as f64 / 200.0);
    let weights = dac_linalg::grid_posterior(
        comm,
        &grid,
        |th| th[0].ln() + (1.0 - th[0]).ln(),
        |th| k * th[0].ln() + (t - k) * (1.0 - th[0]).ln(),
    )?;
    // Beta(2 + K, 2 + T − K) on the grid, normalised (log-sum-exp).
    let k_all = (0..tosses).filter(|&i| heads(i)).count() as f64;
    let log: Vec<f64> = (1..200)
        .map(|i| i as f64 / 200.0)
        .map(|th| (1.0 + k_all) * th.ln() + (1.0 + tosses as f64 - k_all) * (1.0 - th).ln())
        .collect();
    let top = log.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = log.iter().map(|l| (l - top).exp()).sum();
    let beta: Vec<f64> = log.iter().map(|l| (l - top).exp() / total).collect();
    check.vector("grid posterior of θ", &weights, &beta, TOL);
    Ok(())
}

fn main() -> ExitCode {
    run_with("bayes", |_: Args, comm, check| body(comm, check))
}
