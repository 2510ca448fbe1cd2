//! What the ranks of a run know of each other without messages: heartbeats
//! and exits; and the letters they send.

use super::*;

/// First wait of a blocked rank before it ticks its engine; the wait
/// doubles up to a quarter of the peer timeout, and starts again when a
/// round completes.
pub(super) const FIRST_IDLE: Duration = Duration::from_millis(1);

/// Heartbeat of a rank outside any reduction, running its own code: alive,
/// however long ago it last beat.
const OUTSIDE: u64 = u64::MAX;

/// What the ranks of a run know of each other without messages.
#[derive(Debug)]
pub(super) struct Presence {
    /// Origin of the heartbeats.
    pub(super) start: Instant,
    /// Per rank: nanoseconds after `start` of its last sign of life inside
    /// a reduction, or [`OUTSIDE`].
    pub(super) beats: Vec<AtomicU64>,
    /// Per rank: how it left the job, once it has.
    pub(super) exits: Vec<Mutex<Option<Exit>>>,
    /// Exits so far: ranks look at `exits` again when it changes.
    pub(super) exit_count: AtomicUsize,
}

/// How a rank left the job.
#[derive(Clone, Debug)]
pub(super) struct Exit {
    /// The first reduction (1 for the first call) it takes no part in.
    pub(super) from_op: u64,
    /// The members it held departed: each of them was excluded.
    pub(super) departed: Vec<usize>,
}

impl Presence {
    pub(super) fn new(size: usize) -> Presence {
        Presence {
            start: Instant::now(),
            beats: (0..size).map(|_| AtomicU64::new(OUTSIDE)).collect(),
            exits: (0..size).map(|_| Mutex::new(None)).collect(),
            exit_count: AtomicUsize::new(0),
        }
    }

    /// Nanoseconds from `start` to `at`.
    pub(super) fn nanos(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.start).as_nanos();
        u64::try_from(nanos).unwrap_or(OUTSIDE - 1)
    }

    pub(super) fn beat(&self, rank: usize, at: Instant) {
        self.beats[rank].store(self.nanos(at), Ordering::Relaxed);
    }

    pub(super) fn step_out(&self, rank: usize) {
        self.beats[rank].store(OUTSIDE, Ordering::Relaxed);
    }

    /// True if `rank` is inside a reduction and has not beaten for `limit`.
    pub(super) fn silent(&self, rank: usize, limit: Duration) -> bool {
        let beat = self.beats[rank].load(Ordering::Relaxed);
        let now = self.nanos(Instant::now());
        let limit = u64::try_from(limit.as_nanos()).unwrap_or(OUTSIDE);
        beat != OUTSIDE && now.saturating_sub(beat) >= limit
    }

    pub(super) fn exit(&self, rank: usize) -> Option<Exit> {
        let exit = self.exits[rank]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        exit.clone()
    }

    /// Records `rank`'s exit. Everything it sent before is already in the
    /// inboxes, so a rank that reads the exit and then empties its inbox
    /// has everything the exited rank will ever send it.
    pub(super) fn publish(&self, rank: usize, exit: Exit) {
        *self.exits[rank]
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(exit);
        self.exit_count.fetch_add(1, Ordering::Release);
    }
}

/// What travels between threads.
#[derive(Debug)]
pub(super) enum Letter {
    /// An engine message.
    Message(Envelope),
    /// A rank left the job: look at the exits again.
    Exit,
}

/// An engine message on its way between two threads.
#[derive(Debug)]
pub(super) struct Envelope {
    /// Which reduction of the sequence it belongs to.
    pub(super) op: u64,
    pub(super) from: usize,
    /// Shared by every receiver of a broadcast: one copy of the payload.
    pub(super) message: Arc<OwnedMessage>,
}
