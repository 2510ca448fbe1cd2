//! Latency of `allreduce_mean` between processes on loopback, against the
//! raw TCP round trip measured in the same run.
//!
//! ```text
//! scripts/bench-net                      # builds the release binaries, then runs this
//! scripts/bench-net -n 2,4 --dim 1,1000  # other member counts and lengths
//! ```
//!
//! For each member count N and vector length d it runs
//! `dacrun -n N -- dac-allreduce --dim d --reps R --quiet` (both binaries
//! are looked up next to this one), takes each rank's median latency and
//! the rounds used, and prints a Markdown table: the median over ranks of
//! the per-rank median, the rounds, the time per round and its ratio to the
//! TCP round trip. Options: `-n N,N,...` (default `2,4,8`) and
//! `--dim d,d,...` (default `1,1000,1000000`); `net_bench --help` says more.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use clap::Parser;
use dac_benches::cli::{self, Counts};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "net_bench",
    version,
    about = "Latency of allreduce_mean between dacrun's processes on loopback, against the raw \
             TCP round trip, as a Markdown table.",
    long_about = "Latency of allreduce_mean between dacrun's processes on loopback, against the \
                  raw TCP round trip, as a Markdown table. For each N and d it runs `dacrun -n N \
                  -- dac-allreduce --dim d --reps R --quiet` (R = 1000 for d up to 1000, 100 up \
                  to 100000, else 10), with dacrun and dac-allreduce looked up next to this \
                  program (scripts/bench-net builds them).",
    after_help = "Exit status: 0 when every run succeeded, 1 when one failed (its output is \
                  printed), 2 for bad arguments."
)]
struct Cli {
    /// Member counts to run, separated by commas, each at least 1.
    #[arg(short = 'n', long = "np", value_name = "N,N,...", default_value = "2,4,8", value_parser = cli::counts)]
    np: Counts,

    /// Vector lengths to run, separated by commas, each at least 1.
    #[arg(long, value_name = "D,D,...", default_value = "1,1000,1000000", value_parser = cli::counts)]
    dim: Counts,

    /// The old positional form of --np.
    #[arg(value_name = "N,N,...", hide = true, conflicts_with = "np", value_parser = cli::counts)]
    np_positional: Option<Counts>,

    /// The old positional form of --dim.
    #[arg(value_name = "D,D,...", hide = true, conflicts_with = "dim", value_parser = cli::counts)]
    dim_positional: Option<Counts>,
}

/// Median round trip of an 8-byte ping-pong over loopback TCP (no delay),
/// in microseconds.
fn tcp_rtt_us(trips: usize) -> std::io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 8];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut buf = [0u8; 8];
    let mut times = Vec::with_capacity(trips);
    for i in 0..trips + 1000 {
        let start = Instant::now();
        s.write_all(&(i as u64).to_le_bytes())?;
        s.read_exact(&mut buf)?;
        if i >= 1000 {
            times.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    drop(s);
    let _ = echo.join();
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn field(line: &str, name: &str) -> Option<f64> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    line[start..].split(' ').next()?.parse().ok()
}

/// (median latency µs, median rounds) over the ranks of one run.
fn allreduce(bin: &Path, n: usize, d: usize) -> Result<(f64, f64), String> {
    let reps = match d {
        0..=1_000 => 1000,
        1_001..=100_000 => 100,
        _ => 10,
    };
    let out = Command::new(bin.join("dacrun"))
        .args(["-n", &n.to_string(), "--timeout", "600", "--"])
        .arg(bin.join("dac-allreduce"))
        .args([
            "--dim",
            &d.to_string(),
            "--reps",
            &reps.to_string(),
            "--quiet",
        ])
        .output()
        .map_err(|e| format!("cannot run dacrun in {}: {e}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "dacrun -n {n} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut latency = Vec::new();
    let mut rounds = Vec::new();
    for line in stdout.lines().filter(|l| l.contains(" ok: ")) {
        latency.extend(field(line, "median_us"));
        rounds.extend(field(line, "median_rounds"));
    }
    if latency.len() != n {
        return Err(format!("expected {n} summaries, got:\n{stdout}"));
    }
    latency.sort_by(f64::total_cmp);
    rounds.sort_by(f64::total_cmp);
    Ok((latency[n / 2], rounds[n / 2]))
}

fn run(cli: Cli) -> Result<(), String> {
    let sizes = cli.np_positional.unwrap_or(cli.np).0;
    let dims = cli.dim_positional.unwrap_or(cli.dim).0;
    let bin = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .ok_or("no directory for this binary")?
        .to_path_buf();
    let rtt = tcp_rtt_us(20_000).map_err(|e| format!("TCP ping-pong: {e}"))?;
    println!("raw TCP round trip on loopback (8 bytes, median of 20000): {rtt:.1} µs\n");
    println!("| N | d | median latency | rounds | per round | per round / TCP RTT |");
    println!("|---|---|---|---|---|---|");
    for &n in &sizes {
        for &d in &dims {
            let (latency, rounds) = allreduce(&bin, n, d)?;
            let per_round = latency / rounds.max(1.0);
            let shown = if latency >= 10_000.0 {
                format!("{:.1} ms", latency / 1000.0)
            } else {
                format!("{latency:.0} µs")
            };
            println!(
                "| {n} | {d} | {shown} | {rounds} | {per_round:.0} µs | {:.1} |",
                per_round / rtt
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(cli::parse("net_bench")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("net_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
