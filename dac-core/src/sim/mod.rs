//! A deterministic simulator: many engines on one graph, with faults.
//!
//! Time advances in *ticks*. In each tick every live member hands out its
//! messages, then every member takes in what reached it and completes at
//! most one round. Without faults one tick is one round. Faults are drawn
//! from a seeded generator, so a run is reproducible bit for bit:
//!
//! - each message is dropped with probability [`Faults::drop`], duplicated
//!   with probability [`Faults::duplicate`] and delayed by a uniform
//!   `0..=`[`Faults::max_delay`] ticks (which also reorders messages);
//! - a member crashes silently when it reaches a given round; its
//!   neighbours are told [`Faults::detect_after`] ticks later, as a
//!   failure detector would, and the graph is repaired around it
//!   ([`Graph::repaired`]);
//! - a member leaves gracefully at a given round;
//! - a member's input changes at a given round;
//! - a link is cut, one way or both ways, for a [`Span`] of ticks
//!   ([`Faults::cuts`]): the messages that would cross it then are lost;
//! - a member is isolated for a span ([`Faults::isolations`]): all its
//!   links are cut both ways, including links a repair adds meanwhile;
//! - a member is frozen for a span ([`Faults::freezes`]), as by `SIGSTOP`:
//!   it neither receives, advances, ticks nor sends, what reaches it waits
//!   in its receive buffer until it thaws, and its failure detector then
//!   restarts its clocks instead of counting the stall as silence;
//! - a member's failure detector suspects a member that is fine
//!   ([`Faults::false_suspicions`]);
//! - with [`Faults::suspect_after`], a silence-based failure detector runs:
//!   every member that is neither crashed nor frozen sends a heartbeat on
//!   each link every tick (cuts, isolations and freezes stop heartbeats;
//!   random loss, duplicates and delays do not), and a running member that
//!   hears none from a neighbour for `suspect_after` ticks suspects it
//!   ([`Engine::peer_suspected`](crate::Engine::peer_suspected)); the graph
//!   is then repaired around it as around a crash;
//! - a member lies about the result ([`Faults::forged_results`]): it sends
//!   its neighbours a forged [`Kind::Done`](crate::engine::Kind::Done)
//!   and otherwise runs as usual. A member whose engine finds a message
//!   that contradicts its own state (a
//!   [`Violation::Contradicts`](crate::engine::Violation::Contradicts))
//!   reports it in [`Report::misbehaviour`] and cuts the sender off (it
//!   suspects it), as `dac-net` does with a member that sends bad frames.
//!
//! Crashes and leaves are *proven* departures
//! ([`Engine::peer_departed`](crate::Engine::peer_departed)): a crashed
//! member's links are reset, so its neighbours learn of it after
//! `detect_after` ticks whether or not the silence-based detector runs,
//! and it never counts against the quorum. Suspicions do: a member that
//! holds no strict majority of the members not proven gone stops with
//! [`Error::Partitioned`], and a member the others went on without stops
//! with [`Error::Excluded`]; both end as [`MemberOutcome::Failed`].
//!
//! ```
//! use dac_core::{sim, Config, Graph, Schedule};
//!
//! let graph = Graph::exponential(16)?;
//! let inputs: Vec<f64> = (0..16).map(|i| i as f64).collect();
//! let options = sim::Options {
//!     config: Config { schedule: Schedule::Metropolis, tol: 1e-10, ..Config::default() },
//!     faults: sim::Faults { drop: 0.2, ..sim::Faults::default() },
//!     ..sim::Options::default()
//! };
//! let report = sim::simulate(&graph, &inputs, 1, &options)?;
//! assert!(report.converged);
//! assert!(report.max_abs_error().unwrap() <= 1e-10 * 7.5);
//! # Ok::<(), dac_core::Error>(())
//! ```
//!
//! A member that stalls past the failure detector's timeout is suspected;
//! the others finish without it, and it learns so when it resumes:
//!
//! ```
//! use dac_core::sim::{self, Faults, MemberOutcome, Span};
//! use dac_core::{Config, Error, Graph, Schedule};
//!
//! let graph = Graph::complete(4)?;
//! let inputs = [1.0, 2.0, 3.0, 4.0];
//! let options = sim::Options {
//!     config: Config { schedule: Schedule::Metropolis, tol: 1e-9, ..Config::default() },
//!     faults: sim::Faults {
//!         freezes: vec![(2, Span::between(3, 23))],
//!         suspect_after: Some(5),
//!         ..Faults::default()
//!     },
//!     ..sim::Options::default()
//! };
//! let report = sim::simulate(&graph, &inputs, 1, &options)?;
//! assert_eq!(report.members[2], MemberOutcome::Failed(Error::Excluded { rank: 2 }));
//! assert_eq!(report.contributors.unwrap().to_vec(), vec![0, 1, 3]);
//! assert!(!report.converged);
//! # Ok::<(), dac_core::Error>(())
//! ```

mod detector;
mod outage;
mod outbox;
mod run;
mod trace;

pub use run::Simulator;
pub use trace::TraceRow;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::reduction::{Contributors, Reduction};

/// Faults injected into a simulated run.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Probability that a message is lost, in `[0, 1)`.
    pub drop: f64,
    /// Probability that a message is delivered twice, in `[0, 1)`.
    pub duplicate: f64,
    /// Each message is delayed by a uniform number of ticks in
    /// `0..=max_delay` (so messages also arrive out of order).
    pub max_delay: u32,
    /// `(member, round)`: the member crashes silently on reaching `round`.
    pub crashes: Vec<(usize, u32)>,
    /// `(member, round)`: the member leaves on reaching `round`.
    pub leaves: Vec<(usize, u32)>,
    /// Inputs replaced mid-run.
    pub input_changes: Vec<InputChange>,
    /// Ticks after a crash (or a leave) until its neighbours' failure
    /// detectors report it as proven gone — and those of members that take
    /// it as a neighbour later, after they do (at least 1).
    pub detect_after: u32,
    /// Links cut for a span of ticks.
    pub cuts: Vec<Cut>,
    /// `(member, span)`: all of the member's links are cut both ways
    /// during `span`, including links a repair adds meanwhile.
    pub isolations: Vec<(usize, Span)>,
    /// `(member, span)`: the member is frozen during `span` (as by
    /// `SIGSTOP`): it neither receives, advances, ticks nor sends, and the
    /// messages that reach it meanwhile wait in its receive buffer (up to
    /// [`RECEIVE_BUFFER`] of them; later ones are lost) until it thaws. A
    /// member frozen for good ends as [`MemberOutcome::Unfinished`].
    pub freezes: Vec<(usize, Span)>,
    /// Failure detectors that suspect a member that is fine.
    pub false_suspicions: Vec<Suspicion>,
    /// Run the silence-based failure detector: a running member suspects a
    /// neighbour from which no heartbeat arrived for this many ticks (at
    /// least 1). `None`: no detector; only crashes and leaves are reported.
    pub suspect_after: Option<u32>,
    /// Members that send forged results (an insider's lie, for the checks
    /// of [`Violation::Contradicts`](crate::engine::Violation::Contradicts)).
    pub forged_results: Vec<ForgedResult>,
}

/// An insider's lie: at tick `tick`, member `by` sends each of its current
/// neighbours a [`Kind::Done`](crate::engine::Kind::Done) message claiming
/// the result `value` (in every component) after `round` rounds, with
/// residual 0 and every member a contributor. Otherwise `by` runs as
/// usual. A forgery due while `by` is frozen, crashed or no longer running
/// is not sent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForgedResult {
    /// When the forgery is sent.
    pub tick: u64,
    /// The liar.
    pub by: usize,
    /// The value it claims.
    pub value: f64,
    /// The round count it claims.
    pub round: u32,
}

/// Most messages a frozen member's receive buffer holds; more are lost
/// (and counted in [`MessageStats::cut`]), as by a full socket buffer.
pub const RECEIVE_BUFFER: usize = 4096;

/// A span of ticks: `start` up to, not including, `end`, or for good
/// without an `end`. Ticks count from 1: the first
/// [`Simulator::step`] simulates tick 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// The first tick of the span.
    pub start: u64,
    /// The first tick after the span (`None`: it never ends). It must be
    /// above `start`.
    pub end: Option<u64>,
}

impl Span {
    /// The ticks `start..end`.
    pub fn between(start: u64, end: u64) -> Span {
        Span {
            start,
            end: Some(end),
        }
    }

    /// Every tick from `start` on.
    pub fn from_tick(start: u64) -> Span {
        Span { start, end: None }
    }

    /// True if `tick` lies in the span.
    pub fn contains(&self, tick: u64) -> bool {
        tick >= self.start && self.end.is_none_or(|end| tick < end)
    }
}

/// A link cut for a span of ticks: a message from `from` to `to` that
/// would be delivered during the span is lost (and, with `both_ways`, one
/// from `to` to `from` as well). The members need not be neighbours yet:
/// a repair may join them later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    /// The member whose messages are lost.
    pub from: usize,
    /// The member they do not reach.
    pub to: usize,
    /// Cut the link in the other direction too.
    pub both_ways: bool,
    /// When the link is cut.
    pub span: Span,
}

/// A failure detector's mistake: at tick `tick`, member `by` suspects
/// member `of` ([`Engine::peer_suspected`](crate::Engine::peer_suspected))
/// although `of` is fine. A suspicion due while `by` is frozen is made
/// when it thaws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suspicion {
    /// When the suspicion is made.
    pub tick: u64,
    /// The member whose detector errs.
    pub by: usize,
    /// The member it suspects.
    pub of: usize,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            drop: 0.0,
            duplicate: 0.0,
            max_delay: 0,
            crashes: Vec::new(),
            leaves: Vec::new(),
            input_changes: Vec::new(),
            detect_after: 3,
            cuts: Vec::new(),
            isolations: Vec::new(),
            freezes: Vec::new(),
            false_suspicions: Vec::new(),
            suspect_after: None,
            forged_results: Vec::new(),
        }
    }
}

/// A member's input replaced when it reaches a round.
#[derive(Clone, Debug, PartialEq)]
pub struct InputChange {
    /// The member.
    pub member: usize,
    /// The round at which the new input takes effect.
    pub round: u32,
    /// The new input (same length as the old one).
    pub input: Vec<f64>,
}

/// Everything a simulated run needs besides the graph and the inputs.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Options {
    /// Reduction parameters.
    pub config: Config,
    /// Injected faults.
    pub faults: Faults,
    /// Seed of the fault generator.
    pub seed: u64,
    /// Skip the per-round trace (for large benchmarks).
    pub no_trace: bool,
}

/// How one member's run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum MemberOutcome {
    /// It finished with a result.
    Finished(Reduction),
    /// It failed (for example `max_rounds` reached, no quorum left, or
    /// excluded).
    Failed(Error),
    /// It crashed on reaching `round`.
    Crashed {
        /// The round it reached.
        round: u32,
    },
    /// It left on reaching `round`.
    Left {
        /// The round it reached.
        round: u32,
    },
    /// The simulation ended first: its tick limit came, or the member was
    /// frozen for good (see [`Faults::freezes`]) once the others ended.
    Unfinished {
        /// The round it reached.
        round: u32,
    },
}

impl MemberOutcome {
    /// The result, if the member finished.
    pub fn reduction(&self) -> Option<&Reduction> {
        match self {
            MemberOutcome::Finished(r) => Some(r),
            _ => None,
        }
    }
}

/// Message counts of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageStats {
    /// Messages handed to the network (per receiver).
    pub sent: u64,
    /// Messages lost.
    pub dropped: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Messages delayed by at least one tick.
    pub delayed: u64,
    /// Messages lost to cut links and isolations, or beyond a frozen
    /// member's receive buffer (heartbeats are not counted).
    pub cut: u64,
    /// Messages an engine rejected as malformed (always 0 unless the
    /// engine has a bug).
    pub violations: u64,
}

/// The outcome of a simulated run.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Per member, in id order.
    pub members: Vec<MemberOutcome>,
    /// Each member's input in effect at the end (`members × dim`, row-major).
    pub inputs: Vec<f64>,
    /// Length of each input.
    pub dim: usize,
    /// Largest round at which a member finished.
    pub rounds: u32,
    /// Ticks simulated.
    pub ticks: u64,
    /// Every member that neither crashed nor left finished, and all agree
    /// on the contributors. A member that stopped for want of a quorum
    /// ([`Error::Partitioned`]) or was excluded ([`Error::Excluded`]) did
    /// not finish, so a run in which one did is not converged;
    /// [`Report::contributors`] still says whether those that finished
    /// agree.
    pub converged: bool,
    /// The contributors every finished member reports (`None` if they
    /// disagree or none finished).
    pub contributors: Option<Contributors>,
    /// Per-round measurements up to the round the result was computed in
    /// (every round run, if no member finished; empty with
    /// [`Options::no_trace`]); the rounds in which the other members take
    /// that result as it spreads are not in it.
    pub trace: Vec<TraceRow>,
    /// Message counts.
    pub messages: MessageStats,
    /// Misbehaviour the engines detected, as `(reporter, violation)` in the
    /// order found: messages that contradicted the reporter's own state
    /// (see [`Violation::Contradicts`](crate::engine::Violation::Contradicts)).
    /// The reporter cut the sender off.
    pub misbehaviour: Vec<(usize, crate::engine::Violation)>,
}

impl Report {
    /// The exact mean of the contributors' inputs, computed centrally.
    pub fn exact_mean(&self) -> Option<Vec<f64>> {
        let contributors = self.contributors.as_ref()?;
        if contributors.is_empty() {
            return None;
        }
        let mut mean = vec![0.0; self.dim];
        for i in contributors.iter() {
            for (m, x) in mean
                .iter_mut()
                .zip(&self.inputs[i * self.dim..(i + 1) * self.dim])
            {
                *m += x;
            }
        }
        let count = contributors.len() as f64;
        mean.iter_mut().for_each(|m| *m /= count);
        Some(mean)
    }

    /// Largest distance (max norm) of a finished member's value from the
    /// exact mean of the contributors' inputs.
    pub fn max_abs_error(&self) -> Option<f64> {
        let mean = self.exact_mean()?;
        self.members
            .iter()
            .filter_map(MemberOutcome::reduction)
            .map(|r| {
                r.value
                    .iter()
                    .zip(&mean)
                    .map(|(v, m)| (v - m).abs())
                    .fold(0.0, f64::max)
            })
            .reduce(f64::max)
    }

    /// Members that finished with a result.
    pub fn survivors(&self) -> usize {
        self.members
            .iter()
            .filter(|n| n.reduction().is_some())
            .count()
    }
}

/// Runs the simulation to the end.
///
/// `inputs` holds one row of `dim` values per member (row-major).
///
/// # Errors
/// An invalid configuration for this graph, inputs of the wrong length or
/// not finite, or fault parameters out of range (see [`Simulator::new`]).
pub fn simulate(graph: &Graph, inputs: &[f64], dim: usize, options: &Options) -> Result<Report> {
    let mut simulator = Simulator::new(graph.clone(), inputs, dim, options.clone())?;
    while simulator.step() {}
    Ok(simulator.report())
}

/// A lower bound of the bytes a simulation of `graph` with `dim` values
/// per member allocates: each member keeps about
/// `2 · degree + 8` vectors of `dim + 1` values (its input, mass, result and
/// outgoing message, two per neighbour for flows and received rounds).
/// Measured peaks were 1.0–2.0 times this (ring, hypercube, complete and
/// exponential graphs), so a run it refuses cannot fit.
pub fn memory_needed(graph: &Graph, dim: usize) -> u128 {
    let vectors: u128 = (0..graph.len())
        .map(|i| 2 * graph.degree(i) as u128 + 8)
        .sum();
    vectors * (dim as u128 + 1) * 8
}

/// The memory this process may use, in bytes: the smaller of what the
/// kernel reports available and the address-space limit (`ulimit -v`);
/// `None` if neither can be read.
pub fn available_memory() -> Option<u128> {
    let field = |text: &str, name: &str| -> Option<u128> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let available = meminfo
        .as_deref()
        .and_then(|t| field(t, "MemAvailable:"))
        .map(|kib| kib * 1024);
    // "Max address space  <soft> <hard> bytes"; "unlimited" does not parse.
    let limits = std::fs::read_to_string("/proc/self/limits").ok();
    let address_space = limits
        .as_deref()
        .and_then(|t| field(t, "Max address space"));
    match (available, address_space) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
