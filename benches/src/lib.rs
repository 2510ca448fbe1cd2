//! Shared set-ups for the dac benchmarks.
#![deny(missing_docs)]

use dac_core::sim::{Options, Simulator};
use dac_core::{Config, Graph, Schedule};

/// A simulator of `n` members on a random 4-regular graph with `d = 1` and
/// Metropolis weights, with a tolerance it never reaches, so that every
/// step is a full round (the benchmark's unit of work).
///
/// # Errors
/// If no random 4-regular graph on `n` nodes can be built (`n < 5`).
pub fn million_node_simulator(n: usize) -> dac_core::Result<Simulator> {
    let graph = Graph::random_regular(n, 4, 1)?;
    let inputs: Vec<f64> = (0..n).map(|i| (i % 1000) as f64).collect();
    let options = Options {
        config: Config {
            schedule: Schedule::Metropolis,
            tol: f64::MIN_POSITIVE,
            max_rounds: u32::MAX,
        },
        no_trace: true,
        ..Options::default()
    };
    Simulator::new(graph, &inputs, 1, options)
}

/// Peak resident memory of this process in bytes (`VmHWM`), on Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
