//! The networked SPMD handle: `dac.init()` and `Comm.allreduce`.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use dac_core::{Schedule, Topology};
use dac_net::{ArgumentKind, CommBuilder};
use numpy::{IntoPyArray, PyReadonlyArray1};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use crate::arrays::flat;
use crate::blocking::{Outcome, interruptible, run};
use crate::errors::{Failure, argument, network};
use crate::results::ReductionOut;

/// Where a member's handle is between calls.
#[derive(Debug)]
enum Slot {
    /// Idle, ready for the next call.
    Ready(Box<dac_net::Comm>),
    /// A call has it on its worker thread.
    Busy,
    /// A call was interrupted (Ctrl-C); its worker still has the handle
    /// and drops it when it finishes, which leaves the job.
    Interrupted,
    /// `close()` was called.
    Closed,
}

/// One member of a networked job (the native half of `dac.Comm`).
#[pyclass(module = "dac._native", frozen)]
#[derive(Debug)]
pub struct Comm {
    /// The handle, moved to a worker thread during each call.
    slot: Mutex<Slot>,
    /// This member's rank.
    rank: usize,
    /// Ranks assigned when it was made (the live value is the handle's).
    size: usize,
    /// This member's peer id.
    peer_id: String,
    /// Its address (see `dac_net::Comm::address`).
    address: String,
}

impl Comm {
    /// `f` of the comm, if it is open and not in a call.
    fn ready<T>(&self, f: impl FnOnce(&dac_net::Comm) -> T) -> PyResult<T> {
        match &*self.slot() {
            Slot::Ready(comm) => Ok(f(comm)),
            _ => Err(network("the comm is closed or in use").at(self.rank).into()),
        }
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the handle out for one call.
    fn take(&self) -> Result<Box<dac_net::Comm>, Failure> {
        let mut slot = self.slot();
        match std::mem::replace(&mut *slot, Slot::Busy) {
            Slot::Ready(comm) => Ok(comm),
            other => {
                let message = match &other {
                    Slot::Busy => {
                        "the comm is in use by another call: calls on one comm must not \
                         overlap (every rank makes the same calls in the same order)"
                    }
                    Slot::Interrupted => {
                        "a call on this comm was interrupted (Ctrl-C), so this member has \
                         left the job; start a new job"
                    }
                    _ => "the comm is closed",
                };
                *slot = other;
                Err(network(message))
            }
        }
    }

    /// Runs `work` with the handle on a worker thread (see
    /// [`crate::blocking`]); errors name this rank.
    ///
    /// # Errors
    /// The work's failure as a `dac.errors` exception; `NetworkError` if
    /// the comm is closed, interrupted or busy; `KeyboardInterrupt`.
    pub fn call<T, F>(&self, py: Python<'_>, work: F) -> PyResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dac_net::Comm) -> Result<T, Failure> + Send + 'static,
    {
        let mut comm = self.take().map_err(|f| f.at(self.rank))?;
        let name = format!("dac-rank{}", self.rank);
        match interruptible(py, name, move || {
            let out = work(&mut comm);
            (comm, out)
        }) {
            Ok(Outcome::Done((comm, out))) => {
                *self.slot() = Slot::Ready(comm);
                Ok(out.map_err(|f| f.at(self.rank))?)
            }
            Ok(Outcome::Interrupted(e)) => {
                *self.slot() = Slot::Interrupted;
                Err(e)
            }
            Err(f) => {
                *self.slot() = Slot::Closed;
                Err(f.at(self.rank).into())
            }
        }
    }

    /// This member's own conversion of its arguments to a collective. If
    /// `convert` fails, this member still takes part in the collective, to
    /// fail it on every other member naming this rank (see `abort_call`),
    /// and then raises the conversion's error, naming this rank in `ranks`
    /// like the others' errors: otherwise the others would wait for it,
    /// and its next call would pair with their current one.
    ///
    /// # Errors
    /// The conversion's error, with the failure to tell the others, if
    /// any, as its `__context__`; `KeyboardInterrupt` if that was
    /// interrupted.
    pub fn arguments<T>(
        &self,
        py: Python<'_>,
        convert: impl FnOnce() -> Result<T, Failure>,
    ) -> PyResult<T> {
        convert().map_err(|failure| {
            let kind = failure.argument_kind();
            let error = PyErr::from(failure.own_argument(self.rank));
            match self.call(py, move |comm| Ok(comm.abort_call(kind)?)) {
                Ok(()) => error,
                Err(failed) if !failed.is_instance_of::<PyException>(py) => {
                    failed.set_context(py, Some(error));
                    failed
                }
                Err(failed) => {
                    if error.context(py).is_none() {
                        error.set_context(py, Some(failed));
                    }
                    error
                }
            }
        })
    }
}

/// The kind of invalid argument `abort_call` reports, by its name.
fn kind_named(name: &str) -> Result<ArgumentKind, Failure> {
    match name {
        "value" => Ok(ArgumentKind::Value),
        "type" => Ok(ArgumentKind::Type),
        "shape" => Ok(ArgumentKind::Shape),
        _ => Err(argument(format!(
            "kind={name:?}; expected 'value', 'type' or 'shape'"
        ))),
    }
}

#[pymethods]
impl Comm {
    /// This member's rank, in `0..size`.
    #[getter]
    fn rank(&self) -> usize {
        self.rank
    }

    /// Ranks assigned so far (members that joined get the next ones); the
    /// last known value while a call is under way.
    #[getter]
    fn size(&self) -> usize {
        self.ready(dac_net::Comm::size).unwrap_or(self.size)
    }

    /// This member's address, for a process that joins the job through it
    /// (see `dac_net::Comm::address`).
    #[getter]
    fn address(&self) -> &str {
        &self.address
    }

    /// The current view's members, by rank (see `dac_net::Comm::members`).
    fn members(&self) -> PyResult<Vec<usize>> {
        self.ready(|comm| comm.members().to_vec())
    }

    /// The current view's id (see `dac_net::Comm::view_id`).
    fn view_id(&self) -> PyResult<u64> {
        self.ready(dac_net::Comm::view_id)
    }

    /// This member's peer id (stable across runs with an identity file).
    #[getter]
    fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// Whether `close()` was called (or a call was interrupted).
    #[getter]
    fn closed(&self) -> bool {
        matches!(*self.slot(), Slot::Closed | Slot::Interrupted)
    }

    /// The mean (`sum = false`) or sum of every member's `x`.
    fn allreduce<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray1<'py, f64>,
        shape: Vec<usize>,
        sum: bool,
    ) -> PyResult<ReductionOut> {
        // Refused before the copy below, on every member alike. The comm
        // is only called when the input is too long (or the comm is not
        // ready: the call then raises why).
        let len = x.as_array().len();
        if !self
            .ready(|comm| len <= comm.max_input_len())
            .unwrap_or(false)
        {
            self.call(py, move |comm| Ok(comm.check_input_len(len)?))?;
        }
        let x = self.arguments(py, || flat(x.as_slice()))?;
        let r = self.call(py, move |comm| {
            let r = if sum {
                comm.allreduce_sum_shaped(&x, &shape)
            } else {
                comm.allreduce_mean_shaped(&x, &shape)
            };
            Ok(r?)
        })?;
        Ok(ReductionOut {
            value: r.value.into_pyarray(py).unbind(),
            rounds: r.rounds,
            residual: r.residual,
            contributors: r.contributors.to_vec(),
        })
    }

    /// Takes part in the next collective only to fail it on every other
    /// member with the exception for an invalid argument of `kind`
    /// (`"value"`: `ArgumentError`, `"type"`: `InputTypeError`,
    /// `"shape"`: `ShapeError`) naming this rank: for a call whose
    /// arguments this member found invalid, which then raises its own,
    /// detailed error.
    fn abort_call(&self, py: Python<'_>, kind: &str) -> PyResult<()> {
        let kind = kind_named(kind).map_err(|f| f.at(self.rank))?;
        self.call(py, move |comm| Ok(comm.abort_call(kind)?))
    }

    /// An admission point (see `dac_net::Comm::admit`): the ranks admitted.
    fn admit(&self, py: Python<'_>) -> PyResult<Vec<usize>> {
        self.call(py, |comm| Ok(comm.admit()?))
    }

    /// Members that departed mid-job (see `dac_net::Comm::departed`).
    fn departed(&self) -> PyResult<Vec<usize>> {
        self.ready(|comm| comm.departed())
    }

    /// Members gone after their part was done (see `dac_net::Comm::left`).
    fn left(&self) -> PyResult<Vec<usize>> {
        self.ready(|comm| comm.left())
    }

    /// Leaves the job: flushes what is queued (at most 2 s) and closes the
    /// links. Closing twice is harmless.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let comm = {
            let mut slot = self.slot();
            match std::mem::replace(&mut *slot, Slot::Closed) {
                Slot::Ready(comm) => comm,
                Slot::Busy => {
                    *slot = Slot::Busy;
                    let busy = network("cannot close the comm while a call is using it");
                    return Err(busy.at(self.rank).into());
                }
                Slot::Interrupted => {
                    *slot = Slot::Interrupted;
                    return Ok(());
                }
                Slot::Closed => return Ok(()),
            }
        };
        let name = format!("dac-rank{}-close", self.rank);
        run(py, Some(self.rank), name, move || Ok(comm.shutdown()?))
    }

    fn __repr__(&self) -> String {
        let state = match &*self.slot() {
            Slot::Ready(_) | Slot::Busy => "open",
            Slot::Interrupted => "interrupted",
            Slot::Closed => "closed",
        };
        format!("<dac.Comm rank {} of {} ({state})>", self.rank, self.size)
    }
}

/// Settings of `dac.init` beyond the environment.
#[derive(Debug, Default, FromPyObject)]
#[pyo3(from_item_all)]
pub struct InitOptions {
    rank: Option<usize>,
    size: Option<usize>,
    listen: Option<String>,
    bootstrap: Option<Vec<String>>,
    join: Option<Vec<String>>,
    run_dir: Option<String>,
    key: Option<String>,
    key_file: Option<String>,
    identity_file: Option<String>,
    allow_peers: Option<Vec<String>>,
    topology: Option<String>,
    schedule: Option<String>,
    tol: Option<f64>,
    max_rounds: Option<u32>,
    seed: Option<u64>,
    peer_timeout: Option<f64>,
    startup_timeout: Option<f64>,
}

fn seconds(field: &str, value: f64) -> Result<Duration, Failure> {
    if value.is_finite() && value > 0.0 && value < 1e9 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(argument(format!(
            "{field}={value} must be a positive number of seconds"
        )))
    }
}

fn addr(field: &str, text: &str) -> Result<dac_net::Multiaddr, Failure> {
    text.trim()
        .parse()
        .map_err(|e| argument(format!("{field}: {text:?} is not a multiaddr ({e})")))
}

/// The builder for `options`: the environment `dacrun` sets (if any),
/// overridden by explicit options, which must agree with it on rank and
/// size.
fn builder(options: InitOptions) -> Result<CommBuilder, Failure> {
    let under_dacrun =
        std::env::var_os("DAC_RANK").is_some() || std::env::var_os("DAC_JOIN").is_some();
    let mut b = if let Some(list) = options.join.as_ref().filter(|_| !under_dacrun) {
        if options.rank.is_some() || options.size.is_some() || options.bootstrap.is_some() {
            return Err(argument(
                "join= joins a running job, which gives this member its rank: leave out \
                 size=, rank= and bootstrap=",
            ));
        }
        let addrs = list
            .iter()
            .map(|a| addr("join", a))
            .collect::<Result<Vec<_>, _>>()?;
        dac_net::Comm::builder().join(addrs)
    } else if under_dacrun {
        let b = CommBuilder::from_env()?;
        for (field, var, given) in [
            ("rank", "DAC_RANK", options.rank),
            ("size", "DAC_SIZE", options.size),
        ] {
            let env = std::env::var(var).unwrap_or_default();
            if let Some(given) = given
                && env.trim() != given.to_string()
            {
                return Err(argument(format!(
                    "{field}={given} but this process was started by dacrun with \
                     {var}={env}: leave {field} out under dacrun"
                )));
            }
        }
        b
    } else {
        let (Some(rank), Some(size)) = (options.rank, options.size) else {
            return Err(argument(
                "not started by dacrun (DAC_RANK and DAC_SIZE are not set): pass \
                 size= and rank= (and bootstrap= or run_dir= for ranks above 0), or join= \
                 with a member's address",
            ));
        };
        dac_net::Comm::builder().rank(rank).size(size)
    };
    if let Some(listen) = &options.listen {
        b = b.listen(addr("listen", listen)?);
    }
    if let Some(list) = &options.bootstrap {
        let addrs = list
            .iter()
            .map(|a| addr("bootstrap", a))
            .collect::<Result<Vec<_>, _>>()?;
        b = b.bootstrap(addrs);
    }
    if let Some(dir) = options.run_dir {
        b = b.run_dir(dir);
    }
    if let Some(key) = &options.key {
        b = b.key(dac_net::parse_key(key)?);
    }
    if let Some(path) = options.key_file {
        b = b.key_file(path);
    }
    if let Some(path) = options.identity_file {
        b = b.identity_file(path);
    }
    if let Some(peers) = &options.allow_peers {
        let peers = peers
            .iter()
            .map(|p| {
                p.trim()
                    .parse::<dac_net::PeerId>()
                    .map_err(|e| argument(format!("allow_peers: {p:?} is not a peer id ({e})")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        b = b.allow_peers(peers);
    }
    if let Some(t) = &options.topology {
        b = b.topology(t.parse::<Topology>()?);
    }
    if let Some(s) = &options.schedule {
        b = b.schedule(s.parse::<Schedule>()?);
    }
    if let Some(tol) = options.tol {
        b = b.tol(tol);
    }
    if let Some(rounds) = options.max_rounds {
        b = b.max_rounds(rounds);
    }
    if let Some(seed) = options.seed {
        b = b.seed(seed);
    }
    if let Some(t) = options.peer_timeout {
        b = b.peer_timeout(seconds("peer_timeout", t)?);
    }
    if let Some(t) = options.startup_timeout {
        b = b.startup_timeout(seconds("startup_timeout", t)?);
    }
    Ok(b)
}

/// Joins (or, on rank 0, forms) a job; `options` is a dict of the
/// keyword arguments of `dac.init`.
#[pyfunction]
pub fn init(py: Python<'_>, options: InitOptions) -> PyResult<Comm> {
    let b = builder(options)?;
    let comm = run(py, None, "dac-init".into(), move || Ok(b.build()?))?;
    Ok(Comm {
        rank: comm.rank(),
        size: comm.size(),
        peer_id: comm.peer_id().to_string(),
        address: comm.address(),
        slot: Mutex::new(Slot::Ready(Box::new(comm))),
    })
}
