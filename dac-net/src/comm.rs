//! The SPMD handle.

use std::sync::Arc;
use std::time::Duration;

use dac_core::{Communicator, Config, Error, Reduction, Result};
use libp2p::{Multiaddr, PeerId};

use crate::builder::CommBuilder;
use crate::node::{Node, PeerEvent};
use crate::session::Session;

/// Longest input reduced on the runtime's worker (see
/// `Comm::reduce_blocking`).
const ON_WORKER_MAX_LEN: usize = 1 << 16;

/// A member of a networked job: the MPI-style handle every rank uses to
/// run reductions. Made by [`Comm::builder`] or [`Comm::from_env`].
///
/// The blocking methods (and the [`Communicator`] impl) run on an internal
/// tokio runtime and must not be called from inside an async runtime; use
/// the `_async` methods there.
#[derive(Debug)]
pub struct Comm {
    /// Drives the network in the background and runs the blocking calls;
    /// `None` once shut down.
    runtime: Option<tokio::runtime::Runtime>,
    /// The job's members, links and reduction state. Shared with the task
    /// that runs a blocking reduction on the runtime's worker, next to the
    /// links, so that a message costs no thread switch there.
    session: Arc<tokio::sync::Mutex<Session>>,
    /// This member's rank.
    rank: usize,
    /// Members the job started with.
    size: usize,
    /// The reduction settings every member agreed on.
    config: Config,
    /// Our libp2p identity.
    peer_id: PeerId,
    /// Where we listen.
    listen_addrs: Vec<Multiaddr>,
    /// The links, for departures and events.
    node: Arc<Node>,
}

/// An [`Error::Transport`] with this reason.
pub(crate) fn transport(reason: impl Into<String>) -> Error {
    Error::Transport {
        reason: reason.into(),
    }
}

impl Comm {
    /// Settings for a member started by hand (explicit size, rank and
    /// addresses).
    pub fn builder() -> CommBuilder {
        CommBuilder::default()
    }

    /// Joins the job of a process started by `dacrun` (see
    /// [`CommBuilder::from_env`] for the variables read).
    ///
    /// # Errors
    /// A missing or malformed variable, or any error of
    /// [`CommBuilder::build`].
    pub fn from_env() -> Result<Comm> {
        CommBuilder::from_env()?.build()
    }

    /// This member's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of members the job started with.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The reduction settings every member uses.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This member's libp2p peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses this member listens on.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    /// Members known to have departed, in rank order.
    pub fn departed(&self) -> Vec<usize> {
        let mut all = self.node.departed();
        // Reductions take `&mut self`, so the session is free here.
        if let Ok(session) = self.session.try_lock() {
            all.extend(session.departed.iter().copied());
        }
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Takes the peer events (departures, misbehaving or refused peers)
    /// recorded since the last call.
    pub fn take_events(&self) -> Vec<PeerEvent> {
        self.node.take_events()
    }

    /// The runtime, for a blocking call made outside any async runtime.
    fn runtime(&self) -> Result<&tokio::runtime::Runtime> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(transport(
                "a blocking Comm method was called inside an async runtime; \
                 use the _async methods there",
            ));
        }
        self.runtime
            .as_ref()
            .ok_or_else(|| transport("the comm has been shut down"))
    }

    /// Runs a reduction and waits for it. A short input is reduced on the
    /// runtime's worker, next to the links, so that a message costs no
    /// thread switch; a long one on the caller's thread, so that its
    /// arithmetic overlaps the links' encryption and copying on the worker
    /// (each measured faster for its size with `scripts/bench-net`).
    fn reduce_blocking(&mut self, x: &[f64]) -> Result<Reduction> {
        let runtime = self.runtime()?;
        if x.len() > ON_WORKER_MAX_LEN {
            return runtime.block_on(async { self.session.lock().await.reduce(x).await });
        }
        let session = Arc::clone(&self.session);
        let x = x.to_vec();
        let task = runtime.spawn(async move { session.lock().await.reduce(&x).await });
        runtime
            .block_on(task)
            .map_err(|e| transport(format!("the reduction task failed: {e}")))?
    }

    /// [`Communicator::allreduce_mean`] for async code.
    ///
    /// # Errors
    /// As [`Communicator::allreduce_mean`].
    pub async fn allreduce_mean_async(&mut self, x: &[f64]) -> Result<Reduction> {
        self.session.lock().await.reduce(x).await
    }

    /// [`Communicator::allreduce_sum`] for async code.
    ///
    /// # Errors
    /// As [`Communicator::allreduce_sum`].
    pub async fn allreduce_sum_async(&mut self, x: &[f64]) -> Result<Reduction> {
        self.allreduce_mean_async(x).await.map(Reduction::into_sum)
    }

    /// Writes raw bytes on the link to member `to`, bypassing the frame
    /// encoder. For tests of the peers' frame checks only: a member that
    /// does this is disconnected by `to`.
    #[doc(hidden)]
    pub fn send_raw_for_tests(&mut self, to: usize, bytes: Vec<u8>) -> Result<()> {
        self.runtime()?.block_on(self.node.send_raw(to, bytes));
        Ok(())
    }

    /// Closes the links after writing what is queued (at most 2 s), and
    /// stops the runtime.
    ///
    /// # Errors
    /// [`Error::Transport`] if called inside an async runtime (use
    /// [`Comm::shutdown_async`]); the links are then dropped unflushed.
    pub fn shutdown(mut self) -> Result<()> {
        self.close()
    }

    /// Closes the links after writing what is queued (at most 2 s).
    pub async fn shutdown_async(mut self) {
        self.session.lock().await.close().await;
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    fn close(&mut self) -> Result<()> {
        let result = self
            .runtime()
            .map(|runtime| runtime.block_on(async { self.session.lock().await.close().await }));
        if let Some(runtime) = self.runtime.take() {
            if result.is_ok() {
                runtime.shutdown_timeout(Duration::from_secs(1));
            } else {
                runtime.shutdown_background();
            }
        }
        result
    }
}

impl Drop for Comm {
    fn drop(&mut self) {
        if self.runtime.is_some() {
            let _ = self.close();
        }
    }
}

impl Communicator for Comm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn allreduce_mean(&mut self, x: &[f64]) -> Result<Reduction> {
        self.reduce_blocking(x)
    }

    fn allreduce_sum(&mut self, x: &[f64]) -> Result<Reduction> {
        self.reduce_blocking(x).map(Reduction::into_sum)
    }
}

impl CommBuilder {
    /// Forms the job: listens, publishes the address, joins through rank 0
    /// (rank 0 waits for everyone), and opens the links to this member's
    /// neighbours.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (and the other configuration errors of
    /// `dac-core`) for bad settings; [`Error::Transport`] if the job cannot
    /// be formed within the startup timeout (rank 0 unreachable, a member
    /// missing, settings that differ between members, a wrong job key).
    pub fn build(self) -> Result<Comm> {
        let (rank, size, config) = self.checked()?;
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(transport(
                "Comm::build was called inside an async runtime; build it on a plain thread \
                 (e.g. tokio::task::spawn_blocking)",
            ));
        }
        // One worker thread runs the swarm, the links and their checks in
        // the background; the reduction itself runs on the caller's
        // thread. A second worker measured slower on a 2-core machine
        // running 8 members (more threads to wake per message).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("dac-net")
            .build()
            .map_err(|e| transport(format!("cannot start the network runtime: {e}")))?;
        let session = runtime.block_on(Session::connect(self, rank, size, config))?;
        Ok(Comm {
            runtime: Some(runtime),
            rank: session.rank,
            size: session.size,
            config: session.config.clone(),
            peer_id: session.peer_id,
            listen_addrs: session.listen_addrs.clone(),
            node: Arc::clone(&session.node),
            session: Arc::new(tokio::sync::Mutex::new(session)),
        })
    }
}
