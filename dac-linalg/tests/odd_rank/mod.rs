//! What the lone-bad-rank tests share: a job of `RANKS` over the threaded
//! transport with a 5 s timeout, the odd rank, and the checks.
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use dac_core::threaded;
use dac_linalg::LinalgError;

pub(crate) const RANKS: usize = 4;
/// The rank that passes the odd argument.
pub(crate) const ODD: usize = 2;

/// Runs `body` on every rank; a rank left waiting fails within 5 s.
pub(crate) fn run<T: Send>(body: impl Fn(&mut threaded::ThreadComm<'_>) -> T + Sync) -> Vec<T> {
    let options = threaded::Options {
        timeout: Duration::from_secs(5),
        ..threaded::Options::default()
    };
    threaded::run(RANKS, options, body).unwrap()
}

/// The largest absolute difference between `got` and `want`.
pub(crate) fn max_diff<'a>(got: impl IntoIterator<Item = &'a f64>, want: &[f64]) -> f64 {
    got.into_iter()
        .zip(want)
        .map(|(u, v)| (u - v).abs())
        .fold(0.0, f64::max)
}

/// Every rank's error is [`LinalgError::InvalidArgument`] naming `ODD`
/// alone.
pub(crate) fn assert_names_odd<T: std::fmt::Debug>(results: &[Result<T, LinalgError>]) {
    assert_eq!(results.len(), RANKS);
    for (rank, got) in results.iter().enumerate() {
        match got {
            Err(LinalgError::InvalidArgument { ranks, .. }) => {
                assert_eq!(ranks, &vec![ODD], "rank {rank}: {got:?}");
            }
            other => panic!("rank {rank}: {other:?}"),
        }
    }
}
