//! Time per round and peak memory of the simulator at scale.
//!
//! ```text
//! cargo run --release -p dac-benches --bin sim_scale -- [N] [ROUNDS]
//! ```
//!
//! Defaults: N = 1 000 000 members, 20 rounds.

use std::time::Instant;

use dac_benches::{million_node_simulator, peak_rss_bytes};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let start = Instant::now();
    let mut sim = million_node_simulator(n);
    let setup = start.elapsed();
    let start = Instant::now();
    for _ in 0..rounds {
        if !sim.step() {
            eprintln!("sim_scale: the simulation ended early");
            std::process::exit(1);
        }
    }
    let per_round = start.elapsed() / rounds;
    let peak = peak_rss_bytes().map_or_else(
        || "unknown".to_string(),
        |b| format!("{:.0} MiB", b as f64 / 1048576.0),
    );
    println!(
        "members: {n}   setup: {:.2} s   rounds: {rounds}   per round: {:.1} ms   peak RSS: {peak}",
        setup.as_secs_f64(),
        per_round.as_secs_f64() * 1e3
    );
}
