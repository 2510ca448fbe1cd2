//! Property tests of the simulator's outages: random graphs on 2 to 24
//! members, both schedules, random freezes, cuts (both ways and one way),
//! isolations, false suspicions and crashes under the silence-based
//! failure detector, sometimes over a lossy network.

mod common;
mod soundness;

use common::{inputs, options};
use dac_core::sim::{self, Cut, Faults, Span, Suspicion};
use dac_core::{Config, Graph, Schedule};
use proptest::prelude::*;
use soundness::{check_agreement, check_sound};

fn config(schedule: Schedule) -> Config {
    Config {
        schedule,
        tol: 1e-9,
        max_rounds: 10_000,
    }
}

/// A graph family of the property tests.
#[derive(Clone, Copy, Debug)]
enum Family {
    Exponential,
    Ring,
    RandomRegular(u64),
    Complete,
}

/// A graph of `family` on `n` members (the exponential graph when `n` is
/// too small for a ring or a random regular graph), with the exponential
/// graph's edges added for the exact schedule.
fn build(family: Family, n: usize, schedule: Schedule) -> Graph {
    let graph = match family {
        Family::Ring if n >= 3 => Graph::ring(n),
        Family::RandomRegular(seed) if n >= 6 => Graph::random_regular(n, 3 + n % 2, seed),
        Family::Exponential | Family::Ring | Family::RandomRegular(_) => Graph::exponential(n),
        Family::Complete => Graph::complete(n),
    }
    .expect("a graph of this size");
    if schedule != Schedule::Exact {
        return graph;
    }
    // The exact schedule needs its pairs: add the exponential graph's edges.
    let mut edges: Vec<(usize, usize)> = graph.edges().collect();
    edges.extend(Graph::exponential(n).expect("n >= 2").edges());
    edges.sort_unstable();
    edges.dedup();
    Graph::from_edges(n, &edges).expect("a connected graph")
}

/// One outage drawn from raw numbers: `(kind, a, b, flag, start, length)`.
type RawOutage = (u8, usize, usize, bool, u64, u64);

/// Adds the outage `raw` to `faults`: a freeze, a cut of a random link
/// (both ways or one way), an isolation, a false suspicion or a crash.
/// Spans last 1 to `3 · after` ticks and start within the first
/// `horizon` ticks (a run with the exact schedule is over in a few).
fn add_outage(faults: &mut Faults, graph: &Graph, raw: RawOutage, after: u32, horizon: u64) {
    let (kind, a, b, flag, start, length) = raw;
    let n = graph.len();
    let start = 1 + start % horizon;
    let span = Span::between(start, start + 1 + length % (3 * u64::from(after)));
    let node = a % n;
    match kind % 10 {
        0 | 1 => faults.freezes.push((node, span)),
        2..=4 => {
            let edges: Vec<(usize, usize)> = graph.edges().collect();
            let (x, y) = edges[b % edges.len()];
            let (from, to) = if a % 2 == 0 { (x, y) } else { (y, x) };
            faults.cuts.push(Cut {
                from,
                to,
                both_ways: flag,
                span,
            });
        }
        5 | 6 => faults.isolations.push((node, span)),
        7 => {
            let of = (node + 1 + b % (n - 1)) % n;
            faults.false_suspicions.push(Suspicion {
                tick: start,
                by: node,
                of,
            });
        }
        // A round the run reaches (the exact schedule takes a few).
        _ => faults
            .crashes
            .push((node, (length % (horizon / 3 + 1)) as u32)),
    }
}

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![
        Just(Family::Exponential),
        Just(Family::Ring),
        any::<u64>().prop_map(Family::RandomRegular),
        Just(Family::Complete),
    ]
}

/// One random run: its graph, schedule, faults and inputs.
#[derive(Clone, Debug)]
struct Case {
    graph: Graph,
    schedule: Schedule,
    faults: Faults,
    inputs: Vec<f64>,
    seed: u64,
}

impl Case {
    fn run(&self) -> sim::Report {
        let options = options(config(self.schedule), self.faults.clone(), self.seed);
        sim::simulate(&self.graph, &self.inputs, 1, &options).expect("a valid set-up")
    }
}

/// A graph of 2 to 24 members and up to four outages under a detector
/// timeout of 1 to 8 ticks (spans of up to three timeouts); one run in four
/// over a network that loses up to 20 % of the messages and delays them by
/// up to 2 ticks.
fn case() -> impl Strategy<Value = Case> {
    (
        // Small groups often: there a few crashes leave a member alone, and
        // one suspicion decides the quorum.
        prop_oneof![1 => 2usize..=4, 2 => 5usize..=24],
        family(),
        any::<bool>(),
        1u32..=8,
        prop::collection::vec(any::<RawOutage>(), 0..=4),
        prop_oneof![3 => Just((0.0, 0)), 1 => (0.0f64..0.2, 0u32..=2)],
        -2i32..=4,
        any::<u64>(),
    )
        .prop_map(|(n, family, exact, after, raw, lossy, e, seed)| {
            let schedule = if exact {
                Schedule::Exact
            } else {
                Schedule::Metropolis
            };
            let graph = build(family, n, schedule);
            let horizon = if exact { 8 } else { 40 };
            let mut faults = Faults {
                suspect_after: Some(after),
                drop: lossy.0,
                max_delay: lossy.1,
                ..Faults::default()
            };
            for r in raw {
                add_outage(&mut faults, &graph, r, after, horizon);
            }
            let inputs = inputs(n, 1, seed)
                .iter()
                .map(|v| v * 10f64.powi(e))
                .collect();
            Case {
                graph,
                schedule,
                faults,
                inputs,
                seed,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Every run is sound (see [`check_sound`]): each value agrees with its
    /// contributors, each result has a strict majority behind it (so
    /// nobody finishes alone), and every member that neither crashed nor
    /// left ends, finished or stopped for want of a quorum or excluded.
    #[test]
    fn outages_never_falsify_a_value_or_leave_a_member_waiting(case in case()) {
        let report = case.run();
        if let Err(e) = check_sound(&report, &case.inputs) {
            return Err(TestCaseError::fail(format!(
                "{e}\n{} members, {:?}, {:?}",
                case.graph.len(), case.schedule, case.faults
            )));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    /// No split brain: the finished members all report the same
    /// contributors, so a member the others went on without — a frozen
    /// member they suspected, a member cut off past the timeout — never
    /// finishes. About one run in 5000 breaks it, mostly with the exact
    /// schedule (see the two ignored races in `outages.rs`).
    #[test]
    #[ignore = "engine races: a member can finish just as its neighbours exclude it"]
    fn outages_never_split_the_job(case in case()) {
        let report = case.run();
        if let Err(e) = check_sound(&report, &case.inputs).and_then(|()| check_agreement(&report)) {
            return Err(TestCaseError::fail(format!(
                "{e}\n{} members, {:?}, {:?}",
                case.graph.len(), case.schedule, case.faults
            )));
        }
    }
}
