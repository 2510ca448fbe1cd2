//! Consensus schedules: who exchanges with whom in a round, and with what
//! weights.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

const SCHEDULE_NAMES: &str = "laplacian:EPS, metropolis, exact";

/// How a round moves mass along edges.
///
/// Every schedule acts on the same flow state, so the engine can switch
/// from [`Schedule::Exact`] to Metropolis weights mid-run without losing or
/// creating mass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// The textbook nearest-neighbour iteration
    /// `x_i ← x_i + eps·Σ_j (x_j − x_i)`. Needs `eps < 1/max_degree`
    /// (strictly: at `1/max_degree` bipartite graphs oscillate forever).
    Laplacian {
        /// Step size.
        eps: f64,
    },
    /// Metropolis–Hastings weights `1/(1 + max(d_i, d_j))`: converges on
    /// every connected graph without knowing global parameters.
    Metropolis,
    /// Dimension exchange: in round `k` node `i` averages with `i xor 2^k`.
    /// The exact mean after `log2 N` rounds when `N` is a power of two; for
    /// other `N` the `N − 2^m` extra nodes fold their mass into
    /// `i − 2^m` first and get the result back at the end, `⌊log2 N⌋ + 2`
    /// rounds in all. Falls back to Metropolis weights on the live graph
    /// if a member departs mid-run.
    Exact,
}

impl Schedule {
    /// Checks the schedule's own parameters (not the graph).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if a Laplacian step is not a positive finite
    /// number.
    pub fn validate(&self) -> Result<()> {
        if let Schedule::Laplacian { eps } = *self
            && !(eps.is_finite() && eps > 0.0)
        {
            return Err(Error::config(
                "eps",
                format!("must be a positive finite number, got {eps}"),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Laplacian { eps } => write!(f, "laplacian:{eps}"),
            Schedule::Metropolis => f.write_str("metropolis"),
            Schedule::Exact => f.write_str("exact"),
        }
    }
}

impl FromStr for Schedule {
    type Err = Error;

    /// Parses `laplacian:EPS`, `metropolis` or `exact`.
    fn from_str(s: &str) -> Result<Schedule> {
        let unknown = || Error::UnknownSchedule {
            name: s.to_string(),
            expected: SCHEDULE_NAMES,
        };
        let schedule = match s.split_once(':') {
            None => match s {
                "metropolis" => Schedule::Metropolis,
                "exact" => Schedule::Exact,
                _ => return Err(unknown()),
            },
            Some(("laplacian", eps)) => Schedule::Laplacian {
                eps: eps.parse().map_err(|_| unknown())?,
            },
            Some(_) => return Err(unknown()),
        };
        schedule.validate()?;
        Ok(schedule)
    }
}

/// One node's exchange in one round of the exact schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Pairing {
    /// The partner.
    pub(crate) peer: u32,
    /// Fraction of its own mass the node hands to the partner.
    pub(crate) give: f64,
    /// Fraction of the partner's mass the partner hands over.
    pub(crate) take: f64,
}

/// The dimension-exchange plan for `members` nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ExactPlan {
    members: u32,
    /// Largest power of two not above `members`.
    cube: u32,
    /// `log2 cube`.
    dims: u32,
}

impl ExactPlan {
    pub(crate) fn new(members: u32) -> ExactPlan {
        let dims = 31 - members.max(1).leading_zeros();
        ExactPlan {
            members,
            cube: 1 << dims,
            dims,
        }
    }

    fn folds(&self) -> bool {
        self.members > self.cube
    }

    /// Rounds until every node holds the exact mean.
    pub(crate) fn rounds(&self) -> u32 {
        self.dims + if self.folds() { 2 } else { 0 }
    }

    /// Whom `node` exchanges with in `round`, if anyone.
    pub(crate) fn pairing(&self, node: u32, round: u32) -> Option<Pairing> {
        let half = |peer| Pairing {
            peer,
            give: 0.5,
            take: 0.5,
        };
        if !self.folds() {
            return (round < self.dims).then(|| half(node ^ (1 << round)));
        }
        let extra = node >= self.cube;
        let has_extra = node + self.cube < self.members;
        match round {
            // Fold in: extra node b = a + 2^m hands all its mass to a.
            0 if extra => Some(Pairing {
                peer: node - self.cube,
                give: 1.0,
                take: 0.0,
            }),
            0 if has_extra => Some(Pairing {
                peer: node + self.cube,
                give: 0.0,
                take: 1.0,
            }),
            r if r >= 1 && r <= self.dims && !extra => Some(half(node ^ (1 << (r - 1)))),
            // Hand back: a gives b half of the mass it represents.
            r if r == self.dims + 1 && extra => Some(Pairing {
                peer: node - self.cube,
                give: 0.0,
                take: 0.5,
            }),
            r if r == self.dims + 1 && has_extra => Some(Pairing {
                peer: node + self.cube,
                give: 0.5,
                take: 0.0,
            }),
            _ => None,
        }
    }

    /// The round whose message from `node` the exact result of `witness`
    /// depends on: the one round in which `node`'s input (with all it
    /// gathered before) is handed towards `witness`. `None` when `node`
    /// is `witness` or a round count is out of range.
    ///
    /// Nobody can hold the exact mean before `node` has sent that message:
    /// a member that receives an exact result from `witness` before it
    /// sent its message for this round knows the result is forged.
    ///
    /// In the plain cube, `node` reaches `witness` in the round of the
    /// lowest bit in which they differ (in every earlier round the two
    /// halves that meet both contain `node`'s or neither). With folding,
    /// an extra member's mass leaves it in the fold-in round; a core member
    /// reaches the other cores through the cube's rounds (shifted by one),
    /// and its own extra through the hand-back round.
    pub(crate) fn carried_round(&self, witness: u32, node: u32) -> Option<u32> {
        if witness == node || witness >= self.members || node >= self.members {
            return None;
        }
        let lowest_difference = |a: u32, b: u32| (a ^ b).trailing_zeros();
        if !self.folds() {
            return Some(lowest_difference(witness, node));
        }
        let core = |m: u32| if m >= self.cube { m - self.cube } else { m };
        if node >= self.cube {
            return Some(0);
        }
        if core(witness) == node {
            // `witness` is `node`'s extra: it gets its share back last.
            return Some(self.dims + 1);
        }
        Some(1 + lowest_difference(core(witness), node))
    }

    /// Every pair `(round, a, b)` with `a < b` the plan uses.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        (0..self.rounds()).flat_map(move |r| {
            (0..self.members).filter_map(move |a| {
                self.pairing(a, r)
                    .filter(|p| p.peer > a)
                    .map(|p| (r, a, p.peer))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for s in ["metropolis", "exact", "laplacian:0.25"] {
            assert_eq!(s.parse::<Schedule>().unwrap().to_string(), s);
        }
        assert!(matches!(
            "chebyshev".parse::<Schedule>(),
            Err(Error::UnknownSchedule { .. })
        ));
        assert!(matches!(
            "laplacian:x".parse::<Schedule>(),
            Err(Error::UnknownSchedule { .. })
        ));
        assert!(matches!(
            "laplacian:-1".parse::<Schedule>(),
            Err(Error::InvalidConfig { field: "eps", .. })
        ));
        assert!(matches!(
            "laplacian:NaN".parse::<Schedule>(),
            Err(Error::InvalidConfig { field: "eps", .. })
        ));
    }

    #[test]
    fn round_counts() {
        for (n, rounds) in [
            (1, 0),
            (2, 1),
            (3, 3),
            (4, 2),
            (5, 4),
            (8, 3),
            (63, 7),
            (64, 6),
        ] {
            assert_eq!(ExactPlan::new(n).rounds(), rounds, "n = {n}");
            let ceil_log2 = 32 - (n - 1).leading_zeros();
            assert!(rounds <= ceil_log2 + 2);
        }
    }

    /// Pairings are symmetric and the masses exchanged are consistent.
    #[test]
    fn pairings_are_mutual() {
        for n in 1..=40u32 {
            let plan = ExactPlan::new(n);
            for r in 0..plan.rounds() {
                for a in 0..n {
                    if let Some(p) = plan.pairing(a, r) {
                        let q = plan.pairing(p.peer, r).expect("partner is paired");
                        assert_eq!(q.peer, a);
                        assert_eq!((q.give, q.take), (p.take, p.give));
                    }
                }
            }
        }
    }

    /// Running the plan on plain numbers gives the exact mean.
    #[test]
    fn plan_computes_the_mean() {
        for n in 1..=70u32 {
            let plan = ExactPlan::new(n);
            // (sum, weight) per node
            let mut mass: Vec<(f64, f64)> = (0..n).map(|i| (f64::from(i * i), 1.0)).collect();
            for r in 0..plan.rounds() {
                let before = mass.clone();
                for a in 0..n {
                    if let Some(p) = plan.pairing(a, r) {
                        let (me, them) = (before[a as usize], before[p.peer as usize]);
                        mass[a as usize].0 += p.take * them.0 - p.give * me.0;
                        mass[a as usize].1 += p.take * them.1 - p.give * me.1;
                    }
                }
            }
            let mean = (0..n).map(|i| f64::from(i * i)).sum::<f64>() / f64::from(n);
            for (s, w) in mass {
                assert!((s / w - mean).abs() <= 1e-12 * mean.max(1.0), "n = {n}");
            }
        }
    }

    /// `carried_round(p, q)` names a message of `q` that `p`'s result
    /// depends on: changing what `q` sends in that round (and nothing
    /// else) changes `p`'s final weight.
    #[test]
    fn a_result_depends_on_the_carried_round() {
        // Final weights of every node, with `q`'s message in `round`
        // (as its partner sees it) carrying one unit of weight too many.
        let run = |plan: &ExactPlan, n: u32, tampered: Option<(u32, u32)>| -> Vec<f64> {
            let mut weight = vec![1.0f64; n as usize];
            for r in 0..plan.rounds() {
                let before = weight.clone();
                for a in 0..n {
                    if let Some(p) = plan.pairing(a, r) {
                        let mut them = before[p.peer as usize];
                        if tampered == Some((p.peer, r)) {
                            them += 1.0;
                        }
                        weight[a as usize] += p.take * them - p.give * before[a as usize];
                    }
                }
            }
            weight
        };
        for n in 1..=40u32 {
            let plan = ExactPlan::new(n);
            let honest = run(&plan, n, None);
            for q in 0..n {
                for p in 0..n {
                    let Some(r) = plan.carried_round(p, q) else {
                        assert_eq!(p, q, "n = {n}");
                        continue;
                    };
                    assert!(r < plan.rounds(), "n = {n}, {p} from {q}: round {r}");
                    let tampered = run(&plan, n, Some((q, r)));
                    assert_ne!(
                        tampered[p as usize], honest[p as usize],
                        "n = {n}: {p}'s result does not depend on {q}'s round {r}"
                    );
                }
            }
            assert_eq!(plan.carried_round(0, n), None);
        }
    }
}
