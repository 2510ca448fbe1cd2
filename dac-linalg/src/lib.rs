//! Distributed linear algebra on top of distributed average consensus.
//!
//! Dot products, norms, matrix–vector products, least squares, Bayesian
//! updates and conjugate gradient, all generic over a
//! [`dac_core::Communicator`], will live here.
#![deny(missing_docs)]

pub use dac_core::Communicator;
