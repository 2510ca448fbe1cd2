//! The `cg` example over real processes: its derived accuracy limit on
//! larger grids, and a killed job that resumes from its checkpoints.
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{RunDir, finish, launch_program};

/// The true residual and the error of x stay within the limits `cg`
/// derives from tol, the ranks' rounding, the steps and κ(A) (see
/// `examples/src/bin/cg.rs`); with a fixed `2 · tol` grid 64 on 3 ranks
/// failed (2.6e-12).
#[test]
fn cg_meets_its_derived_limits_on_larger_grids() {
    for (grid, size) in [(24, 1), (64, 3), (48, 8), (96, 8)] {
        let dir = RunDir::new("cg-grid");
        let grid = grid.to_string();
        let mut ranks = launch_program(env!("CARGO_BIN_EXE_cg"), size, &dir, &[grid.as_str()]);
        for (rank, r) in ranks.iter_mut().enumerate() {
            let (code, out, err) = finish(r);
            assert_eq!(
                code,
                Some(0),
                "grid {grid}, rank {rank} of {size}:\n{out}\n{err}"
            );
            assert!(!out.contains("MISMATCH"), "{out}");
            if rank == 0 {
                assert!(out.contains(&format!("cg: ok on {size} rank(s)")), "{out}");
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
