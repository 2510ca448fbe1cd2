//! The simulation loop.

mod membership;

use std::collections::{BTreeMap, HashMap};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use super::detector::Detector;
use super::outage::{self, Outages};
use super::outbox::{Gathered, NEIGHBOURS, NOBODY, Outbox, PREFETCH_AHEAD, prefetch};
use super::trace::RoundSums;
use super::{Faults, MemberOutcome, MessageStats, Options, Report};
use crate::engine::{Engine, Header, Kind, MemberSetup, OwnedMessage, Phase, Target, Violation};
use crate::error::{Error, Result, check_input};
use crate::graph::Graph;
use crate::reduction::Contributors;

/// What faults this tick's messages meet on their way.
#[derive(Clone, Copy, Debug)]
struct Transit {
    /// Loss, duplication or delay ([`Faults`]).
    faulty: bool,
    /// A cut link, an isolated or a frozen member.
    outages: bool,
}

/// A message that reaches a member this tick ([`Simulator::arrive`]).
#[derive(Clone, Copy, Debug)]
enum Arriving<'a> {
    /// The sender's plain round message of this tick, from the outbox
    /// (the receiver's peer at this index).
    Round(usize),
    /// Any other message.
    Message(&'a OwnedMessage),
}

/// What a member did with its tick ([`Simulator::take_in`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Took {
    /// Nothing: it has crashed.
    Nothing,
    /// Nothing: it is frozen (`thaws`: it will thaw, still running).
    Frozen { thaws: bool },
    /// It took its messages in and tried a round.
    Round,
}

/// A message in flight to one receiver.
#[derive(Debug)]
struct Routed {
    /// The receiver.
    to: u32,
    /// The sender.
    from: u32,
    /// What it carries.
    message: OwnedMessage,
}

/// Whether a member's process runs, as the fault schedule made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Running,
    /// It crashed silently on reaching `round`.
    Crashed {
        round: u32,
    },
    /// It left (said goodbye) on reaching `round`.
    Left {
        round: u32,
    },
}

/// A simulation that can be advanced one tick at a time (see
/// [`super::simulate`] to run one to the end).
#[derive(Debug)]
pub struct Simulator {
    /// The graph before any repair (repairs are computed from it).
    base: Graph,
    /// Length of every input.
    dim: usize,
    /// The engines' configuration, the faults and the run's limits.
    options: Options,
    /// Draws every random fault (loss, duplication, delay), from the seed.
    rng: Xoshiro256PlusPlus,
    /// One engine per member.
    engines: Vec<Engine>,
    /// Whether each member still runs.
    life: Vec<Life>,
    /// Scheduled crashes, leaves and input changes, by member: the round
    /// at which each happens (changes: with the new input, last first).
    crash_at: BTreeMap<u32, u32>,
    leave_at: BTreeMap<u32, u32>,
    changes: BTreeMap<u32, Vec<(u32, Vec<f64>)>>,
    /// Starting inputs, and the changes applied so far per member (version
    /// `k` is `applied[member][k - 1]`), to compute reference means.
    initial: Vec<f64>,
    applied: BTreeMap<u32, Vec<Vec<f64>>>,
    /// Departures to report to neighbours: (tick, member).
    detections: Vec<(u64, u32)>,
    /// Departures to report to one member that took a departed member as a
    /// new neighbour: (tick, member, departed neighbour).
    late_detections: Vec<(u64, u32, u32)>,
    /// Members with a scheduled crash, leave or input change.
    scheduled: Vec<bool>,
    /// The plain round messages receivers read this tick, and the ones
    /// members emit for the next tick (swapped at the end of each tick).
    outbox: Outbox,
    next: Outbox,
    /// Every other message emitted for the next tick, and delayed messages
    /// by due tick.
    routed: Vec<Routed>,
    delayed: BTreeMap<u64, Vec<Routed>>,
    /// Repaired graphs and their diameter bounds, by the set of departed
    /// members they repair around (every member that saw the same
    /// departures gets the same graph, computed once).
    repairs: HashMap<Vec<usize>, (Graph, usize)>,
    /// Cut links, isolated and frozen members, false suspicions.
    outages: Outages,
    /// The silence-based failure detector, if it runs.
    detector: Option<Detector>,
    /// Some neighbour sets changed, so they may be briefly asymmetric.
    repaired: bool,
    /// A member crashed or left: the trace then counts the flows that
    /// survivors still hold towards it.
    any_departed: bool,
    /// A member suspected another: live members may now be dropped by
    /// neighbours they still talk to (see [`Simulator::reach_unlisted`]).
    suspected: bool,
    /// The simulated clock.
    tick: u64,
    /// The run stops here, finished or not.
    max_ticks: u64,
    /// Sums over the members per round, for the convergence trace.
    trace: Vec<RoundSums>,
    /// Messages sent, dropped, duplicated, delayed and cut.
    stats: MessageStats,
    /// Every running member has an outcome.
    finished: bool,
    /// Scratch list of the round messages one member receives in a tick
    /// (kept to reuse its allocation).
    gathered: Vec<Gathered>,
    /// What the engines reported as misbehaviour: (reporter, violation).
    misbehaviour: Vec<(usize, Violation)>,
}

impl Simulator {
    /// Sets up a run: one engine per node of `graph`, node `i` starting
    /// with `inputs[i·dim..(i+1)·dim]`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a configuration or fault parameter out of
    /// range, [`Error::Disconnected`], [`Error::LaplacianStepTooLarge`] or
    /// [`Error::ExactNeedsEdge`] for a configuration that does not fit the
    /// graph, [`Error::DimensionMismatch`] / [`Error::NonFiniteInput`] /
    /// [`Error::EmptyInput`] for bad inputs, [`Error::UnknownNode`] for a
    /// fault naming a missing member.
    pub fn new(base: Graph, inputs: &[f64], dim: usize, options: Options) -> Result<Simulator> {
        options.config.validate_for(&base)?;
        let n = base.len();
        validate_faults(&options.faults, n, dim)?;
        if dim == 0 {
            return Err(Error::EmptyInput { rank: 0 });
        }
        if inputs.len() != n * dim {
            return Err(Error::DimensionMismatch {
                rank: inputs.len() / dim,
                expected: n * dim,
                found: inputs.len(),
            });
        }
        for (i, row) in inputs.chunks_exact(dim).enumerate() {
            check_input(i, row)?;
        }
        let diameter = base.diameter_bound().unwrap_or(n);
        let mut engines = Vec::with_capacity(n);
        let mut peers = Vec::new();
        for (i, row) in inputs.chunks_exact(dim).enumerate() {
            peers.clear();
            peers.extend(base.neighbors(i));
            let setup = MemberSetup {
                id: i,
                members: n,
                peers: &peers,
                diameter_bound: diameter,
            };
            engines.push(Engine::new(&options.config, setup, row)?);
        }
        let w = dim + 1;
        let faults = &options.faults;
        let crash_at = faults
            .crashes
            .iter()
            .map(|&(member, round)| (member as u32, round))
            .collect();
        let leave_at = faults
            .leaves
            .iter()
            .map(|&(member, round)| (member as u32, round))
            .collect();
        let mut changes: BTreeMap<u32, Vec<(u32, Vec<f64>)>> = BTreeMap::new();
        for change in &faults.input_changes {
            changes
                .entry(change.member as u32)
                .or_default()
                .push((change.round, change.input.clone()));
        }
        for list in changes.values_mut() {
            list.sort_by_key(|c| std::cmp::Reverse(c.0)); // pop() yields the earliest
        }
        let outages = Outages::new(faults);
        let max_ticks = ((u64::from(options.config.max_rounds) + 1000)
            * 16
            * (1 + u64::from(faults.max_delay))
            + 64 * u64::from(faults.detect_after)
            + 64 * u64::from(faults.suspect_after.unwrap_or(0)))
        .saturating_add(outages.last_tick());
        let mut simulator = Simulator {
            rng: Xoshiro256PlusPlus::seed_from_u64(options.seed),
            dim,
            life: vec![Life::Running; n],
            crash_at,
            leave_at,
            changes,
            detections: Vec::new(),
            late_detections: Vec::new(),
            initial: inputs.to_vec(),
            applied: BTreeMap::new(),
            scheduled: vec![false; n],
            outbox: Outbox::new(n, w),
            next: Outbox::new(n, w),
            routed: Vec::new(),
            delayed: BTreeMap::new(),
            repairs: HashMap::new(),
            outages,
            detector: faults.suspect_after.map(Detector::new),
            repaired: false,
            any_departed: false,
            suspected: false,
            tick: 0,
            max_ticks,
            trace: Vec::new(),
            stats: MessageStats::default(),
            finished: false,
            gathered: Vec::new(),
            misbehaviour: Vec::new(),
            engines,
            base,
            options,
        };
        for member in faults_members(&simulator.options.faults) {
            simulator.scheduled[member] = true;
        }
        for i in 0..n {
            simulator.record(i);
            simulator.emit(i);
        }
        std::mem::swap(&mut simulator.outbox, &mut simulator.next);
        Ok(simulator)
    }

    /// Ticks simulated so far.
    pub fn ticks(&self) -> u64 {
        self.tick
    }

    /// The engines, in member order (for inspection).
    pub fn engines(&self) -> &[Engine] {
        &self.engines
    }

    /// Member `j`'s current estimate of the mean (`d` values; NaN while its
    /// weight is zero, as for a member folded in by the exact schedule),
    /// for members that did not finish. `None` for `j` out of range.
    pub fn estimate(&self, j: usize) -> Option<Vec<f64>> {
        self.engines.get(j).map(Engine::estimate)
    }

    /// Simulates one tick; returns false once every member has finished
    /// (or crashed, left, or is frozen for good), or the tick limit is
    /// reached.
    ///
    /// Failure detectors report first; then one pass over the members:
    /// each takes in what reached it ([`Simulator::arrive`] is the last hop
    /// of every message), completes at most one round, meets its scheduled
    /// faults, and emits its messages for the next tick.
    pub fn step(&mut self) -> bool {
        if self.finished {
            return false;
        }
        self.tick += 1;
        let outages = self.outages.begin_tick(self.tick);
        if outages {
            self.report_to_thawed();
        }
        self.report_departures();
        self.make_false_suspicions();
        self.listen();
        self.forge_results();
        let transit = Transit {
            faulty: {
                let f = &self.options.faults;
                f.drop > 0.0 || f.duplicate > 0.0 || f.max_delay > 0
            },
            outages,
        };
        let now = self.due_routed();
        let mut cursor = 0;
        let mut running = 0usize;
        let mut gathered = std::mem::take(&mut self.gathered);
        for j in 0..self.engines.len() {
            self.prefetch_for(j + PREFETCH_AHEAD);
            // Cleared here rather than in a pass of its own: `emit`
            // writes this cache line anyway.
            self.next.records[j].target = NOBODY;
            let start = cursor;
            while cursor < now.len() && now[cursor].to as usize == j {
                cursor += 1;
            }
            let routed = &now[start..cursor];
            let before = self.engines[j].round();
            match self.take_in(j, transit, routed, &mut gathered) {
                Took::Nothing => continue,
                Took::Frozen { thaws } => {
                    running += usize::from(thaws);
                    continue;
                }
                Took::Round => {}
            }
            if self.engines[j].round() != before && !self.options.no_trace {
                self.record(j);
            }
            self.repair_if_due(j);
            self.emit(j);
            if self.suspected {
                self.reach_unlisted(j);
            }
            if self.life[j] == Life::Running && self.engines[j].phase() == Phase::Running {
                running += 1;
            }
        }
        self.gathered = gathered;
        std::mem::swap(&mut self.outbox, &mut self.next);
        if running == 0 || self.tick >= self.max_ticks {
            self.finished = true;
        }
        !self.finished
    }

    /// The neighbours' records are scattered over the outbox: asks for
    /// those of member `j`, a few places ahead of the one being stepped, so
    /// that their loads overlap that member's work (the base graph's rows
    /// are contiguous, and after a repair still name most neighbours).
    #[inline]
    fn prefetch_for(&self, j: usize) {
        if j < self.engines.len() {
            for &i in self.base.row(j) {
                if let Some(record) = self.outbox.records.get(i as usize) {
                    prefetch(record);
                }
            }
        }
    }

    /// Member `j` takes in this tick's messages — its neighbours' plain
    /// round messages and the `routed` others — and, unless it is crashed
    /// or frozen, completes at most one round.
    ///
    /// The common case, a lockstep tick (no faults in transit, no outage,
    /// no other message, no repair under way), is one call into the engine
    /// (`Engine::advance_with_round_from`); it is an optimisation of the
    /// general path below, which the golden runs keep equal to it.
    #[inline]
    fn take_in(
        &mut self,
        j: usize,
        transit: Transit,
        routed: &[Routed],
        gathered: &mut Vec<Gathered>,
    ) -> Took {
        let live = !matches!(self.life[j], Life::Crashed { .. });
        let lockstep = live
            && !transit.faulty
            && !transit.outages
            && routed.is_empty()
            && !self.repaired
            && !self.engines[j].pending_reconfiguration();
        if lockstep && self.take_round(j) {
            self.stats.sent += self.engines[j].peers().len() as u64;
            return Took::Round;
        }
        self.gather(j, gathered);
        self.stats.sent += gathered.len() as u64;
        let frozen = self.outages.frozen(j);
        if transit.outages && live && !frozen {
            self.deliver_held(j);
        }
        if transit.faulty {
            for m in gathered.iter() {
                self.deliver_with_faults(j, m.from as usize, m.index as usize);
            }
        } else if transit.outages {
            for m in gathered.iter() {
                self.arrive(j, m.from as usize, Arriving::Round(m.index as usize));
            }
        } else {
            self.deliver_all(j, gathered);
        }
        if !live {
            return Took::Nothing;
        }
        for r in routed {
            self.arrive(j, r.from as usize, Arriving::Message(&r.message));
        }
        if frozen {
            // It does nothing until it thaws (if it ever does).
            let thaws = !self.outages.frozen_for_good(j, self.tick)
                && self.engines[j].phase() == Phase::Running;
            return Took::Frozen { thaws };
        }
        self.repair_if_due(j);
        self.engines[j].advance();
        for violation in self.engines[j].take_misbehaviour() {
            self.rejected(j, violation);
        }
        Took::Round
    }

    /// Hands member `j` the repaired neighbour set when its engine asks:
    /// before it advances, so that the round uses it, and after.
    #[inline]
    fn repair_if_due(&mut self, j: usize) {
        if self.engines[j].pending_reconfiguration() {
            self.reconfigure(j);
        }
    }

    /// Member `j` completes its round from its neighbours' plain round
    /// messages of this tick, if the engine's shortcut applies (see
    /// [`Engine::advance_with_round_from`]); false, with nothing changed,
    /// otherwise.
    fn take_round(&mut self, j: usize) -> bool {
        let (outbox, w, me) = (&self.outbox, self.dim + 1, j as u32);
        let message_of = |_: usize, from: u32| {
            let record = &outbox.records[from as usize];
            let addressed = record.target == NEIGHBOURS || record.target == me;
            addressed.then(|| (record.header(), outbox.payload(from as usize, w)))
        };
        self.engines[j]
            .advance_with_round_from(message_of)
            .is_some()
    }

    /// Lists the round messages addressed to member `j` this tick, in the
    /// order of its peers.
    fn gather(&self, j: usize, gathered: &mut Vec<Gathered>) {
        gathered.clear();
        if matches!(self.life[j], Life::Crashed { .. }) {
            return;
        }
        for (index, i) in self.engines[j].peers().enumerate() {
            let addressed = match self.outbox.records[i].target {
                NOBODY => false,
                NEIGHBOURS => !self.repaired || self.engines[i].peers().any(|p| p == j),
                one => one as usize == j,
            };
            if addressed {
                gathered.push(Gathered {
                    from: i as u32,
                    index: index as u32,
                });
            }
        }
    }

    /// Member `j` meets its scheduled faults, then hands out its messages
    /// for the next tick.
    fn emit(&mut self, j: usize) {
        if self.scheduled[j] {
            self.apply_scheduled(j);
        }
        if matches!(self.life[j], Life::Crashed { .. }) {
            return;
        }
        let w = self.dim + 1;
        let engine = &mut self.engines[j];
        engine.tick();
        let next = &mut self.next;
        let record = &mut next.records[j];
        let long = if w > 2 {
            &mut next.long[j * w..(j + 1) * w]
        } else {
            &mut []
        };
        if let Some(message) = engine.take_plain_round() {
            // What polling would hand out, without the detour.
            record.target = NEIGHBOURS;
            record.set_header(&message.header);
            if w > 2 {
                long.copy_from_slice(message.payload);
            } else {
                record.inline[..w].copy_from_slice(message.payload);
            }
            return;
        }
        let mut pending: Vec<(Target, OwnedMessage)> = Vec::new();
        engine.poll_outgoing(|to, message| {
            let plain = message.header.kind == Kind::Round && message.events.is_empty();
            if plain && record.target == NOBODY {
                record.target = match to {
                    Target::Peers => NEIGHBOURS,
                    Target::Peer(p) => p as u32,
                };
                record.set_header(&message.header);
                if w > 2 {
                    long.copy_from_slice(message.payload);
                } else {
                    record.inline[..w].copy_from_slice(message.payload);
                }
            } else {
                pending.push((to, message.to_owned()));
            }
        });
        for (target, message) in pending {
            match target {
                Target::Peers => {
                    for p in self.engines[j].peers() {
                        self.routed.push(Routed {
                            to: p as u32,
                            from: j as u32,
                            message: message.clone(),
                        });
                    }
                }
                Target::Peer(p) if p < self.engines.len() => self.routed.push(Routed {
                    to: p as u32,
                    from: j as u32,
                    message,
                }),
                Target::Peer(_) => self.stats.violations += 1,
            }
        }
    }

    /// The liars of [`Faults::forged_results`] due this tick send their
    /// forged results (delivered this tick, subject to the link faults).
    fn forge_results(&mut self) {
        let tick = self.tick;
        let due: Vec<_> = self
            .options
            .faults
            .forged_results
            .iter()
            .filter(|f| f.tick == tick)
            .copied()
            .collect();
        for forgery in due {
            let by = forgery.by;
            if self.life[by] != Life::Running || self.outages.frozen(by) {
                continue;
            }
            let mut header = Header::new(Kind::Done, forgery.round);
            header.view = self.engines[by].view();
            let message = OwnedMessage {
                header,
                events: Vec::new(),
                payload: vec![forgery.value; self.dim],
                abort: None,
            };
            for p in self.engines[by].peers() {
                self.routed.push(Routed {
                    to: p as u32,
                    from: by as u32,
                    message: message.clone(),
                });
            }
        }
    }

    /// Hands member `j`, which thawed, what waited in its receive buffer.
    fn deliver_held(&mut self, j: usize) {
        for (from, message) in self.outages.take_held(j) {
            if let Err(violation) = self.engines[j].receive(from as usize, &message.as_message()) {
                self.rejected(j, violation);
            }
        }
    }

    /// Member `j`'s engine refused a message: a contradiction (an insider's
    /// lie) is reported and its sender cut off, as `dac-net` does; any
    /// other violation is an engine bug here, and counted.
    fn rejected(&mut self, j: usize, violation: Violation) {
        let Violation::Contradicts { peer, .. } = violation else {
            self.stats.violations += 1;
            return;
        };
        self.misbehaviour.push((j, violation));
        if self.life[j] == Life::Running {
            self.engines[j].peer_suspected(peer);
            self.suspected = true;
            self.reconfigure(j);
        }
    }

    /// The last hop of every message to member `to`: a cut link loses it,
    /// a frozen `to` finds it in its receive buffer when it thaws, and
    /// anyone else takes it in.
    fn arrive(&mut self, to: usize, from: usize, what: Arriving<'_>) {
        if !self.outages.open(from, to) {
            self.stats.cut += 1;
        } else if self.outages.frozen(to) {
            let message = match what {
                Arriving::Round(_) => self.outbox.message(from, self.dim + 1),
                Arriving::Message(m) => m.clone(),
            };
            self.outages.hold(to, from, message, &mut self.stats);
        } else {
            match what {
                Arriving::Round(index) => self.deliver(to, from, index),
                Arriving::Message(m) => {
                    if let Err(violation) = self.engines[to].receive(from, &m.as_message()) {
                        self.rejected(to, violation);
                    }
                }
            }
        }
    }

    /// Messages emitted last tick (other than plain round messages) and
    /// delayed messages due now, through the fault model, sorted by
    /// receiver.
    fn due_routed(&mut self) -> Vec<Routed> {
        let mut now = Vec::new();
        for routed in std::mem::take(&mut self.routed) {
            self.stats.sent += 1;
            for (delay, delivered) in self.fates() {
                if !delivered {
                    continue;
                }
                let item = Routed {
                    to: routed.to,
                    from: routed.from,
                    message: routed.message.clone(),
                };
                if delay == 0 {
                    now.push(item);
                } else {
                    self.delayed
                        .entry(self.tick + delay)
                        .or_default()
                        .push(item);
                }
            }
        }
        if let Some(mut due) = self.delayed.remove(&self.tick) {
            now.append(&mut due);
        }
        now.sort_by_key(|r| r.to);
        now
    }

    fn deliver_with_faults(&mut self, to: usize, from: usize, index: usize) {
        for (delay, delivered) in self.fates() {
            if !delivered {
                continue;
            }
            if delay == 0 {
                self.arrive(to, from, Arriving::Round(index));
            } else {
                let message = self.outbox.message(from, self.dim + 1);
                self.delayed
                    .entry(self.tick + delay)
                    .or_default()
                    .push(Routed {
                        to: to as u32,
                        from: from as u32,
                        message,
                    });
            }
        }
    }

    /// What happens to one message: up to two (delay, delivered) fates — the
    /// original and a possible duplicate.
    fn fates(&mut self) -> [(u64, bool); 2] {
        let f = &self.options.faults;
        let (drop, duplicate, max_delay) = (f.drop, f.duplicate, f.max_delay);
        let fate = |rng: &mut Xoshiro256PlusPlus, stats: &mut MessageStats| {
            if drop > 0.0 && rng.random_bool(drop) {
                stats.dropped += 1;
                return (0, false);
            }
            let delay = if max_delay > 0 {
                u64::from(rng.random_range(0..=max_delay))
            } else {
                0
            };
            if delay > 0 {
                stats.delayed += 1;
            }
            (delay, true)
        };
        let first = fate(&mut self.rng, &mut self.stats);
        let second = if duplicate > 0.0 && self.rng.random_bool(duplicate) {
            self.stats.duplicated += 1;
            fate(&mut self.rng, &mut self.stats)
        } else {
            (0, false)
        };
        [first, second]
    }

    /// Hands member `to` the plain round messages of this tick addressed
    /// to it, in order.
    fn deliver_all(&mut self, to: usize, mine: &[Gathered]) {
        let messages = plain_rounds(&self.outbox, self.dim + 1, mine);
        let violations = self.engines[to].receive_plain_rounds(messages);
        self.stats.violations += violations;
    }

    /// Hands `from`'s plain round message of this tick to `to`, whose
    /// peer `index` it is.
    fn deliver(&mut self, to: usize, from: usize, index: usize) {
        let w = self.dim + 1;
        let header = self.outbox.records[from].header();
        let payload = self.outbox.payload(from, w);
        if self.engines[to]
            .receive_plain_round(from, index, &header, payload)
            .is_err()
        {
            self.stats.violations += 1;
        }
    }

    /// Adds member `i`'s state at its current round to the trace.
    fn record(&mut self, i: usize) {
        if self.options.no_trace {
            return;
        }
        let engine = &self.engines[i];
        let round = engine.round() as usize;
        while self.trace.len() <= round {
            self.trace.push(RoundSums::new(self.dim));
        }
        let life = &self.life;
        let gone = |p: &usize| !matches!(life[*p], Life::Running);
        let held: Vec<&[f64]> = if self.any_departed {
            engine
                .peers()
                .filter(gone)
                .filter_map(|p| engine.flow(p))
                .collect()
        } else {
            Vec::new()
        };
        self.trace[round].add(
            engine.mass(),
            engine.input(),
            held.into_iter(),
            engine.residual(),
        );
    }

    /// Collects the outcome of every member.
    pub fn report(&self) -> Report {
        let nodes: Vec<MemberOutcome> = self
            .engines
            .iter()
            .zip(&self.life)
            .map(|(engine, life)| match *life {
                Life::Crashed { round } => MemberOutcome::Crashed { round },
                Life::Left { round } => MemberOutcome::Left { round },
                Life::Running => match engine.outcome() {
                    Some(Ok(reduction)) => MemberOutcome::Finished(reduction.clone()),
                    Some(Err(error)) => MemberOutcome::Failed(error.clone()),
                    None => MemberOutcome::Unfinished {
                        round: engine.round(),
                    },
                },
            })
            .collect();
        let mut finished = nodes.iter().filter_map(MemberOutcome::reduction);
        let contributors: Option<Contributors> = finished.next().and_then(|first| {
            finished
                .all(|r| r.contributors == first.contributors)
                .then(|| first.contributors.clone())
        });
        let converged = contributors.is_some()
            && nodes.iter().all(|n| {
                matches!(
                    n,
                    MemberOutcome::Finished(_)
                        | MemberOutcome::Crashed { .. }
                        | MemberOutcome::Left { .. }
                )
            });
        let rounds = nodes
            .iter()
            .filter_map(MemberOutcome::reduction)
            .map(|r| r.rounds)
            .max();
        let finished = rounds.is_some();
        let rounds = rounds.unwrap_or(0);
        let dim = self.dim;
        let inputs = (0..self.engines.len())
            .flat_map(|i| {
                let version = contributors
                    .as_ref()
                    .and_then(|c| c.input_version(i))
                    .unwrap_or(0) as usize;
                match self.applied.get(&(i as u32)) {
                    Some(changes) if version > 0 && version <= changes.len() => {
                        changes[version - 1].clone()
                    }
                    _ => self.initial[i * dim..(i + 1) * dim].to_vec(),
                }
            })
            .collect();
        Report {
            inputs,
            dim: self.dim,
            members: nodes,
            rounds,
            ticks: self.tick,
            converged,
            contributors,
            trace: self
                .trace
                .iter()
                .enumerate()
                // Past the round the result was computed in, the members
                // still running only wait for it to reach them (with no
                // result, every round traced stays).
                .take(if finished {
                    rounds as usize + 1
                } else {
                    usize::MAX
                })
                .map(|(round, sums)| sums.row(round as u32))
                .collect(),
            messages: self.stats,
            misbehaviour: self.misbehaviour.clone(),
        }
    }
}

/// The plain round messages of this tick in `mine`, as engines take
/// them: `(from, index, header, payload)`.
fn plain_rounds<'a>(
    outbox: &'a Outbox,
    w: usize,
    mine: &'a [Gathered],
) -> impl Iterator<Item = (usize, usize, Header, &'a [f64])> + Clone + 'a {
    mine.iter().map(move |m| {
        let from = m.from as usize;
        (
            from,
            m.index as usize,
            outbox.records[from].header(),
            outbox.payload(from, w),
        )
    })
}

/// Members named by a scheduled fault.
fn faults_members(faults: &Faults) -> impl Iterator<Item = usize> + '_ {
    faults
        .crashes
        .iter()
        .chain(&faults.leaves)
        .map(|c| c.0)
        .chain(faults.input_changes.iter().map(|c| c.member))
}

fn validate_faults(faults: &Faults, n: usize, dim: usize) -> Result<()> {
    for (field, p) in [("drop", faults.drop), ("duplicate", faults.duplicate)] {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::config(field, format!("must lie in [0, 1), got {p}")));
        }
    }
    if faults.detect_after == 0 {
        return Err(Error::config(
            "detect_after",
            "must be at least 1 tick, got 0",
        ));
    }
    for member in faults_members(faults).chain(faults.forged_results.iter().map(|f| f.by)) {
        if member >= n {
            return Err(Error::UnknownNode {
                node: member,
                members: n,
            });
        }
    }
    for change in &faults.input_changes {
        if change.input.len() != dim {
            return Err(Error::DimensionMismatch {
                rank: change.member,
                expected: dim,
                found: change.input.len(),
            });
        }
        check_input(change.member, &change.input)?;
    }
    outage::validate(faults, n)
}
