//! What the native functions return: one class per kind of result, with
//! named, read-only attributes. The public wrappers in `py_src/dac/` read
//! them by name (and `_native.pyi` declares them), so that no layout is
//! written twice.

use numpy::{PyArray1, PyArray2};
use pyo3::prelude::*;

/// A reduction (`Comm.allreduce`).
#[pyclass(frozen, get_all, module = "dac._native")]
#[derive(Debug)]
pub struct ReductionOut {
    /// The mean or sum, flat.
    pub value: Py<PyArray1<f64>>,
    /// Consensus rounds it took.
    pub rounds: u32,
    /// Its residual bound (0 for the exact schedule).
    pub residual: f64,
    /// The members whose inputs it contains, ascending.
    pub contributors: Vec<usize>,
}

/// A least-squares fit (`lstsq`).
#[pyclass(frozen, get_all, module = "dac._native")]
#[derive(Debug)]
pub struct LstsqOut {
    /// The solution, `n × k`.
    pub x: Py<PyArray2<f64>>,
    /// `‖A x − b‖` over every member's rows.
    pub residual_norm: f64,
    /// Condition estimate of the equilibrated normal matrix.
    pub condition: f64,
    /// Consensus rounds over the call's reductions.
    pub rounds: u64,
    /// `"cholesky"` or `"rank-revealing"`.
    pub solver: &'static str,
    /// The numerical rank (rank-revealing solver only).
    pub rank: Option<usize>,
    /// Iterative-refinement steps taken.
    pub refinements: usize,
}

/// A conjugate-gradient solution (`cg`).
#[pyclass(frozen, get_all, module = "dac._native")]
#[derive(Debug)]
pub struct CgOut {
    /// The whole solution.
    pub x: Py<PyArray1<f64>>,
    /// Iterations taken.
    pub iterations: usize,
    /// `‖b − A x‖` of the recurrence at the end.
    pub residual_norm: f64,
    /// Consensus rounds over the call's reductions.
    pub rounds: u64,
}

/// A Gaussian posterior (`gaussian_linear`).
#[pyclass(frozen, get_all, module = "dac._native")]
#[derive(Debug)]
pub struct PosteriorOut {
    /// The posterior mean.
    pub mean: Py<PyArray1<f64>>,
    /// The posterior covariance.
    pub cov: Py<PyArray2<f64>>,
    /// Consensus rounds.
    pub rounds: u32,
}

/// A simulated run (`simulate`).
#[pyclass(frozen, get_all, module = "dac._native")]
#[derive(Debug)]
pub struct SimulationOut {
    /// A member's result, or where it has none its last estimate; NaN rows
    /// for crashed members (`nodes × d`).
    pub estimates: Py<PyArray2<f64>>,
    /// The round at which the members finished, or the last any reached.
    pub rounds: u32,
    /// Whether every live member finished with a result.
    pub converged: bool,
    /// The members whose inputs the result contains.
    pub contributors: Vec<usize>,
    /// The largest residual bound after each round (rounds 1, 2, …).
    pub residuals: Py<PyArray1<f64>>,
    /// The largest error after each round (rounds 1, 2, …).
    pub errors: Py<PyArray1<f64>>,
    /// The largest residual of a member that stopped at `max_rounds`
    /// (`None` if none did).
    pub cut_short: Option<f64>,
}
