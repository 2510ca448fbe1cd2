//! One member's side of a job: forming it, and running reductions on it.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dac_core::agree::{self, Own};
use dac_core::engine::{AbortReason, Engine, Kind, MemberSetup, Progress, Target};
use dac_core::{Config, Error, Reduction, Result};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::access::Access;
use crate::builder::CommBuilder;
use crate::failure::transport;
use crate::node::{Cut, DATA_PROTOCOL, Inbound, Limits, Node, PROBE_PROTOCOL, Verdict, Wiring};
use crate::repeats::{Admission, REPEAT_BURST, REPEAT_RATE, Repeats};
use crate::roster::{self, ROSTER_PROTOCOL, Roster};
use crate::topology::Neighbourhood;
use crate::transport::{self as swarm, SwarmCommand};
use crate::wire::{self, Frame};
use futures::StreamExt;

/// First wait before a blocked member retransmits its round message; the
/// wait doubles up to [`MAX_IDLE`]. Streams are reliable, so this only
/// recovers frames dropped because a link's queue was full (its member
/// does not read, and is cut off soon) — a cheap safety net.
const FIRST_IDLE: Duration = Duration::from_millis(500);
const MAX_IDLE: Duration = Duration::from_secs(8);

/// Frames a member may send for later reductions before we start them.
/// An honest member sends a handful for each (it cannot pass round 0
/// without us).
const MAX_EARLY_FRAMES: usize = 64;

/// How many reductions ahead of us a member may be. One, as a rule; more
/// after calls that failed at once (an abort ends a reduction on a member
/// as soon as it arrives, and the agreement after it may follow at once).
const MAX_AHEAD: u64 = 16;

/// Time beyond `peer_timeout` that opening the links may take while the
/// job forms (and a repaired link later).
const LINK_SLACK: Duration = Duration::from_secs(5);

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
    /// Frames from the links, in arrival order per link.
    inbox: mpsc::Receiver<Inbound>,
    /// The node's decisions: departures, and our own exclusion.
    verdicts: mpsc::UnboundedReceiver<Verdict>,
    /// Reductions started so far (the id of the current one).
    op: u64,
    /// The last reduction this member finished with a result (0: none);
    /// its goodbye names it (see [`Engine::peer_finished`]).
    finished: u64,
    /// Members known to have departed, from any source.
    pub(crate) departed: BTreeSet<usize>,
    /// Members whose input a reduction this member completed lacks: they
    /// departed mid-job (a subset of `departed`).
    pub(crate) missing: BTreeSet<usize>,
    /// Those of them known to be gone (their process ended, or they left).
    gone: BTreeSet<usize>,
    /// Why this member is out of the job for good (excluded by the others,
    /// or without a quorum): every later reduction fails with it.
    failed: Option<Error>,
    /// Per member, the repeated frames it has sent (see [`REPEAT_BURST`]).
    repeats: HashMap<usize, Repeats>,
    /// Frames for the next reduction: (sender, frame).
    early: Vec<(usize, Frame)>,
    /// The previous reduction's engine, which answers late questions
    /// about it.
    last: Option<(u64, Engine)>,
    /// The shape tag of the current reduction and of the last one.
    shape: u64,
    last_shape: u64,
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

/// Says once per process that a job without a key is open to anyone who
/// can reach it.
fn warn_public_once() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        eprintln!(
            "dac: warning: this job has no key and no allow-list, so any process that reaches \
             its members may join it or connect to them; give it a key with \
             CommBuilder::key_file or DAC_KEY_FILE (dacrun gives every job one), or list its \
             members with allow_peers / DAC_ALLOW_PEERS"
        );
    });
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
        if b.key.is_none() && b.allow.is_none() {
            warn_public_once();
        }
        let keypair = match &b.identity {
            Some(path) => crate::access::identity_keypair(path)?,
            None => Keypair::generate_ed25519(),
        };
        let allow = b.allow.as_ref().map(|a| a.iter().copied().collect());
        let access = Arc::new(Access::new(b.key.clone(), allow));
        let started = swarm::start(
            keypair,
            Arc::clone(&access),
            b.listen.clone(),
            b.handshake_timeout,
            b.bounds(size),
        )
        .await?;
        let mut control = started.control.clone();
        let data = control
            .accept(DATA_PROTOCOL)
            .map_err(|e| transport(e.to_string()))?;
        let probes = control
            .accept(PROBE_PROTOCOL)
            .map_err(|e| transport(e.to_string()))?;
        // Inbound streams must be taken at once (libp2p drops those nobody
        // polls): park them until the node exists.
        let (parked_tx, mut parked) = mpsc::channel(1024);
        let park = tokio::spawn(async move {
            let data = data.map(|(peer, stream)| (false, peer, stream));
            let probes = probes.map(|(peer, stream)| (true, peer, stream));
            let mut both = futures::stream::select(data, probes);
            while let Some(item) = both.next().await {
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
        let mut formation = None;
        let mut roster_stream = None;
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
                let (roster, forming, late) =
                    roster::coordinate(incoming, me, size, settings, b.startup_timeout, &access)
                        .await?;
                formation = Some(forming);
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
            let (roster, stream) = roster::join(
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
            .await?;
            roster_stream = Some(stream);
            roster
        };
        #[cfg(feature = "testing")]
        match b.after_join {
            Some(crate::testing::AfterJoin::Vanish) => {
                return Err(transport("vanished after joining (a test)"));
            }
            // Blocks the runtime's only worker and this thread: nothing of
            // this member runs.
            Some(crate::testing::AfterJoin::Freeze(time)) => {
                tokio::spawn(async move { std::thread::sleep(time) });
                std::thread::sleep(time);
            }
            None => {}
        }
        let (done, added) = tokio::sync::oneshot::channel();
        let _ = started.commands.send(SwarmCommand::AddAddresses {
            members: roster.members.clone(),
            done,
        });
        added
            .await
            .map_err(|_| transport("the network task has stopped"))?;
        let (inbox_tx, inbox) = mpsc::channel(1024);
        let (verdicts_tx, verdicts) = mpsc::unbounded_channel();
        let link_timeout = b.peer_timeout + LINK_SLACK;
        let limits = Limits {
            max_frame: b.max_frame,
            queue_depth: b.queue_depth,
            connect_timeout: link_timeout,
            peer_timeout: b.peer_timeout,
        };
        let wiring = Wiring {
            control,
            commands: started.commands.clone(),
            inbox: inbox_tx,
            verdicts: verdicts_tx,
        };
        let node = Node::new(rank, roster.job, roster.members, wiring, limits);
        let accepting = Arc::clone(&node);
        tasks.push(tokio::spawn(async move {
            while let Some((probe, peer, stream)) = parked.recv().await {
                if probe {
                    accepting.accept_probe(peer, stream);
                } else {
                    accepting.accept(peer, stream);
                }
            }
        }));
        let watching = Arc::clone(&node);
        let mut closed = started.closed;
        tasks.push(tokio::spawn(async move {
            while let Some(peer) = closed.recv().await {
                watching.connection_closed(peer);
            }
        }));
        tasks.push(tokio::spawn(Arc::clone(&node).watch()));
        let mut hood = hood;
        let (peers, _) = hood.neighbours(rank, &[]);
        {
            let linking = node.connect(&peers, link_timeout);
            if let Some(formation) = formation {
                formation
                    .conclude(linking.await, link_timeout + Duration::from_secs(2))
                    .await?;
            } else if let Some(stream) = roster_stream {
                roster::confirm(stream, rank, linking, link_timeout + LINK_SLACK).await?;
            }
        }
        Ok(Session {
            rank,
            size,
            config,
            peer_id: started.peer_id,
            listen_addrs: started.listen_addrs,
            node,
            hood,
            inbox,
            verdicts,
            op: 0,
            departed: BTreeSet::new(),
            missing: BTreeSet::new(),
            gone: BTreeSet::new(),
            failed: None,
            repeats: HashMap::new(),
            early: Vec::new(),
            last: None,
            finished: 0,
            shape: 0,
            last_shape: 0,
            owed: None,
            commands: started.commands,
            tasks,
        })
    }

    pub(crate) async fn close(&mut self) {
        self.pay_owed();
        self.node.close(Duration::from_secs(2), self.finished).await;
        for task in self.tasks.drain(..) {
            task.abort();
        }
        // Dropping the last command sender stops the swarm task.
        let (dead, _) = mpsc::unbounded_channel();
        self.commands = dead;
    }

    /// Reductions started so far.
    #[cfg(feature = "testing")]
    pub(crate) fn op(&self) -> u64 {
        self.op
    }

    /// Neighbours before any departure.
    #[cfg(feature = "testing")]
    pub(crate) fn neighbour_count(&mut self) -> usize {
        self.hood.neighbours(self.rank, &[]).0.len()
    }

    /// Records a departure the session learned of.
    fn depart(&mut self, rank: usize, proven: bool) {
        self.departed.insert(rank);
        if proven {
            self.gone.insert(rank);
        }
    }

    /// This member is out of the job for good.
    fn fail(&mut self, error: &Error) {
        if matches!(error, Error::Excluded { .. } | Error::Partitioned { .. }) {
            self.failed = Some(error.clone());
            self.node.stop();
        }
    }

    /// Takes in the node's decisions that arrived between reductions.
    fn take_verdicts(&mut self) {
        while let Ok(verdict) = self.verdicts.try_recv() {
            match verdict {
                Verdict::Departed { rank, proven, .. } => self.depart(rank, proven),
                Verdict::Fenced { .. } => self.fail(&Error::Excluded { rank: self.rank }),
            }
        }
    }

    /// Tells the node about departures the engine learned from other
    /// members, so that their links are cut (and they are told).
    fn sync_departures(&mut self, engine: &Engine) {
        let status = engine.status();
        for d in status.departed {
            if !self.departed.contains(&d) {
                let proven = status.gone.binary_search(&d).is_ok();
                self.depart(d, proven);
                self.node.departed_elsewhere(d, proven);
            }
        }
    }

    /// Starts the next reduction: its id, and this member's neighbours
    /// before any departure (the engine learns the departures) with a
    /// diameter bound.
    fn next_op(&mut self) -> (u64, Vec<usize>, usize) {
        self.op += 1;
        let (peers, bound) = self.hood.neighbours(self.rank, &[]);
        (self.op, peers, bound)
    }

    fn setup<'p>(&self, peers: &'p [usize], bound: usize) -> MemberSetup<'p> {
        MemberSetup {
            id: self.rank,
            members: self.size,
            peers,
            diameter_bound: bound,
        }
    }

    /// Takes part in the next reduction only to fail it on every member
    /// with `error` (this member's own arguments were invalid), then in the
    /// agreement that follows it (see [`Session::agree`]).
    pub(crate) async fn abort_call(&mut self, error: Error) -> Result<()> {
        self.abort_op(&error)?;
        let own = Own {
            // The only refusal with a length is an input too long to send.
            len: match error {
                Error::InputTooLarge { len, .. } => len,
                _ => 0,
            },
            shape: 0,
            problem: AbortReason::from_error(&error),
        };
        self.agree(own, error).await;
        Ok(())
    }

    /// Fails the next reduction on every member with `error`.
    fn abort_op(&mut self, error: &Error) -> Result<()> {
        self.take_verdicts();
        if let Some(failed) = &self.failed {
            return Err(failed.clone());
        }
        let Some(reason) = AbortReason::from_error(error) else {
            return Err(transport(format!("{error} cannot be told to the others")));
        };
        let (op, peers, bound) = self.next_op();
        let setup = self.setup(&peers, bound);
        let mut aborted = Engine::aborted(setup, reason);
        // Its shape is unknown; receivers take aborts whatever the tag.
        self.shape = 0;
        self.flush(op, &mut aborted);
        self.end(op, aborted);
        self.early.retain(|(_, f)| f.op > op);
        Ok(())
    }

    /// One reduction: the mean of every live member's `x`, whose shape is
    /// `shape` (its product is `x.len()`; `None`: one-dimensional). A
    /// neighbour with another shape of the same length fails it for
    /// everyone with [`Error::ShapeMismatch`]. A usage error is followed
    /// by the agreement on its culprit ([`Session::agree`]).
    pub(crate) async fn reduce(&mut self, x: &[f64], shape: Option<&[usize]>) -> Result<Reduction> {
        let tag = wire::shape_tag(shape.unwrap_or(&[x.len()]));
        let max = self.node.max_input_len();
        let too_large = (x.len() > max).then_some(AbortReason::InputTooLarge {
            rank: self.rank as u32,
            len: x.len() as u64,
            max: max as u64,
        });
        match self.reduce_once(x, tag).await {
            Err(error) if agree::follows(&error) => {
                let own = Own::of(x, tag, too_large);
                Err(self.agree(own, error).await)
            }
            outcome => outcome,
        }
    }

    /// After a usage error failed a reduction on every member: one more,
    /// of every member's own part, from which every member derives the
    /// same culprit (see `dac_core::agree`). Returns the agreed error, or
    /// `error` if the agreement cannot be read.
    async fn agree(&mut self, own: Own, error: Error) -> Error {
        let ballot = agree::ballot(self.rank, self.size, &own);
        let tag = wire::shape_tag(&[ballot.len()]);
        match self.reduce_once(&ballot, tag).await {
            Ok(mean) => agree::verdict(&mean.into_sum(), self.size, error),
            Err(_) => error,
        }
    }

    /// One reduction of `x`, with shape tag `tag`.
    async fn reduce_once(&mut self, x: &[f64], tag: u64) -> Result<Reduction> {
        self.take_verdicts();
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let max = self.node.max_input_len();
        if x.len() > max {
            // The transport cannot carry it: the engine never sees it.
            let error = Error::InputTooLarge {
                rank: self.rank,
                len: x.len(),
                max,
            };
            self.abort_op(&error)?;
            return Err(error);
        }
        let (op, peers, bound) = self.next_op();
        self.shape = tag;
        let setup = self.setup(&peers, bound);
        // A bad input gives an engine that has failed already: driven like
        // any other, it tells the others, so that they fail with its error
        // too instead of waiting for this member's input.
        let mut engine = Engine::new(&self.config, setup, x)?;
        for &d in &self.departed {
            if self.gone.contains(&d) {
                engine.peer_departed(d);
            } else {
                engine.peer_suspected(d);
            }
        }
        let known = self.departed.len();
        let mut view = engine.status().view;
        self.reconfigure(&mut engine);
        let (early, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.early)
            .into_iter()
            .partition(|(_, f)| f.op == op);
        self.early = later;
        for (from, frame) in early {
            self.route(&mut engine, from, frame);
        }
        let mut idle = FIRST_IDLE;
        loop {
            let now = engine.status().view;
            if now != view {
                view = now;
                self.sync_departures(&engine);
            }
            self.reconfigure(&mut engine);
            self.flush(op, &mut engine);
            let progress = engine.advance();
            // Results that turned out to contradict this member's own.
            for violation in engine.take_misbehaviour() {
                self.expel(&mut engine, violation.peer(), violation.to_string());
            }
            match progress {
                Progress::Advanced => {
                    idle = FIRST_IDLE;
                    continue;
                }
                Progress::Finished => return self.finish(op, engine, known),
                Progress::Blocked => {}
            }
            tokio::select! {
                biased;
                inbound = self.inbox.recv() => match inbound {
                    Some(Inbound { from, frame, .. }) => self.take(&mut engine, from, frame),
                    None => return Err(transport("the network task has stopped")),
                },
                verdict = self.verdicts.recv() => match verdict {
                    Some(Verdict::Departed { rank, proven, finished }) => {
                        self.pay_owed();
                        self.depart(rank, proven);
                        if finished >= op {
                            // It finished this reduction before it left:
                            // the result it announced may be adopted.
                            engine.peer_finished(rank);
                        }
                        if proven {
                            engine.peer_departed(rank);
                        } else {
                            engine.peer_suspected(rank);
                        }
                        if let Some((_, last)) = self.last.as_mut() {
                            last.peer_departed(rank);
                        }
                    }
                    Some(Verdict::Fenced { .. }) => {
                        let error = Error::Excluded { rank: self.rank };
                        self.fail(&error);
                        return Err(error);
                    }
                    None => return Err(transport("the network task has stopped")),
                },
                () = tokio::time::sleep(idle) => {
                    self.pay_owed();
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
    fn finish(&mut self, op: u64, mut engine: Engine, known: usize) -> Result<Reduction> {
        let job = self.node.job;
        self.sync_departures(&engine);
        let eventful = self.departed.len() > known;
        let peers = engine.status().peers;
        let mut now: Vec<(Target, Arc<[u8]>)> = Vec::new();
        let mut announce = None;
        engine.poll_outgoing(|target, message| {
            let frame: Arc<[u8]> = wire::encode(job, op, self.shape, message).into();
            if !eventful && message.header.kind == Kind::Done && target == Target::Peers {
                announce = Some(frame);
            } else {
                now.push((target, frame));
            }
        });
        self.owed = announce.map(|frame| (frame, peers));
        self.send_all(&engine, now);
        let outcome = engine.take_outcome();
        self.end(op, engine);
        let outcome =
            outcome.unwrap_or_else(|| Err(transport("the engine finished without an outcome")));
        match &outcome {
            Ok(reduction) => {
                self.finished = op;
                self.missing.extend(reduction.contributors.departed());
            }
            Err(error) => self.fail(error),
        }
        outcome
    }

    /// Keeps the engine of reduction `op`, now over, to answer late
    /// questions under its shape tag.
    fn end(&mut self, op: u64, engine: Engine) {
        self.last = Some((op, engine));
        self.last_shape = self.shape;
    }

    /// Sends the deferred result announcement of the previous reduction.
    fn pay_owed(&mut self) {
        if let Some((frame, peers)) = self.owed.take() {
            for p in peers {
                self.node.send(p, Arc::clone(&frame));
            }
        }
    }

    /// Cuts off a member that broke the protocol, and drops it from the
    /// reduction at once.
    fn expel(&mut self, engine: &mut Engine, from: usize, reason: String) {
        self.node.cut_off(from, Cut::Misbehaved, reason);
        self.depart(from, false);
        engine.peer_suspected(from);
    }

    /// Takes in a frame from a link: counts it against its sender's budget
    /// of repeats, then routes it.
    fn take(&mut self, engine: &mut Engine, from: usize, frame: Frame) {
        if self.departed.contains(&from) {
            return;
        }
        let budget = self.repeats.entry(from).or_insert_with(Repeats::new);
        match budget.admit(&frame, tokio::time::Instant::now()) {
            Admission::Take => self.route(engine, from, frame),
            // A repeat too soon after the last: not answered again.
            Admission::Drop => {}
            Admission::Flood => {
                let reason = format!(
                    "sent more than {REPEAT_BURST} repeated frames in one reduction (at most \
                     {REPEAT_RATE} a second are allowed after that)"
                );
                self.expel(engine, from, reason);
            }
        }
    }

    /// Hands a frame to the engine of its reduction. Frames from a member
    /// this session has seen depart are dropped (a member falsely
    /// suspected, whose reader still runs); frames a member sent before
    /// departing were queued before its departure and still count.
    fn route(&mut self, engine: &mut Engine, from: usize, frame: Frame) {
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
            let dim = engine.status().dim;
            let kind = frame.message.header.kind;
            let len = frame.message.payload.len();
            // Another length is the engine's `DimensionMismatch`; the same
            // length in another shape, a usage error too: everyone fails.
            // (Aborts come whatever the sender's shape.)
            let same_len =
                (kind == Kind::Round && len == dim + 1) || (kind == Kind::Done && len == dim);
            if frame.shape != self.shape && same_len {
                engine.abort(AbortReason::ShapeMismatch {
                    rank: self.rank as u32,
                    neighbour: from as u32,
                    len: dim as u64,
                });
                return;
            }
            // (Another input length is no violation: the engine fails the
            // reduction for everyone.)
            if let Err(violation) = engine.receive(from, &frame.message.as_message()) {
                self.expel(engine, from, violation.to_string());
            }
        } else if frame.op + 1 == op {
            if let Some((last_op, mut last)) = self.last.take() {
                // The previous reduction is over, but a malformed message
                // is still a broken protocol.
                let received = last.receive(from, &frame.message.as_message());
                self.flush_as(last_op, self.last_shape, &mut last);
                let late = last.take_misbehaviour();
                self.last = Some((last_op, last));
                for violation in late {
                    self.expel(engine, violation.peer(), violation.to_string());
                }
                if let Err(violation) = received {
                    self.expel(engine, from, violation.to_string());
                }
            }
        } else if frame.op > op && frame.op <= op + MAX_AHEAD {
            // Checked now, while it waits: a resend of the same round
            // would replace it before the engine could.
            let h = &frame.message.header;
            let sane = frame.message.payload.iter().all(|x| x.is_finite())
                && h.streak >= 0.0
                && h.epoch >= 0.0;
            if !sane {
                let reason = format!("sent a non-finite value in a {:?} message", h.kind);
                return self.expel(engine, from, reason);
            }
            let (ahead, kind, round) = (frame.op, h.kind, h.round);
            // A resend replaces the frame it repeats.
            self.early.retain(|(f, e)| {
                !(*f == from
                    && e.op == ahead
                    && e.message.header.kind == kind
                    && e.message.header.round == round)
            });
            if self.early.iter().filter(|(f, _)| *f == from).count() >= MAX_EARLY_FRAMES {
                let reason = format!("sent more than {MAX_EARLY_FRAMES} frames ahead");
                self.expel(engine, from, reason);
            } else {
                self.early.push((from, frame));
            }
        } else if frame.op > op + MAX_AHEAD {
            let reason = format!("sent a frame for reduction {} during {op}", frame.op);
            self.expel(engine, from, reason);
        }
    }

    /// Installs the repaired neighbour set when the engine asks for it.
    fn reconfigure(&mut self, engine: &mut Engine) {
        let status = engine.status();
        if status.reconfigure {
            let (peers, bound) = self.hood.neighbours(self.rank, &status.departed);
            // The repair is monotone, so the only possible error is a
            // Laplacian step too large for the new degree, which aborts the
            // reduction for everyone with that error.
            let _ = engine.set_peers(&peers, bound);
        }
    }

    /// Sends everything the engine of the current reduction has to send.
    fn flush(&self, op: u64, engine: &mut Engine) {
        self.flush_as(op, self.shape, engine);
    }

    /// Sends everything `engine` (of reduction `op`, shape tag `shape`)
    /// has to send.
    fn flush_as(&self, op: u64, shape: u64, engine: &mut Engine) {
        let mut out: Vec<(Target, Arc<[u8]>)> = Vec::new();
        let job = self.node.job;
        engine.poll_outgoing(|target, message| {
            out.push((target, wire::encode(job, op, shape, message).into()));
        });
        self.send_all(engine, out);
    }

    fn send_all(&self, engine: &Engine, out: Vec<(Target, Arc<[u8]>)>) {
        if out.is_empty() {
            return;
        }
        let peers = engine.status().peers;
        for (target, frame) in out {
            match target {
                Target::Peers => {
                    for &p in &peers {
                        self.node.send(p, Arc::clone(&frame));
                    }
                }
                Target::Peer(p) => self.node.send(p, frame),
            }
        }
    }
}
