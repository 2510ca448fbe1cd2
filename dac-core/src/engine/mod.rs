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
//!     engine.tick();                                  // once per time step
//!     engine.poll_outgoing(|target, msg| send(target, msg));
//!     for (from, msg) in received { engine.receive(from, &msg)?; }
//!     while engine.advance() == Progress::Advanced {}
//!     if engine.pending_reconfiguration() { engine.set_peers(&repaired, diameter)?; }
//! }
//! ```

mod message;
mod outgoing;
mod receive;
mod state;
mod step;
#[cfg(test)]
mod tests;
mod view;

pub use message::{
    AbortReason, FLAG_ACK, FLAG_ACKED, FLAG_DIRTY, Header, Kind, Message, OwnedMessage, Target,
    Violation,
};
pub use state::Phase;
pub use view::{Event, ViewId};

use state::{Acc, EMPTY, Join, Peer, Rare, RoundMeta, Slot};
use view::EventSet;

use crate::config::Config;
use crate::error::{Error, Result, check_input};
use crate::reduction::{Contributors, Reduction};
use crate::schedule::{ExactPlan, Schedule};

/// Who a member is and whom it talks to.
#[derive(Clone, Copy, Debug)]
pub struct NodeSetup<'a> {
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
    /// The reduction ended (see [`Engine::outcome`]).
    Finished,
}

/// One member's consensus state machine. See the [module docs](self).
#[derive(Debug)]
pub struct Engine {
    id: u32,
    members: u32,
    dim: usize,
    schedule: Schedule,
    tol: f64,
    max_rounds: u32,
    /// Bound `D` on the graph diameter: the termination window.
    diameter: u32,
    /// The dimension-exchange plan while the exact phase lasts.
    plan: Option<ExactPlan>,
    /// Rounds of mass history kept for resends (2, or the exact rounds + 1,
    /// rounded up to a power of two so that slots are found by masking).
    hist_len: u32,
    /// The current round: the mass in history slot `round` is the state
    /// this member broadcasts for it.
    round: u32,
    phase: Phase,
    /// Exact phase: this member's value misses part of the inputs.
    dirty: bool,
    /// Exact phase: bit `r` is the dirty flag sent in round `r`.
    dirty_bits: u64,
    events: EventSet,
    input_seq: u32,
    /// Rounds of certified convergence around this member.
    counter: u32,
    /// Largest relative residual since the current convergence streak began.
    streak: f64,
    /// Largest relative residual in the current epoch (`D + 1` rounds).
    epoch: f64,
    /// `epoch` at the end of the last completed epoch (reported on failure).
    last_epoch: f64,
    /// Relative residual bound measured in the last iterative round.
    last_residual: f64,
    /// Agreed stop round (0: none known).
    proposal: u32,
    acc: [Acc; 2],
    meta: [RoundMeta; 2],
    /// `input (w) | history (hist_len × w) | per peer: flow, slot 0, slot 1`
    /// with `w = dim + 1` (sums, then weight).
    buf: Vec<f64>,
    /// Neighbours, ascending by id.
    peers: Vec<Peer>,
    /// A round message for the current round has been handed out.
    sent: bool,
    round_due: bool,
    retransmit: bool,
    events_due: bool,
    attach_events: bool,
    terminal_due: bool,
    reconfigure: bool,
    wait_ticks: u32,
    rare: Option<Box<Rare>>,
}

impl Engine {
    /// Creates a member with its input.
    ///
    /// # Errors
    /// Invalid configuration, an id or peer outside `0..members`, a peer
    /// equal to `id`, an empty or non-finite input, a Laplacian step too
    /// large for this member's degree, or (exact schedule) a missing pair.
    pub fn new(config: &Config, setup: NodeSetup<'_>, input: &[f64]) -> Result<Engine> {
        config.validate()?;
        let NodeSetup {
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
                return Err(Error::graph(format!("node {id} lists itself as a peer")));
            }
            ids.push(p as u32);
        }
        ids.sort_unstable();
        ids.dedup();
        check_input(id, input)?;

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
        if let Schedule::Laplacian { eps } = config.schedule
            && eps * ids.len() as f64 >= 1.0
        {
            return Err(Error::LaplacianStepTooLarge {
                eps,
                max_degree: ids.len(),
                limit: 1.0 / ids.len() as f64,
            });
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
        let mut buf = vec![0.0; (1 + hist_len as usize + 3 * ids.len()) * w];
        buf[..dim].copy_from_slice(input);
        buf[dim] = 1.0;
        buf.copy_within(0..w, w); // mass of round 0 = input
        let peers = ids
            .into_iter()
            .map(|id| Peer {
                id,
                slots: [Slot::FREE; 2],
            })
            .collect();
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
            events: EventSet::default(),
            input_seq: 0,
            counter: 0,
            streak: 0.0,
            epoch: 0.0,
            last_epoch: f64::INFINITY,
            last_residual: f64::INFINITY,
            proposal: 0,
            acc: [Acc::fresh(EMPTY); 2],
            meta: [RoundMeta::NONE; 2],
            buf,
            peers,
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

    /// A member that failed before it could start (for example with a
    /// non-finite input): it tells every peer, and answers every message,
    /// with `reason`, so that all members fail with the same typed error
    /// instead of waiting for it.
    pub fn aborted(setup: NodeSetup<'_>, reason: AbortReason) -> Engine {
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

    // ----- accessors -------------------------------------------------------

    /// This member's id.
    pub fn id(&self) -> usize {
        self.id as usize
    }

    /// Number of members in the job.
    pub fn members(&self) -> usize {
        self.members as usize
    }

    /// Length `d` of the reduced vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The current round (rounds completed so far).
    pub fn round(&self) -> u32 {
        self.round
    }

    /// Where the lifecycle is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// True while the exact (dimension-exchange) phase lasts.
    pub fn in_exact_phase(&self) -> bool {
        self.plan.is_some()
    }

    /// The result, once the reduction ended.
    pub fn outcome(&self) -> Option<&Result<Reduction>> {
        self.rare.as_ref().and_then(|r| r.outcome.as_ref())
    }

    /// Takes the result out (the engine keeps answering peers).
    pub fn take_outcome(&mut self) -> Option<Result<Reduction>> {
        self.rare.as_mut().and_then(|r| r.outcome.take())
    }

    /// The input currently in effect (`d` values).
    pub fn input(&self) -> &[f64] {
        &self.buf[..self.dim]
    }

    /// The mass of the current round: `d` sums, then the weight.
    pub fn mass(&self) -> &[f64] {
        self.hist(self.round)
    }

    /// The current estimate of the mean, `S / W` (NaN while the weight is
    /// zero, as for a folded-in node in the exact schedule).
    pub fn estimate(&self) -> Vec<f64> {
        let m = self.mass();
        let w = m[self.dim];
        m[..self.dim].iter().map(|s| s / w).collect()
    }

    /// The relative residual bound measured in the last completed iterative
    /// round: `D·max_j ‖e_i − e_j‖∞ / max(1, ‖e_i‖∞)` over the neighbours,
    /// which bounds the distance to the exact mean once every member's is
    /// below it. Infinite before the first iterative round.
    pub fn residual(&self) -> f64 {
        self.last_residual
    }

    /// Neighbours whose message (or, for a new edge, hello) the current
    /// round is waiting for. Hosts use it to aim their failure detector.
    pub fn waiting_for(&self) -> Vec<usize> {
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
                .map(|i| vec![self.peers[i].id as usize])
                .unwrap_or_default();
        }
        (0..self.peers.len())
            .filter(|&i| {
                let id = self.peers[i].id;
                match self.since(id) {
                    Some(since) => since <= t && self.slot_for(i, t).is_none(),
                    None => self.join(id).is_some_and(|j| t >= j.my_start),
                }
            })
            .map(|i| self.peers[i].id as usize)
            .collect()
    }

    /// Current neighbours, ascending.
    pub fn peers(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.peers.iter().map(|p| p.id as usize)
    }

    /// The flow to `peer` (`d + 1` values), if it is a neighbour.
    pub fn flow(&self, peer: usize) -> Option<&[f64]> {
        let p = self.peer_index(peer as u32)?;
        let w = self.dim + 1;
        let at = self.edge_offset(p);
        Some(&self.buf[at..at + w])
    }

    /// Departed members this member knows of, ascending.
    pub fn departed(&self) -> Vec<usize> {
        self.events.departed().map(|d| d as usize).collect()
    }

    /// Fingerprint of the current view.
    pub fn view(&self) -> ViewId {
        self.events.id()
    }

    /// True when a neighbour departed and the host should hand over the
    /// repaired neighbour set with [`Engine::set_peers`] (hosts that do not
    /// repair may ignore this; the graph must stay connected).
    pub fn pending_reconfiguration(&self) -> bool {
        self.reconfigure
    }

    // ----- host inputs -----------------------------------------------------

    /// The host's failure detector declares `peer` departed (crashed,
    /// disconnected or silent past its timeout). Its flows are dropped, the
    /// news spreads to everyone, and the survivors converge to the mean of
    /// their own inputs.
    pub fn peer_departed(&mut self, peer: usize) {
        if peer < self.members() && self.phase == Phase::Running {
            self.learn(&[Event::Departed { node: peer as u32 }]);
            self.refresh_unsent_meta();
        }
    }

    /// Replaces this member's input; the estimates follow.
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] for a different length,
    /// [`Error::NonFiniteInput`] for NaN or infinity. The state is unchanged
    /// on error.
    pub fn set_input(&mut self, input: &[f64]) -> Result<()> {
        if input.len() != self.dim {
            return Err(Error::DimensionMismatch {
                rank: self.id(),
                expected: self.dim,
                found: input.len(),
            });
        }
        check_input(self.id(), input)?;
        if self.phase != Phase::Running {
            return Ok(());
        }
        self.buf[..self.dim].copy_from_slice(input);
        self.input_seq += 1;
        if self.plan.is_some() {
            self.dirty = true;
        }
        self.learn(&[Event::InputChanged {
            node: self.id,
            seq: self.input_seq,
        }]);
        self.refresh_unsent_meta();
        Ok(())
    }

    /// Leaves the reduction: the neighbours drop this member at once, and
    /// its outcome is [`Error::Left`].
    pub fn leave(&mut self) {
        if self.phase == Phase::Running {
            let message = OwnedMessage {
                header: Header::new(Kind::Leave, self.round),
                events: Vec::new(),
                payload: Vec::new(),
                abort: None,
            };
            self.terminate(Phase::Left, Err(Error::Left { rank: self.id() }), message);
        }
    }

    /// Fails the reduction for every member with `reason` (hosts call this
    /// when a peer's input has another length, for example).
    pub fn abort(&mut self, reason: AbortReason) {
        if self.phase == Phase::Running {
            let message = OwnedMessage {
                header: Header::new(Kind::Abort, self.round),
                events: Vec::new(),
                payload: Vec::new(),
                abort: Some(reason),
            };
            self.terminate(Phase::Failed, Err(reason.into()), message);
        }
    }

    /// Installs the neighbour set the topology layer computed for the
    /// current view, with a diameter bound for the repaired graph.
    ///
    /// New neighbours are opened with a hello handshake that agrees on the
    /// first round both exchange. The set may only grow (departed members
    /// aside): use a monotone repair such as [`crate::Graph::repaired`].
    ///
    /// # Errors
    /// [`Error::UnknownNode`] for an id outside `0..members`;
    /// [`Error::InvalidConfig`] if a live neighbour is missing (nothing
    /// changes); a Laplacian step too large for the new degree (the
    /// reduction is then aborted for everyone).
    pub fn set_peers(&mut self, peers: &[usize], diameter_bound: usize) -> Result<()> {
        let mut ids = Vec::with_capacity(peers.len());
        for &p in peers {
            if p >= self.members() {
                return Err(Error::UnknownNode {
                    node: p,
                    members: self.members(),
                });
            }
            if p != self.id() && !self.events.has_departed(p as u32) {
                ids.push(p as u32);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        // Dropping a live neighbour would need both ends to agree on the
        // round the edge closes; repairs only ever add edges instead.
        if let Some(kept) = self
            .peers
            .iter()
            .map(|p| p.id)
            .find(|id| !self.events.has_departed(*id) && ids.binary_search(id).is_err())
        {
            return Err(Error::config(
                "peers",
                format!(
                    "the new neighbour set of node {} drops live neighbour {kept}; \
                     neighbour sets only grow, except by departures",
                    self.id
                ),
            ));
        }
        self.reconfigure = false;
        self.diameter = diameter_bound.min(u32::MAX as usize / 4) as u32;
        if self.phase != Phase::Running {
            return Ok(());
        }
        let my_start = match self.plan {
            Some(plan) => (self.round + 1).max(plan.rounds()),
            None => self.round + 1,
        };
        for id in ids {
            if self.peer_index(id).is_none() {
                self.add_peer(id, my_start);
            }
        }
        self.refresh_unsent_meta();
        if let Schedule::Laplacian { eps } = self.schedule {
            let degree = self.peers.len();
            if eps * degree as f64 >= 1.0 {
                self.abort(AbortReason::StepTooLarge {
                    rank: self.id,
                    eps,
                    degree: degree as u32,
                });
                return Err(Error::LaplacianStepTooLarge {
                    eps,
                    max_degree: degree,
                    limit: 1.0 / degree as f64,
                });
            }
        }
        Ok(())
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

    fn edge_offset(&self, peer_index: usize) -> usize {
        (1 + self.hist_len as usize + 3 * peer_index) * self.width()
    }

    fn slot_offset(&self, peer_index: usize, slot: usize) -> usize {
        self.edge_offset(peer_index) + (1 + slot) * self.width()
    }

    fn peer_index(&self, id: u32) -> Option<usize> {
        self.peers.binary_search_by_key(&id, |p| p.id).ok()
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
            .filter(|p| self.since(p.id).is_some_and(|s| s <= round))
            .count() as u32
    }

    fn add_peer(&mut self, id: u32, my_start: u32) {
        let at = self.peers.partition_point(|p| p.id < id);
        let w = self.width();
        let off = self.edge_offset(at);
        self.buf.splice(off..off, std::iter::repeat_n(0.0, 3 * w));
        self.peers.insert(
            at,
            Peer {
                id,
                slots: [Slot::FREE; 2],
            },
        );
        let rare = self.rare();
        let early = rare.early_hellos.iter().position(|h| h.0 == id);
        let (their_start, acked) = match early {
            Some(k) => {
                let (_, start, ack) = rare.early_hellos.swap_remove(k);
                (Some(start), ack)
            }
            None => (None, false),
        };
        rare.joins.push(Join {
            peer: id,
            my_start,
            their_start,
            acked,
            hello_due: true,
        });
    }

    fn remove_peer(&mut self, id: u32) {
        if let Some(at) = self.peer_index(id) {
            let w = self.width();
            let off = self.edge_offset(at);
            self.buf.drain(off..off + 3 * w);
            self.peers.remove(at);
        }
        if let Some(rare) = self.rare.as_mut() {
            rare.joins.retain(|j| j.peer != id);
            rare.replies.retain(|r| r.0 != id);
        }
    }

    /// Adds events to the view; departed neighbours are dropped with their
    /// flows (after the exact phase). Returns true if the view changed.
    fn learn(&mut self, events: &[Event]) -> bool {
        let mut changed = false;
        for &event in events {
            if !self.events.insert(event) {
                continue;
            }
            changed = true;
            if let Event::Departed { node } = event {
                if node == self.id {
                    self.exclude();
                    return true;
                }
                // In the exact phase the flows stay until the phase ends:
                // members whose exchanges all happened hold the exact mean
                // of every input, including those of members that left
                // after their input was combined.
                if self.peer_index(node).is_some() {
                    if self.plan.is_none() {
                        self.remove_peer(node);
                    }
                    self.reconfigure = true;
                }
            }
        }
        if changed {
            self.proposal = 0;
            self.counter = 0;
            self.events_due = true;
            self.attach_events = true;
        }
        changed
    }

    /// The others declared this member departed: it stops without a word.
    fn exclude(&mut self) {
        if self.phase == Phase::Running {
            self.phase = Phase::Failed;
            let rank = self.id();
            let rare = self.rare();
            rare.outcome = Some(Err(Error::Excluded { rank }));
            rare.terminal = None;
        }
    }

    fn terminate(&mut self, phase: Phase, outcome: Result<Reduction>, message: OwnedMessage) {
        self.phase = phase;
        self.terminal_due = true;
        let rare = self.rare();
        rare.outcome = Some(outcome);
        rare.terminal = Some(message);
    }

    /// Finishes with this member's own estimate.
    fn finish(&mut self, residual: f64, contributors: Contributors) {
        let value = self.estimate();
        let mut header = Header::new(Kind::Done, self.round);
        header.streak = residual;
        header.view = self.events.id();
        // Adopters rebuild the contributors from these events.
        let departed = contributors
            .departed()
            .iter()
            .map(|&node| Event::Departed { node: node as u32 });
        let changed =
            contributors
                .changed_inputs()
                .iter()
                .map(|&(node, seq)| Event::InputChanged {
                    node: node as u32,
                    seq,
                });
        let message = OwnedMessage {
            header,
            events: departed.chain(changed).collect(),
            payload: value.clone(),
            abort: None,
        };
        let reduction = Reduction {
            value,
            rounds: self.round,
            residual,
            contributors,
        };
        self.terminate(Phase::Done, Ok(reduction), message);
    }

    fn contributors(&self) -> Contributors {
        self.events.contributors(self.members())
    }
}
