//! MPI-style example programs for `dac`.
//!
//! Each example is a small program that computes one collective operation,
//! checks it against a centralised computation and exits non-zero when they
//! disagree. The programs arrive with the networking and linear-algebra
//! crates; this library holds what they will share.
#![deny(missing_docs)]
