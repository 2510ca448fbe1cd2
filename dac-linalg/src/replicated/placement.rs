//! Which ranks hold which partitions, and how much replication a job needs.

use crate::error::{LinalgError, Result};

/// Which ranks hold each partition of a job's data, computed the same way
/// on every rank.
///
/// `holders(p)` lists the holders of partition `p` in order of preference.
/// The first live one contributes `p` to a reduction and the others stand by.
/// The placement is greedy and deterministic:
/// - each partition takes the least-loaded ranks, so that no rank holds more
///   than one partition over any other;
/// - among equally loaded ranks it avoids a holder set some earlier
///   partition already has, where it can;
/// - after that it prefers the ranks that share the fewest partitions with
///   the holders already picked.
///
/// So one crash never takes two partitions' last holders at once when that
/// can be avoided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    ranks: usize,
    holders: Vec<Vec<usize>>,
}

impl Placement {
    /// `partitions` partitions over `ranks` ranks, each held by `replicas`
    /// distinct ranks.
    ///
    /// # Errors
    /// [`LinalgError::InvalidArgument`] when `partitions` or `ranks` is 0,
    /// or `replicas` is not in `1..=ranks`.
    pub fn new(partitions: usize, ranks: usize, replicas: usize) -> Result<Placement> {
        if replicas == 0 || replicas > ranks {
            return Err(invalid(format!(
                "replicas = {replicas} must lie in 1..={ranks} (the number of ranks)"
            )));
        }
        Placement::with_counts(ranks, &vec![replicas; partitions], None)
    }

    /// A placement with `counts[p]` holders for partition `p`. With
    /// `fail_probs` (one failure probability per rank), the most reliable
    /// ranks are preferred among equally loaded ones, and each partition's
    /// holders are listed most reliable first.
    ///
    /// # Errors
    /// [`LinalgError::InvalidArgument`] for no partitions or ranks, a count
    /// outside `1..=ranks`, or probabilities that are not one per rank in
    /// `[0, 1]`.
    pub fn with_counts(
        ranks: usize,
        counts: &[usize],
        fail_probs: Option<&[f64]>,
    ) -> Result<Placement> {
        if ranks == 0 || counts.is_empty() {
            return Err(invalid(format!(
                "a placement needs at least one rank and one partition (got {ranks} rank(s), {} partition(s))",
                counts.len()
            )));
        }
        if let Some((p, &c)) = counts
            .iter()
            .enumerate()
            .find(|(_, c)| **c == 0 || **c > ranks)
        {
            return Err(invalid(format!(
                "partition {p} would have {c} holders; it needs 1..={ranks}"
            )));
        }
        if let Some(probs) = fail_probs {
            check_probs(probs, ranks)?;
        }
        let reliability = |r: usize| fail_probs.map_or(0.0, |p| p[r]);
        let mut load = vec![0usize; ranks];
        // together[a][b]: partitions that a and b both hold.
        let mut together = vec![vec![0usize; ranks]; ranks];
        let mut used: Vec<Vec<usize>> = Vec::new();
        let mut holders = Vec::with_capacity(counts.len());
        for (p, &count) in counts.iter().enumerate() {
            let mut chosen: Vec<usize> = Vec::with_capacity(count);
            while chosen.len() < count {
                let last = chosen.len() + 1 == count;
                let best = (0..ranks).filter(|r| !chosen.contains(r)).min_by(|&a, &b| {
                    let key = |r: usize| {
                        let repeats = last && {
                            let mut set = chosen.clone();
                            set.push(r);
                            set.sort_unstable();
                            used.contains(&set)
                        };
                        let shared: usize = chosen.iter().map(|&c| together[c][r]).sum();
                        // Rotating the tie-break spreads the first
                        // (contributing) holder over the ranks.
                        (load[r], repeats, shared, (r + ranks - p % ranks) % ranks)
                    };
                    let (ka, kb) = (key(a), key(b));
                    (ka.0, ka.1, ka.2)
                        .cmp(&(kb.0, kb.1, kb.2))
                        .then(reliability(a).total_cmp(&reliability(b)))
                        .then(ka.3.cmp(&kb.3))
                });
                let Some(r) = best else { break };
                for &c in &chosen {
                    together[c][r] += 1;
                    together[r][c] += 1;
                }
                load[r] += 1;
                chosen.push(r);
            }
            let mut set = chosen.clone();
            set.sort_unstable();
            used.push(set);
            if fail_probs.is_some() {
                chosen.sort_by(|&a, &b| reliability(a).total_cmp(&reliability(b)));
            }
            holders.push(chosen);
        }
        if fail_probs.is_none() {
            // Spread the contributing (first) holder over the ranks: each
            // partition leads with the holder that leads the fewest so far.
            let mut leads = vec![0usize; ranks];
            for hs in &mut holders {
                if let Some(best) = (0..hs.len()).min_by_key(|&i| (leads[hs[i]], i)) {
                    hs.swap(0, best);
                    leads[hs[0]] += 1;
                }
            }
        }
        Ok(Placement { ranks, holders })
    }

    /// Number of partitions.
    pub fn partitions(&self) -> usize {
        self.holders.len()
    }

    /// Number of ranks.
    pub fn ranks(&self) -> usize {
        self.ranks
    }

    /// The holders of partition `p`, in order of preference (empty for a
    /// partition that does not exist).
    pub fn holders(&self, p: usize) -> &[usize] {
        self.holders.get(p).map_or(&[], Vec::as_slice)
    }

    /// Adds `rank` as the last holder of partition `p` (healing), unless it
    /// holds it already.
    pub(crate) fn add_holder(&mut self, p: usize, rank: usize) {
        if let Some(holders) = self.holders.get_mut(p)
            && !holders.contains(&rank)
        {
            holders.push(rank);
        }
    }

    /// Gives up `rank`'s holding of partition `p` (a move to a joiner).
    pub(crate) fn remove_holder(&mut self, p: usize, rank: usize) {
        if let Some(holders) = self.holders.get_mut(p) {
            holders.retain(|&h| h != rank);
        }
    }

    /// The placement as it was handed to a joiner: `ranks` ranks (at least
    /// as many as before) and these holders.
    pub(crate) fn from_parts(ranks: usize, holders: Vec<Vec<usize>>) -> Placement {
        Placement { ranks, holders }
    }

    /// Every partition's holders, in order.
    pub(crate) fn all_holders(&self) -> &[Vec<usize>] {
        &self.holders
    }

    /// Grows the job to `ranks` ranks; the new ones hold nothing yet.
    pub(crate) fn grow(&mut self, ranks: usize) {
        self.ranks = self.ranks.max(ranks);
    }

    /// The partitions `rank` holds, ascending.
    pub fn held_by(&self, rank: usize) -> Vec<usize> {
        (0..self.partitions())
            .filter(|&p| self.holders[p].contains(&rank))
            .collect()
    }

    /// Holder slots in all (`Σ_p holders(p).len()`).
    pub fn total_holders(&self) -> usize {
        self.holders.iter().map(Vec::len).sum()
    }

    /// Probability that some partition loses every holder when rank `i`
    /// fails independently with probability `fail_probs[i]`:
    /// `1 − Π_p (1 − Π_{h ∈ holders(p)} fail_probs[h])`.
    ///
    /// # Errors
    /// [`LinalgError::InvalidArgument`] unless there is one probability in
    /// `[0, 1]` per rank.
    pub fn loss_probability(&self, fail_probs: &[f64]) -> Result<f64> {
        check_probs(fail_probs, self.ranks)?;
        // 1 − Π(1 − q) as −expm1(Σ ln(1 − q)): accurate when it is tiny.
        let log_survive: f64 = self
            .holders
            .iter()
            .map(|hs| (-hs.iter().map(|&h| fail_probs[h]).product::<f64>()).ln_1p())
            .sum();
        Ok(-log_survive.exp_m1())
    }
}

/// The replication [`replication_factor`] chose.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicationPlan {
    /// The replication factor `r = M / m` (fractional when some partitions
    /// have one holder more than others).
    pub factor: f64,
    /// `M`: holder slots in all.
    pub holders: usize,
    /// The probability that some partition loses all its holders, for
    /// this placement.
    pub loss_probability: f64,
    /// The placement: one partition per rank, `⌊r⌋` or `⌊r⌋ + 1` holders
    /// each; the partitions of the least reliable ranks get the extra
    /// replicas first.
    pub placement: Placement,
}

/// The smallest replication that keeps the probability that some
/// partition loses all its holders at or below `delta`, when rank `i`
/// fails independently with probability `fail_probs[i]`.
///
/// There are `m = fail_probs.len()` ranks and `m` partitions. Partition
/// `i` starts on rank `i`, so the data is spread as it was gathered. The
/// function tries `M = m, m + 1, …, m²` holder slots in all (`r = M / m`).
/// The partitions whose own rank is least reliable get the extra replicas
/// first. Each replica goes to a least-loaded rank, the most reliable among
/// equals. The loss probability of the resulting placement is
/// `P = 1 − Π_p (1 − Π_{h ∈ holders(p)} p_h)`. With equal probabilities
/// this is the closed form
/// `P = 1 − (1 − p^(a+1))^(M − a·m) · (1 − p^a)^((a+1)·m − M)`, `a = ⌊r⌋`.
///
/// # Errors
/// [`LinalgError::InvalidArgument`] for no ranks, probabilities outside
/// `[0, 1]`, `delta` outside `(0, 1)`, or a `delta` that even full
/// replication (every rank holds everything) cannot reach.
pub fn replication_factor(fail_probs: &[f64], delta: f64) -> Result<ReplicationPlan> {
    let m = fail_probs.len();
    if m == 0 {
        return Err(invalid("replication needs at least one rank".into()));
    }
    check_probs(fail_probs, m)?;
    if !(delta > 0.0 && delta < 1.0) {
        return Err(invalid(format!("delta = {delta} must lie in (0, 1)")));
    }
    // Partitions by their own rank's failure probability, least reliable
    // first (ties by id).
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| fail_probs[b].total_cmp(&fail_probs[a]).then(a.cmp(&b)));
    for total in m..=m * m {
        let (a, extra) = (total / m, total % m);
        let mut counts = vec![a; m];
        for &p in order.iter().take(extra) {
            counts[p] += 1;
        }
        let placement = placement_from_home(m, &counts, fail_probs)?;
        let loss = placement.loss_probability(fail_probs)?;
        if loss <= delta {
            return Ok(ReplicationPlan {
                factor: total as f64 / m as f64,
                holders: total,
                loss_probability: loss,
                placement,
            });
        }
    }
    let full = placement_from_home(m, &vec![m; m], fail_probs)?.loss_probability(fail_probs)?;
    Err(invalid(format!(
        "delta = {delta:e} is out of reach: even with every rank holding everything the loss probability is {full:e}"
    )))
}

/// Partition `p` on its home rank `p` first, then replicas greedily.
fn placement_from_home(m: usize, counts: &[usize], fail_probs: &[f64]) -> Result<Placement> {
    let mut load = vec![1usize; m];
    let mut holders: Vec<Vec<usize>> = (0..m).map(|p| vec![p]).collect();
    // Hand out replicas one round at a time, so that every partition gets
    // its second holder before any gets a third.
    let most = counts.iter().copied().max().unwrap_or(1);
    for level in 1..most {
        for p in 0..m {
            if counts[p] <= level {
                continue;
            }
            let best = (0..m).filter(|r| !holders[p].contains(r)).min_by(|&a, &b| {
                load[a]
                    .cmp(&load[b])
                    .then(fail_probs[a].total_cmp(&fail_probs[b]))
                    .then(((a + m - p) % m).cmp(&((b + m - p) % m)))
            });
            let Some(r) = best else {
                return Err(invalid(format!(
                    "partition {p} cannot have {} holders",
                    counts[p]
                )));
            };
            load[r] += 1;
            holders[p].push(r);
        }
    }
    Ok(Placement { ranks: m, holders })
}

fn check_probs(probs: &[f64], ranks: usize) -> Result<()> {
    if probs.len() != ranks {
        return Err(invalid(format!(
            "{} failure probabilities for {ranks} ranks",
            probs.len()
        )));
    }
    if let Some((i, p)) = probs
        .iter()
        .enumerate()
        .find(|(_, p)| !(0.0..=1.0).contains(*p))
    {
        return Err(invalid(format!(
            "the failure probability of rank {i} is {p}; it must lie in [0, 1]"
        )));
    }
    Ok(())
}

fn invalid(detail: String) -> LinalgError {
    LinalgError::InvalidArgument {
        ranks: Vec::new(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_balanced(pl: &Placement) {
        let loads: Vec<usize> = (0..pl.ranks()).map(|r| pl.held_by(r).len()).collect();
        let (lo, hi) = (loads.iter().min().copied(), loads.iter().max().copied());
        assert!(hi.unwrap_or(0) - lo.unwrap_or(0) <= 1, "loads {loads:?}");
    }

    #[test]
    fn every_partition_has_distinct_holders_and_the_load_is_balanced() {
        for ranks in 1..=9 {
            for replicas in 1..=ranks.min(4) {
                for partitions in [1, 2, 5, 16, 33] {
                    let pl = Placement::new(partitions, ranks, replicas).unwrap();
                    assert_eq!(pl.partitions(), partitions);
                    for p in 0..partitions {
                        let h = pl.holders(p);
                        assert_eq!(h.len(), replicas);
                        let mut s = h.to_vec();
                        s.sort_unstable();
                        s.dedup();
                        assert_eq!(s.len(), replicas, "partition {p}: {h:?}");
                        assert!(h.iter().all(|&r| r < ranks));
                    }
                    assert_eq!(pl.total_holders(), partitions * replicas);
                    check_balanced(&pl);
                    assert_eq!(pl, Placement::new(partitions, ranks, replicas).unwrap());
                }
            }
        }
    }

    #[test]
    fn holder_sets_are_distinct_when_there_are_enough() {
        // 16 partitions, pairs of 8 ranks: 28 possible pairs.
        let pl = Placement::new(16, 8, 2).unwrap();
        let mut sets: Vec<Vec<usize>> = (0..16)
            .map(|p| {
                let mut s = pl.holders(p).to_vec();
                s.sort_unstable();
                s
            })
            .collect();
        sets.sort();
        sets.dedup();
        assert_eq!(sets.len(), 16);
        // Every rank contributes (is first holder of) some partition.
        for r in 0..8 {
            assert!((0..16).any(|p| pl.holders(p)[0] == r), "rank {r}");
        }
    }

    #[test]
    fn bad_placements_are_rejected() {
        assert!(Placement::new(4, 3, 0).is_err());
        assert!(Placement::new(4, 3, 4).is_err());
        assert!(Placement::new(0, 3, 1).is_err());
        assert!(Placement::new(4, 0, 1).is_err());
        assert!(Placement::with_counts(3, &[1, 0], None).is_err());
        assert!(Placement::with_counts(3, &[1, 2], Some(&[0.1, 0.2])).is_err());
        assert!(Placement::with_counts(3, &[1, 2], Some(&[0.1, 0.2, 1.5])).is_err());
        assert!(
            Placement::new(4, 3, 1)
                .unwrap()
                .loss_probability(&[0.1])
                .is_err()
        );
    }

    /// The closed form for equal failure probabilities.
    fn closed_form(p: f64, m: usize, total: usize) -> f64 {
        let a = total / m;
        let (hi, lo) = ((total - a * m) as f64, ((a + 1) * m - total) as f64);
        // 1 − (1 − x)^hi (1 − y)^lo, computed without cancellation.
        let (x, y) = (p.powi(a as i32 + 1), p.powi(a as i32));
        -(hi * (-x).ln_1p() + lo * (-y).ln_1p()).exp_m1()
    }

    #[test]
    fn the_replication_factor_matches_the_closed_form_for_equal_probabilities() {
        for &(m, p, delta) in &[
            (8, 0.1, 1e-3),
            (8, 0.1, 1e-6),
            (10, 0.05, 1e-4),
            (5, 0.3, 2e-2),
            (16, 0.01, 1e-9),
            (3, 0.5, 0.4),
        ] {
            let plan = replication_factor(&vec![p; m], delta).unwrap();
            let total = plan.holders;
            let want = closed_form(p, m, total);
            assert!(
                (plan.loss_probability - want).abs() <= 1e-12 * want.max(1e-300),
                "m={m} p={p}: {} vs closed form {want}",
                plan.loss_probability
            );
            assert!(plan.loss_probability <= delta);
            // The smallest: one slot fewer misses delta.
            if total > m {
                assert!(
                    closed_form(p, m, total - 1) > delta,
                    "m={m} p={p} M={total}"
                );
            }
            assert!((plan.factor - total as f64 / m as f64).abs() < 1e-15);
            assert_eq!(plan.placement.total_holders(), total);
            check_balanced(&plan.placement);
        }
    }

    #[test]
    fn extra_replicas_go_to_the_least_reliable_ranks_first() {
        let probs = [0.01, 0.3, 0.02, 0.2, 0.01, 0.01];
        let plan = replication_factor(&probs, 0.05).unwrap();
        let counts: Vec<usize> = (0..6).map(|p| plan.placement.holders(p).len()).collect();
        let a = plan.holders / 6;
        // The fractional part goes to ranks 1 and 3 (the least reliable) first.
        assert!(!plan.holders.is_multiple_of(6), "plan {plan:?}");
        assert!(counts[1] == a + 1, "counts {counts:?}");
        let exact = plan.placement.loss_probability(&probs).unwrap();
        assert!((exact - plan.loss_probability).abs() < 1e-15 && exact <= 0.05);
        // One slot fewer (taken from the most reliable of the partitions
        // that had an extra one) would not do.
        let mut fewer = counts.clone();
        let last = [1, 3, 2, 0, 4, 5]
            .into_iter()
            .rfind(|&p| fewer[p] == a + 1)
            .unwrap();
        fewer[last] -= 1;
        let loss = placement_from_home(6, &fewer, &probs)
            .unwrap()
            .loss_probability(&probs)
            .unwrap();
        assert!(loss > 0.05, "{loss}");
    }

    #[test]
    fn unreachable_or_invalid_targets_are_errors() {
        assert!(replication_factor(&[1.0, 1.0], 0.5).is_err());
        assert!(replication_factor(&[0.1, 0.1], 0.0).is_err());
        assert!(replication_factor(&[0.1, 0.1], 1.0).is_err());
        assert!(replication_factor(&[], 0.1).is_err());
        assert!(replication_factor(&[0.1, f64::NAN], 0.1).is_err());
        // Reliable ranks need no replication.
        let plan = replication_factor(&[0.0; 4], 1e-9).unwrap();
        assert_eq!((plan.holders, plan.factor), (4, 1.0));
    }
}
