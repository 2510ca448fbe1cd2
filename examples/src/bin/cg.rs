//! `cg`: conjugate gradient for the 2-D Poisson equation, the rows of the
//! matrix split across ranks.
//!
//! ```text
//! target/debug/dacrun -n 4 -- target/debug/cg [GRID] [--checkpoint DIR]
//! ```
//!
//! `A` is the 5-point Laplacian on a `GRID × GRID` mesh (default 24, so
//! `n = 576`) with zero boundary values; `b` is a reproducible random
//! vector. Rank `r` builds only its block of rows of `A` and entries of
//! `b`; `dac_linalg::cg` iterates with one consensus reduction per step.
//! Every rank compares the solution with a Cholesky solve of the whole
//! system in one process. With `--checkpoint DIR` the ranks save their
//! state every 5 iterations (`cg_checkpointed`); kill the job, start it
//! again with the same `DIR`, and it resumes where it left off.

use std::process::ExitCode;

use dac_examples::{BoxError, Check, Comm, block, run, uniform};
use dac_linalg::{CgOptions, Checkpoints};
use nalgebra::{DMatrix, DVector};
use ndarray::{Array1, Array2};

/// Entry `(i, j)` of the 5-point Laplacian on a `g × g` mesh.
fn laplacian(g: usize, i: usize, j: usize) -> f64 {
    let (ri, ci, rj, cj) = (i / g, i % g, j / g, j % g);
    if i == j {
        4.0
    } else if ri.abs_diff(rj) + ci.abs_diff(cj) == 1 {
        -1.0
    } else {
        0.0
    }
}

fn body(comm: &mut Comm, check: &mut Check) -> Result<(), BoxError> {
    let (mut g, mut store) = (24, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--checkpoint" {
            let dir = args.next().ok_or("--checkpoint needs a directory")?;
            store = Some(Checkpoints::new(dir, 5));
        } else {
            g = arg
                .parse()
                .map_err(|_| format!("GRID: {arg:?} is not a positive integer"))?;
        }
    }
    let n = g * g;
    let b_at = |i: usize| uniform(10, i as u64);

    // This rank's rows of A and entries of b.
    let rows = block(n, comm.rank(), comm.size());
    let a_rows = Array2::from_shape_fn((rows.len(), n), |(i, j)| laplacian(g, rows.start + i, j));
    let b: Array1<f64> = rows.map(b_at).collect();
    let options = CgOptions {
        tol: 1e-12,
        max_iter: 10 * n,
    };
    let solution = match &store {
        Some(store) => dac_linalg::cg_checkpointed(comm, &a_rows, &b, &options, store)?,
        None => dac_linalg::cg(comm, &a_rows, &b, &options)?,
    };

    // The same system solved directly in one process.
    let a = DMatrix::from_fn(n, n, |i, j| laplacian(g, i, j));
    let b_all = DVector::from_fn(n, |i, _| b_at(i));
    let x = a
        .clone()
        .cholesky()
        .ok_or("A is not positive definite")?
        .solve(&b_all);
    let x_cg = DVector::from_iterator(n, solution.x.iter().copied());
    if check.verbose() {
        println!(
            "Poisson on a {g} × {g} mesh (n = {n}) over {} rank(s): {} iterations \
             (resumed from iteration {}), {} consensus rounds",
            comm.size(),
            solution.iterations,
            solution.resumed_from,
            solution.rounds
        );
    }
    check.vector("x", &solution.x, &x, 1e-9);
    // The true residual of the returned x: within a few roundings of tol.
    let residual = (&b_all - &a * &x_cg).norm() / b_all.norm();
    check.at_most(
        "‖b − A x‖ / ‖b‖ (central, of the distributed x)",
        residual,
        2.0 * options.tol,
    );
    Ok(())
}

fn main() -> ExitCode {
    run("cg", body)
}
