//! Per-peer and per-round bookkeeping of an engine.

use super::message::{Header, OwnedMessage, Violation};
use super::view::ViewId;
use crate::error::Error;
use crate::reduction::Reduction;

/// Round tag of an empty slot.
pub(super) const EMPTY: u32 = u32::MAX;

/// A buffered round message from a peer (its mass lives in the engine's
/// vector buffer, next to the flow).
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    /// The round the message is for, or [`EMPTY`].
    pub(super) round: u32,
    /// The sender's active degree; the top bit carries its dirty flag.
    pub(super) degree_flags: u32,
    /// The sender's view for that round.
    pub(super) view: ViewId,
}

pub(super) const SLOT_DIRTY: u32 = 1 << 31;

impl Slot {
    pub(super) const FREE: Slot = Slot {
        round: EMPTY,
        degree_flags: 0,
        view: ViewId(0),
    };

    pub(super) fn degree(&self) -> u32 {
        self.degree_flags & !SLOT_DIRTY
    }

    pub(super) fn dirty(&self) -> bool {
        self.degree_flags & SLOT_DIRTY != 0
    }
}

/// Round messages that arrived before their round could use them: up to
/// two per neighbour (a neighbour is never more than one round ahead), as
/// tags and masses (`w` values each), both indexed `2 × peer + slot`.
/// Nothing is allocated until a message has to wait, which a host that
/// hands over whole rounds (`Engine::advance_with_round_from`) never causes:
/// a million-member simulation does not carry them.
#[derive(Clone, Debug)]
pub(super) struct Inbox {
    pub(super) tags: Vec<Slot>,
    pub(super) values: Vec<f64>,
}

/// A neighbour added by a topology repair: the handshake that agrees on
/// the first round both exchange, kept for the edge's lifetime (repairs are
/// rare, and a late hello must still be answered).
#[derive(Clone, Copy, Debug)]
pub(super) struct Join {
    pub(super) peer: u32,
    /// The first round this engine exchanges with the peer (it will not
    /// complete that round before it knows the peer's start).
    pub(super) my_start: u32,
    /// The peer's start, once its hello arrived.
    pub(super) their_start: Option<u32>,
    /// The peer confirmed it knows `my_start`.
    pub(super) acked: bool,
    /// A hello should go out at the next poll.
    pub(super) hello_due: bool,
}

impl Join {
    /// The agreed first round of the edge, once both starts are known.
    pub(super) fn since(&self) -> Option<u32> {
        self.their_start.map(|t| t.max(self.my_start))
    }
}

/// What this engine sent for a round (needed to process the round and to
/// resend the message to a peer that lost it).
#[derive(Clone, Copy, Debug)]
pub(super) struct RoundMeta {
    pub(super) round: u32,
    pub(super) view: ViewId,
    pub(super) degree: u32,
    pub(super) counter: u32,
    pub(super) flags: u8,
}

impl RoundMeta {
    pub(super) const NONE: RoundMeta = RoundMeta {
        round: EMPTY,
        view: ViewId(0),
        degree: 0,
        counter: 0,
        flags: 0,
    };
}

/// The termination gossip of a round message beyond what [`Acc::fold`]
/// takes in, written once for every receive path: a neighbour in another
/// view needs our events (`attach` them to our next round message); one
/// in our view may propose a stop round after `round` earlier than
/// `proposal` (0: none), which `proposal` then takes.
#[inline(always)]
pub(super) fn take_view_gossip(
    h: &Header,
    view: ViewId,
    round: u32,
    attach: &mut bool,
    proposal: &mut u32,
) {
    if h.view != view {
        *attach = true;
    } else if h.proposal > round && (*proposal == 0 || h.proposal < *proposal) {
        *proposal = h.proposal;
    }
}

/// Termination gossip folded from the peers' messages for one round:
/// the minimum convergence counter and the largest residuals.
#[derive(Clone, Copy, Debug)]
pub(super) struct Acc {
    pub(super) round: u32,
    pub(super) min_counter: u32,
    pub(super) max_streak: f64,
    pub(super) max_epoch: f64,
}

impl Acc {
    pub(super) fn fresh(round: u32) -> Acc {
        Acc {
            round,
            min_counter: u32::MAX,
            max_streak: 0.0,
            max_epoch: 0.0,
        }
    }

    /// Takes in a neighbour's gossip for the round.
    pub(super) fn fold(&mut self, h: &Header) {
        self.min_counter = self.min_counter.min(h.counter);
        self.max_streak = self.max_streak.max(h.streak);
        self.max_epoch = self.max_epoch.max(h.epoch);
    }
}

/// Where a lifecycle ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Still exchanging.
    Running,
    /// Finished with a value.
    Done,
    /// Failed with an error (also when it adopted another member's abort).
    Failed,
    /// Left on request.
    Left,
}

/// State that most engines never need; allocated on first use so that a
/// million-member simulation stays small.
#[derive(Debug, Default)]
pub(super) struct Rare {
    pub(super) joins: Vec<Join>,
    /// Hellos from members that are not (yet) peers: (sender, start, ack).
    pub(super) early_hellos: Vec<(u32, u32, bool)>,
    /// Messages owed to a peer: `Some(round)` resends that round,
    /// `None` sends our terminal message; `Events` replies go to `events_to`.
    pub(super) replies: Vec<(u32, Option<u32>)>,
    pub(super) events_to: Vec<u32>,
    /// The final message we answer everyone with (done, abort, leave).
    pub(super) terminal: Option<OwnedMessage>,
    pub(super) outcome: Option<Result<Reduction, Error>>,
    /// Results neighbours announced during the exact phase, which this
    /// member cannot check yet: the latest per sender, compared with its
    /// own exact mean when it has it (see `Engine::check_claims`).
    pub(super) claims: Vec<(u32, Vec<f64>)>,
    /// Members the host says finished this reduction before they departed
    /// (see `Engine::peer_finished`): the only departed members whose
    /// claims a dirty exact phase adopts.
    pub(super) finished: Vec<u32>,
    /// Misbehaviour found when a round completed, for
    /// `Engine::take_misbehaviour`.
    pub(super) misbehaviour: Vec<Violation>,
}

/// Bound on hellos kept from non-peers (a peer cannot make us store more).
pub(super) const MAX_EARLY_HELLOS: usize = 64;

/// Bound on pending answers to departed members (see `Engine::fence`);
/// more are answered after the next poll.
pub(super) const MAX_FENCED: usize = 64;
