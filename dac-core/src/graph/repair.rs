//! Keeping the live graph connected after members depart.

use super::Graph;

impl Graph {
    /// The graph the survivors use after `departed` have left: their edges
    /// are removed and, for every cluster of departed nodes (connected in
    /// the original graph), the live nodes bordering the cluster are joined
    /// pairwise.
    ///
    /// Any path of the original graph that ran through a cluster can be
    /// rerouted across its border, so the survivors stay connected whenever
    /// the original graph was connected. The result depends only on the
    /// *set* of departed nodes, so every member computes the same graph,
    /// and it is monotone: more departures never remove an edge between two
    /// survivors (a merged cluster's border contains the old borders), so
    /// members that learn of departures in different orders only ever add
    /// edges. The price is degree: a departed node of degree `k` adds up to
    /// `k − 1` edges to each of its neighbours. Departed nodes keep their
    /// ids and have no edges; ids outside `0..n` are ignored.
    pub fn repaired(&self, departed: &[usize]) -> Graph {
        let n = self.len();
        let mut gone = vec![false; n];
        for &d in departed.iter().filter(|&&d| d < n) {
            gone[d] = true;
        }
        let mut pairs: Vec<(u32, u32)> = self
            .edges()
            .filter(|&(a, b)| !gone[a] && !gone[b])
            .map(|(a, b)| (a as u32, b as u32))
            .collect();

        // Walk each cluster of departed nodes and collect its live border.
        let mut visited = vec![false; n];
        let mut stack = Vec::new();
        let mut border = Vec::new();
        for start in 0..n {
            if !gone[start] || visited[start] {
                continue;
            }
            visited[start] = true;
            stack.push(start);
            border.clear();
            while let Some(u) = stack.pop() {
                for &v in self.row(u) {
                    let v = v as usize;
                    if !gone[v] {
                        border.push(v as u32);
                    } else if !visited[v] {
                        visited[v] = true;
                        stack.push(v);
                    }
                }
            }
            border.sort_unstable();
            border.dedup();
            for (i, &a) in border.iter().enumerate() {
                pairs.extend(border[i + 1..].iter().map(|&b| (a, b)));
            }
        }
        Graph::from_pairs(n, pairs.into_iter(), false)
    }
}
