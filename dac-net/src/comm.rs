//! The SPMD handle.

use std::time::Duration;

use dac_core::{Communicator, Config, Error, Reduction, Result};
use libp2p::{Multiaddr, PeerId};

use crate::builder::CommBuilder;
use crate::node::PeerEvent;
use crate::session::Session;

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
    /// The job's members, links and reduction state.
    session: Session,
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
        self.session.rank
    }

    /// The number of members the job started with.
    pub fn size(&self) -> usize {
        self.session.size
    }

    /// The reduction settings every member uses.
    pub fn config(&self) -> &Config {
        &self.session.config
    }

    /// This member's libp2p peer id.
    pub fn peer_id(&self) -> PeerId {
        self.session.peer_id
    }

    /// The addresses this member listens on.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.session.listen_addrs
    }

    /// Members known to have departed, in rank order.
    pub fn departed(&self) -> Vec<usize> {
        let mut all = self.session.departed.clone();
        all.extend(self.session.node.departed());
        all.into_iter().collect()
    }

    /// Takes the peer events (departures, misbehaving or refused peers)
    /// recorded since the last call.
    pub fn take_events(&self) -> Vec<PeerEvent> {
        self.session.node.take_events()
    }

    fn blocking<T>(&mut self, f: impl AsyncFnOnce(&mut Session) -> Result<T>) -> Result<T> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(transport(
                "a blocking Comm method was called inside an async runtime; \
                 use the _async methods there",
            ));
        }
        let Some(runtime) = self.runtime.as_ref() else {
            return Err(transport("the comm has been shut down"));
        };
        runtime.block_on(f(&mut self.session))
    }

    /// [`Communicator::allreduce_mean`] for async code.
    ///
    /// # Errors
    /// As [`Communicator::allreduce_mean`].
    pub async fn allreduce_mean_async(&mut self, x: &[f64]) -> Result<Reduction> {
        self.session.reduce(x).await
    }

    /// [`Communicator::allreduce_sum`] for async code.
    ///
    /// # Errors
    /// As [`Communicator::allreduce_sum`].
    pub async fn allreduce_sum_async(&mut self, x: &[f64]) -> Result<Reduction> {
        self.session.reduce(x).await.map(Reduction::into_sum)
    }

    /// Writes raw bytes on the link to member `to`, bypassing the frame
    /// encoder. For tests of the peers' frame checks only: a member that
    /// does this is disconnected by `to`.
    #[doc(hidden)]
    pub fn send_raw_for_tests(&mut self, to: usize, bytes: Vec<u8>) -> Result<()> {
        self.blocking(async move |s: &mut Session| {
            s.node.send_raw(to, bytes).await;
            Ok(())
        })
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
        self.session.close().await;
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    fn close(&mut self) -> Result<()> {
        let result = self.blocking(async |s: &mut Session| {
            s.close().await;
            Ok(())
        });
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
        self.session.rank
    }

    fn size(&self) -> usize {
        self.session.size
    }

    fn allreduce_mean(&mut self, x: &[f64]) -> Result<Reduction> {
        self.blocking(async |s: &mut Session| s.reduce(x).await)
    }

    fn allreduce_sum(&mut self, x: &[f64]) -> Result<Reduction> {
        self.blocking(async |s: &mut Session| s.reduce(x).await.map(Reduction::into_sum))
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
            session,
        })
    }
}
