//! One simulator round on a million members.
//!
//! ```text
//! cargo bench -p dac-benches --bench simulator
//! ```
//!
//! Random 4-regular graph, N = 1 000 000, d = 1, Metropolis weights; the
//! tolerance is unreachable so every iteration is a full round. Peak memory
//! is measured by `cargo run --release -p dac-benches --bin sim_scale`.

use criterion::{Criterion, criterion_group, criterion_main};
use dac_benches::million_node_simulator;

fn simulator_round(c: &mut Criterion) {
    let mut sim = million_node_simulator(1_000_000).expect("a million-member simulator");
    let mut group = c.benchmark_group("simulator");
    group.sample_size(20);
    group.bench_function("round, random 4-regular, N = 1e6, d = 1, metropolis", |b| {
        b.iter(|| assert!(sim.step()))
    });
    group.finish();
}

criterion_group!(benches, simulator_round);
criterion_main!(benches);
