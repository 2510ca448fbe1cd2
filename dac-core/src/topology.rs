//! Named topologies: a policy that builds a [`Graph`] for any member count.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::graph::Graph;

const TOPOLOGY_NAMES: &str = "complete, ring, torus, torus:RxC, random-regular:K, exponential, \
     hypercube, edges:A-B,C-D,...";

/// A rule that builds the communication graph for `n` members.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Topology {
    /// Everyone talks to everyone.
    Complete,
    /// A cycle.
    Ring,
    /// The most nearly square 2-D torus with `n` nodes.
    Torus,
    /// A `rows × cols` 2-D torus (`n` must equal `rows·cols`).
    TorusDims {
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
    },
    /// A random `degree`-regular graph drawn from the job seed.
    RandomRegular {
        /// Degree of every node.
        degree: usize,
    },
    /// `i ± 2^k mod n`: small diameter, and contains every pair of the
    /// exact schedule. The default.
    #[default]
    Exponential,
    /// `i xor 2^k` (`n` a power of two).
    Hypercube,
    /// An explicit edge list.
    Edges(Vec<(usize, usize)>),
}

impl Topology {
    /// Builds the graph for `nodes` members; `seed` draws random topologies.
    ///
    /// # Errors
    /// The constructor's [`Error`] (for example a hypercube on a node count
    /// that is not a power of two, or an edge list naming a missing node).
    pub fn build(&self, nodes: usize, seed: u64) -> Result<Graph> {
        match self {
            Topology::Complete => Graph::complete(nodes),
            Topology::Ring => Graph::ring(nodes),
            Topology::Torus => Graph::torus_for(nodes),
            Topology::TorusDims { rows, cols } => {
                if rows.checked_mul(*cols) != Some(nodes) {
                    return Err(Error::graph(format!(
                        "torus {rows}x{cols} has {} nodes, not {nodes}",
                        rows.saturating_mul(*cols)
                    )));
                }
                Graph::torus(*rows, *cols)
            }
            Topology::RandomRegular { degree } => Graph::random_regular(nodes, *degree, seed),
            Topology::Exponential => Graph::exponential(nodes),
            Topology::Hypercube => Graph::hypercube(nodes),
            Topology::Edges(edges) => Graph::from_edges(nodes, edges),
        }
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topology::Complete => f.write_str("complete"),
            Topology::Ring => f.write_str("ring"),
            Topology::Torus => f.write_str("torus"),
            Topology::TorusDims { rows, cols } => write!(f, "torus:{rows}x{cols}"),
            Topology::RandomRegular { degree } => write!(f, "random-regular:{degree}"),
            Topology::Exponential => f.write_str("exponential"),
            Topology::Hypercube => f.write_str("hypercube"),
            Topology::Edges(edges) => {
                f.write_str("edges:")?;
                for (i, (a, b)) in edges.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    write!(f, "{sep}{a}-{b}")?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for Topology {
    type Err = Error;

    /// Parses `complete`, `ring`, `torus`, `torus:RxC`, `random-regular:K`,
    /// `exponential`, `hypercube` or an explicit edge list
    /// `edges:0-1,1-2,2-0` (whether the edges form a valid graph is checked
    /// when it is built for a member count).
    fn from_str(s: &str) -> Result<Topology> {
        let unknown = || Error::UnknownTopology {
            name: s.to_string(),
            expected: TOPOLOGY_NAMES,
        };
        Ok(match s.split_once(':') {
            None => match s {
                "complete" => Topology::Complete,
                "ring" => Topology::Ring,
                "torus" => Topology::Torus,
                "exponential" => Topology::Exponential,
                "hypercube" => Topology::Hypercube,
                _ => return Err(unknown()),
            },
            Some(("random-regular", k)) => Topology::RandomRegular {
                degree: k.parse().map_err(|_| unknown())?,
            },
            Some(("torus", dims)) => {
                let (r, c) = dims.split_once('x').ok_or_else(unknown)?;
                Topology::TorusDims {
                    rows: r.parse().map_err(|_| unknown())?,
                    cols: c.parse().map_err(|_| unknown())?,
                }
            }
            Some(("edges", list)) => {
                let edge = |e: &str| -> Option<(usize, usize)> {
                    let (a, b) = e.trim().split_once('-')?;
                    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
                };
                let edges: Option<Vec<_>> = list.split(',').map(edge).collect();
                Topology::Edges(edges.ok_or_else(unknown)?)
            }
            Some(_) => return Err(unknown()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in [
            "complete",
            "ring",
            "torus",
            "torus:4x8",
            "random-regular:4",
            "exponential",
            "hypercube",
            "edges:0-1,1-2,2-0",
        ] {
            assert_eq!(s.parse::<Topology>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn unknown_names_are_errors() {
        for s in [
            "",
            "star",
            "random-regular",
            "random-regular:x",
            "torus:4",
            "ring:3",
            "edges:",
            "edges:0-1,1",
            "edges:a-b",
        ] {
            let err = s.parse::<Topology>().unwrap_err();
            assert!(matches!(err, Error::UnknownTopology { .. }), "{s}: {err}");
            assert!(err.to_string().contains("exponential"));
        }
    }

    #[test]
    fn builds_each_topology() {
        let cases = [
            ("complete", 6, 5),
            ("ring", 6, 2),
            ("torus", 16, 4),
            ("torus:2x8", 16, 3),
            ("random-regular:3", 10, 3),
            ("hypercube", 16, 4),
        ];
        for (name, n, degree) in cases {
            let g = name.parse::<Topology>().unwrap().build(n, 7).unwrap();
            assert_eq!(g.len(), n);
            assert_eq!((g.min_degree(), g.max_degree()), (degree, degree), "{name}");
        }
        assert!(
            Topology::TorusDims { rows: 3, cols: 3 }
                .build(10, 0)
                .is_err()
        );
        assert!(Topology::Hypercube.build(12, 0).is_err());
        let edges = Topology::Edges(vec![(0, 1), (1, 2)]).build(3, 0).unwrap();
        assert_eq!(edges.edge_count(), 2);
    }
}
