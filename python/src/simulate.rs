//! The in-process simulator and the topology helpers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dac_core::graph::Weights;
use dac_core::sim::{Faults, MemberOutcome, Options, Simulator};
use dac_core::{Config, Graph, Schedule, Topology};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::arrays::flat;
use crate::blocking::run;
use crate::errors::{Failure, argument};
use crate::results::SimulationOut;

/// The graph `name` builds for `nodes` members.
fn graph(name: &str, nodes: usize, seed: u64) -> Result<Graph, Failure> {
    Ok(name.parse::<Topology>()?.build(nodes, seed)?)
}

/// Simulates one reduction of the rows of `inputs` (`nodes × d`) on the
/// named topology and schedule, with faults.
#[pyfunction]
#[pyo3(signature = (inputs, topology, schedule, tol, max_rounds, drop_rate, delay, crash, seed))]
#[allow(clippy::too_many_arguments)]
pub fn simulate<'py>(
    py: Python<'py>,
    inputs: PyReadonlyArray2<'py, f64>,
    topology: &str,
    schedule: &str,
    tol: f64,
    max_rounds: u32,
    drop_rate: f64,
    delay: u32,
    crash: Vec<(usize, u32)>,
    seed: u64,
) -> PyResult<SimulationOut> {
    let (nodes, dim) = (inputs.shape()[0], inputs.shape()[1]);
    let flat = flat(inputs.as_slice())?;
    let topology = topology.to_owned();
    let schedule = schedule.to_owned();
    // Set when the caller stops waiting (Ctrl-C), so that the abandoned
    // worker stops simulating too.
    let abandoned = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&abandoned);
    let report = run(py, None, "dac-simulate".into(), move || {
        let graph = graph(&topology, nodes, seed)?;
        // Refused before anything large is allocated: an allocation that
        // fails aborts the whole Python process.
        let needed = dac_core::sim::memory_needed(&graph, dim);
        if let Some(available) = dac_core::sim::available_memory()
            && needed > available
        {
            let gib = |b: u128| b as f64 / f64::from(1u32 << 30);
            return Err(argument(format!(
                "{nodes} nodes with {dim} values each need at least {:.1} GiB, but {:.1} GiB \
                 are available; use fewer nodes or shorter inputs",
                gib(needed),
                gib(available)
            )));
        }
        let config = Config {
            schedule: schedule.parse::<Schedule>()?,
            tol,
            max_rounds,
        };
        for &(node, _) in &crash {
            if node >= nodes {
                return Err(argument(format!(
                    "crash names node {node}, but the nodes are 0..{nodes}"
                )));
            }
        }
        let options = Options {
            config,
            faults: Faults {
                drop: drop_rate,
                max_delay: delay,
                crashes: crash,
                ..Faults::default()
            },
            seed,
            no_trace: false,
        };
        let mut sim = Simulator::new(graph, &flat, dim, options)?;
        while sim.step() {
            if stop.load(Ordering::Relaxed) {
                return Err(argument("the simulation was interrupted"));
            }
        }
        let last: Vec<(u32, Vec<f64>)> = (0..nodes)
            .map(|j| {
                let round = sim.engines()[j].status().round;
                (round, sim.estimate(j).unwrap_or_default())
            })
            .collect();
        Ok((sim.report(), last))
    })
    .inspect_err(|_| abandoned.store(true, Ordering::Relaxed))?;
    let (report, last) = report;
    let mut estimates = Array2::from_elem((nodes, dim), f64::NAN);
    let mut rounds = report.rounds;
    let mut cut_short: Option<f64> = None;
    for (i, node) in report.members.iter().enumerate() {
        let value = match node {
            MemberOutcome::Finished(r) => &r.value,
            MemberOutcome::Crashed { .. } | MemberOutcome::Left { .. } => continue,
            other => {
                if let MemberOutcome::Failed(dac_core::Error::NotConverged { residual, .. }) = other
                {
                    cut_short = Some(cut_short.unwrap_or(0.0).max(*residual));
                }
                rounds = rounds.max(last[i].0);
                &last[i].1
            }
        };
        for (e, v) in estimates.row_mut(i).iter_mut().zip(value) {
            *e = *v;
        }
    }
    let contributors = report
        .contributors
        .as_ref()
        .map(|c| c.to_vec())
        .unwrap_or_default();
    // Row 0 of the trace is the start, before any exchange: no residual
    // bound exists yet. Python gets rounds 1, 2, … at indices 0, 1, ….
    let exchanged = || report.trace.iter().filter(|t| t.round > 0);
    let residuals: Vec<f64> = exchanged().map(|t| t.residual).collect();
    let errors: Vec<f64> = exchanged().map(|t| t.max_error).collect();
    Ok(SimulationOut {
        estimates: estimates.into_pyarray(py).unbind(),
        rounds,
        converged: report.converged,
        contributors,
        residuals: residuals.into_pyarray(py).unbind(),
        errors: errors.into_pyarray(py).unbind(),
        cut_short,
    })
}

/// The spectral gap `1 − max(|λ₂|, |λₙ|)` of the Metropolis matrix of the
/// named topology on `nodes` members.
#[pyfunction]
pub fn spectral_gap(py: Python<'_>, name: &str, nodes: usize, seed: u64) -> PyResult<f64> {
    let name = name.to_owned();
    run(py, None, "dac-spectrum".into(), move || {
        Ok(graph(&name, nodes, seed)?
            .spectrum(Weights::Metropolis)?
            .gap)
    })
}

/// The diameter of the named topology on `nodes` members.
#[pyfunction]
pub fn diameter(py: Python<'_>, name: &str, nodes: usize, seed: u64) -> PyResult<usize> {
    let name = name.to_owned();
    run(py, None, "dac-diameter".into(), move || {
        graph(&name, nodes, seed)?.diameter().ok_or_else(|| {
            argument(format!(
                "topology {name:?} on {nodes} nodes is disconnected"
            ))
        })
    })
}

/// The neighbours of member `node` in the named topology on `nodes`
/// members, in increasing order.
#[pyfunction]
pub fn neighbors(name: &str, nodes: usize, node: usize, seed: u64) -> PyResult<Vec<usize>> {
    let g = graph(name, nodes, seed)?;
    if node >= nodes {
        return Err(argument(format!("node {node} is not in 0..{nodes}")).into());
    }
    let mut n: Vec<usize> = g.neighbors(node).collect();
    n.sort_unstable();
    Ok(n)
}
