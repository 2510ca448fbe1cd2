//! Property tests: random connected graphs, random inputs, random faults
//! in transit.

mod common;

use common::{assert_all_within, mean_of, options};
use dac_core::sim::{self, Faults};
use dac_core::{Config, Graph, Schedule};
use proptest::prelude::*;

/// A random connected graph: a random spanning tree (each node `i > 0`
/// attaches to a random earlier node) plus random extra edges.
fn connected_graph(n: usize, parents: &[usize], extra: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut edges: Vec<(usize, usize)> = (1..n).map(|i| (parents[i - 1] % i, i)).collect();
    for &(a, b) in extra {
        let (a, b) = (a % n, b % n);
        if a != b {
            edges.push((a.min(b), a.max(b)));
        }
    }
    edges.sort_unstable();
    edges.dedup();
    edges
}

/// A random connected graph on 2..=64 nodes with `dim`-dimensional inputs
/// of a random common magnitude.
fn case(
    dims: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = (usize, Vec<(usize, usize)>, usize, Vec<f64>)> {
    (dims, 2usize..=64).prop_flat_map(|(dim, n)| {
        (
            prop::collection::vec(any::<usize>(), n - 1),
            prop::collection::vec((any::<usize>(), any::<usize>()), 0..2 * n),
            -3i32..=6,
            prop::collection::vec(-1.0f64..1.0, n * dim),
        )
            .prop_map(move |(parents, extra, e, v)| {
                let x = v.into_iter().map(|x| x * 10f64.powi(e)).collect();
                (n, connected_graph(n, &parents, &extra), dim, x)
            })
    })
}

fn config(schedule: Schedule) -> Config {
    Config {
        schedule,
        tol: 1e-9,
        max_rounds: 1_000_000,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Every member ends within `tol·max(1, ‖x̄‖∞)` of the exact mean, on
    /// any connected graph, with Metropolis weights.
    #[test]
    fn metropolis_reaches_the_mean_on_any_connected_graph((n, edges, dim, x) in case(1..=3)) {
        let graph = Graph::from_edges(n, &edges).unwrap();
        let report = sim::simulate(&graph, &x, dim, &options(config(Schedule::Metropolis), Faults::default(), 0)).unwrap();
        assert_all_within(&report, &mean_of(&x, dim, |_| true), 1e-9, "metropolis");
        prop_assert!(report.converged);
    }

    /// The same with the exact schedule, on the random graph joined with
    /// the exponential graph (which carries the exact pairs).
    #[test]
    fn exact_reaches_the_mean_on_any_graph_with_its_pairs((n, edges, dim, x) in case(1..=3)) {
        let mut all = edges;
        all.extend(Graph::exponential(n).unwrap().edges());
        all.sort_unstable();
        all.dedup();
        let graph = Graph::from_edges(n, &all).unwrap();
        let report = sim::simulate(&graph, &x, dim, &options(config(Schedule::Exact), Faults::default(), 0)).unwrap();
        assert_all_within(&report, &mean_of(&x, dim, |_| true), 1e-9, "exact");
        let bound = usize::BITS - (n - 1).leading_zeros() + 2;
        prop_assert!(report.rounds <= bound);
    }

    /// With up to 30 % loss, delays, reordering and duplicates, the total
    /// mass `Σ_i M_i = Σ_i (v_i, 1)` holds after every round (to 1e-9
    /// relative), and the run reaches the exact mean in the same number of
    /// rounds as without faults.
    #[test]
    fn mass_is_conserved_every_round_under_faults_in_transit(
        (n, edges, _, x) in case(1..=1),
        drop in 0.0f64..=0.3,
        duplicate in 0.0f64..0.3,
        max_delay in 0u32..=4,
        seed in any::<u64>(),
    ) {
        let graph = Graph::from_edges(n, &edges).unwrap();
        let faults = Faults { drop, duplicate, max_delay, ..Faults::default() };
        let cfg = config(Schedule::Metropolis);
        let lossy = sim::simulate(&graph, &x, 1, &options(cfg.clone(), faults, seed)).unwrap();
        let clean = sim::simulate(&graph, &x, 1, &options(cfg, Faults::default(), 0)).unwrap();
        assert_all_within(&lossy, &mean_of(&x, 1, |_| true), 1e-9, "lossy");
        prop_assert_eq!(lossy.rounds, clean.rounds);
        let complete = lossy.trace.iter().filter(|row| row.nodes == n);
        let mut checked = 0;
        for row in complete {
            prop_assert!(row.mass_defect <= 1e-9, "round {}: mass defect {:e}", row.round, row.mass_defect);
            checked += 1;
        }
        // Members up to a diameter behind the stop round may adopt a
        // finished neighbour's result instead of completing the last rounds.
        let diameter = graph.diameter().unwrap();
        prop_assert!(checked + diameter >= lossy.rounds as usize, "{checked} complete rounds of {}", lossy.rounds);
    }
}
