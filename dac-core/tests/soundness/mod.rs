//! What every simulated run must satisfy whatever its outages, for the
//! partition tests (`outages.rs`, `partitions.rs`).
#![allow(dead_code)] // each test binary uses a different subset

use dac_core::Error;
use dac_core::sim::{Cut, MemberOutcome, Report, Span};

use crate::common::{max_norm, mean_of};

/// Checks the properties that hold for every run, and returns the first
/// one violated:
///
/// - **A value agrees with its contributors.** A finished member's value
///   is the mean of its contributors' inputs, computed centrally, within
///   its reported residual relative to `max(1, ‖mean‖∞)`, plus rounding:
///   `1e-12 · max(1, ‖x_i‖∞)` over the contributors' inputs (exact results
///   report a residual of 0; their rounding follows the inputs, which may
///   be far larger than their mean).
/// - **A quorum stands behind every result.** A finished member's
///   contributors are a strict majority of the members that neither
///   crashed nor left. (A member goes on only while the members it holds
///   live — its contributors — are a strict majority of those it does not
///   know to be proven gone, and only crashed and departed members are
///   ever proven gone; so a member never finishes alone unless all the
///   others crashed or left.)
/// - **Nobody waits forever.** Every member that neither crashed nor left
///   ends, finished or failed, and a failure is for want of a quorum or an
///   exclusion only.
/// - No protocol violations.
pub(crate) fn check_sound(report: &Report, x: &[f64]) -> Result<(), String> {
    let dim = report.dim;
    let alive = report
        .members
        .iter()
        .filter(|n| {
            !matches!(
                n,
                MemberOutcome::Crashed { .. } | MemberOutcome::Left { .. }
            )
        })
        .count();
    for (i, node) in report.members.iter().enumerate() {
        match node {
            MemberOutcome::Finished(r) => {
                let c = &r.contributors;
                let mean = mean_of(x, dim, |k| c.contains(k));
                let inputs = c
                    .iter()
                    .map(|k| max_norm(&x[k * dim..(k + 1) * dim]))
                    .fold(1.0, f64::max);
                let bound = r.residual * max_norm(&mean).max(1.0) + 1e-12 * inputs;
                let err = r
                    .value
                    .iter()
                    .zip(&mean)
                    .map(|(v, m)| (v - m).abs())
                    .fold(0.0, f64::max);
                let within = err <= bound; // false for NaN
                if !within {
                    return Err(format!(
                        "member {i}: value {:?} is {err:e} from the mean {mean:?} of its \
                         contributors {:?}, above {bound:e} (residual {:e})",
                        r.value,
                        c.to_vec(),
                        r.residual
                    ));
                }
                if 2 * c.len() <= alive {
                    return Err(format!(
                        "member {i}: its contributors {:?} are no strict majority of the \
                         {alive} members that neither crashed nor left",
                        c.to_vec()
                    ));
                }
            }
            MemberOutcome::Failed(Error::Partitioned { .. } | Error::Excluded { .. })
            | MemberOutcome::Crashed { .. }
            | MemberOutcome::Left { .. } => {}
            other => return Err(format!("member {i} ended as {other:?}")),
        }
    }
    if report.messages.violations > 0 {
        return Err(format!(
            "{} protocol violations",
            report.messages.violations
        ));
    }
    Ok(())
}

/// Checks that there is no split brain: every finished member reports the
/// same contributors, so a member the others went on without — a frozen
/// member they suspected, a member cut off past the timeout — does not
/// finish.
pub(crate) fn check_agreement(report: &Report) -> Result<(), String> {
    let mut finished = report
        .members
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.reduction().map(|r| (i, &r.contributors)));
    let Some((first, c)) = finished.next() else {
        return Ok(());
    };
    for (i, other) in finished {
        if other != c {
            return Err(format!(
                "split brain: member {first} finished with contributors {:?}, member {i} \
                 with {:?}",
                c.to_vec(),
                other.to_vec()
            ));
        }
    }
    Ok(())
}

/// Both checks, as an assertion.
pub(crate) fn assert_sound(report: &Report, x: &[f64], context: &str) {
    if let Err(e) = check_sound(report, x).and_then(|()| check_agreement(report)) {
        panic!("{context}: {e}");
    }
}

/// The contributors of member `i`, which must have finished.
pub(crate) fn contributors(report: &Report, i: usize) -> Vec<usize> {
    match &report.members[i] {
        MemberOutcome::Finished(r) => r.contributors.to_vec(),
        other => panic!("member {i} ended as {other:?}"),
    }
}

/// The error of member `i`, which must have stopped for want of a quorum
/// or been excluded.
pub(crate) fn failed(report: &Report, i: usize) -> &Error {
    match &report.members[i] {
        MemberOutcome::Failed(e @ (Error::Partitioned { .. } | Error::Excluded { .. })) => e,
        other => panic!("member {i}: expected a partition or an exclusion, got {other:?}"),
    }
}

pub(crate) fn cut(from: usize, to: usize, both_ways: bool, span: Span) -> Cut {
    Cut {
        from,
        to,
        both_ways,
        span,
    }
}

/// Cuts every link between `a` and `b`, both ways, from `start` on.
pub(crate) fn split(a: &[usize], b: &[usize], start: u64) -> Vec<Cut> {
    a.iter()
        .flat_map(|&x| {
            b.iter()
                .map(move |&y| cut(x, y, true, Span::from_tick(start)))
        })
        .collect()
}
