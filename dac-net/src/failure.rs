//! The error every layer of `dac-net` reports a network failure with (its
//! own module, so that the session and the builder need not import the
//! `Comm` handle that sits above them).

use dac_core::Error;

/// An [`Error::Transport`] with this reason.
pub(crate) fn transport(reason: impl Into<String>) -> Error {
    Error::Transport {
        reason: reason.into(),
    }
}
