//! A member's links: one long-lived stream per neighbour, a bounded send
//! queue and a writer task per link, a reader task that checks every frame,
//! and the failure detector that turns a lost link into a departure.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::topology::Neighbourhood;
use crate::transport::SwarmCommand;
use crate::wire::{self, Frame, ReadError};

/// The data-plane protocol: one stream per neighbour pair.
pub(crate) const DATA_PROTOCOL: StreamProtocol = StreamProtocol::new("/dac/data/1");

/// Events kept for [`crate::Comm::take_events`] (oldest dropped first).
const MAX_EVENTS: usize = 1024;

/// Something that happened to a peer, reported to the program.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerEvent {
    /// A member is gone (its connection closed or failed, or it stopped
    /// answering pings within `peer_timeout`); the reductions go on without
    /// it.
    Departed {
        /// Its rank.
        rank: usize,
        /// What the failure detector saw.
        reason: String,
    },
    /// A member sent a frame that is not valid (malformed, oversized, for
    /// another job, or violating the protocol): its connection was closed
    /// and it is treated as departed.
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

/// What reader tasks and the failure detector hand to the reduction driver.
#[derive(Debug)]
pub(crate) enum Inbound {
    Frame { from: usize, frame: Frame },
    Departed { rank: usize },
}

/// The sending side of one link.
#[derive(Debug)]
struct Link {
    queue: mpsc::Sender<Arc<[u8]>>,
    /// Waiting for the peer to open the stream (we are the higher rank).
    pending: Option<oneshot::Sender<Stream>>,
    /// The stream is up (its reader reports its end).
    connected: bool,
}

#[derive(Debug, Default)]
struct State {
    links: HashMap<usize, Link>,
    departed: BTreeSet<usize>,
    events: VecDeque<PeerEvent>,
    tasks: Vec<JoinHandle<()>>,
}

/// Limits and timeouts of the data plane.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Largest frame body accepted from a peer.
    pub(crate) max_frame: usize,
    /// Frames queued per link before a sender waits.
    pub(crate) queue_depth: usize,
    /// Bound on opening a link (and on forming the job).
    pub(crate) connect_timeout: Duration,
}

/// One member's view of the job's network.
pub(crate) struct Node {
    pub(crate) rank: usize,
    pub(crate) job: u64,
    pub(crate) members: Vec<PeerId>,
    rank_of: HashMap<PeerId, usize>,
    control: libp2p_stream::Control,
    commands: mpsc::UnboundedSender<SwarmCommand>,
    inbox: mpsc::Sender<Inbound>,
    limits: Limits,
    state: Mutex<State>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("rank", &self.rank)
            .field("job", &format_args!("{:016x}", self.job))
            .field("members", &self.members.len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Node {
    pub(crate) fn new(
        rank: usize,
        job: u64,
        members: Vec<PeerId>,
        control: libp2p_stream::Control,
        commands: mpsc::UnboundedSender<SwarmCommand>,
        inbox: mpsc::Sender<Inbound>,
        limits: Limits,
    ) -> Arc<Node> {
        let rank_of = members.iter().enumerate().map(|(r, p)| (*p, r)).collect();
        Arc::new(Node {
            rank,
            job,
            members,
            rank_of,
            control,
            commands,
            inbox,
            limits,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-updated
        // in a way that matters more than stopping would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Members known to have departed, in rank order.
    /// The longest input whose messages fit in a frame (the payload is the
    /// mass and its weight, after a header with room for events).
    pub(crate) fn max_input_len(&self) -> usize {
        (self.limits.max_frame.saturating_sub(wire::HEADER_ROOM) / 8).saturating_sub(1)
    }

    pub(crate) fn departed(&self) -> Vec<usize> {
        self.state().departed.iter().copied().collect()
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

    /// Queues a frame for member `to` (opening the link if needed). Frames
    /// for departed members are dropped.
    pub(crate) async fn send(self: &Arc<Self>, to: usize, frame: Arc<[u8]>) {
        let Some(queue) = self.link(to, None) else {
            return;
        };
        // A closed queue means the link just failed; the departure is on
        // its way to the driver.
        let _ = queue.send(frame).await;
    }

    /// Opens the links to `peers` now and waits until every stream is up.
    pub(crate) async fn connect(self: &Arc<Self>, peers: &[usize]) -> Result<(), String> {
        for &p in peers {
            self.link(p, None);
        }
        let deadline = tokio::time::Instant::now() + self.limits.connect_timeout;
        loop {
            let missing: Vec<usize> = {
                let state = self.state();
                peers
                    .iter()
                    .copied()
                    .filter(|p| {
                        !state.departed.contains(p)
                            && !state.links.get(p).is_some_and(|l| l.connected)
                    })
                    .collect()
            };
            if missing.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "rank {}: no link to rank(s) {missing:?} after {:.1} s",
                    self.rank,
                    self.limits.connect_timeout.as_secs_f64()
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
        if to == self.rank || to >= self.members.len() {
            return None;
        }
        let mut state = self.state();
        if state.departed.contains(&to) {
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
                        let peer = self.members[to].to_string();
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
            Some(stream) => (Opener::Ready(stream), None),
            None if Neighbourhood::dials(self.rank, to) => (Opener::Dial, None),
            None => {
                let (slot, wait) = oneshot::channel();
                (Opener::Wait(wait), Some(slot))
            }
        };
        state.links.insert(
            to,
            Link {
                queue: queue.clone(),
                pending,
                connected: false,
            },
        );
        let task = tokio::spawn(Arc::clone(self).run_link(to, opener, rx));
        state.tasks.push(task);
        Some(queue)
    }

    /// Takes an inbound data stream.
    pub(crate) fn accept(self: &Arc<Self>, peer: PeerId, stream: Stream) {
        match self.rank_of.get(&peer) {
            Some(&rank) if !Neighbourhood::dials(self.rank, rank) => {
                tokio::spawn(Arc::clone(self).welcome(rank, stream));
            }
            found => {
                let reason = match found {
                    Some(rank) => format!("rank {rank} opened a stream it should wait for"),
                    None => "not a member of this job".to_string(),
                };
                Node::report(
                    &mut self.state(),
                    PeerEvent::Refused {
                        peer: peer.to_string(),
                        reason,
                    },
                );
            }
        }
    }

    /// The last connection to `peer` closed.
    pub(crate) async fn connection_closed(self: &Arc<Self>, peer: PeerId) {
        let Some(&rank) = self.rank_of.get(&peer) else {
            return;
        };
        // A link's reader reports its own end, after the frames before it.
        let has_reader = self.state().links.get(&rank).is_some_and(|l| l.connected);
        if !has_reader {
            self.lost(rank, "its connection closed".to_string()).await;
        }
    }

    /// Declares `rank` departed (once) and tells the driver.
    pub(crate) async fn lost(&self, rank: usize, reason: String) {
        {
            let mut state = self.state();
            if !state.departed.insert(rank) {
                return;
            }
            state.links.remove(&rank);
            Node::report(&mut state, PeerEvent::Departed { rank, reason });
        }
        let _ = self.inbox.send(Inbound::Departed { rank }).await;
    }

    /// A member broke the protocol: report it, cut it off, and treat it as
    /// departed.
    pub(crate) async fn misbehaved(&self, rank: usize, reason: String) {
        Node::report(
            &mut self.state(),
            PeerEvent::Misbehaved {
                rank,
                reason: reason.clone(),
            },
        );
        let _ = self.commands.send(SwarmCommand::Disconnect {
            peer: self.members[rank],
        });
        self.lost(rank, format!("disconnected: {reason}")).await;
    }

    /// Closes every link after its queued frames are written, then waits
    /// (at most `grace`) until every peer has read them (it closes its side
    /// in answer).
    pub(crate) async fn close(&self, grace: Duration) {
        let tasks = {
            let mut state = self.state();
            state.links.clear();
            std::mem::take(&mut state.tasks)
        };
        let _ = tokio::time::timeout(grace, futures::future::join_all(tasks)).await;
    }

    /// A link's writer: gets the stream, starts its reader, then writes
    /// queued frames until the queue closes.
    async fn run_link(
        self: Arc<Self>,
        to: usize,
        opener: Opener,
        mut queue: mpsc::Receiver<Arc<[u8]>>,
    ) {
        let stream = match opener {
            Opener::Ready(stream) => stream,
            Opener::Wait(wait) => match wait.await {
                Ok(stream) => stream,
                Err(_) => return, // the link was dropped first
            },
            Opener::Dial => {
                let open = self.open(to);
                match tokio::time::timeout(self.limits.connect_timeout, open).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => return self.lost(to, e).await,
                    Err(_) => return self.lost(to, "timed out opening a stream".into()).await,
                }
            }
        };
        if let Some(link) = self.state().links.get_mut(&to) {
            link.connected = true;
        }
        let (read, mut write) = stream.split();
        let reader = tokio::spawn(Arc::clone(&self).read_link(to, read));
        while let Some(frame) = queue.recv().await {
            let mut result = write.write_all(&frame).await;
            // Write whatever else is queued before flushing once.
            while result.is_ok() {
                match queue.try_recv() {
                    Ok(frame) => result = write.write_all(&frame).await,
                    Err(_) => break,
                }
            }
            if let Err(e) = result.and(write.flush().await) {
                self.lost(to, format!("stream failed: {e}")).await;
                break;
            }
        }
        // Closing our half tells the peer we are done; it closes its half
        // once its reader has taken in everything before our close, which
        // ends our reader. Waiting for that makes a clean shutdown deliver
        // a member's final messages.
        let _ = write.close().await;
        let _ = reader.await;
    }

    /// Connects to member `to` and opens the data stream, retrying until
    /// the peer acknowledges it (libp2p drops an inbound stream that
    /// arrives while the acceptor is busy with another one).
    async fn open(&self, to: usize) -> Result<Stream, String> {
        let peer = self.members[to];
        loop {
            let (reply, connected) = oneshot::channel();
            let _ = self.commands.send(SwarmCommand::Connect { peer, reply });
            let attempt = match connected.await {
                Ok(Ok(())) => {
                    let mut control = self.control.clone();
                    match control.open_stream(peer, DATA_PROTOCOL).await {
                        Ok(stream) => self.greet(stream).await,
                        Err(e) => Err(format!("cannot open a stream: {e}")),
                    }
                }
                Ok(Err(e)) => return Err(format!("cannot connect: {e}")),
                Err(_) => return Err("the network task has stopped".into()),
            };
            match attempt {
                Ok(stream) => return Ok(stream),
                // The caller's timeout bounds the retries.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Opener's side of the stream handshake: our job id out, the same
    /// back.
    async fn greet(&self, mut stream: Stream) -> Result<Stream, String> {
        let hello = self.job.to_le_bytes();
        stream.write_all(&hello).await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let mut answer = [0u8; 8];
        stream
            .read_exact(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        if answer != hello {
            return Err("the peer answered with another job id".into());
        }
        Ok(stream)
    }

    /// Acceptor's side of the stream handshake, then hands the stream to
    /// its link.
    async fn welcome(self: Arc<Self>, rank: usize, mut stream: Stream) {
        let mut hello = [0u8; 8];
        let read = tokio::time::timeout(self.limits.connect_timeout, stream.read_exact(&mut hello));
        if !matches!(read.await, Ok(Ok(()))) {
            return; // the opener gave up on this stream; it retries
        }
        if u64::from_le_bytes(hello) != self.job {
            let reason = format!("opened a stream for job {:016x}", u64::from_le_bytes(hello));
            return self.misbehaved(rank, reason).await;
        }
        if stream.write_all(&hello).await.is_ok() && stream.flush().await.is_ok() {
            self.link(rank, Some(stream));
        }
    }

    /// A link's reader: checks every frame, hands good ones to the driver,
    /// and cuts off a peer that sends a bad one.
    async fn read_link(self: Arc<Self>, from: usize, mut read: futures::io::ReadHalf<Stream>) {
        let mut buf = Vec::new();
        loop {
            match wire::read_frame(&mut read, self.limits.max_frame, self.job, &mut buf).await {
                Ok(Some(frame)) => {
                    if self
                        .inbox
                        .send(Inbound::Frame { from, frame })
                        .await
                        .is_err()
                    {
                        return; // the comm is gone
                    }
                }
                Ok(None) => return self.lost(from, "closed its stream".into()).await,
                Err(ReadError::Io(e)) => {
                    return self.lost(from, format!("stream failed: {e}")).await;
                }
                Err(ReadError::Frame(e)) => return self.misbehaved(from, e.to_string()).await,
            }
        }
    }

    /// Writes raw bytes on the link to `to` (tests of the frame checks).
    pub(crate) async fn send_raw(self: &Arc<Self>, to: usize, bytes: Vec<u8>) {
        self.send(to, bytes.into()).await;
    }
}

/// How a link gets its stream.
enum Opener {
    /// We are the lower rank: open it.
    Dial,
    /// We are the higher rank: wait for the peer to open it.
    Wait(oneshot::Receiver<Stream>),
    /// The peer opened it before we needed it.
    Ready(Stream),
}
