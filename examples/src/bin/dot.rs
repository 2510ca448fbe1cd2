//! `dot`: the dot product and 2-norm of two vectors split across ranks.
//!
//! ```text
//! target/debug/dacrun -n 4 -- target/debug/dot [LENGTH]
//! ```
//!
//! `x` and `y` have `LENGTH` entries (default 1 000 003, so the blocks are
//! uneven); rank `r` makes only its block of both, computes the local dot
//! products, and `dac_linalg::dot` / `norm2` combine them by consensus.
//! Every rank compares the results with the sums over the whole vectors.

use std::process::ExitCode;

use clap::Parser;
use dac_examples::{BoxError, Check, Comm, EXIT_STATUSES, block, run_with, uniform};
use ndarray::Array1;

const TOL: f64 = 1e-12;

/// The dot product and 2-norm of two vectors split across ranks.
#[derive(Parser)]
#[command(version, after_help = EXIT_STATUSES)]
struct Args {
    /// Entries of x and y (uneven blocks by default).
    #[arg(value_name = "LENGTH", default_value_t = 1_000_003)]
    length: usize,
}

fn body(args: Args, comm: &mut Comm, check: &mut Check) -> Result<(), BoxError> {
    let n = args.length;
    let x_at = |i: usize| uniform(1, i as u64);
    let y_at = |i: usize| 0.5 + uniform(2, i as u64);

    // This rank's piece only.
    let mine = block(n, comm.rank(), comm.size());
    if check.verbose() {
        println!(
            "x, y: {n} entries over {} rank(s); rank 0 holds {mine:?}",
            comm.size()
        );
    }
    let x: Array1<f64> = mine.clone().map(x_at).collect();
    let y: Array1<f64> = mine.map(y_at).collect();
    let dot = dac_linalg::dot(comm, &x, &y)?;
    let norm = dac_linalg::norm2(comm, &x)?;

    // The same sums over the whole vectors, in one process.
    let central_dot: f64 = (0..n).map(|i| x_at(i) * y_at(i)).sum();
    let central_norm = (0..n).map(|i| x_at(i).powi(2)).sum::<f64>().sqrt();
    check.scalar("x·y", dot, central_dot, TOL);
    check.scalar("‖x‖", norm, central_norm, TOL);
    Ok(())
}

fn main() -> ExitCode {
    run_with("dot", body)
}
