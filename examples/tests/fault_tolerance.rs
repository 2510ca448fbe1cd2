//! Replicated least squares over real processes (libp2p on loopback): a
//! SIGKILLed holder, a cheating holder, a partition whose only holder dies.
//!
//! Each test starts `fault_tolerant_lstsq` once per rank, the way `dacrun`
//! does (`DAC_RANK`, `DAC_SIZE`, a shared `DAC_RUN_DIR`). The program
//! checks every fit against a central QR solve of the data and prints a
//! summary line. The tests read those lines and the exit statuses.
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Rank, RunDir, finish, launch_program};

use dac_linalg::Placement;

fn launch(size: usize, dir: &RunDir, args: &[&str]) -> Vec<Rank> {
    launch_program(env!("CARGO_BIN_EXE_fault_tolerant_lstsq"), size, dir, args)
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
    // About 3 ms a fit (debug build, 2 cores), so the kill lands inside
    // the run.
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

/// Waits until rank 0 reports that partition `p` was copied to a new
/// holder.
fn wait_for_restored(rank0: &Rank, p: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let wanted = format!("Restored {{ partition: {p}, ");
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rank0.lines.recv_timeout(left) {
            Ok(line) if line.contains(&wanted) => return,
            Ok(_) => {}
            Err(e) => panic!("rank 0 never reported partition {p} restored: {e}"),
        }
    }
}

/// Issue 18: a holder is SIGKILLed; the job copies its partitions to other
/// ranks (`Restored`), and then the other original holder of one of them
/// is SIGKILLed too. Every fit stays the full-data one (before healing,
/// the second kill was `partition P is lost`, exit 2).
#[test]
fn two_replicas_heal_so_that_a_second_kill_loses_nothing() {
    let dir = RunDir::new("heal");
    let placement = Placement::new(16, 8, 2).unwrap();
    let first = 1 + random_below(7) as usize;
    // One of its partitions whose other holder is not rank 0 (which
    // reports), and that other holder.
    let (p, second) = placement
        .held_by(first)
        .into_iter()
        .find_map(|p| {
            let other = *placement.holders(p).iter().find(|&&h| h != first)?;
            (other != 0).then_some((p, other))
        })
        .unwrap();
    let args = ["--partitions", "16", "--replicas", "2", "--fits", "600"];
    let mut ranks = launch(8, &dir, &args);
    wait_for_first_fit(&ranks[0]);
    ranks[first].child.kill().unwrap(); // SIGKILL
    wait_for_restored(&ranks[0], p);
    ranks[second].child.kill().unwrap();
    let what = format!("rank {first} killed, then rank {second} once partition {p} was restored");
    for (rank, r) in ranks.iter_mut().enumerate() {
        let (code, out, err) = finish(r);
        if rank == first || rank == second {
            assert_eq!(code, None, "{what}: rank {rank} was not killed");
            continue;
        }
        assert_eq!(code, Some(0), "{what}: rank {rank}:\n{out}\n{err}");
        assert!(worst_error(&out) <= 1e-9, "{what}: rank {rank}: {out}");
        let mut both = [first, second];
        both.sort_unstable();
        assert!(
            out.contains(&format!("departed {both:?}")) && out.contains("lost []"),
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
