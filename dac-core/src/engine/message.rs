//! Messages between engines.
//!
//! A message is a fixed-size [`Header`], a list of [`Event`]s (usually
//! empty) and an `f64` payload. Network hosts encode the header and events
//! with serde (feature `serde`) and send the payload as raw little-endian
//! bytes.

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use super::view::{Event, ViewId};
use crate::error::{ArgumentKind, Error};

/// What a message is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum Kind {
    /// The sender's state for one round: payload is its mass (`d` sums and
    /// one weight).
    Round,
    /// Events the sender knows (departures, input changes); no payload.
    Events,
    /// Opens a new edge after a topology repair: `round` is the first round
    /// the sender will exchange on it.
    Hello,
    /// The sender finished: payload is the value, `round` the rounds,
    /// `streak` the residual, events list the departed members.
    Done,
    /// The reduction failed for everyone: see [`Message::abort`].
    Abort,
    /// The sender leaves the reduction.
    Leave,
}

/// Flag bit: the sender's exact-schedule value misses part of its inputs.
pub const FLAG_DIRTY: u8 = 1;
/// Flag bit on [`Kind::Hello`]: the sender knows the receiver's start.
pub const FLAG_ACK: u8 = 2;
/// Flag bit on [`Kind::Hello`]: the sender knows that the receiver knows
/// the sender's start (the handshake is complete on its side).
pub const FLAG_ACKED: u8 = 4;

/// Fixed-size part of a message.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct Header {
    /// What the message is for.
    pub kind: Kind,
    /// The round (or start round, or rounds executed; see [`Kind`]).
    pub round: u32,
    /// The sender's view when it sent this round.
    pub view: ViewId,
    /// The sender's active degree in this round (Metropolis weights).
    pub degree: u32,
    /// Rounds of certified convergence around the sender.
    pub counter: u32,
    /// [`FLAG_DIRTY`], [`FLAG_ACK`], [`FLAG_ACKED`].
    pub flags: u8,
    /// Agreed stop round the sender knows of (0: none).
    pub proposal: u32,
    /// Largest residual seen during the current convergence streak (for
    /// [`Kind::Done`]: the residual of the result).
    pub streak: f64,
    /// Largest residual seen in the current epoch.
    pub epoch: f64,
}

impl Header {
    /// A header of `kind` for `round`, everything else zero.
    pub fn new(kind: Kind, round: u32) -> Header {
        Header {
            kind,
            round,
            view: ViewId::default(),
            degree: 0,
            counter: 0,
            flags: 0,
            proposal: 0,
            streak: 0.0,
            epoch: 0.0,
        }
    }
}

/// A message borrowed from an engine or a receive buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Message<'a> {
    /// Fixed-size part.
    pub header: Header,
    /// Events the sender attaches.
    pub events: &'a [Event],
    /// Mass (round), value (done) or nothing.
    pub payload: &'a [f64],
    /// Why the reduction failed ([`Kind::Abort`] only). Kept out of the
    /// header so that the header of the common round message stays small.
    pub abort: Option<AbortReason>,
}

impl<'a> Message<'a> {
    /// A message without an abort reason.
    pub fn new(header: Header, events: &'a [Event], payload: &'a [f64]) -> Message<'a> {
        Message {
            header,
            events,
            payload,
            abort: None,
        }
    }

    /// Copies the message into owned buffers (for queues and channels).
    pub fn to_owned(&self) -> OwnedMessage {
        OwnedMessage {
            header: self.header,
            events: self.events.to_vec(),
            payload: self.payload.to_vec(),
            abort: self.abort,
        }
    }
}

/// A message that owns its buffers.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct OwnedMessage {
    /// Fixed-size part.
    pub header: Header,
    /// Events the sender attaches.
    pub events: Vec<Event>,
    /// Mass, value or nothing.
    pub payload: Vec<f64>,
    /// Why the reduction failed ([`Kind::Abort`] only).
    pub abort: Option<AbortReason>,
}

impl OwnedMessage {
    /// Borrows the message.
    pub fn as_message(&self) -> Message<'_> {
        Message {
            header: self.header,
            events: &self.events,
            payload: &self.payload,
            abort: self.abort,
        }
    }
}

/// Where an outgoing message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every current peer of the sender.
    Peers,
    /// One member.
    Peer(usize),
}

/// Why a reduction failed on every member; carried by [`Kind::Abort`] so
/// that each member reports the same typed error.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum AbortReason {
    /// `max_rounds` reached.
    NotConverged {
        /// Rounds executed.
        rounds: u32,
        /// Residual reached.
        residual: f64,
    },
    /// A member's input is empty.
    EmptyInput {
        /// That member.
        rank: u32,
    },
    /// A member's input is not finite.
    NonFiniteInput {
        /// That member.
        rank: u32,
        /// First offending index.
        index: u64,
        /// The offending value.
        value: f64,
    },
    /// Two neighbours have inputs of different lengths.
    DimensionMismatch {
        /// The member that detected it.
        rank: u32,
        /// Its neighbour's length.
        expected: u64,
        /// Its own length.
        found: u64,
    },
    /// The iteration overflowed (inputs near `f64::MAX`).
    Overflow {
        /// The member that overflowed.
        rank: u32,
    },
    /// A member's input is too long for the transport's frame limit.
    InputTooLarge {
        /// That member.
        rank: u32,
        /// Its length.
        len: u64,
        /// The most values a message may carry.
        max: u64,
    },
    /// A member's own arguments were invalid.
    InvalidArgument {
        /// That member.
        rank: u32,
        /// What was wrong.
        kind: ArgumentKind,
    },
    /// Two neighbours passed inputs of the same length but different
    /// shapes (see [`Error::ShapeMismatch`]).
    ShapeMismatch {
        /// The member that detected it.
        rank: u32,
        /// Its neighbour.
        neighbour: u32,
        /// The common length.
        len: u64,
    },
    /// After a topology repair the Laplacian step is too large.
    StepTooLarge {
        /// The member whose degree grew.
        rank: u32,
        /// The step size.
        eps: f64,
        /// Its new degree.
        degree: u32,
    },
}

impl From<AbortReason> for Error {
    fn from(reason: AbortReason) -> Error {
        match reason {
            AbortReason::NotConverged { rounds, residual } => {
                Error::NotConverged { rounds, residual }
            }
            AbortReason::EmptyInput { rank } => Error::EmptyInput {
                rank: rank as usize,
            },
            AbortReason::NonFiniteInput { rank, index, value } => Error::NonFiniteInput {
                rank: rank as usize,
                index: index as usize,
                value,
            },
            AbortReason::DimensionMismatch {
                rank,
                expected,
                found,
            } => Error::DimensionMismatch {
                rank: rank as usize,
                expected: expected as usize,
                found: found as usize,
            },
            AbortReason::Overflow { rank } => Error::Overflow {
                rank: rank as usize,
            },
            AbortReason::InputTooLarge { rank, len, max } => Error::InputTooLarge {
                rank: rank as usize,
                len: len as usize,
                max: max as usize,
            },
            AbortReason::InvalidArgument { rank, kind } => Error::InvalidArgument {
                rank: rank as usize,
                kind,
            },
            AbortReason::ShapeMismatch {
                rank,
                neighbour,
                len,
            } => Error::ShapeMismatch {
                rank: rank as usize,
                neighbour: neighbour as usize,
                len: len as usize,
            },
            AbortReason::StepTooLarge { eps, degree, .. } => Error::LaplacianStepTooLarge {
                eps,
                max_degree: degree as usize,
                limit: 1.0 / f64::from(degree.max(1)),
            },
        }
    }
}

impl AbortReason {
    /// The abort reason that tells other members about `error`, for errors
    /// that must fail the whole reduction (`None` for the others).
    pub fn from_error(error: &Error) -> Option<AbortReason> {
        Some(match *error {
            Error::NotConverged { rounds, residual } => {
                AbortReason::NotConverged { rounds, residual }
            }
            Error::EmptyInput { rank } => AbortReason::EmptyInput { rank: rank as u32 },
            Error::NonFiniteInput { rank, index, value } => AbortReason::NonFiniteInput {
                rank: rank as u32,
                index: index as u64,
                value,
            },
            Error::DimensionMismatch {
                rank,
                expected,
                found,
            } => AbortReason::DimensionMismatch {
                rank: rank as u32,
                expected: expected as u64,
                found: found as u64,
            },
            Error::Overflow { rank } => AbortReason::Overflow { rank: rank as u32 },
            Error::InputTooLarge { rank, len, max } => AbortReason::InputTooLarge {
                rank: rank as u32,
                len: len as u64,
                max: max as u64,
            },
            Error::InvalidArgument { rank, kind } => AbortReason::InvalidArgument {
                rank: rank as u32,
                kind,
            },
            Error::ShapeMismatch {
                rank,
                neighbour,
                len,
            } => AbortReason::ShapeMismatch {
                rank: rank as u32,
                neighbour: neighbour as u32,
                len: len as u64,
            },
            _ => return None,
        })
    }
}

/// A message a peer should not have sent. The engine ignores it and leaves
/// its state unchanged; the host decides what to do with the peer.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// A payload on a message kind that carries none. (A round or result
    /// of another length is no violation: the sender's input has another
    /// dimension, and the engine fails the reduction for everyone with
    /// [`Error::DimensionMismatch`].)
    #[error("peer {peer} sent a {kind:?} payload of {found} values where {expected} were expected")]
    PayloadLength {
        /// The sender.
        peer: usize,
        /// Message kind.
        kind: Kind,
        /// Expected length.
        expected: usize,
        /// Received length.
        found: usize,
    },
    /// The payload or header carries NaN or an infinity.
    #[error("peer {peer} sent a non-finite value in a {kind:?} message")]
    NonFinite {
        /// The sender.
        peer: usize,
        /// Message kind.
        kind: Kind,
    },
    /// An abort without a reason.
    #[error("peer {peer} sent an abort without a reason")]
    MissingAbortReason {
        /// The sender.
        peer: usize,
    },
    /// An event names a member that is not a member.
    #[error("peer {peer} sent the event {event:?}, which names a non-member")]
    InvalidEvent {
        /// The sender.
        peer: usize,
        /// The event.
        event: Event,
    },
    /// The sender id is not a member.
    #[error("message from {peer}, which is not a member (members are 0..{members})")]
    UnknownSender {
        /// The claimed sender.
        peer: usize,
        /// Number of members.
        members: usize,
    },
    /// A well-formed message that contradicts this member's own state: no
    /// honest member could have sent it (the sender lies, or has a bug).
    /// The engine did not act on it. Hosts should treat the sender as they
    /// treat any other violation: report it (in `dac-net`,
    /// `PeerEvent::Misbehaved` with this message as the reason) and cut it
    /// off ([`Engine::peer_suspected`](super::Engine::peer_suspected)).
    #[error("peer {peer} sent a {kind:?} message that contradicts this member's own state: {what}")]
    Contradicts {
        /// The sender.
        peer: usize,
        /// Message kind.
        kind: Kind,
        /// What the message got wrong.
        what: Contradiction,
    },
}

/// What a [`Violation::Contradicts`] message got wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Contradiction {
    /// A result whose value differs from the exact mean this member
    /// computed itself (exact schedule), or lies farther from this member's
    /// own estimate than the agreed convergence allows (iterative
    /// schedules).
    #[error("its result value disagrees with this member's own")]
    ResultValue,
    /// A result that names as departed a member this member holds live,
    /// or an input change it does not know of: the sender cannot have
    /// finished in a view this member has not been through.
    #[error("its result names departures or input changes this member does not know of")]
    ResultMembers,
    /// A result no finished member could announce at this point: during
    /// the exact phase, anything but the exact mean after the plan's
    /// rounds, with every member contributing and residual 0; after it, a
    /// result of the iterative fallback that claims to have ended before
    /// the exact phase did.
    #[error(
        "its result has a round count, residual or contributor list no finished member reports at this point"
    )]
    ResultShape,
    /// An exact result that arrived before this member sent the message
    /// through which its input reaches the sender: no member can hold the
    /// exact mean yet, so the result is forged.
    #[error("its exact result came before this member's input could have reached it")]
    Premature,
}

impl Violation {
    /// The member that sent the offending message.
    pub fn peer(&self) -> usize {
        match *self {
            Violation::PayloadLength { peer, .. }
            | Violation::NonFinite { peer, .. }
            | Violation::MissingAbortReason { peer }
            | Violation::InvalidEvent { peer, .. }
            | Violation::UnknownSender { peer, .. }
            | Violation::Contradicts { peer, .. } => peer,
        }
    }
}
