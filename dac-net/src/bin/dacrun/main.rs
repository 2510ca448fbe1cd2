//! `dacrun`: start N copies of a program as the ranks of one `dac` job, like `mpirun`.
//!
//! ```text
//! dacrun -n N [--topology T] [--schedule S] [--timeout SECS]
//!        [--peer-timeout SECS] [--key-file F] [--keep-going] [--] PROGRAM [ARGS...]
//! dacrun --peer-id FILE
//! dacrun --completions SHELL
//! ```
//!
//! For example `dacrun -n 4 --topology ring -- target/release/dac-allreduce --dim 1000`.
//!
//! # Options
//!
//! The command line is parsed by clap (`args.rs`); `dacrun --help` describes
//! every option with its default, and lists the exit statuses.
//!
//! | option | meaning |
//! |---|---|
//! | `-n N`, `--np N` | number of ranks, at least 1 (required) |
//! | `--topology T` | a [`dac_core::Topology`] name, checked here and passed on |
//! | `--schedule S` | a [`dac_core::Schedule`] name, checked here and passed on |
//! | `--timeout SECS` | wall-clock limit for the whole job |
//! | `--peer-timeout SECS` | seconds before a silent peer counts as gone; passed on |
//! | `--key-file F` | the job key (a file of 64 hex digits); its absolute path is passed on |
//! | `--keep-going` | a rank that dies does not stop the others (fault-tolerant runs) |
//! | `--peer-id FILE` | print the peer id of the identity file FILE, making it if absent, and exit (for `DAC_IDENTITY_FILE` and allow-lists) |
//! | `--completions SHELL` | print a completion script for bash, elvish, fish, powershell or zsh, and exit |
//! | `-h`, `--help`; `-V`, `--version` | print the help (`-h`: shorter) or the version |
//!
//! Long options also take `--option=VALUE`; of an option given twice the
//! last counts. The program is the first word that is not an option, or the
//! word after `--`: it and everything after it are passed through untouched,
//! options of dacrun's own included (`dacrun -n 4 python fit.py -n 5`).
//! Argument errors are one line on stderr, `dacrun: …`, and exit status 2.
//! dacrun reads no `DAC_*` variable itself: the ones below are what it gives
//! the ranks.
//!
//! # The environment of every rank
//!
//! | variable | value |
//! |---|---|
//! | `DAC_RANK` | this rank, `0..N` (not with `--join`) |
//! | `DAC_SIZE` | `N` (not with `--join`) |
//! | `DAC_JOIN` | with `--join` only: the members' addresses to join through |
//! | `DAC_RUN_DIR` | a directory shared by the job's ranks (e.g. for `rank-0.addr`) |
//! | `DAC_TOPOLOGY` | `--topology` as given; unset without it |
//! | `DAC_SCHEDULE` | `--schedule` as given; unset without it |
//! | `DAC_PEER_TIMEOUT` | `--peer-timeout` as given (seconds); unset without it |
//! | `DAC_KEY_FILE` | absolute path of `--key-file`, or of the job's fresh key (none with `--join` and no `--key-file`) |
//!
//! The rest of dacrun's environment is inherited. `DAC_RUN_DIR` is a fresh
//! `dacrun-<pid>-<random hex>` under the system temporary directory; dacrun
//! only creates it, and removes it with everything in it when the job ends,
//! however it ends. Ranks get no stdin.
//!
//! # The job key
//!
//! Every job is private. Without `--key-file`, dacrun writes a fresh random
//! key to `DAC_RUN_DIR/job.key` (readable by its owner only, mode 0600),
//! says where on stderr (`dacrun: job key …`), and removes it with the run
//! directory. A process without the key cannot connect to the ranks, let
//! alone join the job or send a frame; one with another key is refused
//! with "job key mismatch". Give `--key-file` for a job whose members are
//! not all started by this dacrun.
//!
//! # Output
//!
//! Each line a rank writes is printed with the prefix `[RANK] `, its stdout
//! on dacrun's stdout and its stderr on dacrun's stderr, as soon as the line
//! is complete. Lines are never split or mixed; bytes pass through unchanged,
//! and a last line without a newline gets one. dacrun's own messages go to
//! stderr as `dacrun: …`.
//!
//! # How the job ends, and the exit status
//!
//! | event | what dacrun does | exit status |
//! |---|---|---|
//! | every rank exits 0 | — | 0 |
//! | a rank exits with status S | reports it, kills the other ranks | S |
//! | a rank is killed by signal K | reports it, kills the other ranks | 128 + K |
//! | `--timeout` expires | reports it, kills every rank | 124 |
//! | SIGINT (Ctrl-C) / SIGTERM / SIGHUP to dacrun | kills every rank | 130 / 143 / 129 |
//! | SIGKILL to dacrun | its guard kills every rank and removes the run directory | 137 |
//! | PROGRAM not found / not runnable | kills the ranks already started | 127 / 126 |
//! | bad arguments | starts nothing | 2 |
//! | dacrun itself fails (no run dir, …) | kills every rank | 125 |
//!
//! With `--keep-going` a rank that exits non-zero or is killed is reported
//! (`…; continuing`) and the others run on; at the end dacrun exits with the
//! first non-zero *exit status* of a rank, or 0 — ranks killed by a signal do
//! not fail the job. A timeout or a signal to dacrun still stops everything.
//!
//! In every case dacrun kills and reaps all ranks before it exits, then
//! relays what is left in their pipes. Each rank runs in a process group of
//! its own, and dacrun kills the whole group: whatever a rank started (a
//! shell's children, a Python program's workers) goes with it, when the
//! rank fails, when dacrun is stopped, and when the job ends. A guard
//! process (`dacrun` again) outlives dacrun to do the same if dacrun itself
//! is killed. Once every rank has exited, a pipe held open by something
//! left behind is abandoned after one silent second.

mod args;
mod guard;
mod job;
mod output;

use std::hash::{BuildHasher, RandomState};
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use args::{Args, Command};
use job::Signals;
use output::Output;

/// Exit status for bad arguments.
const EXIT_USAGE: u8 = 2;
/// Exit status when `--timeout` expires (as `timeout(1)`).
const EXIT_TIMEOUT: u8 = 124;
/// Exit status when dacrun itself fails (as `timeout(1)`).
const EXIT_INTERNAL: u8 = 125;
/// Exit status when PROGRAM exists but cannot be run (as the shell).
const EXIT_CANNOT_EXECUTE: u8 = 126;
/// Exit status when PROGRAM is not found (as the shell).
const EXIT_NOT_FOUND: u8 = 127;
/// Exit status after SIGINT: 128 + 2, as a shell reports it.
const EXIT_INTERRUPTED: u8 = 130;
/// Exit status after SIGTERM: 128 + 15.
const EXIT_TERMINATED: u8 = 143;
/// Exit status after SIGHUP: 128 + 1.
const EXIT_HUNG_UP: u8 = 129;

fn main() -> ExitCode {
    let command = match args::parse_args(std::env::args_os()) {
        Ok(command) => command,
        Err(refusal) => return ExitCode::from(refusal.report()),
    };
    match command {
        Command::Guard(run_dir) => ExitCode::from(guard::run(run_dir)),
        Command::Run(args) => match check_open_files(args.size) {
            Ok(()) => ExitCode::from(launch(&args)),
            Err(e) => {
                eprintln!("dacrun: {e}");
                ExitCode::from(EXIT_USAGE)
            }
        },
        Command::PeerId(path) => match dac_net::identity(&path) {
            Ok(peer) => {
                println!("{peer}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("dacrun: {e}");
                ExitCode::from(EXIT_INTERNAL)
            }
        },
        Command::Completions(shell) => {
            let script = args::completions(shell);
            match io::Write::write_all(&mut io::stdout().lock(), &script) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("dacrun: cannot write the completion script: {e}");
                    ExitCode::from(EXIT_INTERNAL)
                }
            }
        }
    }
}

/// Open files dacrun holds for each rank (its two pipes and a handle on
/// the process), and for itself.
const FILES_PER_RANK: u64 = 3;
const FILES_OWN: u64 = 32;

/// Makes sure dacrun may open the files `size` ranks need, raising its
/// soft limit up to the hard one if it must (the ranks inherit it).
///
/// # Errors
/// How many files the job needs, how many this process may open, and so
/// how many ranks fit.
fn check_open_files(size: usize) -> Result<(), String> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let need = FILES_PER_RANK.saturating_mul(size as u64) + FILES_OWN;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return Ok(()); // nothing known: let the start fail if it must
    };
    if need <= soft || (need <= hard && setrlimit(Resource::RLIMIT_NOFILE, need, hard).is_ok()) {
        return Ok(());
    }
    let fit = hard.saturating_sub(FILES_OWN) / FILES_PER_RANK;
    Err(format!(
        "-n {size} needs about {need} open files ({FILES_PER_RANK} per rank), but this process \
         may open at most {hard} (ulimit -n), which fits {fit} ranks: raise the limit or start \
         fewer ranks"
    ))
}

/// Runs the job with its output relay and run directory; returns the exit status.
fn launch(args: &Args) -> u8 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let (runtime, (output, writer)) = match runtime.and_then(|rt| Ok((rt, Output::start()?))) {
        Ok(started) => started,
        Err(e) => {
            eprintln!("dacrun: cannot start: {e}");
            return EXIT_INTERNAL;
        }
    };
    let status = runtime.block_on(async {
        // Catch the signals before the run directory exists, so a Ctrl-C
        // cannot leave it behind.
        let signals = match Signals::catch() {
            Ok(signals) => signals,
            Err(e) => {
                output.note(&format!("cannot catch signals: {e}")).await;
                return EXIT_INTERNAL;
            }
        };
        let run_dir = match RunDir::create() {
            Ok(run_dir) => run_dir,
            Err(e) => {
                output
                    .note(&format!("cannot create the run directory: {e}"))
                    .await;
                return EXIT_INTERNAL;
            }
        };
        let mut guard = match guard::Guard::start(run_dir.path()) {
            Ok(guard) => guard,
            Err(e) => {
                output.note(&format!("cannot start its guard: {e}")).await;
                return EXIT_INTERNAL;
            }
        };
        let mut args = args.clone();
        // Joiners need the job's own key: a fresh one could only be refused.
        if args.key_file.is_none() && args.join.is_none() {
            let path = run_dir.path().join("job.key");
            if let Err(e) = dac_net::JobKey::create(&path) {
                output
                    .note(&format!("cannot create the job key: {e}"))
                    .await;
                return EXIT_INTERNAL;
            }
            let note = format!("job key {} (removed when the job ends)", path.display());
            output.note(&note).await;
            args.key_file = Some(path);
        }
        let status = job::run(&args, run_dir.path(), signals, &output, &mut guard).await;
        guard.dismiss().await;
        status
    });
    drop(output);
    // The writer ends once the last line is out; a panic there has nothing
    // left to report.
    let _ = writer.join();
    status
}

/// The job's shared directory; removed with its contents when dropped.
#[derive(Debug)]
struct RunDir {
    /// `<temp dir>/dacrun-<pid>-<random hex>`, created by [`RunDir::create`].
    path: PathBuf,
}

impl RunDir {
    /// Creates a new directory; never reuses an existing one.
    fn create() -> io::Result<RunDir> {
        let parent = std::env::temp_dir();
        let pid = std::process::id();
        let mut attempt = 0;
        loop {
            // `RandomState` is seeded from the OS, once per process and
            // then stepped, so every attempt gets a fresh name.
            let random = RandomState::new().hash_one(attempt);
            let path = parent.join(format!("dacrun-{pid}-{random:016x}"));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(RunDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 16 => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("dacrun: cannot remove {}: {e}", self.path.display());
        }
    }
}
