//! Cut links, isolated and frozen members, false suspicions and the
//! silence-based failure detector, case by case: who finishes, with which
//! contributors, and who stops.

mod common;
mod soundness;

use common::{inputs, options};
use dac_core::sim::{self, Faults, MemberOutcome, Report, Span, Suspicion};
use dac_core::{Config, Error, Graph, Schedule};
use soundness::{assert_sound, check_agreement, contributors, cut, failed, split};

/// The detector's timeout in these tests.
const K: u32 = 5;

fn config(schedule: Schedule) -> Config {
    Config {
        schedule,
        tol: 1e-9,
        max_rounds: 10_000,
    }
}

fn run(graph: &Graph, x: &[f64], schedule: Schedule, faults: Faults) -> Report {
    run_seeded(graph, x, schedule, faults, 0)
}

fn run_seeded(graph: &Graph, x: &[f64], schedule: Schedule, faults: Faults, seed: u64) -> Report {
    sim::simulate(graph, x, 1, &options(config(schedule), faults, seed)).expect("a valid set-up")
}

fn detector() -> Faults {
    Faults {
        suspect_after: Some(K),
        ..Faults::default()
    }
}

fn all_but(n: usize, out: usize) -> Vec<usize> {
    (0..n).filter(|&i| i != out).collect()
}

// ----- freezes ----------------------------------------------------------

/// Member 2 stops after round 0 for three timeouts, then thaws: the others
/// suspect it and finish without it; it learns so and fails.
#[test]
fn a_member_frozen_past_the_timeout_fails_when_it_thaws() {
    let graph = Graph::complete(4).unwrap();
    let x = inputs(4, 1, 1);
    let faults = Faults {
        freezes: vec![(2, Span::between(2, 2 + 3 * u64::from(K)))],
        ..detector()
    };
    let report = run(&graph, &x, Schedule::Metropolis, faults);
    assert_sound(&report, &x, "metropolis");
    assert_eq!(failed(&report, 2), &Error::Excluded { rank: 2 });
    for i in [0, 1, 3] {
        assert_eq!(contributors(&report, i), vec![0, 1, 3]);
    }
    assert!(!report.converged);
}

/// The same in the exact schedule. Frozen after its first exchange (16
/// members, timeout 2), member 2 is suspected, but its input is already
/// combined: the others finish with the exact mean of all sixteen inputs.
/// Frozen before it (8 members, timeout 1), it is left out: the others
/// fall back to Metropolis weights without it.
#[test]
fn an_exact_run_goes_on_without_a_frozen_member() {
    for (n, after, start, with_it) in [(16, 2, 2, true), (8, 1, 1, false)] {
        let graph = Graph::exponential(n).unwrap();
        let x = inputs(n, 1, 2);
        let faults = Faults {
            freezes: vec![(2, Span::between(start, start + 3 * u64::from(after)))],
            suspect_after: Some(after),
            ..Faults::default()
        };
        let report = run(&graph, &x, Schedule::Exact, faults);
        let context = format!("{n} members");
        assert_sound(&report, &x, &context);
        assert_eq!(
            failed(&report, 2),
            &Error::Excluded { rank: 2 },
            "{context}"
        );
        let expected: Vec<usize> = (0..n).filter(|&i| with_it || i != 2).collect();
        for i in all_but(n, 2) {
            assert_eq!(contributors(&report, i), expected, "{context}");
            let residual = report.members[i].reduction().unwrap().residual;
            assert_eq!(residual == 0.0, with_it, "{context}: exact iff with it");
        }
    }
}

/// A freeze shorter than the timeout only costs time: what reached the
/// member waited in its receive buffer, and everyone finishes together.
#[test]
fn a_short_freeze_only_delays() {
    let graph = Graph::ring(6).unwrap();
    let x = inputs(6, 1, 3);
    let plain = run(&graph, &x, Schedule::Metropolis, Faults::default());
    for faults in [
        Faults {
            freezes: vec![(2, Span::between(3, 3 + u64::from(K) - 1))],
            ..detector()
        },
        // Without a detector nobody is suspected, however long the freeze.
        Faults {
            freezes: vec![(2, Span::between(3, 300))],
            ..Faults::default()
        },
    ] {
        let report = run(&graph, &x, Schedule::Metropolis, faults);
        assert_sound(&report, &x, "short freeze");
        assert!(report.converged);
        assert_eq!(report.contributors.as_ref().unwrap().len(), 6);
        // The same rounds, bit for bit, only later.
        assert_eq!(report.members, plain.members);
        assert!(report.ticks > plain.ticks);
    }
}

/// A member frozen for good ends unfinished once the others are done,
/// and the run does not wait for it.
#[test]
fn a_member_frozen_for_good_is_left_behind() {
    let graph = Graph::complete(5).unwrap();
    let x = inputs(5, 1, 9);
    let faults = Faults {
        freezes: vec![(4, Span::from_tick(2))],
        ..detector()
    };
    let report = run(&graph, &x, Schedule::Metropolis, faults);
    assert!(matches!(
        report.members[4],
        MemberOutcome::Unfinished { .. }
    ));
    for i in 0..4 {
        assert_eq!(contributors(&report, i), vec![0, 1, 2, 3]);
    }
    assert!(report.ticks < 1000, "{} ticks", report.ticks);
}

/// The race that `SIGSTOP` sets up: the three members of a complete graph
/// have agreed on their stop round when member 0 freezes; the others
/// suspect it and go on without it. When it thaws, its receive buffer
/// holds the round messages it needs to reach the old stop round — and,
/// after them, its neighbours' views that exclude it. It reads everything
/// before it advances, so it stops as excluded instead of finishing with
/// a result the others do not share.
#[test]
fn a_member_that_thaws_reads_its_exclusion_before_its_stale_rounds() {
    let graph = Graph::complete(3).unwrap();
    let x = [1.0, 10.0, 100.0];
    let faults = Faults {
        freezes: vec![(0, Span::between(4, 7))],
        suspect_after: Some(3),
        ..Faults::default()
    };
    let report = run(&graph, &x, Schedule::Metropolis, faults);
    assert_sound(&report, &x, "thaw");
    assert_eq!(failed(&report, 0), &Error::Excluded { rank: 0 });
    for i in [1, 2] {
        assert_eq!(contributors(&report, i), vec![1, 2]);
    }
}

// ----- cuts and isolations ------------------------------------------------

/// A 2 | 2 split: neither half holds a strict majority, so everyone stops.
#[test]
fn an_even_split_stops_everyone() {
    let graph = Graph::complete(4).unwrap();
    let x = inputs(4, 1, 4);
    for schedule in [Schedule::Metropolis, Schedule::Exact] {
        let faults = Faults {
            cuts: split(&[0, 1], &[2, 3], 1),
            ..detector()
        };
        let report = run(&graph, &x, schedule, faults);
        assert_sound(&report, &x, "2 | 2");
        for i in 0..4 {
            assert_eq!(
                failed(&report, i),
                &Error::Partitioned {
                    rank: i,
                    live: 2,
                    base: 4
                },
                "{schedule:?}"
            );
        }
    }
}

/// A 3 | 1 split: the three finish with the exact mean of their inputs,
/// the one stops.
#[test]
fn the_majority_of_a_split_finishes() {
    let graph = Graph::complete(4).unwrap();
    let x = inputs(4, 1, 5);
    for schedule in [Schedule::Metropolis, Schedule::Exact] {
        let faults = Faults {
            cuts: split(&[3], &[0, 1, 2], 1),
            ..detector()
        };
        let report = run(&graph, &x, schedule, faults);
        assert_sound(&report, &x, "3 | 1");
        assert!(matches!(
            failed(&report, 3),
            Error::Partitioned { rank: 3, .. }
        ));
        for i in 0..3 {
            assert_eq!(contributors(&report, i), vec![0, 1, 2], "{schedule:?}");
        }
    }
}

/// Member 1 stops hearing member 0 (one way): it suspects 0, the news
/// spreads, and 0 — whose own links look fine — learns it was excluded.
#[test]
fn a_one_way_cut_excludes_the_member_not_heard() {
    let graph = Graph::complete(4).unwrap();
    let x = inputs(4, 1, 6);
    let faults = Faults {
        cuts: vec![cut(0, 1, false, Span::from_tick(3))],
        ..detector()
    };
    let report = run(&graph, &x, Schedule::Metropolis, faults);
    assert_sound(&report, &x, "one way");
    assert_eq!(failed(&report, 0), &Error::Excluded { rank: 0 });
    for i in 1..4 {
        assert_eq!(contributors(&report, i), vec![1, 2, 3]);
    }
}

/// A member cut off from everyone for six timeouts — including from the
/// neighbours a repair gives it meanwhile — stops; the others go on.
#[test]
fn an_isolated_member_stops_and_the_others_go_on() {
    let graph = Graph::ring(8).unwrap();
    let x = inputs(8, 1, 8);
    let faults = Faults {
        isolations: vec![(5, Span::between(3, 3 + 6 * u64::from(K)))],
        ..detector()
    };
    let report = run(&graph, &x, Schedule::Metropolis, faults);
    assert_sound(&report, &x, "isolation");
    assert!(matches!(
        failed(&report, 5),
        Error::Partitioned { rank: 5, .. }
    ));
    for i in all_but(8, 5) {
        assert_eq!(contributors(&report, i), all_but(8, 5));
    }
}

// ----- suspicions --------------------------------------------------------

/// A failure detector's mistake: the member suspected is excluded, the
/// others finish without it.
#[test]
fn a_false_suspicion_excludes_its_victim() {
    let graph = Graph::exponential(8).unwrap();
    let x = inputs(8, 1, 7);
    let faults = Faults {
        false_suspicions: vec![Suspicion {
            tick: 4,
            by: 1,
            of: 3,
        }],
        ..Faults::default()
    };
    let report = run(&graph, &x, Schedule::Metropolis, faults);
    assert_sound(&report, &x, "false suspicion");
    assert_eq!(failed(&report, 3), &Error::Excluded { rank: 3 });
    for i in all_but(8, 3) {
        assert_eq!(contributors(&report, i), all_but(8, 3));
    }
}

/// Member 1 hangs off member 0 alone, and member 2 falsely suspects both.
/// The others repair around the two and go on; member 0 learns of its
/// exclusion from them (and stops reading the view there, at its own
/// departure, before that of 1). Member 1 can hear of anything only from
/// 0 — which is alive, so no failure detector reports it, and which the
/// others no longer talk to. The last word of 0, its own departure, lets
/// 1 go on to learn its own exclusion instead of waiting for 0 forever.
#[test]
fn an_excluded_member_lets_go_of_a_neighbour_that_hears_only_it() {
    let edges = [(0, 1), (0, 2), (0, 3), (0, 4), (2, 3), (2, 4), (3, 4)];
    let graph = Graph::from_edges(5, &edges).unwrap();
    let x = inputs(5, 1, 11);
    let suspicion = |of| Suspicion { tick: 3, by: 2, of };
    let faults = Faults {
        false_suspicions: vec![suspicion(1), suspicion(0)],
        ..detector()
    };
    let report = run(&graph, &x, Schedule::Metropolis, faults);
    assert_sound(&report, &x, "leaf");
    for i in [0, 1] {
        assert_eq!(failed(&report, i), &Error::Excluded { rank: i });
    }
    for i in [2, 3, 4] {
        assert_eq!(contributors(&report, i), vec![2, 3, 4]);
    }
}

/// Members 1, 2 and 6 are excluded and 4 crashes; members 3, 5 and 7 stop
/// for want of a quorum (4 live of 8), but member 0, a neighbour of 4,
/// holds its crash proven (base 7) and keeps its quorum — and waits for
/// 3, 5 and 7, which are alive and send no round again. Their last word
/// names their own departure too, so 0 stops as well instead of waiting
/// forever.
#[test]
fn a_partitioned_member_lets_go_of_a_neighbour_that_kept_its_quorum() {
    let edges = [
        (0, 3),
        (0, 4),
        (0, 7),
        (1, 3),
        (1, 5),
        (1, 6),
        (2, 4),
        (2, 5),
        (2, 6),
        (3, 7),
        (4, 6),
        (5, 7),
    ];
    let graph = Graph::from_edges(8, &edges).unwrap();
    let x = inputs(8, 1, 13);
    let faults = Faults {
        drop: 0.11312511465513643,
        max_delay: 2,
        crashes: vec![(2, 4), (4, 1)],
        isolations: vec![(6, Span::between(3, 4))],
        freezes: vec![(2, Span::between(8, 10))],
        suspect_after: Some(1),
        ..Faults::default()
    };
    let report = run_seeded(
        &graph,
        &x,
        Schedule::Metropolis,
        faults,
        2748952722373891126,
    );
    assert_sound(&report, &x, "partitioned neighbours");
    assert!(matches!(
        failed(&report, 0),
        Error::Partitioned { rank: 0, .. }
    ));
}

// ----- crashes, with and without the detector ------------------------------

/// Crashes stay proven departures with the detector on, and random loss
/// never looks like silence: the run is the same as without a detector.
#[test]
fn the_detector_changes_nothing_without_outages() {
    let graph = Graph::random_regular(32, 4, 7).unwrap();
    let x = inputs(32, 1, 10);
    for (drop, max_delay) in [(0.0, 0), (0.3, 3)] {
        let faults = Faults {
            crashes: vec![(3, 4), (17, 9), (18, 9)],
            drop,
            max_delay,
            ..Faults::default()
        };
        let with = Faults {
            suspect_after: Some(1),
            ..faults.clone()
        };
        let plain = run(&graph, &x, Schedule::Metropolis, faults);
        assert_sound(&plain, &x, "crashes");
        assert!(plain.converged);
        assert_eq!(run(&graph, &x, Schedule::Metropolis, with), plain);
    }
}

/// Seven neighbours on a ring crash at about the same time, over a lossy
/// network. The repair joins members 0 and 16 across the gap although
/// their rounds lie several apart, and members take neighbours that have
/// crashed already: each learns of those crashes from its own failure
/// detector, and a neighbour's round message from rounds ahead waits until
/// its round comes. Everyone finishes.
#[test]
fn a_cluster_of_crashes_is_repaired_across_members_rounds_apart() {
    let n = 24;
    let graph = Graph::ring(n).unwrap();
    let x = inputs(n, 1, 12);
    for seed in 1..=4 {
        for r in [10, 11] {
            let crashes = vec![
                (17, r),
                (18, r + 1),
                (19, r),
                (20, r + 2),
                (21, r),
                (22, r + 1),
                (23, r),
            ];
            let faults = Faults {
                crashes,
                drop: 0.3,
                max_delay: 2,
                ..Faults::default()
            };
            let report = run_seeded(&graph, &x, Schedule::Metropolis, faults, seed);
            let context = format!("seed {seed}, round {r}");
            assert_sound(&report, &x, &context);
            assert!(report.converged, "{context}");
            assert_eq!(
                report.contributors.unwrap().departed(),
                &[17, 18, 19, 20, 21, 22, 23]
            );
        }
    }
}

/// After the exact phase loses a member, a mass can pass through zero
/// weight (the flows of the departed partner were dropped); the round
/// messages must stay well formed (the residual is then infinite, not
/// NaN), or the neighbours reject them as violations.
#[test]
fn an_exact_fallback_through_zero_weight_sends_well_formed_messages() {
    let n = 24;
    let mut edges: Vec<(usize, usize)> = Graph::ring(n).unwrap().edges().collect();
    edges.extend(Graph::exponential(n).unwrap().edges());
    edges.sort_unstable();
    edges.dedup();
    let graph = Graph::from_edges(n, &edges).unwrap();
    let x: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let faults = Faults {
        crashes: vec![(6, 1)],
        isolations: vec![(23, Span::between(2, 6))],
        drop: 0.009307144114079026,
        suspect_after: Some(3),
        ..Faults::default()
    };
    let report = run_seeded(&graph, &x, Schedule::Exact, faults, 2736693806185044849);
    assert_sound(&report, &x, "zero weight");
    assert_eq!(failed(&report, 23), &Error::Excluded { rank: 23 });
}

// ----- known engine races (split brain) ------------------------------------

/// The race of `a_member_that_thaws_reads_its_exclusion_before_its_stale_rounds`
/// with the exclusion lost: member 0 thaws while cut off, so its
/// neighbours' views never reach its buffer, and the stale round messages
/// there take it to the old stop round. It finishes with all three inputs;
/// the others finish without it.
#[test]
#[ignore = "engine race: a member finishes on round messages its neighbours sent before they excluded it"]
fn a_member_cut_off_as_it_thaws_does_not_finish_on_stale_rounds() {
    let graph = Graph::complete(3).unwrap();
    let x = [1.0, 10.0, 100.0];
    let faults = Faults {
        freezes: vec![(0, Span::between(4, 7))],
        isolations: vec![(0, Span::between(6, 8))],
        suspect_after: Some(3),
        ..Faults::default()
    };
    let report = run(&graph, &x, Schedule::Metropolis, faults);
    check_agreement(&report).unwrap();
}

/// Member 0 stops hearing member 1 and suspects it, just as 1 completes
/// its last exchange: 1 finishes with the exact mean of all three inputs,
/// 0 and 2 fall back to Metropolis weights without it.
#[test]
#[ignore = "engine race: an exact-phase member finishes with everyone while a neighbour drops it"]
fn an_exact_member_does_not_finish_with_everyone_while_suspected() {
    let graph = Graph::complete(3).unwrap();
    let x = [1.0, 10.0, 100.0];
    let faults = Faults {
        cuts: vec![cut(1, 0, false, Span::between(2, 4))],
        suspect_after: Some(2),
        ..Faults::default()
    };
    let report = run(&graph, &x, Schedule::Exact, faults);
    check_agreement(&report).unwrap();
}

// ----- parameters ----------------------------------------------------------

#[test]
fn outage_parameters_are_checked() {
    let graph = Graph::ring(4).unwrap();
    let x = [1.0; 4];
    let simulate = |faults: Faults| {
        sim::simulate(
            &graph,
            &x,
            1,
            &options(config(Schedule::Metropolis), faults, 0),
        )
    };
    let suspicion = |tick, by, of| Suspicion { tick, by, of };
    let invalid = [
        (
            "cuts",
            Faults {
                cuts: vec![cut(1, 1, true, Span::between(1, 2))],
                ..Faults::default()
            },
        ),
        (
            "cuts",
            Faults {
                cuts: vec![cut(0, 1, false, Span::between(5, 5))],
                ..Faults::default()
            },
        ),
        (
            "isolations",
            Faults {
                isolations: vec![(2, Span::between(7, 3))],
                ..Faults::default()
            },
        ),
        (
            "freezes",
            Faults {
                freezes: vec![(2, Span::between(1, 0))],
                ..Faults::default()
            },
        ),
        (
            "false_suspicions",
            Faults {
                false_suspicions: vec![suspicion(1, 2, 2)],
                ..Faults::default()
            },
        ),
        (
            "suspect_after",
            Faults {
                suspect_after: Some(0),
                ..Faults::default()
            },
        ),
    ];
    for (field, faults) in invalid {
        match simulate(faults) {
            Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let unknown = [
        Faults {
            cuts: vec![cut(0, 4, true, Span::from_tick(1))],
            ..Faults::default()
        },
        Faults {
            isolations: vec![(4, Span::from_tick(1))],
            ..Faults::default()
        },
        Faults {
            freezes: vec![(9, Span::from_tick(1))],
            ..Faults::default()
        },
        Faults {
            false_suspicions: vec![suspicion(1, 0, 4)],
            ..Faults::default()
        },
    ];
    for faults in unknown {
        assert!(matches!(
            simulate(faults),
            Err(Error::UnknownNode { members: 4, .. })
        ));
    }
    // Spans and ticks at the ends of the range are accepted.
    let extreme = Faults {
        cuts: vec![cut(0, 1, true, Span::between(u64::MAX - 1, u64::MAX))],
        freezes: vec![(3, Span::from_tick(u64::MAX))],
        false_suspicions: vec![suspicion(u64::MAX, 0, 1)],
        suspect_after: Some(u32::MAX),
        ..Faults::default()
    };
    assert!(simulate(extreme).unwrap().converged);
}
