use dac_core::{Config, Graph, Schedule, sim};

fn inputs(n: usize, dim: usize) -> Vec<f64> {
    (0..n * dim)
        .map(|i| ((i * 7919) % 1000) as f64 / 100.0 - 5.0)
        .collect()
}

#[test]
fn smoke() {
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
    ] {
        let n = g.len();
        let opts = sim::Options {
            config: Config {
                schedule,
                tol: 1e-9,
                ..Config::default()
            },
            ..Default::default()
        };
        let r = sim::simulate(&g, &inputs(n, 2), 2, &opts).unwrap();
        eprintln!(
            "{name}: converged {} rounds {} ticks {} err {:?} viol {}",
            r.converged,
            r.rounds,
            r.ticks,
            r.max_abs_error(),
            r.messages.violations
        );
        let fs = sim::Faults {
            drop: 0.3,
            max_delay: 2,
            duplicate: 0.1,
            ..Default::default()
        };
        let opts = sim::Options { faults: fs, ..opts };
        let r = sim::simulate(&g, &inputs(n, 2), 2, &opts).unwrap();
        eprintln!(
            "  lossy: converged {} rounds {} ticks {} err {:?} viol {} defect {:?}",
            r.converged,
            r.rounds,
            r.ticks,
            r.max_abs_error(),
            r.messages.violations,
            r.trace
                .iter()
                .filter(|t| t.nodes == n)
                .map(|t| t.mass_defect)
                .fold(0.0f64, f64::max)
        );
    }
}
