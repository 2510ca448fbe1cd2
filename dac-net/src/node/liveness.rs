//! Signs of life and deadlines, kept by a link's reader and writer in
//! atomics and enforced by one watchdog per member, so that no frame costs
//! a timer: silence, a frame that does not arrive in time, a write the
//! peer does not take, and the heartbeats of quiet links.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use tokio::time::Instant;

use super::{Cut, Node};
use crate::transport::SwarmCommand;
use crate::wire::{self, FrameError, LinkWatch};

/// "No write under way".
const IDLE: u64 = u64::MAX;

/// A link's signs of life and the progress of its frames.
#[derive(Debug)]
pub(super) struct Liveness {
    /// The node's clock origin.
    born: Instant,
    /// When a byte last arrived, in milliseconds since `born`.
    heard: AtomicU64,
    /// The reader is inside a frame.
    mid_frame: AtomicBool,
    /// The body being read: when it began, its length (0: none) and how
    /// much of it has arrived.
    body_at: AtomicU64,
    body_len: AtomicUsize,
    body_got: AtomicUsize,
    /// The write under way: when it began ([`IDLE`]: none) and its length.
    write_at: AtomicU64,
    write_len: AtomicUsize,
    /// When the writer last finished a write: a link quiet for an interval
    /// gets a heartbeat.
    written: AtomicU64,
    /// The member was cut off: the writer says so last, then closes the
    /// connection.
    pub(super) cut: AtomicBool,
}

impl Liveness {
    pub(super) fn new(born: Instant) -> Liveness {
        let now = born.elapsed().as_millis() as u64;
        Liveness {
            born,
            heard: AtomicU64::new(now),
            mid_frame: AtomicBool::new(false),
            body_at: AtomicU64::new(0),
            body_len: AtomicUsize::new(0),
            body_got: AtomicUsize::new(0),
            write_at: AtomicU64::new(IDLE),
            write_len: AtomicUsize::new(0),
            written: AtomicU64::new(now),
            cut: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// The link is up: its clocks start now.
    pub(super) fn restart(&self) {
        let now = self.now_ms();
        self.heard.store(now, Ordering::Relaxed);
        self.written.store(now, Ordering::Relaxed);
    }

    /// A write of `len` bytes begins.
    pub(super) fn writing(&self, len: usize) {
        self.write_len.store(len, Ordering::Relaxed);
        self.write_at.store(self.now_ms(), Ordering::Relaxed);
    }

    /// The write finished.
    pub(super) fn wrote(&self) {
        self.write_at.store(IDLE, Ordering::Relaxed);
        self.written.store(self.now_ms(), Ordering::Relaxed);
    }
}

impl LinkWatch for Liveness {
    fn heard(&self, mid_frame: bool) {
        self.heard.store(self.now_ms(), Ordering::Relaxed);
        self.mid_frame.store(mid_frame, Ordering::Relaxed);
    }

    fn body(&self, got: usize, len: usize) {
        if got == 0 {
            self.body_at.store(self.now_ms(), Ordering::Relaxed);
        }
        self.body_got.store(got, Ordering::Relaxed);
        self.body_len
            .store(if got < len { len } else { 0 }, Ordering::Relaxed);
    }
}

/// What the watchdog found wrong with a link.
enum Fault {
    /// Nothing arrived for `quiet` ms (`mid_frame`: inside a frame).
    Silent { quiet: u64, mid_frame: bool },
    /// A frame's body missed its deadline.
    Stalled(FrameError),
    /// A write of `len` bytes was not taken within `seconds`.
    NotReading { len: usize, seconds: f64 },
}

impl Node {
    /// The failure detector: every interval it suspects each neighbour from
    /// which nothing arrived for `peer_timeout` (one that stalls inside a
    /// frame, or whose frame misses its deadline, misbehaves), cuts off one
    /// that does not take what we write in time, and queues a heartbeat on
    /// each link that has been quiet for an interval. A watchdog that wakes
    /// late by more than half the timeout was stalled itself (a frozen or
    /// starved process): it restarts the neighbours' clocks rather than
    /// blame them for its own absence.
    pub(crate) async fn watch(self: Arc<Self>) {
        let interval = self.limits.interval();
        let interval_ms = interval.as_millis() as u64;
        let timeout = self.limits.peer_timeout;
        let timeout_ms = timeout.as_millis() as u64;
        let stall = (timeout / 2).max(interval);
        let heartbeat: Arc<[u8]> = Arc::from(&wire::HEARTBEAT[..]);
        let mut last = Instant::now();
        loop {
            tokio::time::sleep(interval).await;
            let now = Instant::now();
            let late = now.saturating_duration_since(last + interval);
            last = now;
            let now_ms = self.now_ms();
            self.watched.store(now_ms, Ordering::Relaxed);
            let mut faults = Vec::new();
            {
                let state = self.state();
                if late > stall {
                    self.stalled_until
                        .store(now_ms + timeout_ms, Ordering::Relaxed);
                    for link in state.links.values() {
                        link.live.restart();
                    }
                    continue;
                }
                for (&rank, link) in state.links.iter().filter(|(_, l)| l.connected) {
                    let live = &link.live;
                    if let Some(fault) = self.check(live, now_ms, timeout_ms) {
                        faults.push((rank, fault));
                    } else if live.write_at.load(Ordering::Relaxed) == IDLE
                        && now_ms.saturating_sub(live.written.load(Ordering::Relaxed))
                            >= interval_ms
                    {
                        let _ = link.queue.try_send(Arc::clone(&heartbeat));
                    }
                }
            }
            for (rank, fault) in faults {
                self.act(rank, fault, timeout.as_secs_f64());
            }
        }
    }

    /// The first thing wrong with a link, if any.
    fn check(&self, live: &Liveness, now_ms: u64, timeout_ms: u64) -> Option<Fault> {
        let quiet = now_ms.saturating_sub(live.heard.load(Ordering::Relaxed));
        if quiet > timeout_ms {
            let mid_frame = live.mid_frame.load(Ordering::Relaxed);
            return Some(Fault::Silent { quiet, mid_frame });
        }
        let len = live.body_len.load(Ordering::Relaxed);
        if len > 0 {
            let allowed = self.limits.deadline(len);
            let since = now_ms.saturating_sub(live.body_at.load(Ordering::Relaxed));
            if since > allowed.as_millis() as u64 {
                return Some(Fault::Stalled(FrameError::Stalled {
                    len,
                    received: live.body_got.load(Ordering::Relaxed),
                    seconds: allowed.as_secs_f64(),
                }));
            }
        }
        let started = live.write_at.load(Ordering::Relaxed);
        if started != IDLE {
            let len = live.write_len.load(Ordering::Relaxed);
            let allowed = self.limits.deadline(len);
            if now_ms.saturating_sub(started) > allowed.as_millis() as u64 {
                let seconds = allowed.as_secs_f64();
                return Some(Fault::NotReading { len, seconds });
            }
        }
        None
    }

    fn act(&self, rank: usize, fault: Fault, timeout: f64) {
        match fault {
            Fault::Silent { quiet, mid_frame } => {
                let seconds = quiet as f64 / 1000.0;
                if mid_frame {
                    let why = format!("stalled for {seconds:.1} s in the middle of a frame");
                    self.cut_off(rank, Cut::Misbehaved, why);
                } else {
                    let why = format!("silent for {seconds:.1} s (peer timeout {timeout:.1} s)");
                    self.cut_off(rank, Cut::Silent, why);
                }
            }
            Fault::Stalled(error) => self.cut_off(rank, Cut::Misbehaved, error.to_string()),
            Fault::NotReading { len, seconds } => {
                let why = format!("did not take {len} bytes within {seconds:.1} s");
                self.cut_off(rank, Cut::Silent, why);
                // Its writer is stuck in that write: closing the
                // connection ends it.
                if let Some(peer) = self.peer(rank) {
                    let _ = self.commands.send(SwarmCommand::Disconnect { peer });
                }
            }
        }
    }
}
