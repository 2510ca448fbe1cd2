//! The consensus engine: one member's state machine, with no I/O.
//!
//! # How it works
//!
//! Each member keeps its input `v_i` and a *flow* `F_ij` per neighbour; its
//! mass is `M_i = v_i − Σ_j F_ij` (a `d`-vector of sums plus one weight, so
//! its estimate is `S_i / W_i`). A round moves mass along edges by changing
//! flows antisymmetrically (`F_ji = −F_ij`), so the total mass — the sum of
//! the inputs — never changes, and dropping a departed neighbour's flow
//! removes exactly its contribution.
//!
//! Rounds are *synchronised per edge*: a member completes round `t` only
//! when it holds every required neighbour's round-`t` message, and both
//! ends of an edge compute the flow increment from the same pair of
//! messages. Lost, duplicated, delayed or reordered messages therefore
//! change nothing but timing: the logical execution is the lossless one,
//! bit for bit. A host retransmits (via [`Engine::tick`]) and the engine
//! answers stale messages with the round the sender missed.
//!
//! Departures and input changes are *events*; the set of events a member
//! knows is its *view*. An edge only moves mass in a round when both ends
//! sent that round under the same view, which keeps flows antisymmetric
//! while the news spreads.
//!
//! Termination is global and agreed: each member counts the rounds for
//! which everything within its reach has been converged (a synchronous
//! min-gossip); after `D + 1` such rounds (`D` bounds the diameter) every
//! member was converged at a common round, and a stop round `D + 1` rounds
//! ahead is proposed and flooded, so all members stop at the same round. A
//! member that finished answers with its result, so it is never mistaken
//! for a crashed one, and a member that is still running adopts it.
//!
//! # Driving an engine
//!
//! ```text
//! loop {
//!     engine.tick();                                   // once per time step
//!     for (from, msg) in received { engine.receive(from, &msg)?; }
//!     loop {
//!         engine.poll_outgoing(|target, msg| send(target, msg));
//!         if engine.advance() != Progress::Advanced { break; }
//!     }
//!     if engine.status().reconfigure { engine.set_peers(&repaired, diameter)?; }
//! }
//! ```
//!
//! The host's side of the contract:
//!
//! - `advance` completes a round only after that round's own message went
//!   out through `poll_outgoing`, so poll between advances;
//! - on lossy links, call `tick` once per time step (it drives
//!   retransmission); reliable links need not;
//! - report departures with `peer_departed` (a failure detector), and hand
//!   over a neighbour set that keeps the live members connected within the
//!   diameter bound when `status().reconfigure` asks — sets only grow,
//!   as with [`crate::Graph::repaired`].

mod check;
mod lockstep;
mod membership;
mod message;
mod outgoing;
mod receive;
mod state;
mod step;
#[cfg(test)]
mod tests;
mod view;

pub use message::{
    AbortReason, Contradiction, FLAG_ACK, FLAG_ACKED, FLAG_DIRTY, Header, Kind, Message,
    OwnedMessage, Target, Violation,
};
pub use state::Phase;
pub use view::{Event, ViewId};

use state::{Acc, EMPTY, Inbox, Join, Rare, RoundMeta, SLOT_DIRTY, Slot};
use view::EventSet;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::reduction::Reduction;
use crate::schedule::{ExactPlan, Schedule};

/// Who a member is and whom it talks to.
#[derive(Clone, Copy, Debug)]
pub struct MemberSetup<'a> {
    /// This member's id in `0..members`.
    pub id: usize,
    /// Number of members in the job.
    pub members: usize,
    /// Its neighbours (any order; duplicates are ignored).
    pub peers: &'a [usize],
    /// An upper bound on the diameter of the members' graph (the
    /// termination window; too small a bound makes termination unsound,
    /// too large a bound only costs rounds).
    pub diameter_bound: usize,
}

/// What [`Engine::advance`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Completed a round; call again, there may be more to do.
    Advanced,
    /// Waiting for messages (or a hello from a new neighbour).
    Blocked,
    /// The reduction ended (see [`Engine::take_outcome`]).
    Finished,
}

/// A snapshot of one member's state ([`Engine::status`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Status {
    /// This member's id in `0..members`.
    pub id: usize,
    /// Number of members in the job.
    pub members: usize,
    /// Length `d` of the reduced vectors (1 for a member that failed
    /// before it started).
    pub dim: usize,
    /// The current round (rounds completed so far).
    pub round: u32,
    /// Where the lifecycle is.
    pub phase: Phase,
    /// True while the exact (dimension-exchange) phase lasts.
    pub exact: bool,
    /// The relative residual bound measured in the last completed
    /// iterative round: `D·max_j ‖e_i − e_j‖∞ / max(1, ‖e_i‖∞)` over the
    /// neighbours, which bounds the distance to the exact mean once every
    /// member's is below it. Infinite before the first iterative round.
    pub residual: f64,
    /// Fingerprint of the view: it changes when a departure or an input
    /// change becomes known (hosts compare it to notice news).
    pub view: ViewId,
    /// Current neighbours, ascending: the receivers of
    /// [`Target::Peers`].
    pub peers: Vec<usize>,
    /// Neighbours whose message (or, for a new edge, hello) the current
    /// round waits for: where a failure detector should look.
    pub waiting_for: Vec<usize>,
    /// Departed members this member knows of, ascending.
    pub departed: Vec<usize>,
    /// The departed members known to be gone (proven, not only suspected),
    /// ascending.
    pub gone: Vec<usize>,
    /// A neighbour departed: the host should hand over the repaired
    /// neighbour set with [`Engine::set_peers`] (hosts that do not repair
    /// may ignore this; the graph must stay connected).
    pub reconfigure: bool,
}

/// One member's consensus state machine. See the [module docs](self).
///
/// The fields a round writes come first and together (`repr(C)` keeps
/// the order), so that a round dirties few cache lines: a million-member
/// simulation is bound by memory traffic.
#[derive(Debug)]
#[repr(C)]
pub struct Engine {
    // ----- written every round -----
    /// Termination gossip from the neighbours, for the current and next round.
    acc: [Acc; 2],
    /// What this member sent for the current and previous round.
    meta: [RoundMeta; 2],
    /// Largest relative residual since the current convergence streak began.
    streak: f64,
    /// Largest relative residual in the current epoch (`D + 1` rounds).
    epoch: f64,
    /// `epoch` at the end of the last completed epoch (reported on failure).
    last_epoch: f64,
    /// Relative residual bound measured in the last iterative round.
    last_residual: f64,
    /// The current round: the mass in history slot `round` is the state
    /// this member broadcasts for it.
    round: u32,
    /// Rounds of certified convergence around this member.
    counter: u32,
    /// Agreed stop round (0: none known).
    proposal: u32,
    /// This member reached the agreed stop round of an iterative phase and
    /// is not the one that finishes there (see `Engine::leads`): it waits
    /// for that member's result, which it adopts byte for byte, instead of
    /// finishing with its own estimate. A view change clears it.
    settling: bool,
    /// The round at which `settling` began (meaningful while it is set).
    settled_at: u32,
    /// Ticks since the last completed round.
    wait_ticks: u32,
    phase: Phase,
    /// A round message for the current round has been handed out.
    sent: bool,
    /// The current round's message should go out at the next poll.
    round_due: bool,
    /// A whole tick passed without progress: resend the round message.
    retransmit: bool,
    /// A neighbour has another view: attach the events to the next round
    /// message.
    attach_events: bool,
    /// Exact phase: this member's value misses part of the inputs.
    dirty: bool,
    /// The view changed: announce the events at the next poll.
    events_due: bool,
    /// The reduction ended: announce the result at the next poll.
    terminal_due: bool,
    /// A neighbour departed: the host should hand over a repaired set.
    reconfigure: bool,
    // ----- read every round, changed rarely -----
    id: u32,
    members: u32,
    max_rounds: u32,
    /// Bound `D` on the graph diameter: the termination window.
    diameter: u32,
    /// Rounds of mass history kept for resends (2, or the exact rounds + 1,
    /// rounded up to a power of two so that slots are found by masking).
    hist_len: u32,
    /// How many times this member's input changed.
    input_seq: u32,
    tol: f64,
    schedule: Schedule,
    /// The dimension-exchange plan while the exact phase lasts.
    plan: Option<ExactPlan>,
    /// Exact phase: bit `r` is the dirty flag sent in round `r`.
    dirty_bits: u64,
    /// Exact phase: bit `r` is set once this member's message for round
    /// `r` went out (the causal check of results, `Engine::receive_done`).
    sent_bits: u64,
    dim: usize,
    /// Departures and input changes this member knows of (its view).
    events: EventSet,
    /// `input (w) | history (hist_len × w) | flows (one w per peer)` with
    /// `w = dim + 1` (sums, then weight).
    buf: Vec<f64>,
    /// Neighbours, ascending.
    peers: Vec<u32>,
    /// Their messages that wait for their round.
    inbox: Option<Box<Inbox>>,
    /// Joins, owed replies and the result (see [`Rare`]).
    rare: Option<Box<Rare>>,
}

impl Engine {
    /// Creates a member with its input.
    ///
    /// A bad input does not fail construction: an empty or non-finite
    /// input, or a Laplacian step too large for this member's degree, gives
    /// an engine that has already failed with that error. It tells every
    /// peer at the first [`Engine::poll_outgoing`], and answers every
    /// message with it, so that all members fail with the same typed error
    /// instead of waiting for this one; its outcome is the error. The host
    /// drives it like any other engine.
    ///
    /// # Errors
    /// A setup no host should hand over: an invalid configuration, an id or
    /// peer outside `0..members`, a peer equal to `id`, or (exact schedule)
    /// a missing pair. Nobody else is told.
    pub fn new(config: &Config, setup: MemberSetup<'_>, input: &[f64]) -> Result<Engine> {
        config.validate()?;
        let MemberSetup {
            id,
            members,
            peers,
            diameter_bound,
        } = setup;
        if members == 0 || members > crate::graph::MAX_NODES {
            return Err(Error::config(
                "members",
                format!("must be in 1..={}, got {members}", crate::graph::MAX_NODES),
            ));
        }
        if id >= members {
            return Err(Error::UnknownNode { node: id, members });
        }
        let mut ids: Vec<u32> = Vec::with_capacity(peers.len());
        for &p in peers {
            if p >= members {
                return Err(Error::UnknownNode { node: p, members });
            }
            if p == id {
                return Err(Error::graph(format!("member {id} lists itself as a peer")));
            }
            ids.push(p as u32);
        }
        ids.sort_unstable();
        ids.dedup();

        let plan = (config.schedule == Schedule::Exact).then(|| ExactPlan::new(members as u32));
        if let Some(plan) = plan {
            for round in 0..plan.rounds() {
                if let Some(p) = plan
                    .pairing(id as u32, round)
                    .filter(|p| ids.binary_search(&p.peer).is_err())
                {
                    return Err(Error::ExactNeedsEdge {
                        a: id,
                        b: p.peer as usize,
                        round,
                    });
                }
            }
        }
        if let Some(reason) = refusal(config.schedule, id, ids.len(), input) {
            return Ok(Engine::aborted(setup, reason));
        }
        Ok(Engine::assemble(
            config,
            id as u32,
            members as u32,
            ids,
            input,
            diameter_bound,
        ))
    }

    /// Builds the state of a validated member.
    fn assemble(
        config: &Config,
        id: u32,
        members: u32,
        ids: Vec<u32>,
        input: &[f64],
        diameter_bound: usize,
    ) -> Engine {
        let plan = (config.schedule == Schedule::Exact).then(|| ExactPlan::new(members));
        let dim = input.len();
        let w = dim + 1;
        let hist_len = plan.map_or(2, |p| (p.rounds() + 1).max(2).next_power_of_two());
        let mut buf = vec![0.0; (1 + hist_len as usize + ids.len()) * w];
        buf[..dim].copy_from_slice(input);
        buf[dim] = 1.0;
        buf.copy_within(0..w, w); // mass of round 0 = input
        let mut engine = Engine {
            id,
            members,
            dim,
            schedule: config.schedule,
            tol: config.tol,
            max_rounds: config.max_rounds,
            diameter: diameter_bound.min(u32::MAX as usize / 4) as u32,
            plan,
            hist_len,
            round: 0,
            phase: Phase::Running,
            dirty: false,
            dirty_bits: 0,
            sent_bits: 0,
            events: EventSet::default(),
            input_seq: 0,
            counter: 0,
            streak: 0.0,
            epoch: 0.0,
            last_epoch: f64::INFINITY,
            last_residual: f64::INFINITY,
            proposal: 0,
            settling: false,
            settled_at: 0,
            acc: [Acc::fresh(EMPTY); 2],
            meta: [RoundMeta::NONE; 2],
            buf,
            peers: ids,
            inbox: None,
            sent: false,
            round_due: true,
            retransmit: false,
            events_due: false,
            attach_events: false,
            terminal_due: false,
            reconfigure: false,
            wait_ticks: 0,
            rare: None,
        };
        engine.record_meta(0);
        engine
    }

    /// A member that failed before it could start, for a reason the
    /// engine cannot see itself (an input longer than the transport
    /// carries, an invalid argument of a distributed operation): it tells
    /// every peer, and answers every message, with `reason`, so that all
    /// members fail with the same typed error instead of waiting for it.
    /// [`Engine::new`] builds one for a bad input. The setup is used as far
    /// as it is valid.
    pub fn aborted(setup: MemberSetup<'_>, reason: AbortReason) -> Engine {
        let members = setup.members.clamp(1, crate::graph::MAX_NODES);
        let id = setup.id.min(members - 1);
        let mut ids: Vec<u32> = setup
            .peers
            .iter()
            .filter(|&&p| p < members && p != id)
            .map(|&p| p as u32)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let config = Config {
            schedule: Schedule::Metropolis,
            ..Config::default()
        };
        let mut engine = Engine::assemble(
            &config,
            id as u32,
            members as u32,
            ids,
            &[0.0],
            setup.diameter_bound,
        );
        engine.abort(reason);
        engine
    }

    // ----- queries -----------------------------------------------------------

    /// A snapshot of this member's state, for hosts and tools.
    pub fn status(&self) -> Status {
        Status {
            id: self.id as usize,
            members: self.members as usize,
            dim: self.dim,
            round: self.round,
            phase: self.phase,
            exact: self.plan.is_some(),
            residual: self.last_residual,
            view: self.events.id(),
            peers: self.peers().collect(),
            waiting_for: self.waiting_for(),
            departed: self.departed(),
            gone: self
                .events
                .as_slice()
                .iter()
                .filter_map(|e| match *e {
                    Event::Gone { member } => Some(member as usize),
                    _ => None,
                })
                .collect(),
            reconfigure: self.reconfigure,
        }
    }

    /// Takes the result out once the reduction ended (the engine keeps
    /// answering peers); `None` before, and after it was taken.
    pub fn take_outcome(&mut self) -> Option<Result<Reduction>> {
        self.rare.as_mut().and_then(|r| r.outcome.take())
    }

    // ----- the simulator's and the unit tests' reads (no allocation) -------

    pub(crate) fn id(&self) -> usize {
        self.id as usize
    }

    pub(crate) fn members(&self) -> usize {
        self.members as usize
    }

    pub(crate) fn round(&self) -> u32 {
        self.round
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    pub(crate) fn outcome(&self) -> Option<&Result<Reduction>> {
        self.rare.as_ref().and_then(|r| r.outcome.as_ref())
    }

    /// The input currently in effect (`d` values).
    pub(crate) fn input(&self) -> &[f64] {
        &self.buf[..self.dim]
    }

    /// The mass of the current round: `d` sums, then the weight.
    pub(crate) fn mass(&self) -> &[f64] {
        self.hist(self.round)
    }

    pub(crate) fn peers(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.peers.iter().map(|&p| p as usize)
    }

    /// The flow to `peer` (`d + 1` values), if it is a neighbour.
    pub(crate) fn flow(&self, peer: usize) -> Option<&[f64]> {
        let p = self.peer_index(peer as u32)?;
        let w = self.dim + 1;
        let at = self.flow_offset(p);
        Some(&self.buf[at..at + w])
    }

    pub(crate) fn view(&self) -> ViewId {
        self.events.id()
    }

    /// The current estimate of the mean, `S / W` (NaN while the weight is
    /// zero, as for a folded-in member in the exact schedule).
    pub(crate) fn estimate(&self) -> Vec<f64> {
        let m = self.mass();
        let w = m[self.dim];
        m[..self.dim].iter().map(|s| s / w).collect()
    }

    pub(crate) fn residual(&self) -> f64 {
        self.last_residual
    }

    pub(crate) fn departed(&self) -> Vec<usize> {
        self.events.departed().map(|d| d as usize).collect()
    }

    pub(crate) fn pending_reconfiguration(&self) -> bool {
        self.reconfigure
    }

    /// Neighbours whose message (or, for a new edge, hello) the current
    /// round is waiting for.
    fn waiting_for(&self) -> Vec<usize> {
        if self.phase != Phase::Running {
            return Vec::new();
        }
        let t = self.round;
        if let Some(plan) = self.plan {
            return plan
                .pairing(self.id, t)
                .map(|p| p.peer)
                .filter(|&p| !self.events.has_departed(p))
                .and_then(|p| self.peer_index(p))
                .filter(|&i| self.slot_for(i, t).is_none())
                .map(|i| vec![self.peers[i] as usize])
                .unwrap_or_default();
        }
        (0..self.peers.len())
            .filter(|&i| {
                let id = self.peers[i];
                match self.since(id) {
                    Some(since) => since <= t && self.slot_for(i, t).is_none(),
                    None => self.join(id).is_some_and(|j| t >= j.my_start),
                }
            })
            .map(|i| self.peers[i] as usize)
            .collect()
    }

    // ----- internals shared by the submodules -------------------------------

    fn width(&self) -> usize {
        self.dim + 1
    }

    fn hist_offset(&self, round: u32) -> usize {
        (1 + (round & (self.hist_len - 1)) as usize) * self.width()
    }

    fn hist(&self, round: u32) -> &[f64] {
        let at = self.hist_offset(round);
        &self.buf[at..at + self.width()]
    }

    fn flow_offset(&self, peer_index: usize) -> usize {
        (1 + self.hist_len as usize + peer_index) * self.width()
    }

    /// The tag of `peer_index`'s buffered message `slot` (free while
    /// nothing was ever buffered).
    fn slot(&self, peer_index: usize, slot: usize) -> Slot {
        self.inbox
            .as_ref()
            .and_then(|inbox| inbox.tags.get(2 * peer_index + slot).copied())
            .unwrap_or(Slot::FREE)
    }

    /// The slot a round-`round` message of `peer_index` goes to: `None`
    /// for a duplicate, or when both slots hold rounds still to come.
    fn slot_to_store(&self, peer_index: usize, round: u32) -> Option<usize> {
        let slots = [self.slot(peer_index, 0), self.slot(peer_index, 1)];
        if slots.iter().any(|s| s.round == round) {
            return None;
        }
        let current = self.round;
        slots
            .iter()
            .position(|s| s.round == EMPTY || s.round < current)
    }

    /// Buffers round message `h` (mass `mass`) of `peer_index` in `slot`.
    fn store(&mut self, peer_index: usize, slot: usize, h: &Header, mass: &[f64]) {
        let dirty = if h.flags & FLAG_DIRTY != 0 {
            SLOT_DIRTY
        } else {
            0
        };
        let tag = Slot {
            round: h.round,
            degree_flags: (h.degree & !SLOT_DIRTY) | dirty,
            view: h.view,
        };
        let w = self.width();
        let n = self.peers.len();
        let inbox = self.inbox.get_or_insert_with(|| {
            Box::new(Inbox {
                tags: vec![Slot::FREE; 2 * n],
                values: vec![0.0; 2 * n * w],
            })
        });
        let k = 2 * peer_index + slot;
        inbox.tags[k] = tag;
        inbox.values[k * w..(k + 1) * w].copy_from_slice(mass);
    }

    fn peer_index(&self, id: u32) -> Option<usize> {
        self.peers.binary_search(&id).ok()
    }

    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    fn join(&self, peer: u32) -> Option<&Join> {
        self.rare.as_ref()?.joins.iter().find(|j| j.peer == peer)
    }

    /// First round for which `peer` must send us its message (`None`
    /// while a new edge's start is not agreed yet).
    fn since(&self, peer: u32) -> Option<u32> {
        match self.join(peer) {
            Some(join) => join.since(),
            None => Some(0),
        }
    }

    /// True while some new edge is still being opened.
    fn has_joins(&self) -> bool {
        self.rare.as_ref().is_some_and(|r| !r.joins.is_empty())
    }

    /// Neighbours whose messages round `round` needs.
    fn active_degree(&self, round: u32) -> u32 {
        if !self.has_joins() {
            return self.peers.len() as u32;
        }
        self.peers
            .iter()
            .filter(|&&p| self.since(p).is_some_and(|s| s <= round))
            .count() as u32
    }
}

/// Why a member cannot start with `input`: an empty or non-finite input,
/// or a Laplacian step too large for its `degree` (`None`: it can).
fn refusal(schedule: Schedule, id: usize, degree: usize, input: &[f64]) -> Option<AbortReason> {
    let rank = id as u32;
    if input.is_empty() {
        return Some(AbortReason::EmptyInput { rank });
    }
    if let Some(index) = input.iter().position(|x| !x.is_finite()) {
        return Some(AbortReason::NonFiniteInput {
            rank,
            index: index as u64,
            value: input[index],
        });
    }
    match schedule {
        Schedule::Laplacian { eps } if eps * degree as f64 >= 1.0 => {
            Some(AbortReason::StepTooLarge {
                rank,
                eps,
                degree: degree as u32,
            })
        }
        _ => None,
    }
}
