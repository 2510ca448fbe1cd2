//! Insiders: a member that lies about the result. The plain reductions do
//! not resist insiders in general, but a forged result that contradicts
//! what a member computed itself (or could have computed) is refused and
//! reported, and the honest members' results stay exact over their
//! contributors.

mod common;
mod soundness;

use common::{inputs, max_norm, mean_of, options};
use dac_core::engine::{Contradiction, Kind, Violation};
use dac_core::sim::{self, Faults, ForgedResult, MemberOutcome, Report};
use dac_core::{Config, Graph, Schedule};
use soundness::assert_sound;

const FORGED: f64 = 12345.0;

fn config(schedule: Schedule) -> Config {
    Config {
        schedule,
        tol: 1e-9,
        max_rounds: 10_000,
    }
}

fn forged(tick: u64, by: usize, round: u32) -> Faults {
    Faults {
        forged_results: vec![ForgedResult {
            tick,
            by,
            value: FORGED,
            round,
        }],
        ..Faults::default()
    }
}

fn run(graph: &Graph, x: &[f64], schedule: Schedule, faults: Faults, seed: u64) -> Report {
    sim::simulate(graph, x, 1, &options(config(schedule), faults, seed)).expect("a valid set-up")
}

/// Every member but `liar` finished, with a value within `tolerance ·
/// max(1, ‖x_k‖∞ over its contributors)` of the mean of its contributors'
/// inputs, computed centrally; returns the contributors of each.
fn assert_honest_exact(
    report: &Report,
    x: &[f64],
    liar: usize,
    tolerance: f64,
    context: &str,
) -> Vec<Vec<usize>> {
    let mut named = Vec::new();
    for (i, node) in report.members.iter().enumerate() {
        if i == liar {
            continue;
        }
        let MemberOutcome::Finished(r) = node else {
            panic!("{context}: honest member {i} ended as {node:?}");
        };
        let c = &r.contributors;
        let mean = mean_of(x, 1, |k| c.contains(k));
        let scale = c.iter().map(|k| max_norm(&x[k..k + 1])).fold(1.0, f64::max);
        let err = (r.value[0] - mean[0]).abs();
        assert!(
            err <= tolerance * scale,
            "{context}: honest member {i} returned {:?}, {err:e} from the mean {mean:?} of \
             its contributors {:?} (tolerance {:e})",
            r.value,
            c.to_vec(),
            tolerance * scale
        );
        named.push(c.to_vec());
    }
    named
}

/// The members that reported `liar` for a forged result.
fn reporters_of(report: &Report, liar: usize) -> Vec<usize> {
    let mut who: Vec<usize> = report
        .misbehaviour
        .iter()
        .filter(|(_, v)| {
            matches!(v, Violation::Contradicts { peer, kind: Kind::Done, .. } if *peer == liar)
        })
        .map(|(reporter, _)| *reporter)
        .collect();
    who.sort_unstable();
    who.dedup();
    who
}

/// In the exact schedule a member computes the exact mean itself: a
/// forged result, sent before anyone finished, is never adopted. A member
/// whose input could not have reached the liar yet refuses it at once as
/// premature, and the liar is cut off (its input then counts for nobody);
/// otherwise the liar runs honestly, its input counts, and every member
/// that got the forgery reports it once it holds the mean.
#[test]
fn a_forged_result_in_the_exact_schedule_is_refused_and_reported() {
    // 8 members (3 rounds) and 6 (folding: 2 + 2 rounds).
    for (n, rounds, liar) in [(8, 3, 5), (6, 4, 1)] {
        let graph = Graph::complete(n).unwrap();
        let x = inputs(n, 1, 40 + n as u64);
        let report = run(&graph, &x, Schedule::Exact, forged(1, liar, rounds), 0);
        let context = format!("{n} members, exact");
        let named = assert_honest_exact(&report, &x, liar, 1e-12, &context);
        let all: Vec<usize> = (0..n).collect();
        let others: Vec<usize> = (0..n).filter(|&i| i != liar).collect();
        assert!(named.iter().all(|c| *c == named[0]), "{context}: {named:?}");
        let premature = report.misbehaviour.iter().any(|(_, v)| {
            matches!(
                v,
                Violation::Contradicts {
                    what: Contradiction::Premature,
                    ..
                }
            )
        });
        let reporters = reporters_of(&report, liar);
        if named[0] == all {
            assert_eq!(reporters, others, "{context}");
        } else {
            // Cut off mid-reduction for a premature result.
            assert_eq!(named[0], others, "{context}");
            assert!(
                premature && !reporters.is_empty(),
                "{context}: {reporters:?}"
            );
        }
        assert_sound(&report, &x, &context);
    }
}

/// The same with lost, duplicated and delayed messages: the members that
/// miss their partner's message get it again from the finished partner
/// (a finished member answers a stale round with that round), instead of
/// adopting a result they cannot check.
#[test]
fn a_forged_result_in_the_exact_schedule_is_refused_on_lossy_links() {
    let n = 8;
    let graph = Graph::complete(n).unwrap();
    for seed in 0..8 {
        let x = inputs(n, 1, 50 + seed);
        let faults = Faults {
            drop: 0.2,
            duplicate: 0.1,
            max_delay: 2,
            ..forged(2, 3, 3)
        };
        let report = run(&graph, &x, Schedule::Exact, faults, seed);
        let context = format!("seed {seed}");
        assert_honest_exact(&report, &x, 3, 1e-12, &context);
        assert!(
            !reporters_of(&report, 3).is_empty(),
            "{context}: nobody reported the forgery"
        );
        assert_sound(&report, &x, &context);
    }
}

/// In the iterative schedules a member cannot recompute its neighbour's
/// value, but a result far outside the convergence tolerance of its own
/// estimate cannot be right: the neighbours refuse it at once, report the
/// liar and cut it off; the liar learns that it was excluded, and the
/// others finish without it.
#[test]
fn a_forged_result_in_metropolis_is_refused_and_the_liar_excluded() {
    for (graph, liar) in [
        (Graph::complete(4).unwrap(), 3),
        (Graph::exponential(8).unwrap(), 2),
    ] {
        let n = graph.len();
        let x = inputs(n, 1, 60 + n as u64);
        let report = run(&graph, &x, Schedule::Metropolis, forged(3, liar, 40), 0);
        let context = format!("{n} members, metropolis");
        let tol = config(Schedule::Metropolis).tol;
        let named = assert_honest_exact(&report, &x, liar, 10.0 * tol, &context);
        let without: Vec<usize> = (0..n).filter(|&i| i != liar).collect();
        for c in named {
            assert_eq!(c, without, "{context}");
        }
        assert!(
            matches!(
                report.members[liar],
                MemberOutcome::Failed(dac_core::Error::Excluded { .. })
            ),
            "{context}: the liar ended as {:?}",
            report.members[liar]
        );
        let neighbours: Vec<usize> = graph.neighbors(liar).collect();
        assert_eq!(reporters_of(&report, liar), neighbours, "{context}");
        assert!(
            report.misbehaviour.iter().all(|(_, v)| matches!(
                v,
                Violation::Contradicts {
                    what: Contradiction::ResultValue,
                    ..
                }
            )),
            "{context}: {:?}",
            report.misbehaviour
        );
        assert_sound(&report, &x, &context);
    }
}

/// A liar that forges a result and then falls silent (frozen for 40 ticks,
/// after which it learns its exclusion): its partners suspect
/// it, and those whose exact phase it spoiled fall back. A result
/// announced by a member that departed since is no witness: nobody adopts
/// the forgery, and every result is exact over its contributors.
#[test]
fn a_forged_result_from_a_member_that_falls_silent_is_not_adopted() {
    let n = 8;
    let graph = Graph::complete(n).unwrap();
    for (liar, silent_from) in [(5, 2), (0, 2), (3, 3)] {
        let x = inputs(n, 1, 70 + liar as u64);
        let faults = Faults {
            freezes: vec![(liar, sim::Span::between(silent_from, silent_from + 40))],
            suspect_after: Some(3),
            ..forged(1, liar, 3)
        };
        let report = run(&graph, &x, Schedule::Exact, faults, 0);
        let context = format!("liar {liar}, silent from tick {silent_from}");
        let tol = config(Schedule::Exact).tol;
        assert_honest_exact(&report, &x, liar, 10.0 * tol, &context);
        for node in report.members.iter().filter_map(MemberOutcome::reduction) {
            assert!((node.value[0] - FORGED).abs() > 1.0, "{context}: {node:?}");
        }
        assert_sound(&report, &x, &context);
    }
}

/// A liar that forges a result before its first round and then leaves
/// (as an excluded member does, saying goodbye): a member whose exact
/// phase its departure spoiled must not take the forgery for the result
/// of a member that finished and left. A result that reached a member
/// before that member's own input had left it cannot include that input:
/// it is refused as premature, whoever sent it.
#[test]
fn a_forged_result_from_a_member_that_leaves_is_not_adopted() {
    for n in [4, 8, 6] {
        let graph = Graph::complete(n).unwrap();
        for liar in 0..n {
            for leave_at in 0..3 {
                for tick in [0, 1] {
                    let x = inputs(n, 1, 80 + liar as u64);
                    let faults = Faults {
                        leaves: vec![(liar, leave_at)],
                        ..forged(tick, liar, exact_rounds(n))
                    };
                    let report = run(&graph, &x, Schedule::Exact, faults, 0);
                    let context = format!(
                        "{n} members, liar {liar} forges at tick {tick}, leaves at round {leave_at}"
                    );
                    let tol = config(Schedule::Exact).tol;
                    assert_honest_exact(&report, &x, liar, 10.0 * tol, &context);
                    for node in report.members.iter().filter_map(MemberOutcome::reduction) {
                        assert!((node.value[0] - FORGED).abs() > 1.0, "{context}: {node:?}");
                    }
                    assert_sound(&report, &x, &context);
                }
            }
        }
    }
}

/// The exact plan's rounds: log2 N for a power of two, ⌊log2 N⌋ + 2
/// otherwise.
fn exact_rounds(n: usize) -> u32 {
    let floor = usize::BITS - 1 - n.leading_zeros();
    floor + if n.is_power_of_two() { 0 } else { 2 }
}
