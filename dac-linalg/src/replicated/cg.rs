//! Conjugate gradient on a [`Replicated`] job, with the holders' hashes
//! compared every `k` iterations (see [`cg_replicated`]).

use std::collections::BTreeMap;

use dac_core::Communicator;
use ndarray::{Array1, Array2};

use super::digest::{bits_chunks, decode_bits};
use super::ops::PartitionRows;
use super::{Check, Replicated};
use crate::cg::{Cg, CgOptions};
use crate::check::{Ballot, Tally, Verdict, at_limit};
use crate::error::{LinalgError, Result};

/// CG's state between two iterations: `x`, the residual `r` and the search
/// direction `p`, each `n` long, after `iteration` iterations.
#[derive(Clone, Debug)]
struct State {
    iteration: usize,
    x: Array1<f64>,
    r: Array1<f64>,
    p: Array1<f64>,
}

impl State {
    /// `rᵀr`.
    fn rs(&self) -> f64 {
        self.r.dot(&self.r)
    }
}

/// This rank's partitions of `A` and `b`, and where their rows sit.
struct System<'a> {
    parts: &'a BTreeMap<usize, (Array2<f64>, Array1<f64>)>,
    layout: PartitionRows,
}

impl System<'_> {
    /// Sums the partitions' `rows(A_p, b_p)` into a full vector, with this
    /// rank's ballot; fails on a lost partition. Returns the sum, the
    /// ballots' tally and the rounds.
    fn assemble<C: Communicator>(
        &self,
        comm: &mut C,
        job: &mut Replicated,
        (check, ballot): (Check, Ballot),
        rows: impl Fn(&Array2<f64>, &Array1<f64>) -> Array1<f64>,
    ) -> Result<(Array1<f64>, Tally, u64)> {
        let contributions = self
            .parts
            .iter()
            .map(|(&p, (a, b))| (p, self.layout.place(p, &rows(a, b).to_vec())))
            .collect();
        let n = self.layout.total();
        let (sum, votes) = job.reduce(comm, n, &contributions, check, ballot)?;
        if let Some(&partition) = sum.lost.first() {
            return Err(LinalgError::PartitionLost { partition });
        }
        Ok((Array1::from(sum.value), votes, sum.rounds))
    }
}

impl Replicated {
    /// Makes `state` the same, bit for bit, on every rank: the lowest rank
    /// that is neither departed nor excluded publishes it, and every rank
    /// adopts its bits. Returns the consensus rounds.
    fn adopt_published<C: Communicator>(&mut self, comm: &mut C, state: &mut [f64]) -> Result<u64> {
        let me = comm.rank();
        let mut rounds = 0;
        while let Some(publisher) =
            (0..comm.size()).find(|r| !self.departed.contains(r) && !self.excluded.contains(r))
        {
            let payload = if publisher == me {
                bits_chunks(state)
            } else {
                vec![0.0; 4 * state.len()]
            };
            let red = self.sum(comm, &payload)?;
            rounds += u64::from(red.rounds);
            if red.contributors.contains(publisher) {
                state.copy_from_slice(&decode_bits(&red.value)?);
                break;
            }
        }
        Ok(rounds)
    }
}

/// [`crate::cg`] for a [`Replicated`] job: solves `A x = b` for a symmetric
/// positive definite `A` (`n × n`) whose rows, and the matching entries of
/// `b`, are cut into the job's partitions, in partition order. This rank
/// passes the partitions it holds as `partition id → (A_p, b_p)`.
///
/// Every iteration's `A p` is summed with each partition contributed
/// exactly once, so a holder that departs, before or during the solve,
/// changes nothing but the rounds taken. The row counts and `b` are
/// checked at the job's checkpoints like any deterministic contribution.
/// Every `k`-th iteration (`k` =
/// [`ReplicatedOptions::checkpoint_every`](super::ReplicatedOptions::checkpoint_every);
/// 0: never) the iterate is first made bit-identical on every rank, and the
/// holders' hashes of `A_p p` are compared; a minority holder is excluded
/// and the iterations since the previous check are done again (below).
/// The solution is published too, so every rank returns the same bits.
///
/// # Checks every `k` iterations
///
/// **Why the iterate is published first.** A CG contribution, `A_p p`,
/// depends on the search direction `p`, a consensus result whose copies
/// differ between ranks in their last bits. Honest holders would then hash
/// different bytes. So at every `k`-th iteration one rank (the lowest one
/// that is neither departed nor excluded) publishes its state `x | r | p`
/// bit for bit: each `f64` as four 16-bit integers, which the others add
/// zeros to, and which every rank reads back by rounding (with an integer
/// check), as the hashes travel. Every rank adopts those bits, so every holder
/// computes its contribution from identical inputs, and that iteration's
/// reduction compares the holders' hashes. If the publisher departs before
/// its input is counted, the reduction's contributors say so and the next
/// rank publishes; every rank decides this from the same reduction result.
///
/// Publishing costs one reduction of `12 n` small integers per checkpoint
/// and needs no extra trust in the publisher's *work*: its iterate is a
/// consensus result like any other, and the contributions computed from it
/// are checked. (A rank that lies about a consensus result is outside what
/// hashing can catch, as the [`crate::replicated`] docs say.) Rounding the
/// iterate to fewer bits on every rank instead would need no publisher,
/// but copies that straddle a rounding boundary would still differ, so
/// honest holders would sometimes disagree.
///
/// **Rolling back.** A check at iteration `j` only sees the contributions
/// of iteration `j`. When it finds a holder that disagrees with the
/// majority, that holder is excluded, and the iterations since the last
/// check that passed (at `i < j`), which may have used its contributions,
/// are done again from the state published at `i`. A holder that is wrong
/// only at unchecked iterations is not caught; a smaller `k` narrows that
/// window at the price of two more reductions per check.
///
/// # Errors
/// As [`crate::cg`], plus [`LinalgError::PartitionLost`] (even with
/// [`allow_degraded`](super::ReplicatedOptions::allow_degraded): a system
/// without some of its rows has no solution to give) and
/// [`LinalgError::ReplicaMismatch`]; [`LinalgError::Shape`] also for
/// partitions that are not this rank's, an `A_p` that is not `n` wide, or
/// an `n` that is not the partitions' rows in all (even on a rank that
/// holds no partition). A bad `tol`, a bad shape or a different
/// `max_iter` on one rank fails every rank alike, naming that rank.
pub fn cg_replicated<C: Communicator>(
    comm: &mut C,
    job: &mut Replicated,
    n: usize,
    parts: &BTreeMap<usize, (Array2<f64>, Array1<f64>)>,
    options: &CgOptions,
) -> Result<Cg> {
    let (rank, size) = (comm.rank(), comm.size());
    // Found here, reported in the first reduction, so that every rank
    // fails alike even if only this one found a problem.
    let mut verdict = Verdict::ok();
    if !(options.tol > 0.0 && options.tol < 1.0) {
        verdict.argument(|| format!("tol = {} must lie in (0, 1)", options.tol));
    }
    if let Some((p, (a, b))) = parts
        .iter()
        .find(|(_, (a, b))| a.ncols() != n || b.len() != a.nrows())
    {
        verdict.shape(|| {
            format!(
                "rank {rank}: partition {p} has A {:?} and b of {} entries, expected {n} columns",
                a.dim(),
                b.len()
            )
        });
    }
    let rows = parts.iter().map(|(&p, (a, _))| (p, a.nrows())).collect();
    let layout = PartitionRows::share(comm, job, &rows, verdict)?;
    let mut rounds = layout.rounds;
    let total = layout.total();
    // `total` is shared but `n` is this rank's: a rank that holds no
    // partition has nothing to check it against but `total`, so it reports
    // a mismatch in the next reduction, as the others do theirs.
    let mut square = Verdict::ok();
    if total != n {
        square.shape(|| {
            format!("rank {rank}: A must be square: the partitions hold {total} rows but n = {n}")
        });
    }
    let system = System { parts, layout };
    let shape = (Check::WhenDue, Ballot::new(square));
    let (b, _, more) = system.assemble(comm, job, shape, |_, b| b.clone())?;
    rounds += more;
    // Every rank's `n` is `total` now.
    if n == 0 {
        return Err(LinalgError::Empty {
            what: "a system of size 0",
        });
    }
    let b_norm = b.dot(&b).sqrt();
    // Votes: [converged, breakdown (pᵀA p ≤ 0), at max_iter].
    let vote = |s: &State| {
        [
            f64::from(u8::from(s.rs().sqrt() <= options.tol * b_norm)),
            0.0,
            f64::from(u8::from(s.iteration >= options.max_iter)),
        ]
    };
    let mut state = State {
        iteration: 0,
        x: Array1::zeros(n),
        r: b.clone(),
        p: b,
    };
    // The state at the last check that passed.
    let mut verified = state.clone();
    let every = usize::try_from(job.options().checkpoint_every).unwrap_or(usize::MAX);
    let mut mine = vote(&state);
    loop {
        let checkpoint = every > 0 && state.iteration.is_multiple_of(every);
        let check = if checkpoint {
            let mut flat: Vec<f64> = [&state.x, &state.r, &state.p]
                .into_iter()
                .flatten()
                .copied()
                .collect();
            rounds += job.adopt_published(comm, &mut flat)?;
            state.x = Array1::from(flat[..n].to_vec());
            state.r = Array1::from(flat[n..2 * n].to_vec());
            state.p = Array1::from(flat[2 * n..].to_vec());
            mine[0] = vote(&state)[0];
            Check::Now
        } else {
            Check::No
        };
        let excluded = job.excluded.len();
        let direction = state.p.clone();
        let step = (check, Ballot::ok().with_votes(&mine));
        let (q, votes, more) = system.assemble(comm, job, step, |a, _| a.dot(&direction))?;
        rounds += more;
        if checkpoint {
            if job.excluded.len() > excluded && verified.iteration < state.iteration {
                state = verified.clone();
                mine = vote(&state);
                continue;
            }
            verified = state.clone();
        }
        let voters = votes.ranks.len();
        let count = |v: f64| v.round().max(0.0) as usize;
        let majority = |v: f64| 2 * count(v) > voters;
        if majority(votes.votes[1]) {
            return Err(LinalgError::InvalidArgument {
                ranks: (0..size).collect(),
                detail: format!(
                    "A is not positive definite (pᵀA p ≤ 0 at iteration {})",
                    state.iteration
                ),
            });
        }
        if majority(votes.votes[0]) {
            if !checkpoint {
                // Every rank returns the same bits.
                let mut x = state.x.to_vec();
                rounds += job.adopt_published(comm, &mut x)?;
                state.x = Array1::from(x);
            }
            break;
        }
        if at_limit(
            (rank, size),
            mine[2] > 0.5,
            (count(votes.votes[2]), voters),
            "max_iter",
            |flags| job.sum_ballot(comm, flags),
        )? {
            return Err(LinalgError::NotConverged {
                iterations: state.iteration,
                residual: state.rs().sqrt() / b_norm.max(f64::MIN_POSITIVE),
            });
        }
        let pq = state.p.dot(&q);
        // Also catches NaN: a system that is not positive definite.
        if pq.is_nan() || pq <= 0.0 {
            mine = [0.0, 1.0, mine[2]];
            continue;
        }
        let rs = state.rs();
        let alpha = rs / pq;
        state.x.scaled_add(alpha, &state.p);
        state.r.scaled_add(-alpha, &q);
        let beta = state.rs() / rs;
        state.p = &state.r + &(&state.p * beta);
        state.iteration += 1;
        mine = vote(&state);
    }
    Ok(Cg {
        residual_norm: state.rs().sqrt(),
        x: state.x,
        iterations: state.iteration,
        rounds,
        resumed_from: 0,
    })
}
