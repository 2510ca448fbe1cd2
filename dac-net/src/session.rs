//! One member's side of a job: forming it, and running reductions on it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dac_core::agree::{self, Own};
use dac_core::engine::{AbortReason, Engine, Kind, MemberSetup, Progress, Target};
use dac_core::{Config, Error, Reduction, Result, Topology, TransportKind};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::access::Access;
use crate::builder::CommBuilder;
use crate::failure::{closed, failure, network_stopped};
use crate::join;
use crate::membership::{Membership, View};
use crate::node::{Cut, DATA_PROTOCOL, Inbound, Limits, Node, PROBE_PROTOCOL, Verdict, Wiring};
use crate::repeats::{Admission, REPEAT_BURST, REPEAT_RATE, Repeats};
use crate::roster::{self, ROSTER_PROTOCOL, Roster};
use crate::topology::Neighbourhood;
use crate::transport::{self as swarm, SwarmCommand};
use crate::wire::{self, Frame, Stamp};
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
    /// This member's rank: its identity for the whole job.
    pub(crate) rank: usize,
    /// The reduction settings every member agreed on.
    pub(crate) config: Config,
    /// The topology policy, and the seed of random ones (each view's graph
    /// is built from them).
    topology: Topology,
    seed: u64,
    /// Our libp2p identity (fresh for every job).
    pub(crate) peer_id: PeerId,
    /// Where we listen (published for the others).
    pub(crate) listen_addrs: Vec<Multiaddr>,
    /// Links to the other members and the failure detector.
    pub(crate) node: Arc<Node>,
    /// The current view, and every departure known.
    pub(crate) membership: Membership,
    /// Neighbour sets in the current view (by position), before and after
    /// departures.
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
    /// Why this member is out of the job for good (excluded by the others,
    /// or without a quorum): every later reduction fails with it.
    failed: Option<Error>,
    /// Per member, the repeated frames it has sent (see [`REPEAT_BURST`]).
    repeats: HashMap<usize, Repeats>,
    /// Frames for later reductions: (sender's rank, frame).
    early: Vec<(usize, Frame)>,
    /// The previous reduction, which answers late questions about it.
    last: Option<Last>,
    /// The shape tag of the current reduction.
    shape: u64,
    /// The previous reduction's result announcement, not yet sent to these
    /// neighbours (ranks; see [`Session::finish`]).
    owed: Option<(Arc<[u8]>, Vec<usize>)>,
    /// Joiners this member accepted and has not offered yet.
    lobby: join::Lobby,
    /// Requests to the swarm task; dropping the last sender stops it.
    commands: mpsc::UnboundedSender<SwarmCommand>,
    /// Background tasks to stop on close (swarm, stream acceptance,
    /// failure detection, late-join refusals).
    tasks: Vec<JoinHandle<()>>,
}

/// A reduction that is over, kept to answer late questions about it.
#[derive(Debug)]
struct Last {
    /// Its frames' stamp.
    stamp: Stamp,
    /// The view it ran in.
    view: View,
    engine: Engine,
}

/// Publishes `addrs` as `dir/rank-R.addr`, atomically (write, then rename).
fn publish(dir: &Path, rank: usize, peer: PeerId, addrs: &[Multiaddr]) -> Result<()> {
    let text: String = addrs.iter().map(|a| format!("{a}/p2p/{peer}\n")).collect();
    let tmp = dir.join(format!(".rank-{rank}.addr.tmp"));
    let path = dir.join(format!("rank-{rank}.addr"));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            failure(
                TransportKind::Setup,
                format!("cannot publish the address in {}: {e}", dir.display()),
            )
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
            return Err(failure(
                TransportKind::Timeout,
                format!(
                    "rank 0 did not publish its address in {} within {:.0} s",
                    dir.display(),
                    timeout.as_secs_f64()
                ),
            ));
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

/// A member's network before it is a member of a job: its swarm, the
/// streams that arrived meanwhile, and the joiners it accepted.
struct Opening {
    started: swarm::Started,
    control: libp2p_stream::Control,
    /// Inbound data (false) and probe (true) streams, parked until the
    /// node exists.
    parked: mpsc::Receiver<(bool, PeerId, libp2p::Stream)>,
    tasks: Vec<JoinHandle<()>>,
    access: Arc<Access>,
    /// What every member must agree on.
    settings: String,
    lobby: join::Lobby,
}

impl Opening {
    /// Starts the swarm and takes every inbound stream from then on
    /// (`size`: the members the connection limits are sized for).
    async fn new(b: &CommBuilder, config: &Config, size: usize) -> Result<Opening> {
        let settings = b.settings(config);
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
        let accept = |control: &mut libp2p_stream::Control, protocol| {
            control
                .accept(protocol)
                .map_err(|e| failure(TransportKind::Setup, e.to_string()))
        };
        let data = accept(&mut control, DATA_PROTOCOL)?;
        let probes = accept(&mut control, PROBE_PROTOCOL)?;
        let joins = accept(&mut control, join::JOIN_PROTOCOL)?;
        // Inbound streams must be taken at once (libp2p drops those nobody
        // polls): park them until the node exists.
        let (parked_tx, parked) = mpsc::channel(1024);
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
        let lobby = join::Lobby::default();
        let admitting = join::accept_joins(
            joins,
            settings.clone(),
            Arc::clone(&lobby),
            b.startup_timeout,
        );
        Ok(Opening {
            tasks: vec![park, admitting],
            started,
            control,
            parked,
            access,
            settings,
            lobby,
        })
    }

    /// The member `rank` of job `job` whose members are `members`, in the
    /// neighbourhood `hood` of its first view: its node and its session.
    async fn enter(
        self,
        b: &CommBuilder,
        config: Config,
        (rank, job): (usize, u64),
        members: Vec<(PeerId, Vec<Multiaddr>)>,
        hood: Neighbourhood,
    ) -> Result<Session> {
        let Opening {
            started,
            control,
            mut parked,
            mut tasks,
            lobby,
            ..
        } = self;
        tasks.push(started.task);
        let (done, added) = tokio::sync::oneshot::channel();
        let _ = started.commands.send(SwarmCommand::AddAddresses {
            members: members.clone(),
            done,
        });
        added.await.map_err(|_| network_stopped())?;
        let (inbox_tx, inbox) = mpsc::channel(1024);
        let (verdicts_tx, verdicts) = mpsc::unbounded_channel();
        let limits = Limits {
            max_frame: b.max_frame,
            queue_depth: b.queue_depth,
            connect_timeout: b.peer_timeout + LINK_SLACK,
            peer_timeout: b.peer_timeout,
        };
        let wiring = Wiring {
            control,
            commands: started.commands.clone(),
            inbox: inbox_tx,
            verdicts: verdicts_tx,
        };
        let size = members.len();
        let node = Node::new(rank, job, members, wiring, limits);
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
        Ok(Session {
            rank,
            config,
            topology: b.topology.clone(),
            seed: b.seed,
            membership: Membership::new(size),
            peer_id: started.peer_id,
            listen_addrs: started.listen_addrs,
            node,
            hood,
            inbox,
            verdicts,
            op: 0,
            failed: None,
            repeats: HashMap::new(),
            early: Vec::new(),
            last: None,
            finished: 0,
            shape: 0,
            owed: None,
            lobby,
            commands: started.commands,
            tasks,
        })
    }
}

impl Session {
    /// A member of a new job: forms it with the others (see `roster`).
    pub(crate) async fn connect(
        b: CommBuilder,
        rank: usize,
        size: usize,
        config: Config,
    ) -> Result<Session> {
        let hood = Neighbourhood::new(&b.topology, size, b.seed)?;
        let mut opening = Opening::new(&b, &config, size).await?;
        if let Some(dir) = &b.run_dir {
            publish(
                dir,
                rank,
                opening.started.peer_id,
                &opening.started.listen_addrs,
            )?;
        }
        let me = (
            opening.started.peer_id,
            opening.started.listen_addrs.clone(),
        );
        let settings = opening.settings.clone();
        let mut formation = None;
        let mut roster_stream = None;
        let roster = if rank == 0 {
            if size == 1 {
                Roster {
                    job: rand::random::<u64>() | 1,
                    members: vec![me],
                }
            } else {
                let incoming = opening
                    .control
                    .accept(ROSTER_PROTOCOL)
                    .map_err(|e| failure(TransportKind::Setup, e.to_string()))?;
                let (roster, forming, late) = roster::coordinate(
                    incoming,
                    me,
                    size,
                    settings,
                    b.startup_timeout,
                    &opening.access,
                )
                .await?;
                formation = Some(forming);
                opening.tasks.push(late);
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
                &opening.started.commands,
                &mut opening.control,
                &bootstrap,
                roster::Applicant {
                    rank,
                    size,
                    settings,
                    addrs: opening.started.listen_addrs.clone(),
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
                return Err(closed("vanished after joining (a test)"));
            }
            // Blocks the runtime's only worker and this thread: nothing of
            // this member runs.
            Some(crate::testing::AfterJoin::Freeze(time)) => {
                tokio::spawn(async move { std::thread::sleep(time) });
                std::thread::sleep(time);
            }
            None => {}
        }
        let mut session = opening
            .enter(&b, config, (rank, roster.job), roster.members, hood)
            .await?;
        let link_timeout = b.peer_timeout + LINK_SLACK;
        let (peers, _) = session.hood.neighbours(rank, &[]);
        {
            let linking = session.node.connect(&peers, link_timeout);
            if let Some(formation) = formation {
                formation
                    .conclude(linking.await, link_timeout + Duration::from_secs(2))
                    .await?;
            } else if let Some(stream) = roster_stream {
                roster::confirm(stream, rank, linking, link_timeout + LINK_SLACK).await?;
            }
        }
        Ok(session)
    }

    /// A member that joins a running job through the members at
    /// `b.join` (see `join`): it enters at the next reduction boundary.
    pub(crate) async fn join(b: CommBuilder, config: Config) -> Result<Session> {
        let mut opening = Opening::new(&b, &config, 64).await?;
        let admission = join::request(
            &opening.started.commands,
            &mut opening.control,
            &b.join,
            opening.settings.clone(),
            &opening.started.listen_addrs,
            b.startup_timeout,
        )
        .await?;
        let members = admission.members()?;
        let view = View::new(admission.view_id, admission.view.clone());
        let hood = view_graph(&b.topology, &config, &view, b.seed)?;
        let size = members.len();
        let mut session = opening
            .enter(&b, config, (admission.rank, admission.job), members, hood)
            .await?;
        session.membership = Membership::joined(size, view);
        session.op = admission.op;
        session.finished = admission.op;
        Ok(session)
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

    /// The stamp of the next reduction's frames, with shape tag `shape`.
    #[cfg(feature = "testing")]
    pub(crate) fn next_stamp(&self, shape: u64) -> Stamp {
        Stamp {
            op: self.op + 1,
            view: self.membership.view().tag(),
            shape,
        }
    }

    /// Neighbours in the current view before any departure.
    #[cfg(feature = "testing")]
    pub(crate) fn neighbour_count(&mut self) -> usize {
        match self.membership.view().position(self.rank) {
            Some(position) => self.hood.neighbours(position, &[]).0.len(),
            None => 0,
        }
    }

    /// Ranks assigned so far (see `Comm::size`).
    pub(crate) fn size(&self) -> usize {
        self.membership.size()
    }

    /// This member is out of the job for good.
    fn fail(&mut self, error: &Error) {
        if matches!(error, Error::Excluded { .. } | Error::Partitioned { .. }) {
            self.failed = Some(error.clone());
            self.node.stop();
        }
    }

    /// Takes in the node's decisions that arrived between reductions.
    pub(crate) fn take_verdicts(&mut self) {
        while let Ok(verdict) = self.verdicts.try_recv() {
            match verdict {
                Verdict::Departed { rank, proven, .. } => {
                    self.membership.depart(rank, proven);
                }
                Verdict::Fenced { .. } => self.fail(&Error::Excluded { rank: self.rank }),
            }
        }
    }

    /// Tells the node about departures the engine (of a reduction in the
    /// current view) learned from other members, so that their links are
    /// cut (and they are told).
    fn sync_departures(&mut self, engine: &Engine) {
        let status = engine.status();
        for position in status.departed {
            let rank = self.membership.view().rank(position);
            if !self.membership.has_departed(rank) {
                let proven = status.gone.binary_search(&position).is_ok();
                self.membership.depart(rank, proven);
                self.node.departed_elsewhere(rank, proven);
            }
        }
    }

    /// This member's position in the current view.
    fn position(&self) -> Result<usize> {
        // A member's own result always names it, so it is in every view it
        // moves to.
        self.membership
            .view()
            .position(self.rank)
            .ok_or(Error::Excluded { rank: self.rank })
    }

    /// Starts the next reduction: its id, and this member's setup in the
    /// current view (neighbours before any departure, which the engine
    /// learns, and a diameter bound).
    fn next_op(&mut self) -> Result<(u64, Setup)> {
        let position = self.position()?;
        self.op += 1;
        let (peers, bound) = self.hood.neighbours(position, &[]);
        let setup = Setup {
            position,
            members: self.membership.view().len(),
            peers,
            bound,
        };
        Ok((self.op, setup))
    }

    /// The stamp of the current reduction's frames.
    fn stamp(&self) -> Stamp {
        Stamp {
            op: self.op,
            view: self.membership.view().tag(),
            shape: self.shape,
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
        // The engines name members by their position in the view.
        let view = self.membership.view();
        let told = error
            .clone()
            .rename_members(|r| view.position(r).unwrap_or(r));
        let Some(reason) = AbortReason::from_error(&told) else {
            // Not reached: the session aborts only with usage errors.
            return Err(closed(format!("{error} cannot be told to the others")));
        };
        let (op, setup) = self.next_op()?;
        let mut aborted = Engine::aborted(setup.member(), reason);
        // Its shape is unknown; receivers take aborts whatever the tag.
        self.shape = 0;
        self.flush(&mut aborted);
        self.end(aborted);
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
        let size = self.size();
        let ballot = agree::ballot(self.rank, size, &own);
        let tag = wire::shape_tag(&[ballot.len()]);
        match self.reduce_once(&ballot, tag).await {
            Ok(mean) => agree::verdict(&mean.into_sum(), size, error),
            Err(_) => error,
        }
    }

    /// The admission point (see `Comm::admit`): one reduction of a single
    /// value, 1 from a member with joiners waiting and 0 otherwise; if any
    /// had, the admission. Returns the ranks admitted.
    pub(crate) async fn admit(&mut self) -> Result<std::ops::Range<usize>> {
        let offers = join::take_offers(&self.lobby);
        let flag = [if offers.is_empty() { 0.0 } else { 1.0 }];
        let asked = match self.reduce_once(&flag, wire::shape_tag(&[1])).await {
            Ok(mean) => mean.into_sum().value.first().is_some_and(|&n| n >= 0.5),
            Err(error) => {
                join::put_back(&self.lobby, offers);
                return Err(error);
            }
        };
        let first = self.size();
        if asked {
            self.admit_offers(offers).await;
        } else {
            join::put_back(&self.lobby, offers);
        }
        Ok(first..self.size())
    }

    /// The admission, after an admission point at which some member had
    /// joiners: one reduction of a fixed layout in which every member
    /// publishes the identities it offers at its own slots (`offers`: this
    /// member's). Every member reads the same joiners from the same sum,
    /// gives them the next ranks in the order of their admitters' ranks and
    /// moves to the view of that reduction's contributors plus them; this
    /// member then answers its own joiners (see `join`).
    async fn admit_offers(&mut self, offers: Vec<join::Candidate>) {
        let (size, per) = (self.size(), join::PER_ADMISSION);
        let mut slots = vec![0.0; size * per * join::SLOT];
        for (k, c) in offers.iter().enumerate() {
            let at = (self.rank * per + k) * join::SLOT;
            let identity = join::identity_bytes(&c.peer, &c.addrs);
            join::write_slot(&mut slots[at..at + join::SLOT], &identity);
        }
        let tag = wire::shape_tag(&[slots.len()]);
        let sum = match self.reduce_once(&slots, tag).await {
            Ok(mean) => mean.into_sum(),
            Err(error) => {
                for c in offers {
                    let _ = c.answer.send(Err(format!("the admission failed: {error}")));
                }
                return;
            }
        };
        let mut joiners: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        // This member's offers that were admitted: (offer, joiner).
        let mut mine = Vec::new();
        for slot in 0..size * per {
            let at = slot * join::SLOT;
            let Some((peer, addrs)) = sum.value.get(at..at + join::SLOT).and_then(join::read_slot)
            else {
                continue;
            };
            // A member already, or offered twice: the first offer counts.
            if self.node.rank_of(&peer).is_some() || joiners.iter().any(|(p, _)| *p == peer) {
                continue;
            }
            if slot / per == self.rank && offers.get(slot % per).is_some_and(|c| c.peer == peer) {
                mine.push((slot % per, joiners.len()));
            }
            joiners.push((peer, addrs));
        }
        let first = self.size();
        if joiners.is_empty() || !self.node.add_members(first, &joiners) {
            for c in offers {
                let _ = c
                    .answer
                    .send(Err("it was not admitted (its identity did not arrive \
                                           intact)"
                        .into()));
            }
            return;
        }
        let (done, _) = tokio::sync::oneshot::channel();
        let _ = self.commands.send(SwarmCommand::AddAddresses {
            members: joiners.clone(),
            done,
        });
        self.membership.admit(joiners.len());
        let view = self.membership.view();
        match view_graph(&self.topology, &self.config, view, self.seed) {
            Ok(hood) => self.hood = hood,
            Err(error) => self.failed = Some(error),
        }
        let view = (view.id, view.members.clone());
        let roster = self.node.roster_snapshot();
        let mut answers: Vec<Option<std::result::Result<join::Admission, String>>> =
            (0..offers.len()).map(|_| None).collect();
        for (k, joiner) in mine {
            let admission = join::Admission::new(
                self.node.job,
                first + joiner,
                self.op,
                view.clone(),
                &roster,
            );
            answers[k] = Some(Ok(admission));
        }
        for (c, answer) in offers.into_iter().zip(answers) {
            let answer = answer.unwrap_or_else(|| Err("another member admitted it first".into()));
            let _ = c.answer.send(answer);
        }
    }

    /// One reduction of `x`, with shape tag `tag`, in the current view.
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
        let (op, setup) = self.next_op()?;
        self.shape = tag;
        // A bad input gives an engine that has failed already: driven like
        // any other, it tells the others, so that they fail with its error
        // too instead of waiting for this member's input.
        let mut engine = Engine::new(&self.config, setup.member(), x).map_err(|e| {
            let view = self.membership.view();
            e.rename_members(|p| view.rank(p))
        })?;
        let view = self.membership.view();
        for (position, proven) in self.membership.departed_in(view) {
            if proven {
                engine.peer_departed(position);
            } else {
                engine.peer_suspected(position);
            }
        }
        let known = self.membership.departures();
        let mut fingerprint = engine.status().view;
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
            if now != fingerprint {
                fingerprint = now;
                self.sync_departures(&engine);
            }
            self.reconfigure(&mut engine);
            self.flush(&mut engine);
            let progress = engine.advance();
            // Results that turned out to contradict this member's own.
            for violation in engine.take_misbehaviour() {
                let rank = self.membership.view().rank(violation.peer());
                self.expel(&mut engine, rank, violation.to_string());
            }
            match progress {
                Progress::Advanced => {
                    idle = FIRST_IDLE;
                    continue;
                }
                Progress::Finished => return self.finish(engine, known),
                Progress::Blocked => {}
            }
            tokio::select! {
                biased;
                inbound = self.inbox.recv() => match inbound {
                    Some(Inbound { from, frame, .. }) => self.take(&mut engine, from, frame),
                    None => return Err(network_stopped()),
                },
                verdict = self.verdicts.recv() => match verdict {
                    Some(Verdict::Departed { rank, proven, finished }) => {
                        self.pay_owed();
                        self.membership.depart(rank, proven);
                        if let Some(position) = self.membership.view().position(rank) {
                            if finished >= op {
                                // It finished this reduction before it
                                // left: the result it announced may be
                                // adopted.
                                engine.peer_finished(position);
                            }
                            if proven {
                                engine.peer_departed(position);
                            } else {
                                engine.peer_suspected(position);
                            }
                        }
                        if let Some(last) = self.last.as_mut()
                            && let Some(position) = last.view.position(rank)
                        {
                            last.engine.peer_departed(position);
                        }
                    }
                    Some(Verdict::Fenced { .. }) => {
                        let error = Error::Excluded { rank: self.rank };
                        self.fail(&error);
                        return Err(error);
                    }
                    None => return Err(network_stopped()),
                },
                () = tokio::time::sleep(idle) => {
                    self.pay_owed();
                    engine.tick();
                    idle = (idle * 2).min(MAX_IDLE);
                }
            }
        }
    }

    /// Ends a reduction: keeps the engine to answer late questions, defers
    /// its result announcement, and moves to the next view.
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
    ///
    /// The engine's contributors are positions in the view; the result
    /// names ranks, and its contributors are the next view (see
    /// `membership`).
    fn finish(&mut self, mut engine: Engine, known: usize) -> Result<Reduction> {
        let job = self.node.job;
        let stamp = self.stamp();
        self.sync_departures(&engine);
        let eventful = self.membership.departures() > known;
        let view = self.membership.view();
        let peers: Vec<usize> = engine
            .status()
            .peers
            .into_iter()
            .map(|p| view.rank(p))
            .collect();
        let mut now: Vec<(Target, Arc<[u8]>)> = Vec::new();
        let mut announce = None;
        engine.poll_outgoing(|target, message| {
            let frame: Arc<[u8]> = wire::encode(job, stamp, message).into();
            if !eventful && message.header.kind == Kind::Done && target == Target::Peers {
                announce = Some(frame);
            } else {
                now.push((target, frame));
            }
        });
        self.owed = announce.map(|frame| (frame, peers));
        self.send_all(&engine, view, now);
        let outcome = engine.take_outcome();
        let view = self.membership.view().clone();
        let size = self.size();
        // The engine names members by position; the result, by rank.
        let outcome = match outcome {
            Some(Ok(mut reduction)) => {
                reduction.contributors = view.to_ranks(&reduction.contributors, size);
                Ok(reduction)
            }
            Some(Err(error)) => Err(error.rename_members(|p| view.rank(p))),
            None => Err(closed("the engine finished without an outcome")),
        };
        self.end(engine);
        match &outcome {
            Ok(reduction) => {
                self.finished = self.op;
                if self.membership.completed(&reduction.contributors) {
                    let view = self.membership.view();
                    match view_graph(&self.topology, &self.config, view, self.seed) {
                        Ok(hood) => self.hood = hood,
                        Err(error) => self.failed = Some(error),
                    }
                }
            }
            Err(error) => self.fail(error),
        }
        outcome
    }

    /// Keeps the engine of the current reduction, now over, to answer late
    /// questions about it.
    fn end(&mut self, engine: Engine) {
        self.last = Some(Last {
            stamp: self.stamp(),
            view: self.membership.view().clone(),
            engine,
        });
    }

    /// Sends the deferred result announcement of the previous reduction.
    fn pay_owed(&mut self) {
        if let Some((frame, peers)) = self.owed.take() {
            for p in peers {
                self.node.send(p, Arc::clone(&frame));
            }
        }
    }

    /// Cuts off member `rank`, which broke the protocol, and drops it from
    /// the current reduction at once.
    fn expel(&mut self, engine: &mut Engine, rank: usize, reason: String) {
        self.node.cut_off(rank, Cut::Misbehaved, reason);
        self.membership.depart(rank, false);
        if let Some(position) = self.membership.view().position(rank) {
            engine.peer_suspected(position);
        }
    }

    /// Takes in a frame from a link: counts it against its sender's budget
    /// of repeats, then routes it.
    fn take(&mut self, engine: &mut Engine, from: usize, frame: Frame) {
        if self.membership.has_departed(from) {
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

    /// Hands a frame from member `from` (a rank) to the engine of its
    /// reduction. Frames from a member this session has seen depart are
    /// dropped (a member falsely suspected, whose reader still runs);
    /// frames a member sent before departing were queued before its
    /// departure and still count.
    fn route(&mut self, engine: &mut Engine, from: usize, frame: Frame) {
        if self.membership.has_departed(from) {
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
            let view = self.membership.view();
            let Some(position) = in_view(view, from, frame.view) else {
                // Not a member of this view: a member the others went on
                // without, fenced already, or a stray frame.
                return;
            };
            let Ok(position) = position else {
                let reason = format!("ran reduction {op} in another view");
                return self.expel(engine, from, reason);
            };
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
                    rank: engine.status().id as u32,
                    neighbour: position as u32,
                    len: dim as u64,
                });
                return;
            }
            // (Another input length is no violation: the engine fails the
            // reduction for everyone.)
            if let Err(violation) = engine.receive(position, &frame.message.as_message()) {
                self.expel(engine, from, violation.to_string());
            }
        } else if frame.op + 1 == op {
            self.route_late(engine, from, frame);
        } else if frame.op > op && frame.op <= op + MAX_AHEAD {
            // Checked now, while it waits: a resend of the same round
            // would replace it before the engine could. (Its view is
            // checked when its reduction starts.)
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

    /// Hands a frame about the previous reduction to its engine, which is
    /// over: it answers a member that is still running it, and a malformed
    /// message is still a broken protocol.
    fn route_late(&mut self, engine: &mut Engine, from: usize, frame: Frame) {
        let Some(mut last) = self.last.take() else {
            return;
        };
        let mut expelled = Vec::new();
        match in_view(&last.view, from, frame.view) {
            None => {}
            Some(Err(())) => {
                let reason = format!("ran reduction {} in another view", frame.op);
                expelled.push((from, reason));
            }
            Some(Ok(position)) => {
                let received = last.engine.receive(position, &frame.message.as_message());
                self.flush_last(&mut last);
                for violation in last.engine.take_misbehaviour() {
                    let rank = last.view.rank(violation.peer());
                    expelled.push((rank, violation.to_string()));
                }
                if let Err(violation) = received {
                    expelled.push((from, violation.to_string()));
                }
            }
        }
        self.last = Some(last);
        for (rank, reason) in expelled {
            self.expel(engine, rank, reason);
        }
    }

    /// Installs the repaired neighbour set when the engine asks for it.
    fn reconfigure(&mut self, engine: &mut Engine) {
        let status = engine.status();
        if status.reconfigure {
            let (peers, bound) = self.hood.neighbours(status.id, &status.departed);
            // The repair is monotone, so the only possible error is a
            // Laplacian step too large for the new degree, which aborts the
            // reduction for everyone with that error.
            let _ = engine.set_peers(&peers, bound);
        }
    }

    /// Sends everything the engine of the current reduction has to send.
    fn flush(&self, engine: &mut Engine) {
        let out = self.collect(self.stamp(), engine);
        self.send_all(engine, self.membership.view(), out);
    }

    /// Sends everything the previous reduction's engine has to send.
    fn flush_last(&self, last: &mut Last) {
        let out = self.collect(last.stamp, &mut last.engine);
        self.send_all(&last.engine, &last.view, out);
    }

    /// The frames `engine` has to send, stamped with `stamp`.
    fn collect(&self, stamp: Stamp, engine: &mut Engine) -> Vec<(Target, Arc<[u8]>)> {
        let mut out: Vec<(Target, Arc<[u8]>)> = Vec::new();
        let job = self.node.job;
        engine.poll_outgoing(|target, message| {
            out.push((target, wire::encode(job, stamp, message).into()));
        });
        out
    }

    /// Sends `out`, from `engine` of a reduction in `view`.
    fn send_all(&self, engine: &Engine, view: &View, out: Vec<(Target, Arc<[u8]>)>) {
        if out.is_empty() {
            return;
        }
        let peers = engine.status().peers;
        for (target, frame) in out {
            match target {
                Target::Peers => {
                    for &p in &peers {
                        self.node.send(view.rank(p), Arc::clone(&frame));
                    }
                }
                Target::Peer(p) => self.node.send(view.rank(p), frame),
            }
        }
    }
}

/// A member's setup for one reduction, in positions of its view.
#[derive(Debug)]
struct Setup {
    position: usize,
    members: usize,
    peers: Vec<usize>,
    bound: usize,
}

impl Setup {
    fn member(&self) -> MemberSetup<'_> {
        MemberSetup {
            id: self.position,
            members: self.members,
            peers: &self.peers,
            diameter_bound: self.bound,
        }
    }
}

/// Where a frame from member `from`, stamped with view tag `tag`, belongs
/// in `view`: `None` if `from` is not a member of it, `Some(Err(()))` if it
/// is but ran the reduction in another view, else its position.
fn in_view(view: &View, from: usize, tag: u64) -> Option<std::result::Result<usize, ()>> {
    let position = view.position(from)?;
    Some(if tag == view.tag() {
        Ok(position)
    } else {
        Err(())
    })
}

/// The graph of `view`: the policy's for its size when the policy is made
/// for any size and suits the schedule there; otherwise the exponential
/// graph, then the ring, then the complete graph. (An explicit edge list
/// or a fixed torus names the members the job formed with, and a hypercube
/// needs a power of two.)
///
/// # Errors
/// No candidate builds (a view is never empty, so this does not happen).
pub(crate) fn view_graph(
    policy: &Topology,
    config: &Config,
    view: &View,
    seed: u64,
) -> Result<Neighbourhood> {
    let n = view.len();
    let any_size = !matches!(policy, Topology::Edges(_) | Topology::TorusDims { .. });
    let candidates = any_size.then(|| policy.clone()).into_iter().chain([
        Topology::Exponential,
        Topology::Ring,
        Topology::Complete,
    ]);
    let mut fallback = None;
    for topology in candidates {
        match Neighbourhood::new(&topology, n, seed) {
            Ok(hood) if config.validate_for(hood.graph()).is_ok() => return Ok(hood),
            // Kept in case nothing suits the schedule (a Laplacian step too
            // large for every degree): the reduction then fails on every
            // member with the engine's error.
            Ok(hood) => {
                fallback.get_or_insert(Ok(hood));
            }
            Err(e) => {
                fallback.get_or_insert(Err(e));
            }
        }
    }
    fallback.unwrap_or_else(|| Err(closed("no graph for an empty view")))
}
