//! `elastic`: least-squares fits over a job whose members come and go.
//! Members join through `dacrun --join` and leave after some fits; every
//! fit is checked against a central QR over exactly the data of the
//! partitions present.
//!
//! ```text
//! target/debug/dacrun -n 4 -- target/debug/elastic --fits 300 --leave-rank 1 --leave-after 100
//! target/debug/dacrun -n 2 --join ADDR --key-file KEY -- target/debug/elastic --fits 100
//! ```
//!
//! The diabetes data (442 patients) is cut into `P` partitions of rows
//! (`--partitions P`, default 16), and the member of rank `r` brings
//! partition `r` (a member of rank `P` or above brings none). Each fit is
//! one `dac_linalg::lstsq` over the members present. After each fit comes
//! an admission point (`Comm::admit`), where joiners enter; `--leave-rank
//! K --leave-after F` makes rank K leave after its F-th fit.
//!
//! After each fit, every member reads the view the fit ran in
//! (`Comm::members`) and solves, by QR in one process, the least-squares
//! problem of exactly the partitions of those members; the two must agree
//! to a relative error of 1e-9. It prints when the partitions present
//! change, and a last line `rank R: N fits agree with the central QR of the
//! partitions present (max relative error E); members now [..]`. It exits
//! 1 on a disagreement and 2 on an error.

use std::process::ExitCode;

use clap::Parser;
use dac_examples::{
    BoxError, Check, Comm, EXIT_STATUSES, Regression, block, qr_solve, relative_error, run_with,
};
use dac_linalg::LstsqOptions;
use ndarray::{Axis, Slice};

/// Least-squares fits over members that come and go, each checked against
/// a central QR over the partitions present.
#[derive(Parser)]
#[command(version, after_help = EXIT_STATUSES)]
struct Args {
    /// Blocks of rows the data is cut into; rank r brings block r.
    #[arg(long, value_name = "P", default_value_t = 16)]
    partitions: usize,
    /// How many fits this process runs (unless it leaves first).
    #[arg(long, value_name = "N", default_value_t = 100)]
    fits: usize,
    /// This rank leaves the job after --leave-after fits.
    #[arg(long, value_name = "K", requires = "leave_after")]
    leave_rank: Option<usize>,
    /// The fit after which --leave-rank leaves.
    #[arg(long, value_name = "F", requires = "leave_rank")]
    leave_after: Option<usize>,
    /// Sleep this long after each fit, for a run that must last a while.
    #[arg(long = "pause-ms", value_name = "MS", default_value_t = 0)]
    pause_ms: u64,
    /// Another data set (a header line, then numbers; the last column is
    /// the response).
    #[arg(long, value_name = "CSV", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/diabetes.csv"))]
    data: String,
}

fn body(args: Args, comm: &mut Comm, check: &mut Check) -> Result<(), BoxError> {
    if args.partitions == 0 {
        return Err("--partitions must be at least 1".into());
    }
    let rank = comm.rank();
    let Regression { a, b, .. } = Regression::from_csv(&args.data)?;
    let m = a.nrows();
    let rows = |p: usize| {
        if p < args.partitions {
            block(m, p, args.partitions)
        } else {
            0..0
        }
    };
    let mine = Slice::from(rows(rank));
    let (a_mine, b_mine) = (a.slice_axis(Axis(0), mine), b.slice_axis(Axis(0), mine));
    let leave_after = (args.leave_rank == Some(rank))
        .then_some(args.leave_after)
        .flatten();
    let mut worst = 0.0f64;
    let mut present: Vec<usize> = Vec::new();
    let mut fits = 0;
    for fit in 1..=args.fits {
        let result = dac_linalg::lstsq(comm, &a_mine, &b_mine, &LstsqOptions::default())?;
        fits = fit;
        // The fit ran in the view its last reduction completed: exactly
        // these members' partitions.
        let now: Vec<usize> = comm
            .members()
            .iter()
            .copied()
            .filter(|&r| r < args.partitions)
            .collect();
        let picked: Vec<usize> = now.iter().flat_map(|&p| rows(p)).collect();
        let beta = qr_solve(&a.select(Axis(0), &picked), &b.select(Axis(0), &picked))?;
        let err = relative_error(
            &result.x.iter().copied().collect::<Vec<_>>(),
            beta.as_slice(),
        );
        worst = worst.max(err);
        if now != present || err > 1e-9 {
            if check.verbose() || err > 1e-9 {
                println!("fit {fit}: partitions present {now:?}");
            }
            check.vector(&format!("fit {fit}: β"), &result.x, &beta, 1e-9);
            present = now;
        }
        // A member that is done leaves here, in place of the admission
        // point: the others' admission point then notes its departure, and
        // their next fit runs without it.
        if leave_after == Some(fit) || fit == args.fits {
            break;
        }
        if args.pause_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(args.pause_ms));
        }
        // Where a joiner begins this loop.
        comm.admit()?;
    }
    println!(
        "rank {rank}: {fits} fits agree with the central QR of the partitions present (max \
         relative error {worst:.1e}); members now {:?}",
        comm.members()
    );
    Ok(())
}

fn main() -> ExitCode {
    run_with("elastic", body)
}
