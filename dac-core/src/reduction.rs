//! The result of a reduction: the value and how far it can be trusted.

/// The members whose inputs are in a reduced value: every member of
/// `0..members` except the departed ones.
///
/// Stored as the (usually empty) list of departed members, so it stays
/// small for jobs with a million members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contributors {
    members: usize,
    /// Ascending, unique, all below `members`.
    departed: Vec<usize>,
}

impl Contributors {
    /// All of `0..members`.
    pub fn all(members: usize) -> Contributors {
        Contributors {
            members,
            departed: Vec::new(),
        }
    }

    /// `0..members` without `departed` (ids outside the range are ignored).
    pub fn excluding(members: usize, departed: impl IntoIterator<Item = usize>) -> Contributors {
        let mut departed: Vec<usize> = departed.into_iter().filter(|&d| d < members).collect();
        departed.sort_unstable();
        departed.dedup();
        Contributors { members, departed }
    }

    /// Number of contributing members.
    pub fn len(&self) -> usize {
        self.members - self.departed.len()
    }

    /// True when no member contributes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size of the job (contributing or not).
    pub fn members(&self) -> usize {
        self.members
    }

    /// Members whose inputs are *not* in the value, ascending.
    pub fn departed(&self) -> &[usize] {
        &self.departed
    }

    /// True when `rank`'s input is in the value.
    pub fn contains(&self, rank: usize) -> bool {
        rank < self.members && self.departed.binary_search(&rank).is_err()
    }

    /// Contributing members, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.members).filter(move |&r| self.contains(r))
    }

    /// Contributing members as a vector.
    pub fn to_vec(&self) -> Vec<usize> {
        self.iter().collect()
    }
}

/// The outcome of one reduction on one member.
#[derive(Clone, Debug, PartialEq)]
pub struct Reduction {
    /// The reduced vector (the mean, or the sum for `allreduce_sum`).
    pub value: Vec<f64>,
    /// Consensus rounds executed.
    pub rounds: u32,
    /// Upper bound on `max_i ‖e_i − x̄‖∞ / max(1, ‖x̄‖∞)`: the relative
    /// distance of any member's mean from the exact mean of the
    /// contributors' inputs. 0 for an exact-schedule result, which is exact
    /// up to floating-point rounding.
    pub residual: f64,
    /// Whose inputs are in `value`.
    pub contributors: Contributors,
}

impl Reduction {
    /// Turns a mean into the sum over the contributors:
    /// `sum = mean × contributors.len()`.
    pub fn into_sum(mut self) -> Reduction {
        let count = self.contributors.len() as f64;
        for v in &mut self.value {
            *v *= count;
        }
        self
    }
}
