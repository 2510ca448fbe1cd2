//! `cg`: conjugate gradient for the 2-D Poisson equation, the rows of the
//! matrix split across ranks.
//!
//! ```text
//! target/debug/dacrun -n 4 -- target/debug/cg [GRID]
//! ```
//!
//! `A` is the 5-point Laplacian on a `GRID × GRID` mesh (default 24, so
//! `n = 576`) with zero boundary values; `b` is a reproducible random
//! vector. Rank `r` builds only its block of rows of `A` and entries of
//! `b`; `dac_linalg::cg` iterates with one consensus reduction per step.
//! Every rank compares the solution with a Cholesky solve of the whole
//! system in one process.

use std::process::ExitCode;

use dac_examples::{BoxError, Check, Comm, block, run, uniform};
use dac_linalg::CgOptions;
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
    let g: usize = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("GRID: {arg:?} is not a positive integer"))?,
        None => 24,
    };
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
    let solution = dac_linalg::cg(comm, &a_rows, &b, &options)?;

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
            "Poisson on a {g} × {g} mesh (n = {n}) over {} rank(s): {} iterations, \
                  {} consensus rounds",
            comm.size(),
            solution.iterations,
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
