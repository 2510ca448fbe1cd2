//! Replicated jobs: every partition of the data held by several ranks,
//! contributed exactly once, and checked by its holders.
//!
//! A job's data is cut into `P` partitions and a [`Placement`] gives each
//! one `r` holders. Every holder computes its partitions' contributions,
//! and for each partition the first live holder puts its contribution into
//! the reduction. When that holder departs before or during the reduction,
//! the reduction's `contributors` show that its data is missing. A
//! *correction* reduction then follows: the next live holder of each
//! missing partition contributes it, and every other rank contributes
//! zeros. The sum is again the full, exact sum, because a departed
//! member's flows carry exactly its own input. If every holder of a
//! partition is gone, the call fails with [`LinalgError::PartitionLost`]
//! on every rank, or, with [`ReplicatedOptions::allow_degraded`], it
//! returns the sum over the surviving partitions and lists the lost ones.
//!
//! **Healing.** [`Replicated::heal`], called between operations, restores
//! the replication factor: each partition of a departed (or excluded)
//! holder is copied, bit for bit and checked against its source's hash,
//! to the live rank that holds the fewest partitions, which holds it from
//! then on ([`ReplicaEvent::Restored`]). With two holders per partition a
//! job then survives any sequence of single failures, each after the
//! previous heal: a partition is lost only when every holder dies within
//! one healing window.
//!
//! **Checkpoint hashing.** At a checkpoint (every reduction by default),
//! one reduction comes first. In it every holder publishes, for each
//! partition it holds, `SHA-256(partition ‖ contribution bytes ‖ holder ‖
//! operation)`, truncated to 128 bits. The hash is carried exactly, as
//! sixteen-bit integers summed with zeros. Every holder then recomputes the
//! hash the other holders should have published from *its own*
//! contribution, and reports any mismatch in the data reduction that
//! follows.
//! - With two holders, a mismatch fails the call with
//!   [`LinalgError::ReplicaMismatch`] on every rank: nobody can tell which
//!   of the two is right.
//! - With three or more, the largest group of holders that agree with each
//!   other, if it is a majority, wins. The others are excluded from the
//!   job: they contribute nothing from then on, and a data reduction they
//!   contributed to is redone without them.
//!
//! A contribution must be a deterministic function of the partition, so
//! that honest holders produce the same bytes. A contribution that depends
//! on a consensus result (an iterate) is not: ranks' copies of a consensus
//! value differ in their last bits. Those reductions use
//! [`Replicated::allreduce_sum`] with `check = false`; they are still
//! contributed exactly once. [`cg_replicated`] checks them anyway, every
//! `k` iterations: it first makes the iterate bit-identical on every rank
//! (one rank publishes its bits), then compares the hashes of the
//! contributions computed from it.
//!
//! **The operations.** [`dot_replicated`], [`matvec_rows_replicated`],
//! [`rmatvec_replicated`], [`gram_replicated`],
//! [`gaussian_linear_replicated`], [`lstsq_replicated`] and
//! [`cg_replicated`]
//! take the job and the partitions this rank holds, keyed by partition id.
//!
//! Every decision (who contributes, who departed, who is excluded) is
//! derived from the results of the reductions, which every rank shares, so
//! all ranks take the same steps. Exclusion only stops an excluded rank's
//! *contributions*; a rank that also corrupts the consensus protocol itself
//! is outside what averaging consensus can tolerate.

mod bayes;
mod cg;
mod digest;
mod heal;
mod lstsq;
mod ops;
mod placement;

use std::collections::{BTreeMap, BTreeSet};

use dac_core::{Communicator, Error, Reduction};

pub use bayes::gaussian_linear_replicated;
pub use cg::cg_replicated;
pub use heal::PartitionData;
pub use lstsq::lstsq_replicated;
pub use ops::{dot_replicated, gram_replicated, matvec_rows_replicated, rmatvec_replicated};
pub use placement::{Placement, ReplicationPlan, replication_factor};

use crate::check::{Ballot, FLAG_BLOCKS, Tally, Verdict};
use crate::error::{LinalgError, Result};
use digest::{CHUNKS, decode_flag, decode_hash, hash_chunks, hash_u16};

/// Options of a [`Replicated`] job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicatedOptions {
    /// Exchange contribution hashes in the job's checked reductions whose
    /// number (counting every reduction of the job from 0) is a multiple
    /// of `k` (1, the default: every one; 0: never). In
    /// [`cg_replicated`]: every `k`-th iteration.
    pub checkpoint_every: u64,
    /// When every holder of a partition is gone, return the sum over the
    /// surviving partitions and list the lost ones in
    /// [`PartitionSum::lost`], instead of failing with
    /// [`LinalgError::PartitionLost`] (default `false`).
    pub allow_degraded: bool,
}

impl Default for ReplicatedOptions {
    fn default() -> ReplicatedOptions {
        ReplicatedOptions {
            checkpoint_every: 1,
            allow_degraded: false,
        }
    }
}

/// Something a replicated job noticed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaEvent {
    /// The holders of `partition` disagreed; `ranks` are the minority
    /// (with three or more holders) or both holders (with two).
    ReplicaMismatch {
        /// The partition.
        partition: usize,
        /// The ranks whose contribution differs from the majority's.
        ranks: Vec<usize>,
    },
    /// `rank` no longer contributes to this job.
    Excluded {
        /// The excluded rank.
        rank: usize,
    },
    /// Every holder of `partition` is gone; the job goes on without it
    /// ([`ReplicatedOptions::allow_degraded`]).
    Lost {
        /// The partition.
        partition: usize,
    },
    /// `partition`'s contributor was missing, and `rank`, a standby holder,
    /// contributed it instead.
    TookOver {
        /// The partition.
        partition: usize,
        /// The standby that contributed it.
        rank: usize,
    },
    /// [`Replicated::heal`] copied `partition` to `holder`, which holds it
    /// from now on.
    Restored {
        /// The partition.
        partition: usize,
        /// Its new holder.
        holder: usize,
    },
    /// [`Replicated::heal`] moved `partition` from `from` to `to`, a rank
    /// that joined the job with nothing to hold (its fair share).
    Moved {
        /// The partition.
        partition: usize,
        /// The holder that gave it up.
        from: usize,
        /// Its new holder.
        to: usize,
    },
}

/// The result of [`Replicated::allreduce_sum`], the same on every rank.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionSum {
    /// `Σ_p contribution(p)` over every partition (over the surviving ones
    /// when [`PartitionSum::lost`] is not empty).
    pub value: Vec<f64>,
    /// Partitions whose every holder is gone (only with
    /// [`ReplicatedOptions::allow_degraded`]; otherwise that is an error).
    pub lost: Vec<usize>,
    /// Reductions the call took (more than one at a checkpoint, after a
    /// departure or after an exclusion).
    pub reductions: usize,
    /// Consensus rounds over all of them.
    pub rounds: u64,
}

/// When a reduction compares its holders' hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Never: the contributions depend on a consensus result.
    No,
    /// At the job's checkpoints ([`ReplicatedOptions::checkpoint_every`]).
    WhenDue,
    /// This time, whatever the job's options (an iterative solver's own
    /// checkpoint, on inputs it made bit-identical first).
    Now,
}

/// Reductions a call took, and their consensus rounds.
#[derive(Debug, Default)]
struct Cost {
    reductions: usize,
    rounds: u64,
}

impl Cost {
    fn add(&mut self, red: &Reduction) {
        self.reductions += 1;
        self.rounds += u64::from(red.rounds);
    }
}

/// What a checkpoint's hash comparison found.
#[derive(Debug)]
struct Compared {
    /// By holder slot: the holder published a hash and is not excluded.
    present: Vec<bool>,
    /// This rank's reports, `r × r` per partition: `[j·r + k]` is 1 where
    /// this rank, holder `j`, found holder `k`'s hash wrong.
    mismatch_flags: Vec<f64>,
}

/// What a data reduction returned, taken apart.
#[derive(Debug)]
struct DataRound {
    reduction: Reduction,
    /// The ranks' ballots.
    tally: Tally,
    /// The summed mismatch reports.
    mismatches: Vec<f64>,
    /// The summed contributions.
    value: Vec<f64>,
}

/// A job whose data is cut into partitions held by several ranks each:
/// see the [module docs](self). Every rank builds the same one (the same
/// placement and options) and calls its methods in the same order.
#[derive(Clone, Debug)]
pub struct Replicated {
    /// The holders: the placement the job began with, plus the holders
    /// [`Replicated::heal`] added.
    placement: Placement,
    /// How many holders each partition began with (what healing restores).
    wanted: Vec<usize>,
    options: ReplicatedOptions,
    /// Checked reductions so far (the operation id in the hashes).
    op: u64,
    departed: BTreeSet<usize>,
    excluded: BTreeSet<usize>,
    lost: BTreeSet<usize>,
    events: Vec<ReplicaEvent>,
    /// The job grew past the placement's ranks at the last sync (the old
    /// rank count): the next heal gives the new ranks their fair share.
    grown: Option<usize>,
}

/// Where partition `p`'s holder slots start in the flat slot arrays.
fn slot_offsets(placement: &Placement) -> Vec<usize> {
    let mut offsets = Vec::with_capacity(placement.partitions() + 1);
    let mut at = 0;
    for p in 0..placement.partitions() {
        offsets.push(at);
        at += placement.holders(p).len();
    }
    offsets.push(at);
    offsets
}

impl Replicated {
    /// A job over `placement`.
    pub fn new(placement: Placement, options: ReplicatedOptions) -> Replicated {
        Replicated {
            wanted: (0..placement.partitions())
                .map(|p| placement.holders(p).len())
                .collect(),
            placement,
            options,
            op: 0,
            departed: BTreeSet::new(),
            excluded: BTreeSet::new(),
            lost: BTreeSet::new(),
            events: Vec::new(),
            grown: None,
        }
    }

    /// The placement: the one the job began with, plus the holders that
    /// [`Replicated::heal`] added.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// The options.
    pub fn options(&self) -> &ReplicatedOptions {
        &self.options
    }

    /// The ranks this job has seen depart, ascending.
    pub fn departed(&self) -> Vec<usize> {
        self.departed.iter().copied().collect()
    }

    /// The ranks excluded after a replica mismatch, ascending.
    pub fn excluded(&self) -> Vec<usize> {
        self.excluded.iter().copied().collect()
    }

    /// The partitions lost so far (only with
    /// [`ReplicatedOptions::allow_degraded`]), ascending.
    pub fn lost(&self) -> Vec<usize> {
        self.lost.iter().copied().collect()
    }

    /// The events since the last call (and forgets them).
    pub fn take_events(&mut self) -> Vec<ReplicaEvent> {
        std::mem::take(&mut self.events)
    }

    /// The partition whose contribution `rank` makes next, if it holds
    /// one: the first holder of each partition that is neither departed
    /// nor excluded contributes it.
    fn contributor(&self, p: usize, skip: &BTreeSet<usize>) -> Option<usize> {
        self.placement
            .holders(p)
            .iter()
            .copied()
            .find(|h| !self.departed.contains(h) && !self.excluded.contains(h) && !skip.contains(h))
    }

    /// Sums `contributions[p]` over all the job's partitions, each one
    /// exactly once, on every rank.
    ///
    /// This rank passes the contributions of exactly the partitions it
    /// holds ([`Placement::held_by`]), each `len` values long. A rank that
    /// holds none passes an empty map. With `check` (and a checkpoint due,
    /// see [`ReplicatedOptions::checkpoint_every`]) the holders' hashes are
    /// compared first. Pass `check = false` for contributions that depend
    /// on a consensus result (they differ in their last bits between
    /// ranks).
    ///
    /// # Errors
    /// - [`LinalgError::Shape`]: the wrong partitions, or the wrong lengths.
    /// - [`LinalgError::NonFinite`].
    /// - [`LinalgError::InvalidArgument`]: a placement for another number of
    ///   ranks (found in the reduction, so the ranks with the right one fail
    ///   too, naming the ranks with the wrong one).
    /// - [`LinalgError::PartitionLost`].
    /// - [`LinalgError::ReplicaMismatch`].
    /// - The reduction's error.
    ///
    /// All of them on every rank alike.
    pub fn allreduce_sum<C: Communicator>(
        &mut self,
        comm: &mut C,
        len: usize,
        contributions: &BTreeMap<usize, Vec<f64>>,
        check: bool,
    ) -> Result<PartitionSum> {
        let check = if check { Check::WhenDue } else { Check::No };
        self.reduce(comm, len, contributions, check, Ballot::ok())
            .map(|(sum, _)| sum)
    }

    /// [`Replicated::allreduce_sum`] with the caller's [`Ballot`]: its
    /// verdict on this rank's input (its partitions, its options) fails
    /// the call on every rank, and its values and votes come back summed
    /// over the live ranks of the data reduction.
    pub(crate) fn reduce<C: Communicator>(
        &mut self,
        comm: &mut C,
        len: usize,
        contributions: &BTreeMap<usize, Vec<f64>>,
        check: Check,
        mut ballot: Ballot,
    ) -> Result<(PartitionSum, Tally)> {
        let (size, me) = (comm.size(), comm.rank());
        if self.placement.ranks() == size {
            self.validate(me, len, contributions, ballot.verdict_mut());
        } else {
            // Its partitions are not worth checking; reported with the
            // others' flags, so that no rank waits for this one.
            ballot.verdict_mut().argument(|| {
                format!(
                    "the placement is for {} ranks but the job has {size}",
                    self.placement.ranks()
                )
            });
        }
        let op = self.op;
        self.op += 1;
        let every = self.options.checkpoint_every;
        let checkpoint = match check {
            Check::No => false,
            Check::WhenDue => every > 0 && op.is_multiple_of(every),
            Check::Now => true,
        };
        let mut cost = Cost::default();
        let compared = if checkpoint {
            Some(self.compare_hashes(comm, contributions, &ballot, op, &mut cost)?)
        } else {
            None
        };
        // Holders whose hash was missing cannot contribute this time.
        let mut skip: BTreeSet<usize> = BTreeSet::new();
        if let Some(compared) = &compared {
            // Holder slots run partition by partition (`slot_offsets`).
            let holders = (0..self.placement.partitions()).flat_map(|p| self.placement.holders(p));
            for (&h, &present) in holders.zip(&compared.present) {
                if !present {
                    skip.insert(h);
                }
            }
        }
        // The flags went with the hashes, at a checkpoint.
        let mut flags_done = compared.is_some();
        let mut mismatch_flags = compared
            .as_ref()
            .map(|c| c.mismatch_flags.clone())
            .unwrap_or_default();
        loop {
            let assigned: Vec<Option<usize>> = (0..self.placement.partitions())
                .map(|p| self.contributor(p, &skip))
                .collect();
            let round = self.data_round(
                comm,
                (len, contributions),
                &assigned,
                (&ballot, flags_done),
                &mismatch_flags,
                &mut cost,
            )?;
            let red = &round.reduction;
            if let Some(compared) = &compared
                && !round.mismatches.is_empty()
                && self.settle_mismatches(&round.mismatches, &compared.present, red)?
            {
                // A contributor of this reduction was excluded: its data
                // is suspect; do it again without it.
                let tainted = assigned
                    .iter()
                    .any(|who| who.is_some_and(|w| self.excluded.contains(&w)));
                if tainted {
                    mismatch_flags.clear();
                    flags_done = true;
                    continue;
                }
            }
            let DataRound {
                reduction: red,
                tally,
                mut value,
                ..
            } = round;
            let lost = self.correct(
                comm,
                contributions,
                (&assigned, &red),
                (ballot.is_ok(), &skip),
                &mut value,
                &mut cost,
            )?;
            let lost = self.note_lost(lost)?;
            return Ok((
                PartitionSum {
                    value,
                    lost,
                    reductions: cost.reductions,
                    rounds: cost.rounds,
                },
                tally,
            ));
        }
    }

    /// The checkpoint's first reduction: the flags, then every holder's
    /// hash of every partition it holds. Each holder then checks the
    /// others' hashes against its own contribution; what it found is
    /// reported in the data reduction that follows.
    fn compare_hashes<C: Communicator>(
        &mut self,
        comm: &mut C,
        contributions: &BTreeMap<usize, Vec<f64>>,
        ballot: &Ballot,
        op: u64,
        cost: &mut Cost,
    ) -> Result<Compared> {
        let (size, me) = (comm.size(), comm.rank());
        let offsets = slot_offsets(&self.placement);
        let slots = offsets[self.placement.partitions()];
        let head = FLAG_BLOCKS * size;
        let mut payload = ballot.flags(me, size);
        payload.resize(head + slots * CHUNKS, 0.0);
        if ballot.is_ok() && !self.excluded.contains(&me) {
            for (&p, c) in contributions {
                if let Some(k) = self.placement.holders(p).iter().position(|&h| h == me) {
                    let at = head + (offsets[p] + k) * CHUNKS;
                    payload[at..at + CHUNKS].copy_from_slice(&hash_chunks(p, c, me, op));
                }
            }
        }
        let red = self.sum(comm, &payload)?;
        cost.add(&red);
        fail_on_flags(ballot, &red.value[..head])?;
        let digests: Vec<Option<[u16; CHUNKS]>> = (0..slots)
            .map(|s| decode_hash(&red.value[head + s * CHUNKS..head + (s + 1) * CHUNKS]))
            .collect::<Result<_>>()?;
        let mut present = vec![true; slots];
        for p in 0..self.placement.partitions() {
            for (k, &h) in self.placement.holders(p).iter().enumerate() {
                present[offsets[p] + k] = red.contributors.contains(h)
                    && !self.excluded.contains(&h)
                    && digests[offsets[p] + k].is_some();
            }
        }
        let mut mismatch_flags = vec![0.0; self.mismatch_len()];
        let mut at = 0;
        for p in 0..self.placement.partitions() {
            let holders = self.placement.holders(p);
            let r = holders.len();
            if let (Some(j), Some(c)) =
                (holders.iter().position(|&h| h == me), contributions.get(&p))
            {
                for (k, &h) in holders.iter().enumerate() {
                    let (Some(theirs), true) = (digests[offsets[p] + k], present[offsets[p] + k])
                    else {
                        continue;
                    };
                    if k != j && hash_u16(p, c, h, op) != theirs {
                        mismatch_flags[at + j * r + k] = 1.0;
                    }
                }
            }
            at += r * r;
        }
        Ok(Compared {
            present,
            mismatch_flags,
        })
    }

    /// The data reduction: `[flags (unless done) | mismatch flags | ballot
    /// body | data]`, where each partition's `assigned` holder puts in its
    /// contribution (`len` values; zeros on a bad verdict). Fails on every
    /// rank if some rank's verdict is bad.
    fn data_round<C: Communicator>(
        &mut self,
        comm: &mut C,
        (len, contributions): (usize, &BTreeMap<usize, Vec<f64>>),
        assigned: &[Option<usize>],
        (ballot, flags_done): (&Ballot, bool),
        mismatch_flags: &[f64],
        cost: &mut Cost,
    ) -> Result<DataRound> {
        let (size, me) = (comm.size(), comm.rank());
        let mut payload = if flags_done {
            Vec::new()
        } else {
            ballot.flags(me, size)
        };
        let flags = payload.len();
        payload.extend_from_slice(mismatch_flags);
        payload.extend(ballot.body(me, size));
        let head = payload.len();
        payload.resize(head + len, 0.0);
        if ballot.is_ok() {
            let data = &mut payload[head..];
            for (p, who) in assigned.iter().enumerate() {
                if *who == Some(me)
                    && let Some(c) = contributions.get(&p)
                {
                    data.iter_mut().zip(c).for_each(|(d, x)| *d += x);
                }
            }
        }
        let red = self.sum(comm, &payload)?;
        cost.add(&red);
        if !flags_done {
            fail_on_flags(ballot, &red.value[..flags])?;
        }
        let body = flags + mismatch_flags.len();
        let ranks = (0..size)
            .filter(|&r| red.contributors.contains(r))
            .collect();
        Ok(DataRound {
            tally: ballot.read(&red.value[body..head], ranks),
            mismatches: red.value[flags..body].to_vec(),
            value: red.value[head..].to_vec(),
            reduction: red,
        })
    }

    /// Records the partitions left without a holder; fails unless the job
    /// allows that. Returns them, ascending.
    fn note_lost(&mut self, mut lost: Vec<usize>) -> Result<Vec<usize>> {
        lost.sort_unstable();
        if let Some(&partition) = lost.first()
            && !self.options.allow_degraded
        {
            return Err(LinalgError::PartitionLost { partition });
        }
        for &partition in &lost {
            if self.lost.insert(partition) {
                self.events.push(ReplicaEvent::Lost { partition });
            }
        }
        Ok(lost)
    }

    /// Correction reductions for the partitions whose `assigned`
    /// contributor's data did not make it into `red`: the next live holder
    /// contributes each, until none is missing or a partition has no live
    /// holder left. Adds the corrections to `value`; returns the partitions
    /// left without a holder.
    fn correct<C: Communicator>(
        &mut self,
        comm: &mut C,
        contributions: &BTreeMap<usize, Vec<f64>>,
        (assigned, red): (&[Option<usize>], &Reduction),
        (ok, skip): (bool, &BTreeSet<usize>),
        value: &mut [f64],
        cost: &mut Cost,
    ) -> Result<Vec<usize>> {
        let mut missing: Vec<usize> = assigned
            .iter()
            .enumerate()
            .filter(|(_, who)| who.is_some_and(|w| !red.contributors.contains(w)))
            .map(|(p, _)| p)
            .collect();
        let mut lost: Vec<usize> = assigned
            .iter()
            .enumerate()
            .filter(|(_, who)| who.is_none())
            .map(|(p, _)| p)
            .collect();
        let me = comm.rank();
        let len = value.len();
        while !missing.is_empty() {
            let mut data = vec![0.0; len];
            let mut took_over = Vec::new();
            for &p in &missing {
                match self.contributor(p, skip) {
                    None => lost.push(p),
                    Some(who) => {
                        self.events.push(ReplicaEvent::TookOver {
                            partition: p,
                            rank: who,
                        });
                        if who == me
                            && ok
                            && let Some(c) = contributions.get(&p)
                        {
                            data.iter_mut().zip(c).for_each(|(d, x)| *d += x);
                        }
                        took_over.push((p, who));
                    }
                }
            }
            if took_over.is_empty() {
                break;
            }
            let red = self.sum(comm, &data)?;
            cost.add(&red);
            value.iter_mut().zip(&red.value).for_each(|(t, x)| *t += x);
            missing = took_over
                .into_iter()
                .filter(|(_, who)| !red.contributors.contains(*who))
                .map(|(p, _)| p)
                .collect();
        }
        Ok(lost)
    }

    /// One reduction of a per-rank `payload` outside any partition (a
    /// decision's flags, on an error path): the sum over the ranks that
    /// took part, and which ones did.
    pub(crate) fn sum_ballot<C: Communicator>(
        &mut self,
        comm: &mut C,
        payload: &[f64],
    ) -> Result<(Vec<f64>, Vec<usize>)> {
        let red = self.sum(comm, payload)?;
        let ranks = (0..comm.size())
            .filter(|&r| red.contributors.contains(r))
            .collect();
        Ok((red.value, ranks))
    }

    /// One `allreduce_sum`, noting who departed.
    fn sum<C: Communicator>(&mut self, comm: &mut C, payload: &[f64]) -> Result<Reduction> {
        let red = comm.allreduce_sum(payload).map_err(|e| match e {
            Error::DimensionMismatch {
                rank, expected, found,
            } => LinalgError::Shape {
                reason: format!(
                    "the replicated reduction differs between ranks (rank {rank} sent {found} values, other ranks {expected}): every rank must pass the same len and placement"
                ),
            },
            other => LinalgError::Consensus(other),
        })?;
        for r in 0..comm.size() {
            if !red.contributors.contains(r) {
                self.departed.insert(r);
            }
        }
        Ok(red)
    }

    /// Records this rank's own problems with its contributions.
    fn validate(
        &self,
        me: usize,
        len: usize,
        contributions: &BTreeMap<usize, Vec<f64>>,
        verdict: &mut Verdict,
    ) {
        let held = self.placement.held_by(me);
        let passed: Vec<usize> = contributions.keys().copied().collect();
        if passed != held {
            verdict.shape(|| format!("rank {me} holds partitions {held:?} but passed {passed:?}"));
        } else if let Some((p, c)) = contributions.iter().find(|(_, c)| c.len() != len) {
            verdict.shape(|| {
                format!(
                    "rank {me}: partition {p}'s contribution has {} values, not {len}",
                    c.len()
                )
            });
        }
        if let Some((p, i, x)) = contributions.iter().find_map(|(p, c)| {
            c.iter()
                .enumerate()
                .find(|(_, x)| !x.is_finite())
                .map(|(i, x)| (p, i, x))
        }) {
            verdict.not_finite(|| format!("rank {me}: partition {p}'s contribution[{i}] = {x}"));
        }
    }

    fn mismatch_len(&self) -> usize {
        (0..self.placement.partitions())
            .map(|p| self.placement.holders(p).len().pow(2))
            .sum()
    }

    /// Reads the holders' mismatch reports. Returns whether anyone was
    /// excluded; fails when a partition has no majority.
    fn settle_mismatches(
        &mut self,
        flags: &[f64],
        present: &[bool],
        red: &Reduction,
    ) -> Result<bool> {
        let offsets = slot_offsets(&self.placement);
        let before = self.excluded.clone();
        let mut excluded_now = false;
        let mut at = 0;
        for p in 0..self.placement.partitions() {
            let holders = self.placement.holders(p).to_vec();
            let r = holders.len();
            // Holders that published a hash and are not excluded.
            let live: Vec<usize> = (0..r)
                .filter(|&k| present[offsets[p] + k] && !before.contains(&holders[k]))
                .collect();
            let mut disagree = vec![vec![false; r]; r];
            let mut any = false;
            for &j in &live {
                // Only reports of holders whose data reduction went through.
                if !red.contributors.contains(holders[j]) {
                    continue;
                }
                for &k in &live {
                    if decode_flag(flags[at + j * r + k])? {
                        disagree[j][k] = true;
                        disagree[k][j] = true;
                        any = true;
                    }
                }
            }
            at += r * r;
            if !any {
                continue;
            }
            // The largest group that agrees pairwise, if it is a majority.
            let mut best: Vec<usize> = Vec::new();
            for &j in &live {
                let group: Vec<usize> = live
                    .iter()
                    .copied()
                    .filter(|&k| k == j || !disagree[j][k])
                    .collect();
                let clique = group
                    .iter()
                    .all(|&a| group.iter().all(|&b| a == b || !disagree[a][b]));
                if clique && group.len() > best.len() {
                    best = group;
                }
            }
            let minority: Vec<usize> = live
                .iter()
                .filter(|k| !best.contains(k))
                .map(|&k| holders[k])
                .collect();
            if 2 * best.len() <= live.len() || r < 3 {
                let ranks: Vec<usize> = live.iter().map(|&k| holders[k]).collect();
                self.events.push(ReplicaEvent::ReplicaMismatch {
                    partition: p,
                    ranks: ranks.clone(),
                });
                return Err(LinalgError::ReplicaMismatch {
                    partition: p,
                    ranks,
                });
            }
            self.events.push(ReplicaEvent::ReplicaMismatch {
                partition: p,
                ranks: minority.clone(),
            });
            for rank in minority {
                if self.excluded.insert(rank) {
                    self.events.push(ReplicaEvent::Excluded { rank });
                    excluded_now = true;
                }
            }
        }
        Ok(excluded_now)
    }
}

/// Fails on every rank when some rank flagged its input (`flags`: the
/// summed [`Ballot::flags`]).
fn fail_on_flags(ballot: &Ballot, flags: &[f64]) -> Result<()> {
    ballot.fail_on_flags(flags, decode_flag, |bad, mine| {
        let mine = mine.map(|s| format!("; {s}")).unwrap_or_default();
        format!("the partitions passed by rank(s) {bad:?} do not fit{mine}")
    })
}
