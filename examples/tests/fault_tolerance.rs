//! Replicated least squares over real processes (libp2p on loopback): a
//! SIGKILLed holder, a cheating holder, a partition whose only holder dies.
//!
//! Each test starts `fault_tolerant_lstsq` once per rank, the way `dacrun`
//! does (`DAC_RANK`, `DAC_SIZE`, a shared `DAC_RUN_DIR`). The program
//! checks every fit against a central QR solve of the data and prints a
//! summary line. The tests read those lines and the exit statuses.
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dac_linalg::Placement;

/// A fresh run directory, removed on drop.
struct RunDir(PathBuf);

impl RunDir {
    fn new(tag: &str) -> RunDir {
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
struct Rank {
    child: Child,
    lines: mpsc::Receiver<String>,
}

fn launch(size: usize, dir: &RunDir, args: &[&str]) -> Vec<Rank> {
    launch_program(env!("CARGO_BIN_EXE_fault_tolerant_lstsq"), size, dir, args)
}

fn launch_program(program: &str, size: usize, dir: &RunDir, args: &[&str]) -> Vec<Rank> {
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
fn finish(rank: &mut Rank) -> (Option<i32>, String, String) {
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

/// Waits until rank 0 has finished its first fit.
fn wait_for_first_fit(rank0: &Rank) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rank0.lines.recv_timeout(left) {
            Ok(line) if line.contains("partitions ×") => return,
            Ok(_) => {}
            Err(e) => panic!("rank 0 never finished a fit: {e}"),
        }
    }
}

/// A number in `0..n` that differs from run to run (printed on failure).
fn random_below(n: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos) % n
}

/// The largest relative error a rank's summary line reports.
fn worst_error(out: &str) -> f64 {
    let at = out.find("max relative error ").unwrap() + "max relative error ".len();
    out[at..].split(')').next().unwrap().parse().unwrap()
}

#[test]
fn two_replicas_keep_the_full_answer_when_a_peer_is_sigkilled_mid_run() {
    let dir = RunDir::new("kill");
    // About 3 ms a fit before the kill (debug build, 2 cores), so the kill
    // lands inside the run; after it, reductions over the repaired graph
    // are slower (Metropolis instead of the exact schedule).
    let args = ["--partitions", "16", "--replicas", "2", "--fits", "100"];
    let mut ranks = launch(8, &dir, &args);
    wait_for_first_fit(&ranks[0]);
    let victim = 1 + random_below(7) as usize;
    let delay = random_below(150);
    std::thread::sleep(Duration::from_millis(delay));
    ranks[victim].child.kill().unwrap(); // SIGKILL
    let what = format!("rank {victim} killed {delay} ms after the first fit");
    for (rank, r) in ranks.iter_mut().enumerate() {
        let (code, out, err) = finish(r);
        if rank == victim {
            assert_eq!(code, None, "{what}: the victim was not killed");
            continue;
        }
        assert_eq!(code, Some(0), "{what}: rank {rank}:\n{out}\n{err}");
        assert!(worst_error(&out) <= 1e-9, "{what}: rank {rank}: {out}");
        // The kill landed while the job ran.
        assert!(
            out.contains(&format!("departed [{victim}]")),
            "{what}: rank {rank}: {out}"
        );
    }
}

#[test]
fn three_replicas_outvote_and_exclude_a_cheating_peer() {
    let dir = RunDir::new("cheat");
    let cheat = 2;
    let args = [
        "--partitions",
        "12",
        "--replicas",
        "3",
        "--fits",
        "2",
        "--cheat-rank",
        "2",
    ];
    let mut ranks = launch(6, &dir, &args);
    let placement = Placement::new(12, 6, 3).unwrap();
    for (rank, r) in ranks.iter_mut().enumerate() {
        let (code, out, err) = finish(r);
        assert_eq!(code, Some(0), "rank {rank}:\n{out}\n{err}");
        assert!(worst_error(&out) <= 1e-9, "rank {rank}: {out}");
        assert!(
            out.contains(&format!("excluded [{cheat}]")),
            "rank {rank}: {out}"
        );
        for p in placement.held_by(cheat) {
            let report = format!("ReplicaMismatch {{ partition: {p}, ranks: [{cheat}] }}");
            assert!(out.contains(&report), "rank {rank}: no {report} in\n{out}");
        }
    }
}

#[test]
fn two_replicas_cannot_tell_who_cheated_and_every_rank_fails() {
    let dir = RunDir::new("cheat2");
    let args = [
        "--partitions",
        "8",
        "--replicas",
        "2",
        "--fits",
        "1",
        "--cheat-rank",
        "1",
    ];
    let mut ranks = launch(4, &dir, &args);
    let first = Placement::new(8, 4, 2).unwrap().held_by(1)[0];
    for (rank, r) in ranks.iter_mut().enumerate() {
        let (code, out, err) = finish(r);
        assert_eq!(code, Some(2), "rank {rank}:\n{out}\n{err}");
        assert!(
            err.contains(&format!("partition {first} disagree")),
            "rank {rank}: {err}"
        );
        assert!(
            !out.contains("agree with the central"),
            "rank {rank}: {out}"
        );
    }
}

#[test]
fn one_replica_loses_the_partition_and_says_so_never_a_wrong_answer() {
    for degraded in [false, true] {
        let dir = RunDir::new("lost");
        let mut args = vec!["--partitions", "8", "--replicas", "1", "--fits", "200"];
        if degraded {
            args.push("--allow-degraded");
        }
        let mut ranks = launch(4, &dir, &args);
        wait_for_first_fit(&ranks[0]);
        let victim = 2;
        ranks[victim].child.kill().unwrap();
        let gone = Placement::new(8, 4, 1).unwrap().held_by(victim);
        for (rank, r) in ranks.iter_mut().enumerate() {
            let (code, out, err) = finish(r);
            if rank == victim {
                continue;
            }
            if degraded {
                // The fits after the loss match the central fit of the
                // surviving partitions.
                assert_eq!(code, Some(0), "rank {rank}:\n{out}\n{err}");
                assert!(worst_error(&out) <= 1e-9, "rank {rank}: {out}");
                assert!(
                    out.contains(&format!("lost {gone:?}")),
                    "rank {rank}: {out}"
                );
            } else {
                assert_eq!(code, Some(2), "rank {rank}:\n{out}\n{err}");
                assert!(
                    err.contains(&format!("partition {} is lost", gone[0])),
                    "rank {rank}: {err}"
                );
                assert!(!out.contains("MISMATCH"), "rank {rank}: {out}");
            }
        }
    }
}

#[test]
fn a_killed_cg_job_resumes_from_its_last_checkpoint() {
    let store = RunDir::new("ckpt");
    let store_path = store.0.to_str().unwrap().to_string();
    let args = ["40", "--checkpoint", store_path.as_str()];
    let first = RunDir::new("ckpt-run1");
    let mut ranks = launch_program(env!("CARGO_BIN_EXE_cg"), 3, &first, &args);
    // Kill the whole job once every rank has saved iteration 10 (slot 0).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !(0..3).all(|r| store.0.join(format!("cg.rank{r}.0")).exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoints appeared"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    for r in &mut ranks {
        let _ = r.child.kill();
    }
    for (rank, r) in ranks.iter_mut().enumerate() {
        let (code, out, _) = finish(r);
        assert_eq!(code, None, "rank {rank} finished before the kill:\n{out}");
    }
    // Start it again: it resumes and agrees with the central solve.
    let second = RunDir::new("ckpt-run2");
    let mut ranks = launch_program(env!("CARGO_BIN_EXE_cg"), 3, &second, &args);
    for (rank, r) in ranks.iter_mut().enumerate() {
        let (code, out, err) = finish(r);
        assert_eq!(code, Some(0), "rank {rank}:\n{out}\n{err}");
        if rank == 0 {
            let at = out.find("resumed from iteration ").unwrap() + "resumed from iteration ".len();
            let resumed: usize = out[at..].split(')').next().unwrap().parse().unwrap();
            assert!(resumed >= 10 && resumed.is_multiple_of(5), "{out}");
            assert!(out.contains("cg: ok on 3 rank(s)"), "{out}");
        }
    }
}
