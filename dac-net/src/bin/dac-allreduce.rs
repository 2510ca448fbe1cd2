//! `dac-allreduce`: runs `allreduce_mean` over a job, checks every result
//! against the exact mean of the contributors' inputs, and reports the
//! latency — the networked demo, the fault drill and the benchmark client.
//!
//! ```text
//! cargo build -p dac-net --release --bins
//! target/release/dacrun -n 4 -- target/release/dac-allreduce --dim 1000 --reps 100
//! ```
//!
//! Rank `r`'s input is `x[k] = r + k / dim` (so the exact mean over any set
//! of contributors is known to every rank). Options:
//!
//! - `--dim D` (default 1), `--reps R` (default 10), `--warmup W`
//!   (default 2, not timed);
//! - `--sum`: check `allreduce_sum` instead of the mean;
//! - `--pause-ms P`: sleep P ms after each reduction (not timed), for a job
//!   that must run a while;
//! - `--kill-rank K --kill-after-ms T`: rank K kills itself with SIGKILL
//!   T ms after its first reduction starts (run under `dacrun --keep-going`);
//! - `--quiet`: only the summary line;
//! - `--misbehave R:MODE@K` (builds with the `testing` feature only): rank R
//!   breaks the protocol before reduction K — a bad frame to every other
//!   rank (`wrong-job`, `future-op`, `oversized`, `truncated`, `garbage`,
//!   `nan`, `stalled`, or `forged-done`: a forged result), `flood:N` (N copies of a valid frame to rank
//!   R + 1), or `repeat:N` (every frame it sends, N times from then on).
//!   The others cut it off and go on; it fails with the error that says so.
//!
//! Every rank prints `ok: reps=R ... median_us=...` and exits 0 when every
//! result is within `1e-12·max(1, ‖x̄‖∞)` of the exact mean, or names the
//! first wrong result and exits 1.

use std::process::ExitCode;
use std::time::Instant;

use dac_net::{Comm, Communicator, Reduction, SelfKill};

#[derive(Debug)]
struct Args {
    dim: usize,
    reps: usize,
    warmup: usize,
    sum: bool,
    pause: std::time::Duration,
    kill: Option<SelfKill>,
    quiet: bool,
    #[cfg(feature = "testing")]
    misbehave: Option<Misbehaviour>,
}

/// `--misbehave R:MODE@K`.
#[cfg(feature = "testing")]
#[derive(Debug, Clone, Copy)]
struct Misbehaviour {
    rank: usize,
    at: usize,
    mode: Mode,
}

#[cfg(feature = "testing")]
#[derive(Debug, Clone, Copy)]
enum Mode {
    Bad(dac_net::testing::BadFrame),
    Flood(usize),
    Repeat(usize),
}

#[cfg(feature = "testing")]
fn parse_misbehaviour(text: &str) -> Result<Misbehaviour, String> {
    let bad = || format!("--misbehave: {text:?} is not R:MODE@K");
    let (rank, rest) = text.split_once(':').ok_or_else(bad)?;
    let (mode, at) = rest.rsplit_once('@').ok_or_else(bad)?;
    let rank = rank.parse().map_err(|_| bad())?;
    let at = at.parse().map_err(|_| bad())?;
    let count = |n: &str| n.parse::<usize>().map_err(|_| bad());
    let mode = match mode.split_once(':') {
        Some(("flood", n)) => Mode::Flood(count(n)?),
        Some(("repeat", n)) => Mode::Repeat(count(n)?),
        _ => Mode::Bad(mode.parse().map_err(|e| format!("--misbehave: {e}"))?),
    };
    Ok(Misbehaviour { rank, at, mode })
}

/// Commits the misbehaviour of `--misbehave`.
#[cfg(feature = "testing")]
fn misbehave(comm: &mut Comm, m: Misbehaviour, x: &[f64]) -> Result<(), String> {
    let others: Vec<usize> = (0..comm.size()).filter(|&r| r != m.rank).collect();
    match m.mode {
        Mode::Bad(bad) => {
            for to in others {
                comm.send_bad_frame(to, bad, x).map_err(|e| e.to_string())?;
            }
        }
        Mode::Flood(copies) => {
            let to = (m.rank + 1) % comm.size();
            comm.flood(to, copies, x).map_err(|e| e.to_string())?;
        }
        Mode::Repeat(copies) => comm.duplicate_frames(copies),
    }
    Ok(())
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        dim: 1,
        reps: 10,
        warmup: 2,
        sum: false,
        pause: std::time::Duration::ZERO,
        kill: None,
        quiet: false,
        #[cfg(feature = "testing")]
        misbehave: None,
    };
    let mut kill_rank = None;
    let mut kill_after = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        #[cfg(feature = "testing")]
        if flag == "--misbehave" {
            let text = it.next().ok_or("--misbehave needs a value")?;
            args.misbehave = Some(parse_misbehaviour(&text)?);
            continue;
        }
        let mut value = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| format!("{name}: {v:?} is not a non-negative integer"))
        };
        match flag.as_str() {
            "--dim" => args.dim = value("--dim")? as usize,
            "--reps" => args.reps = value("--reps")? as usize,
            "--warmup" => args.warmup = value("--warmup")? as usize,
            "--kill-rank" => kill_rank = Some(value("--kill-rank")? as usize),
            "--kill-after-ms" => kill_after = Some(value("--kill-after-ms")?),
            "--pause-ms" => args.pause = std::time::Duration::from_millis(value("--pause-ms")?),
            "--sum" => args.sum = true,
            "--quiet" => args.quiet = true,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if args.dim == 0 {
        return Err("--dim must be at least 1".into());
    }
    args.kill = SelfKill::from_options(kill_rank, kill_after)?;
    Ok(args)
}

fn input(rank: usize, dim: usize) -> Vec<f64> {
    (0..dim)
        .map(|k| rank as f64 + k as f64 / dim as f64)
        .collect()
}

/// Checks `r` against the exact mean (or sum) of its contributors' inputs.
fn check(r: &Reduction, dim: usize, sum: bool) -> Result<(), String> {
    let ranks: Vec<usize> = r.contributors.iter().collect();
    if ranks.is_empty() || r.value.len() != dim {
        return Err(format!(
            "{} values from {} contributors",
            r.value.len(),
            ranks.len()
        ));
    }
    let n = ranks.len() as f64;
    let rank_mean = ranks.iter().map(|&x| x as f64).sum::<f64>() / n;
    let scale = if sum { n } else { 1.0 };
    let norm = (rank_mean + 1.0) * scale;
    let tol = 1e-12 * norm.max(1.0);
    for (k, v) in r.value.iter().enumerate() {
        let exact = (rank_mean + k as f64 / dim as f64) * scale;
        if (v - exact).abs() > tol {
            return Err(format!(
                "value[{k}] = {v}, exact {exact} (contributors {ranks:?})"
            ));
        }
    }
    Ok(())
}

fn run(args: &Args) -> Result<String, String> {
    let mut comm = Comm::from_env().map_err(|e| e.to_string())?;
    let rank = comm.rank();
    let x = input(rank, args.dim);
    if let Some(kill) = args.kill {
        kill.arm(rank);
    }
    let mut times = Vec::with_capacity(args.reps);
    let mut rounds = Vec::with_capacity(args.reps);
    let mut fewer = 0;
    let mut previous: Vec<usize> = (0..comm.size()).collect();
    for i in 0..args.warmup + args.reps {
        #[cfg(feature = "testing")]
        if let Some(m) = args.misbehave.filter(|m| m.rank == rank && m.at == i) {
            misbehave(&mut comm, m, &x)?;
        }
        let start = Instant::now();
        let r = if args.sum {
            comm.allreduce_sum(&x)
        } else {
            comm.allreduce_mean(&x)
        }
        .map_err(|e| format!("reduction {i}: {e}"))?;
        let elapsed = start.elapsed();
        check(&r, args.dim, args.sum).map_err(|e| format!("reduction {i}: {e}"))?;
        if r.contributors.len() < comm.size() {
            fewer += 1;
        }
        let now = r.contributors.to_vec();
        if !args.quiet && now != previous {
            println!(
                "reduction {i}: contributors now {now:?} ({} rounds), still exact",
                r.rounds
            );
        }
        previous = now;
        if !args.pause.is_zero() {
            std::thread::sleep(args.pause);
        }
        if i >= args.warmup {
            times.push(elapsed.as_secs_f64() * 1e6);
            rounds.push(r.rounds);
        }
        if !args.quiet && i + 1 == args.warmup + args.reps {
            println!(
                "last: contributors {:?} rounds {} residual {:.1e}",
                r.contributors.to_vec(),
                r.rounds,
                r.residual
            );
        }
    }
    times.sort_by(f64::total_cmp);
    rounds.sort_unstable();
    let median = |v: &[f64]| v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
    let summary = format!(
        "ok: size={} dim={} reps={} median_us={:.1} min_us={:.1} max_us={:.1} median_rounds={} \
         reductions_without_everyone={} departed={:?}",
        comm.size(),
        args.dim,
        args.reps,
        median(&times),
        times.first().copied().unwrap_or(f64::NAN),
        times.last().copied().unwrap_or(f64::NAN),
        rounds.get(rounds.len() / 2).copied().unwrap_or(0),
        fewer,
        comm.departed(),
    );
    comm.shutdown().map_err(|e| e.to_string())?;
    Ok(summary)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("dac-allreduce: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dac-allreduce: {e}");
            ExitCode::FAILURE
        }
    }
}
