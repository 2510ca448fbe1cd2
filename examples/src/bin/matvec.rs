//! `matvec`: `y = A x` with `A` split by columns, and again with `A` split
//! by rows, plus `Aᵀ y` for the row split.
//!
//! ```text
//! target/debug/dacrun -n 4 -- target/debug/matvec [ROWS COLS]
//! ```
//!
//! `A` is `ROWS × COLS` (default 300 × 500). Split by columns, rank `r`
//! holds a block of columns of `A` and the matching entries of `x`, and
//! `dac_linalg::matvec` sums the partial products `A_r x_r` by consensus.
//! Split by rows, rank `r` holds a block of rows and the whole `x`:
//! `matvec_rows` assembles the full `A x`, `rmatvec` sums `A_rᵀ y_r`.
//! Every rank compares all three with the products of the whole matrix.

use std::process::ExitCode;

use clap::Parser;
use dac_examples::{BoxError, Check, Comm, EXIT_STATUSES, block, run_with, uniform};
use nalgebra::{DMatrix, DVector};
use ndarray::{Array1, Array2};

const TOL: f64 = 1e-12;

/// `A x` with `A` split by columns, `A x` and `Aᵀ y` with `A` split by rows.
#[derive(Parser)]
#[command(version, after_help = EXIT_STATUSES)]
struct Args {
    /// Rows of A.
    #[arg(value_name = "ROWS", default_value_t = 300, requires = "cols")]
    rows: usize,
    /// Columns of A (give both or neither).
    #[arg(value_name = "COLS", default_value_t = 500)]
    cols: usize,
}

fn body(args: Args, comm: &mut Comm, check: &mut Check) -> Result<(), BoxError> {
    let (m, n) = (args.rows, args.cols);
    let a_at = |i: usize, j: usize| uniform(3, (i * n + j) as u64);
    let x_at = |j: usize| uniform(4, j as u64);
    let (rank, size) = (comm.rank(), comm.size());

    // A x with A split by columns: this rank's columns and entries of x.
    let cols = block(n, rank, size);
    let a_cols = Array2::from_shape_fn((m, cols.len()), |(i, j)| a_at(i, cols.start + j));
    let x_mine: Array1<f64> = cols.map(x_at).collect();
    let y_by_cols = dac_linalg::matvec(comm, &a_cols, &x_mine)?;

    // A x and Aᵀ y with A split by rows: this rank's rows, the whole x.
    let rows = block(m, rank, size);
    let a_rows = Array2::from_shape_fn((rows.len(), n), |(i, j)| a_at(rows.start + i, j));
    let x: Array1<f64> = (0..n).map(x_at).collect();
    let y_by_rows = dac_linalg::matvec_rows(comm, &a_rows, &x)?;
    let y_mine = y_by_rows.slice_axis(ndarray::Axis(0), rows.into());
    let aty = dac_linalg::rmatvec(comm, &a_rows, &y_mine)?;

    // The same products of the whole matrix, in one process.
    let a = DMatrix::from_fn(m, n, a_at);
    let y = &a * DVector::from_fn(n, |j, _| x_at(j));
    let central_aty = a.transpose() * &y;
    if check.verbose() {
        println!("A: {m} × {n} over {size} rank(s)");
    }
    check.vector("A x (A split by columns)", &y_by_cols, &y, TOL);
    check.vector("A x (A split by rows)", &y_by_rows, &y, TOL);
    check.vector("Aᵀ y (A split by rows)", &aty, &central_aty, TOL);
    Ok(())
}

fn main() -> ExitCode {
    run_with("matvec", body)
}
