//! Time per round and peak memory of the simulator at scale.
//!
//! ```text
//! cargo run --release -p dac-benches --bin sim_scale -- [-n N] [--rounds ROUNDS]
//! ```
//!
//! Defaults: N = 1 000 000 members, 20 rounds. Prints the mean time per
//! round and, since a shared host is noisy, the median, fastest and
//! slowest round. Exit status: 0, 1 when the simulation ended early, 2 for
//! bad arguments (`sim_scale --help` says more).

use std::time::Instant;

use clap::Parser;
use dac_benches::cli;
use dac_benches::{million_node_simulator, peak_rss_bytes};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "sim_scale",
    version,
    about = "Time per round and peak memory of the simulator: N members on a random 4-regular \
             graph, d = 1, Metropolis, one round per step.",
    after_help = "Prints the mean time per round, the median, fastest and slowest round, the set-up \
                  time and the peak RSS.\n\n\
                  Exit status: 0 after every round, 1 when the simulation ended early, 2 for bad \
                  arguments."
)]
struct Cli {
    /// Members of the simulated network, at least 5 (a random 4-regular graph needs them).
    #[arg(short = 'n', long = "np", value_name = "N", default_value_t = 1_000_000, value_parser = cli::positive)]
    np: usize,

    /// Rounds to time, at least 1.
    #[arg(long, value_name = "ROUNDS", default_value_t = 20, value_parser = rounds)]
    rounds: u32,

    /// The old positional form of --np.
    #[arg(value_name = "N", hide = true, conflicts_with = "np", value_parser = cli::positive)]
    np_positional: Option<usize>,

    /// The old positional form of --rounds.
    #[arg(value_name = "ROUNDS", hide = true, conflicts_with = "rounds", value_parser = rounds)]
    rounds_positional: Option<u32>,
}

/// Parses `--rounds`.
fn rounds(value: &str) -> Result<u32, String> {
    let n = cli::positive(value)?;
    u32::try_from(n).map_err(|_| format!("must be at most {}", u32::MAX))
}

fn main() {
    let args: Cli = cli::parse("sim_scale");
    let n = args.np_positional.unwrap_or(args.np);
    let rounds = args.rounds_positional.unwrap_or(args.rounds);
    let start = Instant::now();
    let mut sim =
        million_node_simulator(n).unwrap_or_else(|e| cli::fail("sim_scale", &e.to_string()));
    let setup = start.elapsed();
    let mut times = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds {
        let start = Instant::now();
        if !sim.step() {
            eprintln!("sim_scale: the simulation ended early");
            std::process::exit(1);
        }
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let fastest = times.first().copied().unwrap_or(f64::NAN);
    let slowest = times.last().copied().unwrap_or(f64::NAN);
    let peak = peak_rss_bytes().map_or_else(
        || "unknown".to_string(),
        |b| format!("{:.0} MiB", b as f64 / 1048576.0),
    );
    println!(
        "members: {n}   setup: {:.2} s   rounds: {rounds}   per round: {mean:.1} ms \
         (median {median:.1}, fastest {fastest:.1}, slowest {slowest:.1})   peak RSS: {peak}",
        setup.as_secs_f64(),
    );
}
