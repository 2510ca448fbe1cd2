//! One reduction that carries every rank's verdict on its own input next to
//! the data, so that a problem on one rank fails the call on all of them.
//!
//! Every checked reduction, plain ([`reduce_checked`]) or replicated
//! ([`Replicated::reduce`](crate::Replicated)), carries one [`Ballot`] per
//! rank in one layout: `[shape flags | non-finite flags | argument flags
//! (size each) | values (size × k) | votes (t)]`, then the data. A rank
//! with a bad input contributes zeros as data and raises its flag; the sum
//! then tells every rank who failed. Values (local row counts, lengths,
//! options) sit at the rank's own slot, so that every rank learns every
//! rank's values (the sum of one value and zeros: exact for integers once
//! rounded, and within the reduction's tolerance for the others). Votes
//! (converged, at the iteration limit) are summed, a count of the ranks.
//!
//! Every decision taken after a reduction is taken from what it returned,
//! which every rank shares: whether ranks passed different options
//! ([`dissenters`]), and whether a loop has reached its iteration limit
//! ([`at_limit`]: a vote in the loop's own reduction, so that a rank whose
//! limit differs cannot leave the others waiting).

use dac_core::{Communicator, Error};
use ndarray::{ArrayBase, Data, Dimension, Ix2};

use crate::error::{LinalgError, Result};

/// What a rank found wrong with its own input, before any reduction.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    shape: Option<String>,
    non_finite: Option<String>,
    argument: Option<String>,
}

impl Verdict {
    pub(crate) fn ok() -> Verdict {
        Verdict::default()
    }

    /// The verdict on a matrix operand and a second operand that must match
    /// one of its dimensions here: `other` must have `expected` entries (a
    /// vector) or rows (a matrix), `matrix`'s `dimension` on this rank
    /// ("rows" or "columns"), and both must be finite.
    pub(crate) fn operands<S, T, D>(
        (matrix_name, matrix): (&str, &ArrayBase<S, Ix2>),
        dimension: &str,
        expected: usize,
        (other_name, other): (&str, &ArrayBase<T, D>),
    ) -> Verdict
    where
        S: Data<Elem = f64>,
        T: Data<Elem = f64>,
        D: Dimension,
    {
        let mut verdict = Verdict::ok();
        let found = other.shape().first().copied().unwrap_or(0);
        if found != expected {
            let unit = if other.ndim() == 1 { "entries" } else { "rows" };
            verdict.shape(|| {
                format!(
                    "{matrix_name} has {expected} {dimension} here but {other_name} has {found} {unit}"
                )
            });
        }
        verdict.finite(matrix_name, matrix);
        verdict.finite(other_name, other);
        verdict
    }

    /// Records a local shape problem (the first one is kept).
    pub(crate) fn shape(&mut self, reason: impl FnOnce() -> String) {
        if self.shape.is_none() {
            self.shape = Some(reason());
        }
    }

    /// Records an invalid argument (an option out of its range).
    pub(crate) fn argument(&mut self, reason: impl FnOnce() -> String) {
        if self.argument.is_none() {
            self.argument = Some(reason());
        }
    }

    /// Records a non-finite value found otherwise than in an array.
    pub(crate) fn not_finite(&mut self, reason: impl FnOnce() -> String) {
        if self.non_finite.is_none() {
            self.non_finite = Some(reason());
        }
    }

    /// Checks that `a` holds only finite values.
    pub(crate) fn finite<S, D>(&mut self, name: &str, a: &ArrayBase<S, D>)
    where
        S: Data<Elem = f64>,
        D: Dimension,
    {
        if self.non_finite.is_some() {
            return;
        }
        if let Some((index, value)) = a.indexed_iter().find(|(_, v)| !v.is_finite()) {
            self.non_finite = Some(format!("{name}[{index:?}] = {value}"));
        }
    }

    pub(crate) fn is_ok(&self) -> bool {
        self.shape.is_none() && self.non_finite.is_none() && self.argument.is_none()
    }

    /// This rank's flags for a reduction: `FLAG_BLOCKS × size` values, 1 at
    /// this rank's slot of each block (shape, non-finite, argument) where
    /// it found a problem, 0 elsewhere.
    pub(crate) fn flags(&self, rank: usize, size: usize) -> Vec<f64> {
        let mut flags = vec![0.0; FLAG_BLOCKS * size];
        let found = [&self.shape, &self.non_finite, &self.argument];
        for (block, reason) in found.into_iter().enumerate() {
            if reason.is_some() {
                flags[block * size + rank] = 1.0;
            }
        }
        flags
    }

    /// Fails on every rank when the summed [`Verdict::flags`] name some
    /// rank: a shape problem first, then a non-finite value, then an
    /// invalid argument. `flagged` reads one summed flag; `shape` words the
    /// shape error from the flagged ranks and this rank's own reason.
    pub(crate) fn fail_on_flags(
        &self,
        sum: &[f64],
        flagged: impl Fn(f64) -> Result<bool>,
        shape: impl FnOnce(&[usize], Option<&str>) -> String,
    ) -> Result<()> {
        let size = sum.len() / FLAG_BLOCKS;
        let ranks = |block: usize| -> Result<Vec<usize>> {
            let mut ranks = Vec::new();
            for r in 0..size {
                if flagged(sum[block * size + r])? {
                    ranks.push(r);
                }
            }
            Ok(ranks)
        };
        let here = |reason: &Option<String>| {
            reason
                .as_ref()
                .map(|s| format!("here: {s}"))
                .unwrap_or_default()
        };
        let bad_shape = ranks(0)?;
        if !bad_shape.is_empty() {
            return Err(LinalgError::Shape {
                reason: shape(&bad_shape, self.shape.as_deref()),
            });
        }
        let bad_values = ranks(1)?;
        if !bad_values.is_empty() {
            return Err(LinalgError::NonFinite {
                ranks: bad_values,
                detail: here(&self.non_finite),
            });
        }
        let bad_arguments = ranks(2)?;
        if !bad_arguments.is_empty() {
            return Err(LinalgError::InvalidArgument {
                ranks: bad_arguments,
                detail: here(&self.argument),
            });
        }
        Ok(())
    }
}

/// Blocks of per-rank flags a [`Verdict`] takes in a reduction: shape,
/// non-finite, argument.
pub(crate) const FLAG_BLOCKS: usize = 3;

/// What a rank puts into a checked reduction next to its data: its
/// [`Verdict`] on its own input, `k` values of its own that every rank
/// learns (at this rank's slot of `size` slots), and `t` votes summed over
/// the ranks. See the [module docs](self) for the layout.
#[derive(Debug, Default)]
pub(crate) struct Ballot {
    verdict: Verdict,
    values: Vec<f64>,
    votes: Vec<f64>,
}

impl Ballot {
    /// A ballot with only `verdict`.
    pub(crate) fn new(verdict: Verdict) -> Ballot {
        Ballot {
            verdict,
            ..Ballot::default()
        }
    }

    /// A ballot of a rank whose input is fine, with nothing else to say.
    pub(crate) fn ok() -> Ballot {
        Ballot::default()
    }

    /// With this rank's `values`, which every rank learns.
    pub(crate) fn with_values(mut self, values: &[f64]) -> Ballot {
        self.values = values.to_vec();
        self
    }

    /// With this rank's `votes`, which are summed over the ranks.
    pub(crate) fn with_votes(mut self, votes: &[f64]) -> Ballot {
        self.votes = votes.to_vec();
        self
    }

    /// The verdict, for checks found after the ballot was made.
    pub(crate) fn verdict_mut(&mut self) -> &mut Verdict {
        &mut self.verdict
    }

    /// Whether this rank's input is fine (its data goes in; zeros if not).
    pub(crate) fn is_ok(&self) -> bool {
        self.verdict.is_ok()
    }

    /// The flag blocks: `FLAG_BLOCKS × size` values.
    pub(crate) fn flags(&self, rank: usize, size: usize) -> Vec<f64> {
        self.verdict.flags(rank, size)
    }

    /// The values at this rank's slot, then the votes: [`Ballot::body_len`]
    /// values.
    pub(crate) fn body(&self, rank: usize, size: usize) -> Vec<f64> {
        let mut body = ballot(rank, size, &self.values);
        body.extend_from_slice(&self.votes);
        body
    }

    /// The length of [`Ballot::body`].
    pub(crate) fn body_len(&self, size: usize) -> usize {
        size * self.values.len() + self.votes.len()
    }

    /// Fails on every rank when the summed flags name some rank (see
    /// [`Verdict::fail_on_flags`]).
    pub(crate) fn fail_on_flags(
        &self,
        sum: &[f64],
        flagged: impl Fn(f64) -> Result<bool>,
        shape: impl FnOnce(&[usize], Option<&str>) -> String,
    ) -> Result<()> {
        self.verdict.fail_on_flags(sum, flagged, shape)
    }

    /// Reads the summed bodies of the `ranks` that took part.
    pub(crate) fn read(&self, body: &[f64], ranks: Vec<usize>) -> Tally {
        let (values, votes) = body.split_at(body.len() - self.votes.len());
        Tally {
            values: values.to_vec(),
            k: self.values.len(),
            votes: votes.to_vec(),
            ranks,
        }
    }
}

/// The summed [`Ballot`] bodies of a checked reduction: every rank's values
/// and the votes, the same on every rank.
#[derive(Debug)]
pub(crate) struct Tally {
    values: Vec<f64>,
    k: usize,
    /// The votes, summed over [`Tally::ranks`].
    pub(crate) votes: Vec<f64>,
    /// The ranks that took part, ascending.
    pub(crate) ranks: Vec<usize>,
}

impl Tally {
    /// The `k` values rank `r` contributed.
    pub(crate) fn values(&self, r: usize) -> &[f64] {
        &self.values[r * self.k..(r + 1) * self.k]
    }

    /// Value `j` of rank `r` as a count.
    pub(crate) fn count(&self, r: usize, j: usize) -> usize {
        self.values(r)[j].round().max(0.0) as usize
    }
}

/// The ranks outside the largest group of `ranks` that agree with one of
/// them (the lowest such rank on ties), where `same(a, b)` says whether
/// ranks `a` and `b` passed the same: empty when they all agree. Taken
/// from values every rank shares, it names the same ranks on every rank.
pub(crate) fn dissenters(ranks: &[usize], same: impl Fn(usize, usize) -> bool) -> Vec<usize> {
    let agreeing = |r: usize| ranks.iter().filter(|&&o| same(r, o)).count();
    let mut reference = None;
    for &r in ranks {
        let count = agreeing(r);
        if reference.is_none_or(|(_, best)| count > best) {
            reference = Some((r, count));
        }
    }
    match reference {
        Some((reference, _)) => ranks
            .iter()
            .copied()
            .filter(|&o| !same(reference, o))
            .collect(),
        None => Vec::new(),
    }
}

/// `values` at this rank's slot of `size` slots (zeros elsewhere): summed
/// over the ranks, every rank's values ([`Tally::values`] reads them back).
fn ballot(rank: usize, size: usize, values: &[f64]) -> Vec<f64> {
    let k = values.len();
    let mut out = vec![0.0; size * k];
    out[rank * k..(rank + 1) * k].copy_from_slice(values);
    out
}

/// Whether a loop stops at its iteration limit, from the vote of its last
/// reduction: `reached` of the `voters` ranks were at theirs (`mine`: this
/// rank was), a count every rank shares. `Ok(false)` when none was,
/// `Ok(true)` when all were.
///
/// When only some were, the ranks passed different limits (`what`). Then
/// one more reduction, of a flag per rank (`sum` does it and also returns
/// the ranks that took part), tells which ranks reached theirs, and every
/// rank fails with [`LinalgError::InvalidArgument`] naming the side that
/// is not the majority's ([`dissenters`]). That reduction is only made on
/// this error path.
pub(crate) fn at_limit(
    (rank, size): (usize, usize),
    mine: bool,
    (reached, voters): (usize, usize),
    what: &str,
    sum: impl FnOnce(&[f64]) -> Result<(Vec<f64>, Vec<usize>)>,
) -> Result<bool> {
    if reached == 0 {
        return Ok(false);
    }
    if reached >= voters {
        return Ok(true);
    }
    let (flags, ranks) = sum(&ballot(rank, size, &[f64::from(u8::from(mine))]))?;
    let at = |r: usize| flags[r] > 0.5;
    let first: Vec<usize> = ranks.iter().copied().filter(|&r| at(r)).collect();
    Err(LinalgError::InvalidArgument {
        ranks: dissenters(&ranks, |a, b| at(a) == at(b)),
        detail: format!(
            "the ranks pass different {what}: rank(s) {first:?} reached theirs, the others \
             not; every rank must pass the same"
        ),
    })
}

/// The summed data and ballots of a checked reduction.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) data: Vec<f64>,
    /// Every rank's values, and the votes.
    pub(crate) tally: Tally,
    /// Consensus rounds the reduction took.
    pub(crate) rounds: u32,
    /// The members whose ballots it holds ([`Communicator::members`]).
    pub(crate) ranks: Vec<usize>,
}

/// Sums `data` (zeros on a rank whose verdict is bad) and the ranks'
/// ballots over all ranks, then fails on every rank if any rank's verdict
/// is bad or a member departed. `what` names the data in the error for
/// ranks that contributed vectors of different lengths.
pub(crate) fn reduce_checked<C: Communicator>(
    comm: &mut C,
    ballot: Ballot,
    data: &[f64],
    what: &str,
) -> Result<Checked> {
    let (size, rank) = (comm.size(), comm.rank());
    let members = comm.members();
    let flags = FLAG_BLOCKS * size;
    let head = flags + ballot.body_len(size);
    let mut payload = ballot.flags(rank, size);
    payload.extend(ballot.body(rank, size));
    let ok = ballot.is_ok();
    payload.extend(data.iter().map(|&x| if ok { x } else { 0.0 }));
    let reduction = comm.allreduce_sum(&payload).map_err(|e| match e {
        Error::DimensionMismatch {
            rank: r,
            expected,
            found,
        } => LinalgError::Shape {
            reason: format!(
                "{what} differs between ranks: rank {r} has {} values, other ranks {}",
                found.saturating_sub(head),
                expected.saturating_sub(head)
            ),
        },
        other => LinalgError::Consensus(other),
    })?;
    // Every member of the view the call began in must be in the sum.
    let departed: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&r| !reduction.contributors.contains(r))
        .collect();
    if !departed.is_empty() {
        return Err(LinalgError::Incomplete { departed });
    }
    let rounds = reduction.rounds;
    let sum = reduction.value;
    ballot.fail_on_flags(
        &sum[..flags],
        |flag| Ok(flag > 0.5),
        |bad, mine| {
            let mine = mine
                .map(|s| format!("; rank {rank}: {s}"))
                .unwrap_or_default();
            format!("the local pieces of rank(s) {bad:?} do not fit{mine}")
        },
    )?;
    Ok(Checked {
        data: sum[head..].to_vec(),
        tally: ballot.read(&sum[flags..head], members.clone()),
        rounds,
        ranks: members,
    })
}

/// Where this rank's rows sit in a matrix split by rows.
#[derive(Debug)]
pub(crate) struct RowLayout {
    /// Rows held by lower ranks.
    pub(crate) offset: usize,
    /// Rows in all.
    pub(crate) total: usize,
    /// Consensus rounds the reduction took.
    pub(crate) rounds: u32,
}

/// Shares every rank's row count and width (and its verdict) in one
/// checked reduction; fails on every rank, naming the same ranks, if the
/// widths differ.
pub(crate) fn row_layout<C: Communicator>(
    comm: &mut C,
    verdict: Verdict,
    rows: usize,
    cols: usize,
) -> Result<RowLayout> {
    let ballot = Ballot::new(verdict).with_values(&[rows as f64, cols as f64]);
    let checked = reduce_checked(comm, ballot, &[], "the row counts")?;
    let (shapes, rounds, ranks) = (checked.tally, checked.rounds, checked.ranks);
    let size = comm.size();
    let odd = dissenters(&ranks, |a, b| shapes.count(a, 1) == shapes.count(b, 1));
    if !odd.is_empty() {
        let widths: Vec<usize> = (0..size).map(|o| shapes.count(o, 1)).collect();
        return Err(LinalgError::Shape {
            reason: format!(
                "the rows of rank(s) {odd:?} are not as wide as the others': {widths:?} columns by rank"
            ),
        });
    }
    Ok(RowLayout {
        offset: (0..comm.rank()).map(|o| shapes.count(o, 0)).sum(),
        total: (0..size).map(|o| shapes.count(o, 0)).sum(),
        rounds,
    })
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array2};

    use super::{Verdict, dissenters};

    /// The ranks outside the largest group that agrees are named; on a
    /// tie, the group of the lowest rank is the reference.
    #[test]
    fn dissenters_are_the_ranks_outside_the_largest_agreeing_group() {
        let named = |values: &[u8]| {
            let ranks: Vec<usize> = (0..values.len()).collect();
            dissenters(&ranks, |a, b| values[a] == values[b])
        };
        assert_eq!(named(&[1, 1, 1, 1]), Vec::<usize>::new());
        assert_eq!(named(&[1, 1, 2, 1]), vec![2]);
        assert_eq!(named(&[2, 1, 1, 1]), vec![0]);
        assert_eq!(named(&[5, 5, 8, 2]), vec![2, 3]);
        assert_eq!(named(&[1, 2]), vec![1]);
        assert_eq!(named(&[1, 2, 2, 1]), vec![1, 2]);
        assert_eq!(named(&[]), Vec::<usize>::new());
        // Only the ranks passed take part.
        let values = [1, 9, 2, 2];
        assert_eq!(
            dissenters(&[0, 2, 3], |a, b| values[a] == values[b]),
            vec![0]
        );
    }

    /// The second operand must match the named dimension; the first
    /// problem of each kind is the one reported.
    #[test]
    fn operands_name_the_mismatch_and_the_first_non_finite_value() {
        let mut a = Array2::<f64>::zeros((2, 3));
        let x = Array1::<f64>::zeros(2);
        let v = Verdict::operands(("A", &a), "columns", 3, ("x", &x));
        assert_eq!(
            v.shape.as_deref(),
            Some("A has 3 columns here but x has 2 entries")
        );
        assert_eq!(v.non_finite, None);

        let b = Array2::<f64>::zeros((4, 1));
        a[(1, 2)] = f64::NAN;
        let v = Verdict::operands(("A", &a), "rows", 2, ("b", &b));
        assert_eq!(
            v.shape.as_deref(),
            Some("A has 2 rows here but b has 4 rows")
        );
        assert_eq!(v.non_finite.as_deref(), Some("A[(1, 2)] = NaN"));

        let mut y = Array1::<f64>::zeros(2);
        y[1] = f64::INFINITY;
        a[(1, 2)] = 0.0;
        let v = Verdict::operands(("A", &a), "rows", 2, ("y", &y));
        assert!(v.shape.is_none());
        assert_eq!(v.non_finite.as_deref(), Some("y[1] = inf"));
        assert!(!v.is_ok());
    }
}
