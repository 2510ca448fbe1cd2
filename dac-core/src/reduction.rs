//! The result of a reduction: the value and how far it can be trusted.

/// Exactly which inputs a reduced value contains: every member of
/// `0..members` except the departed ones, each with the *version* of its
/// input (0 for the input it started with, `k` after its `k`-th change).
///
/// Stored as the (usually empty) lists of departed members and changed
/// inputs, so it stays small for jobs with a million members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contributors {
    members: usize,
    /// Ascending, unique, all below `members`.
    departed: Vec<usize>,
    /// `(member, version)` for contributing members whose input in the
    /// value is not their starting one; ascending by member.
    versions: Vec<(usize, u32)>,
}

impl Contributors {
    /// All of `0..members`, with their starting inputs.
    pub fn all(members: usize) -> Contributors {
        Contributors {
            members,
            departed: Vec::new(),
            versions: Vec::new(),
        }
    }

    /// `0..members` without `departed`, with starting inputs (ids outside
    /// the range are ignored).
    pub fn excluding(members: usize, departed: impl IntoIterator<Item = usize>) -> Contributors {
        Contributors::with_versions(members, departed, [])
    }

    /// `0..members` without `departed`; `versions` lists `(member, k)` for
    /// members whose `k`-th input is in the value (the largest `k` per
    /// member counts; departed members and ids outside the range are
    /// ignored).
    pub fn with_versions(
        members: usize,
        departed: impl IntoIterator<Item = usize>,
        versions: impl IntoIterator<Item = (usize, u32)>,
    ) -> Contributors {
        let mut departed: Vec<usize> = departed.into_iter().filter(|&d| d < members).collect();
        departed.sort_unstable();
        departed.dedup();
        let mut versions: Vec<(usize, u32)> = versions
            .into_iter()
            .filter(|&(m, k)| m < members && k > 0 && departed.binary_search(&m).is_err())
            .collect();
        // Keep the largest version per member.
        versions.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        versions.dedup_by_key(|v| v.0);
        Contributors {
            members,
            departed,
            versions,
        }
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

    /// Which version of `rank`'s input is in the value (0: the input it
    /// started with); `None` if `rank` does not contribute.
    pub fn input_version(&self, rank: usize) -> Option<u32> {
        if !self.contains(rank) {
            return None;
        }
        Some(match self.versions.binary_search_by_key(&rank, |v| v.0) {
            Ok(at) => self.versions[at].1,
            Err(_) => 0,
        })
    }

    /// Contributing members whose value uses a changed input, with the
    /// version, ascending by member.
    pub fn changed_inputs(&self) -> &[(usize, u32)] {
        &self.versions
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
    /// Whose inputs (and which versions of them) are in `value`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contributors_track_departures_and_versions() {
        let c = Contributors::with_versions(6, [4, 1, 9, 1], [(2, 1), (2, 3), (1, 2), (5, 0)]);
        assert_eq!(c.len(), 4);
        assert_eq!(c.departed(), &[1, 4]);
        assert_eq!(c.to_vec(), vec![0, 2, 3, 5]);
        assert_eq!(c.input_version(2), Some(3));
        assert_eq!(c.input_version(5), Some(0));
        assert_eq!(c.input_version(1), None);
        assert_eq!(c.changed_inputs(), &[(2, 3)]);
        assert!(!c.contains(6));
    }

    #[test]
    fn sum_is_mean_times_contributors() {
        let r = Reduction {
            value: vec![1.5, -2.0],
            rounds: 3,
            residual: 0.0,
            contributors: Contributors::excluding(5, [0]),
        };
        assert_eq!(r.into_sum().value, vec![6.0, -8.0]);
    }
}
