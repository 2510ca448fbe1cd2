//! Starting example programs as the ranks of a job, the way `dacrun`
//! does (`DAC_RANK`, `DAC_SIZE`, a shared `DAC_RUN_DIR`), and reading
//! what they print.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A fresh run directory, removed on drop.
pub(crate) struct RunDir(pub(crate) PathBuf);

impl RunDir {
    pub(crate) fn new(tag: &str) -> RunDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path =
            std::env::temp_dir().join(format!("dac-ft-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).unwrap();
        RunDir(path)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One rank's process, its stdout lines arriving on a channel.
pub(crate) struct Rank {
    pub(crate) child: Child,
    pub(crate) lines: mpsc::Receiver<String>,
}

/// Starts `program` with `args` as the `size` ranks of a job in `dir`.
pub(crate) fn launch_program(program: &str, size: usize, dir: &RunDir, args: &[&str]) -> Vec<Rank> {
    (0..size)
        .map(|rank| {
            let mut child = Command::new(program)
                .args(args)
                .env("DAC_RANK", rank.to_string())
                .env("DAC_SIZE", size.to_string())
                .env("DAC_RUN_DIR", &dir.0)
                .env("DAC_PEER_TIMEOUT", "5")
                .env_remove("DAC_LISTEN")
                .env_remove("DAC_BOOTSTRAP")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let (tx, lines) = mpsc::channel();
            let out = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            Rank { child, lines }
        })
        .collect()
}

/// Waits for a rank to finish: (exit code, stdout, stderr). A rank still
/// running after two minutes is killed and fails the test.
pub(crate) fn finish(rank: &mut Rank) -> (Option<i32>, String, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = rank.child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = rank.child.kill();
            panic!("a rank did not finish within 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = rank.child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let out: Vec<String> = rank.lines.iter().collect();
    (status.code(), out.join("\n"), err)
}
