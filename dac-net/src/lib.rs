//! Networked distributed average consensus for `dac`.
//!
//! This crate will host the libp2p transport, the topology layer that keeps
//! each node's neighbour set connected, the `Comm` SPMD handle and the
//! `dacrun` launcher. It builds on the I/O-free engine in [`dac_core`]; until
//! the transport lands, use [`dac_core::threaded`] for SPMD programs inside
//! one process.
#![deny(missing_docs)]

pub use dac_core::{Communicator, Reduction};
