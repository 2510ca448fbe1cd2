//! `fault_tolerant_lstsq`: least squares on the diabetes data cut into
//! partitions, each partition held by several ranks, so that the answer
//! stays the full-data one when a rank dies mid-run.
//!
//! ```text
//! target/debug/dacrun -n 8 --keep-going -- target/debug/fault_tolerant_lstsq \
//!     --partitions 16 --replicas 2 --kill-rank 3 --kill-after-ms 300
//! ```
//!
//! Options:
//! - `--partitions P` (default 16) and `--replicas R` (default 2): the 442
//!   patients are cut into `P` blocks of rows, and each block is held by
//!   `R` ranks (`dac_linalg::Placement`).
//! - `--fits N` (default 20): the fit is repeated `N` times, so that a kill
//!   lands in the middle of one.
//! - `--kill-rank K --kill-after-ms T`: rank `K` SIGKILLs itself `T` ms
//!   after its first fit starts.
//! - `--cheat-rank K`: a test-only fault. Rank `K` leaves out the first row
//!   of every partition it holds (skipped work). With `R ≥ 3` the other
//!   holders outvote it and it is excluded; with `R = 2` every rank fails.
//! - `--allow-degraded`: when every holder of a partition is gone, fit the
//!   surviving partitions and say which were lost, instead of failing.
//! - `--data CSV`: another data set (default `examples/data/diabetes.csv`).
//!
//! Before each fit the job heals (`Replicated::heal`): the partitions of a
//! holder that departed are copied, verified by their hash, to the live
//! rank holding the fewest, so that the replication factor is restored and
//! a later death loses nothing either (`Restored` events).
//!
//! Every surviving rank checks every fit against a QR solve of all the data
//! (relative error ≤ 1e-9). It prints the events it saw and a last line
//! `rank R: N fits agree … departed [..] excluded [..] lost [..]; F fits/s
//! in the last half` (the rate of the last half of the fits, for
//! `scripts/bench-views`). It exits 1 on a
//! disagreement and 2 on an error (for example `partition 5 is lost`).

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Parser;
use dac_examples::{
    BoxError, Check, Comm, EXIT_STATUSES, Regression, block, qr_solve, relative_error, run_with,
};
use dac_linalg::{LstsqOptions, Placement, Replicated, ReplicatedOptions, lstsq_replicated};
use dac_net::SelfKill;
use nalgebra::DVector;
use ndarray::{Axis, Slice};

/// Least squares on the diabetes data cut into partitions, each held by
/// several ranks, so that the answer stays the full-data one when a rank
/// dies mid-run.
#[derive(Parser)]
#[command(version, after_help = EXIT_STATUSES)]
struct Args {
    /// Blocks of rows the data is cut into.
    #[arg(long, value_name = "P", default_value_t = 16)]
    partitions: usize,
    /// Ranks that hold each block.
    #[arg(long, value_name = "R", default_value_t = 2)]
    replicas: usize,
    /// How many times the fit is repeated (so that a kill lands inside one).
    #[arg(long, value_name = "N", default_value_t = 20)]
    fits: usize,
    /// This rank SIGKILLs itself --kill-after-ms after its first fit starts.
    #[arg(long, value_name = "K", requires = "kill_after_ms")]
    kill_rank: Option<usize>,
    /// Milliseconds before --kill-rank dies.
    #[arg(long, value_name = "T", requires = "kill_rank")]
    kill_after_ms: Option<u64>,
    /// Test-only fault: rank K leaves out the first row of every partition
    /// it holds (with 3 replicas it is outvoted and excluded; with 2 every
    /// rank fails).
    #[arg(long, value_name = "K")]
    cheat_rank: Option<usize>,
    /// When every holder of a partition is gone, fit the surviving
    /// partitions and say which were lost, instead of failing.
    #[arg(long)]
    allow_degraded: bool,
    /// Another data set (a header line, then numbers; the last column is
    /// the response).
    #[arg(long, value_name = "CSV", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/diabetes.csv"))]
    data: String,
}

fn body(args: Args, comm: &mut Comm, check: &mut Check) -> Result<(), BoxError> {
    let kill = SelfKill::from_options(args.kill_rank, args.kill_after_ms)?;
    let (rank, size) = (comm.rank(), comm.size());
    let Regression { a, b, .. } = Regression::from_csv(&args.data)?;
    let (m, n) = a.dim();

    // The partitions this rank holds: blocks of rows.
    let placement = Placement::new(args.partitions, size, args.replicas)?;
    let mut parts = BTreeMap::new();
    for p in placement.held_by(rank) {
        let rows = Slice::from(block(m, p, args.partitions));
        let (mut ap, mut bp) = (
            a.slice_axis(Axis(0), rows).to_owned(),
            b.slice_axis(Axis(0), rows).to_owned(),
        );
        if args.cheat_rank == Some(rank) && ap.nrows() > 0 {
            ap.row_mut(0).fill(0.0);
            bp.row_mut(0).fill(0.0);
        }
        parts.insert(p, (ap, bp));
    }
    let options = ReplicatedOptions {
        allow_degraded: args.allow_degraded,
        ..ReplicatedOptions::default()
    };
    let mut job = Replicated::new(placement, options);

    // The fit of all the data (of the partitions not lost) in one process:
    // A = QR, R β = Qᵀb.
    let central = |lost: &[usize]| -> Result<DVector<f64>, BoxError> {
        let rows: Vec<usize> = (0..args.partitions)
            .filter(|p| !lost.contains(p))
            .flat_map(|p| block(m, p, args.partitions))
            .collect();
        qr_solve(&a.select(Axis(0), &rows), &b.select(Axis(0), &rows))
    };
    let mut beta = central(&[])?;

    if let Some(kill) = kill {
        kill.arm(rank);
    }
    let mut worst = 0.0f64;
    // When the last half of the fits began (their rate is reported).
    let mut half = std::time::Instant::now();
    let halfway = args.fits / 2;
    for fit in 1..=args.fits {
        if fit == halfway + 1 {
            half = std::time::Instant::now();
        }
        // Copies the partitions of holders that departed to other ranks
        // (nothing to do, and no reduction, when none did).
        let healed = job.heal(comm, &mut parts);
        let result = healed.and_then(|_| {
            lstsq_replicated(comm, &mut job, (n, 1), &parts, &LstsqOptions::default())
        });
        for event in job.take_events() {
            println!("fit {fit}: {event:?}");
        }
        let result = result?;
        if !job.lost().is_empty() {
            beta = central(&job.lost())?;
        }
        let err = relative_error(
            &result.x.iter().copied().collect::<Vec<_>>(),
            beta.as_slice(),
        );
        worst = worst.max(err);
        // Rank 0 shows the first and the last comparison; any rank shows
        // a disagreement.
        if fit == 1 || fit == args.fits || err > 1e-9 {
            check.vector(&format!("fit {fit}: β"), &result.x, &beta, 1e-9);
        }
        if check.verbose() && fit == 1 {
            println!(
                "{} partitions × {} replicas over {size} ranks; rank 0 holds {:?}",
                args.partitions,
                args.replicas,
                parts.keys().collect::<Vec<_>>()
            );
        }
    }
    let rate = (args.fits - halfway) as f64 / half.elapsed().as_secs_f64();
    println!(
        "rank {rank}: {} fits agree with the central QR (max relative error {worst:.1e}); \
         departed {:?} excluded {:?} lost {:?}; {rate:.0} fits/s in the last half",
        args.fits,
        job.departed(),
        job.excluded(),
        job.lost()
    );
    Ok(())
}

fn main() -> ExitCode {
    run_with("fault_tolerant_lstsq", body)
}
