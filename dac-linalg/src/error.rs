//! The one error type of `dac-linalg`.

/// Result alias used throughout `dac-linalg`.
pub type Result<T, E = LinalgError> = std::result::Result<T, E>;

/// Everything that can go wrong in a distributed linear-algebra call.
///
/// Every rank of a call returns the same variant: a problem found on one
/// rank (a local shape that does not fit, a NaN in its data) is shared in
/// the call's reduction, so that no rank waits for another that gave up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LinalgError {
    /// The local pieces do not fit together, on one rank or across ranks.
    #[error("shape error: {reason}")]
    Shape {
        /// What does not fit, naming the ranks and the shapes.
        reason: String,
    },
    /// NaN or infinity in some rank's input.
    #[error("non-finite input on rank(s) {ranks:?}{}", Then(detail))]
    NonFinite {
        /// The ranks whose input is not finite.
        ranks: Vec<usize>,
        /// On an offending rank: which array and where (else empty). The
        /// message shows it after a `; `.
        detail: String,
    },
    /// An option out of its range, or options that differ between ranks.
    #[error("invalid argument on rank(s) {ranks:?}{}", Then(detail))]
    InvalidArgument {
        /// The ranks that found it.
        ranks: Vec<usize>,
        /// Which argument and why (on a rank that did not find it, it may
        /// be empty). The message shows it after a `; `.
        detail: String,
    },
    /// An iterative solver reached its iteration limit.
    #[error("not converged after {iterations} iterations: relative residual {residual:e}")]
    NotConverged {
        /// Iterations taken.
        iterations: usize,
        /// `‖b − A x‖ / ‖b‖` reached.
        residual: f64,
    },
    /// The global problem has no data.
    #[error("the global problem is empty: {what}")]
    Empty {
        /// What is empty.
        what: &'static str,
    },
    /// Members departed during the call: their data is missing, so any
    /// result would be wrong (replication keeps it; see the `dac` docs).
    #[error("member(s) {departed:?} departed; their part of the data is missing")]
    Incomplete {
        /// The members whose data is missing.
        departed: Vec<usize>,
    },
    /// Every holder of a partition of a replicated job is gone.
    #[error("partition {partition} is lost: every rank that held it departed")]
    PartitionLost {
        /// The first lost partition.
        partition: usize,
    },
    /// The holders of a partition of a replicated job computed different
    /// contributions and no majority of them agrees.
    #[error("the holders {ranks:?} of partition {partition} disagree and no majority agrees")]
    ReplicaMismatch {
        /// The partition.
        partition: usize,
        /// Its holders that took part.
        ranks: Vec<usize>,
    },
    /// The consensus reduction failed.
    #[error(transparent)]
    Consensus(dac_core::Error),
}

impl LinalgError {
    /// The kind of failure this is (the class of a consensus error is its
    /// own).
    pub fn class(&self) -> dac_core::ErrorClass {
        use dac_core::ErrorClass;
        match self {
            LinalgError::Shape { .. } | LinalgError::Empty { .. } => ErrorClass::Shape,
            LinalgError::NonFinite { .. } => ErrorClass::NonFinite,
            LinalgError::InvalidArgument { .. } => ErrorClass::Argument,
            LinalgError::NotConverged { .. } => ErrorClass::Convergence,
            LinalgError::Incomplete { .. } => ErrorClass::Network,
            LinalgError::PartitionLost { .. } => ErrorClass::PartitionLost,
            LinalgError::ReplicaMismatch { .. } => ErrorClass::ReplicaMismatch,
            LinalgError::Consensus(e) => e.class(),
        }
    }
}

/// A detail shown after the main message: `; detail`, or nothing.
struct Then<'a>(&'a str);

impl std::fmt::Display for Then<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "; {}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LinalgError;

    /// The detail is a field of its own; the message adds the separator.
    #[test]
    fn details_follow_the_message_after_a_separator() {
        let with = LinalgError::InvalidArgument {
            ranks: vec![1],
            detail: "tol = -1 here".into(),
        };
        assert_eq!(
            with.to_string(),
            "invalid argument on rank(s) [1]; tol = -1 here"
        );
        let without = LinalgError::NonFinite {
            ranks: vec![0, 2],
            detail: String::new(),
        };
        assert_eq!(without.to_string(), "non-finite input on rank(s) [0, 2]");
    }
}
