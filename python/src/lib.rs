//! Python bindings for `dac`.
//!
//! The pyo3 module (`import dac`) is built here with maturin. The core
//! crates carry no pyo3 dependency; this crate is the thin layer that maps
//! numpy arrays and Python exceptions onto them.
#![deny(missing_docs)]
