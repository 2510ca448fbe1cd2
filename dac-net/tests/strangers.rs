//! Strangers: processes without the job's key, wrong keys, floods of
//! roster streams and of half-open connections. The outsider is
//! `dac_net::testing::Outsider`, built from this crate's own transport.
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::procs::Job;
use common::{TempDir, assert_close, exact_mean, input};
use dac_net::testing::{Outsider, Protocol};
use dac_net::{
    Comm, CommBuilder, Communicator, Error, JobKey, Multiaddr, PeerEvent, PeerId, TransportKind,
};

const ALLREDUCE: &str = env!("CARGO_BIN_EXE_dac-allreduce");
const DACRUN: &str = env!("CARGO_BIN_EXE_dacrun");

/// How fast a key problem must be reported.
const KEY_VERDICT: Duration = Duration::from_secs(5);

fn key(n: u8) -> JobKey {
    JobKey::parse(&format!("{n:02x}").repeat(32)).unwrap()
}

fn member(size: usize, rank: usize, addr: &Multiaddr, key: Option<JobKey>) -> CommBuilder {
    let mut b = Comm::builder()
        .size(size)
        .rank(rank)
        .startup_timeout(Duration::from_secs(60));
    if let Some(k) = key {
        b = b.key(k);
    }
    if rank == 0 {
        b.listen(addr.clone())
    } else {
        b.bootstrap([addr.clone()])
    }
}

/// A joiner of the job at `addr` holding `key` must fail within
/// [`KEY_VERDICT`] with an error that contains `says`, typed as a key
/// mismatch with the peer that refused it.
fn refused_quickly(addr: &Multiaddr, key: Option<JobKey>, says: &str) {
    let start = Instant::now();
    let error = member(2, 1, addr, key).build().unwrap_err();
    let took = start.elapsed();
    let err = error.to_string();
    assert!(err.contains(says), "expected {says:?} in: {err}");
    assert!(
        matches!(
            &error,
            Error::Transport {
                kind: TransportKind::KeyMismatch,
                peer: Some(_),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        took < KEY_VERDICT,
        "the key problem took {took:?} to report: {err}"
    );
}

/// A job of two in which impostors try to join first; the real rank 1
/// then joins, and both get the exact mean.
fn job_with_impostors(job_key: Option<JobKey>, impostors: &[(Option<JobKey>, &str)]) {
    let addr = common::free_local_addr();
    std::thread::scope(|scope| {
        let zero = scope.spawn(|| {
            let mut comm = member(2, 0, &addr, job_key.clone()).build().unwrap();
            comm.allreduce_mean(&input(0, 3)).unwrap()
        });
        for (key, says) in impostors {
            refused_quickly(&addr, key.clone(), says);
        }
        let mut comm = member(2, 1, &addr, job_key.clone()).build().unwrap();
        let one = comm.allreduce_mean(&input(1, 3)).unwrap();
        let exact = exact_mean(&[0, 1], 3);
        for r in [zero.join().unwrap(), one] {
            assert_close(&r.value, &exact, "the real members");
            assert_eq!(r.contributors.to_vec(), vec![0, 1]);
        }
    });
}

#[test]
fn a_wrong_or_missing_key_fails_within_seconds_and_says_so() {
    job_with_impostors(
        Some(key(1)),
        &[
            (
                Some(key(2)),
                "job key mismatch: the peer holds a different job key",
            ),
            (None, "this job requires a key"),
        ],
    );
    job_with_impostors(
        None,
        &[(
            Some(key(1)),
            "job key mismatch: this member has a job key and the peer has none",
        )],
    );
}

/// A job without a key but with an allow-list of peer ids (kept in
/// identity files) admits only the peers on it.
#[test]
fn an_allow_list_admits_only_its_peers() {
    let dir = TempDir::new("allow");
    let id = |name: &str| dir.path().join(name);
    let (p0, p1) = (
        dac_net::identity(id("0")).unwrap(),
        dac_net::identity(id("1")).unwrap(),
    );
    let addr = common::free_local_addr();
    let listed = |rank: usize, file: &str, allow: PeerId| {
        member(2, rank, &addr, None)
            .identity_file(id(file))
            .allow_peers([allow])
    };
    std::thread::scope(|scope| {
        let zero = scope.spawn(|| {
            let mut comm = listed(0, "0", p1).build().unwrap();
            assert_eq!(comm.peer_id(), p0);
            comm.allreduce_mean(&input(0, 3)).unwrap()
        });
        // A stranger with its own identity claims rank 1 first.
        let start = Instant::now();
        let err = listed(1, "stranger", p0).build().unwrap_err().to_string();
        assert!(
            err.contains("this member is not on the peer's allow-list"),
            "{err}"
        );
        assert!(
            start.elapsed() < KEY_VERDICT,
            "{:?}: {err}",
            start.elapsed()
        );
        let outsider = Outsider::new(None).unwrap();
        let err = outsider.connect(&addr).unwrap_err();
        assert!(err.contains("allow-list"), "{err}");
        let mut comm = listed(1, "1", p0).build().unwrap();
        let one = comm.allreduce_mean(&input(1, 3)).unwrap();
        let exact = exact_mean(&[0, 1], 3);
        for r in [zero.join().unwrap(), one] {
            assert_close(&r.value, &exact, "the listed members");
            assert_eq!(r.contributors.to_vec(), vec![0, 1]);
        }
    });
}

#[test]
fn an_outsider_cannot_connect_open_a_stream_or_send_a_frame() {
    let dir = TempDir::new("outsider");
    let dir = dir.path();
    let job_key = key(7);
    std::thread::scope(|scope| {
        let members: Vec<_> = (0..3)
            .map(|rank| {
                let job_key = job_key.clone();
                scope.spawn(move || {
                    let mut comm = Comm::builder()
                        .size(3)
                        .rank(rank)
                        .run_dir(dir)
                        .key(job_key)
                        .build()
                        .unwrap();
                    let mut results = Vec::new();
                    for _ in 0..20 {
                        results.push(comm.allreduce_mean(&input(rank, 4)).unwrap());
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    (results, comm.take_events())
                })
            })
            .collect();
        // The members' addresses, as published.
        let mut addrs = Vec::new();
        for rank in 0..3 {
            let path = dir.join(format!("rank-{rank}.addr"));
            let start = Instant::now();
            while !path.exists() {
                assert!(start.elapsed() < Duration::from_secs(30));
                std::thread::sleep(Duration::from_millis(10));
            }
            let text = std::fs::read_to_string(&path).unwrap();
            addrs.push(text.lines().next().unwrap().parse::<Multiaddr>().unwrap());
        }
        for outsider_key in [None, Some(key(8))] {
            let mut outsider = Outsider::new(outsider_key.clone()).unwrap();
            for addr in &addrs {
                let err = outsider.connect(addr).unwrap_err();
                assert!(err.contains("job key"), "{err}");
                // Without a connection there is no stream to send on.
                let Some(Protocol::P2p(peer)) = addr.iter().last() else {
                    panic!("no peer id in {addr}");
                };
                assert_eq!(outsider.hold_roster_streams(peer, 5, 100, 100), (0, 0));
            }
        }
        let exact = exact_mean(&[0, 1, 2], 4);
        for member in members {
            let (results, events) = member.join().unwrap();
            for r in results {
                assert_close(&r.value, &exact, "a member");
                assert_eq!(r.contributors.to_vec(), vec![0, 1, 2]);
            }
            // Nothing of the outsider got as far as a stream.
            assert!(
                !events
                    .iter()
                    .any(|e| matches!(e, PeerEvent::Refused { .. })),
                "{events:?}"
            );
        }
    });
}

/// Rank `pid`'s resident memory, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Rank 0's published address of `job`, and its peer id.
fn rank_zero(job: &Job) -> (Multiaddr, PeerId) {
    let text = std::fs::read_to_string(job.dir.path().join("rank-0.addr")).unwrap();
    let addr: Multiaddr = text.lines().next().unwrap().parse().unwrap();
    let Some(Protocol::P2p(peer)) = addr.iter().last() else {
        panic!("no peer id in {addr}");
    };
    (addr, peer)
}

fn allreduce_args(reps: usize, pause_ms: u64) -> Vec<String> {
    ["--dim", "8", "--reps", &reps.to_string(), "--pause-ms"]
        .iter()
        .map(|s| s.to_string())
        .chain([pause_ms.to_string()])
        .collect()
}

/// What every rank of a job that must be unharmed shows: success, every
/// result checked exact over all `size` members by `dac-allreduce`.
fn assert_unharmed(job: Job, size: usize) {
    for (rank, e) in job.finish(Duration::from_secs(120)).iter().enumerate() {
        assert_eq!(e.code(), Some(0), "rank {rank}: {}\n{}", e.out, e.err);
        let all: Vec<usize> = (0..size).collect();
        assert!(
            e.out.contains("reductions_without_everyone=0"),
            "rank {rank} lost members: {}",
            e.out
        );
        assert!(
            e.out.contains(&format!("last: contributors {all:?}")),
            "rank {rank}: {}",
            e.out
        );
    }
}

/// The largest of `samples` readings of `f`, 100 ms apart.
fn peak(samples: usize, f: impl Fn() -> u64) -> u64 {
    (0..samples)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            f()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn a_flood_of_roster_streams_costs_rank_zero_bounded_memory() {
    // A public job, so that strangers can connect at all: the worst case.
    let job = Job::launch(4, ALLREDUCE, &allreduce_args(150, 50), &[], |_| Vec::new());
    job.wait_published(Duration::from_secs(60));
    let (addr, peer) = rank_zero(&job);
    let pid = job.ranks[0].child.id();
    std::thread::sleep(Duration::from_millis(500));
    let before = rss(pid);
    // Eight strangers (eight peer ids), 63 streams each: 504 streams, each
    // declaring a 16 MiB join and sending 1 MiB of it.
    let mut strangers = Vec::new();
    let (mut opened, mut delivered) = (0, 0);
    for _ in 0..8 {
        let mut stranger = Outsider::new(None).unwrap();
        stranger.connect(&addr).unwrap();
        let (o, d) = stranger.hold_roster_streams(peer, 63, 16 << 20, 1 << 20);
        (opened, delivered) = (opened + o, delivered + d);
        strangers.push(stranger);
    }
    let grown = peak(10, || rss(pid)).saturating_sub(before);
    eprintln!(
        "roster flood: {opened} of 504 streams opened, {delivered} took all their bytes; \
         rank 0's RSS grew by {:.1} MB",
        grown as f64 / 1e6
    );
    assert!(opened > 0, "the flood never reached rank 0");
    assert!(
        grown < 50 << 20,
        "rank 0's memory grew by {grown} bytes under the flood"
    );
    drop(strangers);
    assert_unharmed(job, 4);
}

#[test]
fn half_open_connections_leave_fds_and_memory_bounded() {
    let dir = TempDir::new("half-open-key");
    let key_file = dir.path().join("job.key");
    JobKey::create(&key_file).unwrap();
    let env = [("DAC_KEY_FILE", key_file.display().to_string())];
    let job = Job::launch(4, ALLREDUCE, &allreduce_args(150, 50), &env, |_| Vec::new());
    job.wait_published(Duration::from_secs(60));
    let (addr, _) = rank_zero(&job);
    let Some(Protocol::Tcp(port)) = addr.iter().nth(1) else {
        panic!("no TCP port in {addr}");
    };
    let pid = job.ranks[0].child.id();
    std::thread::sleep(Duration::from_millis(500));
    let (fds_before, rss_before) = (open_fds(pid), rss(pid));
    let mut sockets = Vec::new();
    for _ in 0..3000 {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => sockets.push(s),
            Err(e) => panic!("connection {} failed: {e}", sockets.len()),
        }
    }
    let fds = peak(10, || open_fds(pid) as u64) as usize;
    let grown = peak(3, || rss(pid)).saturating_sub(rss_before);
    eprintln!(
        "3000 half-open connections: rank 0 holds {fds} fds (was {fds_before}), RSS grew by \
         {:.1} MB",
        grown as f64 / 1e6
    );
    // The default pending limit is 32; a few more for the members' links.
    assert!(
        fds <= fds_before + 32 + 8,
        "rank 0 holds {fds} fds under the flood (was {fds_before})"
    );
    assert!(grown <= 20 << 20, "rank 0's memory grew by {grown} bytes");
    drop(sockets);
    assert_unharmed(job, 4);
}

/// Starts `dacrun ARGS`, with its stderr read line by line.
fn dacrun(args: &[&str]) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(DACRUN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

fn wait_status(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("dacrun did not end within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_dacrun_job_cannot_join_the_first() {
    // Job A runs for a few seconds.
    let (mut first, first_err) = dacrun(&[
        "-n",
        "2",
        "--",
        ALLREDUCE,
        "--dim",
        "4",
        "--reps",
        "60",
        "--pause-ms",
        "50",
    ]);
    let note = first_err.recv_timeout(Duration::from_secs(60)).unwrap();
    let key_path = note
        .strip_prefix("dacrun: job key ")
        .and_then(|rest| rest.strip_suffix(" (removed when the job ends)"))
        .unwrap_or_else(|| panic!("dacrun did not say where the key is: {note}"));
    let key_path = std::path::Path::new(key_path);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the job key is readable by others");
    }
    let run_dir = key_path.parent().unwrap().to_path_buf();
    let zero = run_dir.join("rank-0.addr");
    let start = Instant::now();
    while !zero.exists() {
        assert!(start.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(10));
    }
    let addr = std::fs::read_to_string(&zero).unwrap();
    let addr = addr.lines().next().unwrap();
    // Job B's rank 1 tries to join job A's rank 0, with B's own key.
    let script = format!(
        "if [ \"$DAC_RANK\" = 1 ]; then export DAC_BOOTSTRAP={addr}; fi; exec {ALLREDUCE} --reps 3"
    );
    let start = Instant::now();
    let (mut second, second_err) = dacrun(&["-n", "2", "--", "sh", "-c", &script]);
    let status = wait_status(&mut second, Duration::from_secs(30));
    let took = start.elapsed();
    let said: Vec<String> = second_err.try_iter().collect();
    assert!(!status.success(), "the second job succeeded: {said:?}");
    assert!(
        said.iter().any(|l| l.contains("job key mismatch")),
        "{said:?}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}: {said:?}");
    // Job A is unharmed: every result exact over both of its members.
    let status = wait_status(&mut first, Duration::from_secs(120));
    let mut out = String::new();
    std::io::Read::read_to_string(first.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{out}");
    for rank in 0..2 {
        assert!(
            out.contains(&format!("[{rank}] ok: size=2"))
                && out.contains("reductions_without_everyone=0"),
            "{out}"
        );
    }
    assert!(!run_dir.exists(), "the run directory and its key remain");
}

/// The median per-rank latency (µs) of a job of `dac-allreduce` ranks.
fn median_latency(ended: &[common::procs::Ended]) -> f64 {
    let mut medians: Vec<f64> = ended
        .iter()
        .map(|e| {
            let line = e.out.lines().find(|l| l.starts_with("ok: ")).unwrap();
            common::procs::field(line, "median_us")
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    medians[medians.len() / 2]
}

/// One job of 4 ranks × 20 000 reductions; with `flood`, waves of 3000
/// half-open connections to rank 0 while it runs.
fn latency_run(flood: bool) -> f64 {
    let dir = TempDir::new("latency-key");
    let key_file = dir.path().join("job.key");
    JobKey::create(&key_file).unwrap();
    let env = [("DAC_KEY_FILE", key_file.display().to_string())];
    let args: Vec<String> = ["--dim", "100", "--reps", "20000", "--quiet"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let job = Job::launch(4, ALLREDUCE, &args, &env, |_| Vec::new());
    job.wait_published(Duration::from_secs(60));
    let (addr, _) = rank_zero(&job);
    let Some(Protocol::Tcp(port)) = addr.iter().nth(1) else {
        panic!("no TCP port in {addr}");
    };
    // While the job runs, the flooder opens 3000 connections, holds them
    // for 100 ms, and opens them again.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooder = flood.then(|| {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sockets: Vec<_> = (0..3000)
                    .map_while(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
                    .collect();
                if sockets.is_empty() {
                    break; // rank 0 has ended
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    });
    let ended = job.finish(Duration::from_secs(120));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(flooder) = flooder {
        flooder.join().unwrap();
    }
    for e in &ended {
        assert_eq!(e.code(), Some(0), "{}", e.err);
    }
    median_latency(&ended)
}

/// Benchmark, not run by default: the median reduction under a flood of
/// 3000 half-open connections against unattacked runs interleaved with it.
/// `cargo test --release -p dac-net --features testing --test strangers --
/// --ignored --nocapture half_open_flood_latency`
#[test]
#[ignore = "a benchmark: run it alone, in release"]
fn half_open_flood_latency() {
    let (mut calm, mut flooded) = (Vec::new(), Vec::new());
    for round in 0..5 {
        if round % 2 == 0 {
            calm.push(latency_run(false));
            flooded.push(latency_run(true));
        } else {
            flooded.push(latency_run(true));
            calm.push(latency_run(false));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (c, f) = (median(calm), median(flooded));
    println!(
        "median reduction: unattacked {c:.1} µs, under 3000 half-open connections {f:.1} µs, \
         ratio {:.2}",
        f / c
    );
    assert!(f < 2.0 * c, "the flood slows reductions {:.2}×", f / c);
}
