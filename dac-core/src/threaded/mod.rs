//! In-memory SPMD transport: one thread per rank, bounded channels.
//!
//! [`run`] starts `size` threads, gives each a [`ThreadComm`] and runs the
//! same closure on all of them, MPI style, so that programs written against
//! [`Communicator`] can be tested without a network — including what they do
//! when ranks crash, leave or freeze ([`Fault`]).
//!
//! # Departures
//!
//! A rank leaves the job when its body returns or panics (its comm is
//! dropped), when it calls [`ThreadComm::leave`], or when a call cuts it off
//! (see [`Communicator`]). It then publishes its *exit* in a table the ranks
//! share — the first reduction it takes no part in, and the members it held
//! departed — and wakes every rank. That is this transport's reset
//! connection: proof. A rank that takes in an exit
//!
//! - holds the rank proven gone ([`Engine::peer_departed`]) from that
//!   reduction on, so it does not count against the quorum;
//! - in a reduction that the exited rank had completed, suspects it
//!   ([`Engine::peer_suspected`]) only when a round still waits for it: the
//!   rank can send nothing more, and the others may have finished without
//!   us, so going on alone would not be safe;
//! - is excluded ([`Error::Excluded`]) if the exit lists it as departed:
//!   the exit keeps the answer that rank would have given (the engine's
//!   fence).
//!
//! Silence: inside a reduction a rank wakes, and publishes a heartbeat, at
//! least every `peer_timeout / 4`; outside one it runs its own code and
//! counts as alive. A rank whose round waits for a neighbour that is inside
//! a reduction and has not beaten for [`Options::peer_timeout`] suspects it:
//! it is frozen, as under SIGSTOP. Only [`Options::timeout`] bounds a wait
//! for a neighbour that is alive but stays away.
//!
//! After a departure the engine asks for the graph repaired around it
//! ([`Graph::repaired`], with [`Graph::live_diameter_bound`]); later
//! reductions start with every departure known, on the repaired graph.
//!
//! # Sends never block
//!
//! Inboxes are bounded, and a message for a full inbox is dropped. A
//! neighbour cannot run more than a round ahead, so inboxes only fill while
//! their rank is frozen or away; blocking would make its senders wait on
//! it, and two ranks sending to each other's full inboxes would deadlock.
//! Dropping is safe because the engine recovers lost messages: a blocked
//! rank ticks its engine ([`Engine::tick`]) after 1 ms, then at doubling
//! intervals up to `peer_timeout / 4`, which resends its round message and
//! unanswered hellos; views travel on round messages, and finished engines
//! (the current and the previous reduction's) answer questions with their
//! result. The same ticks recover the round messages an engine drops
//! because they came on an edge it has not opened yet (ranks learn of a
//! departure at slightly different times).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::agree;
use crate::comm::Communicator;
use crate::config::Config;
use crate::engine::{
    Engine, Event, Header, Kind, MemberSetup, OwnedMessage, Progress, Target, Violation,
};
use crate::error::{Error, Result, TransportKind};
use crate::graph::Graph;
use crate::reduction::Reduction;
use crate::topology::Topology;

mod drive;
mod presence;

use drive::cuts_off;
use presence::{Envelope, Exit, FIRST_IDLE, Letter, Presence};

/// How [`run`] wires the ranks together.
#[derive(Clone, Debug)]
pub struct Options {
    /// Communication graph (default: exponential).
    pub topology: Topology,
    /// Reduction parameters (default: exact schedule, `tol = 1e-12`).
    pub config: Config,
    /// Seed for random topologies.
    pub seed: u64,
    /// A reduction that completes no round for this long fails with
    /// [`Error::Timeout`] on the rank that waits, which then leaves the job
    /// so that the others do not wait for it in turn (default: 60 s). It
    /// bounds what the failure detector leaves open: a neighbour that is
    /// alive but stays outside reductions, busy in its own code.
    pub timeout: Duration,
    /// A neighbour that the current round waits for, and that has shown no
    /// sign of life inside a reduction for this long, is suspected
    /// ([`Engine::peer_suspected`]; default: 10 s, as in `dac-net`).
    pub peer_timeout: Duration,
    /// Faults to inject, for tests (default: none).
    pub faults: Vec<Fault>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            topology: Topology::Exponential,
            config: Config::default(),
            seed: 0,
            timeout: Duration::from_secs(60),
            peer_timeout: Duration::from_secs(10),
            faults: Vec::new(),
        }
    }
}

impl Options {
    /// Checks the timeouts and that every fault names a rank of the job.
    fn validate(&self, size: usize) -> Result<()> {
        if self.timeout.is_zero() {
            return Err(Error::config("timeout", "must be positive"));
        }
        if self.peer_timeout.is_zero() {
            return Err(Error::config("peer_timeout", "must be positive"));
        }
        if let Some(fault) = self.faults.iter().find(|f| f.rank() >= size) {
            return Err(Error::config(
                "faults",
                format!("{fault:?} names a rank outside 0..{size}"),
            ));
        }
        Ok(())
    }
}

/// A fault [`run`] injects into one rank, to test departures.
///
/// Reductions are counted from 0 in call order on each rank, rounds as
/// [`Status::round`](crate::engine::Status::round). A crash or freeze due at a round that its reduction
/// does not reach (it finished earlier, for example by adopting a
/// neighbour's result) strikes when that reduction ends, after its result
/// went out; a fault for a reduction its rank never starts does nothing.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// The rank dies when its reduction `at_reduction` reaches round
    /// `after_rounds` (0: before it sends anything), as a crashed process:
    /// it stops reading and sending, the others hold it proven gone, and
    /// that call and every later one fail with [`Error::Transport`].
    Crash {
        /// The rank that crashes.
        rank: usize,
        /// Its reduction in which it crashes.
        at_reduction: usize,
        /// Rounds of that reduction it completes first.
        after_rounds: u32,
    },
    /// The rank's thread sleeps for `duration` when its reduction
    /// `at_reduction` reaches round `after_rounds` (0: before it sends
    /// anything), as a process under SIGSTOP: it sends nothing and shows no
    /// sign of life, and messages sent to it queue up (those beyond its
    /// inbox are dropped). Longer than [`Options::peer_timeout`], the others
    /// suspect it and go on without it; it learns so when it wakes.
    Freeze {
        /// The rank that freezes.
        rank: usize,
        /// Its reduction in which it freezes.
        at_reduction: usize,
        /// Rounds of that reduction it completes first.
        after_rounds: u32,
        /// How long it sleeps.
        duration: Duration,
    },
    /// The rank leaves the job at the start of its reduction
    /// `at_reduction`, as with [`ThreadComm::leave`]: that call and every
    /// later one fail with [`Error::Left`].
    Leave {
        /// The rank that leaves.
        rank: usize,
        /// Its reduction at whose start it leaves.
        at_reduction: usize,
    },
}

impl Fault {
    /// The rank the fault strikes.
    fn rank(&self) -> usize {
        match *self {
            Fault::Crash { rank, .. } | Fault::Freeze { rank, .. } | Fault::Leave { rank, .. } => {
                rank
            }
        }
    }

    /// True if a crash or freeze strikes at `round` of `reduction` (at
    /// any round once it has `ended`).
    fn strikes(&self, reduction: usize, round: u32, ended: bool) -> bool {
        match *self {
            Fault::Crash {
                at_reduction,
                after_rounds,
                ..
            }
            | Fault::Freeze {
                at_reduction,
                after_rounds,
                ..
            } => at_reduction == reduction && (ended || after_rounds == round),
            Fault::Leave { .. } => false,
        }
    }
}

/// One rank's handle inside [`run`].
///
/// Once a call fails with [`Error::Excluded`], [`Error::Partitioned`],
/// [`Error::Left`], [`Error::Timeout`] or an injected crash, the rank is out
/// of the job: every later call fails at once with the same error (see
/// [`Communicator`]).
#[derive(Debug)]
pub struct ThreadComm<'a> {
    rank: usize,
    size: usize,
    /// The communication graph before any departure.
    graph: &'a Graph,
    /// A bound on its diameter.
    diameter_bound: usize,
    config: &'a Config,
    /// See [`Options::timeout`].
    timeout: Duration,
    /// See [`Options::peer_timeout`].
    peer_timeout: Duration,
    /// This rank's faults still to strike.
    faults: Vec<Fault>,
    /// Heartbeats and exits of every rank.
    presence: &'a Presence,
    senders: Vec<SyncSender<Letter>>,
    inbox: Receiver<Letter>,
    /// Sequence number of the current (or last) reduction: 1 for the first
    /// call.
    op: u64,
    /// Messages that arrived for a later reduction.
    stash: Vec<Envelope>,
    /// The previous reduction's engine, which answers late questions about
    /// it (a neighbour still running it that lost our result).
    last: Option<(u64, Engine)>,
    /// Members this rank holds departed, proven or not.
    departed: BTreeSet<usize>,
    /// The exits this rank has taken in, by rank (its own once it left).
    exits: Vec<Option<Exit>>,
    /// `exit_count` when it last looked.
    exits_seen: usize,
    /// Set once this rank is out of the job: every later call fails with it.
    out: Option<Error>,
    /// True while a call runs: a comm dropped then did not complete it.
    in_call: bool,
}

/// Runs `body` on `size` ranks, one thread each, and returns their results
/// in rank order.
///
/// A rank whose body returns (or panics) leaves the job: the others go on
/// without it (see the [module docs](self)).
///
/// # Errors
/// An invalid topology, configuration, timeout or fault for `size` ranks
/// (checked before any thread starts), or [`Error::Transport`] if a rank
/// panicked.
pub fn run<T, F>(size: usize, options: Options, body: F) -> Result<Vec<T>>
where
    T: Send,
    F: Fn(&mut ThreadComm<'_>) -> T + Sync,
{
    let graph = options.topology.build(size, options.seed)?;
    options.config.validate_for(&graph)?;
    options.validate(size)?;
    let diameter_bound = graph.diameter_bound().unwrap_or(size);
    // A neighbour is at most one round ahead, so a rank that reads holds a
    // few messages per neighbour; beyond that, messages are dropped (see
    // the module docs).
    let capacity = 8 * graph.max_degree() + 16;
    let (senders, inboxes): (Vec<_>, Vec<_>) = (0..size).map(|_| sync_channel(capacity)).unzip();
    let presence = Presence::new(size);
    let (graph, presence, options, body) = (&graph, &presence, &options, &body);
    std::thread::scope(|scope| {
        let handles: Vec<_> = inboxes
            .into_iter()
            .enumerate()
            .map(|(rank, inbox)| {
                let senders = senders.clone();
                scope.spawn(move || {
                    let mut comm = ThreadComm {
                        rank,
                        size,
                        graph,
                        diameter_bound,
                        config: &options.config,
                        timeout: options.timeout,
                        peer_timeout: options.peer_timeout,
                        faults: options
                            .faults
                            .iter()
                            .filter(|f| f.rank() == rank)
                            .cloned()
                            .collect(),
                        presence,
                        senders,
                        inbox,
                        op: 0,
                        stash: Vec::new(),
                        last: None,
                        departed: BTreeSet::new(),
                        exits: vec![None; size],
                        exits_seen: 0,
                        out: None,
                        in_call: false,
                    };
                    body(&mut comm)
                })
            })
            .collect();
        drop(senders);
        handles
            .into_iter()
            .enumerate()
            .map(|(rank, h)| {
                h.join().map_err(|_| {
                    Error::transport(TransportKind::Closed, format!("rank {rank} panicked"))
                })
            })
            .collect()
    })
}

impl ThreadComm<'_> {
    /// The configuration every rank uses.
    pub fn config(&self) -> &Config {
        self.config
    }

    /// The communication graph (before any departure).
    pub fn graph(&self) -> &Graph {
        self.graph
    }

    /// Leaves the job: from the next reduction on, the other ranks hold
    /// this one proven gone (it does not count against their quorum) and
    /// go on without it, and every later call on this comm fails with
    /// [`Error::Left`]. Does nothing once the rank is out of the job.
    pub fn leave(&mut self) {
        if self.out.is_none() {
            self.leave_job(Error::Left { rank: self.rank }, self.op + 1);
        }
    }
}

impl ThreadComm<'_> {
    /// One reduction of `x`, as a call of the program.
    fn call(&mut self, x: &[f64]) -> Result<Reduction> {
        if let Some(error) = &self.out {
            return Err(error.clone());
        }
        self.op += 1;
        self.in_call = true;
        self.presence.beat(self.rank, Instant::now());
        let outcome = self.reduce(x);
        self.in_call = false;
        self.presence.step_out(self.rank);
        if let Err(error) = &outcome
            && (self.out.is_some() || cuts_off(error))
        {
            self.leave_job(error.clone(), self.op);
        }
        outcome
    }
}

impl Communicator for ThreadComm<'_> {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn allreduce_mean(&mut self, x: &[f64]) -> Result<Reduction> {
        match self.call(x) {
            // A usage error failed every rank: one more reduction names the
            // same culprit on all of them (see `dac_core::agree`).
            Err(error) if agree::follows(&error) => {
                let own = agree::Own::of(x, 0, None);
                let ballot = agree::ballot(self.rank, self.size, &own);
                match self.call(&ballot) {
                    Ok(mean) => Err(agree::verdict(&mean.into_sum(), self.size, error)),
                    Err(_) => Err(error),
                }
            }
            outcome => outcome,
        }
    }
}

impl Drop for ThreadComm<'_> {
    /// A rank whose body returned or panicked leaves the job.
    fn drop(&mut self) {
        let from_op = if self.in_call { self.op } else { self.op + 1 };
        self.publish_exit(from_op);
    }
}
