//! The guard: a second dacrun process that outlives dacrun just long
//! enough to clean up after it, however dacrun ends.
//!
//! Every rank runs in a process group of its own, so that dacrun can
//! signal the rank *and everything it started* (a shell's children, a
//! Python program's workers). dacrun starts the guard first, with a pipe
//! on its standard input, and writes each rank's process group there as
//! the rank starts. The guard ignores SIGINT, SIGTERM and SIGHUP and waits
//! for the pipe to close:
//!
//! - dacrun ends normally: it has killed and reaped every group itself,
//!   writes `done`, and the guard exits;
//! - dacrun dies (even by SIGKILL): the pipe closes without `done`, and the
//!   guard kills every group it was told of and removes the run directory.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};

/// The word dacrun writes when it has cleaned up itself.
const DONE: &str = "done";

/// dacrun's handle on its guard.
#[derive(Debug)]
pub(crate) struct Guard {
    child: Child,
    pipe: ChildStdin,
}

/// Kills process group `pgid` and everything in it.
pub(crate) fn kill_group(pgid: u32) {
    if let Ok(pgid) = i32::try_from(pgid) {
        // Fails only when the group is already empty.
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

impl Guard {
    /// Starts the guard for the run directory `run_dir`.
    ///
    /// # Errors
    /// When dacrun's own executable cannot be started again.
    pub(crate) fn start(run_dir: &Path) -> io::Result<Guard> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg(crate::args::GUARD_FLAG)
            .arg(run_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(false)
            .spawn()?;
        let pipe = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("the guard has no stdin"))?;
        Ok(Guard { child, pipe })
    }

    /// Tells the guard of a rank's process group.
    pub(crate) async fn watch(&mut self, pgid: u32) -> io::Result<()> {
        self.pipe.write_all(format!("{pgid}\n").as_bytes()).await?;
        self.pipe.flush().await
    }

    /// dacrun has cleaned up: the guard may go.
    pub(crate) async fn dismiss(mut self) {
        let _ = self.pipe.write_all(format!("{DONE}\n").as_bytes()).await;
        drop(self.pipe);
        let _ = self.child.wait().await;
    }
}

/// The guard's own main: `dacrun --guard-for-dacrun RUN_DIR`.
pub(crate) fn run(run_dir: PathBuf) -> u8 {
    use std::io::BufRead;
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return 1;
    };
    // Handlers replace the default action: these signals no longer end the
    // guard, which must outlive dacrun. They stay installed while the
    // runtime and the handles live.
    let _ignored: Vec<_> = runtime.block_on(async {
        [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ]
        .into_iter()
        .filter_map(|kind| signal(kind).ok())
        .collect()
    });
    let mut groups = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line == DONE {
            return 0;
        }
        if let Ok(pgid) = line.trim().parse::<u32>() {
            groups.push(pgid);
        }
    }
    // dacrun is gone without cleaning up.
    for pgid in groups {
        kill_group(pgid);
    }
    let _ = std::fs::remove_dir_all(&run_dir);
    0
}
