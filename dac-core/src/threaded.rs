//! In-memory SPMD transport: one thread per rank, bounded channels.
//!
//! [`run`] starts `size` threads, gives each a [`ThreadComm`] and runs the
//! same closure on all of them, MPI style. Channels are reliable, so the
//! engine runs its lossless path; the point is to test programs written
//! against [`Communicator`] without a network.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;

use crate::comm::Communicator;
use crate::config::Config;
use crate::engine::{AbortReason, Engine, NodeSetup, OwnedMessage, Progress, Target};
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::reduction::Reduction;
use crate::topology::Topology;

/// How [`run`] wires the ranks together.
#[derive(Clone, Debug)]
pub struct Options {
    /// Communication graph (default: exponential).
    pub topology: Topology,
    /// Reduction parameters (default: exact schedule, `tol = 1e-12`).
    pub config: Config,
    /// Seed for random topologies.
    pub seed: u64,
    /// A rank that receives nothing for this long fails with
    /// [`Error::Timeout`] instead of hanging (default: 60 s).
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            topology: Topology::Exponential,
            config: Config::default(),
            seed: 0,
            timeout: Duration::from_secs(60),
        }
    }
}

/// A message on its way between two threads.
#[derive(Debug)]
struct Envelope {
    /// Which reduction of the sequence it belongs to.
    op: u64,
    from: usize,
    /// Shared by every receiver of a broadcast: one copy of the payload.
    message: Arc<OwnedMessage>,
}

/// One rank's handle inside [`run`].
#[derive(Debug)]
pub struct ThreadComm<'a> {
    rank: usize,
    size: usize,
    graph: &'a Graph,
    diameter_bound: usize,
    config: &'a Config,
    timeout: Duration,
    senders: Vec<SyncSender<Envelope>>,
    inbox: Receiver<Envelope>,
    /// Sequence number of the current reduction.
    op: u64,
    /// Messages that arrived for a later reduction.
    stash: Vec<Envelope>,
}

/// Runs `body` on `size` ranks, one thread each, and returns their results
/// in rank order.
///
/// # Errors
/// An invalid topology or configuration for `size` ranks (checked before
/// any thread starts), or [`Error::Transport`] if a rank panicked.
pub fn run<T, F>(size: usize, options: Options, body: F) -> Result<Vec<T>>
where
    T: Send,
    F: Fn(&mut ThreadComm<'_>) -> T + Sync,
{
    let graph = options.topology.build(size, options.seed)?;
    options.config.validate_for(&graph)?;
    let diameter_bound = graph.diameter_bound().unwrap_or(size);
    // A neighbour is at most one round ahead, so a rank holds at most a
    // few messages per neighbour per reduction; senders never block for
    // long.
    let capacity = 8 * graph.max_degree() + 16;
    let (senders, inboxes): (Vec<_>, Vec<_>) = (0..size).map(|_| sync_channel(capacity)).unzip();
    let graph = &graph;
    let config = &options.config;
    let body = &body;
    std::thread::scope(|scope| {
        let handles: Vec<_> = inboxes
            .into_iter()
            .enumerate()
            .map(|(rank, inbox)| {
                let senders = senders.clone();
                let timeout = options.timeout;
                scope.spawn(move || {
                    let mut comm = ThreadComm {
                        rank,
                        size,
                        graph,
                        diameter_bound,
                        config,
                        timeout,
                        senders,
                        inbox,
                        op: 0,
                        stash: Vec::new(),
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
                h.join().map_err(|_| Error::Transport {
                    reason: format!("rank {rank} panicked"),
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

    /// The communication graph.
    pub fn graph(&self) -> &Graph {
        self.graph
    }

    fn send_all(&self, engine: &mut Engine) {
        let (op, rank, graph, senders) = (self.op, self.rank, self.graph, &self.senders);
        engine.poll_outgoing(|target, message| {
            let message = Arc::new(message.to_owned());
            let mut deliver = |to: usize| {
                // A rank that already returned from `run` has dropped its
                // inbox; it no longer needs anything from us.
                let _ = senders[to].send(Envelope {
                    op,
                    from: rank,
                    message: Arc::clone(&message),
                });
            };
            match target {
                Target::Peers => graph.neighbors(rank).for_each(&mut deliver),
                Target::Peer(to) if to < senders.len() => deliver(to),
                Target::Peer(_) => {}
            }
        });
    }

    /// The next message of the current reduction.
    fn next_message(&mut self, round: u32) -> Result<Envelope> {
        if let Some(at) = self.stash.iter().position(|e| e.op == self.op) {
            return Ok(self.stash.swap_remove(at));
        }
        loop {
            match self.inbox.recv_timeout(self.timeout) {
                Ok(envelope) if envelope.op == self.op => return Ok(envelope),
                Ok(envelope) if envelope.op > self.op => self.stash.push(envelope),
                Ok(_) => {} // a finished reduction's late message
                Err(RecvTimeoutError::Timeout) => {
                    return Err(Error::Timeout {
                        rank: self.rank,
                        round,
                        seconds: self.timeout.as_secs_f64(),
                    });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::Transport {
                        reason: format!("rank {}: every other rank has returned", self.rank),
                    });
                }
            }
        }
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
        self.op += 1;
        let peers: Vec<usize> = self.graph.neighbors(self.rank).collect();
        let setup = NodeSetup {
            id: self.rank,
            members: self.size,
            peers: &peers,
            diameter_bound: self.diameter_bound,
        };
        let mut engine = match Engine::new(self.config, setup, x) {
            Ok(engine) => engine,
            Err(error) => {
                // Tell the others, so that they fail with this error too
                // instead of waiting for our input.
                if let Some(reason) = AbortReason::from_error(&error) {
                    self.send_all(&mut Engine::aborted(setup, reason));
                }
                return Err(error);
            }
        };
        let dim = x.len();
        loop {
            self.send_all(&mut engine);
            match engine.advance() {
                Progress::Advanced => continue,
                Progress::Finished => {
                    self.send_all(&mut engine);
                    return engine.take_outcome().unwrap_or_else(|| {
                        Err(Error::Transport {
                            reason: "engine finished without an outcome".into(),
                        })
                    });
                }
                Progress::Blocked => {}
            }
            let envelope = self.next_message(engine.round())?;
            if let Err(violation) = engine.receive(envelope.from, &envelope.message.as_message()) {
                match violation.dimension_mismatch(self.rank, dim) {
                    Some(reason) => engine.abort(reason),
                    None => {
                        return Err(Error::Transport {
                            reason: violation.to_string(),
                        });
                    }
                }
            }
        }
    }
}
