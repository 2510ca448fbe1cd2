//! Distributed average consensus: every member holds a vector, talks only
//! to its neighbours, and after a few rounds every member holds the exact
//! mean — even when messages are lost, delayed or duplicated and members
//! leave mid-run — together with the list of members whose inputs it
//! contains.
//!
//! # A tour
//!
//! - [`graph`] builds communication graphs (complete, ring, torus, random
//!   regular, exponential, hypercube, edge lists) and reports their degree,
//!   diameter and spectral gap; [`Topology`] names them.
//! - [`engine`] is the consensus algorithm as a state machine with no I/O:
//!   a host feeds it messages and ticks and sends what it hands out.
//! - [`sim`] runs many engines deterministically with injected faults.
//! - [`threaded`] runs one engine per thread behind the [`Communicator`]
//!   trait, so SPMD programs can be tested without a network.
//! - [`agree`] is how the hosts make every member name the same culprit
//!   after a usage error.
//!
//! ```
//! use dac_core::{threaded, Communicator, Config};
//!
//! // Four members, each with its own vector; all get the same mean.
//! let results = threaded::run(4, threaded::Options::default(), |comm| {
//!     let x = [comm.rank() as f64, 1.0];
//!     comm.allreduce_mean(&x)
//! })
//! .unwrap();
//! for r in results {
//!     let r = r.unwrap();
//!     assert!((r.value[0] - 1.5).abs() < 1e-12 && (r.value[1] - 1.0).abs() < 1e-12);
//!     assert_eq!(r.contributors.len(), 4);
//! }
//! ```
#![deny(missing_docs)]

pub mod agree;
#[cfg(feature = "cli")]
pub mod cli;
mod comm;
mod config;
pub mod engine;
mod error;
pub mod graph;
mod reduction;
mod schedule;
pub mod sim;
pub mod threaded;
mod topology;

pub use comm::Communicator;
pub use config::Config;
pub use engine::{Engine, MemberSetup, Progress};
pub use error::{ArgumentKind, Error, ErrorClass, Result, TransportKind};
pub use graph::Graph;
pub use reduction::{Contributors, Reduction};
pub use schedule::Schedule;
pub use topology::Topology;
