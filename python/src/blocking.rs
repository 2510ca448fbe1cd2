//! Long calls on a worker thread, so that Python stays responsive.
//!
//! A consensus reduction waits on the network, and a large simulation
//! computes for a while. The call runs on a worker thread; the calling
//! thread releases the GIL (other Python threads run meanwhile) and wakes
//! every [`POLL`] to let Python handle signals. On Ctrl-C the call raises
//! `KeyboardInterrupt` at once and the worker is abandoned: it finishes
//! (or fails at its peer timeout) in the background and drops what it
//! owns. That is why the work must own its inputs (`'static`): a call
//! copies its array arguments once, and hands its results to numpy
//! without a copy.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use pyo3::prelude::*;

use crate::errors::{Failure, network};

/// How often a waiting call checks for signals.
pub const POLL: Duration = Duration::from_millis(50);

/// How a call on a worker thread ended.
#[derive(Debug)]
pub enum Outcome<T> {
    /// The worker returned `T`.
    Done(T),
    /// Python raised (Ctrl-C): the worker was abandoned.
    Interrupted(PyErr),
}

/// Runs `work` on a worker thread named `name` and waits for it with the
/// GIL released, handling signals every [`POLL`].
///
/// # Errors
/// A `NetworkError` if the worker thread cannot be started or stops
/// without an answer (a bug: it panicked).
pub fn interruptible<T, F>(py: Python<'_>, name: String, work: F) -> Result<Outcome<T>, Failure>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            // The receiver is gone if the caller was interrupted; the result
            // is then dropped here, with everything the work owned.
            let _ = tx.send(work());
        })
        .map_err(|e| network(format!("cannot start a worker thread: {e}")))?;
    let mut rx = rx;
    loop {
        let (back, got) = py.detach(move || {
            let got = rx.recv_timeout(POLL);
            (rx, got)
        });
        rx = back;
        match got {
            Ok(value) => return Ok(Outcome::Done(value)),
            Err(RecvTimeoutError::Timeout) => {
                if let Err(e) = py.check_signals() {
                    return Ok(Outcome::Interrupted(e));
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(network("the worker thread stopped without an answer"));
            }
        }
    }
}

/// [`interruptible`] for work that can fail: the failure becomes a Python
/// exception naming `rank`, and an interruption re-raises Python's
/// exception.
///
/// # Errors
/// The work's failure, or Python's exception on Ctrl-C.
pub fn run<T, F>(py: Python<'_>, rank: Option<usize>, name: String, work: F) -> PyResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Failure> + Send + 'static,
{
    match interruptible(py, name, work) {
        Ok(Outcome::Done(Ok(value))) => Ok(value),
        Ok(Outcome::Done(Err(failure))) | Err(failure) => match rank {
            Some(rank) => Err(failure.at(rank).into()),
            None => Err(failure.into()),
        },
        Ok(Outcome::Interrupted(e)) => Err(e),
    }
}
