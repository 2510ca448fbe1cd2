//! The one place where Rust errors become Python exceptions.
//!
//! The exception classes are defined in Python (`dac/errors.py`), so that
//! they can derive from both `dac.DacError` and the built-in they refine
//! (`ValueError`, `TypeError`). Each carries the rank that raised it and
//! the fields of the Rust error as attributes.

use dac_core::{ArgumentKind, Error};
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
    /// A misuse of the Python API that Rust found (the class name in
    /// `dac.errors`, and the message).
    Usage(&'static str, String),
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
    Failure::Usage("ArgumentError", message.into())
}

/// A `NetworkError` with this message.
pub fn network(message: impl Into<String>) -> Failure {
    Failure::Usage("NetworkError", message.into())
}

/// One attribute of an exception.
enum Detail {
    Int(usize),
    Float(f64),
    Ints(Vec<usize>),
}

/// The exception class (by name in `dac.errors`) and attributes for an
/// engine or transport error.
fn classify_core(e: &Error) -> (&'static str, Vec<(&'static str, Detail)>) {
    use Detail::{Float, Int, Ints};
    match e {
        Error::EmptyInput { rank } => ("ShapeError", vec![("ranks", Ints(vec![*rank]))]),
        Error::DimensionMismatch {
            rank,
            expected,
            found,
        } => (
            "ShapeError",
            vec![
                ("ranks", Ints(vec![*rank])),
                ("expected", Int(*expected)),
                ("found", Int(*found)),
            ],
        ),
        Error::InputTooLarge { .. } => ("ShapeError", vec![]),
        Error::ShapeMismatch {
            rank, neighbour, ..
        } => (
            "ShapeError",
            vec![(
                "ranks",
                Ints(vec![(*rank).min(*neighbour), (*rank).max(*neighbour)]),
            )],
        ),
        Error::NonFiniteInput { rank, index, .. } => (
            "NonFiniteError",
            vec![("ranks", Ints(vec![*rank])), ("index", Int(*index))],
        ),
        Error::Overflow { .. } => ("NonFiniteError", vec![]),
        Error::NotConverged {
            rounds, residual, ..
        } => (
            "ConvergenceError",
            vec![
                ("rounds", Int(*rounds as usize)),
                ("residual", Float(*residual)),
            ],
        ),
        Error::InvalidArgument { rank, kind } => (
            match kind {
                ArgumentKind::Type => "InputTypeError",
                ArgumentKind::Shape => "ShapeError",
                _ => "ArgumentError",
            },
            vec![("ranks", Ints(vec![*rank]))],
        ),
        Error::Excluded { .. }
        | Error::Partitioned { .. }
        | Error::Left { .. }
        | Error::Timeout { .. }
        | Error::Transport { .. } => ("NetworkError", vec![]),
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
        | Error::UnknownNode { .. } => ("ArgumentError", vec![]),
        _ => ("DacError", vec![]),
    }
}

/// The same for a linear-algebra error.
fn classify_linalg(e: &LinalgError) -> (&'static str, Vec<(&'static str, Detail)>) {
    use Detail::{Float, Int, Ints};
    match e {
        LinalgError::Shape { .. } | LinalgError::Empty { .. } => ("ShapeError", vec![]),
        LinalgError::NonFinite { ranks, .. } => {
            ("NonFiniteError", vec![("ranks", Ints(ranks.clone()))])
        }
        LinalgError::InvalidArgument { ranks, .. } => {
            ("ArgumentError", vec![("ranks", Ints(ranks.clone()))])
        }
        LinalgError::NotConverged {
            iterations,
            residual,
        } => (
            "ConvergenceError",
            vec![
                ("iterations", Int(*iterations)),
                ("residual", Float(*residual)),
            ],
        ),
        LinalgError::Incomplete { departed } => {
            ("NetworkError", vec![("departed", Ints(departed.clone()))])
        }
        LinalgError::PartitionLost { partition } => {
            ("PartitionLostError", vec![("partition", Int(*partition))])
        }
        LinalgError::ReplicaMismatch { partition, ranks } => (
            "ReplicaMismatchError",
            vec![
                ("partition", Int(*partition)),
                ("ranks", Ints(ranks.clone())),
            ],
        ),
        LinalgError::Consensus(e) => classify_core(e),
        _ => ("DacError", vec![]),
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
        "InputTypeError" => ArgumentKind::Type,
        "ShapeError" => ArgumentKind::Shape,
        _ => ArgumentKind::Value,
    }
}

/// The exception class, attributes and message for a failure.
fn parts(failure: &Failure) -> (&'static str, Vec<(&'static str, Detail)>, String) {
    match failure {
        Failure::Core(e) => {
            let (c, d) = classify_core(e);
            (c, d, e.to_string())
        }
        Failure::Linalg(e) => {
            let (c, d) = classify_linalg(e);
            (c, d, e.to_string())
        }
        Failure::Usage(c, m) => (*c, vec![], m.clone()),
    }
}

/// The exception of `class` with `message` (naming `rank` unless it
/// starts with a rank), `rank` and `details` as attributes.
fn exception(
    py: Python<'_>,
    class: &str,
    message: String,
    rank: Option<usize>,
    details: Vec<(&'static str, Detail)>,
) -> PyErr {
    let message = match rank {
        Some(r) if !message.starts_with("rank") => format!("rank {r}: {message}"),
        _ => message,
    };
    build(py, class, message, rank, details).unwrap_or_else(|e| e)
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
