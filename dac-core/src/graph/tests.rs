use std::f64::consts::PI;

use super::*;
use crate::error::Error;

/// All-pairs shortest paths by Floyd–Warshall: the reference diameter.
#[allow(clippy::needless_range_loop)] // the textbook index form is the point
fn brute_diameter(g: &Graph) -> Option<usize> {
    let n = g.len();
    let inf = usize::MAX / 4;
    let mut d = vec![vec![inf; n]; n];
    for i in 0..n {
        d[i][i] = 0;
        for j in g.neighbors(i) {
            d[i][j] = 1;
        }
    }
    for k in 0..n {
        for i in 0..n {
            for j in 0..n {
                d[i][j] = d[i][j].min(d[i][k] + d[k][j]);
            }
        }
    }
    let far = d.iter().flatten().copied().max().unwrap_or(0);
    (far < inf).then_some(far)
}

#[test]
fn edge_lists_are_validated() {
    assert_eq!(
        Graph::from_edges(3, &[(0, 1), (1, 1)]),
        Err(Error::SelfLoop { node: 1 })
    );
    assert_eq!(
        Graph::from_edges(3, &[(0, 3)]),
        Err(Error::NodeOutOfRange {
            a: 0,
            b: 3,
            nodes: 3
        })
    );
    assert_eq!(
        Graph::from_edges(3, &[(0, 1), (2, 1), (1, 0)]),
        Err(Error::DuplicateEdge { a: 0, b: 1 })
    );
    assert!(matches!(
        Graph::from_edges(0, &[]),
        Err(Error::InvalidGraph { .. })
    ));
    let g = Graph::from_edges(4, &[(3, 0), (0, 1), (1, 2)]).unwrap();
    assert_eq!(g.edges().collect::<Vec<_>>(), vec![(0, 1), (0, 3), (1, 2)]);
    assert_eq!(g.neighbors(0).collect::<Vec<_>>(), vec![1, 3]);
    assert!(g.has_edge(3, 0) && !g.has_edge(0, 2));
    assert_eq!(g.diameter(), Some(3));
}

#[test]
fn disconnected_graphs_are_reported() {
    let g = Graph::from_edges(5, &[(0, 1), (2, 3)]).unwrap();
    assert_eq!(g.components(), 3);
    assert!(!g.is_connected());
    assert_eq!(g.diameter(), None);
    assert_eq!(g.eccentricity(0), None);
    assert_eq!(
        g.check_connected(),
        Err(Error::Disconnected {
            components: 3,
            reached: 2,
            nodes: 5
        })
    );
}

#[test]
fn generators_have_the_expected_shape() {
    // (graph, nodes, min degree, max degree, edges)
    let cases = [
        (Graph::complete(7).unwrap(), 7, 6, 6, 21),
        (Graph::ring(10).unwrap(), 10, 2, 2, 10),
        (Graph::ring(2).unwrap(), 2, 1, 1, 1),
        (Graph::ring(1).unwrap(), 1, 0, 0, 0),
        (Graph::torus(4, 5).unwrap(), 20, 4, 4, 40),
        (Graph::torus(2, 3).unwrap(), 6, 3, 3, 9),
        (Graph::torus(1, 5).unwrap(), 5, 2, 2, 5),
        (Graph::hypercube(16).unwrap(), 16, 4, 4, 32),
        (Graph::exponential(16).unwrap(), 16, 7, 7, 56),
        (Graph::exponential(10).unwrap(), 10, 6, 6, 30), // ±8 ≡ ∓2
    ];
    for (g, n, lo, hi, m) in cases {
        assert_eq!(g.len(), n);
        assert_eq!((g.min_degree(), g.max_degree()), (lo, hi), "{g:?}");
        if m > 0 {
            assert_eq!(g.edge_count(), m);
        }
        assert!(g.is_connected());
        for (a, b) in g.edges() {
            assert!(g.has_edge(b, a), "symmetric");
        }
    }
    assert!(Graph::hypercube(12).is_err());
    assert!(Graph::torus(0, 3).is_err());
    assert_eq!(Graph::torus_for(12).unwrap().edge_count(), 24); // 3 x 4
}

#[test]
fn exponential_graph_contains_every_exact_pair() {
    for n in [2usize, 3, 5, 12, 63, 64, 100] {
        let g = Graph::exponential(n).unwrap();
        for i in 0..n {
            for k in 0..usize::BITS {
                let h = 1usize << k;
                if h >= n {
                    break;
                }
                assert!(g.has_edge(i, (i + h) % n));
            }
        }
    }
}

#[test]
fn diameters_match_all_pairs_shortest_paths() {
    let graphs = [
        Graph::ring(11).unwrap(),
        Graph::torus(5, 6).unwrap(),
        Graph::hypercube(32).unwrap(),
        Graph::exponential(45).unwrap(),
        Graph::complete(9).unwrap(),
        Graph::random_regular(40, 3, 1).unwrap(),
        Graph::from_edges(6, &[(0, 1), (1, 2), (2, 3), (3, 4), (1, 5)]).unwrap(),
    ];
    for g in graphs {
        let reference = brute_diameter(&g);
        assert_eq!(g.diameter(), reference, "{g:?}");
        assert!(g.diameter_bound() >= reference);
    }
    assert_eq!(Graph::ring(11).unwrap().diameter(), Some(5));
    assert_eq!(Graph::torus(4, 4).unwrap().diameter(), Some(4));
    assert_eq!(Graph::hypercube(64).unwrap().diameter(), Some(6));
}

#[test]
fn random_regular_graphs_are_regular_connected_and_reproducible() {
    for (n, k) in [(64, 4), (101, 4), (50, 3), (20, 19), (1000, 5)] {
        let g = Graph::random_regular(n, k, 42).unwrap();
        assert_eq!((g.min_degree(), g.max_degree()), (k, k));
        assert!(g.is_connected());
        assert_eq!(g, Graph::random_regular(n, k, 42).unwrap());
    }
    assert_ne!(
        Graph::random_regular(64, 4, 1).unwrap(),
        Graph::random_regular(64, 4, 2).unwrap()
    );
    for (n, k) in [(5, 3), (4, 4), (4, 0)] {
        assert!(matches!(
            Graph::random_regular(n, k, 0),
            Err(Error::InvalidGraph { .. })
        ));
    }
}

#[test]
fn metropolis_spectrum_of_a_ring_matches_the_closed_form() {
    // Metropolis weights on a ring are 1/3 everywhere, so the eigenvalues
    // are 1 − (2/3)(1 − cos(2πk/n)).
    let n = 64;
    let s = Graph::ring(n)
        .unwrap()
        .spectrum(Weights::Metropolis)
        .unwrap();
    let lambda = |k: f64| 1.0 - 2.0 / 3.0 * (1.0 - (2.0 * PI * k / n as f64).cos());
    assert!((s.lambda2 - lambda(1.0)).abs() < 1e-12);
    assert!((s.lambda_min - lambda(32.0)).abs() < 1e-12);
    assert!((s.slem - lambda(1.0)).abs() < 1e-12);
    assert!((s.gap - (1.0 - lambda(1.0))).abs() < 1e-12);
}

#[test]
fn laplacian_spectrum_of_a_hypercube_matches_the_closed_form() {
    // Hypercube Laplacian eigenvalues are 2k, k = 0..d.
    let d = 5;
    let eps = 0.1;
    let s = Graph::hypercube(1 << d)
        .unwrap()
        .spectrum(Weights::Laplacian { eps })
        .unwrap();
    assert!((s.lambda2 - (1.0 - 2.0 * eps)).abs() < 1e-12);
    assert!((s.lambda_min - (1.0 - 2.0 * d as f64 * eps)).abs() < 1e-12);
}

#[test]
fn complete_graph_mixes_in_one_round() {
    let s = Graph::complete(10)
        .unwrap()
        .spectrum(Weights::Metropolis)
        .unwrap();
    assert!(s.slem < 1e-12);
    assert_eq!(s.rounds_for(1e-12), Some(1));
}

#[test]
fn predicted_rounds_follow_the_gap() {
    let s = Spectrum {
        lambda2: 0.5,
        lambda_min: -0.25,
        slem: 0.5,
        gap: 0.5,
    };
    assert_eq!(s.rounds_for(1.0 / 1024.0), Some(10));
    assert_eq!(s.rounds_for(0.0), None);
    let stuck = Spectrum { slem: 1.0, ..s };
    assert_eq!(stuck.rounds_for(1e-9), None);
    assert!(matches!(
        Graph::ring(SPECTRUM_MAX_NODES + 1)
            .unwrap()
            .spectrum(Weights::Metropolis),
        Err(Error::SpectrumTooLarge { .. })
    ));
}

#[test]
fn repair_reconnects_the_survivors() {
    let ring = Graph::ring(10).unwrap();
    let one = ring.repaired(&[3]);
    assert!(one.has_edge(2, 4));
    assert_eq!(one.degree(3), 0);
    assert_eq!(one.live_diameter_bound(&[3]), Some(4));
    // A cluster of two adjacent departures is bridged across.
    let two = ring.repaired(&[3, 4]);
    assert!(two.has_edge(2, 5));
    assert_eq!(two.live_diameter_bound(&[3, 4]), Some(4));
    // Two separate departures cut a ring in two without repair.
    let apart = ring.repaired(&[2, 7]);
    assert!(apart.has_edge(1, 3) && apart.has_edge(6, 8));
    assert_eq!(apart.live_diameter_bound(&[2, 7]), Some(4));
    // The result depends on the set only.
    assert_eq!(ring.repaired(&[7, 2]), apart);
    // A star loses its hub: the leaves are joined pairwise.
    let star = Graph::from_edges(5, &[(0, 1), (0, 2), (0, 3), (0, 4)]).unwrap();
    let leaves = star.repaired(&[0]);
    assert_eq!(leaves.live_diameter_bound(&[0]), Some(1));
    assert_eq!(leaves.edge_count(), 6);
}

#[test]
fn repair_never_removes_an_edge_between_survivors() {
    let g = Graph::exponential(40).unwrap();
    let order = [7usize, 8, 15, 3, 23, 39, 0, 31];
    for k in 1..order.len() {
        let before = g.repaired(&order[..k]);
        let after = g.repaired(&order[..=k]);
        for (a, b) in before.edges() {
            if !order[..=k].contains(&a) && !order[..=k].contains(&b) {
                assert!(
                    after.has_edge(a, b),
                    "edge ({a}, {b}) lost after {:?}",
                    &order[..=k]
                );
            }
        }
        assert!(after.live_diameter_bound(&order[..=k]).is_some());
    }
}

#[test]
fn repair_keeps_random_graphs_connected_after_many_departures() {
    let g = Graph::random_regular(200, 3, 9).unwrap();
    let departed: Vec<usize> = (0..200).filter(|i| i % 3 == 0).collect();
    let r = g.repaired(&departed);
    assert!(r.live_diameter_bound(&departed).is_some());
    for &d in &departed {
        assert_eq!(r.degree(d), 0);
    }
}
