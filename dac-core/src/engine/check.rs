//! Checking a neighbour's result against this member's own state.
//!
//! The plain reductions do not resist insiders, but a result announcement
//! ([`Kind::Done`]) is the one message that can end a member's reduction
//! with a value that member did not compute. So a member takes one only
//! where it cannot compute the value itself, and only if nothing it knows
//! contradicts it; a result that contradicts its state is refused and
//! reported as a [`Violation::Contradicts`]:
//!
//! - **In the exact phase no result is adopted.** Every member whose
//!   exchanges all happened holds the exact mean itself after the plan's
//!   rounds, so a result announced meanwhile is kept (the latest per
//!   sender) and compared with the member's own mean when it has it. The
//!   only result an honest member can announce during another's exact
//!   phase is that exact mean, after the plan's rounds, with every member
//!   contributing and residual 0; anything else is refused at once. A
//!   finished member answers a partner that missed its round with that
//!   round, so the partner completes the phase itself on lossy links.
//! - **After a dirty exact phase** (a partner departed before their
//!   exchange, or the input changed) the member's value misses part of the
//!   inputs, and it cannot check an exact result from a neighbour that did
//!   complete the phase: it adopts one that has the exact result's shape —
//!   one announced during the phase by a member it still holds live or
//!   whose host says it finished before it left (if all such agree; not
//!   by one that departed otherwise), or one a finished neighbour answers
//!   its fallback rounds with. *This is the check's blind spot*: an
//!   insider that stays in the job, or that claims to have finished, can
//!   make members that fell back after a departure adopt a forged exact
//!   result.
//! - **Causality, in any phase.** An exact result depends on one message
//!   of every member (`ExactPlan::carried_round`): nobody holds the exact
//!   mean before this member has sent its message of that round. An exact
//!   result that arrives earlier is refused at once as
//!   [`Contradiction::Premature`], whoever sent it.
//! - **In the iterative schedules** the value is not recomputable, but its
//!   distance is bounded: all members stop at an agreed round after every
//!   member was converged, so every estimate then lies within `tol ·
//!   max(1, ‖e‖∞)` of every other. A result farther than
//!   [`ITERATIVE_SLACK`] times that from this member's own estimate is
//!   refused. The check needs both views equal (a view change since moves
//!   this member's estimate); a result from an older view is adopted
//!   unchecked, as before. A forged value within the tolerance is not
//!   detected — it is as accurate as the reduction promises.
//! - **Any schedule**: a result that names as departed a member this
//!   member holds live, or an input change it does not know of, comes
//!   from a view this member has not been through, which no honest member
//!   can have finished in (termination certifies every live member in the
//!   finishing view). A result that names *this* member departed is its
//!   exclusion, as before.
//! - **After finishing**, a member compares the results neighbours still
//!   announce with its own, where the two are comparable (both exact, or
//!   both iterative under the same contributors).

use super::Engine;
use super::message::{Contradiction, Header, Kind, Message, Violation};
use super::state::Phase;
use super::view::{Event, contributors_of};
use crate::schedule::{ExactPlan, Schedule};

/// Two exact means of the same inputs agree to within this, relative to
/// the largest magnitude this member saw (its input, its masses and both
/// values). Both are computed in `⌈log2 N⌉ + 2` rounds of halving, so they
/// differ by a few ulps of the inputs; the margin covers inputs that
/// cancel elsewhere, out of this member's sight, by up to seven decades.
pub(super) const EXACT_AGREEMENT: f64 = 1e-8;

/// An iterative result lies within `tol · max(1, ‖e‖∞)` of this member's
/// estimate when both are from the same view; this factor is the margin.
pub(super) const ITERATIVE_SLACK: f64 = 4.0;

impl Engine {
    /// A running member takes in a neighbour's result (see the module
    /// docs): it adopts it, keeps it to check later, or refuses it.
    pub(super) fn receive_done(
        &mut self,
        from: u32,
        message: &Message<'_>,
    ) -> Result<(), Violation> {
        let refuse = |what| Violation::Contradicts {
            peer: from as usize,
            kind: Kind::Done,
            what,
        };
        let contributors = contributors_of(self.members(), message.events);
        if !contributors.contains(self.id()) {
            // The others went on without this member.
            self.exclude();
            return Ok(());
        }
        if self.unknown_events(message.events) {
            return Err(refuse(Contradiction::ResultMembers));
        }
        let h = &message.header;
        let exact_rounds = self.exact_rounds();
        let clean = self.clean_exact_shape(h, message.events);
        if clean && !self.could_carry_my_input(from) {
            return Err(refuse(Contradiction::Premature));
        }
        if self.plan.is_some() {
            if !clean {
                return Err(refuse(Contradiction::ResultShape));
            }
            let value = message.payload.to_vec();
            let claims = &mut self.rare().claims;
            match claims.iter_mut().find(|c| c.0 == from) {
                Some(claim) => claim.1 = value,
                None => claims.push((from, value)),
            }
            return Ok(());
        }
        if clean {
            // This member fell back after a dirty exact phase: it cannot
            // check the exact result of a neighbour that completed it.
            self.adopt_done(message);
            return Ok(());
        }
        if exact_rounds.is_some_and(|r| h.round <= r) {
            // The fallback starts after the exact phase and needs more
            // than one round to end.
            return Err(refuse(Contradiction::ResultShape));
        }
        if contributors == self.contributors() {
            let m = self.mass();
            let weight = m[self.dim];
            if weight > 0.0 {
                let estimate: Vec<f64> = m[..self.dim].iter().map(|s| s / weight).collect();
                if !self.iteratively_close(&estimate, message.payload) {
                    return Err(refuse(Contradiction::ResultValue));
                }
            }
        }
        self.adopt_done(message);
        Ok(())
    }

    /// A finished member compares a result a neighbour announces with its
    /// own, where the two are comparable.
    pub(super) fn check_done_after(
        &self,
        from: u32,
        message: &Message<'_>,
    ) -> Result<(), Violation> {
        if self.phase != Phase::Done || self.peer_index(from).is_none() {
            return Ok(());
        }
        let Some(mine) = self.rare.as_ref().and_then(|r| r.terminal.as_ref()) else {
            return Ok(());
        };
        if mine.header.kind != Kind::Done {
            return Ok(());
        }
        let members = self.members();
        let theirs_contributors = contributors_of(members, message.events);
        if !theirs_contributors.contains(self.id()) {
            return Ok(()); // its exclusion of us comes too late to matter
        }
        let mine_clean = self.clean_exact_shape(&mine.header, &mine.events);
        let theirs_clean = self.clean_exact_shape(&message.header, message.events);
        let agrees = match (mine_clean, theirs_clean) {
            (true, true) => self.exactly_close(&mine.payload, message.payload),
            (false, false) if theirs_contributors == contributors_of(members, &mine.events) => {
                self.iteratively_close(&mine.payload, message.payload)
            }
            _ => true,
        };
        if agrees {
            Ok(())
        } else {
            Err(Violation::Contradicts {
                peer: from as usize,
                kind: Kind::Done,
                what: Contradiction::ResultValue,
            })
        }
    }

    /// At the end of a clean exact phase: the results neighbours announced
    /// meanwhile must be this member's exact mean.
    pub(super) fn check_claims(&mut self) {
        let Some(rare) = self.rare.as_mut() else {
            return;
        };
        let claims = std::mem::take(&mut rare.claims);
        if claims.is_empty() {
            return;
        }
        let mine = self.estimate();
        let lies: Vec<Violation> = claims
            .iter()
            .filter(|(_, value)| !self.exactly_close(&mine, value))
            .map(|&(peer, _)| Violation::Contradicts {
                peer: peer as usize,
                kind: Kind::Done,
                what: Contradiction::ResultValue,
            })
            .collect();
        self.rare().misbehaviour.extend(lies);
    }

    /// At the end of a dirty exact phase: adopts the exact result that
    /// neighbours announced during the phase, as the fallback would adopt
    /// it (unchecked: this member's value is no exact mean), if some that
    /// it holds live, or that said they finished before they left (see
    /// [`Engine::peer_finished`]), announced one and all such agree. Those
    /// neighbours may have ended since (a finished job's members exit), so
    /// the fallback could not ask them again. Claims of other members that
    /// departed meanwhile are dropped: a member that announced a result
    /// and then fell silent, crashed, was cut off or left mid-reduction is
    /// no witness. Returns true if it adopted one.
    pub(super) fn adopt_claim(&mut self) -> bool {
        let Some(rare) = self.rare.as_mut() else {
            return false;
        };
        let finished = std::mem::take(&mut rare.finished);
        let claims: Vec<(u32, Vec<f64>)> = std::mem::take(&mut rare.claims)
            .into_iter()
            .filter(|&(peer, _)| !self.events.has_departed(peer) || finished.contains(&peer))
            .collect();
        let Some((_, first)) = claims.first() else {
            return false;
        };
        if !claims.iter().all(|(_, v)| self.exactly_close(first, v)) {
            return false; // someone lies; the fallback goes on
        }
        let Some(rounds) = self.exact_rounds() else {
            return false;
        };
        let header = Header {
            view: self.events.id(),
            ..Header::new(Kind::Done, rounds)
        };
        self.adopt_done(&Message::new(header, &[], first));
        true
    }

    /// Misbehaviour this member found outside [`Engine::receive`] (which
    /// returns what it finds at once): results announced during the exact
    /// phase that turned out, once this member held the exact mean, not to
    /// be it. Each is a [`Violation::Contradicts`]; hosts treat it like a
    /// violation returned by `receive` — report the sender and cut it off
    /// ([`Engine::peer_suspected`]). Call after [`Engine::advance`];
    /// empty in honest runs.
    pub fn take_misbehaviour(&mut self) -> Vec<Violation> {
        self.rare
            .as_mut()
            .map(|r| std::mem::take(&mut r.misbehaviour))
            .unwrap_or_default()
    }

    /// True if a finished member should answer `from`'s round message for
    /// `round` with that round: it is behind, the round is still held, and
    /// (in the exact phase) the two were partners in it.
    pub(super) fn owes_round(&self, from: u32, round: u32) -> bool {
        if self.phase != Phase::Done || round >= self.round || round + self.hist_len <= self.round {
            return false;
        }
        match self.exact_rounds() {
            Some(rounds) if round < rounds => ExactPlan::new(self.members)
                .pairing(self.id, round)
                .is_some_and(|p| p.peer == from),
            _ => true,
        }
    }

    /// True if an exact result from `from` could include this member's
    /// input: this member sent the exact-phase message through which its
    /// input reaches `from` (see `ExactPlan::carried_round`). Before that,
    /// no member can hold the exact mean, so an exact result is a lie
    /// whatever happens later — a liar that announces one early and then
    /// departs would otherwise look like a member that finished and left.
    fn could_carry_my_input(&self, from: u32) -> bool {
        let plan = ExactPlan::new(self.members);
        match plan.carried_round(from, self.id) {
            Some(r) if r < 64 => self.sent_bits & (1 << r) != 0,
            _ => true,
        }
    }

    /// The number of exact rounds, for the exact schedule.
    fn exact_rounds(&self) -> Option<u32> {
        (self.schedule == Schedule::Exact).then(|| ExactPlan::new(self.members).rounds())
    }

    /// True for the result of a clean exact phase: after the plan's
    /// rounds, every member contributing, residual 0.
    fn clean_exact_shape(&self, h: &Header, events: &[Event]) -> bool {
        self.exact_rounds() == Some(h.round) && events.is_empty() && h.streak == 0.0
    }

    /// True if `events` name a departure (of another member) or an input
    /// change this member does not know of.
    fn unknown_events(&self, events: &[Event]) -> bool {
        events.iter().any(|&e| match e {
            Event::Departed { member } => member != self.id && !self.events.has_departed(member),
            Event::InputChanged { .. } => !self.events.contains(e),
            Event::Gone { .. } => false,
        })
    }

    /// True if two exact means agree (see [`EXACT_AGREEMENT`]).
    fn exactly_close(&self, a: &[f64], b: &[f64]) -> bool {
        let norm = |x: &[f64]| x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let d = self.dim;
        let w = self.width();
        let seen = (0..self.hist_len as usize)
            .map(|k| norm(&self.buf[(1 + k) * w..(1 + k) * w + d]))
            .fold(norm(self.input()), f64::max);
        let scale = seen.max(norm(a)).max(norm(b));
        let bound = EXACT_AGREEMENT * scale;
        a.iter().zip(b).all(|(x, y)| (x - y).abs() <= bound)
    }

    /// True if an iterative result `theirs` lies within the convergence
    /// tolerance of `mine` (see [`ITERATIVE_SLACK`]).
    fn iteratively_close(&self, mine: &[f64], theirs: &[f64]) -> bool {
        let norm = |x: &[f64]| x.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let scale = norm(mine);
        let bound =
            ITERATIVE_SLACK * self.tol * scale + 64.0 * f64::EPSILON * scale.max(norm(theirs));
        mine.iter().zip(theirs).all(|(x, y)| (x - y).abs() <= bound)
    }
}
