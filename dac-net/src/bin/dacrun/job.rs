//! Starts the ranks, watches them, and stops them all when the job ends.
//!
//! Every rank is owned by a task that waits for it to exit or, once the
//! `stop` flag is raised, kills it and then waits for it, so no rank is left
//! running or unreaped whatever way the job ends. Its pipes are relayed by
//! two more tasks (see [`crate::output`]).

use std::ffi::OsStr;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use tokio::process::{Child, Command};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::args::{Args, shown};
use crate::guard::{Guard, kill_group};
use crate::output::{Output, Stream, relay};
use crate::{
    EXIT_CANNOT_EXECUTE, EXIT_HUNG_UP, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_NOT_FOUND,
    EXIT_TERMINATED, EXIT_TIMEOUT,
};

/// The signals that stop the whole job, caught before any rank starts.
#[derive(Debug)]
pub(crate) struct Signals {
    /// SIGINT (Ctrl-C).
    interrupt: Signal,
    /// SIGTERM.
    terminate: Signal,
    /// SIGHUP (the terminal went away).
    hangup: Signal,
}

impl Signals {
    /// Installs the handlers; from now on SIGINT, SIGTERM and SIGHUP no
    /// longer kill dacrun.
    ///
    /// # Errors
    ///
    /// When a handler cannot be installed.
    pub(crate) fn catch() -> io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

/// How one rank ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it.
    Killed(i32),
}

impl Ending {
    fn of(status: ExitStatus) -> Ending {
        match (status.code(), status.signal()) {
            (Some(code), _) => Ending::Exited(code),
            (None, Some(signal)) => Ending::Killed(signal),
            // Unix reports one or the other; count anything else as a failure.
            (None, None) => Ending::Exited(1),
        }
    }

    /// dacrun's exit status for this ending, shell-style (128 + signal).
    fn exit_status(self) -> u8 {
        let status = match self {
            Ending::Exited(code) => code,
            Ending::Killed(signal) => 128 + signal,
        };
        u8::try_from(status).unwrap_or(u8::MAX)
    }

    /// How the ending reads in a message about rank `rank`.
    fn describe(self, rank: usize) -> String {
        match self {
            Ending::Exited(code) => format!("rank {rank} exited with status {code}"),
            Ending::Killed(signal) => match signal_name(signal) {
                Some(name) => format!("rank {rank} was killed by signal {signal} ({name})"),
                None => format!("rank {rank} was killed by signal {signal}"),
            },
        }
    }
}

/// Names of the signals whose numbers are the same on every Unix.
fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// The ranks of a running job and the tasks that relay their output.
#[derive(Debug)]
struct Ranks {
    /// One task per started rank; each yields the rank and how it ended.
    waits: JoinSet<(usize, io::Result<ExitStatus>)>,
    /// Two tasks per started rank, one per pipe.
    relays: JoinSet<()>,
    /// Raised to kill every rank still running.
    stop: watch::Sender<bool>,
    /// Raised once every rank has been reaped, so silent pipes can be abandoned.
    all_exited: watch::Sender<bool>,
    /// Each started rank's process group (its pid).
    groups: Vec<u32>,
}

/// Runs the whole job and returns dacrun's exit status.
pub(crate) async fn run(
    args: &Args,
    run_dir: &Path,
    signals: Signals,
    output: &Output,
    guard: &mut Guard,
) -> u8 {
    let mut ranks = Ranks {
        waits: JoinSet::new(),
        relays: JoinSet::new(),
        stop: watch::channel(false).0,
        all_exited: watch::channel(false).0,
        groups: Vec::new(),
    };
    let status = match start_all(args, run_dir, &mut ranks, output, guard).await {
        Ok(()) => supervise(args, &mut ranks, signals, output).await,
        Err(e) => {
            let program = shown(&args.program);
            output.note(&format!("cannot start {program}: {e}")).await;
            if e.kind() == io::ErrorKind::NotFound {
                EXIT_NOT_FOUND
            } else {
                EXIT_CANNOT_EXECUTE
            }
        }
    };
    shut_down(ranks).await;
    status
}

/// Starts every rank, each in a process group of its own that the guard
/// learns of at once; stops at the first that cannot be started.
async fn start_all(
    args: &Args,
    run_dir: &Path,
    ranks: &mut Ranks,
    output: &Output,
    guard: &mut Guard,
) -> io::Result<()> {
    for rank in 0..args.size {
        let mut child = command(args, run_dir, rank).spawn()?;
        if let Some(pgid) = child.id() {
            ranks.groups.push(pgid);
            if let Err(e) = guard.watch(pgid).await {
                output.note(&format!("cannot reach its guard: {e}")).await;
            }
        }
        if let Some(pipe) = child.stdout.take() {
            let exited = ranks.all_exited.subscribe();
            let relay = relay(rank, pipe, Stream::Out, output.clone(), exited);
            ranks.relays.spawn(relay);
        }
        if let Some(pipe) = child.stderr.take() {
            let exited = ranks.all_exited.subscribe();
            let relay = relay(rank, pipe, Stream::Err, output.clone(), exited);
            ranks.relays.spawn(relay);
        }
        ranks
            .waits
            .spawn(wait_or_kill(rank, child, ranks.stop.subscribe()));
    }
    Ok(())
}

/// The command for rank `rank`, with the environment contract of `main.rs`.
fn command(args: &Args, run_dir: &Path, rank: usize) -> Command {
    let mut command = Command::new(&args.program);
    command.args(&args.program_args);
    match &args.join {
        // A joiner gets its rank when it is admitted.
        Some(addrs) => command
            .env("DAC_JOIN", addrs)
            .env_remove("DAC_RANK")
            .env_remove("DAC_SIZE"),
        None => command
            .env("DAC_RANK", rank.to_string())
            .env("DAC_SIZE", args.size.to_string())
            .env_remove("DAC_JOIN"),
    };
    command
        .env("DAC_RUN_DIR", run_dir)
        // Its own group, which dacrun kills as a whole.
        .process_group(0)
        // The job's key is DAC_KEY_FILE; an inherited key must not win.
        .env_remove("DAC_JOB_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let optional = [
        ("DAC_TOPOLOGY", args.topology.as_deref().map(OsStr::new)),
        ("DAC_SCHEDULE", args.schedule.as_deref().map(OsStr::new)),
        (
            "DAC_PEER_TIMEOUT",
            args.peer_timeout.as_ref().map(|t| OsStr::new(&t.text)),
        ),
        (
            "DAC_KEY_FILE",
            args.key_file.as_deref().map(Path::as_os_str),
        ),
    ];
    for (name, value) in optional {
        // Unset what was not asked for, so a value inherited from an outer
        // job cannot leak in.
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command
}

/// Waits for rank `rank` to exit, killing it first if `stop` is raised.
async fn wait_or_kill(
    rank: usize,
    mut child: Child,
    mut stop: watch::Receiver<bool>,
) -> (usize, io::Result<ExitStatus>) {
    let status = tokio::select! {
        status = child.wait() => status,
        true = stop_requested(&mut stop) => {
            // The rank and everything it started.
            if let Some(pgid) = child.id() {
                kill_group(pgid);
            }
            // Fails only when the rank has already exited; `wait` reaps it either way.
            let _ = child.start_kill();
            child.wait().await
        }
    };
    (rank, status)
}

/// Resolves to true once `stop` is raised, or to false if its sender is gone.
async fn stop_requested(stop: &mut watch::Receiver<bool>) -> bool {
    stop.wait_for(|&stop| stop).await.is_ok()
}

/// Watches the ranks until the job ends; returns dacrun's exit status.
async fn supervise(args: &Args, ranks: &mut Ranks, mut signals: Signals, output: &Output) -> u8 {
    // A deadline beyond what the clock can represent is no deadline.
    let deadline = (args.timeout.as_ref()).and_then(|t| Instant::now().checked_add(t.duration));
    let mut first_failure = None;
    loop {
        tokio::select! {
            biased;
            _ = signals.interrupt.recv() => {
                output.note("interrupted (SIGINT); stopping every rank").await;
                return EXIT_INTERRUPTED;
            }
            _ = signals.terminate.recv() => {
                output.note("terminated (SIGTERM); stopping every rank").await;
                return EXIT_TERMINATED;
            }
            _ = signals.hangup.recv() => {
                output.note("hung up (SIGHUP); stopping every rank").await;
                return EXIT_HUNG_UP;
            }
            () = sleep_until(deadline) => {
                let secs = args.timeout.as_ref().map_or("?", |t| t.text.as_str());
                output.note(&format!("timed out after {secs} s")).await;
                return EXIT_TIMEOUT;
            }
            joined = ranks.waits.join_next() => {
                let Some(joined) = joined else {
                    return first_failure.unwrap_or(0);
                };
                let (rank, ending) = match joined {
                    Ok((rank, Ok(status))) => (rank, Ending::of(status)),
                    Ok((rank, Err(e))) => {
                        output.note(&format!("cannot wait for rank {rank}: {e}")).await;
                        return EXIT_INTERNAL;
                    }
                    Err(e) => {
                        output.note(&format!("a rank's watcher failed: {e}")).await;
                        return EXIT_INTERNAL;
                    }
                };
                if let Some(status) = judge(args, rank, ending, output).await {
                    if !args.keep_going {
                        return status;
                    }
                    first_failure.get_or_insert(status);
                }
            }
        }
    }
}

/// Reports a rank that did not exit cleanly; returns the exit status it
/// gives the job, or `None` when it does not fail the job.
async fn judge(args: &Args, rank: usize, ending: Ending, output: &Output) -> Option<u8> {
    if ending == Ending::Exited(0) {
        return None;
    }
    let what = ending.describe(rank);
    if !args.keep_going {
        output.note(&what).await;
        return Some(ending.exit_status());
    }
    output.note(&format!("{what}; continuing")).await;
    match ending {
        Ending::Exited(_) => Some(ending.exit_status()),
        // Tolerating crashed ranks is the point of --keep-going.
        Ending::Killed(_) => None,
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Kills whatever still runs, reaps every rank, kills what the ranks left
/// behind in their process groups, and relays their last output.
async fn shut_down(mut ranks: Ranks) {
    ranks.stop.send_replace(true);
    while ranks.waits.join_next().await.is_some() {}
    // A group whose leader has exited keeps its id while any process is
    // left in it, so this reaches only what the rank left behind.
    for &pgid in &ranks.groups {
        kill_group(pgid);
    }
    ranks.all_exited.send_replace(true);
    while ranks.relays.join_next().await.is_some() {}
}
