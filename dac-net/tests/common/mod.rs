//! Helpers shared by the dac-net integration tests.
#![allow(dead_code)] // each test binary uses a different subset
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dac_net::{Comm, CommBuilder};

pub(crate) mod procs;

/// A fresh directory, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "dac-net-test-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `body` on `n` members (one thread each) that form a job through a
/// run directory; `configure` adjusts each member's builder.
pub(crate) fn run_job<T, B, F>(n: usize, configure: B, body: F) -> Vec<T>
where
    T: Send,
    B: Fn(usize, CommBuilder) -> CommBuilder + Sync,
    F: Fn(&mut Comm) -> T + Sync,
{
    let dir = TempDir::new("job");
    let (configure, body, dir) = (&configure, &body, &dir);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|rank| {
                scope.spawn(move || {
                    let builder = Comm::builder()
                        .size(n)
                        .rank(rank)
                        .run_dir(dir.path())
                        .startup_timeout(Duration::from_secs(30));
                    let mut comm = configure(rank, builder)
                        .build()
                        .unwrap_or_else(|e| panic!("rank {rank}: {e}"));
                    let out = body(&mut comm);
                    comm.shutdown().unwrap();
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Rank `r`'s test input of length `d`.
pub(crate) fn input(rank: usize, d: usize) -> Vec<f64> {
    (0..d)
        .map(|k| (rank as f64 + 1.0) * (1.0 + (k % 7) as f64) - 0.5 * k as f64)
        .collect()
}

/// The exact mean of the inputs of `ranks`.
pub(crate) fn exact_mean(ranks: &[usize], d: usize) -> Vec<f64> {
    let mut mean = vec![0.0; d];
    for &r in ranks {
        for (m, x) in mean.iter_mut().zip(input(r, d)) {
            *m += x;
        }
    }
    mean.iter().map(|m| m / ranks.len() as f64).collect()
}

/// Asserts `value` is within `1e-12·max(1, ‖exact‖∞)` of `exact`.
pub(crate) fn assert_close(value: &[f64], exact: &[f64], what: &str) {
    assert_eq!(value.len(), exact.len(), "{what}: length");
    let scale = exact.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    let tol = 1e-12 * scale;
    for (k, (v, e)) in value.iter().zip(exact).enumerate() {
        assert!(
            (v - e).abs() <= tol,
            "{what}: [{k}] {v} vs exact {e} (tol {tol:e})"
        );
    }
}

/// A loopback address on a port that was free a moment ago (for a rank 0
/// that must listen on a known address).
pub(crate) fn free_local_addr() -> dac_net::Multiaddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
}
