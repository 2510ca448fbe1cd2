//! The budget of repeated frames a member may send: a flood of valid but
//! redundant frames is misbehaviour, however well formed each one is.

use dac_core::engine::Kind;

use crate::wire::Frame;

/// Repeated frames (a round, or a message, already seen in the same
/// reduction, or a frame of a reduction older than the previous one) a
/// member may send in one reduction, at once and per second after that.
/// An honest member repeats a frame only when its retransmission timer
/// fires (after half a second of waiting, then less and less often); a
/// member beyond the budget floods, and is cut off.
pub(crate) const REPEAT_BURST: f64 = 16.0;
pub(crate) const REPEAT_RATE: f64 = 8.0;

/// Shortest time between two repeated frames of one member that are
/// handed on (and so may be answered). An honest member repeats a frame
/// when its retransmission timer fires, a second or more apart; a member
/// that repeats faster gets no more answers than this allows, so the
/// answers never count as a flood against the member that gives them.
pub(crate) const ANSWER_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// What to do with a frame (see [`Repeats::admit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Not a repeat, or a repeat that may be answered: hand it on.
    Take,
    /// A repeat within the budget that came too soon after the last one
    /// handed on: drop it (it may have asked a question already answered).
    Drop,
    /// A repeat beyond the budget: the member floods.
    Flood,
}

/// What one member sent in one reduction: the latest round message's
/// round, and the other messages (kind, round, flags and view: the hellos
/// of one handshake differ in their flags, the news of two departures in
/// its view).
#[derive(Debug, Default)]
struct Seen {
    /// The reduction.
    op: u64,
    /// The latest round message's round in it.
    round: Option<u32>,
    /// The other messages seen in it (at most [`MAX_SEEN`]).
    other: Vec<(Kind, u32, u8, u64)>,
}

impl Seen {
    /// Notes `frame` (of this reduction); true if it repeats one seen.
    fn repeats(&mut self, frame: &Frame) -> bool {
        let h = &frame.message.header;
        if h.kind == Kind::Round {
            return match self.round {
                Some(r) if h.round <= r => true,
                _ => {
                    self.round = Some(h.round);
                    false
                }
            };
        }
        let key = (h.kind, h.round, h.flags, h.view.0);
        if self.other.contains(&key) || self.other.len() >= MAX_SEEN {
            return true;
        }
        self.other.push(key);
        false
    }
}

/// The repeated frames one member has sent: a token bucket of
/// [`REPEAT_BURST`], full again at each of its reductions and refilled at
/// [`REPEAT_RATE`] a second, and what it sent in its latest reduction and
/// the one before (a member behind us still sends frames of the previous
/// one, and is answered from it, so its repeats there count too).
#[derive(Debug)]
pub(crate) struct Repeats {
    /// Its latest reduction.
    latest: Seen,
    /// The reduction before that.
    previous: Seen,
    /// Repeats it may still send now.
    tokens: f64,
    /// When `tokens` was last refilled.
    at: tokio::time::Instant,
    /// When the last repeat was handed on.
    answered: Option<tokio::time::Instant>,
}

/// Other messages remembered per reduction; beyond that every one counts
/// as a repeat (an honest member sends a handful).
const MAX_SEEN: usize = 64;

impl Repeats {
    pub(crate) fn new() -> Repeats {
        Repeats {
            latest: Seen::default(),
            previous: Seen::default(),
            tokens: REPEAT_BURST,
            at: tokio::time::Instant::now(),
            answered: None,
        }
    }

    /// Notes `frame`: whether to take it, drop it, or cut its sender off.
    pub(crate) fn admit(&mut self, frame: &Frame, now: tokio::time::Instant) -> Admission {
        if frame.op > self.latest.op {
            // A new reduction: a new budget.
            let previous = std::mem::take(&mut self.latest);
            self.previous = if previous.op + 1 == frame.op {
                previous
            } else {
                Seen::default()
            };
            self.previous.op = frame.op - 1;
            self.latest.op = frame.op;
            self.tokens = REPEAT_BURST;
        } else {
            let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
            self.tokens = (self.tokens + REPEAT_RATE * elapsed).min(REPEAT_BURST);
        }
        self.at = now;
        let repeat = if frame.op == self.latest.op {
            self.latest.repeats(frame)
        } else if frame.op == self.previous.op {
            // A late answer about the previous reduction (a deferred
            // result, a resend it asked for) is news once.
            self.previous.repeats(frame)
        } else {
            true
        };
        if !repeat {
            return Admission::Take;
        }
        if self.tokens < 1.0 {
            return Admission::Flood;
        }
        self.tokens -= 1.0;
        if self
            .answered
            .is_some_and(|at| now.saturating_duration_since(at) < ANSWER_INTERVAL)
        {
            return Admission::Drop;
        }
        self.answered = Some(now);
        Admission::Take
    }
}

#[cfg(test)]
mod tests {
    use super::Admission::{Drop, Flood, Take};
    use super::*;
    use dac_core::engine::{Header, OwnedMessage};
    use tokio::time::{Duration, Instant};

    fn frame(op: u64, kind: Kind, round: u32, flags: u8) -> Frame {
        let mut header = Header {
            kind,
            round,
            view: Default::default(),
            degree: 1,
            counter: 0,
            flags: 0,
            proposal: 0,
            streak: 0.0,
            epoch: 0.0,
        };
        header.flags = flags;
        Frame {
            op,
            view: 0,
            shape: 0,
            message: OwnedMessage {
                header,
                events: Vec::new(),
                payload: Vec::new(),
                abort: None,
            },
        }
    }

    /// What honest members send, many reductions a second: rounds in
    /// order, a handshake's hellos (one start, other flags), a late answer
    /// about the previous reduction, a resend now and then.
    #[test]
    fn honest_traffic_fits_however_fast_the_reductions() {
        let mut budget = Repeats::new();
        let start = Instant::now();
        for op in 1..=2000u64 {
            // 2000 reductions in a second.
            let now = start + Duration::from_micros(500 * op);
            for round in 0..5 {
                assert_eq!(budget.admit(&frame(op, Kind::Round, round, 0), now), Take);
            }
            for flags in [0, 2, 6] {
                assert_eq!(budget.admit(&frame(op, Kind::Hello, 3, flags), now), Take);
            }
            assert_eq!(budget.admit(&frame(op - 1, Kind::Done, 5, 0), now), Take);
            // A retransmission (handed on: the last was long ago, or
            // dropped: the same question came a moment ago).
            assert_ne!(budget.admit(&frame(op, Kind::Round, 4, 0), now), Flood);
        }
    }

    /// What `budget` does with `f`, sent again and again at `now`, up to
    /// the first repeat it takes for a flood.
    fn until_flood(budget: &mut Repeats, f: &Frame, now: Instant) -> Vec<Admission> {
        (0..1000)
            .map(|_| budget.admit(f, now))
            .take_while(|a| *a != Flood)
            .collect()
    }

    /// The same frame again and again: cut off after the burst.
    #[test]
    fn a_flood_in_one_reduction_is_refused_after_the_burst() {
        let mut budget = Repeats::new();
        let now = Instant::now();
        let copy = frame(7, Kind::Round, 0, 0);
        assert_eq!(budget.admit(&copy, now), Take);
        let admitted = until_flood(&mut budget, &copy, now);
        assert_eq!(admitted.len(), REPEAT_BURST as usize);
        // Only the first repeat is handed on: the others came too soon.
        assert_eq!(admitted.iter().filter(|a| **a == Take).count(), 1);
        // Hellos of the same handshake step, and frames of long-gone
        // reductions, count the same way.
        let mut budget = Repeats::new();
        let hello = frame(3, Kind::Hello, 2, 2);
        assert_eq!(budget.admit(&hello, now), Take);
        assert_eq!(until_flood(&mut budget, &hello, now).len(), 16);
        let mut budget = Repeats::new();
        assert_eq!(budget.admit(&frame(10, Kind::Round, 0, 0), now), Take);
        let old = frame(3, Kind::Round, 0, 0);
        assert_eq!(until_flood(&mut budget, &old, now).len(), 16);
    }

    /// A member one reduction behind that repeats its frames of that
    /// reduction floods too (they used to pass as late answers, and each
    /// was answered: the answers then counted as a flood against the
    /// honest member that gave them). The first of each is news.
    #[test]
    fn repeats_of_the_previous_reduction_count() {
        let mut budget = Repeats::new();
        let now = Instant::now();
        assert_eq!(budget.admit(&frame(4, Kind::Round, 2, 0), now), Take);
        assert_eq!(budget.admit(&frame(5, Kind::Round, 0, 0), now), Take);
        let late = frame(4, Kind::Round, 3, 0);
        assert_eq!(budget.admit(&late, now), Take);
        let outcomes = until_flood(&mut budget, &late, now);
        assert_eq!(outcomes.len(), REPEAT_BURST as usize);
        assert_eq!(outcomes.iter().filter(|a| **a == Take).count(), 1);
        // A repeat of a round seen before in that reduction counts too.
        let mut budget = Repeats::new();
        assert_eq!(budget.admit(&frame(4, Kind::Round, 2, 0), now), Take);
        assert_eq!(budget.admit(&frame(5, Kind::Round, 0, 0), now), Take);
        assert_eq!(budget.admit(&frame(4, Kind::Round, 2, 0), now), Take);
        assert_eq!(budget.admit(&frame(4, Kind::Round, 1, 0), now), Drop);
    }

    /// However fast a member repeats, at most one repeat per
    /// `ANSWER_INTERVAL` is handed on, so the answers it gets stay below
    /// the rate at which it may repeat itself.
    #[test]
    fn fast_repeats_are_answered_at_most_every_interval() {
        let mut budget = Repeats::new();
        let start = Instant::now();
        let copy = frame(1, Kind::Round, 0, 0);
        assert_eq!(budget.admit(&copy, start), Take);
        let mut taken = 0;
        // 7 a second for 10 s: within the refill rate.
        for k in 1..=70u64 {
            let now = start + Duration::from_millis(1000 * k / 7);
            match budget.admit(&copy, now) {
                Take => taken += 1,
                Drop => {}
                Flood => panic!("repeat {k} counted as a flood"),
            }
        }
        let most = 10_000 / ANSWER_INTERVAL.as_millis() as usize;
        assert!(taken <= most && taken * 2 > most, "{taken} of 70 handed on");
        assert!(REPEAT_RATE > 1.0 / ANSWER_INTERVAL.as_secs_f64());
    }

    /// Repeats spread over time are allowed at the refill rate.
    #[test]
    fn slow_repeats_are_refilled() {
        let mut budget = Repeats::new();
        let start = Instant::now();
        let copy = frame(1, Kind::Round, 0, 0);
        assert_eq!(budget.admit(&copy, start), Take);
        for k in 1..=1000u64 {
            // Four a second: half the refill rate.
            let now = start + Duration::from_millis(250 * k);
            assert_eq!(budget.admit(&copy, now), Take, "repeat {k}");
        }
    }
}
