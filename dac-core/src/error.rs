//! The one error type of `dac-core`.

use std::fmt;

/// Result alias used throughout `dac-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `dac-core`.
///
/// Variants are structured so that callers can match on them; the
/// `Display` text is a one-line explanation that names the offending value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of its valid range.
    #[error("invalid configuration: {field} {reason}")]
    InvalidConfig {
        /// The offending field (`tol`, `max_rounds`, `eps`, …).
        field: &'static str,
        /// Why it is invalid, including the value.
        reason: String,
    },
    /// The Laplacian step size is too large for the graph: the iteration
    /// would oscillate or diverge.
    #[error(
        "laplacian step eps = {eps} is too large: it must be below 1/max_degree = {limit} \
         (max degree {max_degree})"
    )]
    LaplacianStepTooLarge {
        /// The requested step size.
        eps: f64,
        /// The largest degree in the graph.
        max_degree: usize,
        /// The exclusive upper bound `1/max_degree`.
        limit: f64,
    },
    /// A topology name could not be parsed.
    #[error("unknown topology {name:?}: expected one of {expected}")]
    UnknownTopology {
        /// The name as given.
        name: String,
        /// The accepted names.
        expected: &'static str,
    },
    /// A schedule name could not be parsed.
    #[error("unknown schedule {name:?}: expected one of {expected}")]
    UnknownSchedule {
        /// The name as given.
        name: String,
        /// The accepted names.
        expected: &'static str,
    },
    /// A graph cannot be built with these parameters.
    #[error("invalid graph: {reason}")]
    InvalidGraph {
        /// What is wrong, including the values.
        reason: String,
    },
    /// An edge list contains a self-loop.
    #[error("edge list has a self-loop at node {node}")]
    SelfLoop {
        /// The node connected to itself.
        node: usize,
    },
    /// An edge list names a node that does not exist.
    #[error("edge ({a}, {b}) names a node outside 0..{nodes}")]
    NodeOutOfRange {
        /// First endpoint.
        a: usize,
        /// Second endpoint.
        b: usize,
        /// Number of nodes.
        nodes: usize,
    },
    /// An edge list contains the same edge twice (in either orientation).
    #[error("edge list has the edge ({a}, {b}) more than once")]
    DuplicateEdge {
        /// Smaller endpoint.
        a: usize,
        /// Larger endpoint.
        b: usize,
    },
    /// The graph is not connected, so consensus cannot reach every node.
    #[error(
        "graph is not connected: {components} components (node 0 reaches {reached} of {nodes} nodes)"
    )]
    Disconnected {
        /// Number of connected components.
        components: usize,
        /// Nodes reachable from node 0.
        reached: usize,
        /// Number of nodes.
        nodes: usize,
    },
    /// The exact (dimension-exchange) schedule needs an edge the topology lacks.
    #[error(
        "the exact schedule pairs nodes {a} and {b} in round {round}, but the topology has no \
         such edge (use the exponential or hypercube topology, or another schedule)"
    )]
    ExactNeedsEdge {
        /// One node of the missing pair.
        a: usize,
        /// The other node.
        b: usize,
        /// The schedule round that needs the pair.
        round: u32,
    },
    /// A spectrum was requested for a graph too large for dense eigensolvers.
    #[error(
        "spectrum of a {nodes}-node graph is not computed (dense eigensolver limit is {limit} nodes)"
    )]
    SpectrumTooLarge {
        /// Number of nodes.
        nodes: usize,
        /// The largest supported size.
        limit: usize,
    },
    /// An input vector is empty.
    #[error("rank {rank}: input vector is empty (dimension must be at least 1)")]
    EmptyInput {
        /// The rank whose input is empty.
        rank: usize,
    },
    /// An input contains NaN or an infinity.
    #[error("rank {rank}: input element {index} is {value}, not a finite number")]
    NonFiniteInput {
        /// The rank whose input is not finite.
        rank: usize,
        /// Index of the first offending element.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// Members contribute vectors of different lengths. Every member names
    /// the same culprit (`dac_core::agree`): the lowest rank outside the
    /// largest group of members with the same length.
    #[error("rank {rank}: input has {found} elements but other ranks have {expected}")]
    DimensionMismatch {
        /// The culprit (in an iterative schedule whose `tol` is too coarse
        /// to carry every member's length, the rank that noticed).
        rank: usize,
        /// The length of the others' inputs.
        expected: usize,
        /// The length of the culprit's input.
        found: usize,
    },
    /// Two neighbours passed inputs of the same length but different
    /// shapes (a host that knows the shape, such as the Python binding,
    /// tags each reduction with it): every member's call fails.
    #[error(
        "rank {rank} and rank {neighbour} passed arrays of different shapes with the same \
         number of entries ({len}); every member must pass the same shape"
    )]
    ShapeMismatch {
        /// The culprit: the lowest rank outside the largest group of
        /// members with the same shape (see [`Error::DimensionMismatch`]).
        rank: usize,
        /// A member with the other shape.
        neighbour: usize,
        /// The number of entries both passed.
        len: usize,
    },
    /// A node id is not a member of the job.
    #[error("node {node} is not a member (members are 0..{members})")]
    UnknownNode {
        /// The offending id.
        node: usize,
        /// Number of members.
        members: usize,
    },
    /// The iteration produced a non-finite value (inputs too close to
    /// `f64::MAX` for their sums to be represented).
    #[error("rank {rank}: the reduction overflowed (inputs too large to sum in f64)")]
    Overflow {
        /// The rank that overflowed.
        rank: usize,
    },
    /// A member's input is too long for the transport's frame limit.
    #[error(
        "rank {rank}: an input of {len} values exceeds the transport's limit of {max} values \
         per message; raise the frame limit (max_frame_bytes) on every member"
    )]
    InputTooLarge {
        /// The member with the long input.
        rank: usize,
        /// Its length.
        len: usize,
        /// The most values a message may carry.
        max: usize,
    },
    /// The reduction did not reach `tol` within `max_rounds`.
    #[error("not converged after {rounds} rounds: residual {residual:e} is above the tolerance")]
    NotConverged {
        /// Rounds executed.
        rounds: u32,
        /// The residual reached (an upper bound on the relative distance
        /// from the exact mean; infinite when not yet measured).
        residual: f64,
    },
    /// The other members declared this node departed and went on without it.
    #[error("rank {rank} was declared departed by the other members and excluded")]
    Excluded {
        /// The excluded rank.
        rank: usize,
    },
    /// This member lost contact with too many members to know whether the
    /// job goes on without it, and stopped. Departures known only by
    /// silence (a frozen process, a cut link) count against it; members
    /// proven gone (a crashed process, a member that left) do not. A member
    /// goes on only while the members it holds live are a strict majority
    /// of the members not proven gone, so the two sides of a partition
    /// never both go on.
    #[error(
        "rank {rank} lost contact with too much of the job: it holds {live} member(s) live, \
         not a strict majority of the {base} not known to have ended; it stops so that the \
         two sides of a partition never both go on"
    )]
    Partitioned {
        /// The member that stopped.
        rank: usize,
        /// Members it still held live (itself included).
        live: usize,
        /// Members not proven gone (the quorum's base).
        base: usize,
    },
    /// A member found its own arguments to a collective invalid (a wrong
    /// type, shape or value that only it could see) and took part only to
    /// say so: every member's call fails with this error naming it, so
    /// that no later call pairs with the wrong one. The member itself
    /// reports its own, detailed error.
    #[error(
        "rank {rank} passed an invalid {kind} to this call, so the call failed on every \
         rank (rank {rank}'s own error says what was wrong)"
    )]
    InvalidArgument {
        /// The member whose arguments were invalid.
        rank: usize,
        /// What was wrong with them.
        kind: ArgumentKind,
    },
    /// This node left the reduction before it finished.
    #[error("rank {rank} left the reduction")]
    Left {
        /// The rank that left.
        rank: usize,
    },
    /// No message arrived within the host's timeout.
    #[error("rank {rank}: no progress for {seconds} s (waiting for round {round})")]
    Timeout {
        /// The waiting rank.
        rank: usize,
        /// The round it was waiting to complete.
        round: u32,
        /// The timeout in seconds.
        seconds: f64,
    },
    /// A host-level failure: the network, the job's formation, a peer
    /// that refused or broke the protocol, a closed handle (see
    /// [`TransportKind`]).
    #[error("transport failure: {reason}")]
    Transport {
        /// What kind of failure it is.
        kind: TransportKind,
        /// The peer it concerns (its libp2p peer id), where one is known.
        peer: Option<String>,
        /// What failed, in words.
        reason: String,
    },
}

/// What kind of host-level failure an [`Error::Transport`] is, for callers
/// that react to some and not others (a key problem is the user's to fix;
/// a lost peer may be retried with a new job).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum TransportKind {
    /// A peer refused this member and said why: other settings or another
    /// protocol version, a full lobby, not on its allow-list, a rank it
    /// had already given out.
    Refused,
    /// The two ends of a connection hold different job keys, or only one
    /// of them holds one.
    KeyMismatch,
    /// Nothing came within a deadline: forming the job, joining it, an
    /// admission.
    Timeout,
    /// A peer sent what the protocol does not allow (a malformed or
    /// inconsistent answer).
    ProtocolViolation,
    /// A peer that this member needed went away or cannot be reached.
    PeerLost,
    /// This process could not set up its own part: listen on an address,
    /// start its runtime, publish its address.
    Setup,
    /// The handle cannot be used: it was shut down, it is called inside an
    /// async runtime, its network task or a worker thread stopped.
    Closed,
}

impl TransportKind {
    /// Every kind, in declaration order.
    pub const ALL: [TransportKind; 7] = [
        TransportKind::Refused,
        TransportKind::KeyMismatch,
        TransportKind::Timeout,
        TransportKind::ProtocolViolation,
        TransportKind::PeerLost,
        TransportKind::Setup,
        TransportKind::Closed,
    ];

    /// The kind's name in snake case (`"key_mismatch"`), as the Python
    /// exceptions carry it.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Refused => "refused",
            TransportKind::KeyMismatch => "key_mismatch",
            TransportKind::Timeout => "timeout",
            TransportKind::ProtocolViolation => "protocol_violation",
            TransportKind::PeerLost => "peer_lost",
            TransportKind::Setup => "setup",
            TransportKind::Closed => "closed",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What was wrong with a member's own arguments (see
/// [`Error::InvalidArgument`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum ArgumentKind {
    /// A value out of range or of the wrong kind (an unknown option name,
    /// a negative tolerance).
    Value,
    /// Data of a type that is not real numbers.
    Type,
    /// An array of the wrong number of dimensions or shape.
    Shape,
}

impl fmt::Display for ArgumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArgumentKind::Value => "value",
            ArgumentKind::Type => "type",
            ArgumentKind::Shape => "shape",
        })
    }
}

/// What kind of failure an [`Error`] is, for callers that handle errors
/// by kind rather than by variant (the Python exception classes are one
/// per kind). Every variant has one; adding a variant means choosing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// A bad setting, name or argument value.
    Argument,
    /// Data of a type that is not real numbers.
    InputType,
    /// An input of the wrong length or shape, or an empty one.
    Shape,
    /// NaN or infinity in an input, or a result that overflowed.
    NonFinite,
    /// An iteration did not reach its tolerance.
    Convergence,
    /// The job, the network or a member failed.
    Network,
    /// Replicas of a piece of data disagree (replicated jobs).
    ReplicaMismatch,
    /// Every holder of a piece of data is gone (replicated jobs).
    PartitionLost,
}

impl ErrorClass {
    /// Every class.
    pub const ALL: [ErrorClass; 8] = [
        ErrorClass::Argument,
        ErrorClass::InputType,
        ErrorClass::Shape,
        ErrorClass::NonFinite,
        ErrorClass::Convergence,
        ErrorClass::Network,
        ErrorClass::ReplicaMismatch,
        ErrorClass::PartitionLost,
    ];
}

impl Error {
    /// The error with every member it names renamed by `rename`: for a
    /// host that runs the engine over a subset of its members, numbered
    /// `0..n` (`dac-net` runs each reduction in a view, and names members
    /// by their rank in the job). Errors that name no member, and the
    /// graph's nodes of [`Error::UnknownNode`], are unchanged.
    #[must_use]
    pub fn rename_members(self, rename: impl Fn(usize) -> usize) -> Error {
        match self {
            Error::EmptyInput { rank } => Error::EmptyInput { rank: rename(rank) },
            Error::NonFiniteInput { rank, index, value } => Error::NonFiniteInput {
                rank: rename(rank),
                index,
                value,
            },
            Error::DimensionMismatch {
                rank,
                expected,
                found,
            } => Error::DimensionMismatch {
                rank: rename(rank),
                expected,
                found,
            },
            Error::ShapeMismatch {
                rank,
                neighbour,
                len,
            } => Error::ShapeMismatch {
                rank: rename(rank),
                neighbour: rename(neighbour),
                len,
            },
            Error::Overflow { rank } => Error::Overflow { rank: rename(rank) },
            Error::InputTooLarge { rank, len, max } => Error::InputTooLarge {
                rank: rename(rank),
                len,
                max,
            },
            Error::Excluded { rank } => Error::Excluded { rank: rename(rank) },
            Error::Partitioned { rank, live, base } => Error::Partitioned {
                rank: rename(rank),
                live,
                base,
            },
            Error::InvalidArgument { rank, kind } => Error::InvalidArgument {
                rank: rename(rank),
                kind,
            },
            Error::Left { rank } => Error::Left { rank: rename(rank) },
            Error::Timeout {
                rank,
                round,
                seconds,
            } => Error::Timeout {
                rank: rename(rank),
                round,
                seconds,
            },
            other => other,
        }
    }

    /// The kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::InvalidConfig { .. }
            | Error::LaplacianStepTooLarge { .. }
            | Error::UnknownTopology { .. }
            | Error::UnknownSchedule { .. }
            | Error::InvalidGraph { .. }
            | Error::SelfLoop { .. }
            | Error::NodeOutOfRange { .. }
            | Error::DuplicateEdge { .. }
            | Error::Disconnected { .. }
            | Error::ExactNeedsEdge { .. }
            | Error::SpectrumTooLarge { .. }
            | Error::UnknownNode { .. } => ErrorClass::Argument,
            Error::EmptyInput { .. }
            | Error::DimensionMismatch { .. }
            | Error::ShapeMismatch { .. }
            | Error::InputTooLarge { .. } => ErrorClass::Shape,
            Error::NonFiniteInput { .. } | Error::Overflow { .. } => ErrorClass::NonFinite,
            Error::NotConverged { .. } => ErrorClass::Convergence,
            Error::InvalidArgument { kind, .. } => match kind {
                ArgumentKind::Type => ErrorClass::InputType,
                ArgumentKind::Shape => ErrorClass::Shape,
                ArgumentKind::Value => ErrorClass::Argument,
            },
            Error::Excluded { .. }
            | Error::Partitioned { .. }
            | Error::Left { .. }
            | Error::Timeout { .. }
            | Error::Transport { .. } => ErrorClass::Network,
        }
    }

    /// An [`Error::Transport`] of `kind` that concerns no one peer.
    pub fn transport(kind: TransportKind, reason: impl Into<String>) -> Self {
        Error::Transport {
            kind,
            peer: None,
            reason: reason.into(),
        }
    }

    /// An [`Error::Transport`] of `kind` about `peer`.
    pub fn transport_with(
        kind: TransportKind,
        peer: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Error::Transport {
            kind,
            peer: Some(peer.to_string()),
            reason: reason.into(),
        }
    }

    pub(crate) fn config(field: &'static str, reason: impl fmt::Display) -> Self {
        Error::InvalidConfig {
            field,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn graph(reason: impl fmt::Display) -> Self {
        Error::InvalidGraph {
            reason: reason.to_string(),
        }
    }
}

/// Checks that `input` is non-empty and finite; names `rank` in the error.
pub(crate) fn check_input(rank: usize, input: &[f64]) -> Result<()> {
    if input.is_empty() {
        return Err(Error::EmptyInput { rank });
    }
    match input.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(Error::NonFiniteInput {
            rank,
            index,
            value: input[index],
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transport_kind_has_its_own_name() {
        let names: std::collections::BTreeSet<&str> =
            TransportKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), TransportKind::ALL.len());
        let e = Error::transport_with(TransportKind::KeyMismatch, "12D3Koo", "no");
        assert_eq!(e.class(), ErrorClass::Network);
        assert_eq!(e.to_string(), "transport failure: no");
        assert!(matches!(
            e,
            Error::Transport { kind: TransportKind::KeyMismatch, peer: Some(p), .. } if p == "12D3Koo"
        ));
    }

    #[test]
    fn renaming_members_renames_every_member_an_error_names() {
        let ranks = [0, 2, 5, 7];
        let rename = |p: usize| ranks[p];
        let cases = [
            (Error::EmptyInput { rank: 1 }, "rank 2:"),
            (Error::Excluded { rank: 3 }, "rank 7 was declared"),
            (
                Error::Partitioned {
                    rank: 2,
                    live: 1,
                    base: 4,
                },
                "rank 5 lost contact",
            ),
            (
                Error::ShapeMismatch {
                    rank: 1,
                    neighbour: 3,
                    len: 6,
                },
                "rank 2 and rank 7",
            ),
            (
                Error::InvalidArgument {
                    rank: 3,
                    kind: ArgumentKind::Shape,
                },
                "rank 7 passed",
            ),
        ];
        for (error, named) in cases {
            let renamed = error.clone().rename_members(rename).to_string();
            assert!(renamed.contains(named), "{error} → {renamed}");
        }
        // Errors that name no member are unchanged.
        let other = Error::transport(TransportKind::Closed, "x");
        assert_eq!(other.clone().rename_members(rename), other);
    }
}
