//! The one place where Rust errors become Python exceptions.
//!
//! The exception classes are defined in Python (`dac/errors.py`), so that
//! they can derive from both `dac.DacError` and the built-in they refine
//! (`ValueError`, `TypeError`). Each carries the rank that raised it and
//! the fields of the Rust error as attributes.

use dac_core::{ArgumentKind, Error, ErrorClass};
use dac_linalg::LinalgError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Why a call failed, and on which member, before it becomes a Python
/// exception: the one type that crosses the boundary. `?` turns it into
/// a `PyErr` (the one [`From`] below); [`Failure::at`] names the member.
#[derive(Debug)]
pub struct Failure {
    cause: Cause,
    /// The member that met it (`None` outside a job).
    rank: Option<usize>,
    /// It is the member's own invalid argument to a collective, which the
    /// others were told of: the exception names the member in `ranks` too,
    /// as theirs do.
    own: bool,
}

/// What went wrong.
#[derive(Debug)]
enum Cause {
    /// From the consensus engine or the transport.
    Core(Error),
    /// From a linear-algebra call.
    Linalg(LinalgError),
    /// A misuse of the Python API that Rust found (its class, and the
    /// message).
    Usage(ErrorClass, String),
}

impl Failure {
    fn new(cause: Cause) -> Failure {
        Failure {
            cause,
            rank: None,
            own: false,
        }
    }

    /// The failure as met by member `rank` (a rank named earlier stays).
    pub fn at(mut self, rank: usize) -> Failure {
        self.rank.get_or_insert(rank);
        self
    }

    /// The failure of member `rank`'s own arguments to a collective, which
    /// the other members are told of (`dac_net::Comm::abort_call`).
    pub fn own_argument(self, rank: usize) -> Failure {
        Failure {
            own: true,
            ..self.at(rank)
        }
    }

    /// The kind of invalid argument the other members are told of for a
    /// failure of this member's own arguments: by its exception class.
    pub fn argument_kind(&self) -> ArgumentKind {
        match self.parts().0 {
            ErrorClass::InputType => ArgumentKind::Type,
            ErrorClass::Shape => ArgumentKind::Shape,
            _ => ArgumentKind::Value,
        }
    }

    /// The exception class, attributes and message.
    fn parts(&self) -> (ErrorClass, Vec<(&'static str, Detail)>, String) {
        match &self.cause {
            Cause::Core(e) => (e.class(), details_core(e), e.to_string()),
            Cause::Linalg(e) => (e.class(), details_linalg(e), e.to_string()),
            Cause::Usage(c, m) => (*c, vec![], m.clone()),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::new(Cause::Core(e))
    }
}

impl From<LinalgError> for Failure {
    fn from(e: LinalgError) -> Failure {
        match e {
            LinalgError::Consensus(e) => Failure::new(Cause::Core(e)),
            e => Failure::new(Cause::Linalg(e)),
        }
    }
}

/// The `dac.errors` exception a failure maps to, with the member's rank
/// and the Rust error's fields as attributes; the message names the rank
/// unless it already starts with one.
impl From<Failure> for PyErr {
    fn from(failure: Failure) -> PyErr {
        let (class, mut details, message) = failure.parts();
        if failure.own
            && let Some(rank) = failure.rank
            && !details.iter().any(|(name, _)| *name == "ranks")
        {
            details.push(("ranks", Detail::Ints(vec![rank])));
        }
        let message = match failure.rank {
            Some(r) if !message.starts_with("rank") => format!("rank {r}: {message}"),
            _ => message,
        };
        Python::attach(|py| {
            build(py, class_name(class), message, failure.rank, details).unwrap_or_else(|e| e)
        })
    }
}

/// An `ArgumentError` with this message.
pub fn argument(message: impl Into<String>) -> Failure {
    Failure::new(Cause::Usage(ErrorClass::Argument, message.into()))
}

/// A `NetworkError` of kind `"closed"` with this message: the comm, or
/// the worker thread a call runs on, cannot be used.
pub fn network(message: impl Into<String>) -> Failure {
    Failure::new(Cause::Core(Error::transport(
        dac_core::TransportKind::Closed,
        message,
    )))
}

/// The exception class in `dac.errors` of each kind of failure; every
/// kind has one (the match is exhaustive, and `test_errors.py` checks
/// that each class exists and derives from `DacError`).
pub fn class_name(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Argument => "ArgumentError",
        ErrorClass::InputType => "InputTypeError",
        ErrorClass::Shape => "ShapeError",
        ErrorClass::NonFinite => "NonFiniteError",
        ErrorClass::Convergence => "ConvergenceError",
        ErrorClass::Network => "NetworkError",
        ErrorClass::ReplicaMismatch => "ReplicaMismatchError",
        ErrorClass::PartitionLost => "PartitionLostError",
    }
}

/// The name of every exception class a failure can map to, for the test
/// that each exists.
#[pyfunction]
pub fn error_classes() -> Vec<&'static str> {
    ErrorClass::ALL.into_iter().map(class_name).collect()
}

/// One attribute of an exception.
enum Detail {
    Int(usize),
    Float(f64),
    Ints(Vec<usize>),
    Text(Option<String>),
}

/// The attributes of an engine or transport error's exception, beyond
/// `rank` (its class is [`Error::class`]).
fn details_core(e: &Error) -> Vec<(&'static str, Detail)> {
    use Detail::{Float, Int, Ints, Text};
    match e {
        Error::EmptyInput { rank } => vec![("ranks", Ints(vec![*rank]))],
        Error::Transport { kind, peer, .. } => vec![
            ("kind", Text(Some(kind.name().to_string()))),
            ("peer", Text(peer.clone())),
        ],
        Error::DimensionMismatch {
            rank,
            expected,
            found,
        } => vec![
            ("ranks", Ints(vec![*rank])),
            ("expected", Int(*expected)),
            ("found", Int(*found)),
        ],
        Error::ShapeMismatch {
            rank, neighbour, ..
        } => vec![(
            "ranks",
            Ints(vec![(*rank).min(*neighbour), (*rank).max(*neighbour)]),
        )],
        Error::NonFiniteInput { rank, index, .. } => {
            vec![("ranks", Ints(vec![*rank])), ("index", Int(*index))]
        }
        Error::NotConverged {
            rounds, residual, ..
        } => vec![
            ("rounds", Int(*rounds as usize)),
            ("residual", Float(*residual)),
        ],
        Error::InvalidArgument { rank, .. } => vec![("ranks", Ints(vec![*rank]))],
        // The others carry what they have in their message.
        _ => vec![],
    }
}

/// The same for a linear-algebra error.
fn details_linalg(e: &LinalgError) -> Vec<(&'static str, Detail)> {
    use Detail::{Float, Int, Ints};
    match e {
        LinalgError::NonFinite { ranks, .. } | LinalgError::InvalidArgument { ranks, .. } => {
            vec![("ranks", Ints(ranks.clone()))]
        }
        LinalgError::NotConverged {
            iterations,
            residual,
        } => vec![
            ("iterations", Int(*iterations)),
            ("residual", Float(*residual)),
        ],
        LinalgError::Incomplete { departed } => vec![("departed", Ints(departed.clone()))],
        LinalgError::PartitionLost { partition } => vec![("partition", Int(*partition))],
        LinalgError::ReplicaMismatch { partition, ranks } => vec![
            ("partition", Int(*partition)),
            ("ranks", Ints(ranks.clone())),
        ],
        LinalgError::Consensus(e) => details_core(e),
        _ => vec![],
    }
}

/// The `dac.errors` exception `class` with `message` and attributes.
fn build(
    py: Python<'_>,
    class: &str,
    message: String,
    rank: Option<usize>,
    details: Vec<(&'static str, Detail)>,
) -> PyResult<PyErr> {
    let cls = py.import("dac.errors")?.getattr(class)?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("rank", rank)?;
    for (name, detail) in details {
        match detail {
            Detail::Int(v) => kwargs.set_item(name, v)?,
            Detail::Float(v) => kwargs.set_item(name, v)?,
            Detail::Ints(v) => kwargs.set_item(name, v)?,
            Detail::Text(v) => kwargs.set_item(name, v)?,
        }
    }
    let exception = cls.call((message,), Some(&kwargs))?;
    Ok(PyErr::from_value(exception))
}
