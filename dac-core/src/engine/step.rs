//! Completing rounds: the exact phase, the iterative phase and termination.

use super::message::{AbortReason, FLAG_DIRTY};
use super::state::{Acc, EMPTY, Inbox, Phase, RoundMeta};
use super::view::ViewId;
use super::{Engine, Progress};
use crate::reduction::Contributors;
use crate::schedule::{ExactPlan, Schedule};

impl Engine {
    /// Completes the current round if every message it needs is here and
    /// this round's own message went out (see [`Engine::poll_outgoing`]).
    ///
    /// Call it after receiving messages; while it returns
    /// [`Progress::Advanced`], poll and call it again (messages for the next
    /// round may already be buffered).
    pub fn advance(&mut self) -> Progress {
        if self.phase != Phase::Running {
            return Progress::Finished;
        }
        if let Some(plan) = self.plan {
            if self.round >= plan.rounds() {
                self.conclude_exact();
                return self.progress_after_step();
            }
        } else if self.peers.is_empty()
            && !self.reconfigure
            && self.rare.as_ref().is_none_or(|r| r.joins.is_empty())
        {
            // Nobody else's mass can reach this member: its value is its
            // own input. The current mass may still hold flows to
            // neighbours dropped since it was computed, so it is reset.
            let (w, at) = (self.width(), self.hist_offset(self.round));
            self.buf.copy_within(0..w, at);
            let others = (0..self.members()).filter(|&r| r != self.id());
            let mine = [(self.id(), self.input_seq)];
            self.finish(
                0.0,
                Contributors::with_versions(self.members(), others, mine),
            );
            return Progress::Finished;
        }
        // A member waiting for the leader's result is past convergence:
        // the round limit no longer applies to it.
        if self.round >= self.max_rounds && !self.settling {
            let residual = if self.last_epoch.is_finite() {
                self.last_epoch
            } else if self.epoch > 0.0 {
                self.epoch
            } else {
                f64::INFINITY
            };
            self.abort(AbortReason::NotConverged {
                rounds: self.round,
                residual,
            });
            return Progress::Finished;
        }
        if !self.sent && self.round_target().is_some() {
            // Peers need this round's message before we move past it.
            return Progress::Blocked;
        }
        let stepped = match self.plan {
            Some(plan) => self.step_exact(plan),
            None => self.step_iterative(),
        };
        if !stepped {
            return Progress::Blocked;
        }
        self.progress_after_step()
    }

    pub(super) fn progress_after_step(&mut self) -> Progress {
        self.wait_ticks = 0;
        if self.phase == Phase::Running {
            Progress::Advanced
        } else {
            Progress::Finished
        }
    }

    /// One round of dimension exchange: average with this round's partner.
    ///
    /// The flows move the mass, as in every schedule, so that a departure
    /// removes exactly the departed member's share. A member that is clean
    /// (every exchange so far happened) also computes its next mass
    /// directly, as `(1 − give)·mine + take·theirs`: the two partners then do
    /// the same arithmetic on the same two messages in either order (the
    /// fractions are 0, ½ and 1), so they hold the same bits, and at the
    /// end of the phase every clean member holds the same bits — the same
    /// result on every member, not only the same within rounding. (The
    /// mass `input − Σ flows` differs from it by rounding only; a member
    /// that turns dirty goes on from that one.)
    fn step_exact(&mut self, plan: ExactPlan) -> bool {
        let r = self.round;
        let (me, next) = (self.hist_offset(r), self.hist_offset(r + 1));
        let w = self.width();
        // Whether the next mass was written already.
        let mut written = false;
        if let Some(pairing) = plan.pairing(self.id, r) {
            let present = !self.events.has_departed(pairing.peer);
            match self.peer_index(pairing.peer).filter(|_| present) {
                // The partner departed: this value will miss its share.
                None => self.dirty = true,
                Some(p) => {
                    let Some(s) = self.slot_for(p, r) else {
                        return false;
                    };
                    if self.slot(p, s).dirty() {
                        self.dirty = true;
                    }
                    let flow = self.flow_offset(p);
                    let Some(inbox) = self.inbox.as_deref() else {
                        return false; // unreachable: the slot was found
                    };
                    let them = &inbox.values[(2 * p + s) * w..(2 * p + s + 1) * w];
                    let (keep, take) = (1.0 - pairing.give, pairing.take);
                    written = !self.dirty;
                    for (k, &theirs) in them.iter().enumerate() {
                        let mine = self.buf[me + k];
                        self.buf[flow + k] += pairing.give * mine - take * theirs;
                        if written {
                            self.buf[next + k] = keep * mine + take * theirs;
                        }
                    }
                }
            }
        } else if !self.dirty {
            // No partner this round: the mass stays as it is.
            self.buf.copy_within(me..me + w, next);
            written = true;
        }
        if written {
            self.finish_round_w::<0>(Some(Next::Written));
        } else {
            self.finish_round();
        }
        if self.phase == Phase::Running && self.round >= plan.rounds() {
            self.conclude_exact();
        }
        true
    }

    /// End of the exact phase: a member whose every exchange happened holds
    /// the exact mean of all inputs and stops; the others fall back to
    /// Metropolis weights on the live graph, from the current flows, and
    /// adopt the exact result from any neighbour that has it.
    fn conclude_exact(&mut self) {
        self.plan = None;
        if !self.dirty {
            self.finish(0.0, Contributors::all(self.members()));
            self.check_claims();
            return;
        }
        // A dirty value is no exact mean: the results neighbours announced
        // during the phase cannot be checked against it, and are adopted as
        // they would be in the fallback (see `Engine::adopt_claim`).
        if self.adopt_claim() {
            return;
        }
        // Now drop the flows of members that departed during the phase.
        let departed: Vec<u32> = self
            .peers
            .iter()
            .copied()
            .filter(|&id| self.events.has_departed(id))
            .collect();
        for id in departed {
            self.remove_peer(id);
        }
        self.counter = 0;
        self.streak = 0.0;
        self.epoch = 0.0;
        self.record_meta(self.round);
        self.round_due = true;
    }

    /// One round of the iterative schedules (Laplacian, Metropolis, and the
    /// exact schedule's fallback) plus the termination gossip.
    fn step_iterative(&mut self) -> bool {
        match self.width() {
            2 => self.step_iterative_w::<2>(),
            3 => self.step_iterative_w::<3>(),
            _ => self.step_iterative_w::<0>(),
        }
    }

    /// [`Engine::step_iterative`] for mass vectors of `W` values, or of any
    /// width for `W = 0`: small widths get their own copy with the loops
    /// unrolled (the arithmetic, and its order, is the same).
    fn step_iterative_w<const W: usize>(&mut self) -> bool {
        let t = self.round;
        let joins = self.has_joins();
        if !self.ready(t, joins) {
            return false;
        }
        let meta = self.meta_for(t);
        let w = if W == 0 { self.width() } else { W };
        let n = self.peers.len();
        let me_at = self.hist_offset(t);
        let flow_base = self.flow_offset(0);
        let rare = self.rare.as_deref();
        let (head, flows) = self.buf.split_at_mut(flow_base);
        let mut fold = EdgeFold::new::<W>(
            self.schedule,
            &head[me_at..me_at + w],
            meta,
            self.events.id(),
        );
        // `ready` found each message in the inbox (if there are peers).
        let (tags, values) = match self.inbox.as_deref() {
            Some(Inbox { tags, values }) => (&tags[..], &values[..]),
            None => (&[][..], &[][..]),
        };
        let edges = self.peers.iter().zip(flows[..n * w].chunks_exact_mut(w));
        for (p, (&peer, flow)) in edges.enumerate() {
            if joins && since_in(rare, peer).is_none_or(|s| s > t) {
                fold.agreed = false; // a new edge is still opening
                continue;
            }
            let k = 2 * p + usize::from(tags[2 * p].round != t);
            let slot = tags[k];
            let them = &values[k * w..(k + 1) * w];
            fold.edge::<W>(flow, them, slot.degree(), slot.view);
        }
        let edges = fold.summary();
        let acc = self.take_acc(t);
        self.close_iterative::<W>(t, edges, acc, None);
        true
    }

    /// The termination gossip folded for round `t` (and the slot freed).
    fn take_acc(&mut self, t: u32) -> Acc {
        let slot = (t % 2) as usize;
        let acc = if self.acc[slot].round == t {
            self.acc[slot]
        } else {
            Acc::fresh(t)
        };
        self.acc[slot] = Acc::fresh(EMPTY);
        acc
    }

    /// The end of an iterative round `t`, after its edges: the residual,
    /// the termination counters and the move to the next round (`summed`:
    /// the next round's mass, if the caller summed it already).
    pub(super) fn close_iterative<const W: usize>(
        &mut self,
        t: u32,
        edges: EdgeSummary,
        acc: Acc,
        summed: Option<&[f64]>,
    ) {
        let window = self.diameter.max(1);
        let residual = if edges.active == 0 {
            0.0
        } else {
            f64::from(window) * edges.delta / edges.scale
        };
        self.last_residual = residual;
        let converged = edges.agreed && edges.weighted && residual <= self.tol;
        if converged {
            let window = self.counter.min(acc.min_counter);
            // The streak covers the same window as the counter: when the
            // window restarts, so does the streak.
            self.streak = if window == 0 {
                residual
            } else {
                self.streak.max(acc.max_streak).max(residual)
            };
            self.counter = window.saturating_add(1);
        } else {
            self.counter = 0;
            self.streak = residual;
        }
        let epoch = self.epoch.max(acc.max_epoch).max(residual);
        if (t + 1).is_multiple_of(window + 1) {
            self.last_epoch = epoch;
            self.epoch = 0.0;
        } else {
            self.epoch = epoch;
        }
        if self.counter > window && self.proposal == 0 {
            // Everyone within the window was converged `window` rounds ago;
            // the proposal reaches every member before the stop round.
            self.proposal = t + 1 + window + 1;
        }

        self.finish_round_w::<W>(summed.map(Next::Summed));
        if self.phase == Phase::Running && self.proposal != 0 {
            if self.proposal == self.round {
                // The same bytes on every member: one member finishes
                // with its estimate, and the others adopt its result as it
                // spreads (each estimate is within the tolerance of it;
                // `receive_done` checks that).
                if self.leads() {
                    let contributors = self.contributors();
                    self.finish(self.streak, contributors);
                } else if !self.settling {
                    self.settling = true;
                    self.settled_at = self.round;
                }
            } else if self.proposal < self.round {
                self.proposal = 0;
            }
        }
        // The result reaches every member within the diameter's rounds; a
        // leader that stays in the job and sends none (an insider's lie)
        // must not hold the others: past twice that, a member finishes
        // with its own estimate, as every member did before.
        if self.phase == Phase::Running
            && self.settling
            && self.round >= self.settled_at + 2 * (window + 1)
        {
            let contributors = self.contributors();
            self.finish(self.streak, contributors);
        }
    }

    /// True for the member that finishes an iterative phase with its own
    /// estimate: the lowest member this member does not hold departed.
    /// Every member reaches the stop round in the same view, so they all
    /// name the same one.
    fn leads(&self) -> bool {
        (0..self.members).find(|&m| !self.events.has_departed(m)) == Some(self.id)
    }

    /// True when every neighbour whose message round `t` needs has sent
    /// it, and no new edge blocks the round.
    fn ready(&self, t: u32, joins: bool) -> bool {
        if !joins {
            return (0..self.peers.len()).all(|p| self.slot_for(p, t).is_some());
        }
        self.peers
            .iter()
            .enumerate()
            .all(|(p, &id)| match self.since(id) {
                Some(since) if since <= t => self.slot_for(p, t).is_some(),
                Some(_) => true,
                // A new edge whose first round is not agreed yet: do not pass
                // our announced start before it is.
                None => self.join(id).is_none_or(|j| t < j.my_start),
            })
    }

    pub(super) fn slot_for(&self, p: usize, round: u32) -> Option<usize> {
        (0..2).find(|&s| self.slot(p, s).round == round)
    }

    fn meta_for(&mut self, round: u32) -> RoundMeta {
        let meta = self.meta[(round % 2) as usize];
        if meta.round == round {
            meta
        } else {
            self.record_meta(round);
            self.meta[(round % 2) as usize]
        }
    }

    /// Computes the next round's mass `M = v − Σ_j F_ij` and moves on.
    fn finish_round(&mut self) {
        self.finish_round_w::<0>(None);
    }

    /// [`Engine::finish_round`] for mass vectors of `W` values, or of any
    /// width for `W = 0` (as in [`Engine::step_iterative_w`]); `summed`
    /// says where the next mass is when the caller computed it (`None`:
    /// it is the input less the flows).
    fn finish_round_w<const W: usize>(&mut self, summed: Option<Next<'_>>) {
        let next = self.round + 1;
        let w = if W == 0 { self.width() } else { W };
        let out_at = self.hist_offset(next) - w; // offset within the history
        let flow_base = self.flow_offset(0);
        let n = self.peers.len();
        let (head, edges) = self.buf.split_at_mut(flow_base);
        let (input, history) = head.split_at_mut(w);
        let (out, input) = (&mut history[out_at..out_at + w], &input[..w]);
        let mut finite = true;
        match summed {
            Some(Next::Summed(m)) => {
                for k in 0..w {
                    finite &= m[k].is_finite();
                    out[k] = m[k];
                }
            }
            Some(Next::Written) => finite = out.iter().all(|x| x.is_finite()),
            None => {
                for k in 0..w {
                    // Summed in peer order: every member does the same
                    // arithmetic.
                    let mut m = input[k];
                    for flow in edges[..n * w].chunks_exact(w) {
                        m -= flow[k];
                    }
                    finite &= m.is_finite();
                    out[k] = m;
                }
            }
        }
        self.round = next;
        if !finite {
            self.abort(AbortReason::Overflow { rank: self.id });
            return;
        }
        self.record_meta(next);
        self.round_due = true;
        self.sent = false;
    }

    /// Records what this member sends for `round` (called on entering the
    /// round, and again if the view changes before the message went out).
    pub(super) fn record_meta(&mut self, round: u32) {
        let flags = if self.dirty { FLAG_DIRTY } else { 0 };
        if self.dirty && round < 64 {
            self.dirty_bits |= 1 << round;
        }
        self.meta[(round % 2) as usize] = RoundMeta {
            round,
            view: self.events.id(),
            degree: self.active_degree(round),
            counter: self.counter,
            flags,
        };
    }
}

/// Flows the round shortcut can save on the stack before updating them
/// (16 neighbours with `d = 1`); more are saved on the heap.
pub(super) const SAVED_FLOWS: usize = 32;

/// Metropolis weight `1/(1 + max(d_i, d_j))`, or the Laplacian step.
fn weight(schedule: Schedule, my_degree: u32, their_degree: u32) -> f64 {
    match schedule {
        Schedule::Laplacian { eps } => eps,
        Schedule::Metropolis | Schedule::Exact => {
            1.0 / (1.0 + f64::from(my_degree.max(their_degree)))
        }
    }
}

/// Running totals of an iterative round over its edges.
pub(super) struct EdgeFold<'a> {
    /// This member's mass for the round, its weight and the weight's
    /// inverse.
    me: &'a [f64],
    w_me: f64,
    inv_me: f64,
    /// `max(1, ‖estimate‖∞)`.
    scale: f64,
    meta: RoundMeta,
    schedule: Schedule,
    /// The weight of an edge to a neighbour of at most this member's degree
    /// (computed once: most edges have it).
    alpha_mine: f64,
    /// Largest distance to a neighbour's estimate.
    delta: f64,
    /// Every edge moved mass under the round's view.
    agreed: bool,
    active: usize,
}

/// What [`Engine::close_iterative`] needs of a round's edges.
pub(super) struct EdgeSummary {
    delta: f64,
    scale: f64,
    agreed: bool,
    /// This member's weight is positive.
    weighted: bool,
    active: usize,
}

impl<'a> EdgeFold<'a> {
    #[inline(always)]
    pub(super) fn new<const W: usize>(
        schedule: Schedule,
        me: &'a [f64],
        meta: RoundMeta,
        view_now: ViewId,
    ) -> EdgeFold<'a> {
        let d = if W == 0 { me.len() - 1 } else { W - 1 };
        let w_me = me[d];
        let inv_me = 1.0 / w_me;
        // Capped, so that without weight (no estimate, `delta` infinite)
        // the residual is infinite rather than the NaN of ∞/∞: a mass can
        // pass through zero weight after the exact phase dropped a
        // departed partner's flows.
        let scale = me[..d]
            .iter()
            .fold(1.0f64, |a, s| a.max((s * inv_me).abs()))
            .min(f64::MAX);
        EdgeFold {
            me,
            w_me,
            inv_me,
            scale,
            meta,
            schedule,
            alpha_mine: weight(schedule, meta.degree, meta.degree),
            delta: 0.0,
            agreed: meta.view == view_now,
            active: 0,
        }
    }

    /// One edge: the distance to the neighbour's estimate, and (when both
    /// sent under the same view) the flow increment. Both ends compute
    /// ±alpha·(M_i − M_j) from the same two messages, so the flows stay
    /// exactly antisymmetric.
    #[inline(always)]
    pub(super) fn edge<const W: usize>(
        &mut self,
        flow: &mut [f64],
        them: &[f64],
        degree: u32,
        view: ViewId,
    ) {
        let w = if W == 0 { self.me.len() } else { W };
        let d = w - 1;
        let me = &self.me[..w];
        self.active += 1;
        let w_them = them[d];
        if self.w_me > 0.0 && w_them > 0.0 {
            let inv_them = 1.0 / w_them;
            // Index loops: with d = 1 the setup of iterator adapters
            // costs more than the loop body.
            for c in 0..d {
                self.delta = self
                    .delta
                    .max((me[c] * self.inv_me - them[c] * inv_them).abs());
            }
        } else {
            self.delta = f64::INFINITY;
        }
        if view != self.meta.view {
            self.agreed = false;
            return;
        }
        let alpha = if degree <= self.meta.degree {
            self.alpha_mine
        } else {
            weight(self.schedule, self.meta.degree, degree)
        };
        for k in 0..w {
            flow[k] += alpha * (me[k] - them[k]);
        }
    }

    pub(super) fn summary(&self) -> EdgeSummary {
        EdgeSummary {
            delta: self.delta,
            scale: self.scale,
            agreed: self.agreed,
            weighted: self.w_me > 0.0,
            active: self.active,
        }
    }
}

/// [`Engine::since`] on the split-off rare state (for loops that borrow
/// the buffers mutably).
fn since_in(rare: Option<&super::state::Rare>, peer: u32) -> Option<u32> {
    match rare.and_then(|r| r.joins.iter().find(|j| j.peer == peer)) {
        Some(join) => join.since(),
        None => Some(0),
    }
}

/// Where the next round's mass is, when the caller computed it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Next<'a> {
    /// In this slice, summed with the same arithmetic as the flows.
    Summed(&'a [f64]),
    /// In the next round's history slot already (the exact schedule).
    Written,
}
