use dac_core::{Config, Graph, Schedule, sim};

fn inputs(n: usize, dim: usize) -> Vec<f64> {
    (0..n * dim)
        .map(|i| ((i * 7919) % 1000) as f64 / 100.0 - 5.0)
        .collect()
}

#[test]
fn smoke_faults() {
    for (name, g, schedule) in [
        (
            "exp64 exact",
            Graph::exponential(64).unwrap(),
            Schedule::Exact,
        ),
        (
            "exp100 exact",
            Graph::exponential(100).unwrap(),
            Schedule::Exact,
        ),
        (
            "exp64 metro",
            Graph::exponential(64).unwrap(),
            Schedule::Metropolis,
        ),
        (
            "ring16 metro",
            Graph::ring(16).unwrap(),
            Schedule::Metropolis,
        ),
        (
            "torus64 metro",
            Graph::torus_for(64).unwrap(),
            Schedule::Metropolis,
        ),
        (
            "rr64 lap",
            Graph::random_regular(64, 4, 3).unwrap(),
            Schedule::Laplacian { eps: 0.2 },
        ),
    ] {
        let n = g.len();
        for (label, faults) in [
            (
                "crash",
                sim::Faults {
                    crashes: vec![(3, 0), (9, 2), (17 % n, 5)],
                    ..Default::default()
                },
            ),
            (
                "crash+loss",
                sim::Faults {
                    crashes: vec![(3, 1), (9, 2), (17 % n, 5)],
                    drop: 0.2,
                    max_delay: 2,
                    ..Default::default()
                },
            ),
            (
                "leave",
                sim::Faults {
                    leaves: vec![(5, 3)],
                    ..Default::default()
                },
            ),
            (
                "change",
                sim::Faults {
                    input_changes: vec![sim::InputChange {
                        node: 2,
                        round: 3,
                        input: vec![100.0, -100.0],
                    }],
                    ..Default::default()
                },
            ),
            (
                "change+loss",
                sim::Faults {
                    drop: 0.3,
                    input_changes: vec![sim::InputChange {
                        node: 2,
                        round: 3,
                        input: vec![100.0, -100.0],
                    }],
                    ..Default::default()
                },
            ),
        ] {
            let opts = sim::Options {
                config: Config {
                    schedule,
                    tol: 1e-9,
                    max_rounds: 3000,
                    ..Config::default()
                },
                faults,
                seed: 5,
                ..Default::default()
            };
            let r = sim::simulate(&g, &inputs(n, 2), 2, &opts).unwrap();
            let fails: Vec<_> = r
                .nodes
                .iter()
                .filter(|n| {
                    matches!(
                        n,
                        sim::NodeOutcome::Failed(_) | sim::NodeOutcome::Unfinished { .. }
                    )
                })
                .take(2)
                .collect();
            eprintln!(
                "{name} {label}: conv {} rounds {} ticks {} err {:?} contributors {:?} survivors {} viol {} fails {:?}",
                r.converged,
                r.rounds,
                r.ticks,
                r.max_abs_error(),
                r.contributors.as_ref().map(|c| c.departed().to_vec()),
                r.survivors(),
                r.messages.violations,
                fails
            );
        }
    }
}
