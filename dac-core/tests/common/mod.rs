//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use dac_core::sim::{self, MemberOutcome, Report};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// `n × dim` inputs with magnitudes spread over several decades, so that
/// relative tolerances are exercised, reproducible from `seed`.
pub(crate) fn inputs(n: usize, dim: usize, seed: u64) -> Vec<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let scale = 10f64.powi(rng.random_range(-2..=4));
    (0..n * dim)
        .map(|_| scale * rng.random_range(-1.0..1.0))
        .collect()
}

/// The mean of the rows of `inputs` whose index `keep` accepts, computed
/// centrally in compensated (Kahan) summation.
pub(crate) fn mean_of(inputs: &[f64], dim: usize, keep: impl Fn(usize) -> bool) -> Vec<f64> {
    let mut sum = vec![0.0; dim];
    let mut carry = vec![0.0; dim];
    let mut count = 0usize;
    for (_, row) in inputs
        .chunks_exact(dim)
        .enumerate()
        .filter(|(i, _)| keep(*i))
    {
        count += 1;
        for ((s, k), x) in sum.iter_mut().zip(&mut carry).zip(row) {
            let y = x - *k;
            let t = *s + y;
            *k = (t - *s) - y;
            *s = t;
        }
    }
    sum.iter().map(|s| s / count as f64).collect()
}

/// The bits of every finished member's value, distinct ones only.
pub(crate) fn distinct_values(report: &Report) -> Vec<Vec<u64>> {
    let mut values: Vec<Vec<u64>> = report
        .members
        .iter()
        .filter_map(MemberOutcome::reduction)
        .map(|r| r.value.iter().map(|v| v.to_bits()).collect())
        .collect();
    values.sort();
    values.dedup();
    values
}

pub(crate) fn max_norm(x: &[f64]) -> f64 {
    x.iter().fold(0.0, |a, v| a.max(v.abs()))
}

/// Largest distance (max norm) of any finished member's value from `mean`.
pub(crate) fn worst_error(report: &Report, mean: &[f64]) -> f64 {
    report
        .members
        .iter()
        .filter_map(MemberOutcome::reduction)
        .map(|r| {
            r.value
                .iter()
                .zip(mean)
                .map(|(v, m)| (v - m).abs())
                .fold(0.0, f64::max)
        })
        .fold(0.0, f64::max)
}

/// Asserts that every member that did not crash or leave finished, and
/// that each is within `tol·max(1, ‖x̄‖∞)` of `mean`.
pub(crate) fn assert_all_within(report: &Report, mean: &[f64], tol: f64, context: &str) {
    for (i, node) in report.members.iter().enumerate() {
        assert!(
            matches!(
                node,
                MemberOutcome::Finished(_)
                    | MemberOutcome::Crashed { .. }
                    | MemberOutcome::Left { .. }
            ),
            "{context}: node {i} ended as {node:?}"
        );
    }
    let scale = max_norm(mean).max(1.0);
    let bound = tol * scale;
    let err = worst_error(report, mean);
    assert!(err <= bound, "{context}: error {err:e} above {bound:e}");
    // The reported residual is an honest bound: at most `tol`, and at
    // least the actual relative error up to floating-point rounding
    // (exact results report 0).
    for r in report.members.iter().filter_map(MemberOutcome::reduction) {
        assert!(
            r.residual <= tol,
            "{context}: residual {:e} above tol",
            r.residual
        );
        let own = r
            .value
            .iter()
            .zip(mean)
            .map(|(v, m)| (v - m).abs())
            .fold(0.0, f64::max);
        assert!(
            own <= (r.residual + 1e-12) * scale,
            "{context}: error {own:e} above the reported residual {:e}",
            r.residual
        );
    }
    assert_eq!(
        report.messages.violations, 0,
        "{context}: protocol violations"
    );
}

pub(crate) fn options(config: dac_core::Config, faults: sim::Faults, seed: u64) -> sim::Options {
    sim::Options {
        config,
        faults,
        seed,
        no_trace: false,
    }
}
