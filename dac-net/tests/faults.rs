//! Crashes, garbage and intruders: the honest members' results stay exact.
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{assert_close, exact_mean, input, run_job};
use dac_net::{Comm, Communicator, parse_key};

/// Runs `dac-allreduce` under `dacrun` and returns (status, stdout, stderr).
fn dacrun(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dacrun"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let start = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
    let rest = &line[start..];
    rest.split(' ').next().unwrap()
}

/// `dacrun -n N --keep-going [DACRUN...] -- dac-allreduce ... --kill-rank
/// K`: checks that the job ended well with rank `kill` SIGKILLed and
/// every other rank's summary present (each checked every result against
/// the exact mean of its contributors; dac-allreduce exits 1 otherwise),
/// and returns those summaries.
fn kill_one(n: usize, kill: usize, dacrun_args: &[&str], allreduce_args: &[&str]) -> Vec<String> {
    let (n_text, kill_text) = (n.to_string(), kill.to_string());
    let args: Vec<&str> = ["-n", &n_text, "--keep-going", "--timeout", "120"]
        .into_iter()
        .chain(dacrun_args.iter().copied())
        .chain([
            "--",
            env!("CARGO_BIN_EXE_dac-allreduce"),
            "--kill-rank",
            &kill_text,
        ])
        .chain(allreduce_args.iter().copied())
        .chain(["--quiet"])
        .collect();
    let (status, stdout, stderr) = dacrun(&args);
    assert_eq!(status, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let killed = format!("rank {kill} was killed by signal 9");
    assert!(stderr.contains(&killed), "{stderr}");
    let summaries: Vec<String> = stdout
        .lines()
        .filter(|l| l.contains("ok:"))
        .map(str::to_string)
        .collect();
    assert_eq!(summaries.len(), n - 1, "{stdout}");
    let victim = format!("[{kill}]");
    assert!(
        summaries.iter().all(|l| !l.starts_with(&victim)),
        "{stdout}"
    );
    summaries
}

#[test]
fn a_member_killed_mid_job_leaves_the_survivors_exact() {
    let peer_timeout = 5.0;
    let started = Instant::now();
    let timeout = peer_timeout.to_string();
    let summaries = kill_one(
        4,
        2,
        &["--peer-timeout", &timeout],
        &["--dim", "1000", "--reps", "3000", "--kill-after-ms", "100"],
    );
    for line in &summaries {
        let without: usize = field(line, "reductions_without_everyone").parse().unwrap();
        assert!(
            without > 0,
            "no reduction ran without the dead member: {line}"
        );
        let departed = &line[line.find("departed=").unwrap()..];
        assert!(departed.contains('2'), "{line}");
        // No reduction waited much longer than the failure detector.
        let max_us: f64 = field(line, "max_us").parse().unwrap();
        assert!(max_us < (peer_timeout + 2.0) * 1e6, "{line}");
    }
    assert!(started.elapsed() < Duration::from_secs(100));
}

/// After a SIGKILL, the job moves to a view of the survivors, and every
/// reduction that starts in it runs the exact schedule over them: at most
/// ⌊log2 7⌋ + 2 = 4 rounds for 7 members, exact to 1e-12 (dac-allreduce
/// checks every result against the exact mean of its contributors).
#[test]
fn after_a_kill_the_survivors_run_the_exact_schedule_over_themselves() {
    let args = ["--dim", "8", "--reps", "1500", "--kill-after-ms", "300"];
    for line in kill_one(8, 3, &[], &args) {
        assert_eq!(field(&line, "view_members"), "7", "{line}");
        assert_ne!(field(&line, "view"), "0", "{line}");
        let in_view: usize = field(&line, "in_view").parse().unwrap();
        assert!(
            in_view > 100,
            "too few reductions in the survivors' view: {line}"
        );
        let rounds: u32 = field(&line, "in_view_max_rounds").parse().unwrap();
        assert!((1..=4).contains(&rounds), "{line}");
    }
}

/// The member that formed the job (rank 0) is SIGKILLed mid-job: nothing
/// after formation depends on it, and the others go on in their own view,
/// exact.
#[test]
fn the_founder_killed_mid_job_leaves_the_others_going_on() {
    let args = ["--dim", "8", "--reps", "1000", "--kill-after-ms", "200"];
    for line in kill_one(4, 0, &[], &args) {
        assert_eq!(field(&line, "departed"), "[0]", "{line}");
        assert_eq!(field(&line, "view_members"), "3", "{line}");
        let rounds: u32 = field(&line, "in_view_max_rounds").parse().unwrap();
        assert!((1..=4).contains(&rounds), "{line}");
    }
}

/// The founder is SIGKILLed while the job forms: ranks 1 and 2 of a job
/// of 4 have sent it their joins, rank 3 never comes. Both fail within
/// `peer_timeout` + a few seconds of the kill, naming rank 0, and neither
/// forms a job without it. (A rank that starts after the founder died,
/// and so never had its join taken, waits for it until its startup
/// timeout, as for a founder that has not started yet; the in-process
/// `a_member_lost_while_the_job_forms_fails_formation_everywhere` covers
/// the other ranks' losses.)
#[test]
fn the_founder_killed_while_the_job_forms_fails_formation_in_bounded_time() {
    let args: Vec<String> = ["--reps", "5", "--quiet"].map(String::from).to_vec();
    let mut job = common::procs::Job::launch_first(
        4,
        3,
        env!("CARGO_BIN_EXE_dac-allreduce"),
        &args,
        &[("DAC_PEER_TIMEOUT", "1".to_string())],
        |_| Vec::new(),
    );
    job.wait_published(Duration::from_secs(30));
    // Ranks 1 and 2 read rank 0's address and join at once; rank 0 holds
    // their joins while it waits for rank 3.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!job.wait_exit(1, Duration::ZERO) && !job.wait_exit(2, Duration::ZERO));
    let killed = Instant::now();
    job.signal(0, "KILL");
    let ended = job.finish(Duration::from_secs(60));
    let took = killed.elapsed();
    assert_eq!(
        ended[0].code(),
        None,
        "rank 0 was to be killed: {:?}",
        ended[0]
    );
    for (rank, e) in ended.iter().enumerate().skip(1) {
        assert_eq!(e.code(), Some(1), "rank {rank}: {e:?}");
        assert!(!e.out.contains("ok:"), "rank {rank} formed a job: {e:?}");
        assert!(
            e.err.contains("rank 0") && e.err.contains("went away"),
            "rank {rank}: {e:?}"
        );
    }
    assert!(
        took < Duration::from_secs(1 + 5),
        "the ranks took {took:?} to fail: {ended:?}"
    );
}

#[test]
fn a_stranger_sending_garbage_changes_nothing() {
    let results = run_job(
        3,
        |_, b| b,
        |comm| {
            if comm.rank() == 0 {
                let addr = comm.listen_addrs()[0].to_string();
                // /ip4/127.0.0.1/tcp/PORT
                let port = addr.rsplit('/').next().unwrap().to_string();
                let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
                let _ = s.write_all(&[0xff; 4096]);
            }
            let first = comm.allreduce_mean(&input(comm.rank(), 3)).unwrap();
            let second = comm.allreduce_sum(&input(comm.rank(), 3)).unwrap();
            (first, second)
        },
    );
    let exact = exact_mean(&[0, 1, 2], 3);
    let sum: Vec<f64> = exact.iter().map(|m| m * 3.0).collect();
    for (first, second) in results {
        assert_close(&first.value, &exact, "mean");
        assert_close(&second.value, &sum, "sum");
        assert_eq!(first.contributors.len(), 3);
    }
}

const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";

#[test]
fn keys_in_the_wrong_format_are_refused() {
    for bad in ["", "xyz", &KEY[..10], &format!("{KEY}00")] {
        assert!(parse_key(bad).is_err(), "{bad:?}");
    }
    let file = format!("/key/swarm/psk/1.0.0/\n/base16/\n{KEY}\n");
    assert!(parse_key(&file).is_ok());
    let err = Comm::builder()
        .size(1)
        .rank(0)
        .key_file("/nonexistent/dac.key")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/dac.key"), "{err}");
}

/// The README's command for making a key file makes one that parses.
#[test]
fn the_readme_key_command_makes_a_valid_key() {
    let dir = common::TempDir::new("key");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg("od -An -tx1 -N32 /dev/urandom | tr -d ' \\n' > job.key")
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let key = dac_net::JobKey::read(dir.path().join("job.key")).unwrap();
    assert_ne!(key, parse_key(KEY).unwrap());
}

/// An address this machine does not have: the error says why.
#[test]
fn an_address_that_cannot_be_listened_on_says_why() {
    let err = Comm::builder()
        .size(1)
        .rank(0)
        .listen("/ip4/192.0.2.1/tcp/0".parse().unwrap())
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot listen on /ip4/192.0.2.1/tcp/0: ") && err.contains("address"),
        "{err}"
    );
    assert!(!err.trim_end().ends_with(':'), "{err}");
}
