//! Python bindings for `dac`: the private native module `dac._native`.
//!
//! The core crates carry no pyo3 dependency; this crate is the thin layer
//! between them and Python. The public API, its docstrings and the numpy
//! conversions of arguments live in the Python package (`py_src/dac/`),
//! which calls the functions here with float64, C-contiguous arrays of the
//! right number of dimensions.
//!
//! - [`errors`]: every Rust error becomes a `dac.errors` exception, in one
//!   place.
//! - [`arrays`]: copies of array arguments for the worker threads.
//! - [`blocking`]: long calls run on a worker thread while the calling
//!   thread releases the GIL and watches for Ctrl-C.
//! - [`simulate`]: the in-process simulator and the topology helpers.
//! - [`comm`]: the networked SPMD handle and its reductions.
//! - [`linalg`]: the distributed linear algebra and Bayesian updates.
//! - [`results`]: the classes results cross the boundary as.
#![deny(missing_docs)]

pub mod arrays;
pub mod blocking;
pub mod comm;
pub mod errors;
pub mod linalg;
pub mod results;
pub mod simulate;

use pyo3::prelude::*;

/// The native module; `dac/__init__.py` re-exports what users see.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<comm::Comm>()?;
    m.add_class::<results::ReductionOut>()?;
    m.add_class::<results::LstsqOut>()?;
    m.add_class::<results::CgOut>()?;
    m.add_class::<results::PosteriorOut>()?;
    m.add_class::<results::SimulationOut>()?;
    m.add_function(wrap_pyfunction!(comm::init, m)?)?;
    m.add_function(wrap_pyfunction!(simulate::simulate, m)?)?;
    m.add_function(wrap_pyfunction!(simulate::spectral_gap, m)?)?;
    m.add_function(wrap_pyfunction!(simulate::diameter, m)?)?;
    m.add_function(wrap_pyfunction!(simulate::neighbors, m)?)?;
    m.add_function(wrap_pyfunction!(linalg::dot, m)?)?;
    m.add_function(wrap_pyfunction!(linalg::norm, m)?)?;
    m.add_function(wrap_pyfunction!(linalg::matvec, m)?)?;
    m.add_function(wrap_pyfunction!(linalg::lstsq, m)?)?;
    m.add_function(wrap_pyfunction!(linalg::cg, m)?)?;
    m.add_function(wrap_pyfunction!(errors::error_classes, m)?)?;
    m.add_function(wrap_pyfunction!(linalg::gaussian_linear, m)?)?;
    m.add_function(wrap_pyfunction!(linalg::grid_posterior, m)?)?;
    Ok(())
}
