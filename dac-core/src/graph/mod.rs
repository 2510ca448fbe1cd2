//! Undirected communication graphs: constructors, structure queries and
//! spectra.
//!
//! A [`Graph`] is stored in compressed sparse row form (one sorted neighbour
//! slice per node), so a random 4-regular graph on a million nodes takes
//! about 20 MB. Every constructor returns a simple graph: no self-loops, no
//! parallel edges.

mod generate;
mod repair;
mod spectrum;
#[cfg(test)]
mod tests;

pub use spectrum::{SPECTRUM_MAX_NODES, Spectrum, Weights};

use crate::error::{Error, Result};

/// Largest node count a [`Graph`] can hold (ids are stored as `u32`).
pub const MAX_NODES: usize = u32::MAX as usize;

/// An undirected simple graph over nodes `0..n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Graph {
    /// `offsets[i]..offsets[i + 1]` is node `i`'s range in `targets`.
    offsets: Vec<u32>,
    /// Neighbour ids, sorted ascending within each node's range.
    targets: Vec<u32>,
    /// Every node looks the same (circulant graphs, tori, hypercubes), so
    /// one eccentricity is the diameter.
    vertex_transitive: bool,
}

impl Graph {
    /// Builds a graph from an explicit edge list, rejecting self-loops,
    /// out-of-range ids and repeated edges (in either orientation).
    ///
    /// # Errors
    /// [`Error::SelfLoop`], [`Error::NodeOutOfRange`] or
    /// [`Error::DuplicateEdge`] naming the first offending edge.
    pub fn from_edges(nodes: usize, edges: &[(usize, usize)]) -> Result<Graph> {
        check_node_count(nodes)?;
        let mut seen = Vec::with_capacity(edges.len());
        for &(a, b) in edges {
            if a >= nodes || b >= nodes {
                return Err(Error::NodeOutOfRange { a, b, nodes });
            }
            if a == b {
                return Err(Error::SelfLoop { node: a });
            }
            seen.push((a.min(b), a.max(b)));
        }
        seen.sort_unstable();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::DuplicateEdge {
                a: w[0].0,
                b: w[0].1,
            });
        }
        Ok(Graph::from_pairs(
            nodes,
            seen.into_iter().map(|(a, b)| (a as u32, b as u32)),
            false,
        ))
    }

    /// Builds the CSR form from undirected pairs, dropping self-loops and
    /// repeated pairs (generators rely on this for small `n`, where
    /// `i + 1` and `i - 1` coincide).
    pub(crate) fn from_pairs(
        nodes: usize,
        pairs: impl Iterator<Item = (u32, u32)> + Clone,
        vertex_transitive: bool,
    ) -> Graph {
        let mut degree = vec![0u32; nodes + 1];
        for (a, b) in pairs.clone().filter(|(a, b)| a != b) {
            degree[a as usize] += 1;
            degree[b as usize] += 1;
        }
        let mut offsets = Vec::with_capacity(nodes + 1);
        let mut total = 0u32;
        offsets.push(0);
        for d in &degree[..nodes] {
            total += d;
            offsets.push(total);
        }
        let mut cursor: Vec<u32> = offsets[..nodes].to_vec();
        let mut targets = vec![0u32; total as usize];
        for (a, b) in pairs.filter(|(a, b)| a != b) {
            targets[cursor[a as usize] as usize] = b;
            cursor[a as usize] += 1;
            targets[cursor[b as usize] as usize] = a;
            cursor[b as usize] += 1;
        }
        // Sort and deduplicate each row, then compact.
        let mut write = 0usize;
        let mut new_offsets = Vec::with_capacity(nodes + 1);
        new_offsets.push(0u32);
        for i in 0..nodes {
            let (lo, hi) = (offsets[i] as usize, offsets[i + 1] as usize);
            targets[lo..hi].sort_unstable();
            let mut last = None;
            for k in lo..hi {
                let t = targets[k];
                if last != Some(t) {
                    targets[write] = t;
                    write += 1;
                    last = Some(t);
                }
            }
            new_offsets.push(write as u32);
        }
        targets.truncate(write);
        targets.shrink_to_fit();
        Graph {
            offsets: new_offsets,
            targets,
            vertex_transitive,
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// True for the graph with no nodes (no constructor produces one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of undirected edges.
    pub fn edge_count(&self) -> usize {
        self.targets.len() / 2
    }

    /// Neighbours of `node`, ascending.
    ///
    /// # Panics
    /// If `node >= self.len()`.
    pub fn neighbors(&self, node: usize) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.row(node).iter().map(|&j| j as usize)
    }

    /// Neighbour ids of `node` in storage form (hot loops avoid the
    /// conversion to `usize`).
    pub(crate) fn row(&self, node: usize) -> &[u32] {
        &self.targets[self.offsets[node] as usize..self.offsets[node + 1] as usize]
    }

    /// Number of neighbours of `node`.
    ///
    /// # Panics
    /// If `node >= self.len()`.
    pub fn degree(&self, node: usize) -> usize {
        (self.offsets[node + 1] - self.offsets[node]) as usize
    }

    /// Largest degree (0 for a single node).
    pub fn max_degree(&self) -> usize {
        (0..self.len()).map(|i| self.degree(i)).max().unwrap_or(0)
    }

    /// Smallest degree.
    pub fn min_degree(&self) -> usize {
        (0..self.len()).map(|i| self.degree(i)).min().unwrap_or(0)
    }

    /// True when `a` and `b` are adjacent.
    pub fn has_edge(&self, a: usize, b: usize) -> bool {
        a < self.len() && b < self.len() && self.row(a).binary_search(&(b as u32)).is_ok()
    }

    /// All edges `(a, b)` with `a < b`, in ascending order.
    pub fn edges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.len()).flat_map(move |a| {
            self.row(a)
                .iter()
                .filter(move |&&b| b as usize > a)
                .map(move |&b| (a, b as usize))
        })
    }

    /// Breadth-first distances from `source` into `dist` (`u32::MAX` for
    /// unreachable nodes); returns (nodes reached, eccentricity of source).
    fn bfs(&self, source: usize, dist: &mut [u32], queue: &mut Vec<u32>) -> (usize, u32) {
        dist.fill(u32::MAX);
        queue.clear();
        dist[source] = 0;
        queue.push(source as u32);
        let mut head = 0;
        let mut far = 0;
        while head < queue.len() {
            let u = queue[head] as usize;
            head += 1;
            let du = dist[u];
            far = far.max(du);
            for &v in self.row(u) {
                if dist[v as usize] == u32::MAX {
                    dist[v as usize] = du + 1;
                    queue.push(v);
                }
            }
        }
        (queue.len(), far)
    }

    /// Number of connected components.
    pub fn components(&self) -> usize {
        let mut dist = vec![u32::MAX; self.len()];
        let mut queue = Vec::new();
        let mut components = 0;
        let mut label = vec![false; self.len()];
        for s in 0..self.len() {
            if label[s] {
                continue;
            }
            components += 1;
            self.bfs(s, &mut dist, &mut queue);
            for &v in &queue {
                label[v as usize] = true;
            }
        }
        components
    }

    /// True when every node can reach every other node.
    pub fn is_connected(&self) -> bool {
        self.check_connected().is_ok()
    }

    /// Returns [`Error::Disconnected`] unless the graph is connected.
    pub fn check_connected(&self) -> Result<()> {
        if self.len() <= 1 {
            return Ok(());
        }
        let mut dist = vec![u32::MAX; self.len()];
        let (reached, _) = self.bfs(0, &mut dist, &mut Vec::new());
        if reached == self.len() {
            Ok(())
        } else {
            Err(Error::Disconnected {
                components: self.components(),
                reached,
                nodes: self.len(),
            })
        }
    }

    /// Largest distance from `node` to any other node, or `None` if some
    /// node is unreachable.
    pub fn eccentricity(&self, node: usize) -> Option<usize> {
        let mut dist = vec![u32::MAX; self.len()];
        let (reached, far) = self.bfs(node, &mut dist, &mut Vec::new());
        (reached == self.len()).then_some(far as usize)
    }

    /// Exact diameter (largest shortest-path distance), or `None` if the
    /// graph is disconnected.
    ///
    /// Costs one breadth-first search per node (`O(n·(n + m))`), except for
    /// vertex-transitive graphs (complete, ring, torus, exponential,
    /// hypercube), where one search suffices.
    pub fn diameter(&self) -> Option<usize> {
        if self.vertex_transitive {
            return self.eccentricity(0);
        }
        let mut dist = vec![u32::MAX; self.len()];
        let mut queue = Vec::new();
        let mut diameter = 0;
        for s in 0..self.len() {
            let (reached, far) = self.bfs(s, &mut dist, &mut queue);
            if reached != self.len() {
                return None;
            }
            diameter = diameter.max(far as usize);
        }
        Some(diameter)
    }

    /// An upper bound on the diameter that is cheap on large graphs: the
    /// exact diameter when `n·(n + m)` is at most 10⁸, otherwise twice the
    /// eccentricity of node 0. `None` if the graph is disconnected.
    pub fn diameter_bound(&self) -> Option<usize> {
        let work = self.len() as u64 * (self.len() + self.targets.len()) as u64;
        if self.vertex_transitive || work <= 100_000_000 {
            self.diameter()
        } else {
            self.eccentricity(0).map(|e| 2 * e)
        }
    }

    /// Largest distance between two nodes not in `departed`, bounded as in
    /// [`Graph::diameter_bound`]; `None` if the other nodes are not all
    /// connected. Used after departures, when departed nodes are isolated.
    pub fn live_diameter_bound(&self, departed: &[usize]) -> Option<usize> {
        let n = self.len();
        let mut gone = vec![false; n];
        for &d in departed {
            if d < n {
                gone[d] = true;
            }
        }
        let live: Vec<usize> = (0..n).filter(|&i| !gone[i]).collect();
        let first = *live.first()?;
        let mut dist = vec![u32::MAX; n];
        let mut queue = Vec::new();
        let (reached, far) = self.bfs(first, &mut dist, &mut queue);
        if reached != live.len() {
            return None;
        }
        let work = live.len() as u64 * (live.len() + self.targets.len()) as u64;
        if work > 100_000_000 {
            return Some(2 * far as usize);
        }
        let mut diameter = far as usize;
        for &s in &live[1..] {
            diameter = diameter.max(self.bfs(s, &mut dist, &mut queue).1 as usize);
        }
        Some(diameter)
    }
}

fn check_node_count(nodes: usize) -> Result<()> {
    if nodes == 0 {
        return Err(Error::graph("a graph needs at least one node"));
    }
    if nodes > MAX_NODES {
        return Err(Error::graph(format!(
            "{nodes} nodes exceed the limit of {MAX_NODES}"
        )));
    }
    Ok(())
}
