//! The topology layer: who each member talks to, before and after
//! departures.
//!
//! Every member builds the same graph from the policy and the member count
//! (ranks are positions in the member list). When members depart, the
//! neighbour sets are repaired over the live members with
//! [`Graph::repaired`]: the border of every departed cluster is joined, so
//! the survivors stay connected, and the repair is monotone (more
//! departures never remove an edge between survivors), which is what the
//! engine requires of a neighbour set change. Links are opened by the lower
//! rank of each pair, so two members never dial each other at once.

use std::collections::HashMap;

use dac_core::{Graph, Result, Topology};

/// The communication graph of a job and its repairs.
#[derive(Debug)]
pub struct Neighbourhood {
    /// The graph before any departure.
    base: Graph,
    /// Repaired graphs and their diameter bounds, by sorted departed set.
    repairs: HashMap<Vec<usize>, (Graph, usize)>,
}

impl Neighbourhood {
    /// Builds the graph of `policy` for `size` members (`seed` draws random
    /// topologies and must be the same on every member).
    ///
    /// # Errors
    /// The graph constructor's error (for example a hypercube on a size that
    /// is not a power of two), or [`dac_core::Error::Disconnected`].
    pub fn new(policy: &Topology, size: usize, seed: u64) -> Result<Neighbourhood> {
        let base = policy.build(size, seed)?;
        base.check_connected()?;
        Ok(Neighbourhood {
            base,
            repairs: HashMap::new(),
        })
    }

    /// The graph before any departure.
    pub fn graph(&self) -> &Graph {
        &self.base
    }

    /// Member count.
    pub fn size(&self) -> usize {
        self.base.len()
    }

    /// The neighbours of `rank` once `departed` have left, and a bound on
    /// the diameter of the live graph.
    pub fn neighbours(&mut self, rank: usize, departed: &[usize]) -> (Vec<usize>, usize) {
        let mut key: Vec<usize> = departed.to_vec();
        key.sort_unstable();
        key.dedup();
        let n = self.base.len();
        if key.is_empty() {
            let bound = self.base.diameter_bound().unwrap_or(n);
            return (self.base.neighbors(rank).collect(), bound);
        }
        let base = &self.base;
        let (graph, bound) = self.repairs.entry(key).or_insert_with_key(|key| {
            let graph = base.repaired(key);
            let bound = graph.live_diameter_bound(key).unwrap_or(n);
            (graph, bound)
        });
        (graph.neighbors(rank).collect(), *bound)
    }

    /// Whether `rank` opens the link to `peer` (the lower rank dials).
    pub fn dials(rank: usize, peer: usize) -> bool {
        rank < peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repairs_keep_survivors_connected_and_only_add_edges() {
        for name in [
            "ring",
            "exponential",
            "torus",
            "random-regular:3",
            "complete",
        ] {
            let policy: Topology = name.parse().unwrap();
            let n = 16;
            let mut hood = Neighbourhood::new(&policy, n, 3).unwrap();
            let mut departed = Vec::new();
            let mut before: Vec<Vec<usize>> = (0..n).map(|r| hood.neighbours(r, &[]).0).collect();
            for gone in [5, 6, 0, 11] {
                departed.push(gone);
                let mut edges = Vec::new();
                for r in (0..n).filter(|r| !departed.contains(r)) {
                    let (now, bound) = hood.neighbours(r, &departed);
                    assert!(bound >= 1 && bound < n, "{name}");
                    assert!(!now.iter().any(|p| departed.contains(p)), "{name}");
                    // Monotone: every live neighbour from before is kept.
                    for p in before[r].iter().filter(|p| !departed.contains(p)) {
                        assert!(now.contains(p), "{name}: {r} lost {p}");
                    }
                    edges.extend(now.iter().filter(|&&p| p > r).map(|&p| (r, p)));
                    before[r] = now;
                }
                // The survivors form one connected graph.
                let live: Vec<usize> = (0..n).filter(|r| !departed.contains(r)).collect();
                let index = |r: usize| live.iter().position(|&x| x == r).unwrap();
                let relabelled: Vec<_> = edges.iter().map(|&(a, b)| (index(a), index(b))).collect();
                let g = Graph::from_edges(live.len(), &relabelled).unwrap();
                assert!(g.is_connected(), "{name} after {departed:?}");
            }
        }
    }

    #[test]
    fn explicit_edge_lists_and_bad_policies() {
        let policy: Topology = "edges:0-1,1-2,2-3".parse().unwrap();
        let mut hood = Neighbourhood::new(&policy, 4, 0).unwrap();
        assert_eq!(hood.neighbours(1, &[]).0, vec![0, 2]);
        // Losing the path's middle joins its two sides.
        assert_eq!(hood.neighbours(0, &[1]).0, vec![2]);
        let disconnected: Topology = "edges:0-1,2-3".parse().unwrap();
        assert!(Neighbourhood::new(&disconnected, 4, 0).is_err());
        assert!(Neighbourhood::new(&Topology::Hypercube, 6, 0).is_err());
        assert!("star".parse::<Topology>().is_err());
        assert!(Neighbourhood::dials(0, 1) && !Neighbourhood::dials(1, 0));
    }
}
