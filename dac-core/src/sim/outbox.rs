//! The simulator's message board: every member's plain round message of
//! one tick, laid out so that receivers read one cache line per neighbour.

use crate::engine::{Header, Kind, OwnedMessage, ViewId};

/// `out_target` of a member that sent no plain round message this tick.
pub(super) const NOBODY: u32 = u32::MAX;
/// `out_target` of a round message to all of the sender's neighbours.
pub(super) const NEIGHBOURS: u32 = u32::MAX - 1;

/// How many members ahead the simulator asks for the records a member
/// will read: a member's work is shorter than a load from memory, so the
/// request has to go out a few members early (on a million members, 4, 8
/// and 16 measured about the same, 32 a little slower).
pub(super) const PREFETCH_AHEAD: usize = 8;

/// Asks the processor to start loading the cache line that holds `value`,
/// without waiting for it: the records a member reads are scattered, and
/// a plain load that misses would hold up everything after it. Only a
/// hint — results do not depend on it —, and nothing on targets other
/// than x86-64.
#[inline(always)]
pub(super) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let line: *const T = value;
        // SAFETY: a prefetch neither reads nor writes memory as far as the
        // program can tell and never faults, whatever the address (this
        // one comes from a live reference). The intrinsic is `unsafe` only
        // because it is declared for the `sse` target feature, which every
        // x86-64 processor has.
        #[allow(unsafe_code)]
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(line.cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// One member's plain round message of this tick, with its target, in one
/// cache line (the header fields spelled out so that the target fits): a
/// receiver reads one line per neighbour.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub(super) struct Broadcast {
    /// [`NOBODY`], [`NEIGHBOURS`] or the one member addressed.
    pub(super) target: u32,
    pub(super) round: u32,
    pub(super) degree: u32,
    pub(super) counter: u32,
    pub(super) proposal: u32,
    pub(super) flags: u8,
    pub(super) view: ViewId,
    pub(super) streak: f64,
    pub(super) epoch: f64,
    /// The payload when it has at most two values; otherwise it is in
    /// [`Outbox::long`].
    pub(super) inline: [f64; 2],
}

impl Broadcast {
    pub(super) const EMPTY: Broadcast = Broadcast {
        target: NOBODY,
        round: 0,
        degree: 0,
        counter: 0,
        proposal: 0,
        flags: 0,
        view: ViewId(0),
        streak: 0.0,
        epoch: 0.0,
        inline: [0.0; 2],
    };

    pub(super) fn header(&self) -> Header {
        Header {
            kind: Kind::Round,
            round: self.round,
            view: self.view,
            degree: self.degree,
            counter: self.counter,
            flags: self.flags,
            proposal: self.proposal,
            streak: self.streak,
            epoch: self.epoch,
        }
    }

    pub(super) fn set_header(&mut self, h: &Header) {
        self.round = h.round;
        self.view = h.view;
        self.degree = h.degree;
        self.counter = h.counter;
        self.flags = h.flags;
        self.proposal = h.proposal;
        self.streak = h.streak;
        self.epoch = h.epoch;
    }
}

/// The plain round message of every member for one tick, in flat arrays
/// (the common case; every other message is routed one by one).
#[derive(Debug)]
pub(super) struct Outbox {
    pub(super) records: Vec<Broadcast>,
    /// Payloads longer than two values, `n × (dim + 1)`.
    pub(super) long: Vec<f64>,
}

impl Outbox {
    pub(super) fn new(n: usize, w: usize) -> Outbox {
        Outbox {
            records: vec![Broadcast::EMPTY; n],
            long: if w > 2 { vec![0.0; n * w] } else { Vec::new() },
        }
    }

    pub(super) fn payload(&self, from: usize, w: usize) -> &[f64] {
        if w > 2 {
            &self.long[from * w..(from + 1) * w]
        } else {
            &self.records[from].inline[..w]
        }
    }

    /// `from`'s plain round message, as an owned message.
    pub(super) fn message(&self, from: usize, w: usize) -> OwnedMessage {
        OwnedMessage {
            header: self.records[from].header(),
            events: Vec::new(),
            payload: self.payload(from, w).to_vec(),
            abort: None,
        }
    }
}

/// A plain round message addressed to the member being delivered to.
#[derive(Clone, Copy, Debug)]
pub(super) struct Gathered {
    pub(super) from: u32,
    /// Where `from` is among the receiver's peers.
    pub(super) index: u32,
}

#[cfg(test)]
mod tests {
    use super::Broadcast;

    /// A receiver reads one cache line per neighbour.
    #[test]
    fn a_broadcast_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Broadcast>(), 64);
    }
}
