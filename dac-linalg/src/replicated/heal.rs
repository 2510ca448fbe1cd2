//! Healing: restoring a partition's replication factor after a holder
//! departed, by copying its data from a live holder to another rank.
//!
//! Every rank derives the same plan from what every rank knows (the job's
//! holders, departures and exclusions, all read from shared results), so
//! the ranks take the same steps without a coordinator. Two reductions
//! carry a plan:
//!
//! 1. **Announce.** Each partition's source (its first live holder) states
//!    the length of its data and a hash of it; every other rank adds
//!    zeros.
//! 2. **Copy.** The source publishes its data bit for bit, as the 16-bit
//!    chunks of each value's bits (integers survive a sum with zeros
//!    exactly; see `digest`). Every rank reads the copy back and checks it
//!    against the announced hash, so all ranks agree on the outcome; the
//!    new holder keeps the data, and every rank adds it to the
//!    partition's holders.
//!
//! A copy whose source or new holder departed before it completed is not
//! made; the next [`Replicated::heal`] plans again from the survivors.
//!
//! **Joiners.** When the job has grown past the placement's ranks (members
//! joined at an admission point), the heal first hands the job's state to
//! the joiners, which call [`Replicated::joined`] at the same point: the
//! lowest live old rank publishes it (the placement, the holders healing
//! added, the departures, exclusions and lost partitions, and the
//! operation count) as 16-bit chunks in two reductions, its length and
//! then its words. Then the plan also *moves* partitions from the most
//! loaded ranks to the joiners until no live rank holds more than one
//! partition more than another: the copy is made and checked as above,
//! and the giver drops its holding ([`ReplicaEvent::Moved`]).

use std::collections::BTreeMap;

use dac_core::Communicator;
use ndarray::Array2;

use super::digest::{
    CHUNKS, bits_chunks, decode_bits, decode_count, decode_hash, decode_words, hash_chunks,
    word_chunks,
};
use super::{ReplicaEvent, Replicated, ReplicatedOptions};
use crate::Placement;
use crate::error::{LinalgError, Result};

/// Most values one heal may copy in all (8 GiB of chunks): a larger
/// announcement is refused on every rank before anything is allocated.
const MAX_COPY_VALUES: usize = 1 << 28;

/// The operation tag of a copy's hash (no checked reduction uses it).
const COPY_TAG: u64 = u64::MAX;

/// Most words of job state handed to joiners (32 MiB of chunks): a larger
/// announcement is refused on every rank before anything is allocated.
const MAX_STATE_WORDS: usize = 1 << 20;

/// A partition's data that [`Replicated::heal`] can copy between ranks.
pub trait PartitionData: Sized {
    /// The data as values, in a layout [`PartitionData::from_values`]
    /// reads back.
    fn to_values(&self) -> Vec<f64>;

    /// The data from [`PartitionData::to_values`]' layout; `None` if the
    /// values do not have that layout.
    fn from_values(values: &[f64]) -> Option<Self>;
}

impl PartitionData for Vec<f64> {
    fn to_values(&self) -> Vec<f64> {
        self.clone()
    }

    fn from_values(values: &[f64]) -> Option<Self> {
        Some(values.to_vec())
    }
}

impl PartitionData for Array2<f64> {
    /// `[rows, cols, entries in row-major order]`.
    fn to_values(&self) -> Vec<f64> {
        let (rows, cols) = self.dim();
        let mut out = Vec::with_capacity(2 + rows * cols);
        out.extend([rows as f64, cols as f64]);
        out.extend(self.iter().copied());
        out
    }

    fn from_values(values: &[f64]) -> Option<Self> {
        let (rows, cols) = matrix_dims(values)?;
        let entries = &values[2..];
        if rows.checked_mul(cols)? != entries.len() {
            return None;
        }
        Array2::from_shape_vec((rows, cols), entries.to_vec()).ok()
    }
}

/// A least-squares partition: its rows of `A` and of `b`.
impl PartitionData for (Array2<f64>, Array2<f64>) {
    /// `A`'s layout, then `b`'s.
    fn to_values(&self) -> Vec<f64> {
        let mut out = self.0.to_values();
        out.extend(self.1.to_values());
        out
    }

    fn from_values(values: &[f64]) -> Option<Self> {
        let (rows, cols) = matrix_dims(values)?;
        let split = rows.checked_mul(cols)?.checked_add(2)?;
        let (a, b) = values.split_at_checked(split)?;
        Some((Array2::from_values(a)?, Array2::from_values(b)?))
    }
}

/// The `(rows, cols)` an `Array2` layout starts with, if they are counts.
fn matrix_dims(values: &[f64]) -> Option<(usize, usize)> {
    let count = |x: f64| (x >= 0.0 && x.fract() == 0.0 && x < 2f64.powi(52)).then_some(x as usize);
    match values {
        [rows, cols, ..] => Some((count(*rows)?, count(*cols)?)),
        _ => None,
    }
}

/// One copy of a plan: partition `partition` from `source` to `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Transfer {
    pub(super) partition: usize,
    pub(super) source: usize,
    pub(super) target: usize,
    /// The holder that gives the partition up once the copy is made (a
    /// move to a joiner); `None` for a restoring copy.
    pub(super) gives_up: Option<usize>,
}

impl Replicated {
    /// Restores the replication factor of every partition that lost a
    /// holder: copies its data from its first live holder to the live rank
    /// that holds the fewest partitions (the lowest such rank on a tie),
    /// verified by a hash. Returns the copies made, as `(partition, new
    /// holder)`, each also reported as [`ReplicaEvent::Restored`].
    ///
    /// Every rank calls it at the same point (between the job's
    /// operations; once per iteration of a loop is typical), with the
    /// partitions it holds. The new holder's `parts` gains the copy, and
    /// from then on it holds the partition like its first holders did. A
    /// call with nothing to restore costs nothing; one that restores costs
    /// two reductions. With two holders per partition, a job survives any
    /// sequence of single failures, each after the previous heal.
    ///
    /// After an admission point that admitted joiners (the job's size is
    /// above the placement's ranks), the heal first hands the job's state
    /// to them — they call [`Replicated::joined`] at the same point — in two
    /// more reductions, and its plan also moves partitions from the most
    /// loaded ranks to the joiners until no live rank holds more than one
    /// partition more than another: each move is a copy like the others,
    /// after which the giver drops the partition from its `parts`
    /// ([`ReplicaEvent::Moved`]).
    ///
    /// # Errors
    /// - [`LinalgError::ReplicaMismatch`]: a copy differs from the hash its
    ///   source announced, or does not read as `D` (naming the source).
    /// - [`LinalgError::InvalidArgument`]: an announcement beyond
    ///   2²⁸ values, or sums that are not the integers they should be.
    /// - The reductions' errors.
    ///
    /// All of them on every rank alike.
    pub fn heal<C: Communicator, D: PartitionData>(
        &mut self,
        comm: &mut C,
        parts: &mut BTreeMap<usize, D>,
    ) -> Result<Vec<(usize, usize)>> {
        if comm.size() > self.placement.ranks() {
            self.hand_over(comm)?;
        }
        let plan = self.healing_plan(comm.size());
        self.grown = None;
        if plan.is_empty() {
            return Ok(Vec::new());
        }
        let me = comm.rank();
        let data: Vec<Option<Vec<f64>>> = plan
            .iter()
            .map(|c| {
                (c.source == me)
                    .then(|| parts.get(&c.partition).map(D::to_values))
                    .flatten()
            })
            .collect();
        // 1. Announce: each source's length (plus one: zero is "none") and
        // hash.
        let mut announce = vec![0.0; plan.len() * (1 + CHUNKS)];
        for (i, (c, values)) in plan.iter().zip(&data).enumerate() {
            if let Some(values) = values {
                let slot = &mut announce[i * (1 + CHUNKS)..(i + 1) * (1 + CHUNKS)];
                slot[0] = values.len() as f64 + 1.0;
                slot[1..].copy_from_slice(&hash_chunks(c.partition, values, c.source, COPY_TAG));
            }
        }
        let announced = self.sum(comm, &announce)?;
        let mut lens = Vec::with_capacity(plan.len());
        for (i, c) in plan.iter().enumerate() {
            let slot = &announced.value[i * (1 + CHUNKS)..(i + 1) * (1 + CHUNKS)];
            let len = decode_count(slot[0])?;
            let hash = decode_hash(&slot[1..])?;
            let present = announced.contributors.contains(c.source) && len > 0;
            lens.push(present.then_some((len - 1, hash)));
        }
        let total: usize = lens.iter().flatten().map(|(len, _)| len).sum();
        if total > MAX_COPY_VALUES {
            return Err(LinalgError::InvalidArgument {
                ranks: Vec::new(),
                detail: format!("a heal announced {total} values to copy, above {MAX_COPY_VALUES}"),
            });
        }
        // 2. Copy, bit for bit.
        let mut payload = Vec::with_capacity(4 * total);
        for (values, len) in data.iter().zip(&lens) {
            let Some((len, _)) = len else { continue };
            match values {
                Some(values) => payload.extend(bits_chunks(values)),
                None => payload.resize(payload.len() + 4 * len, 0.0),
            }
        }
        let copied = self.sum(comm, &payload)?;
        let mut made = Vec::new();
        let mut at = 0;
        for (c, len) in plan.iter().zip(&lens) {
            let Some((len, hash)) = *len else { continue };
            let values = decode_bits(&copied.value[at..at + 4 * len])?;
            at += 4 * len;
            let both_took_part =
                copied.contributors.contains(c.source) && copied.contributors.contains(c.target);
            if !both_took_part {
                continue; // planned again, from the survivors, next time
            }
            let sound = hash
                == Some(super::digest::hash_u16(
                    c.partition,
                    &values,
                    c.source,
                    COPY_TAG,
                ));
            let read = sound.then(|| D::from_values(&values)).flatten();
            let Some(copy) = read else {
                return Err(LinalgError::ReplicaMismatch {
                    partition: c.partition,
                    ranks: vec![c.source],
                });
            };
            if c.target == me {
                parts.insert(c.partition, copy);
            }
            self.placement.add_holder(c.partition, c.target);
            match c.gives_up {
                Some(from) => {
                    if from == me {
                        parts.remove(&c.partition);
                    }
                    self.placement.remove_holder(c.partition, from);
                    self.events.push(ReplicaEvent::Moved {
                        partition: c.partition,
                        from,
                        to: c.target,
                    });
                }
                None => self.events.push(ReplicaEvent::Restored {
                    partition: c.partition,
                    holder: c.target,
                }),
            }
            made.push((c.partition, c.target));
        }
        Ok(made)
    }

    /// The copies that restore every partition's replication factor, the
    /// same on every rank: for each partition that is not lost and has
    /// fewer live holders than it started with, one copy per missing
    /// holder, from its first live holder to the live rank holding the
    /// fewest partitions (the lowest on a tie).
    pub(super) fn healing_plan(&self, size: usize) -> Vec<Transfer> {
        let live = |r: &usize| !self.departed.contains(r) && !self.excluded.contains(r);
        let partitions = self.placement.partitions();
        let mut load = vec![0usize; size];
        for p in 0..partitions {
            for h in self.placement.holders(p).iter().filter(|h| live(h)) {
                if let Some(l) = load.get_mut(*h) {
                    *l += 1;
                }
            }
        }
        let mut plan = Vec::new();
        for p in (0..partitions).filter(|p| !self.lost.contains(p)) {
            let holders = self.placement.holders(p);
            let mut current: Vec<usize> = holders.iter().copied().filter(live).collect();
            let Some(&source) = current.first() else {
                continue;
            };
            while current.len() < self.wanted[p] {
                let target = (0..size)
                    .filter(|r| live(r) && !holders.contains(r) && !current.contains(r))
                    .min_by_key(|&r| (load[r], r));
                let Some(target) = target else { break };
                load[target] += 1;
                current.push(target);
                plan.push(Transfer {
                    partition: p,
                    source,
                    target,
                    gives_up: None,
                });
            }
        }
        if let Some(old) = self.grown {
            self.fair_shares(old, size, &mut load, &mut plan);
        }
        plan
    }

    /// Moves that give the ranks from `old` on (joiners) their fair share:
    /// while the most loaded live rank holds more than one partition more
    /// than the least loaded joiner, one of its partitions (the lowest
    /// that the joiner does not hold and no other step of the plan
    /// touches) moves to that joiner, copied from the giver.
    fn fair_shares(&self, old: usize, size: usize, load: &mut [usize], plan: &mut Vec<Transfer>) {
        let live = |r: usize| !self.departed.contains(&r) && !self.excluded.contains(&r);
        let partitions = self.placement.partitions();
        let mut moved: Vec<usize> = plan.iter().map(|t| t.partition).collect();
        loop {
            let Some(to) = (old..size)
                .filter(|&r| live(r))
                .min_by_key(|&r| (load[r], r))
            else {
                return;
            };
            let givers = (0..size).filter(|&r| live(r) && load[r] > load[to] + 1);
            let step = givers
                .map(|from| {
                    let p = (0..partitions).find(|&p| {
                        let holders = self.placement.holders(p);
                        !self.lost.contains(&p)
                            && !moved.contains(&p)
                            && holders.contains(&from)
                            && !holders.contains(&to)
                    });
                    (from, p)
                })
                .filter_map(|(from, p)| p.map(|p| (from, p)))
                .max_by_key(|&(from, _)| (load[from], std::cmp::Reverse(from)));
            let Some((from, p)) = step else { return };
            load[from] -= 1;
            load[to] += 1;
            moved.push(p);
            plan.push(Transfer {
                partition: p,
                source: from,
                target: to,
                gives_up: Some(from),
            });
        }
    }

    /// On the old ranks of a job that has grown: hands the job's state to
    /// the joiners (see the module docs), then grows the placement.
    fn hand_over<C: Communicator>(&mut self, comm: &mut C) -> Result<()> {
        let live = |r: &usize| !self.departed.contains(r) && !self.excluded.contains(r);
        let publisher = (0..self.placement.ranks()).find(live);
        let words = if publisher == Some(comm.rank()) {
            self.state_words()
        } else {
            Vec::new()
        };
        let old = self.placement.ranks();
        let state = exchange_state(self, comm, &words)?;
        if state.is_none() {
            return Err(state_lost());
        }
        self.placement.grow(comm.size());
        self.grown = Some(old);
        Ok(())
    }

    /// On a process that joined the job (through an admission point) after
    /// the others built their [`Replicated`]: receives the job's state from
    /// them and returns this rank's copy of the job, holding nothing yet.
    /// Call it where the others call [`Replicated::heal`], then call
    /// [`Replicated::heal`] like them: that call gives this rank its fair
    /// share of the partitions, copied into its `parts`.
    ///
    /// # Errors
    /// - [`LinalgError::InvalidArgument`]: the state announced is beyond
    ///   2²⁰ words, does not read as a job's state, or no old rank
    ///   published it (none is left).
    /// - The reductions' errors.
    pub fn joined<C: Communicator>(comm: &mut C, options: ReplicatedOptions) -> Result<Replicated> {
        let mut job = Replicated::new(Placement::from_parts(0, Vec::new()), options);
        let Some(words) = exchange_state(&mut job, comm, &[])? else {
            return Err(state_lost());
        };
        let departed = std::mem::take(&mut job.departed);
        let mut job = Replicated::from_state_words(&words, options).ok_or_else(|| {
            LinalgError::InvalidArgument {
                ranks: Vec::new(),
                detail: "the job state handed to a joiner does not read as one".into(),
            }
        })?;
        job.departed.extend(departed);
        job.grown = Some(job.placement.ranks());
        job.placement.grow(comm.size());
        Ok(job)
    }

    /// The state a joiner needs, as words: the operation count, the rank
    /// count, the partition count, each partition's wanted holder count
    /// and holders, then the departed and excluded ranks and the lost
    /// partitions, each list after its length.
    fn state_words(&self) -> Vec<u64> {
        let mut w = vec![
            self.op,
            self.placement.ranks() as u64,
            self.placement.partitions() as u64,
        ];
        for (p, holders) in self.placement.all_holders().iter().enumerate() {
            w.push(self.wanted[p] as u64);
            w.push(holders.len() as u64);
            w.extend(holders.iter().map(|&h| h as u64));
        }
        for set in [&self.departed, &self.excluded, &self.lost] {
            w.push(set.len() as u64);
            w.extend(set.iter().map(|&r| r as u64));
        }
        w
    }

    /// Reads [`Replicated::state_words`] back; `None` if they are not such.
    fn from_state_words(words: &[u64], options: ReplicatedOptions) -> Option<Replicated> {
        let mut at = words.iter().copied();
        let mut next = || at.next();
        let small = |w: u64| usize::try_from(w).ok().filter(|&v| v < MAX_STATE_WORDS);
        let op = next()?;
        let ranks = small(next()?)?;
        let partitions = small(next()?)?;
        let mut wanted = Vec::with_capacity(partitions);
        let mut holders = Vec::with_capacity(partitions);
        for _ in 0..partitions {
            wanted.push(small(next()?)?);
            let n = small(next()?)?;
            let list: Option<Vec<usize>> = (0..n)
                .map(|_| next().and_then(small).filter(|&h| h < ranks))
                .collect();
            holders.push(list?);
        }
        let mut sets: Vec<std::collections::BTreeSet<usize>> = Vec::with_capacity(3);
        for _ in 0..3 {
            let n = small(next()?)?;
            sets.push(
                (0..n)
                    .map(|_| next().and_then(small))
                    .collect::<Option<_>>()?,
            );
        }
        if next().is_some() || ranks == 0 {
            return None;
        }
        let mut job = Replicated::new(Placement::from_parts(ranks, holders), options);
        job.wanted = wanted;
        job.op = op;
        job.lost = sets.pop()?;
        job.excluded = sets.pop()?;
        job.departed = sets.pop()?;
        Some(job)
    }
}

/// The two reductions that hand the job's state over: its length (plus
/// one: zero is "nobody published"), then its words, as 16-bit chunks.
/// `words` is empty on every rank but the publisher. Returns the words
/// every rank read, or `None` if nobody published them.
fn exchange_state<C: Communicator>(
    job: &mut Replicated,
    comm: &mut C,
    words: &[u64],
) -> Result<Option<Vec<u64>>> {
    let mut head = vec![0.0; 4];
    if !words.is_empty() {
        head = word_chunks(&[words.len() as u64 + 1]);
    }
    let summed = job.sum(comm, &head)?;
    let count = decode_words(&summed.value)?
        .first()
        .copied()
        .map_or(0, |c| usize::try_from(c).unwrap_or(usize::MAX));
    let Some(len) = count.checked_sub(1) else {
        return Ok(None);
    };
    if len > MAX_STATE_WORDS {
        return Err(LinalgError::InvalidArgument {
            ranks: Vec::new(),
            detail: format!("the job state announced {len} words, above {MAX_STATE_WORDS}"),
        });
    }
    let payload = if words.is_empty() {
        vec![0.0; 4 * len]
    } else {
        word_chunks(words)
    };
    let summed = job.sum(comm, &payload)?;
    Ok(Some(decode_words(&summed.value)?))
}

fn state_lost() -> LinalgError {
    LinalgError::InvalidArgument {
        ranks: Vec::new(),
        detail: "no rank that held the job's state was left to hand it to the joiners".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Placement;
    use crate::ReplicatedOptions;

    #[test]
    fn partition_data_round_trips_and_refuses_other_layouts() {
        let a = Array2::from_shape_fn((3, 2), |(i, j)| (i * 2 + j) as f64 - 2.5);
        let b = Array2::from_shape_fn((3, 1), |(i, _)| f64::from(i as u32).sqrt());
        let pair = (a.clone(), b.clone());
        let values = pair.to_values();
        assert_eq!(values.len(), 2 + 6 + 2 + 3);
        assert_eq!(
            <(Array2<f64>, Array2<f64>)>::from_values(&values),
            Some(pair)
        );
        assert_eq!(Array2::from_values(&a.to_values()), Some(a));
        for bad in [
            vec![],
            vec![3.0],
            vec![1.5, 2.0, 0.0, 0.0, 0.0],
            vec![-1.0, 2.0],
            vec![2.0, 2.0, 1.0],
            vec![f64::NAN, 1.0, 1.0],
            vec![1e300, 1e300, 1.0],
        ] {
            assert_eq!(Array2::from_values(&bad), None, "{bad:?}");
            assert_eq!(
                <(Array2<f64>, Array2<f64>)>::from_values(&bad),
                None,
                "{bad:?}"
            );
        }
        // A pair whose `b` is cut short.
        assert_eq!(
            <(Array2<f64>, Array2<f64>)>::from_values(&values[..values.len() - 1]),
            None
        );
    }

    #[test]
    fn the_state_handed_to_joiners_reads_back_and_nothing_else_does() {
        let mut job = Replicated::new(
            Placement::new(6, 4, 2).unwrap(),
            ReplicatedOptions::default(),
        );
        job.op = 77;
        job.departed.insert(2);
        job.excluded.insert(3);
        job.lost.insert(5);
        job.placement.add_holder(0, 1);
        let words = job.state_words();
        let back = Replicated::from_state_words(&words, ReplicatedOptions::default()).unwrap();
        assert_eq!(back.placement, job.placement);
        assert_eq!(back.wanted, job.wanted);
        assert_eq!(
            (back.op, &back.departed, &back.excluded, &back.lost),
            (77, &job.departed, &job.excluded, &job.lost)
        );
        let options = ReplicatedOptions::default();
        // Cut short, with a word too many, a holder outside the ranks, no
        // ranks at all: refused.
        assert!(Replicated::from_state_words(&words[..words.len() - 1], options).is_none());
        let mut longer = words.clone();
        longer.push(0);
        assert!(Replicated::from_state_words(&longer, options).is_none());
        let mut outside = words.clone();
        outside[5] = 4; // partition 0's first holder, of 4 ranks
        assert!(Replicated::from_state_words(&outside, options).is_none());
        let mut empty = words.clone();
        empty[1] = 0;
        assert!(Replicated::from_state_words(&empty, options).is_none());
        assert!(Replicated::from_state_words(&[], options).is_none());
    }

    #[test]
    fn joiners_get_a_fair_share_by_moves_from_the_most_loaded() {
        let placement = Placement::new(12, 4, 2).unwrap();
        let mut job = Replicated::new(placement.clone(), ReplicatedOptions::default());
        job.placement.grow(6);
        assert!(job.healing_plan(6).is_empty(), "no growth was handed over");
        job.grown = Some(4);
        let plan = job.healing_plan(6);
        assert_eq!(plan.len(), 8, "{plan:?}");
        let mut load: Vec<usize> = (0..6).map(|r| placement.held_by(r).len()).collect();
        for t in &plan {
            let from = t.gives_up.unwrap();
            assert_eq!(t.source, from);
            assert!(t.target >= 4 && placement.holders(t.partition).contains(&from));
            load[from] -= 1;
            load[t.target] += 1;
        }
        assert_eq!(load, vec![4; 6]);
        // No partition moves twice in one plan.
        let mut moved: Vec<usize> = plan.iter().map(|t| t.partition).collect();
        moved.sort_unstable();
        moved.dedup();
        assert_eq!(moved.len(), plan.len());
    }

    #[test]
    fn the_plan_restores_every_partition_of_a_departed_holder_to_the_least_loaded() {
        let placement = Placement::new(8, 4, 2).unwrap();
        let mut job = Replicated::new(placement.clone(), ReplicatedOptions::default());
        assert!(job.healing_plan(4).is_empty(), "nothing departed");
        job.departed.insert(1);
        let plan = job.healing_plan(4);
        let lost: Vec<usize> = placement.held_by(1);
        assert_eq!(plan.iter().map(|t| t.partition).collect::<Vec<_>>(), lost);
        let mut load = [0usize; 4];
        for p in 0..8 {
            for &h in placement.holders(p) {
                if h != 1 {
                    load[h] += 1;
                }
            }
        }
        for t in &plan {
            assert_ne!(t.target, 1);
            assert!(!placement.holders(t.partition).contains(&t.target));
            assert_eq!(
                t.source,
                placement
                    .holders(t.partition)
                    .iter()
                    .copied()
                    .find(|&h| h != 1)
                    .unwrap()
            );
            load[t.target] += 1;
        }
        // The copies are spread: no survivor holds more than one partition
        // more than another.
        let (lo, hi) = (
            load[0].min(load[2]).min(load[3]),
            load[0].max(load[2]).max(load[3]),
        );
        assert!(hi - lo <= 1, "{load:?}");
        // A partition with no live holder is lost, not planned.
        job.departed
            .extend(placement.holders(lost[0]).iter().copied());
        assert!(job.healing_plan(4).iter().all(|t| t.partition != lost[0]));
    }
}
