//! Distributed linear algebra and Bayesian updates over a [`Comm`].
//!
//! Each function copies its array arguments once (so that the call can
//! run on a worker thread, see [`crate::blocking`]) and returns numpy
//! arrays without a copy. A copy that fails on one member fails the call
//! on every member (see [`Comm::arguments`]).

use dac_linalg::{CgOptions, LstsqOptions, Solver};
use numpy::ndarray::{Array1, Array2};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::arrays::{owned1, owned2};
use crate::comm::Comm;
use crate::results::{CgOut, LstsqOut, PosteriorOut};

/// `x · y` for vectors split across ranks.
#[pyfunction]
pub fn dot<'py>(
    py: Python<'py>,
    comm: &Bound<'py, Comm>,
    x: PyReadonlyArray1<'py, f64>,
    y: PyReadonlyArray1<'py, f64>,
) -> PyResult<f64> {
    let comm = comm.get();
    let (x, y) = comm.arguments(py, || Ok((owned1(&x)?, owned1(&y)?)))?;
    comm.call(py, move |c| Ok(dac_linalg::dot(c, &x, &y)?))
}

/// `‖x‖₂` for a vector split across ranks.
#[pyfunction]
pub fn norm<'py>(
    py: Python<'py>,
    comm: &Bound<'py, Comm>,
    x: PyReadonlyArray1<'py, f64>,
) -> PyResult<f64> {
    let comm = comm.get();
    let x = comm.arguments(py, || owned1(&x))?;
    comm.call(py, move |c| Ok(dac_linalg::norm2(c, &x)?))
}

/// `A x` for `A` split by columns (this rank's columns and entries of `x`).
#[pyfunction]
pub fn matvec<'py>(
    py: Python<'py>,
    comm: &Bound<'py, Comm>,
    a_cols: PyReadonlyArray2<'py, f64>,
    x: PyReadonlyArray1<'py, f64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let comm = comm.get();
    let (a, x) = comm.arguments(py, || Ok((owned2(&a_cols)?, owned1(&x)?)))?;
    let y = comm.call(py, move |c| Ok(dac_linalg::matvec(c, &a, &x)?))?;
    Ok(y.into_pyarray(py))
}

/// Least squares `min ‖A x − b‖² + ridge‖x‖²` for rows split across ranks
/// (`intercept`: a column left out of the penalty).
#[pyfunction]
pub fn lstsq<'py>(
    py: Python<'py>,
    comm: &Bound<'py, Comm>,
    a_rows: PyReadonlyArray2<'py, f64>,
    b: PyReadonlyArray2<'py, f64>,
    ridge: f64,
    intercept: Option<usize>,
) -> PyResult<LstsqOut> {
    let comm = comm.get();
    let (a, b) = comm.arguments(py, || Ok((owned2(&a_rows)?, owned2(&b)?)))?;
    let options = LstsqOptions {
        ridge,
        intercept,
        ..LstsqOptions::default()
    };
    let r = comm.call(py, move |c| Ok(dac_linalg::lstsq(c, &a, &b, &options)?))?;
    let (solver, rank) = match r.solver {
        Solver::Cholesky => ("cholesky", None),
        Solver::RankRevealing { rank } => ("rank-revealing", Some(rank)),
    };
    Ok(LstsqOut {
        x: r.x.into_pyarray(py).unbind(),
        residual_norm: r.residual_norm,
        condition: r.condition,
        rounds: r.rounds,
        solver,
        rank,
        refinements: r.refinements,
    })
}

/// Conjugate gradients for a symmetric positive definite `A` split by
/// rows.
#[pyfunction]
pub fn cg<'py>(
    py: Python<'py>,
    comm: &Bound<'py, Comm>,
    a_rows: PyReadonlyArray2<'py, f64>,
    b: PyReadonlyArray1<'py, f64>,
    tol: f64,
    max_iter: usize,
) -> PyResult<CgOut> {
    let comm = comm.get();
    let (a, b) = comm.arguments(py, || Ok((owned2(&a_rows)?, owned1(&b)?)))?;
    let options = CgOptions { tol, max_iter };
    let r = comm.call(py, move |c| Ok(dac_linalg::cg(c, &a, &b, &options)?))?;
    Ok(CgOut {
        x: r.x.into_pyarray(py).unbind(),
        iterations: r.iterations,
        residual_norm: r.residual_norm,
        rounds: r.rounds,
    })
}

/// The Gaussian linear posterior from rows split across ranks.
#[pyfunction]
pub fn gaussian_linear<'py>(
    py: Python<'py>,
    comm: &Bound<'py, Comm>,
    x_rows: PyReadonlyArray2<'py, f64>,
    y: PyReadonlyArray1<'py, f64>,
    prior_mean: PyReadonlyArray1<'py, f64>,
    prior_cov: PyReadonlyArray2<'py, f64>,
    noise_var: f64,
) -> PyResult<PosteriorOut> {
    let comm = comm.get();
    let (x, y, m, s) = comm.arguments(py, || {
        Ok((
            owned2(&x_rows)?,
            owned1(&y)?,
            owned1(&prior_mean)?,
            owned2(&prior_cov)?,
        ))
    })?;
    let p = comm.call(py, move |c| {
        Ok(dac_linalg::gaussian_linear(c, &x, &y, &m, &s, noise_var)?)
    })?;
    Ok(PosteriorOut {
        mean: p.mean.into_pyarray(py).unbind(),
        cov: p.cov.into_pyarray(py).unbind(),
        rounds: p.rounds,
    })
}

/// The grid posterior from the log-prior and this rank's log-likelihood,
/// already evaluated at every grid point (the Python wrapper evaluates
/// them, so that no Python code runs on the worker thread).
#[pyfunction]
pub fn grid_posterior<'py>(
    py: Python<'py>,
    comm: &Bound<'py, Comm>,
    log_prior: PyReadonlyArray1<'py, f64>,
    local_loglik: PyReadonlyArray1<'py, f64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let comm = comm.get();
    let (prior, loglik) =
        comm.arguments(py, || Ok((owned1(&log_prior)?, owned1(&local_loglik)?)))?;
    let posterior = comm.call(py, move |c| {
        // The grid handed to the Rust function is the point index, which
        // the two closures look their values up by.
        let points = prior.len().max(loglik.len());
        let index = Array2::from_shape_fn((points, 1), |(i, _)| i as f64);
        let at = |values: &Array1<f64>, row: numpy::ndarray::ArrayView1<'_, f64>| {
            values.get(row[0] as usize).copied().unwrap_or(f64::NAN)
        };
        Ok(dac_linalg::grid_posterior(
            c,
            &index,
            |row| at(&prior, row),
            |row| at(&loglik, row),
        )?)
    })?;
    Ok(posterior.into_pyarray(py))
}
