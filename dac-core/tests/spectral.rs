//! Measured Metropolis rounds against the rounds the spectral gap predicts.

mod common;

use common::{assert_all_within, inputs, max_norm, mean_of, options};
use dac_core::graph::Weights;
use dac_core::sim::{self, Faults};
use dac_core::{Config, Graph, Schedule};

/// Rounds to reach `1e-9`, both as first measured (the true error of every
/// member below `1e-9·max(1, ‖x̄‖∞)`) and as agreed by the termination
/// protocol, lie within 0.3× and 1.2× of `⌈ln 1e-9 / ln slem⌉`.
#[test]
fn metropolis_rounds_match_the_spectral_prediction() {
    let tol = 1e-9;
    let graphs = [
        ("ring", Graph::ring(64).unwrap()),
        ("torus", Graph::torus(8, 8).unwrap()),
        ("random 4-regular", Graph::random_regular(64, 4, 1).unwrap()),
    ];
    for (name, graph) in graphs {
        let predicted = graph
            .spectrum(Weights::Metropolis)
            .unwrap()
            .rounds_for(tol)
            .unwrap() as f64;
        for seed in 0..3 {
            // Inputs in [-1, 1]: the prediction is for a unit initial spread.
            let raw = inputs(64, 1, seed);
            let x: Vec<f64> = raw.iter().map(|v| v / max_norm(&raw)).collect();
            let config = Config {
                schedule: Schedule::Metropolis,
                tol,
                ..Config::default()
            };
            let report =
                sim::simulate(&graph, &x, 1, &options(config, Faults::default(), 0)).unwrap();
            let mean = mean_of(&x, 1, |_| true);
            assert_all_within(&report, &mean, tol, name);
            let scale = max_norm(&mean).max(1.0);
            let reached = report
                .trace
                .iter()
                .find(|row| row.max_error <= tol * scale)
                .expect("the error falls below tol")
                .round as f64;
            let stopped = f64::from(report.rounds);
            for (what, rounds) in [("reached", reached), ("stopped", stopped)] {
                let ratio = rounds / predicted;
                assert!(
                    (0.3..=1.2).contains(&ratio),
                    "{name}, seed {seed}: {what} at {rounds} rounds, {ratio:.2}× the prediction {predicted}"
                );
            }
        }
    }
}
