//! Distributed linear algebra on top of distributed average consensus.
//!
//! Every function is SPMD: each rank calls it with its own piece of the
//! data and every rank gets the same global answer. The functions are
//! generic over [`Communicator`], so the same code runs on threads
//! ([`dac_core::threaded`]) or across processes (`dac_net::Comm`).
//!
//! # A tour
//!
//! - [`dot`], [`norm2`]: vectors split across ranks (any split).
//! - [`matvec`]: `A x` with `A` split by columns; [`matvec_rows`] and
//!   [`rmatvec`]: `A x` and `Aᵀ y` with `A` split by rows; [`gram`]: `AᵀA`.
//! - [`lstsq`]: least squares (with ridge) on rows split across ranks,
//!   equilibrated and refined, with a rank-revealing fallback.
//! - [`gaussian_linear`]: the conjugate Gaussian linear model's posterior
//!   (information form, exact); [`grid_posterior`]: any likelihood on a
//!   parameter grid.
//! - [`cg`]: conjugate gradient for a symmetric positive definite system
//!   split by rows; [`cg_checkpointed`] saves its state every `k`
//!   iterations and resumes after the whole job is restarted.
//! - [`Checkpoints`]: the same save-and-resume for any loop of your own
//!   ([`Snapshot`], [`ProblemId`], [`Checkpoints::resume`]).
//! - [`replicated`]: data cut into partitions held by several ranks each
//!   ([`Placement`], [`replication_factor`]), every partition contributed
//!   exactly once even when its holder dies mid-reduction, and holders
//!   checked against each other by hashes ([`Replicated`]). Each operation
//!   has a replicated variant: [`dot_replicated`],
//!   [`matvec_rows_replicated`], [`rmatvec_replicated`],
//!   [`gram_replicated`], [`lstsq_replicated`],
//!   [`gaussian_linear_replicated`] and [`cg_replicated`] (hashes every
//!   `k` iterations on an iterate made bit-identical first).
//! - Errors are [`LinalgError`], the same on every rank: a rank whose
//!   local shapes do not fit, whose data holds a NaN or whose options are
//!   out of range says so in the call's reduction, so no rank waits for
//!   one that gave up; options that must match (a ridge, a prior, an
//!   iteration limit) are compared from what the reductions return.
//!
//! ```
//! use dac_core::{threaded, Communicator};
//! use ndarray::array;
//!
//! // x = (1, 2, 3, 4) split over two ranks; ‖x‖² = 30.
//! let results = threaded::run(2, threaded::Options::default(), |comm| {
//!     let x = if comm.rank() == 0 { array![1.0, 2.0] } else { array![3.0, 4.0] };
//!     dac_linalg::dot(comm, &x, &x)
//! })
//! .unwrap();
//! for r in results {
//!     assert!((r.unwrap() - 30.0).abs() < 1e-12);
//! }
//! ```
#![deny(missing_docs)]

mod bayes;
mod cg;
mod check;
mod checkpoint;
mod error;
mod lstsq;
mod ops;
pub mod replicated;

pub use bayes::{Posterior, gaussian_linear, grid_posterior};
pub use cg::{Cg, CgOptions, cg, cg_checkpointed};
pub use checkpoint::{Checkpoints, ProblemId, Snapshot};
pub use dac_core::Communicator;
pub use error::{LinalgError, Result};
pub use lstsq::{Lstsq, LstsqOptions, Solver, lstsq};
/// The array crate of every signature here, re-exported so that a program
/// needs no dependency of its own to match its version.
pub use ndarray;
pub use ops::{dot, gram, matvec, matvec_rows, norm2, rmatvec};
pub use replicated::{
    PartitionData, PartitionSum, Placement, ReplicaEvent, Replicated, ReplicatedOptions,
    cg_replicated, dot_replicated, gaussian_linear_replicated, gram_replicated, lstsq_replicated,
    matvec_rows_replicated, replication_factor, rmatvec_replicated,
};
