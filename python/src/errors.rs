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

/// Why a call failed, before it is turned into a Python exception (which
/// needs the interpreter, so it happens on the calling thread).
#[derive(Debug)]
pub enum Failure {
    /// From the consensus engine or the transport.
    Core(Error),
    /// From a linear-algebra call.
    Linalg(LinalgError),
    /// A misuse of the Python API that Rust found (its class, and the
    /// message).
    Usage(ErrorClass, String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Core(e)
    }
}

impl From<LinalgError> for Failure {
    fn from(e: LinalgError) -> Failure {
        match e {
            LinalgError::Consensus(e) => Failure::Core(e),
            e => Failure::Linalg(e),
        }
    }
}

/// An `ArgumentError` with this message.
pub fn argument(message: impl Into<String>) -> Failure {
    Failure::Usage(ErrorClass::Argument, message.into())
}

/// A `NetworkError` with this message.
pub fn network(message: impl Into<String>) -> Failure {
    Failure::Usage(ErrorClass::Network, message.into())
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
}

/// The attributes of an engine or transport error's exception, beyond
/// `rank` (its class is [`Error::class`]).
fn details_core(e: &Error) -> Vec<(&'static str, Detail)> {
    use Detail::{Float, Int, Ints};
    match e {
        Error::EmptyInput { rank } => vec![("ranks", Ints(vec![*rank]))],
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

/// Turns a failure into the `dac.errors` exception it maps to. `rank` is
/// the rank of the member that raised it (`None` outside a job); the
/// message names it unless it already starts with it.
pub fn to_py(py: Python<'_>, rank: Option<usize>, failure: Failure) -> PyErr {
    let (class, details, message) = parts(&failure);
    exception(py, class, message, rank, details)
}

/// [`to_py`] for a failure of member `rank`'s own arguments to a
/// collective, which the other members are told of
/// (`dac_net::Comm::abort_call`): the exception names `rank` in `ranks`
/// too, as theirs do.
pub fn own_argument(py: Python<'_>, rank: usize, failure: Failure) -> PyErr {
    let (class, mut details, message) = parts(&failure);
    if !details.iter().any(|(name, _)| *name == "ranks") {
        details.push(("ranks", Detail::Ints(vec![rank])));
    }
    exception(py, class, message, Some(rank), details)
}

/// The kind of invalid argument the other members are told of for a
/// failure of a member's own arguments: by the exception class it maps to.
pub fn argument_kind(failure: &Failure) -> ArgumentKind {
    match parts(failure).0 {
        ErrorClass::InputType => ArgumentKind::Type,
        ErrorClass::Shape => ArgumentKind::Shape,
        _ => ArgumentKind::Value,
    }
}

/// The exception class, attributes and message for a failure.
fn parts(failure: &Failure) -> (ErrorClass, Vec<(&'static str, Detail)>, String) {
    match failure {
        Failure::Core(e) => (e.class(), details_core(e), e.to_string()),
        Failure::Linalg(e) => (e.class(), details_linalg(e), e.to_string()),
        Failure::Usage(c, m) => (*c, vec![], m.clone()),
    }
}

/// The exception of `class` with `message` (naming `rank` unless it
/// starts with a rank), `rank` and `details` as attributes.
fn exception(
    py: Python<'_>,
    class: ErrorClass,
    message: String,
    rank: Option<usize>,
    details: Vec<(&'static str, Detail)>,
) -> PyErr {
    let message = match rank {
        Some(r) if !message.starts_with("rank") => format!("rank {r}: {message}"),
        _ => message,
    };
    build(py, class_name(class), message, rank, details).unwrap_or_else(|e| e)
}

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
        }
    }
    let exception = cls.call((message,), Some(&kwargs))?;
    Ok(PyErr::from_value(exception))
}
