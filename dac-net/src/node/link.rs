//! One link: opening its stream, the writer (frames, heartbeats, write
//! deadlines) and the reader (frame checks, signs of life, backpressure).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::Stream;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{Cut, DATA_PROTOCOL, Inbound, Liveness, Node, PeerEvent};
use crate::transport::{DialFailure, Listening, SwarmCommand, listening};
use crate::wire::{self, Body, Control, Incoming, ReadError};

/// How a link gets its stream.
pub(super) enum Opener {
    /// We are the lower rank: open it.
    Dial,
    /// We are the higher rank: wait for the peer to open it.
    Wait(oneshot::Receiver<Stream>),
    /// The peer opened it before we needed it.
    Ready(Stream),
}

/// Why a data stream could not be opened.
enum OpenError {
    /// The member holds us departed.
    Fenced,
    /// The member's process is gone.
    Gone(String),
    /// Anything else.
    Failed(String),
}

impl Node {
    /// A link's writer: gets the stream, starts its reader, then writes
    /// queued frames (a heartbeat when the link has been quiet for an
    /// interval) until the queue closes.
    pub(super) async fn run_link(
        self: Arc<Self>,
        to: usize,
        opener: Opener,
        mut queue: mpsc::Receiver<Arc<[u8]>>,
        live: Arc<Liveness>,
    ) {
        let stream = match opener {
            Opener::Ready(stream) => stream,
            Opener::Wait(wait) => match wait.await {
                Ok(stream) => stream,
                Err(_) => return, // the link was dropped first
            },
            Opener::Dial => {
                match tokio::time::timeout(self.limits.connect_timeout, self.open(to)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(OpenError::Fenced)) => return self.fenced(to),
                    Ok(Err(OpenError::Gone(e))) => return self.unlinkable(to, true, e),
                    Ok(Err(OpenError::Failed(e))) => return self.unlinkable(to, false, e),
                    Err(_) => {
                        let reason = format!(
                            "no stream could be opened within {:.1} s",
                            self.limits.connect_timeout.as_secs_f64()
                        );
                        return self.unlinkable(to, false, reason);
                    }
                }
            }
        };
        let (read, mut write) = stream.split();
        let reader = {
            let mut state = self.state();
            // The link may have been dropped while the stream was opened.
            let Some(link) = state
                .links
                .get_mut(&to)
                .filter(|l| Arc::ptr_eq(&l.live, &live))
            else {
                return;
            };
            live.restart();
            link.connected = true;
            let permits = Arc::clone(&link.permits);
            let reader =
                tokio::spawn(Arc::clone(&self).read_link(to, read, Arc::clone(&live), permits));
            link.reader = Some(reader.abort_handle());
            reader
        };
        // Heartbeats come through the queue too (the watchdog sends them),
        // and the watchdog enforces the write deadlines: no timer per frame.
        while let Some(first) = queue.recv().await {
            if let Err(e) = self.write_batch(&mut write, &mut queue, first, &live).await {
                self.broken(to, format!("its stream failed: {e}"));
                break;
            }
        }
        if live.cut.load(Ordering::Relaxed) {
            // The last word to a member we cut off: it was excluded (the
            // connection closes soon whatever this write does).
            let fence = Control::Fenced.encode();
            let _ = self
                .write_batch(&mut write, &mut queue, fence.into(), &live)
                .await;
        }
        let closing = tokio::time::timeout(self.limits.peer_timeout, write.close());
        let _ = closing.await;
        if live.cut.load(Ordering::Relaxed) {
            reader.abort();
            if let Some(peer) = self.peer(to) {
                let _ = self.commands.send(SwarmCommand::Disconnect { peer });
            }
            return;
        }
        // The peer closes its half once its reader has taken in everything
        // before our close, which ends our reader: waiting for that makes a
        // clean shutdown deliver a member's final messages.
        let _ = tokio::time::timeout(self.limits.peer_timeout, reader).await;
    }

    /// Writes `first` and whatever else is queued, then flushes, telling
    /// `live` what is being written (the watchdog holds each write to its
    /// deadline).
    async fn write_batch(
        &self,
        write: &mut WriteHalf<Stream>,
        queue: &mut mpsc::Receiver<Arc<[u8]>>,
        first: Arc<[u8]>,
        live: &Liveness,
    ) -> std::io::Result<()> {
        live.writing(first.len());
        write.write_all(&first).await?;
        while let Ok(frame) = queue.try_recv() {
            live.writing(frame.len());
            write.write_all(&frame).await?;
        }
        live.writing(0);
        write.flush().await?;
        live.wrote();
        Ok(())
    }

    /// The link to `to` could not be opened: the member is gone
    /// (`proven`), or out of reach.
    fn unlinkable(&self, to: usize, proven: bool, reason: String) {
        let proven = proven && self.trusts_refusals();
        self.state().unlinked.insert(to, reason.clone());
        let event = PeerEvent::Departed {
            rank: to,
            reason: format!("no link could be opened: {reason}"),
            proven,
        };
        self.decide(to, proven, event, !proven);
    }

    /// Connects to member `to` and opens the data stream, retrying until
    /// the peer acknowledges it (libp2p drops an inbound stream that
    /// arrives while the acceptor is busy with another one). The caller's
    /// timeout bounds the retries.
    async fn open(&self, to: usize) -> Result<Stream, OpenError> {
        let Some(peer) = self.peer(to) else {
            return Err(OpenError::Failed(format!("rank {to} is no member")));
        };
        loop {
            let (reply, connected) = oneshot::channel();
            let _ = self.commands.send(SwarmCommand::Connect { peer, reply });
            match connected.await {
                Ok(Ok(())) => {
                    let mut control = self.control.clone();
                    if let Ok(stream) = control.open_stream(peer, DATA_PROTOCOL).await {
                        match self.greet(stream).await {
                            Ok(stream) => return Ok(stream),
                            Err(Greeting::Fenced) => return Err(OpenError::Fenced),
                            Err(Greeting::Failed) => {}
                        }
                    }
                }
                Ok(Err(DialFailure::Gone(e))) => return Err(OpenError::Gone(e)),
                // Another key at a member's address: not the member.
                Ok(Err(refused @ DialFailure::Refused { .. })) => {
                    return Err(OpenError::Failed(refused.to_string()));
                }
                Ok(Err(DialFailure::Other(_))) => {
                    let timeout = self.limits.peer_timeout;
                    if listening(&self.addrs_of(to), timeout).await == Listening::Refused {
                        let why = "its address refuses connections: its process has ended";
                        return Err(OpenError::Gone(why.into()));
                    }
                }
                Err(_) => return Err(OpenError::Failed("the network task has stopped".into())),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Opener's side of the stream handshake: our job id out, the same
    /// back (or its complement: the peer holds us departed).
    async fn greet(&self, mut stream: Stream) -> Result<Stream, Greeting> {
        let hello = self.job.to_le_bytes();
        let exchange = async {
            stream.write_all(&hello).await?;
            stream.flush().await?;
            let mut answer = [0u8; 8];
            stream.read_exact(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        match tokio::time::timeout(self.limits.peer_timeout, exchange).await {
            Ok(Ok(answer)) if answer == hello => Ok(stream),
            Ok(Ok(answer)) if answer == (!self.job).to_le_bytes() => Err(Greeting::Fenced),
            _ => Err(Greeting::Failed),
        }
    }

    /// Acceptor's side of the stream handshake, then hands the stream to
    /// its link (or, for a member we hold departed, tells it so).
    pub(super) async fn welcome(self: Arc<Self>, rank: usize, mut stream: Stream) {
        let mut hello = [0u8; 8];
        let read = tokio::time::timeout(self.limits.peer_timeout, stream.read_exact(&mut hello));
        if !matches!(read.await, Ok(Ok(()))) {
            return; // the opener gave up on this stream; it retries
        }
        if u64::from_le_bytes(hello) != self.job {
            let reason = format!("opened a stream for job {:016x}", u64::from_le_bytes(hello));
            return self.cut_off(rank, Cut::Misbehaved, reason);
        }
        let fenced = self.state().departed.get(&rank) == Some(&false);
        let answer = if fenced { !self.job } else { self.job };
        if stream.write_all(&answer.to_le_bytes()).await.is_ok()
            && stream.flush().await.is_ok()
            && !fenced
        {
            self.link(rank, Some(stream));
        }
    }

    /// A link's reader: checks every frame, hands good ones to the session
    /// (at most a few waiting at a time), and cuts off a peer that sends a
    /// bad one.
    pub(super) async fn read_link(
        self: Arc<Self>,
        from: usize,
        mut read: ReadHalf<Stream>,
        live: Arc<Liveness>,
        permits: Arc<Semaphore>,
    ) {
        let mut buf = Vec::new();
        let limits = (self.limits.max_frame, self.job);
        loop {
            let next = wire::read_incoming(&mut read, limits, &mut buf, &*live).await;
            match next {
                Ok(Incoming::Heartbeat) => {}
                Ok(Incoming::Body(Body::Frame(frame))) => {
                    let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                        return;
                    };
                    let inbound = Inbound {
                        from,
                        frame,
                        _permit: permit,
                    };
                    if self.inbox.send(inbound).await.is_err() {
                        return; // the comm is gone
                    }
                }
                Ok(Incoming::Body(Body::Control(Control::Leaving { finished }))) => {
                    return self.left(from, finished);
                }
                Ok(Incoming::Body(Body::Control(Control::Fenced))) => return self.fenced(from),
                Ok(Incoming::End) => return self.broken(from, "it closed its stream".into()),
                Err(ReadError::Io(e)) => {
                    return self.broken(from, format!("its stream failed: {e}"));
                }
                Err(ReadError::Frame(e)) => {
                    return self.cut_off(from, Cut::Misbehaved, e.to_string());
                }
            }
        }
    }
}

/// How the stream handshake went, when it did not succeed.
enum Greeting {
    /// The peer holds us departed.
    Fenced,
    Failed,
}
