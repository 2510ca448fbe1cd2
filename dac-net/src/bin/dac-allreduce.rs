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
//! of contributors is known to every rank). Options (`dac-allreduce --help`
//! gives each with its default):
//!
//! - `--dim D` (default 1), `--reps R` (default 10), `--warmup W`
//!   (default 2, not timed);
//! - `--sum`: check `allreduce_sum` instead of the mean;
//! - `--pause-ms P`: sleep P ms after each reduction (not timed), for a job
//!   that must run a while;
//! - `--kill-rank K --kill-after-ms T`: rank K kills itself with SIGKILL
//!   T ms after its first reduction starts (run under `dacrun --keep-going`);
//! - `--quiet`: only the summary line;
//! - `--until-ms T`: stop after the reduction that ends T ms after the
//!   first one began (`--reps` is then a maximum, and `reps=` in the
//!   summary says how many were timed);
//! - `--admit`: an admission point after every reduction (`Comm::admit`),
//!   where processes started with `dacrun --join` enter (every rank of the
//!   job passes it, the joiners too);
//! - `--misbehave R:MODE@K` (builds with the `testing` feature only): rank R
//!   breaks the protocol before reduction K — a bad frame to every other
//!   rank (`wrong-job`, `future-op`, `oversized`, `truncated`, `garbage`,
//!   `nan`, `stalled`, or `forged-done`: a forged result), `flood:N` (N copies of a valid frame to rank
//!   R + 1), or `repeat:N` (every frame it sends, N times from then on).
//!   The others cut it off and go on; it fails with the error that says so.
//!
//! The job itself (rank, size, topology, schedule, key, …) comes from the
//! `DAC_*` variables dacrun sets, read by [`Comm::from_env`].
//!
//! Every rank prints `ok: reps=R ... median_us=...` (with `view=`, the
//! final view's id, `view_members=`, its size, `in_view=`, the reductions
//! that started in it, `in_view_max_rounds=`, the most rounds one of them
//! took, and `in_view_median_us=`, their median time; timed reductions
//! only; then `rank=`, the first reduction's `first_contributors=` and
//! `first_rounds=`, and `with_all=`, the timed reductions whose
//! contributors are every rank the job ever had, with
//! `with_all_max_rounds=`; then the two times the dynamic-job benchmark
//! reads: `build_to_first_ms=`, from the start of `Comm::from_env` to the
//! end of the first reduction — for a joiner, from its join request to the
//! first reduction it is in — and `view_changed_unix_us=`, the wall-clock
//! time at which the first reduction that started in the final view ended,
//! 0 if the view never changed) and exits 0 when every
//! result is within `1e-12·max(1, ‖x̄‖∞)` of the exact mean, or names the
//! first wrong result and exits 1; bad arguments exit 2 with one line.

use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use clap::Parser;
use dac_core::cli::one_line;
use dac_net::{Comm, Communicator, Reduction, SelfKill};

/// What `--help` prints after the options.
const AFTER_HELP: &str = "\
Rank r's input is x[k] = r + k / D, so every rank knows the exact mean over
any set of contributors. The job comes from the environment dacrun sets:
DAC_RANK and DAC_SIZE (required), DAC_RUN_DIR, DAC_TOPOLOGY, DAC_SCHEDULE,
DAC_PEER_TIMEOUT, DAC_KEY_FILE or DAC_JOB_KEY, DAC_LISTEN, DAC_BOOTSTRAP,
DAC_SEED, DAC_IDENTITY_FILE and DAC_ALLOW_PEERS (see Comm::from_env).

Exit status:
  0  every result was within 1e-12 * max(1, |mean|) of the exact mean of its
     contributors; each rank prints 'ok: size=N dim=D reps=R median_us=...'
  1  a wrong result (named), or the job failed (a reduction's error)
  2  bad arguments (one line on stderr; nothing started)";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "dac-allreduce",
    version,
    about = "Runs allreduce_mean over a dacrun job, checks every result against the exact mean \
             of its contributors' inputs, and reports the latency.",
    override_usage = "dacrun -n N [DACRUN OPTIONS] -- dac-allreduce [OPTIONS]",
    after_help = AFTER_HELP,
    args_override_self = true
)]
struct Args {
    /// Length of each rank's vector, at least 1.
    #[arg(long, value_name = "D", default_value_t = 1, value_parser = parse_dim)]
    dim: usize,

    /// Timed reductions, after the warm-up ones.
    #[arg(long, value_name = "R", default_value_t = 10)]
    reps: usize,

    /// Reductions before the timed ones (checked, not timed).
    #[arg(long, value_name = "W", default_value_t = 2)]
    warmup: usize,

    /// Check allreduce_sum instead of allreduce_mean.
    #[arg(long)]
    sum: bool,

    /// Sleep P milliseconds after each reduction (not timed), for a job that must run a while.
    #[arg(long = "pause-ms", value_name = "P", default_value_t = 0)]
    pause_ms: u64,

    /// Rank K kills itself with SIGKILL (needs --kill-after-ms; run under dacrun --keep-going).
    #[arg(long, value_name = "K", requires = "kill_after_ms")]
    kill_rank: Option<usize>,

    /// The SIGKILL of --kill-rank comes T ms after its first reduction starts.
    #[arg(long = "kill-after-ms", value_name = "T", requires = "kill_rank")]
    kill_after_ms: Option<u64>,

    /// Print only the summary line.
    #[arg(long)]
    quiet: bool,

    /// Stop after the reduction that ends T ms after the first one began (--reps is then at most).
    #[arg(long = "until-ms", value_name = "T")]
    until_ms: Option<u64>,

    /// After each reduction, an admission point (Comm::admit, not timed): processes
    /// started with `dacrun --join` enter there. Every rank must pass it.
    #[arg(long)]
    admit: bool,

    /// Rank R breaks the protocol before reduction K (testing builds only).
    ///
    /// MODE is a bad frame to every other rank (wrong-job, future-op,
    /// oversized, truncated, garbage, nan, stalled, or forged-done: a forged
    /// result), flood:N (N copies of a valid frame to rank R + 1), or repeat:N
    /// (every frame it sends, N times from then on). The others cut it off and
    /// go on; it fails with the error that says so.
    #[cfg(feature = "testing")]
    #[arg(long, value_name = "R:MODE@K", value_parser = parse_misbehaviour)]
    misbehave: Option<Misbehaviour>,
}

/// Parses `--dim`.
fn parse_dim(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(dim) => Ok(dim),
        Err(_) => Err("expects a positive integer".into()),
    }
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
    let bad = || "expects R:MODE@K, e.g. 1:garbage@3 or 0:flood:100@2".to_string();
    let (rank, rest) = text.split_once(':').ok_or_else(bad)?;
    let (mode, at) = rest.rsplit_once('@').ok_or_else(bad)?;
    let rank = rank.parse().map_err(|_| bad())?;
    let at = at.parse().map_err(|_| bad())?;
    let count = |n: &str| n.parse::<usize>().map_err(|_| bad());
    let mode = match mode.split_once(':') {
        Some(("flood", n)) => Mode::Flood(count(n)?),
        Some(("repeat", n)) => Mode::Repeat(count(n)?),
        _ => Mode::Bad(
            mode.parse::<dac_net::testing::BadFrame>()
                .map_err(|e| e.to_string())?,
        ),
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

fn run(args: &Args, kill: Option<SelfKill>) -> Result<String, String> {
    let building = Instant::now();
    let mut comm = Comm::from_env().map_err(|e| e.to_string())?;
    let rank = comm.rank();
    let first_view = comm.view_id();
    let mut build_to_first_ms = f64::NAN;
    // When the first reduction that started in each new view ended.
    let mut view_changed = Vec::new();
    let x = input(rank, args.dim);
    if let Some(kill) = kill {
        kill.arm(rank);
    }
    // (--reps may be a generous maximum with --until-ms.)
    let capacity = args.reps.min(1 << 16);
    let mut times = Vec::with_capacity(capacity);
    let mut rounds = Vec::with_capacity(capacity);
    let mut fewer = 0;
    // The first reduction's contributors and rounds.
    let mut first = (0, 0);
    let mut previous: Vec<usize> = (0..comm.size()).collect();
    // (view the reduction started in, its rounds, its time in µs), for
    // every timed reduction.
    let mut views = Vec::with_capacity(capacity);
    // (contributors, rounds) of every timed reduction.
    let mut everyone = Vec::with_capacity(capacity);
    let begun = Instant::now();
    let total = args.warmup.saturating_add(args.reps);
    for i in 0..total {
        #[cfg(feature = "testing")]
        if let Some(m) = args.misbehave.filter(|m| m.rank == rank && m.at == i) {
            misbehave(&mut comm, m, &x)?;
        }
        let view = comm.view_id();
        let start = Instant::now();
        let r = if args.sum {
            comm.allreduce_sum(&x)
        } else {
            comm.allreduce_mean(&x)
        }
        .map_err(|e| format!("reduction {i}: {e}"))?;
        let elapsed = start.elapsed();
        check(&r, args.dim, args.sum).map_err(|e| format!("reduction {i}: {e}"))?;
        if i == 0 {
            first = (r.contributors.len(), r.rounds);
            build_to_first_ms = building.elapsed().as_secs_f64() * 1e3;
        }
        if view != first_view && view_changed.last().is_none_or(|&(v, _)| v != view) {
            view_changed.push((view, unix_us()));
        }

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
        if args.pause_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(args.pause_ms));
        }
        let over = args
            .until_ms
            .is_some_and(|t| begun.elapsed() >= std::time::Duration::from_millis(t));
        // The last reduction is followed by the goodbye instead: the
        // others' admission point then notes the departure.
        if args.admit && i + 1 < total && !over {
            let admitted = comm
                .admit()
                .map_err(|e| format!("admission after {i}: {e}"))?;
            if !args.quiet && !admitted.is_empty() {
                println!("reduction {i}: admitted ranks {admitted:?}");
            }
        }
        if i >= args.warmup {
            times.push(elapsed.as_secs_f64() * 1e6);
            rounds.push(r.rounds);
            views.push((view, r.rounds, elapsed.as_secs_f64() * 1e6));
            everyone.push((r.contributors.len(), r.rounds));
        }
        if !args.quiet && (i + 1 == total || over) {
            println!(
                "last: contributors {:?} rounds {} residual {:.1e}",
                r.contributors.to_vec(),
                r.rounds,
                r.residual
            );
        }
        if over {
            break;
        }
    }
    let timed = times.len();
    times.sort_by(f64::total_cmp);
    rounds.sort_unstable();
    let median = |v: &[f64]| v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
    // The reductions that started in the final view, and their most rounds.
    let last_view = comm.view_id();
    let (in_view, mut in_view_us): (Vec<u32>, Vec<f64>) = views
        .iter()
        .filter(|(v, _, _)| *v == last_view)
        .map(|&(_, rounds, us)| (rounds, us))
        .unzip();
    in_view_us.sort_by(f64::total_cmp);
    let view_changed_unix_us = view_changed
        .iter()
        .find(|&&(v, _)| v == last_view)
        .map_or(0, |&(_, t)| t);
    // The timed reductions whose contributors are every rank assigned
    // (all the members the job ever had), and their rounds.
    let with_all: Vec<u32> = everyone
        .iter()
        .filter(|(n, _)| *n == comm.size())
        .map(|&(_, rounds)| rounds)
        .collect();
    let summary = format!(
        "ok: size={} dim={} reps={} median_us={:.1} min_us={:.1} max_us={:.1} median_rounds={} \
         reductions_without_everyone={} departed={:?} view={last_view} view_members={} \
         in_view={} in_view_max_rounds={} in_view_median_us={:.1} rank={rank} \
         first_contributors={} first_rounds={} with_all={} with_all_max_rounds={} \
         build_to_first_ms={build_to_first_ms:.1} view_changed_unix_us={view_changed_unix_us}",
        comm.size(),
        args.dim,
        timed,
        median(&times),
        times.first().copied().unwrap_or(f64::NAN),
        times.last().copied().unwrap_or(f64::NAN),
        rounds.get(rounds.len() / 2).copied().unwrap_or(0),
        fewer,
        comm.departed(),
        comm.members().len(),
        in_view.len(),
        in_view.iter().max().copied().unwrap_or(0),
        median(&in_view_us),
        first.0,
        first.1,
        with_all.len(),
        with_all.iter().max().copied().unwrap_or(0),
    );
    comm.shutdown().map_err(|e| e.to_string())?;
    Ok(summary)
}

/// Microseconds since the Unix epoch (the processes of one machine share
/// this clock; the benchmark compares it with the time of a SIGKILL).
fn unix_us() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // `--help` or `--version`: a closed stdout has no one to tell.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("dac-allreduce: {}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    // clap makes --kill-rank and --kill-after-ms go together.
    let kill = match SelfKill::from_options(args.kill_rank, args.kill_after_ms) {
        Ok(kill) => kill,
        Err(e) => {
            eprintln!("dac-allreduce: {e} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run(&args, kill) {
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
#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    fn refused(line: &str) -> String {
        let argv = std::iter::once("dac-allreduce").chain(line.split_whitespace());
        match Args::try_parse_from(argv) {
            Err(e) if e.use_stderr() => one_line(&e),
            other => panic!("{line}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_and_options() {
        let args = Args::try_parse_from(["dac-allreduce"]).expect("no options are needed");
        assert_eq!((args.dim, args.reps, args.warmup), (1, 10, 2));
        assert!(!args.sum && !args.quiet && args.pause_ms == 0 && args.kill_rank.is_none());
        let args = Args::try_parse_from(
            "dac-allreduce --dim=1000 --reps 5 --warmup 0 --sum --pause-ms 3 --kill-rank 2 \
             --kill-after-ms 50 --quiet"
                .split_whitespace(),
        )
        .expect("every option");
        assert_eq!(
            (args.dim, args.reps, args.warmup, args.pause_ms),
            (1000, 5, 0, 3)
        );
        assert_eq!((args.kill_rank, args.kill_after_ms), (Some(2), Some(50)));
        assert!(args.sum && args.quiet);
    }

    #[test]
    fn bad_arguments_are_one_line_errors() {
        for (line, needle) in [
            ("--dim 0", "at least 1"),
            ("--dim x", "positive integer"),
            ("--reps -1", "unexpected argument '-1'"),
            ("--kill-rank 1", "--kill-after-ms <T>"),
            ("--kill-after-ms 5", "--kill-rank <K>"),
            ("--bogus", "unexpected argument '--bogus'"),
            ("--reps", "a value is required"),
        ] {
            let err = refused(line);
            assert!(err.contains(needle), "{line}: {err}");
            assert!(!err.contains('\n'), "{line}: {err}");
        }
    }
}
