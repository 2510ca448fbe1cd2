//! What a job key costs: `allreduce_mean` latency of a private job (the
//! key proven on every connection, as `dacrun` runs every job) against a
//! public one (no key), the two run alternately in the same session so
//! that machine drift hits both.
//!
//! ```text
//! scripts/bench-key                                 # builds the release binaries, then runs this
//! scripts/bench-key -n 8 --dim 1000000 --alternations 5   # the defaults
//! scripts/bench-key --old OLD                       # also OLD/dacrun --key-file (an earlier build)
//! ```
//!
//! Each run is `N` processes of `dac-allreduce --dim d --reps R --quiet`
//! (looked up next to this binary): private runs under `dacrun`, public
//! ones started directly with `DAC_RANK`, `DAC_SIZE` and a shared
//! `DAC_RUN_DIR`, exactly as dacrun starts them but without a key. A run's
//! latency is the median over its ranks of their median; the report is
//! the median over the alternations of each, and the ratio
//! private ÷ public. With `--old DIR`, a directory holding an earlier
//! build's `dacrun` and `dac-allreduce`, each alternation also runs that
//! build's private job (`--key-file`), for a before/after comparison. The
//! old positional form `key_bench N d ALTERNATIONS [DIR]` still works.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use clap::Parser;
use dac_benches::cli;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "key_bench",
    version,
    about = "What a job key costs: allreduce_mean latency of private jobs (under dacrun, keyed) \
             against public ones (no key), run alternately, as a Markdown table.",
    long_about = "What a job key costs: allreduce_mean latency of private jobs (under dacrun, \
                  keyed) against public ones (no key), run alternately, as a Markdown table. \
                  Each job is N processes of `dac-allreduce --dim d --reps R --quiet` (R = 1000 \
                  for d up to 1000, 100 up to 100000, else 10), with dacrun and dac-allreduce \
                  looked up next to this program (scripts/bench-key builds them).",
    after_help = "Exit status: 0 when every job succeeded, 1 when one failed (its output is \
                  printed), 2 for bad arguments."
)]
struct Cli {
    /// Processes per job, at least 1.
    #[arg(short = 'n', long = "np", value_name = "N", default_value_t = 8, value_parser = cli::positive)]
    np: usize,

    /// Vector length of each reduction, at least 1.
    #[arg(long, value_name = "D", default_value_t = 1_000_000, value_parser = cli::positive)]
    dim: usize,

    /// Private and public jobs run this many times each, alternating which goes first.
    #[arg(long, value_name = "A", default_value_t = 5, value_parser = cli::positive)]
    alternations: usize,

    /// Also run, each alternation, the private job of an earlier build whose dacrun and dac-allreduce are in DIR [default: none].
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    old: Option<PathBuf>,

    /// The old positional form of --np.
    #[arg(value_name = "N", hide = true, conflicts_with = "np", value_parser = cli::positive)]
    np_positional: Option<usize>,

    /// The old positional form of --dim.
    #[arg(value_name = "D", hide = true, conflicts_with = "dim", value_parser = cli::positive)]
    dim_positional: Option<usize>,

    /// The old positional form of --alternations.
    #[arg(value_name = "A", hide = true, conflicts_with = "alternations", value_parser = cli::positive)]
    alternations_positional: Option<usize>,

    /// The old positional form of --old.
    #[arg(value_name = "DIR", hide = true, conflicts_with = "old")]
    old_positional: Option<PathBuf>,
}

fn field(line: &str, name: &str) -> Option<f64> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    line[start..].split(' ').next()?.parse().ok()
}

/// The median over ranks of the per-rank median latency in `stdout`.
fn median_of_ranks(stdout: &str, n: usize) -> Result<f64, String> {
    let mut medians: Vec<f64> = stdout
        .lines()
        .filter(|l| l.contains("ok: size="))
        .filter_map(|l| field(l, "median_us"))
        .collect();
    if medians.len() != n {
        return Err(format!(
            "{} of {n} ranks reported:\n{stdout}",
            medians.len()
        ));
    }
    medians.sort_by(f64::total_cmp);
    Ok(medians[n / 2])
}

fn allreduce_args(d: usize, reps: usize) -> Vec<String> {
    [
        "--dim",
        &d.to_string(),
        "--reps",
        &reps.to_string(),
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A private job under `bin/dacrun` (with `key_file`, or dacrun's own key).
fn private(
    bin: &Path,
    n: usize,
    d: usize,
    reps: usize,
    key_file: Option<&Path>,
) -> Result<f64, String> {
    let mut command = Command::new(bin.join("dacrun"));
    command.args(["-n", &n.to_string(), "--timeout", "600"]);
    if let Some(key) = key_file {
        command.arg("--key-file").arg(key);
    }
    let out = command
        .arg("--")
        .arg(bin.join("dac-allreduce"))
        .args(allreduce_args(d, reps))
        .output()
        .map_err(|e| format!("cannot run dacrun in {}: {e}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "private job failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    median_of_ranks(&stdout, n)
}

/// A public job: the ranks started directly, without a key.
fn public(bin: &Path, n: usize, d: usize, reps: usize, scratch: &Path) -> Result<f64, String> {
    let dir = scratch.join(format!("public-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let children = (0..n)
        .map(|rank| {
            let mut command = Command::new(bin.join("dac-allreduce"));
            command
                .args(allreduce_args(d, reps))
                .env("DAC_RANK", rank.to_string())
                .env("DAC_SIZE", n.to_string())
                .env("DAC_RUN_DIR", &dir)
                .env_remove("DAC_KEY_FILE")
                .env_remove("DAC_JOB_KEY")
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            command
                .spawn()
                .map_err(|e| format!("cannot start dac-allreduce: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut stdout = String::new();
    for child in children {
        let out = child
            .wait_with_output()
            .map_err(|e| format!("dac-allreduce: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "public job failed: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        stdout.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    let _ = std::fs::remove_dir_all(&dir);
    median_of_ranks(&stdout, n)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run(cli: Cli) -> Result<(), String> {
    let n = cli.np_positional.unwrap_or(cli.np);
    let d = cli.dim_positional.unwrap_or(cli.dim);
    let alternations = cli.alternations_positional.unwrap_or(cli.alternations);
    let old = cli.old_positional.or(cli.old);
    let reps = match d {
        0..=1_000 => 1000,
        1_001..=100_000 => 100,
        _ => 10,
    };
    let bin = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .ok_or("no directory for this binary")?
        .to_path_buf();
    let scratch = std::env::temp_dir();
    let key_file = scratch.join(format!("key-bench-{}.key", std::process::id()));
    let _ = std::fs::remove_file(&key_file);
    let hex: String = (0..32).map(|_| format!("{:02x}", rand_byte())).collect();
    std::fs::write(&key_file, hex).map_err(|e| e.to_string())?;
    let (mut privates, mut publics, mut olds) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..alternations {
        // Alternate which goes first, so that neither always runs warm.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            if which == 0 {
                privates.push(private(&bin, n, d, reps, None)?);
            } else {
                publics.push(public(&bin, n, d, reps, &scratch)?);
            }
        }
        if let Some(old) = &old {
            olds.push(private(old, n, d, reps, Some(&key_file))?);
        }
        eprintln!(
            "alternation {}: private {:.1} µs, public {:.1} µs{}",
            round + 1,
            privates[round],
            publics[round],
            olds.last()
                .map(|o| format!(", earlier build private {o:.1} µs"))
                .unwrap_or_default()
        );
    }
    let _ = std::fs::remove_file(&key_file);
    let (p, q) = (median(privates), median(publics));
    println!("| N | d | private (key) | public (no key) | private ÷ public |");
    println!("|---|---|---|---|---|");
    println!("| {n} | {d} | {p:.1} µs | {q:.1} µs | {:.3} |", p / q);
    if !olds.is_empty() {
        let o = median(olds);
        println!();
        println!(
            "earlier build, private: {o:.1} µs ({:.2} × this build's public, {:.2} × its private)",
            o / q,
            o / p
        );
    }
    Ok(())
}

/// A byte from the OS's randomness (via the std hasher's random seed).
fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, RandomState};
    (RandomState::new().hash_one(0u8) >> 24) as u8
}

fn main() -> ExitCode {
    match run(cli::parse("key_bench")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("key_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
