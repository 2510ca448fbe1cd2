//! One member's side of a job: forming it, and running reductions on it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dac_core::engine::{AbortReason, Engine, Kind, NodeSetup, Progress, Target};
use dac_core::{Config, Error, Reduction, Result};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::builder::CommBuilder;
use crate::comm::transport;
use crate::node::{DATA_PROTOCOL, Inbound, Limits, Node};
use crate::roster::{self, ROSTER_PROTOCOL, Roster};
use crate::topology::Neighbourhood;
use crate::transport::{self as swarm, SwarmCommand};
use crate::wire::{self, Frame};

/// First wait before a blocked member retransmits its round message; the
/// wait doubles up to [`MAX_IDLE`]. Streams are reliable, so this only
/// recovers frames dropped on purpose (none today) — a cheap safety net.
const FIRST_IDLE: Duration = Duration::from_millis(500);
const MAX_IDLE: Duration = Duration::from_secs(8);

/// Frames a member may send for the next reduction before we start it.
/// An honest member sends a handful (it cannot pass round 0 without us).
const MAX_EARLY_FRAMES: usize = 64;

/// Everything a reduction needs, apart from the runtime.
#[derive(Debug)]
pub(crate) struct Session {
    /// This member's position in the member list.
    pub(crate) rank: usize,
    /// Members the job started with.
    pub(crate) size: usize,
    /// The reduction settings every member agreed on.
    pub(crate) config: Config,
    /// Our libp2p identity (fresh for every job).
    pub(crate) peer_id: PeerId,
    /// Where we listen (published for the others).
    pub(crate) listen_addrs: Vec<Multiaddr>,
    /// Links to the other members and the failure detector.
    pub(crate) node: Arc<Node>,
    /// Neighbour sets, before and after departures.
    hood: Neighbourhood,
    /// Frames and departures from the links, in arrival order per link.
    inbox: mpsc::Receiver<Inbound>,
    /// Reductions started so far (the id of the current one).
    op: u64,
    /// Members known to have departed, from any source.
    pub(crate) departed: BTreeSet<usize>,
    /// Frames for the next reduction: (sender, frame).
    early: Vec<(usize, Frame)>,
    /// The previous reduction's engine, which answers late questions
    /// about it.
    last: Option<(u64, Engine)>,
    /// The previous reduction's result announcement, not yet sent to these
    /// neighbours (see [`Session::finish`]).
    owed: Option<(Arc<[u8]>, Vec<usize>)>,
    /// Requests to the swarm task; dropping the last sender stops it.
    commands: mpsc::UnboundedSender<SwarmCommand>,
    /// Background tasks to stop on close (swarm, stream acceptance,
    /// failure detection, late-join refusals).
    tasks: Vec<JoinHandle<()>>,
}

/// Publishes `addrs` as `dir/rank-R.addr`, atomically (write, then rename).
fn publish(dir: &Path, rank: usize, peer: PeerId, addrs: &[Multiaddr]) -> Result<()> {
    let text: String = addrs.iter().map(|a| format!("{a}/p2p/{peer}\n")).collect();
    let tmp = dir.join(format!(".rank-{rank}.addr.tmp"));
    let path = dir.join(format!("rank-{rank}.addr"));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            transport(format!(
                "cannot publish the address in {}: {e}",
                dir.display()
            ))
        })
}

/// Waits for rank 0's address file in `dir`.
async fn rendezvous(dir: &Path, timeout: Duration) -> Result<Vec<Multiaddr>> {
    let path = dir.join("rank-0.addr");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(text) = tokio::fs::read_to_string(&path).await {
            let addrs = text
                .lines()
                .filter_map(|l| l.trim().parse::<Multiaddr>().ok())
                .collect::<Vec<_>>();
            if !addrs.is_empty() {
                return Ok(addrs);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(transport(format!(
                "rank 0 did not publish its address in {} within {:.0} s",
                dir.display(),
                timeout.as_secs_f64()
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Session {
    pub(crate) async fn connect(
        b: CommBuilder,
        rank: usize,
        size: usize,
        config: Config,
    ) -> Result<Session> {
        let hood = Neighbourhood::new(&b.topology, size, b.seed)?;
        let settings = b.settings(&config);
        let started = swarm::start(
            Keypair::generate_ed25519(),
            b.key,
            b.listen.clone(),
            b.peer_timeout,
        )
        .await?;
        let mut control = started.control.clone();
        let data = control
            .accept(DATA_PROTOCOL)
            .map_err(|e| transport(e.to_string()))?;
        // Inbound data streams must be taken at once (libp2p drops those
        // nobody polls): park them until the node exists.
        let (parked_tx, mut parked) = mpsc::channel(1024);
        let park = tokio::spawn(async move {
            let mut data = data;
            while let Some(item) = futures::StreamExt::next(&mut data).await {
                if parked_tx.try_send(item).is_err() {
                    continue; // a flood of streams; the honest ones retry
                }
            }
        });
        if let Some(dir) = &b.run_dir {
            publish(dir, rank, started.peer_id, &started.listen_addrs)?;
        }
        let me = (started.peer_id, started.listen_addrs.clone());
        let mut tasks = vec![started.task, park];
        let roster = if rank == 0 {
            if size == 1 {
                Roster {
                    job: rand::random::<u64>() | 1,
                    members: vec![me],
                }
            } else {
                let incoming = control
                    .accept(ROSTER_PROTOCOL)
                    .map_err(|e| transport(e.to_string()))?;
                let (roster, late) =
                    roster::coordinate(incoming, me, size, settings, b.startup_timeout).await?;
                tasks.push(late);
                roster
            }
        } else {
            let mut bootstrap = b.bootstrap.clone();
            if bootstrap.is_empty()
                && let Some(dir) = &b.run_dir
            {
                bootstrap = rendezvous(dir, b.startup_timeout).await?;
            }
            roster::join(
                &started.commands,
                &mut control,
                &bootstrap,
                roster::Applicant {
                    rank,
                    size,
                    settings,
                    addrs: started.listen_addrs.clone(),
                },
                b.startup_timeout,
            )
            .await?
        };
        let (done, added) = tokio::sync::oneshot::channel();
        let _ = started.commands.send(SwarmCommand::AddAddresses {
            members: roster.members.clone(),
            done,
        });
        added
            .await
            .map_err(|_| transport("the network task has stopped"))?;
        let (inbox_tx, inbox) = mpsc::channel(1024);
        let limits = Limits {
            max_frame: b.max_frame,
            queue_depth: b.queue_depth,
            connect_timeout: b.startup_timeout,
        };
        let members = roster.members.iter().map(|m| m.0).collect();
        let node = Node::new(
            rank,
            roster.job,
            members,
            control,
            started.commands.clone(),
            inbox_tx,
            limits,
        );
        let accepting = Arc::clone(&node);
        tasks.push(tokio::spawn(async move {
            while let Some((peer, stream)) = parked.recv().await {
                accepting.accept(peer, stream);
            }
        }));
        let watching = Arc::clone(&node);
        let mut closed = started.closed;
        tasks.push(tokio::spawn(async move {
            while let Some(peer) = closed.recv().await {
                watching.connection_closed(peer).await;
            }
        }));
        let mut hood = hood;
        let (peers, _) = hood.neighbours(rank, &[]);
        node.connect(&peers).await.map_err(transport)?;
        Ok(Session {
            rank,
            size,
            config,
            peer_id: started.peer_id,
            listen_addrs: started.listen_addrs,
            node,
            hood,
            inbox,
            op: 0,
            departed: BTreeSet::new(),
            early: Vec::new(),
            last: None,
            owed: None,
            commands: started.commands,
            tasks,
        })
    }

    pub(crate) async fn close(&mut self) {
        self.pay_owed().await;
        self.node.close(Duration::from_secs(2)).await;
        for task in self.tasks.drain(..) {
            task.abort();
        }
        // Dropping the last command sender stops the swarm task.
        let (dead, _) = mpsc::unbounded_channel();
        self.commands = dead;
    }

    /// One reduction: the mean of every live member's `x`.
    pub(crate) async fn reduce(&mut self, x: &[f64]) -> Result<Reduction> {
        self.op += 1;
        let op = self.op;
        self.departed.extend(self.node.departed());
        let (peers, bound) = self.hood.neighbours(self.rank, &[]);
        let setup = NodeSetup {
            id: self.rank,
            members: self.size,
            peers: &peers,
            diameter_bound: bound,
        };
        let max = self.node.max_input_len();
        let created = if x.len() > max {
            Err(Error::InputTooLarge {
                rank: self.rank,
                len: x.len(),
                max,
            })
        } else {
            Engine::new(&self.config, setup, x)
        };
        let mut engine = match created {
            Ok(engine) => engine,
            Err(error) => {
                // Tell the others, so that they fail with this error too
                // instead of waiting for our input.
                if let Some(reason) = AbortReason::from_error(&error) {
                    let mut aborted = Engine::aborted(setup, reason);
                    self.flush(op, &mut aborted).await;
                    self.last = Some((op, aborted));
                }
                self.early.retain(|(_, f)| f.op > op);
                return Err(error);
            }
        };
        for &d in &self.departed {
            engine.peer_departed(d);
        }
        let known = self.departed.len();
        self.reconfigure(&mut engine);
        let early = std::mem::take(&mut self.early);
        for (from, frame) in early {
            self.route(&mut engine, from, frame).await;
        }
        let mut idle = FIRST_IDLE;
        loop {
            self.reconfigure(&mut engine);
            self.flush(op, &mut engine).await;
            match engine.advance() {
                Progress::Advanced => {
                    idle = FIRST_IDLE;
                    continue;
                }
                Progress::Finished => return self.finish(op, engine, known).await,
                Progress::Blocked => {}
            }
            match tokio::time::timeout(idle, self.inbox.recv()).await {
                Ok(Some(Inbound::Frame { from, frame })) => {
                    self.route(&mut engine, from, frame).await;
                }
                Ok(Some(Inbound::Departed { rank })) => {
                    self.pay_owed().await;
                    engine.peer_departed(rank);
                    self.departed.insert(rank);
                    if let Some((_, last)) = self.last.as_mut() {
                        last.peer_departed(rank);
                    }
                }
                Ok(None) => return Err(transport("the network task has stopped")),
                Err(_) => {
                    self.pay_owed().await;
                    engine.tick();
                    idle = (idle * 2).min(MAX_IDLE);
                }
            }
        }
    }

    /// Ends a reduction: keeps the engine to answer late questions, and
    /// defers its result announcement.
    ///
    /// On reliable streams every member finishes at the agreed round on its
    /// own, so the announcement (the full result, to every neighbour) is
    /// almost always redundant — for large vectors it would cost more than
    /// the reduction. It is kept as a debt instead, dropped for each
    /// neighbour that shows it has finished too (by sending a frame of the
    /// next reduction), and paid when something unusual happens: a
    /// departure, a wait longer than the idle tick, or shutdown. A
    /// neighbour still running that asks gets the result as a reply at once.
    /// A reduction during which members departed (`known` were known at its
    /// start) announces at once: its members may need to adopt the result.
    async fn finish(&mut self, op: u64, mut engine: Engine, known: usize) -> Result<Reduction> {
        let job = self.node.job;
        let mut departed = engine.departed();
        departed.extend(self.departed.iter().copied());
        departed.sort_unstable();
        departed.dedup();
        let eventful = departed.len() > known;
        let peers: Vec<usize> = engine.peers().collect();
        let mut now: Vec<(Target, Arc<[u8]>)> = Vec::new();
        let mut announce = None;
        engine.poll_outgoing(|target, message| {
            let frame: Arc<[u8]> = wire::encode(job, op, message).into();
            if !eventful && message.header.kind == Kind::Done && target == Target::Peers {
                announce = Some(frame);
            } else {
                now.push((target, frame));
            }
        });
        self.owed = announce.map(|frame| (frame, peers));
        self.send_all(&engine, now).await;
        self.departed.extend(engine.departed());
        let outcome = engine.take_outcome();
        self.last = Some((op, engine));
        outcome.unwrap_or_else(|| Err(transport("the engine finished without an outcome")))
    }

    /// Sends the deferred result announcement of the previous reduction.
    async fn pay_owed(&mut self) {
        if let Some((frame, peers)) = self.owed.take() {
            for p in peers {
                self.node.send(p, Arc::clone(&frame)).await;
            }
        }
    }

    /// Hands a frame to the engine of its reduction. Frames from a member
    /// this session has seen depart are dropped (a member falsely
    /// suspected, whose reader still runs); frames a member sent before
    /// departing were queued before its departure and still count.
    async fn route(&mut self, engine: &mut Engine, from: usize, frame: Frame) {
        if self.departed.contains(&from) {
            return;
        }
        let op = self.op;
        if frame.op >= op
            && let Some((_, owed)) = self.owed.as_mut()
        {
            // `from` has finished the previous reduction.
            owed.retain(|&p| p != from);
        }
        if frame.op == op {
            let dim = engine.dim();
            if let Err(violation) = engine.receive(from, &frame.message.as_message()) {
                match violation.dimension_mismatch(self.rank, dim) {
                    // Another input length is a usage error: everyone fails.
                    Some(reason) => engine.abort(reason),
                    None => self.node.misbehaved(from, violation.to_string()).await,
                }
            }
        } else if frame.op + 1 == op {
            if let Some((last_op, mut last)) = self.last.take() {
                // Errors are ignored: the previous reduction is over.
                let _ = last.receive(from, &frame.message.as_message());
                self.flush(last_op, &mut last).await;
                self.last = Some((last_op, last));
            }
        } else if frame.op == op + 1 {
            let kind = frame.message.header.kind;
            let round = frame.message.header.round;
            // A resend replaces the frame it repeats.
            self.early.retain(|(f, e)| {
                !(*f == from && e.message.header.kind == kind && e.message.header.round == round)
            });
            if self.early.iter().filter(|(f, _)| *f == from).count() >= MAX_EARLY_FRAMES {
                let reason = format!("sent more than {MAX_EARLY_FRAMES} frames ahead");
                self.node.misbehaved(from, reason).await;
            } else {
                self.early.push((from, frame));
            }
        } else if frame.op > op + 1 {
            let reason = format!("sent a frame for reduction {} during {op}", frame.op);
            self.node.misbehaved(from, reason).await;
        }
    }

    /// Installs the repaired neighbour set when the engine asks for it.
    fn reconfigure(&mut self, engine: &mut Engine) {
        if engine.pending_reconfiguration() {
            let departed = engine.departed();
            let (peers, bound) = self.hood.neighbours(self.rank, &departed);
            // The repair is monotone, so the only possible error is a
            // Laplacian step too large for the new degree, which aborts the
            // reduction for everyone with that error.
            let _ = engine.set_peers(&peers, bound);
        }
    }

    /// Sends everything the engine has to send.
    async fn flush(&self, op: u64, engine: &mut Engine) {
        let mut out: Vec<(Target, Arc<[u8]>)> = Vec::new();
        let job = self.node.job;
        engine.poll_outgoing(|target, message| {
            out.push((target, wire::encode(job, op, message).into()));
        });
        self.send_all(engine, out).await;
    }

    async fn send_all(&self, engine: &Engine, out: Vec<(Target, Arc<[u8]>)>) {
        if out.is_empty() {
            return;
        }
        let peers: Vec<usize> = engine.peers().collect();
        for (target, frame) in out {
            match target {
                Target::Peers => {
                    for &p in &peers {
                        self.node.send(p, Arc::clone(&frame)).await;
                    }
                }
                Target::Peer(p) => self.node.send(p, frame).await,
            }
        }
    }
}
