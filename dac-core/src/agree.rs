//! After a reduction that failed on every member: agreeing on who is at
//! fault.
//!
//! A usage error (another input length, a NaN, an invalid argument) fails
//! a reduction on every member, but each member reports the first abort
//! that reached it. Two members may then name two different culprits: the
//! one that noticed a length mismatch names itself. So the hosts follow
//! such a reduction with one more, of a fixed size, in which each member
//! states its own part at its own slot: its input's length and shape, and
//! the problem it found with its own input, if any. From that sum, which
//! every member shares, every member derives the same error ([`verdict`]):
//!
//! 1. a member's own problem (empty or non-finite input, an input too long
//!    for the transport, an invalid argument), the lowest such rank's;
//! 2. else the members whose length differs from the largest agreeing
//!    group's ([`Error::DimensionMismatch`], naming the lowest of them);
//! 3. else the members whose shape differs ([`Error::ShapeMismatch`]);
//! 4. else the error the member had.
//!
//! It is safe because such an error fails the reduction on every member
//! still in the job: no member finishes a reduction that another aborted
//! (an abort is sent before any input it concerns could spread), so every
//! member takes part in the follow-up, and the members' next calls stay
//! paired. The follow-up's sum is checked before it is believed: its
//! marker counts the members that took part, and every slot must hold
//! whole numbers. When it fails, or is not precise enough to read (an
//! iterative schedule with a coarse `tol`), the member keeps its error.

use crate::engine::AbortReason;
use crate::error::{ArgumentKind, Error};
use crate::reduction::Reduction;

/// Values each member states at its slot.
const SLOT: usize = 6;

/// Bits of the shape tag per value (three values carry 64 bits).
const TAG_BITS: u32 = 22;

/// What a member knows of its own part in a failed reduction.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Own {
    /// The length of its input.
    pub len: usize,
    /// A fingerprint of its input's shape (0 for a host without shapes).
    pub shape: u64,
    /// The problem it found with its own input, if any.
    pub problem: Option<AbortReason>,
}

impl Own {
    /// A member's part: its `input` (checked for emptiness and non-finite
    /// values here) with `shape`, or the problem the host found first.
    pub fn of(input: &[f64], shape: u64, problem: Option<AbortReason>) -> Own {
        let found = problem.or_else(|| {
            if input.is_empty() {
                return Some(AbortReason::EmptyInput { rank: 0 });
            }
            let index = input.iter().position(|x| !x.is_finite())?;
            Some(AbortReason::NonFiniteInput {
                rank: 0,
                index: index as u64,
                value: input[index],
            })
        });
        Own {
            len: input.len(),
            shape,
            problem: found,
        }
    }
}

/// Whether a failed reduction is followed by the agreement: its error
/// fails every member (it travels as an abort) and names a culprit.
pub fn follows(error: &Error) -> bool {
    matches!(
        error,
        Error::EmptyInput { .. }
            | Error::NonFiniteInput { .. }
            | Error::DimensionMismatch { .. }
            | Error::ShapeMismatch { .. }
            | Error::InputTooLarge { .. }
            | Error::InvalidArgument { .. }
    )
}

/// The input member `rank` of `size` contributes to the agreement:
/// `size × 6` values, its own at its slot, then a marker.
pub fn ballot(rank: usize, size: usize, own: &Own) -> Vec<f64> {
    let mut out = vec![0.0; size * SLOT + 1];
    let (code, detail) = match own.problem {
        None => (0, 0),
        Some(AbortReason::EmptyInput { .. }) => (1, 0),
        Some(AbortReason::NonFiniteInput { index, value, .. }) => {
            let code = if value.is_nan() {
                2
            } else if value > 0.0 {
                3
            } else {
                4
            };
            (code, index)
        }
        Some(AbortReason::InputTooLarge { max, .. }) => (5, max),
        Some(AbortReason::InvalidArgument { kind, .. }) => (
            6,
            match kind {
                ArgumentKind::Type => 1,
                ArgumentKind::Shape => 2,
                _ => 0,
            },
        ),
        // Not a problem of the member's own input.
        Some(_) => (0, 0),
    };
    let mask = (1u64 << TAG_BITS) - 1;
    let slot = &mut out[rank * SLOT..(rank + 1) * SLOT];
    slot[0] = own.len as f64 + 1.0; // 0: took no part
    slot[1] = f64::from(code);
    slot[2] = detail as f64;
    for (k, value) in slot[3..].iter_mut().enumerate() {
        *value = ((own.shape >> (TAG_BITS * k as u32)) & mask) as f64;
    }
    out[size * SLOT] = 1.0;
    out
}

/// The error every member reports, from the summed ballots of the `size`
/// members (see the [module docs](self)); `error` if the sum cannot be
/// read.
pub fn verdict(sum: &Reduction, size: usize, error: Error) -> Error {
    read(&sum.value, size).flatten().unwrap_or(error)
}

/// A member's stated part, as read back.
struct Stated {
    len: usize,
    code: u64,
    detail: u64,
    shape: u64,
}

/// `None`: unreadable; `Some(None)`: nothing to add.
fn read(value: &[f64], size: usize) -> Option<Option<Error>> {
    if value.len() != size * SLOT + 1 {
        return None;
    }
    let whole = |x: f64| {
        let r = x.round();
        ((x - r).abs() < 0.25 && r >= 0.0).then_some(r as u64)
    };
    let mut stated: Vec<(usize, Stated)> = Vec::new();
    for r in 0..size {
        let slot = &value[r * SLOT..(r + 1) * SLOT];
        let len = whole(slot[0])?;
        if len == 0 {
            continue; // it took no part
        }
        let mut shape = 0;
        for (k, &x) in slot[3..].iter().enumerate() {
            shape |= whole(x)? << (TAG_BITS * k as u32);
        }
        stated.push((
            r,
            Stated {
                len: (len - 1) as usize,
                code: whole(slot[1])?,
                detail: whole(slot[2])?,
                shape,
            },
        ));
    }
    if whole(value[size * SLOT])? != stated.len() as u64 || stated.is_empty() {
        return None;
    }
    if let Some((rank, s)) = stated.iter().find(|(_, s)| s.code != 0) {
        let rank = *rank;
        return Some(Some(match s.code {
            1 => Error::EmptyInput { rank },
            2..=4 => Error::NonFiniteInput {
                rank,
                index: s.detail as usize,
                value: match s.code {
                    2 => f64::NAN,
                    3 => f64::INFINITY,
                    _ => f64::NEG_INFINITY,
                },
            },
            5 => Error::InputTooLarge {
                rank,
                len: s.len,
                max: s.detail as usize,
            },
            6 => Error::InvalidArgument {
                rank,
                kind: match s.detail {
                    1 => ArgumentKind::Type,
                    2 => ArgumentKind::Shape,
                    _ => ArgumentKind::Value,
                },
            },
            _ => return None,
        }));
    }
    let (reference, odd) = odd_ones(&stated, |a, b| a.len == b.len);
    if let (Some(reference), Some(first)) = (reference, odd.first()) {
        let (rank, s) = (first.0, &first.1);
        return Some(Some(Error::DimensionMismatch {
            rank,
            expected: reference.len,
            found: s.len,
        }));
    }
    let (reference, odd) = odd_ones(&stated, |a, b| a.shape == b.shape);
    if let (Some(_), Some(first)) = (reference, odd.first()) {
        let (rank, s) = (first.0, &first.1);
        let neighbour = stated
            .iter()
            .find(|(_, o)| o.shape != s.shape)
            .map_or(rank, |(r, _)| *r);
        return Some(Some(Error::ShapeMismatch {
            rank,
            neighbour,
            len: s.len,
        }));
    }
    Some(None)
}

/// The members outside the largest group that agrees (by `same`; the
/// lowest rank's group on a tie), in rank order, and a member of that
/// group.
fn odd_ones(
    stated: &[(usize, Stated)],
    same: impl Fn(&Stated, &Stated) -> bool,
) -> (Option<&Stated>, Vec<&(usize, Stated)>) {
    let mut best: Option<(&Stated, usize)> = None;
    for (_, s) in stated {
        let count = stated.iter().filter(|(_, o)| same(s, o)).count();
        if best.is_none_or(|(_, c)| count > c) {
            best = Some((s, count));
        }
    }
    let Some((reference, _)) = best else {
        return (None, Vec::new());
    };
    let odd = stated.iter().filter(|(_, s)| !same(reference, s)).collect();
    (Some(reference), odd)
}

#[cfg(test)]
mod tests {
    use super::{Own, ballot, read};
    use crate::engine::AbortReason;
    use crate::error::{ArgumentKind, Error};

    /// The sum of the members' ballots, as an exact reduction returns it.
    fn summed(parts: &[Own]) -> Vec<f64> {
        let n = parts.len();
        let mut sum = vec![0.0; n * 6 + 1];
        for (r, own) in parts.iter().enumerate() {
            for (s, x) in sum.iter_mut().zip(ballot(r, n, own)) {
                *s += x;
            }
        }
        sum
    }

    fn own(len: usize) -> Own {
        Own::of(&vec![1.0; len], 0, None)
    }

    #[test]
    fn the_member_whose_length_differs_is_named() {
        let sum = summed(&[own(4), own(4), own(5), own(4)]);
        assert_eq!(
            read(&sum, 4),
            Some(Some(Error::DimensionMismatch {
                rank: 2,
                expected: 4,
                found: 5
            }))
        );
        // With two against two, the group of the lowest rank is the
        // reference.
        let sum = summed(&[own(3), own(7), own(7), own(3)]);
        assert_eq!(
            read(&sum, 4),
            Some(Some(Error::DimensionMismatch {
                rank: 1,
                expected: 3,
                found: 7
            }))
        );
    }

    #[test]
    fn a_members_own_problem_comes_first_the_lowest_rank_s() {
        let mut parts = [own(4), own(4), own(4), own(6)];
        parts[2] = Own::of(&[1.0, f64::INFINITY, 2.0, 3.0], 0, None);
        parts[1] = Own::of(
            &[1.0; 4],
            0,
            Some(AbortReason::InvalidArgument {
                rank: 1,
                kind: ArgumentKind::Type,
            }),
        );
        assert_eq!(
            read(&summed(&parts), 4),
            Some(Some(Error::InvalidArgument {
                rank: 1,
                kind: ArgumentKind::Type
            }))
        );
        parts[1] = own(4);
        assert_eq!(
            read(&summed(&parts), 4),
            Some(Some(Error::NonFiniteInput {
                rank: 2,
                index: 1,
                value: f64::INFINITY
            }))
        );
        parts[0] = Own::of(&[], 0, None);
        assert_eq!(
            read(&summed(&parts), 4),
            Some(Some(Error::EmptyInput { rank: 0 }))
        );
    }

    #[test]
    fn shapes_are_compared_when_the_lengths_agree() {
        let tag = u64::MAX - 12345;
        let parts = [
            Own::of(&[1.0; 6], tag, None),
            Own::of(&[1.0; 6], 99, None),
            Own::of(&[1.0; 6], tag, None),
        ];
        assert_eq!(
            read(&summed(&parts), 3),
            Some(Some(Error::ShapeMismatch {
                rank: 1,
                neighbour: 0,
                len: 6
            }))
        );
        let same = [own(2), own(2)];
        assert_eq!(read(&summed(&same), 2), Some(None));
    }

    #[test]
    fn a_sum_that_cannot_be_read_changes_nothing() {
        let mut sum = summed(&[own(4), own(5)]);
        // A member missing from the marker: the sum is not the ballots'.
        sum[12] = 1.0;
        assert_eq!(read(&sum, 2), None);
        let mut sum = summed(&[own(4), own(5)]);
        // Too imprecise to read.
        sum[0] += 0.4;
        assert_eq!(read(&sum, 2), None);
        // Another length altogether.
        assert_eq!(read(&[0.0; 5], 2), None);
        // A member that took no part is left out.
        let mut sum = summed(&[own(4), own(4), own(5)]);
        for x in &mut sum[12..18] {
            *x = 0.0;
        }
        sum[18] = 2.0;
        assert_eq!(read(&sum, 3), Some(None));
    }
}
