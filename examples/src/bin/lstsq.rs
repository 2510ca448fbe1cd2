//! `lstsq`: ordinary least squares on the diabetes data of Efron et al.
//! (2004), its 442 patients split across ranks.
//!
//! ```text
//! target/debug/dacrun -n 8 -- target/debug/lstsq [CSV]
//! ```
//!
//! The model is `progression ≈ β₀ + β·(age, sex, bmi, bp, s1, …, s6)` on
//! the raw, unstandardised measurements (`examples/data/diabetes.csv`, see
//! the README there), so the columns differ in scale by two orders of
//! magnitude and the intercept column is nearly collinear with them. Every
//! rank reads the file, keeps its block of rows and calls
//! `dac_linalg::lstsq`; the result is compared with a QR solve of the whole
//! data set in one process.

use std::process::ExitCode;

use clap::Parser;
use dac_examples::{BoxError, Check, Comm, EXIT_STATUSES, Regression, block, qr_solve, run_with};
use dac_linalg::LstsqOptions;
use nalgebra::{DMatrix, DVector};
use ndarray::{Axis, Slice};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/diabetes.csv");

/// Least squares on a CSV data set (the last column is the response, an
/// intercept is added), its rows split across ranks.
#[derive(Parser)]
#[command(version, after_help = EXIT_STATUSES)]
struct Args {
    /// The data: a header line, then numbers (default: the diabetes data
    /// in examples/data).
    #[arg(value_name = "CSV", default_value = DATA)]
    csv: String,
}

fn body(args: Args, comm: &mut Comm, check: &mut Check) -> Result<(), BoxError> {
    let path = args.csv;
    // A = [1 | features], b = the last column (the response).
    let Regression { names, a, b } = Regression::from_csv(&path)?;
    let (m, n) = a.dim();

    // This rank's block of patients.
    let mine = Slice::from(block(m, comm.rank(), comm.size()));
    let (a_mine, b_mine) = (a.slice_axis(Axis(0), mine), b.slice_axis(Axis(0), mine));
    let fit = dac_linalg::lstsq(comm, &a_mine, &b_mine, &LstsqOptions::default())?;

    // The same fit of all the data in one process.
    let beta = qr_solve(&a, &b)?;
    let a_all = DMatrix::from_fn(m, n, |i, j| a[(i, j)]);
    let b_all = DVector::from_fn(m, |i, _| b[(i, 0)]);
    let residual = (&a_all * &beta - &b_all).norm();
    let sv = a_all.singular_values();

    if check.verbose() {
        println!(
            "diabetes data: {m} patients × {} features + intercept over {} rank(s)",
            n - 1,
            comm.size()
        );
        println!(
            "cond(A) = {:.3e} (central SVD); solver {:?}, {} refinement(s), {} consensus rounds",
            sv.max() / sv.min(),
            fit.solver,
            fit.refinements,
            fit.rounds
        );
        println!(
            "{:>10} {:>18} {:>18} {:>9}",
            "", "distributed", "central (QR)", "|diff|"
        );
        for (j, name) in names.iter().enumerate() {
            let (d, c) = (fit.x[(j, 0)], beta[j]);
            println!("{name:>10} {d:>18.10} {c:>18.10} {:>9.1e}", (d - c).abs());
        }
    }
    check.vector("β", &fit.x, &beta, 1e-8);
    check.scalar("‖A β − b‖", fit.residual_norm, residual, 1e-10);
    Ok(())
}

fn main() -> ExitCode {
    run_with("lstsq", body)
}
