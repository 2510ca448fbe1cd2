//! Shared helpers for the dac benchmarks.
#![deny(missing_docs)]
