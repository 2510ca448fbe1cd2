//! Resumable conjugate gradient: kill the whole job after some checkpoints,
//! start it again, and it resumes and reaches the same solution; the same
//! for a loop written on the public checkpoint API.
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use dac_core::{Communicator, Error, Reduction, threaded};
use dac_linalg::{
    Cg, CgOptions, Checkpoints, LinalgError, ProblemId, Snapshot, cg, cg_checkpointed,
};
use nalgebra::{DMatrix, DVector};
use ndarray::{Array1, Array2, Axis, Slice};

/// A communicator whose job "dies" (every rank fails) after `left`
/// reductions, as if the whole job were killed.
struct Doomed<'a, C> {
    inner: &'a mut C,
    left: usize,
}

impl<C: Communicator> Communicator for Doomed<'_, C> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }

    fn size(&self) -> usize {
        self.inner.size()
    }

    fn allreduce_mean(&mut self, x: &[f64]) -> dac_core::Result<Reduction> {
        if self.left == 0 {
            return Err(Error::transport(
                dac_core::TransportKind::PeerLost,
                "the job was killed",
            ));
        }
        self.left -= 1;
        self.inner.allreduce_mean(x)
    }
}

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path =
            std::env::temp_dir().join(format!("dac-ckpt-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).unwrap();
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A 1-D Poisson system (n = 60: CG needs many iterations) and its solution.
fn system() -> (Array2<f64>, Array1<f64>, Vec<f64>) {
    let n = 60;
    let a = Array2::from_shape_fn((n, n), |(i, j)| match i.abs_diff(j) {
        0 => 2.0,
        1 => -1.0,
        _ => 0.0,
    });
    let b = Array1::from_shape_fn(n, |i| ((i * 7) as f64 * 0.3).sin());
    let an = DMatrix::from_fn(n, n, |i, j| a[(i, j)]);
    let x = an
        .cholesky()
        .unwrap()
        .solve(&DVector::from_iterator(n, b.iter().copied()));
    (a, b, x.iter().copied().collect())
}

const SIZE: usize = 3;
const OPTIONS: CgOptions = CgOptions {
    tol: 1e-12,
    max_iter: 1000,
};

/// Runs `cg` (`dir: None`) or `cg_checkpointed` every 5 iterations into
/// `dir` over 3 ranks, each holding 20 rows of `a` and `b`; the job dies
/// after `reductions` reductions (if given).
fn run_cg(
    (a, b): (&Array2<f64>, &Array1<f64>),
    dir: Option<&Path>,
    options: CgOptions,
    reductions: Option<usize>,
) -> Vec<Result<Cg, LinalgError>> {
    threaded::run(SIZE, threaded::Options::default(), |comm| {
        let rows = Slice::from(comm.rank() * 20..comm.rank() * 20 + 20);
        let (a_rows, b_rows) = (a.slice_axis(Axis(0), rows), b.slice_axis(Axis(0), rows));
        let mut doomed = Doomed {
            inner: comm,
            left: reductions.unwrap_or(usize::MAX),
        };
        match dir {
            Some(dir) => {
                let store = Checkpoints::new(dir, 5);
                cg_checkpointed(&mut doomed, &a_rows, &b_rows, &options, &store)
            }
            None => cg(&mut doomed, &a_rows, &b_rows, &options),
        }
    })
    .unwrap()
}

/// The Poisson system with checkpoints in `dir`.
fn solve(dir: &Path, reductions: Option<usize>) -> Vec<Result<Cg, LinalgError>> {
    let (a, b, _) = system();
    run_cg((&a, &b), Some(dir), OPTIONS, reductions)
}

fn assert_solves(r: &Cg, want: &[f64]) {
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    for (u, v) in r.x.iter().zip(want) {
        assert!((u - v).abs() <= 1e-9 * scale, "{u} vs {v}");
    }
}

#[test]
fn a_killed_job_resumes_from_its_last_checkpoint_and_converges_to_the_same_solution() {
    let (a, b, want) = system();
    // Uninterrupted, without checkpoints.
    let plain: Vec<Cg> = run_cg((&a, &b), None, OPTIONS, None)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        plain[0].iterations > 25,
        "{} iterations",
        plain[0].iterations
    );

    let dir = Dir::new("resume");
    // Killed after 24 reductions: the layout, b, the agreement, then 21
    // iterations (checkpoints at 5, 10, 15 and 20).
    for r in solve(&dir.0, Some(24)) {
        assert!(matches!(r, Err(LinalgError::Consensus(_))), "{r:?}");
    }
    for r in solve(&dir.0, None) {
        let r = r.unwrap();
        assert_eq!(r.resumed_from, 20);
        assert_solves(&r, &want);
        assert!(r.residual_norm <= OPTIONS.tol * b.dot(&b).sqrt());
        // The same number of iterations as the run that was never stopped
        // (give or take one: the last bits of the consensus copies).
        assert!(
            r.iterations.abs_diff(plain[0].iterations) <= 1,
            "{} vs {}",
            r.iterations,
            plain[0].iterations
        );
    }
}

#[test]
fn a_damaged_checkpoint_falls_back_to_the_previous_one_every_rank_has() {
    let (_, _, want) = system();
    let dir = Dir::new("damaged");
    for r in solve(&dir.0, Some(24)) {
        assert!(r.is_err());
    }
    // Rank 1's newest file (iteration 20, slot 0) is damaged, as if the
    // kill came in the middle of writing it.
    let newest = dir.0.join("cg.rank1.0");
    let mut bytes = std::fs::read(&newest).unwrap();
    let last = bytes.len() - 40;
    bytes[last] ^= 0xff;
    std::fs::write(&newest, bytes).unwrap();
    for r in solve(&dir.0, None) {
        let r = r.unwrap();
        assert_eq!(r.resumed_from, 15);
        assert_solves(&r, &want);
    }
    // Checkpoints of another problem are not used.
    let other = Dir::new("other");
    for r in solve(&other.0, None) {
        assert_eq!(r.unwrap().resumed_from, 0);
    }
    let (a, b) = (Array2::<f64>::eye(60) * 3.0, Array1::<f64>::ones(60));
    for r in run_cg((&a, &b), Some(&dir.0), OPTIONS, None) {
        let r = r.unwrap();
        assert_eq!(r.resumed_from, 0);
        assert!(r.x.iter().all(|v| (v - 1.0 / 3.0).abs() < 1e-12));
    }
}

#[test]
fn an_unwritable_checkpoint_directory_fails_every_rank() {
    let (a, b, _) = system();
    let missing = std::env::temp_dir().join("dac-ckpt-does-not-exist/nested");
    for r in run_cg((&a, &b), Some(&missing), OPTIONS, None) {
        assert!(
            matches!(r, Err(LinalgError::InvalidArgument { .. })),
            "{r:?}"
        );
    }
}

#[test]
fn resuming_past_a_smaller_iteration_limit_is_not_converged() {
    let (a, b, _) = system();
    let dir = Dir::new("limit");
    for r in solve(&dir.0, Some(24)) {
        assert!(r.is_err());
    }
    // Restarted with max_iter = 10, below the checkpoint at 20: it stops
    // at once instead of running on.
    let fewer = CgOptions {
        max_iter: 10,
        ..OPTIONS
    };
    for r in run_cg((&a, &b), Some(&dir.0), fewer, None) {
        assert!(
            matches!(r, Err(LinalgError::NotConverged { iterations: 20, .. })),
            "{r:?}"
        );
    }
}

/// A Jacobi loop written by a user on top of [`Checkpoints`]: `A x = b`
/// with `A` split by rows over the ranks (20 rows each), `iterations`
/// sweeps, each one reduction that assembles the new `x`, saved every 10
/// sweeps. Returns the solution and the sweep it resumed from.
fn jacobi<C: Communicator>(
    comm: &mut C,
    (a, b): (&Array2<f64>, &Array1<f64>),
    store: &Checkpoints,
    iterations: usize,
) -> Result<(Array1<f64>, usize), LinalgError> {
    let (rank, n) = (comm.rank(), b.len());
    let rows = rank * 20..rank * 20 + 20;
    let a_rows = a.slice_axis(Axis(0), Slice::from(rows.clone()));
    let problem = ProblemId::new(
        a_rows.iter().chain(&b.as_slice().unwrap()[rows.clone()]),
        &[rank as u64, comm.size() as u64],
    );
    let (mut sweep, mut x) = match store.resume(comm, &problem)? {
        Some(Snapshot {
            iteration, vectors, ..
        }) => (iteration, Array1::from(vectors[0].clone())),
        None => (0, Array1::zeros(n)),
    };
    let resumed_from = sweep;
    while sweep < iterations {
        let mut next = vec![0.0; n];
        for (k, i) in rows.clone().enumerate() {
            let off_diagonal = a_rows.row(k).dot(&x) - a[(i, i)] * x[i];
            next[i] = (b[i] - off_diagonal) / a[(i, i)];
        }
        let sum = comm.allreduce_sum(&next).map_err(LinalgError::Consensus)?;
        x = Array1::from(sum.value);
        sweep += 1;
        if store.is_due(sweep) {
            let snapshot = Snapshot {
                iteration: sweep,
                scalars: vec![],
                vectors: vec![x.to_vec()],
            };
            store.save(rank, &snapshot, &problem)?;
        }
    }
    Ok((x, resumed_from))
}

#[test]
fn a_users_own_loop_killed_after_some_checkpoints_resumes_and_reaches_the_same_answer() {
    // A diagonally dominant system: Jacobi converges, 2⁻¹ per sweep.
    let n = 60;
    let a = Array2::from_shape_fn((n, n), |(i, j)| match i.abs_diff(j) {
        0 => 4.0,
        1 => -1.0,
        _ => 0.0,
    });
    let b = Array1::from_shape_fn(n, |i| ((i * 5) as f64 * 0.7).cos());
    let an = DMatrix::from_fn(n, n, |i, j| a[(i, j)]);
    let want = an
        .lu()
        .solve(&DVector::from_iterator(n, b.iter().copied()))
        .unwrap();
    let dir = Dir::new("jacobi");
    let store = Checkpoints::new(&dir.0, 10).named("jacobi").unwrap();
    let run_jacobi = |reductions: usize| {
        threaded::run(SIZE, threaded::Options::default(), |comm| {
            let mut doomed = Doomed {
                inner: comm,
                left: reductions,
            };
            jacobi(&mut doomed, (&a, &b), &store, 60)
        })
        .unwrap()
    };
    // Killed after the agreement and 25 sweeps (checkpoints at 10 and 20).
    for r in run_jacobi(26) {
        assert!(matches!(r, Err(LinalgError::Consensus(_))), "{r:?}");
    }
    assert!(dir.0.join("jacobi.rank2.0").exists() && dir.0.join("jacobi.rank2.1").exists());
    let resumed = run_jacobi(usize::MAX);
    let fresh = Dir::new("jacobi-fresh");
    let uninterrupted = threaded::run(SIZE, threaded::Options::default(), |comm| {
        let store = Checkpoints::new(&fresh.0, 10).named("jacobi").unwrap();
        jacobi(comm, (&a, &b), &store, 60)
    })
    .unwrap();
    for (r, u) in resumed.into_iter().zip(uninterrupted) {
        let ((x, from), (y, from_scratch)) = (r.unwrap(), u.unwrap());
        assert_eq!((from, from_scratch), (20, 0));
        for i in 0..n {
            assert!((x[i] - want[i]).abs() <= 1e-12, "{} vs {}", x[i], want[i]);
            assert!((x[i] - y[i]).abs() <= 1e-12, "{} vs {}", x[i], y[i]);
        }
    }
}
