//! Time per round and peak memory of the simulator at scale.
//!
//! ```text
//! cargo run --release -p dac-benches --bin sim_scale -- [N] [ROUNDS]
//! ```
//!
//! Defaults: N = 1 000 000 members, 20 rounds. Prints the mean time per
//! round and, since a shared host is noisy, the median, fastest and
//! slowest round.

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
