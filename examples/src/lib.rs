//! MPI-style example programs for `dac`, and what they share.
//!
//! Each program in `src/bin/` is started on every rank by `dacrun`, joins
//! the job with [`Comm::from_env`], makes or loads its data, keeps its own
//! piece, computes the distributed result and compares it with the same
//! computation done centrally (in one process, with nalgebra). Rank 0
//! prints every comparison; every rank checks, and any rank that disagrees
//! beyond the tolerance says so and exits with status 1.
//!
//! ```text
//! cargo build -p dac-examples -p dac-net --bins
//! target/debug/dacrun -n 8 -- target/debug/lstsq
//! ```
//!
//! `scripts/examples` runs every program with 1, 2, 3 and 8 peers.
#![deny(missing_docs)]

use std::error::Error;
use std::ops::Range;
use std::process::ExitCode;

use nalgebra::{DMatrix, DVector};
use ndarray::{Array2, Axis, Slice};

pub use dac_net::{Comm, Communicator};

/// The error type of an example's body.
pub type BoxError = Box<dyn Error>;

/// The rows `start..end` of `n` that rank `rank` of `size` holds:
/// contiguous blocks in rank order, the first `n % size` ranks one row
/// longer (so with more ranks than rows some ranks hold none).
pub fn block(n: usize, rank: usize, size: usize) -> Range<usize> {
    let size = size.max(1);
    let (base, extra) = (n / size, n % size);
    let start = rank * base + rank.min(extra);
    let len = base + usize::from(rank < extra);
    start.min(n)..(start + len).min(n)
}

/// A reproducible number in `[-1, 1)`, the `i`-th of stream `seed`
/// (SplitMix64), so every rank can make exactly its own piece of a global
/// data set and the central check can make all of it.
pub fn uniform(seed: u64, i: u64) -> f64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(i.wrapping_add(1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // The top 53 bits as a fraction of 2^53, mapped to [-1, 1).
    (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// `‖got − want‖₂ / ‖want‖₂` (the absolute difference when `want` is 0).
pub fn relative_error(got: &[f64], want: &[f64]) -> f64 {
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
    let diff = norm(&mut got.iter().zip(want).map(|(g, w)| g - w));
    let scale = norm(&mut want.iter().copied());
    if scale > 0.0 { diff / scale } else { diff }
}

/// Compares distributed results with central ones on every rank.
#[derive(Debug)]
pub struct Check {
    rank: usize,
    failures: usize,
}

impl Check {
    /// Whether this rank prints its comparisons (only rank 0 does; the
    /// others print only what disagrees).
    pub fn verbose(&self) -> bool {
        self.rank == 0
    }

    /// Compares two scalars to the relative tolerance `tol`.
    pub fn scalar(&mut self, what: &str, distributed: f64, central: f64, tol: f64) {
        let rel = relative_error(&[distributed], &[central]);
        let line = format!(
            "{what}: distributed {distributed:.15e}  central {central:.15e}  \
             |diff| {:.2e}  relative {rel:.2e}",
            (distributed - central).abs()
        );
        self.verdict(line, rel <= tol, format!("tolerance {tol:.0e}"));
    }

    /// Compares two vectors (or matrices, entry by entry in the order they
    /// iterate: pass both in the same layout) to the relative tolerance
    /// `tol` in the 2-norm.
    pub fn vector<'a>(
        &mut self,
        what: &str,
        distributed: impl IntoIterator<Item = &'a f64>,
        central: impl IntoIterator<Item = &'a f64>,
        tol: f64,
    ) {
        let distributed: Vec<f64> = distributed.into_iter().copied().collect();
        let central: Vec<f64> = central.into_iter().copied().collect();
        let (distributed, central) = (&distributed[..], &central[..]);
        if distributed.len() != central.len() {
            let line = format!(
                "{what}: {} distributed entries but {} central ones",
                distributed.len(),
                central.len()
            );
            self.verdict(line, false, format!("tolerance {tol:.0e}"));
            return;
        }
        let rel = relative_error(distributed, central);
        let max = distributed
            .iter()
            .zip(central)
            .map(|(d, c)| (d - c).abs())
            .fold(0.0, f64::max);
        let head = |v: &[f64]| {
            let shown: Vec<String> = v.iter().take(3).map(|x| format!("{x:.6e}")).collect();
            let more = if v.len() > 3 { ", …" } else { "" };
            format!("[{}{more}]", shown.join(", "))
        };
        let line = format!(
            "{what} ({} entries): distributed {}  central {}  max |diff| {max:.2e}  \
             relative {rel:.2e}",
            central.len(),
            head(distributed),
            head(central)
        );
        self.verdict(line, rel <= tol, format!("tolerance {tol:.0e}"));
    }

    /// Checks that a computed quantity (a residual, say) is at most
    /// `limit`.
    pub fn at_most(&mut self, what: &str, value: f64, limit: f64) {
        let line = format!("{what}: {value:.3e}");
        self.verdict(line, value <= limit, format!("limit {limit:.0e}"));
    }

    /// Counts a failure (a NaN never passes) and prints what it must.
    fn verdict(&mut self, line: String, passed: bool, bound: String) {
        if !passed {
            self.failures += 1;
            println!("MISMATCH {line}  (beyond the {bound})");
        } else if self.verbose() {
            println!("{line}  ({bound})");
        }
    }
}

/// Reads a CSV file of numbers with one header line: the column names and
/// the rows as a matrix. Blank lines are skipped; a malformed line is an
/// error naming it.
pub fn read_csv(path: &str) -> Result<(Vec<String>, Array2<f64>), BoxError> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut lines = text.lines().enumerate();
    let (_, header) = lines.next().ok_or(format!("{path} is empty"))?;
    let names: Vec<String> = header.split(',').map(|s| s.trim().to_string()).collect();
    let mut values = Vec::new();
    for (at, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != names.len() {
            let (got, want) = (fields.len(), names.len());
            return Err(format!("{path}:{}: {got} fields, expected {want}", at + 1).into());
        }
        for f in fields {
            let v: f64 = f
                .trim()
                .parse()
                .map_err(|_| format!("{path}:{}: {f:?} is not a number", at + 1))?;
            values.push(v);
        }
    }
    let rows = values.len() / names.len().max(1);
    Ok((
        names.clone(),
        Array2::from_shape_vec((rows, names.len()), values)?,
    ))
}

/// A linear model `A β ≈ b` read from a CSV file.
#[derive(Debug)]
pub struct Regression {
    /// The names of the columns of `a` (`intercept`, then the features).
    pub names: Vec<String>,
    /// The design matrix `[1 | features]`.
    pub a: Array2<f64>,
    /// The response, `m × 1`.
    pub b: Array2<f64>,
}

impl Regression {
    /// Reads a CSV file of numbers ([`read_csv`]): the last column is the
    /// response, the others the features; an intercept column comes first.
    pub fn from_csv(path: &str) -> Result<Regression, BoxError> {
        let (mut names, data) = read_csv(path)?;
        let (m, n) = data.dim();
        let a = Array2::from_shape_fn((m, n), |(i, j)| if j == 0 { 1.0 } else { data[(i, j - 1)] });
        let b = data.slice_axis(Axis(1), Slice::from(n - 1..)).to_owned();
        names.pop();
        names.insert(0, "intercept".into());
        Ok(Regression { names, a, b })
    }
}

/// The least-squares solution of `A β ≈ b` (`b` is `m × 1`) in one
/// process, by a QR decomposition: `A = QR`, `R β = Qᵀb`.
pub fn qr_solve(a: &Array2<f64>, b: &Array2<f64>) -> Result<DVector<f64>, BoxError> {
    let (m, n) = a.dim();
    let qr = DMatrix::from_fn(m, n, |i, j| a[(i, j)]).qr();
    let rhs = qr.q().transpose() * DVector::from_fn(m, |i, _| b[(i, 0)]);
    Ok(qr.r().solve_upper_triangular(&rhs).ok_or("R is singular")?)
}

/// The exit statuses of every example, for its `--help`.
pub const EXIT_STATUSES: &str = "Run it under dacrun (dacrun -n 4 PROGRAM ...); every rank \
    checks the distributed result against a central computation.\n\nExit status: 0 when \
    every comparison agrees, 1 when one disagrees (its line starts with MISMATCH), 2 when \
    the arguments, the job or a computation failed.";

/// Parses the command line as `A` (on `--help` or a bad argument, prints
/// and exits 0 or 2 before joining any job), then [`run`]s `body` with it.
pub fn run_with<A: clap::Parser>(
    name: &str,
    body: impl FnOnce(A, &mut Comm, &mut Check) -> Result<(), BoxError>,
) -> ExitCode {
    let args = match A::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{name}: {}", dac_core::cli::one_line(&e));
            return ExitCode::from(2);
        }
    };
    run(name, |comm, check| body(args, comm, check))
}

/// Runs an example on this rank: joins the job from `dacrun`'s environment
/// ([`Comm::from_env`]), runs `body`, closes the communicator and turns the
/// outcome into the exit status: 0 when everything agreed, 1 when a
/// comparison failed, 2 when the job or a computation failed.
pub fn run(
    name: &str,
    body: impl FnOnce(&mut Comm, &mut Check) -> Result<(), BoxError>,
) -> ExitCode {
    let mut comm = match Comm::from_env() {
        Ok(comm) => comm,
        Err(e) => {
            eprintln!("{name}: cannot join the job: {e}");
            return ExitCode::from(2);
        }
    };
    let (rank, size) = (comm.rank(), comm.size());
    let mut check = Check { rank, failures: 0 };
    let outcome = body(&mut comm, &mut check);
    if let Err(e) = comm.shutdown() {
        eprintln!("{name}: rank {rank}: closing the job: {e}");
    }
    match outcome {
        Err(e) => {
            eprintln!("{name}: rank {rank}: {e}");
            ExitCode::from(2)
        }
        Ok(()) if check.failures > 0 => {
            println!(
                "{name}: {} comparison(s) disagree with the central computation",
                check.failures
            );
            ExitCode::from(1)
        }
        Ok(()) => {
            if check.verbose() {
                println!("{name}: ok on {size} rank(s): agrees with the central computation");
            }
            ExitCode::SUCCESS
        }
    }
}

/// The README's code runs as a doctest (here, where every crate it uses is
/// in scope), so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_every_row_once_in_rank_order() {
        for n in [0, 1, 5, 8, 442] {
            for size in 1..=9 {
                let mut next = 0;
                for rank in 0..size {
                    let r = block(n, rank, size);
                    assert_eq!(r.start, next, "n={n} size={size} rank={rank}");
                    assert!(r.len() == n / size || r.len() == n / size + 1);
                    next = r.end;
                }
                assert_eq!(next, n);
            }
        }
    }

    #[test]
    fn a_csv_regression_is_read_and_solved_exactly() {
        let path = std::env::temp_dir().join(format!("dac-regression-{}.csv", std::process::id()));
        // y = 1 + 2 t − 0.5 u exactly.
        std::fs::write(&path, "t,u,y\n0,1,0.5\n1,0,3\n2,4,3\n3,1,6.5\n").unwrap();
        let r = Regression::from_csv(path.to_str().unwrap()).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(r.names, ["intercept", "t", "u"]);
        assert_eq!(r.a.dim(), (4, 3));
        assert_eq!(r.b.column(0).to_vec(), [0.5, 3.0, 3.0, 6.5]);
        let beta = qr_solve(&r.a, &r.b).unwrap();
        for (got, want) in beta.iter().zip([1.0, 2.0, -0.5]) {
            assert!((got - want).abs() <= 1e-12, "{beta}");
        }
        let bad =
            std::env::temp_dir().join(format!("dac-regression-bad-{}.csv", std::process::id()));
        std::fs::write(&bad, "t,y\n1,2\n3\n").unwrap();
        assert!(Regression::from_csv(bad.to_str().unwrap()).is_err());
        let _ = std::fs::remove_file(&bad);
    }

    #[test]
    fn uniform_is_reproducible_and_in_range() {
        let xs: Vec<f64> = (0..10_000).map(|i| uniform(7, i)).collect();
        assert!(xs.iter().all(|x| (-1.0..1.0).contains(x)));
        assert_eq!(xs[123], uniform(7, 123));
        assert_ne!(uniform(7, 0), uniform(8, 0));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
    }

    #[test]
    fn relative_error_and_check_flag_what_they_should() {
        assert_eq!(relative_error(&[3.0, 4.0], &[3.0, 4.0]), 0.0);
        assert!((relative_error(&[3.0, 4.0 + 5e-3], &[3.0, 4.0]) - 1e-3).abs() < 1e-15);
        let mut check = Check {
            rank: 1,
            failures: 0,
        };
        check.scalar("same", 1.0, 1.0 + 1e-14, 1e-12);
        check.vector("close", &[1.0, 2.0], &[1.0, 2.0 + 1e-13], 1e-12);
        assert_eq!(check.failures, 0);
        check.scalar("nan", f64::NAN, 1.0, 1e-12);
        check.vector("far", &[1.0, 2.0], &[1.0, 2.1], 1e-12);
        check.vector("lengths", &[1.0], &[1.0, 2.0], 1e-12);
        assert_eq!(check.failures, 3);
        check.at_most("small", 1e-13, 1e-12);
        assert_eq!(check.failures, 3);
        check.at_most("large", 1e-11, 1e-12);
        check.at_most("nan", f64::NAN, 1e-12);
        assert_eq!(check.failures, 5);
    }
}
