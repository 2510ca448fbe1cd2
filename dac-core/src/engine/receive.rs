//! Taking in a peer's message: validation, buffering and gossip.

use super::Engine;
use super::message::{AbortReason, FLAG_ACK, FLAG_ACKED, Header, Kind, Message, Violation};
use super::state::{Acc, EMPTY, MAX_EARLY_HELLOS, MAX_FENCED, Phase, take_view_gossip};
use super::view::{Event, contributors_of};
use crate::reduction::Reduction;

impl Engine {
    /// Takes in a message from member `from`.
    ///
    /// A message the protocol does not need (a duplicate, a round this
    /// member is past, a message from a departed member) is ignored; a stale
    /// round message is answered with the round the sender missed.
    ///
    /// A round or result whose length says that the sender's input has
    /// another dimension is a usage error, not a violation: the engine
    /// fails the reduction for every member with
    /// [`Error::DimensionMismatch`](crate::Error::DimensionMismatch) (a
    /// finished engine ignores it).
    ///
    /// # Errors
    /// A [`Violation`] for a malformed message (another payload length,
    /// non-finite values, an unknown sender or event, a missing abort
    /// reason) or one that contradicts this member's state. The engine's
    /// state is unchanged; the host decides what to do with the sender,
    /// usually cutting it off ([`Engine::peer_suspected`]).
    #[inline]
    pub fn receive(&mut self, from: usize, message: &Message<'_>) -> Result<(), Violation> {
        if message.events.is_empty()
            && self.receive_round_fast(from, None, &message.header, message.payload)
        {
            return Ok(());
        }
        self.receive_general(from, message)
    }

    /// Everything but the fast path of [`Engine::receive`].
    #[inline(never)]
    pub(super) fn receive_general(
        &mut self,
        from: usize,
        message: &Message<'_>,
    ) -> Result<(), Violation> {
        if let Err(violation) = self.validate(from, message) {
            if let Some(reason) = self.dimension_mismatch(&violation) {
                self.abort(reason);
                return Ok(());
            }
            return Err(violation);
        }
        let from = from as u32;
        if from == self.id {
            return Ok(());
        }
        if self.events.has_departed(from) {
            // A member we hold departed is still running rounds (it was
            // falsely suspected, or frozen and revived): our view tells it
            // so, and it stops with `Error::Excluded` instead of waiting
            // for members that no longer listen to it. Only rounds and
            // hellos are answered, so that two members that hold each
            // other departed do not answer each other's answers forever.
            if matches!(message.header.kind, Kind::Round | Kind::Hello) {
                self.fence(from);
            }
            return Ok(());
        }
        let kind = message.header.kind;
        if self.phase != Phase::Running {
            if kind == Kind::Done {
                return self.check_done_after(from, message);
            }
            // Finished members answer anyone still asking with their result
            // — and a member behind them with the round it asks for, while
            // they hold it: the exact phase takes no result it cannot
            // check, so a partner whose last round was lost needs it.
            if matches!(kind, Kind::Round | Kind::Hello | Kind::Events) {
                let resend = (kind == Kind::Round)
                    .then_some(message.header.round)
                    .filter(|&r| self.owes_round(from, r));
                let rare = self.rare();
                if rare.terminal.is_some() {
                    if !rare.replies.iter().any(|r| r.0 == from && r.1.is_none()) {
                        rare.replies.push((from, None));
                    }
                    if let Some(r) = resend
                        && !rare.replies.contains(&(from, Some(r)))
                    {
                        rare.replies.push((from, Some(r)));
                    }
                }
            }
            return Ok(());
        }
        match kind {
            Kind::Round => self.receive_round(from, message),
            Kind::Events => {
                self.learn(message.events);
                self.refresh_unsent_meta();
            }
            Kind::Hello => self.receive_hello(from, message.header.round, message.header.flags),
            Kind::Done => {
                if self.peer_index(from).is_some() {
                    return self.receive_done(from, message);
                }
            }
            Kind::Abort => {
                if let (Some(reason), Some(_)) = (message.abort, self.peer_index(from)) {
                    let owned = message.to_owned();
                    self.terminate(Phase::Failed, Err(reason.into()), owned);
                }
            }
            Kind::Leave => {
                // A member that left is gone: it does not count against the
                // quorum.
                self.learn(&[Event::Gone { member: from }]);
                self.refresh_unsent_meta();
            }
        }
        Ok(())
    }

    /// The common case on its own short path: a well-formed round message
    /// from a current neighbour, in the iterative phase, with no event
    /// attached and no edge being opened. Returns false, having changed
    /// nothing, for anything else (including every malformed message),
    /// which the general path handles.
    #[inline]
    pub(super) fn receive_round_fast(
        &mut self,
        from: usize,
        index: Option<usize>,
        h: &Header,
        payload: &[f64],
    ) -> bool {
        let w = self.dim + 1;
        let current = self.round;
        let r = h.round;
        if h.kind != Kind::Round
            || self.plan.is_some()
            || self.phase != Phase::Running
            || self.rare.is_some()
            || payload.len() != w
            || from >= self.members as usize
            || r < current
        {
            return false;
        }
        if !sane_round(h, payload) {
            return false;
        }
        let guessed = index.filter(|&i| self.peers.get(i) == Some(&(from as u32)));
        let Some(p) = guessed.or_else(|| self.peer_index(from as u32)) else {
            return false;
        };
        let a = (r & 1) as usize;
        let acc_round = self.acc[a].round;
        if acc_round != r && acc_round != EMPTY && acc_round >= current {
            return true; // too far ahead: it will be sent again
        }
        let Some(s) = self.slot_to_store(p, r) else {
            return true; // a duplicate, or no room: it will be sent again
        };
        self.store(p, s, h, payload);
        let acc = &mut self.acc[a];
        if acc.round != r {
            *acc = Acc::fresh(r);
        }
        acc.fold(h);
        let view = self.events.id();
        take_view_gossip(
            h,
            view,
            current,
            &mut self.attach_events,
            &mut self.proposal,
        );
        true
    }

    /// For a round or result whose length is another dimension's: the
    /// mismatch every member is told (`rank`/`found` are this member's).
    fn dimension_mismatch(&self, violation: &Violation) -> Option<AbortReason> {
        let Violation::PayloadLength { kind, found, .. } = *violation else {
            return None;
        };
        let expected = match kind {
            Kind::Round => found.saturating_sub(1),
            Kind::Done => found,
            _ => return None,
        };
        Some(AbortReason::DimensionMismatch {
            rank: self.id,
            expected: expected as u64,
            found: self.dim as u64,
        })
    }

    fn validate(&self, from: usize, message: &Message<'_>) -> Result<(), Violation> {
        let members = self.members();
        if from >= members {
            return Err(Violation::UnknownSender {
                peer: from,
                members,
            });
        }
        let h = &message.header;
        let expected = match h.kind {
            Kind::Round => self.width(),
            Kind::Done => self.dim,
            Kind::Events | Kind::Hello | Kind::Abort | Kind::Leave => 0,
        };
        if message.payload.len() != expected {
            return Err(Violation::PayloadLength {
                peer: from,
                kind: h.kind,
                expected,
                found: message.payload.len(),
            });
        }
        let finite_payload = message.payload.iter().all(|x| x.is_finite());
        let sane_header =
            !h.streak.is_nan() && !h.epoch.is_nan() && h.streak >= 0.0 && h.epoch >= 0.0;
        if !finite_payload || !sane_header {
            return Err(Violation::NonFinite {
                peer: from,
                kind: h.kind,
            });
        }
        if h.kind == Kind::Abort && message.abort.is_none() {
            return Err(Violation::MissingAbortReason { peer: from });
        }
        let bad_event = message.events.iter().find(|e| match **e {
            Event::Departed { member }
            | Event::InputChanged { member, .. }
            | Event::Gone { member } => member >= self.members,
        });
        if let Some(&event) = bad_event {
            return Err(Violation::InvalidEvent { peer: from, event });
        }
        Ok(())
    }

    fn receive_round(&mut self, from: u32, message: &Message<'_>) {
        if !message.events.is_empty() {
            self.learn(message.events);
            self.refresh_unsent_meta();
            if self.phase != Phase::Running || self.events.has_departed(from) {
                return;
            }
        }
        let h = &message.header;
        let Some(p) = self.peer_index(from) else {
            // Not (or no longer) a neighbour: if it has another view, tell it
            // what we know, so that it can drop or open the edge.
            if h.view != self.events.id() {
                let rare = self.rare();
                if !rare.events_to.contains(&from) {
                    rare.events_to.push(from);
                }
            }
            return;
        };
        if h.view != self.events.id() {
            self.attach_events = true;
        }
        let r = h.round;
        if r < self.round {
            // The sender is behind: it may be missing our message for `r`.
            let exact_partner = self
                .plan_pairing_peer(r)
                .is_none_or(|partner| partner == from);
            let rare = self.rare();
            if exact_partner
                && !rare
                    .replies
                    .iter()
                    .any(|&(to, round)| to == from && round == Some(r))
            {
                rare.replies.push((from, Some(r)));
            }
            return;
        }
        if let Some(partner) = self.plan_pairing_peer(r) {
            if partner != from {
                return; // an exact-phase round in which we are not partners
            }
        } else if self.has_joins() && self.since(from).is_none_or(|s| s > r) {
            return; // before the agreed start of a new edge
        }
        let exact_round = self.plan.is_some_and(|plan| r < plan.rounds());
        // Fold the termination gossip first: it may refuse a round too far
        // ahead, and then the message is not stored either (it will come
        // again).
        if !exact_round {
            // A neighbour more than a round ahead of our first round that
            // takes gossip (a new edge's peer starts at the agreed round,
            // however far ahead): its gossip would hold the slot that one
            // of our earlier rounds needs, and their messages would be
            // refused until it came. It resends while it waits for us (a
            // host on lossy links calls `tick`).
            let first = self
                .plan
                .map_or(self.round, |plan| self.round.max(plan.rounds()));
            if r - first > 1 {
                return;
            }
            let acc = &mut self.acc[(r % 2) as usize];
            if acc.round != r {
                if acc.round != EMPTY && acc.round >= self.round {
                    return;
                }
                *acc = Acc::fresh(r);
            }
        }
        let Some(s) = self.slot_to_store(p, r) else {
            return; // a duplicate, or no room
        };
        self.store(p, s, h, message.payload);
        if !exact_round {
            let acc = &mut self.acc[(r % 2) as usize];
            acc.fold(h);
        }
        // (A view change was noted above, whether or not it was stored.)
        let (view, round) = (self.events.id(), self.round);
        take_view_gossip(h, view, round, &mut self.attach_events, &mut self.proposal);
    }

    /// The exact-phase partner for `round`, if that round is in the exact
    /// phase and has one.
    fn plan_pairing_peer(&self, round: u32) -> Option<u32> {
        let plan = self.plan?;
        if round >= plan.rounds() {
            return None;
        }
        Some(plan.pairing(self.id, round).map_or(u32::MAX, |p| p.peer))
    }

    fn receive_hello(&mut self, from: u32, start: u32, flags: u8) {
        let acked = flags & FLAG_ACK != 0;
        if self.peer_index(from).is_none() {
            let rare = self.rare();
            rare.early_hellos.retain(|h| h.0 != from);
            if rare.early_hellos.len() < MAX_EARLY_HELLOS {
                rare.early_hellos.push((from, start, acked));
            }
            return;
        }
        let Some(rare) = self.rare.as_mut() else {
            return; // an edge from the start needs no handshake
        };
        if let Some(join) = rare.joins.iter_mut().find(|j| j.peer == from) {
            // An edge opens once: a later, different start is not ours to
            // follow (repairs never reopen an edge).
            join.their_start.get_or_insert(start);
            join.acked |= acked;
            // Answer until the peer knows our start and knows that we know
            // its own; then both stop.
            if !acked || flags & FLAG_ACKED == 0 {
                join.hello_due = true;
            }
        }
    }

    /// Takes a neighbour's result as ours (it was checked as far as this
    /// member can; see `Engine::receive_done`).
    pub(super) fn adopt_done(&mut self, message: &Message<'_>) {
        let contributors = contributors_of(self.members(), message.events);
        let reduction = Reduction {
            value: message.payload.to_vec(),
            rounds: message.header.round,
            residual: message.header.streak,
            contributors,
        };
        self.terminate(Phase::Done, Ok(reduction), message.to_owned());
    }

    /// Queues our view for `to`, a member we hold departed (at most one
    /// pending answer per member).
    pub(super) fn fence(&mut self, to: u32) {
        let rare = self.rare();
        if !rare.events_to.contains(&to) && rare.events_to.len() < MAX_FENCED {
            rare.events_to.push(to);
        }
    }

    /// If this round's message has not gone out yet, let it carry the
    /// current view and degree.
    pub(super) fn refresh_unsent_meta(&mut self) {
        if !self.sent && self.phase == Phase::Running {
            self.record_meta(self.round);
        }
    }
}

/// A round message's values are finite and its gossip non-negative
/// (`x >= 0.0` is false for NaN). The short paths take only such messages;
/// the general path reports the others.
#[inline]
pub(super) fn sane_round(h: &Header, payload: &[f64]) -> bool {
    let mut sane = h.streak >= 0.0 && h.epoch >= 0.0;
    for x in payload {
        sane &= x.is_finite();
    }
    sane
}
