//! Jobs of real processes, one per rank, started the way `dacrun` starts
//! them (`DAC_RANK`, `DAC_SIZE`, a shared `DAC_RUN_DIR`), with their output
//! lines time-stamped as they arrive and signals sent to any rank.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::TempDir;

/// Lines a process printed, with when they arrived.
type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

/// One rank's process.
pub(crate) struct Proc {
    pub(crate) child: Child,
    out: Lines,
    err: Lines,
}

/// How a rank ended.
#[derive(Debug)]
pub(crate) struct Ended {
    pub(crate) status: ExitStatus,
    pub(crate) out: String,
    pub(crate) err: String,
}

impl Ended {
    /// Exit code (`None` when killed by a signal).
    pub(crate) fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// A job of processes.
pub(crate) struct Job {
    pub(crate) ranks: Vec<Proc>,
    pub(crate) dir: TempDir,
}

fn collect(pipe: impl std::io::Read + Send + 'static) -> Lines {
    let lines: Lines = Arc::default();
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push((Instant::now(), line));
        }
    });
    lines
}

impl Job {
    /// Starts `size` copies of `program args`; `env` is added to each
    /// rank's environment, and `wrap(rank)` is a command prefix (for
    /// example `ip netns exec NS`), empty for none.
    pub(crate) fn launch(
        size: usize,
        program: &str,
        args: &[String],
        env: &[(&str, String)],
        wrap: impl Fn(usize) -> Vec<String>,
    ) -> Job {
        Job::launch_first(size, size, program, args, env, wrap)
    }

    /// Like [`Job::launch`], but starts only ranks `0..started` of a job
    /// of `size` (the others never come).
    pub(crate) fn launch_first(
        size: usize,
        started: usize,
        program: &str,
        args: &[String],
        env: &[(&str, String)],
        wrap: impl Fn(usize) -> Vec<String>,
    ) -> Job {
        let dir = TempDir::new("procs");
        let ranks = (0..started)
            .map(|rank| {
                let prefix = wrap(rank);
                let mut command = match prefix.split_first() {
                    Some((first, rest)) => {
                        let mut c = Command::new(first);
                        c.args(rest).arg(program);
                        c
                    }
                    None => Command::new(program),
                };
                command
                    .args(args)
                    .env("DAC_RANK", rank.to_string())
                    .env("DAC_SIZE", size.to_string())
                    .env("DAC_RUN_DIR", dir.path())
                    .env_remove("DAC_LISTEN")
                    .env_remove("DAC_BOOTSTRAP")
                    .env_remove("DAC_PEER_TIMEOUT")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                for (name, value) in env {
                    command.env(name, value);
                }
                let mut child = command.spawn().unwrap();
                let out = collect(child.stdout.take().unwrap());
                let err = collect(child.stderr.take().unwrap());
                Proc { child, out, err }
            })
            .collect();
        Job { ranks, dir }
    }

    /// Sends `signal` (`STOP`, `CONT`, `KILL`) to rank `rank`.
    pub(crate) fn signal(&self, rank: usize, signal: &str) {
        let pid = self.ranks[rank].child.id();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {pid} failed");
    }

    /// Whether rank `rank` has ended (waiting at most `timeout` for it).
    pub(crate) fn wait_exit(&mut self, rank: usize, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if matches!(self.ranks[rank].child.try_wait(), Ok(Some(_))) {
                return true;
            }
            if start.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every rank has published its address (the job is
    /// forming), for at most `timeout`.
    pub(crate) fn wait_published(&self, timeout: Duration) {
        let start = Instant::now();
        let n = self.ranks.len();
        while (0..n).any(|r| !self.dir.path().join(format!("rank-{r}.addr")).exists()) {
            assert!(start.elapsed() < timeout, "the ranks did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first stdout line of `rank` that satisfies `want`, waiting at
    /// most `timeout` for it; with when it arrived.
    pub(crate) fn wait_line(
        &self,
        rank: usize,
        timeout: Duration,
        want: impl Fn(&str) -> bool,
    ) -> Option<(Instant, String)> {
        let start = Instant::now();
        loop {
            if let Some(found) = self.ranks[rank]
                .out
                .lock()
                .unwrap()
                .iter()
                .find(|(_, l)| want(l))
            {
                return Some(found.clone());
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for every rank to end (killing those still running after
    /// `timeout`, which fails the test).
    pub(crate) fn finish(mut self, timeout: Duration) -> Vec<Ended> {
        let deadline = Instant::now() + timeout;
        let mut statuses = Vec::new();
        for (rank, p) in self.ranks.iter_mut().enumerate() {
            let status = loop {
                if let Some(status) = p.child.try_wait().unwrap() {
                    break status;
                }
                if Instant::now() > deadline {
                    let _ = p.child.kill();
                    panic!("rank {rank} did not end within {timeout:?}");
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            statuses.push(status);
        }
        // Let the readers take the last lines.
        std::thread::sleep(Duration::from_millis(50));
        let text = |lines: &Lines| {
            let lines = lines.lock().unwrap();
            lines
                .iter()
                .map(|(_, l)| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        };
        statuses
            .into_iter()
            .zip(&self.ranks)
            .map(|(status, p)| Ended {
                status,
                out: text(&p.out),
                err: text(&p.err),
            })
            .collect()
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        for p in &mut self.ranks {
            if matches!(p.child.try_wait(), Ok(None)) {
                let _ = Command::new("kill")
                    .args(["-CONT", &p.child.id().to_string()])
                    .status();
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
    }
}

/// The value of `name=` in a summary line.
pub(crate) fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    line[start..].split(' ').next()
}
