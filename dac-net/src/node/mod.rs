//! A member's links and its failure detector.
//!
//! One long-lived stream per neighbour carries the frames of every
//! reduction; a writer task per link drains a bounded queue, and a reader
//! task checks every frame. Around them:
//!
//! - **Liveness.** A link that has been quiet for a heartbeat interval
//!   carries an empty frame, and every byte that arrives counts as a sign
//!   of life. The watchdog declares a neighbour *suspected* once nothing has
//!   arrived from it for `peer_timeout` (so within `peer_timeout` plus one
//!   interval of its last word). A member that was itself stalled (frozen,
//!   starved of CPU) restarts its clocks instead of blaming everyone else.
//! - **Proof.** A link that ends (closed, reset, a failed write) proves
//!   nothing by itself: a live member that cut us off closes it too. The
//!   member is *probed* on a fresh connection: a refused connection proves
//!   its process is gone; an answer says whether it left, still counts us
//!   as a member, or holds us departed (then we were excluded, and we stop).
//! - **Fencing.** A member we hold departed is told so: a link we cut
//!   carries a [`Control::Fenced`] word first, and its probes and streams
//!   get the same answer.
//! - **Bounds.** Sends never wait (a full queue drops the frame; the peer
//!   that does not read is cut off when a write misses its deadline), a
//!   frame must arrive within a deadline its length allows, and a link may
//!   have only a few frames waiting for the session, so a member that
//!   floods pushes back on its own link only. Reader and writer note their
//!   progress in atomics and one watchdog per member enforces every
//!   deadline and sends the heartbeats (see `liveness`): no frame costs a
//!   timer.

mod link;
mod liveness;
mod probe;

use liveness::Liveness;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

use crate::topology::Neighbourhood;
use crate::transport::SwarmCommand;
use crate::wire::{self, Control, Frame};

/// The data-plane protocol: one stream per neighbour pair. Version 3: the
/// goodbye names the last reduction the sender finished. Version 4: a
/// reduction that a usage error failed is followed by the agreement on
/// its culprit (`dac_core::agree`), one more reduction. Version 5: every
/// frame carries the tag of the view its reduction runs in.
pub(crate) const DATA_PROTOCOL: StreamProtocol = StreamProtocol::new("/dac/data/5");

/// The probe protocol: "do you still count me as a member?"
pub(crate) const PROBE_PROTOCOL: StreamProtocol = StreamProtocol::new("/dac/probe/1");

/// Events kept for [`crate::Comm::take_events`] (oldest dropped first).
const MAX_EVENTS: usize = 1024;

/// Frames one link may have waiting for the session; its reader waits
/// beyond that, so a flood pushes back on the flooder's link only. An
/// honest member is never more than a round or two ahead.
const FRAMES_IN_FLIGHT: usize = 8;

/// Slowest transfer rate a frame's deadline allows for (bytes per second):
/// a frame of `n` bytes must arrive, or be written, within
/// `peer_timeout + n / MIN_RATE`.
const MIN_RATE: f64 = 8.0 * (1 << 20) as f64;

/// Something that happened to a peer, reported to the program.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerEvent {
    /// A member is gone, or out of contact; the reductions go on without
    /// it.
    Departed {
        /// Its rank.
        rank: usize,
        /// What the failure detector saw.
        reason: String,
        /// True when its process is known to have ended or it left (a
        /// refused connection, a goodbye); false when it was only silent
        /// or unreachable, which counts against the quorum (see
        /// [`crate::Error::Partitioned`]).
        proven: bool,
    },
    /// A member sent a frame that is not valid (malformed, oversized, for
    /// another job, stalled, or violating the protocol): it was told it is
    /// excluded, its connection was closed, and it is treated as departed.
    Misbehaved {
        /// Its rank.
        rank: usize,
        /// What was wrong with the frame.
        reason: String,
    },
    /// A process that is not a member of the job tried to open a stream or
    /// join; it was refused.
    Refused {
        /// Its libp2p peer id.
        peer: String,
        /// Why it was refused.
        reason: String,
    },
}

/// What reader tasks hand to the session, in arrival order per link.
#[derive(Debug)]
pub(crate) struct Inbound {
    /// The sender's rank.
    pub(crate) from: usize,
    /// The checked frame.
    pub(crate) frame: Frame,
    /// Held until the session has taken the frame in.
    _permit: OwnedSemaphorePermit,
}

/// A decision of the node about a member, for the session (at most one
/// per member).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The member departed: `proven` when its process is known to be gone;
    /// `finished`, the last reduction it said it finished before it left
    /// (0: none, or unknown).
    Departed {
        rank: usize,
        proven: bool,
        finished: u64,
    },
    /// Member `by` holds us departed: we were excluded.
    Fenced { by: usize },
}

/// What a node is connected to: the swarm, and the session it reports to.
#[allow(missing_debug_implementations)] // libp2p's `Control` has no `Debug`
pub(crate) struct Wiring {
    /// Opens and accepts streams.
    pub(crate) control: libp2p_stream::Control,
    /// Requests to the swarm task.
    pub(crate) commands: mpsc::UnboundedSender<SwarmCommand>,
    /// Frames for the session, in arrival order per link.
    pub(crate) inbox: mpsc::Sender<Inbound>,
    /// Decisions about members, for the session.
    pub(crate) verdicts: mpsc::UnboundedSender<Verdict>,
}

/// Limits and timeouts of the data plane.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Largest frame body accepted from a peer.
    pub(crate) max_frame: usize,
    /// Frames queued per link before further sends are dropped.
    pub(crate) queue_depth: usize,
    /// Bound on opening a link.
    pub(crate) connect_timeout: Duration,
    /// Silence after which a neighbour is suspected.
    pub(crate) peer_timeout: Duration,
}

impl Limits {
    /// How often a quiet link carries a heartbeat, and how often the
    /// watchdog looks.
    fn interval(&self) -> Duration {
        (self.peer_timeout / 4).max(Duration::from_millis(10))
    }

    /// How long `bytes` may take to arrive or to be written.
    fn deadline(&self, bytes: usize) -> Duration {
        self.peer_timeout + Duration::from_secs_f64(bytes as f64 / MIN_RATE)
    }
}

/// The sending side of one link.
#[derive(Debug)]
struct Link {
    /// Frames for the link's writer task (bounded: a full queue drops).
    queue: mpsc::Sender<Arc<[u8]>>,
    /// Waiting for the peer to open the stream (we are the higher rank).
    pending: Option<oneshot::Sender<Stream>>,
    /// The stream is up and its reader runs.
    connected: bool,
    /// The link's progress and deadlines, shared with its reader, writer
    /// and the watchdog.
    live: Arc<Liveness>,
    /// Stops the reader when the link is shut.
    reader: Option<AbortHandle>,
    /// Bounds the frames waiting for the session.
    permits: Arc<Semaphore>,
}

/// What the node's tasks change, under one lock.
#[derive(Debug, Default)]
struct State {
    /// The live links, by member.
    links: HashMap<usize, Link>,
    /// Members whose departure this node decided or was told of (true
    /// when proven gone): the link layer's record, so that no link to them
    /// is opened again and they are fenced. The job's membership — views,
    /// and what the program sees — is the session's `Membership`, fed by
    /// the verdicts.
    departed: BTreeMap<usize, bool>,
    /// Members whose link ended and whose probe is under way.
    probing: BTreeSet<usize>,
    /// Members whose link could not be opened while the job formed.
    unlinked: BTreeMap<usize, String>,
    /// The comm failed or is closing: probes are answered "leaving", and
    /// ended links are not probed.
    stopped: bool,
    /// Events for [`crate::Comm::take_events`], oldest first (at most
    /// [`MAX_EVENTS`]).
    events: VecDeque<PeerEvent>,
    /// Probes and delayed checks under way, stopped or awaited on close.
    tasks: Vec<JoinHandle<()>>,
}

/// One member's view of the job's network.
pub(crate) struct Node {
    /// This member's rank.
    pub(crate) rank: usize,
    /// The job id every frame carries.
    pub(crate) job: u64,
    /// Every member's peer id and addresses, by rank (members admitted
    /// mid-job are added).
    roster: std::sync::RwLock<Roster>,
    /// Opens data and probe streams.
    control: libp2p_stream::Control,
    /// Requests to the swarm task (disconnects).
    commands: mpsc::UnboundedSender<SwarmCommand>,
    /// Frames for the session, in arrival order per link.
    inbox: mpsc::Sender<Inbound>,
    /// Departures and our own exclusion, for the session.
    verdicts: mpsc::UnboundedSender<Verdict>,
    /// Frame limit, queue depth and timeouts.
    limits: Limits,
    /// The node's clock origin (for [`Liveness::heard`]).
    born: Instant,
    /// When the watchdog last ran, and until when this member counts as
    /// recovering from a stall of its own (milliseconds since `born`).
    watched: AtomicU64,
    /// See `watched`.
    stalled_until: AtomicU64,
    /// Copies of every frame sent (a flooding member, in tests).
    #[cfg(feature = "testing")]
    copies: std::sync::atomic::AtomicUsize,
    /// Links, departures, probes and events.
    state: Mutex<State>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("rank", &self.rank)
            .field("job", &format_args!("{:016x}", self.job))
            .field("members", &self.members())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Every member's identity, by rank.
#[derive(Debug, Default)]
struct Roster {
    /// Peer ids, by rank.
    peers: Vec<PeerId>,
    /// Listen addresses, by rank (for probes).
    addrs: Vec<Vec<Multiaddr>>,
    /// Rank by peer id, for inbound streams and closed connections.
    rank_of: HashMap<PeerId, usize>,
}

/// How a member is cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cut {
    /// It broke the protocol.
    Misbehaved,
    /// It fell silent, stopped reading, or lost its link.
    Silent,
}

impl Node {
    /// A node on `wiring`, for the members of `roster` (in rank order).
    pub(crate) fn new(
        rank: usize,
        job: u64,
        roster: Vec<(PeerId, Vec<Multiaddr>)>,
        wiring: Wiring,
        limits: Limits,
    ) -> Arc<Node> {
        let Wiring {
            control,
            commands,
            inbox,
            verdicts,
        } = wiring;
        let (peers, addrs): (Vec<PeerId>, Vec<Vec<Multiaddr>>) = roster.into_iter().unzip();
        let rank_of = peers.iter().enumerate().map(|(r, p)| (*p, r)).collect();
        Arc::new(Node {
            rank,
            job,
            roster: std::sync::RwLock::new(Roster {
                peers,
                addrs,
                rank_of,
            }),
            control,
            commands,
            inbox,
            verdicts,
            limits,
            born: Instant::now(),
            watched: AtomicU64::new(0),
            stalled_until: AtomicU64::new(0),
            #[cfg(feature = "testing")]
            copies: std::sync::atomic::AtomicUsize::new(1),
            state: Mutex::new(State::default()),
        })
    }

    fn roster(&self) -> std::sync::RwLockReadGuard<'_, Roster> {
        self.roster.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Ranks assigned so far.
    pub(crate) fn members(&self) -> usize {
        self.roster().peers.len()
    }

    /// Member `rank`'s peer id.
    pub(crate) fn peer(&self, rank: usize) -> Option<PeerId> {
        self.roster().peers.get(rank).copied()
    }

    /// Member `rank`'s listen addresses.
    pub(crate) fn addrs_of(&self, rank: usize) -> Vec<Multiaddr> {
        self.roster().addrs.get(rank).cloned().unwrap_or_default()
    }

    /// The rank of the member with peer id `peer`.
    pub(crate) fn rank_of(&self, peer: &PeerId) -> Option<usize> {
        self.roster().rank_of.get(peer).copied()
    }

    /// Every member's peer id and addresses, by rank.
    pub(crate) fn roster_snapshot(&self) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let roster = self.roster();
        roster
            .peers
            .iter()
            .copied()
            .zip(roster.addrs.iter().cloned())
            .collect()
    }

    /// Adds members admitted mid-job, which take the next ranks in order;
    /// returns false (and adds nothing) if `first` is not the next rank or
    /// a peer id is a member's already.
    pub(crate) fn add_members(&self, first: usize, members: &[(PeerId, Vec<Multiaddr>)]) -> bool {
        let mut roster = self.roster.write().unwrap_or_else(|e| e.into_inner());
        if roster.peers.len() != first
            || members.iter().any(|(p, _)| roster.rank_of.contains_key(p))
        {
            return false;
        }
        for (peer, addrs) in members {
            let rank = roster.peers.len();
            roster.rank_of.insert(*peer, rank);
            roster.peers.push(*peer);
            roster.addrs.push(addrs.clone());
        }
        true
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-updated
        // in a way that matters more than stopping would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// The longest input whose messages fit in a frame (the payload is the
    /// mass and its weight, after a header with room for events).
    pub(crate) fn max_input_len(&self) -> usize {
        (self.limits.max_frame.saturating_sub(wire::HEADER_ROOM) / 8).saturating_sub(1)
    }

    pub(crate) fn take_events(&self) -> Vec<PeerEvent> {
        self.state().events.drain(..).collect()
    }

    fn report(state: &mut State, event: PeerEvent) {
        if state.events.len() == MAX_EVENTS {
            state.events.pop_front();
        }
        state.events.push_back(event);
    }

    /// Queues a frame for member `to`, opening the link if needed. Never
    /// waits: frames for departed members, and frames beyond a full queue
    /// (a member that does not read, soon cut off), are dropped.
    pub(crate) fn send(self: &Arc<Self>, to: usize, frame: Arc<[u8]>) {
        if let Some(queue) = self.link(to, None) {
            #[cfg(feature = "testing")]
            for _ in 1..self.copies.load(Ordering::Relaxed) {
                let _ = queue.try_send(Arc::clone(&frame));
            }
            let _ = queue.try_send(frame);
        }
    }

    /// Opens the links to `peers` now and waits until every stream is up.
    ///
    /// # Errors
    /// A link that could not be opened, or a member lost meanwhile, within
    /// `timeout` (the job cannot form without it).
    pub(crate) async fn connect(
        self: &Arc<Self>,
        peers: &[usize],
        timeout: Duration,
    ) -> Result<(), String> {
        for &p in peers {
            self.link(p, None);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let missing: Vec<usize> = {
                let state = self.state();
                for &p in peers {
                    if let Some(reason) = state.unlinked.get(&p) {
                        return Err(format!("rank {}: no link to rank {p}: {reason}", self.rank));
                    }
                    if state.departed.contains_key(&p) || state.probing.contains(&p) {
                        return Err(format!("rank {}: rank {p} was lost", self.rank));
                    }
                }
                peers
                    .iter()
                    .copied()
                    .filter(|p| !state.links.get(p).is_some_and(|l| l.connected))
                    .collect()
            };
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let whom = match missing.as_slice() {
                    [one] => format!("rank {one}"),
                    many => format!("ranks {many:?}"),
                };
                return Err(format!(
                    "rank {}: no link to {whom} after {:.1} s",
                    self.rank,
                    timeout.as_secs_f64()
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The send queue of the link to `to`, created (with its writer task)
    /// if needed; `stream` is an inbound stream from `to`.
    fn link(
        self: &Arc<Self>,
        to: usize,
        stream: Option<Stream>,
    ) -> Option<mpsc::Sender<Arc<[u8]>>> {
        if to == self.rank || to >= self.members() {
            return None;
        }
        let mut state = self.state();
        if state.departed.contains_key(&to) || state.probing.contains(&to) || state.stopped {
            return None;
        }
        if let Some(link) = state.links.get_mut(&to) {
            let queue = link.queue.clone();
            if let Some(stream) = stream {
                match link.pending.take() {
                    Some(slot) => {
                        let _ = slot.send(stream);
                    }
                    None => {
                        let peer = self.peer(to).map(|p| p.to_string()).unwrap_or_default();
                        Node::report(
                            &mut state,
                            PeerEvent::Refused {
                                peer,
                                reason: format!("rank {to} opened a second data stream"),
                            },
                        );
                    }
                }
            }
            return Some(queue);
        }
        let (queue, rx) = mpsc::channel(self.limits.queue_depth);
        let (opener, pending) = match stream {
            Some(stream) => (link::Opener::Ready(stream), None),
            None if Neighbourhood::dials(self.rank, to) => (link::Opener::Dial, None),
            None => {
                let (slot, wait) = oneshot::channel();
                (link::Opener::Wait(wait), Some(slot))
            }
        };
        let live = Arc::new(Liveness::new(self.born));
        state.links.insert(
            to,
            Link {
                queue: queue.clone(),
                pending,
                connected: false,
                live: Arc::clone(&live),
                reader: None,
                permits: Arc::new(Semaphore::new(FRAMES_IN_FLIGHT)),
            },
        );
        let task = tokio::spawn(Arc::clone(self).run_link(to, opener, rx, live));
        state.tasks.push(task);
        Some(queue)
    }

    /// Takes an inbound data stream.
    pub(crate) fn accept(self: &Arc<Self>, peer: PeerId, stream: Stream) {
        match self.rank_of(&peer) {
            Some(rank) if !Neighbourhood::dials(self.rank, rank) => {
                tokio::spawn(Arc::clone(self).welcome(rank, stream));
            }
            found => {
                let reason = match found {
                    Some(rank) => format!("rank {rank} opened a stream it should wait for"),
                    None => "not a member of this job".to_string(),
                };
                self.refuse(peer, reason);
            }
        }
    }

    fn refuse(&self, peer: PeerId, reason: String) {
        Node::report(
            &mut self.state(),
            PeerEvent::Refused {
                peer: peer.to_string(),
                reason,
            },
        );
    }

    /// The last connection to `peer` closed.
    ///
    /// A link's reader reports its own end, after the frames and words
    /// before it (a goodbye, or our exclusion, may be among them); the
    /// member is probed only if the reader has not done so within a short
    /// grace (a closed connection does not always wake a stream's reader).
    pub(crate) fn connection_closed(self: &Arc<Self>, peer: PeerId) {
        let Some(rank) = self.rank_of(&peer) else {
            return;
        };
        let reading = self
            .state()
            .links
            .get(&rank)
            .filter(|l| l.connected)
            .map(|l| Arc::clone(&l.live));
        let Some(live) = reading else {
            return self.broken(rank, "its connection closed".to_string());
        };
        let node = Arc::clone(self);
        let grace = self.limits.interval().min(Duration::from_millis(250));
        let task = tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let same = node
                .state()
                .links
                .get(&rank)
                .is_some_and(|l| Arc::ptr_eq(&l.live, &live));
            if same {
                node.broken(rank, "its connection closed".to_string());
            }
        });
        self.state().tasks.push(task);
    }

    /// Closes the link to `rank` (see [`shut`]); a member cut off loses its
    /// connection within `peer_timeout` + 1 s even if its writer is stuck
    /// writing to it (it does not read).
    fn shut(&self, rank: usize, link: Link, fence: bool) {
        shut(link, fence);
        if fence {
            let commands = self.commands.clone();
            let Some(peer) = self.peer(rank) else { return };
            let grace = self.limits.deadline(0) + Duration::from_secs(1);
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                let _ = commands.send(SwarmCommand::Disconnect { peer });
            });
        }
    }

    /// Whether a refused connection may be taken as proof that a member is
    /// gone. Not while this member is, or just was, stalled itself (its
    /// watchdog overdue, or woken late within the last `peer_timeout`): a
    /// member that went on without us and then ended looks the same, and we
    /// could not have seen it cut us off.
    fn trusts_refusals(&self) -> bool {
        let now = self.now_ms();
        let interval = self.limits.interval().as_millis() as u64;
        let stall = (self.limits.peer_timeout / 2).as_millis() as u64;
        let last = self.watched.load(Ordering::Relaxed);
        now.saturating_sub(last) <= interval + stall.max(interval)
            && now >= self.stalled_until.load(Ordering::Relaxed)
    }

    /// Records a departure (once), reports it and tells the session; the
    /// link, if any, is shut (`fence`: with a word that the member was
    /// excluded). Returns false if the member had departed already.
    fn decide(&self, rank: usize, proven: bool, event: PeerEvent, fence: bool) -> bool {
        self.decide_finished(rank, proven, 0, event, fence)
    }

    /// [`Node::decide`] for a member that said it finished reduction
    /// `finished` before it left.
    fn decide_finished(
        &self,
        rank: usize,
        proven: bool,
        finished: u64,
        event: PeerEvent,
        fence: bool,
    ) -> bool {
        let link = {
            let mut state = self.state();
            if state.departed.contains_key(&rank) {
                return false;
            }
            state.departed.insert(rank, proven);
            state.probing.remove(&rank);
            Node::report(&mut state, event);
            state.links.remove(&rank)
        };
        let _ = self.verdicts.send(Verdict::Departed {
            rank,
            proven,
            finished,
        });
        if let Some(link) = link {
            self.shut(rank, link, fence);
        }
        true
    }

    /// Cuts member `rank` off: it is told it was excluded, its connection
    /// is closed, and it counts as departed (not proven gone).
    pub(crate) fn cut_off(&self, rank: usize, cut: Cut, reason: String) {
        let event = match cut {
            Cut::Misbehaved => PeerEvent::Misbehaved {
                rank,
                reason: reason.clone(),
            },
            Cut::Silent => PeerEvent::Departed {
                rank,
                reason: reason.clone(),
                proven: false,
            },
        };
        if self.decide(rank, false, event, true) && cut == Cut::Misbehaved {
            // The misbehaviour is reported above; the departure too.
            Node::report(
                &mut self.state(),
                PeerEvent::Departed {
                    rank,
                    reason: format!("disconnected: {reason}"),
                    proven: false,
                },
            );
        }
    }

    /// The session learned that member `rank` departed (from another
    /// member's report): cut its link if there is one. `proven` members
    /// are not fenced (they are gone).
    pub(crate) fn departed_elsewhere(&self, rank: usize, proven: bool) {
        let link = {
            let mut state = self.state();
            if state.departed.contains_key(&rank) {
                return;
            }
            state.departed.insert(rank, proven);
            state.probing.remove(&rank);
            let reason = if proven {
                "another member found it gone".to_string()
            } else {
                "another member lost contact with it or cut it off".to_string()
            };
            Node::report(
                &mut state,
                PeerEvent::Departed {
                    rank,
                    reason,
                    proven,
                },
            );
            state.links.remove(&rank)
        };
        if let Some(link) = link {
            self.shut(rank, link, !proven);
        }
    }

    /// The link to `rank` ended without a word: probe the member to learn
    /// whether it is gone, cut us off, or lost only the link.
    pub(crate) fn broken(self: &Arc<Self>, rank: usize, reason: String) {
        let link = {
            let mut state = self.state();
            if state.stopped || state.departed.contains_key(&rank) || !state.probing.insert(rank) {
                return;
            }
            state.links.remove(&rank)
        };
        if let Some(link) = link {
            shut(link, false);
        }
        let task = tokio::spawn(Arc::clone(self).probe(rank, reason));
        self.state().tasks.push(task);
    }

    /// A member said goodbye on its link, after it finished reduction
    /// `finished`: it is gone.
    fn left(&self, rank: usize, finished: u64) {
        let event = PeerEvent::Departed {
            rank,
            reason: "it left the job".to_string(),
            proven: true,
        };
        self.decide_finished(rank, true, finished, event, false);
    }

    /// Member `by` told us that we were excluded.
    fn fenced(&self, by: usize) {
        let _ = self.verdicts.send(Verdict::Fenced { by });
    }

    /// The comm failed for good or is closing: from now on probes are
    /// answered "leaving" and ended links are not probed.
    pub(crate) fn stop(&self) {
        self.state().stopped = true;
    }

    /// Says goodbye on every link (naming `finished`, the last reduction
    /// this member finished with a result) and closes it after its queued
    /// frames are written, then waits (at most `grace`) until every peer
    /// has read them (it closes its side in answer).
    pub(crate) async fn close(&self, grace: Duration, finished: u64) {
        let goodbye: Arc<[u8]> = Control::Leaving { finished }.encode().into();
        let tasks = {
            let mut state = self.state();
            state.stopped = true;
            for (_, link) in state.links.drain() {
                let _ = link.queue.try_send(Arc::clone(&goodbye));
            }
            std::mem::take(&mut state.tasks)
        };
        let _ = tokio::time::timeout(grace, futures::future::join_all(tasks)).await;
    }

    /// Writes raw bytes on the link to `to` (tests of the frame checks).
    #[cfg(feature = "testing")]
    pub(crate) fn send_raw(self: &Arc<Self>, to: usize, bytes: Vec<u8>) {
        self.send(to, bytes.into());
    }

    /// Queues `frame` `copies` times for `to`, waiting for room in the
    /// queue (tests of floods).
    #[cfg(feature = "testing")]
    pub(crate) async fn send_waiting(self: &Arc<Self>, to: usize, frame: Arc<[u8]>, copies: usize) {
        if let Some(queue) = self.link(to, None) {
            for _ in 0..copies {
                if queue.send(Arc::clone(&frame)).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Every frame sent from now on goes out `copies` times (tests of
    /// floods).
    #[cfg(feature = "testing")]
    pub(crate) fn set_copies(&self, copies: usize) {
        self.copies.store(copies, Ordering::Relaxed);
    }

    /// The frame limit.
    #[cfg(feature = "testing")]
    pub(crate) fn max_frame(&self) -> usize {
        self.limits.max_frame
    }
}

/// Closes a link: its reader stops at once, its writer after writing what
/// is queued (with `fence`, a last word that the peer was excluded, after
/// which the connection is closed).
fn shut(link: Link, fence: bool) {
    if let Some(reader) = &link.reader {
        reader.abort();
    }
    if fence {
        // The writer says so after what is queued, however full the queue.
        link.live.cut.store(true, Ordering::Relaxed);
    }
    // Dropping the last queue sender ends the writer once it is drained.
}
