//! `elastic` over real processes: a job of four, one of which leaves after
//! some fits, and two more that join mid-run with `dacrun --join` and leave
//! before the end. Every fit of every member is checked against a central
//! QR of exactly the partitions present (the program exits 1 otherwise).
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use dac_net::testing::RunningJob;

fn dacrun() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../target/debug/dacrun")
}

#[test]
fn members_join_and_leave_while_every_fit_stays_exact_over_the_partitions_present() {
    let args: Vec<String> = [
        "-n",
        "4",
        "--timeout",
        "120",
        "--",
        env!("CARGO_BIN_EXE_elastic"),
    ]
    .into_iter()
    .chain([
        "--fits",
        "400",
        "--pause-ms",
        "5",
        "--leave-rank",
        "1",
        "--leave-after",
        "150",
    ])
    .map(String::from)
    .collect();
    let job = RunningJob::start(dacrun(), &args).unwrap();
    let joiners = job
        .joiners(dacrun(), &["-n", "2", "--timeout", "60"])
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_elastic"))
        .args(["--fits", "100"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&joiners.stdout);
    assert!(
        joiners.status.success(),
        "joiners:\n{out}\n{}",
        String::from_utf8_lossy(&joiners.stderr)
    );
    assert_eq!(out.matches("100 fits agree").count(), 2, "{out}");
    for rank in [4, 5] {
        assert!(
            out.contains(&format!("rank {rank}: 100 fits agree")),
            "{out}"
        );
    }
    let done = job.child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success(), "the job:\n{out}");
    assert!(out.contains("rank 1: 150 fits agree"), "{out}");
    for rank in [0, 2, 3] {
        let line =
            format!("rank {rank}: 400 fits agree with the central QR of the partitions present");
        assert!(out.contains(&line), "{out}");
    }
    // Rank 0 fitted the joiners' partitions too, and at the end only the
    // three that stayed.
    let with_joiners = out
        .lines()
        .filter(|l| l.starts_with("[0] fit ") && l.contains("partitions present"))
        .any(|l| l.contains("4, 5]"));
    assert!(with_joiners, "{out}");
    assert!(out.contains("members now [0, 2, 3]"), "{out}");
}
