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
    let n: usize = argument(args.next(), "N", 1_000_000);
    let rounds: u32 = argument(args.next(), "ROUNDS", 20);
    if rounds == 0 {
        fail("ROUNDS must be at least 1");
    }
    let start = Instant::now();
    let mut sim = million_node_simulator(n).unwrap_or_else(|e| fail(&e.to_string()));
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

/// A positional argument, or `default` when it is absent.
fn argument<T: std::str::FromStr>(arg: Option<String>, name: &str, default: T) -> T {
    match arg {
        None => default,
        Some(a) => a
            .parse()
            .unwrap_or_else(|_| fail(&format!("{name} must be a whole number, got {a:?}"))),
    }
}

/// Prints a one-line error and exits with status 2.
fn fail(message: &str) -> ! {
    eprintln!("sim_scale: {message}");
    std::process::exit(2);
}
