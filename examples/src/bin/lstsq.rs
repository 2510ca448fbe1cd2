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

use dac_examples::{BoxError, Check, Comm, block, read_csv, run};
use dac_linalg::LstsqOptions;
use nalgebra::{DMatrix, DVector};
use ndarray::{Array2, Axis, Slice};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/diabetes.csv");

fn body(comm: &mut Comm, check: &mut Check) -> Result<(), BoxError> {
    let path = std::env::args().nth(1).unwrap_or_else(|| DATA.to_string());
    let (mut names, data) = read_csv(&path)?;
    // A = [1 | features], b = the last column (the response).
    let (m, n) = (data.nrows(), data.ncols());
    let a = Array2::from_shape_fn((m, n), |(i, j)| if j == 0 { 1.0 } else { data[(i, j - 1)] });
    let b = data.slice_axis(Axis(1), Slice::from(n - 1..));
    names.pop();
    names.insert(0, "intercept".into());

    // This rank's block of patients.
    let mine = Slice::from(block(m, comm.rank(), comm.size()));
    let (a_mine, b_mine) = (a.slice_axis(Axis(0), mine), b.slice_axis(Axis(0), mine));
    let fit = dac_linalg::lstsq(comm, &a_mine, &b_mine, &LstsqOptions::default())?;

    // The same fit of all the data in one process: A = QR, R β = Qᵀb.
    let a_all = DMatrix::from_fn(m, n, |i, j| a[(i, j)]);
    let b_all = DVector::from_fn(m, |i, _| b[(i, 0)]);
    let qr = a_all.clone().qr();
    let beta = qr
        .r()
        .solve_upper_triangular(&(qr.q().transpose() * &b_all))
        .ok_or("R is singular")?;
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
    run("lstsq", body)
}
