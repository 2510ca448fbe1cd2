//! The SPMD handle.

use std::sync::Arc;
use std::time::Duration;

use dac_core::{Communicator, Config, Error, Reduction, Result};
use libp2p::{Multiaddr, PeerId};

use crate::builder::CommBuilder;
use crate::failure::closed;
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
    /// Ranks assigned so far, and the current view (id, members): read
    /// from the session after every call.
    size: usize,
    view: (u64, Vec<usize>),
    /// The reduction settings every member agreed on.
    config: Config,
    /// Our libp2p identity.
    peer_id: PeerId,
    /// Where we listen.
    listen_addrs: Vec<Multiaddr>,
    /// The links, for departures and events.
    node: Arc<Node>,
}

impl Comm {
    /// The handle of a formed job: `runtime` drives `session`'s network.
    pub(crate) fn formed(runtime: tokio::runtime::Runtime, session: Session) -> Comm {
        Comm {
            runtime: Some(runtime),
            rank: session.rank,
            size: session.size(),
            view: (
                session.membership.view().id,
                session.membership.view().members.clone(),
            ),
            config: session.config.clone(),
            peer_id: session.peer_id,
            listen_addrs: session.listen_addrs.clone(),
            node: Arc::clone(&session.node),
            session: Arc::new(tokio::sync::Mutex::new(session)),
        }
    }

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

    /// This member's rank: its identity for the whole job. A rank is
    /// never renumbered or reused, so ranks stay comparable across views
    /// (and with every result's `contributors`).
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Ranks assigned so far: the number of members the job formed with.
    /// Members that departed keep their ranks; [`Comm::members`] lists the
    /// ones in the current view.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The members of the current view, by rank, ascending: the members
    /// the next reduction runs over (before any departure it sees). The
    /// view is the contributors of the last reduction that completed, so
    /// every member has the same one; it changes only when a reduction
    /// completes without a member (see [`Comm::view_id`]). An application
    /// that splits its data by member re-splits it when this changes.
    pub fn members(&self) -> &[usize] {
        &self.view.1
    }

    /// The id of the current view: 0 for the members the job formed with,
    /// one more at every change. Every frame of a reduction carries its
    /// view, so a member the others went on without never mixes into it.
    pub fn view_id(&self) -> u64 {
        self.view.0
    }

    /// Reads the membership after a call (the session is free then: every
    /// call takes `&mut self`).
    fn refresh(&mut self) {
        if let Ok(mut session) = self.session.try_lock() {
            session.take_verdicts();
            let view = session.membership.view();
            if view.id != self.view.0 {
                self.view = (view.id, view.members.clone());
            }
            self.size = session.size();
        }
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

    /// This member's address, printable and complete: its first listen
    /// address with its peer id (`/ip4/…/tcp/…/p2p/…`). A process joins the
    /// job through it ([`CommBuilder::join`], `DAC_JOIN`, `dacrun --join`).
    pub fn address(&self) -> String {
        match self.listen_addrs.first() {
            Some(addr) => format!("{addr}/p2p/{}", self.peer_id),
            None => format!("/p2p/{}", self.peer_id),
        }
    }

    /// Members that departed mid-job, in rank order: those whose input is
    /// missing from a reduction this member completed (they crashed, were
    /// cut off, or left before the others were done with them). Every
    /// member that completed the same reductions lists the same ones.
    /// Members that went away after their part was done are in
    /// [`Comm::left`] instead.
    pub fn departed(&self) -> Vec<usize> {
        // Reductions take `&mut self`, so the session is free here.
        self.session
            .try_lock()
            .map(|session| session.membership.missing())
            .unwrap_or_default()
    }

    /// Members known to be gone (a goodbye, a failure detected here, or
    /// another member's report) whose input is in every reduction this
    /// member completed: typically members that finished the job and left
    /// first. In rank order; disjoint from [`Comm::departed`]. A member
    /// listed here moves to `departed` if a later reduction lacks it.
    pub fn left(&self) -> Vec<usize> {
        // Reductions take `&mut self`, so the session is free here; the
        // node's decisions since the last call are taken in first.
        self.session
            .try_lock()
            .map(|mut session| {
                session.take_verdicts();
                session.membership.left()
            })
            .unwrap_or_default()
    }

    /// An admission point: admits the processes waiting to join the job
    /// ([`CommBuilder::join`]). A collective, like a reduction: every member
    /// calls it at the same point of its program, and it returns the ranks
    /// admitted, the same on every member (usually none).
    ///
    /// Call it where a new member's program may begin: after the last
    /// collective of an iteration of the job's loop, so that a joiner, whose
    /// `build` returns once it is admitted, runs the loop from its top, its
    /// first collective paired with everyone's first one after this call.
    /// (A joiner that entered in the middle of an operation of several
    /// reductions, such as a least-squares fit, would pair its first call
    /// with a later step of the others'.) From the next call on, every
    /// result includes the joiners, and [`Comm::size`] and
    /// [`Comm::members`] show them.
    ///
    /// A member that is done leaves in place of an admission point: it
    /// calls [`Comm::shutdown`] after the last collective of its last
    /// iteration instead of `admit`. The others' admission point then notes
    /// its departure, and their next operation runs without it from its
    /// first reduction.
    ///
    /// It costs one reduction of one value, and one more of a few hundred
    /// values per member when someone is admitted.
    ///
    /// # Errors
    /// As [`Communicator::allreduce_mean`].
    pub fn admit(&mut self) -> Result<Vec<usize>> {
        let runtime = self.runtime()?;
        let admitted = runtime.block_on(async { self.session.lock().await.admit().await });
        self.refresh();
        admitted.map(Iterator::collect)
    }

    /// Takes the peer events (departures, misbehaving or refused peers)
    /// recorded since the last call.
    pub fn take_events(&self) -> Vec<PeerEvent> {
        self.node.take_events()
    }

    /// The runtime, for a blocking call made outside any async runtime.
    fn runtime(&self) -> Result<&tokio::runtime::Runtime> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(closed(
                "a blocking Comm method was called inside an async runtime; \
                 use the _async methods there",
            ));
        }
        self.runtime
            .as_ref()
            .ok_or_else(|| closed("the comm has been shut down"))
    }

    /// Runs a reduction and waits for it. A short input is reduced on the
    /// runtime's worker, next to the links, so that a message costs no
    /// thread switch; a long one on the caller's thread, so that its
    /// arithmetic overlaps the links' encryption and copying on the worker
    /// (each measured faster for its size with `scripts/bench-net`).
    fn reduce_blocking(&mut self, x: &[f64], shape: Option<&[usize]>) -> Result<Reduction> {
        let outcome = self.reduce_now(x, shape);
        self.refresh();
        outcome
    }

    fn reduce_now(&self, x: &[f64], shape: Option<&[usize]>) -> Result<Reduction> {
        let runtime = self.runtime()?;
        if x.len() > ON_WORKER_MAX_LEN {
            return runtime.block_on(async { self.session.lock().await.reduce(x, shape).await });
        }
        let session = Arc::clone(&self.session);
        let x = x.to_vec();
        let shape = shape.map(<[usize]>::to_vec);
        let task =
            runtime.spawn(async move { session.lock().await.reduce(&x, shape.as_deref()).await });
        runtime
            .block_on(task)
            .map_err(|e| closed(format!("the reduction task failed: {e}")))?
    }

    /// Fails the next collective on every member with
    /// [`Error::InvalidArgument`] naming this rank, instead of running it:
    /// for a program that finds its own arguments invalid (a wrong type or
    /// shape only it can see) and would otherwise return early, leaving the
    /// others waiting for it — or pairing its next call with their current
    /// one. The caller then reports its own, detailed error; every other
    /// member's call returns `Error::InvalidArgument { rank, kind }`.
    ///
    /// ```no_run
    /// use dac_net::{ArgumentKind, Comm, Communicator};
    ///
    /// let mut comm = Comm::from_env()?;
    /// let text = std::env::args().nth(1).unwrap_or_default();
    /// match text.parse::<f64>() {
    ///     Ok(x) => println!("{:?}", comm.allreduce_mean(&[x])?.value),
    ///     Err(e) => {
    ///         comm.abort_call(ArgumentKind::Value)?;
    ///         eprintln!("rank {}: {text:?} is not a number: {e}", comm.rank());
    ///     }
    /// }
    /// # Ok::<(), dac_net::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Transport`] if called inside an async runtime or after
    /// shutdown; the error this member is out of the job with
    /// ([`Error::Excluded`], [`Error::Partitioned`]).
    pub fn abort_call(&mut self, kind: dac_core::ArgumentKind) -> Result<()> {
        let runtime = self.runtime()?;
        let rank = self.rank;
        let outcome = runtime.block_on(async {
            self.session
                .lock()
                .await
                .abort_call(Error::InvalidArgument { rank, kind })
                .await
        });
        self.refresh();
        outcome
    }

    /// The most values one reduction's input may have (the frame limit,
    /// `max_frame_bytes`, less the header).
    pub fn max_input_len(&self) -> usize {
        self.node.max_input_len()
    }

    /// Checks an input length before the input is built: if `len` values
    /// do not fit in a frame, the next collective fails on every member
    /// with [`Error::InputTooLarge`] (as the reduction itself would) and so
    /// does this call; otherwise nothing happens. For a binding that would
    /// otherwise copy a huge input only for the call to refuse it.
    ///
    /// # Errors
    /// [`Error::InputTooLarge`]; the errors of [`Comm::abort_call`].
    pub fn check_input_len(&mut self, len: usize) -> Result<()> {
        let max = self.max_input_len();
        if len <= max {
            return Ok(());
        }
        let error = Error::InputTooLarge {
            rank: self.rank,
            len,
            max,
        };
        let runtime = self.runtime()?;
        let told = error.clone();
        let outcome = runtime.block_on(async { self.session.lock().await.abort_call(told).await });
        self.refresh();
        outcome?;
        Err(error)
    }

    /// [`Communicator::allreduce_mean`] of an array of shape `shape` (row
    /// major, `x.len()` its number of entries): every member must pass the
    /// same shape, and one that passes another shape of the same length —
    /// `(2, 3)` against `(3, 2)`, a scalar `()` against `(1,)` — fails the
    /// call on every member with [`Error::ShapeMismatch`], naming it and
    /// the neighbour that found it. The check is a hash of the shape in
    /// each frame's header, compared by every neighbour: it costs 8 bytes a
    /// frame and no reduction. [`Communicator::allreduce_mean`] is this
    /// with the shape `(x.len(),)`.
    ///
    /// # Errors
    /// As [`Communicator::allreduce_mean`], plus [`Error::ShapeMismatch`];
    /// a `shape` whose product is not `x.len()` fails the call on every
    /// member with [`Error::InvalidArgument`] naming this one (which gets
    /// [`Error::InvalidConfig`] saying so).
    pub fn allreduce_mean_shaped(&mut self, x: &[f64], shape: &[usize]) -> Result<Reduction> {
        let entries = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if entries != Some(x.len()) {
            self.abort_call(dac_core::ArgumentKind::Shape)?;
            return Err(Error::InvalidConfig {
                field: "shape",
                reason: format!(
                    "{shape:?} of rank {} does not have the input's {} entries",
                    self.rank,
                    x.len()
                ),
            });
        }
        self.reduce_blocking(x, Some(shape))
    }

    /// [`Comm::allreduce_mean_shaped`] as a sum.
    ///
    /// # Errors
    /// As [`Comm::allreduce_mean_shaped`].
    pub fn allreduce_sum_shaped(&mut self, x: &[f64], shape: &[usize]) -> Result<Reduction> {
        self.allreduce_mean_shaped(x, shape)
            .map(Reduction::into_sum)
    }

    /// [`Communicator::allreduce_mean`] for async code.
    ///
    /// # Errors
    /// As [`Communicator::allreduce_mean`].
    pub async fn allreduce_mean_async(&mut self, x: &[f64]) -> Result<Reduction> {
        let outcome = self.session.lock().await.reduce(x, None).await;
        self.refresh();
        outcome
    }

    /// [`Communicator::allreduce_sum`] for async code.
    ///
    /// # Errors
    /// As [`Communicator::allreduce_sum`].
    pub async fn allreduce_sum_async(&mut self, x: &[f64]) -> Result<Reduction> {
        self.allreduce_mean_async(x).await.map(Reduction::into_sum)
    }

    /// Writes raw bytes on the link to member `to`, bypassing the frame
    /// encoder. For tests of the peers' frame checks only (feature
    /// `testing`): a member that does this is disconnected by `to`.
    ///
    /// # Errors
    /// [`Error::Transport`] if called inside an async runtime or after
    /// shutdown.
    #[cfg(feature = "testing")]
    pub fn send_raw_for_tests(&mut self, to: usize, bytes: Vec<u8>) -> Result<()> {
        let runtime = self.runtime()?;
        let _entered = runtime.enter();
        self.node.send_raw(to, bytes);
        Ok(())
    }

    /// The job id (tests that forge frames).
    #[cfg(feature = "testing")]
    pub(crate) fn job(&self) -> u64 {
        self.node.job
    }

    /// The frame limit (tests that forge frames).
    #[cfg(feature = "testing")]
    pub(crate) fn max_frame(&self) -> usize {
        self.node.max_frame()
    }

    /// The stamp the next reduction's frames will carry, with shape tag
    /// `shape` (tests that forge frames).
    #[cfg(feature = "testing")]
    pub(crate) fn next_stamp(&self, shape: u64) -> crate::wire::Stamp {
        match &self.runtime {
            Some(runtime) => runtime.block_on(self.session.lock()).next_stamp(shape),
            None => crate::wire::Stamp::default(),
        }
    }

    /// How many neighbours this member has before any departure (tests that
    /// forge frames).
    #[cfg(feature = "testing")]
    pub(crate) fn neighbour_count(&self) -> usize {
        match &self.runtime {
            Some(runtime) => runtime.block_on(self.session.lock()).neighbour_count(),
            None => 0,
        }
    }

    /// Every frame goes out `copies` times (a flooding member, in tests).
    #[cfg(feature = "testing")]
    pub(crate) fn set_copies(&self, copies: usize) {
        self.node.set_copies(copies);
    }

    /// Queues `frame` `copies` times on the link to `to`, waiting for room
    /// (a flooding member, in tests).
    #[cfg(feature = "testing")]
    pub(crate) fn send_waiting(&self, to: usize, frame: Arc<[u8]>, copies: usize) -> Result<()> {
        let runtime = self.runtime()?;
        runtime.block_on(self.node.send_waiting(to, frame, copies));
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

    fn members(&self) -> Vec<usize> {
        self.view.1.clone()
    }

    fn allreduce_mean(&mut self, x: &[f64]) -> Result<Reduction> {
        self.reduce_blocking(x, None)
    }

    fn allreduce_sum(&mut self, x: &[f64]) -> Result<Reduction> {
        self.reduce_blocking(x, None).map(Reduction::into_sum)
    }
}
