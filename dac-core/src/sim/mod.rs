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
//! - a member's input changes at a given round.
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
    /// Ticks after a crash until its neighbours' failure detectors report
    /// it (at least 1).
    pub detect_after: u32,
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
        }
    }
}

/// A member's input replaced when it reaches a round.
#[derive(Clone, Debug, PartialEq)]
pub struct InputChange {
    /// The member.
    pub node: usize,
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
pub enum NodeOutcome {
    /// It finished with a result.
    Finished(Reduction),
    /// It failed (for example `max_rounds` reached, or excluded).
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
    /// The simulation's tick limit came first.
    Unfinished {
        /// The round it reached.
        round: u32,
    },
}

impl NodeOutcome {
    /// The result, if the member finished.
    pub fn reduction(&self) -> Option<&Reduction> {
        match self {
            NodeOutcome::Finished(r) => Some(r),
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
    /// Messages an engine rejected as malformed (always 0 unless the
    /// engine has a bug).
    pub violations: u64,
}

/// The outcome of a simulated run.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Per member, in id order.
    pub nodes: Vec<NodeOutcome>,
    /// Each member's input in effect at the end (`nodes × dim`, row-major).
    pub inputs: Vec<f64>,
    /// Length of each input.
    pub dim: usize,
    /// Largest round at which a member finished.
    pub rounds: u32,
    /// Ticks simulated.
    pub ticks: u64,
    /// Every member that neither crashed nor left finished, and all agree
    /// on the contributors.
    pub converged: bool,
    /// The contributors every finished member reports (`None` if they
    /// disagree or none finished).
    pub contributors: Option<Contributors>,
    /// Per-round measurements (empty with [`Options::no_trace`]).
    pub trace: Vec<TraceRow>,
    /// Message counts.
    pub messages: MessageStats,
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
        self.nodes
            .iter()
            .filter_map(NodeOutcome::reduction)
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
        self.nodes
            .iter()
            .filter(|n| n.reduction().is_some())
            .count()
    }
}

/// Runs the simulation to the end.
///
/// `inputs` holds one row of `dim` values per node (row-major).
///
/// # Errors
/// An invalid configuration for this graph, inputs of the wrong length or
/// not finite, or fault parameters out of range (see [`Simulator::new`]).
pub fn simulate(graph: &Graph, inputs: &[f64], dim: usize, options: &Options) -> Result<Report> {
    let mut simulator = Simulator::new(graph.clone(), inputs, dim, options.clone())?;
    while simulator.step() {}
    Ok(simulator.report())
}
