//! Keeping the live graph connected after members depart.

use super::Graph;

impl Graph {
    /// The graph the survivors use after `departed` have left: their edges
    /// are removed and, for every cluster of departed nodes (connected in
    /// the original graph), the live nodes bordering the cluster are joined
    /// in a ring in ascending id order.
    ///
    /// Any path of the original graph that ran through a cluster can be
    /// rerouted along that ring, so the survivors stay connected whenever
    /// the original graph was connected. The result depends only on the
    /// *set* of departed nodes, never on the order in which they left, so
    /// every member computes the same graph. Departed nodes keep their ids
    /// and have no edges; ids outside `0..n` are ignored.
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
            match border.len() {
                0 | 1 => {}
                2 => pairs.push((border[0], border[1])),
                k => pairs.extend((0..k).map(|i| (border[i], border[(i + 1) % k]))),
            }
        }
        Graph::from_pairs(n, pairs.into_iter(), false)
    }
}
