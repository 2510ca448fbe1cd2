//! The errors every layer of `dac-net` reports a network failure with (its
//! own module, so that the session and the builder need not import the
//! `Comm` handle that sits above them): [`Error::Transport`], with its
//! [`TransportKind`].

use dac_core::{Error, TransportKind};
use libp2p::PeerId;

use crate::access::Refusal;

/// An [`Error::Transport`] of `kind` that concerns no one peer.
pub(crate) fn failure(kind: TransportKind, reason: impl Into<String>) -> Error {
    Error::transport(kind, reason)
}

/// An [`Error::Transport`] of `kind` about `peer`.
pub(crate) fn failure_with(kind: TransportKind, peer: PeerId, reason: impl Into<String>) -> Error {
    Error::transport_with(kind, peer, reason)
}

/// The handle cannot go on ([`TransportKind::Closed`]).
pub(crate) fn closed(reason: impl Into<String>) -> Error {
    failure(TransportKind::Closed, reason)
}

/// The swarm's task ended (the comm is shutting down).
pub(crate) fn network_stopped() -> Error {
    closed("the network task has stopped")
}

/// `peer`'s access gate refused this member ([`TransportKind::KeyMismatch`]
/// for a key problem, else [`TransportKind::Refused`]).
pub(crate) fn refused(peer: PeerId, why: &Refusal, reason: impl Into<String>) -> Error {
    let kind = match why {
        Refusal::KeyMismatch | Refusal::PeerHasNoKey | Refusal::KeyRequired => {
            TransportKind::KeyMismatch
        }
        Refusal::NotAllowed | Refusal::NotAllowedThere | Refusal::NotDac(_) => {
            TransportKind::Refused
        }
    };
    failure_with(kind, peer, reason)
}
