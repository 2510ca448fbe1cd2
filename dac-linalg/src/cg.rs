//! Conjugate gradient for a symmetric positive definite system whose rows
//! are split across ranks.

use dac_core::Communicator;
use ndarray::{Array1, ArrayBase, Data, Ix1, Ix2};

use crate::check::{Ballot, Verdict, at_limit, reduce_checked, row_layout};
use crate::checkpoint::{Checkpoints, ProblemId, Snapshot};
use crate::error::{LinalgError, Result};

/// Options of [`cg`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CgOptions {
    /// Stop when `‖b − A x‖ ≤ tol · ‖b‖` (default `1e-10`).
    pub tol: f64,
    /// Iterations after which [`LinalgError::NotConverged`] is returned
    /// (default 1000).
    pub max_iter: usize,
}

impl Default for CgOptions {
    fn default() -> CgOptions {
        CgOptions {
            tol: 1e-10,
            max_iter: 1000,
        }
    }
}

/// The answer of [`cg`], the same on every rank.
#[derive(Clone, Debug, PartialEq)]
pub struct Cg {
    /// The solution (`n`, full on every rank).
    pub x: Array1<f64>,
    /// Iterations taken.
    pub iterations: usize,
    /// `‖b − A x‖` of the returned `x` (the recurrence's residual):
    /// absolute, not relative — the stopping test is `≤ tol · ‖b‖`. The
    /// true residual of `x` can exceed it: each step's `A p` is a
    /// reduction, rounded to a few ulps, and the recurrence drifts by
    /// about `u · √k · κ(A) · ‖b‖` over `k` steps (`u` that rounding).
    /// The `cg` example derives and checks this limit.
    pub residual_norm: f64,
    /// Consensus rounds used, over all the reductions.
    pub rounds: u64,
    /// The iteration this run resumed from ([`cg_checkpointed`]; 0 when
    /// it started from scratch).
    pub resumed_from: usize,
}

/// Solves `A x = b` for a symmetric positive definite `A` (`n × n`) whose
/// rows are split across ranks: rank `i` holds `a_rows` (`r_i × n`) and the
/// matching entries of `b` (`r_i`), the pieces in rank order.
///
/// Each iteration is one reduction: the ranks' rows of `A p` are assembled
/// into the full `A p` (the row-partitioned matvec); the search vectors are
/// kept whole on every rank, so the dot products need no communication.
/// Whether to stop is a majority vote carried in that reduction, so every
/// rank takes the same number of steps even where its copy differs in the
/// last bits.
///
/// # Errors
/// [`LinalgError::Shape`] (rows of `b` not matching `a_rows`, `Σ r_i ≠ n`,
/// ranks disagreeing on `n`), [`LinalgError::NonFinite`],
/// [`LinalgError::InvalidArgument`] (`tol` not in `(0, 1)`, `A` found not
/// positive definite, ranks passing different `max_iter` when the smallest
/// is reached), [`LinalgError::NotConverged`] after `max_iter`,
/// [`LinalgError::Empty`], [`LinalgError::Incomplete`], or the reduction's
/// error — on every rank alike, naming the same ranks.
pub fn cg<C, S, T>(
    comm: &mut C,
    a_rows: &ArrayBase<S, Ix2>,
    b: &ArrayBase<T, Ix1>,
    options: &CgOptions,
) -> Result<Cg>
where
    C: Communicator,
    S: Data<Elem = f64>,
    T: Data<Elem = f64>,
{
    cg_inner(comm, a_rows, b, options, None)
}

/// [`cg`] that saves its state every [`Checkpoints::every`] iterations and,
/// when started again on the same problem (the same ranks with the same
/// data), resumes from the latest iteration every rank saved.
///
/// Kill the whole job at any point and start it again: it continues from
/// the last complete checkpoint and converges to the same solution (within
/// `tol`). [`Cg::resumed_from`] says where it resumed. Saving costs one
/// file write per rank per checkpoint, and starting costs one more
/// reduction, in which the ranks agree on where to resume.
///
/// # Errors
/// As [`cg`]. A rank that cannot write its checkpoint makes every rank
/// fail with [`LinalgError::InvalidArgument`] (saying how many ranks could
/// not write, and at which iteration).
pub fn cg_checkpointed<C, S, T>(
    comm: &mut C,
    a_rows: &ArrayBase<S, Ix2>,
    b: &ArrayBase<T, Ix1>,
    options: &CgOptions,
    checkpoints: &Checkpoints,
) -> Result<Cg>
where
    C: Communicator,
    S: Data<Elem = f64>,
    T: Data<Elem = f64>,
{
    cg_inner(comm, a_rows, b, options, Some(checkpoints))
}

fn cg_inner<C, S, T>(
    comm: &mut C,
    a_rows: &ArrayBase<S, Ix2>,
    b: &ArrayBase<T, Ix1>,
    options: &CgOptions,
    checkpoints: Option<&Checkpoints>,
) -> Result<Cg>
where
    C: Communicator,
    S: Data<Elem = f64>,
    T: Data<Elem = f64>,
{
    let (r, n) = a_rows.dim();
    let size = comm.size();
    let mut verdict = Verdict::operands(("A", a_rows), "rows", r, ("b", b));
    if !(options.tol > 0.0 && options.tol < 1.0) {
        verdict.argument(|| format!("tol = {} must lie in (0, 1)", options.tol));
    }
    let ok = verdict.is_ok();
    let layout = row_layout(comm, verdict, r, n)?;
    let (offset, total) = (layout.offset, layout.total);
    let mut rounds = u64::from(layout.rounds);
    // Both shared: `row_layout` checked that every rank's `n` is the same.
    if total != n {
        return Err(LinalgError::Shape {
            reason: format!("A must be square: the ranks hold {total} rows of {n} columns"),
        });
    }
    if n == 0 {
        return Err(LinalgError::Empty {
            what: "a system of size 0",
        });
    }
    // Assembles the ranks' pieces (`local`, r values) into a full vector,
    // with this rank's votes after it.
    let mut assemble =
        |comm: &mut C, local: &[f64], votes: [f64; 4]| -> Result<(Vec<f64>, [usize; 4])> {
            let mut full = vec![0.0; n];
            if ok {
                full[offset..offset + r].copy_from_slice(local);
            }
            let sum = reduce_checked(comm, Ballot::ok().with_votes(&votes), &full, "A p")?;
            rounds += u64::from(sum.rounds);
            let count = |v: f64| v.round().max(0.0) as usize;
            let votes = std::array::from_fn(|j| count(sum.tally.votes[j]));
            Ok((sum.data, votes))
        };
    let (b_full, _) = assemble(comm, &b.to_vec(), [0.0; 4])?;
    let b_full = Array1::from(b_full);
    let b_norm = b_full.dot(&b_full).sqrt();
    let mut x = Array1::<f64>::zeros(n);
    let mut res = b_full.clone();
    let mut p = res.clone();
    let mut rs = res.dot(&res);
    let mut iterations = 0;
    let rank = comm.rank();
    // This rank's problem, so that another problem's checkpoints are not
    // used (computed only when checkpointing).
    let problem = checkpoints.map(|_| {
        ProblemId::new(
            a_rows.iter().chain(b.iter()),
            &[rank as u64, size as u64, n as u64],
        )
    });
    let mut resumed_from = 0;
    let mut agree_rounds = 0;
    if let (Some(store), Some(problem)) = (checkpoints, &problem) {
        let (snapshot, agreement) = store.resume_counting(comm, problem)?;
        agree_rounds = u64::from(agreement);
        // Agreed by construction: every rank has a snapshot at the agreed
        // iteration, saved by this loop for the same `n` (its problem id
        // holds `n`), so every rank resumes, or none does.
        if let Some(state) = snapshot
            && let [rs_saved] = state.scalars[..]
            && let [xs, rss, ps] = &state.vectors[..]
            && xs.len() == n
            && rss.len() == n
            && ps.len() == n
        {
            x = Array1::from(xs.clone());
            res = Array1::from(rss.clone());
            p = Array1::from(ps.clone());
            rs = rs_saved;
            iterations = state.iteration;
            resumed_from = state.iteration;
        }
    }
    // Votes: [converged, breakdown (pᵀA p ≤ 0), checkpoint not written,
    // at max_iter].
    let ballot = |rs: f64, iterations: usize| {
        [
            f64::from(u8::from(rs.sqrt() <= options.tol * b_norm)),
            0.0,
            0.0,
            f64::from(u8::from(iterations >= options.max_iter)),
        ]
    };
    let mut vote = ballot(rs, iterations);
    loop {
        let (q, votes) = assemble(comm, &a_rows.dot(&p).to_vec(), vote)?;
        let majority = |v: usize| 2 * v > size;
        if votes[2] > 0 {
            return Err(LinalgError::InvalidArgument {
                ranks: (0..size).collect(),
                detail: format!(
                    "{} rank(s) could not write their checkpoint at iteration {iterations}",
                    votes[2]
                ),
            });
        }
        if majority(votes[1]) {
            return Err(LinalgError::InvalidArgument {
                ranks: (0..size).collect(),
                detail: format!("A is not positive definite (pᵀA p ≤ 0 at iteration {iterations})"),
            });
        }
        if majority(votes[0]) {
            break;
        }
        if at_limit(
            (rank, size),
            vote[3] > 0.5,
            (votes[3], size),
            "max_iter",
            |flags| {
                reduce_checked(comm, Ballot::ok(), flags, "the iteration limits")
                    .map(|limits| (limits.data, (0..size).collect()))
            },
        )? {
            return Err(LinalgError::NotConverged {
                iterations,
                residual: rs.sqrt() / b_norm.max(f64::MIN_POSITIVE),
            });
        }
        let q = Array1::from(q);
        let pq = p.dot(&q);
        // Also catches NaN: a system that is not positive definite.
        if pq.is_nan() || pq <= 0.0 {
            vote = [0.0, 1.0, 0.0, vote[3]];
            continue;
        }
        let alpha = rs / pq;
        x.scaled_add(alpha, &p);
        res.scaled_add(-alpha, &q);
        let rs_new = res.dot(&res);
        p = &res + &(&p * (rs_new / rs));
        rs = rs_new;
        iterations += 1;
        vote = ballot(rs, iterations);
        if let (Some(store), Some(problem)) = (checkpoints, &problem)
            && store.is_due(iterations)
        {
            let state = Snapshot {
                iteration: iterations,
                scalars: vec![rs],
                vectors: vec![x.to_vec(), res.to_vec(), p.to_vec()],
            };
            if store.save(rank, &state, problem).is_err() {
                vote[2] = 1.0;
            }
        }
    }
    Ok(Cg {
        x,
        iterations,
        residual_norm: rs.sqrt(),
        rounds: rounds + agree_rounds,
        resumed_from,
    })
}
