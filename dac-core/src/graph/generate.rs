//! Graph generators: complete, ring, torus, random regular, exponential,
//! hypercube.

use std::collections::HashMap;

use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use super::{Graph, check_node_count};
use crate::error::{Error, Result};

/// Largest number of directed adjacency entries a [`Graph`] stores.
const MAX_HALF_EDGES: u64 = u32::MAX as u64;

fn check_half_edges(nodes: usize, degree: u64) -> Result<()> {
    if nodes as u64 * degree > MAX_HALF_EDGES {
        return Err(Error::graph(format!(
            "{nodes} nodes of degree {degree} exceed the adjacency limit of {MAX_HALF_EDGES} entries"
        )));
    }
    Ok(())
}

impl Graph {
    /// The complete graph: every pair of nodes is adjacent.
    ///
    /// # Errors
    /// [`Error::InvalidGraph`] for `nodes == 0` or more than 65 536 nodes.
    pub fn complete(nodes: usize) -> Result<Graph> {
        check_node_count(nodes)?;
        check_half_edges(nodes, nodes as u64 - 1)?;
        let n = nodes as u32;
        let pairs = (0..n).flat_map(move |a| (a + 1..n).map(move |b| (a, b)));
        Ok(Graph::from_pairs(nodes, pairs, true))
    }

    /// The cycle `0 – 1 – … – (n−1) – 0` (a single edge for two nodes).
    ///
    /// # Errors
    /// [`Error::InvalidGraph`] for `nodes == 0`.
    pub fn ring(nodes: usize) -> Result<Graph> {
        check_node_count(nodes)?;
        let n = nodes as u32;
        Ok(Graph::from_pairs(
            nodes,
            (0..n).map(move |i| (i, (i + 1) % n)),
            true,
        ))
    }

    /// The `rows × cols` two-dimensional torus (wrap-around grid); node
    /// `r·cols + c` sits at row `r`, column `c`. A side of length 1 or 2
    /// collapses to a ring or a path without parallel edges.
    ///
    /// # Errors
    /// [`Error::InvalidGraph`] if a side is zero.
    pub fn torus(rows: usize, cols: usize) -> Result<Graph> {
        if rows == 0 || cols == 0 {
            return Err(Error::graph(format!(
                "torus sides must be positive, got {rows}x{cols}"
            )));
        }
        let nodes = rows
            .checked_mul(cols)
            .ok_or_else(|| Error::graph(format!("torus {rows}x{cols} is too large")))?;
        check_node_count(nodes)?;
        let (r, c) = (rows as u32, cols as u32);
        let pairs = (0..r).flat_map(move |i| {
            (0..c).flat_map(move |j| {
                let me = i * c + j;
                [(me, ((i + 1) % r) * c + j), (me, i * c + (j + 1) % c)]
            })
        });
        Ok(Graph::from_pairs(nodes, pairs, true))
    }

    /// The most nearly square torus with exactly `nodes` nodes: `rows` is the
    /// largest divisor of `nodes` not above `√nodes` (a prime count gives a
    /// `1 × n` torus, i.e. a ring).
    ///
    /// # Errors
    /// [`Error::InvalidGraph`] for `nodes == 0`.
    pub fn torus_for(nodes: usize) -> Result<Graph> {
        check_node_count(nodes)?;
        let rows = (1..=nodes.isqrt())
            .rev()
            .find(|&r| nodes.is_multiple_of(r))
            .unwrap_or(1);
        Graph::torus(rows, nodes / rows)
    }

    /// The static exponential graph: node `i` is adjacent to `i ± 2^k mod n`
    /// for every `2^k < n`. Degree about `2·log2 n`, diameter about
    /// `log2 n / 2`, and it contains every pair the exact schedule uses.
    ///
    /// # Errors
    /// [`Error::InvalidGraph`] for `nodes == 0`.
    pub fn exponential(nodes: usize) -> Result<Graph> {
        check_node_count(nodes)?;
        let n = nodes as u64;
        let hops: Vec<u64> = (0..64).map(|k| 1u64 << k).take_while(|&h| h < n).collect();
        check_half_edges(nodes, 2 * hops.len() as u64)?;
        let pairs = (0..n).flat_map(move |i| {
            let hops = hops.clone();
            hops.into_iter()
                .map(move |h| (i as u32, ((i + h) % n) as u32))
        });
        Ok(Graph::from_pairs(nodes, pairs, true))
    }

    /// The hypercube on `n = 2^d` nodes: `i` is adjacent to `i xor 2^k`.
    ///
    /// # Errors
    /// [`Error::InvalidGraph`] unless `nodes` is a power of two.
    pub fn hypercube(nodes: usize) -> Result<Graph> {
        check_node_count(nodes)?;
        if !nodes.is_power_of_two() {
            return Err(Error::graph(format!(
                "a hypercube needs a power-of-two node count, got {nodes}"
            )));
        }
        let dims = nodes.trailing_zeros();
        let n = nodes as u32;
        let pairs = (0..n).flat_map(move |i| (0..dims).map(move |k| (i, i ^ (1 << k))));
        Ok(Graph::from_pairs(nodes, pairs, true))
    }

    /// A connected random `degree`-regular simple graph, reproducible from
    /// `seed` (on every platform and version of this crate).
    ///
    /// Pairs `degree` stubs per node uniformly at random, then removes
    /// self-loops and parallel edges by random edge switchings, and retries
    /// with fresh randomness until the result is connected.
    ///
    /// # Errors
    /// [`Error::InvalidGraph`] if `degree >= nodes`, if `nodes·degree` is odd,
    /// if `degree == 0` with more than one node, or if no connected graph was
    /// found (degrees 1 and 2 are almost never connected; use a ring).
    pub fn random_regular(nodes: usize, degree: usize, seed: u64) -> Result<Graph> {
        check_node_count(nodes)?;
        if nodes == 1 && degree == 0 {
            return Ok(Graph::from_pairs(1, std::iter::empty(), false));
        }
        if degree == 0 || degree >= nodes {
            return Err(Error::graph(format!(
                "random-regular degree must be in 1..{nodes} for {nodes} nodes, got {degree}"
            )));
        }
        if (nodes * degree) % 2 == 1 {
            return Err(Error::graph(format!(
                "random-regular needs nodes·degree even, got {nodes}·{degree}"
            )));
        }
        check_half_edges(nodes, degree as u64)?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        const ATTEMPTS: usize = 64;
        for _ in 0..ATTEMPTS {
            if let Some(pairs) = random_pairing(nodes, degree, &mut rng) {
                let graph = Graph::from_pairs(nodes, pairs.iter().copied(), false);
                if graph.is_connected() {
                    return Ok(graph);
                }
            }
        }
        Err(Error::graph(format!(
            "no connected {degree}-regular graph on {nodes} nodes found in {ATTEMPTS} attempts \
             (degrees below 3 are rarely connected)"
        )))
    }
}

fn key(a: u32, b: u32) -> u64 {
    (u64::from(a.min(b)) << 32) | u64::from(a.max(b))
}

/// Configuration-model pairing followed by switchings that remove loops and
/// parallel edges. Returns `None` if the switchings get stuck.
fn random_pairing(
    nodes: usize,
    degree: usize,
    rng: &mut Xoshiro256PlusPlus,
) -> Option<Vec<(u32, u32)>> {
    let mut stubs: Vec<u32> = (0..nodes as u32)
        .flat_map(|i| std::iter::repeat_n(i, degree))
        .collect();
    stubs.shuffle(rng);
    let mut pairs: Vec<(u32, u32)> = stubs.chunks_exact(2).map(|c| (c[0], c[1])).collect();
    let mut count: HashMap<u64, u32> = HashMap::with_capacity(pairs.len());
    for &(a, b) in &pairs {
        *count.entry(key(a, b)).or_insert(0) += 1;
    }
    let is_bad = |count: &HashMap<u64, u32>, (a, b): (u32, u32)| a == b || count[&key(a, b)] > 1;
    let mut bad: Vec<usize> = (0..pairs.len())
        .filter(|&i| is_bad(&count, pairs[i]))
        .collect();
    let budget = 200 * (bad.len() + 1);
    let mut tries = 0;
    while let Some(&i) = bad.last() {
        if !is_bad(&count, pairs[i]) {
            bad.pop();
            continue;
        }
        tries += 1;
        if tries > budget {
            return None;
        }
        let j = rng.random_range(0..pairs.len());
        if j == i {
            continue;
        }
        let ((a, b), (c, d)) = (pairs[i], pairs[j]);
        let (e1, e2) = if rng.random_bool(0.5) {
            ((a, c), (b, d))
        } else {
            ((a, d), (b, c))
        };
        let fresh = |e: (u32, u32)| e.0 != e.1 && !count.contains_key(&key(e.0, e.1));
        if !fresh(e1) || !fresh(e2) || key(e1.0, e1.1) == key(e2.0, e2.1) {
            continue;
        }
        for old in [(a, b), (c, d)] {
            let k = key(old.0, old.1);
            let entry = count.get_mut(&k)?;
            *entry -= 1;
            if *entry == 0 {
                count.remove(&k);
            }
        }
        for new in [e1, e2] {
            *count.entry(key(new.0, new.1)).or_insert(0) += 1;
        }
        pairs[i] = e1;
        pairs[j] = e2;
    }
    Some(pairs)
}
