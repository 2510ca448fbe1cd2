//! Departures in the threaded transport: crashes, leaves and freezes, with
//! exact results over the members each result names.

mod common;

use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::{inputs, max_norm, mean_of};
use dac_core::threaded::{self, Fault, Options};
use dac_core::{Communicator, Config, Error, Reduction, Result, Schedule};

const DIM: usize = 100;

/// One rank's calls: each outcome and how long the call took.
type Calls = Vec<(Result<Reduction>, Duration)>;

/// Runs `f` on its own thread and fails the test if it is not done within
/// `limit` (a hang), re-raising its panic if it panics.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread sent nothing but did not panic"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("still running after {limit:?}: a hang"),
    }
}

/// `count` reductions' inputs for `n` ranks: `xs[k]` holds the `n × DIM`
/// inputs of reduction `k`.
fn sequence_inputs(n: usize, count: usize, seed: u64) -> Vec<Vec<f64>> {
    (0..count)
        .map(|k| inputs(n, DIM, 1000 * seed + k as u64))
        .collect()
}

/// This rank's part of reduction `k`.
fn mine(xs: &[Vec<f64>], k: usize, rank: usize) -> &[f64] {
    &xs[k][rank * DIM..(rank + 1) * DIM]
}

/// Calls `allreduce_mean` for every reduction of `xs`, in order.
fn reduce_all(comm: &mut threaded::ThreadComm<'_>, xs: &[Vec<f64>]) -> Calls {
    (0..xs.len())
        .map(|k| {
            let started = Instant::now();
            let outcome = comm.allreduce_mean(mine(xs, k, comm.rank()));
            (outcome, started.elapsed())
        })
        .collect()
}

fn options(schedule: Schedule, peer_timeout: Duration, faults: Vec<Fault>) -> Options {
    let tol = if schedule == Schedule::Exact {
        1e-12
    } else {
        1e-10
    };
    Options {
        config: Config {
            schedule,
            tol,
            ..Config::default()
        },
        peer_timeout,
        // A bug shows up as a timeout, not as a hang.
        timeout: Duration::from_secs(5),
        faults,
        ..Options::default()
    }
}

/// The members a result names.
fn named(r: &Reduction) -> Vec<usize> {
    r.contributors.to_vec()
}

/// Asserts that `r` is the mean of the inputs of the members it names,
/// within `tol` relative (computed centrally from the known inputs).
fn assert_exact(r: &Reduction, x: &[f64], tol: f64, context: &str) {
    let expected = mean_of(x, DIM, |i| r.contributors.contains(i));
    assert_eq!(r.value.len(), DIM, "{context}");
    let bound = tol * max_norm(&expected).max(1.0);
    let err = r
        .value
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        err <= bound,
        "{context}: error {err:e} above {bound:e} over {:?}",
        named(r)
    );
}

fn is_cut_off(e: &Error) -> bool {
    matches!(e, Error::Excluded { .. } | Error::Partitioned { .. })
}

/// Asserts that a rank cut off at call `from` fails that call and every
/// later one with the same error, the later ones at once.
fn assert_cut_off_from(calls: &Calls, from: usize, context: &str) {
    let Some((outcome, _)) = calls.get(from) else {
        return; // no call left to check
    };
    let first = match outcome {
        Err(e) if is_cut_off(e) => e.clone(),
        other => panic!("{context}: call {from} should be cut off, got {other:?}"),
    };
    for (k, (outcome, took)) in calls.iter().enumerate().skip(from + 1) {
        assert_eq!(
            outcome.as_ref().err(),
            Some(&first),
            "{context}: call {k} after the cut-off"
        );
        assert!(
            *took < Duration::from_millis(100),
            "{context}: call {k} took {took:?}"
        );
    }
}

/// The SIGSTOP case: rank 2 sleeps for three peer timeouts at the start of
/// reduction `at` (or after its first round). The others suspect it, finish
/// that reduction over [0, 1, 3] (or all four, if its input was already
/// combined) and go on over [0, 1, 3]; rank 2 learns that it was excluded
/// and never returns a result over itself alone. Twenty runs with varying
/// freeze points shake out races.
#[test]
fn a_frozen_rank_is_excluded_and_the_others_go_on_exactly() {
    let n = 4;
    let count = 6;
    let peer_timeout = Duration::from_millis(150);
    for run in 0..20usize {
        let at = run % count;
        let after_rounds = u32::from(run >= 12);
        let context = format!("run {run}: rank 2 frozen in reduction {at} after {after_rounds}");
        let xs = Arc::new(sequence_inputs(n, count, run as u64));
        let faults = vec![Fault::Freeze {
            rank: 2,
            at_reduction: at,
            after_rounds,
            duration: 3 * peer_timeout,
        }];
        let opts = options(Schedule::Exact, peer_timeout, faults);
        let shared = Arc::clone(&xs);
        let started = Instant::now();
        let results = within(Duration::from_secs(10), move || {
            threaded::run(n, opts, |comm| reduce_all(comm, &shared)).unwrap()
        });
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{context}: slow"
        );
        let all = vec![0, 1, 2, 3];
        let others = vec![0, 1, 3];
        for (rank, calls) in results.iter().enumerate() {
            let context = format!("{context}, rank {rank}");
            for (k, (outcome, _)) in calls.iter().enumerate() {
                let context = format!("{context}, reduction {k}");
                if let Ok(r) = outcome {
                    assert_exact(r, &xs[k], 1e-12, &context);
                    assert!(r.contributors.contains(rank), "{context}: {:?}", named(r));
                }
                if rank == 2 {
                    continue;
                }
                let r = match outcome {
                    Ok(r) => r,
                    Err(e) => panic!("{context}: {e}"),
                };
                if k < at {
                    assert_eq!(named(r), all, "{context}");
                } else if k > at || after_rounds == 0 {
                    assert_eq!(named(r), others, "{context}");
                } else {
                    assert!(named(r) == all || named(r) == others, "{context}");
                }
            }
        }
        let frozen = &results[2];
        for (k, (outcome, _)) in frozen.iter().enumerate().take(at) {
            let r = outcome.as_ref().unwrap();
            assert_eq!(named(r), all, "{context}: rank 2, reduction {k}");
        }
        // The in-flight reduction: cut off, or (frozen after its input was
        // combined) the others' result over all four.
        match &frozen[at].0 {
            Ok(r) if after_rounds > 0 => {
                assert_eq!(named(r), all, "{context}");
                assert_cut_off_from(frozen, at + 1, &format!("{context}, rank 2"));
            }
            _ => assert_cut_off_from(frozen, at, &format!("{context}, rank 2")),
        }
    }
}

/// The same freeze under an iterative schedule, where the frozen rank is
/// dropped from its neighbours' sets at once and learns its exclusion from
/// their answers (or their exits), not from their events.
#[test]
fn a_frozen_rank_is_excluded_under_metropolis_too() {
    let n = 4;
    let count = 4;
    let peer_timeout = Duration::from_millis(150);
    for at in [0, 2] {
        let context = format!("metropolis, frozen in reduction {at}");
        let xs = Arc::new(sequence_inputs(n, count, 77 + at as u64));
        let faults = vec![Fault::Freeze {
            rank: 2,
            at_reduction: at,
            after_rounds: 0,
            duration: 3 * peer_timeout,
        }];
        let opts = options(Schedule::Metropolis, peer_timeout, faults);
        let shared = Arc::clone(&xs);
        let results = within(Duration::from_secs(10), move || {
            threaded::run(n, opts, |comm| reduce_all(comm, &shared)).unwrap()
        });
        for rank in [0, 1, 3] {
            for (k, (outcome, _)) in results[rank].iter().enumerate() {
                let context = format!("{context}, rank {rank}, reduction {k}");
                let r = outcome.as_ref().unwrap();
                assert_exact(r, &xs[k], 1e-10, &context);
                let expected = if k < at {
                    vec![0, 1, 2, 3]
                } else {
                    vec![0, 1, 3]
                };
                assert_eq!(named(r), expected, "{context}");
            }
        }
        assert_cut_off_from(&results[2], at, &format!("{context}, rank 2"));
    }
}

/// A freeze shorter than the peer timeout is a slow rank, not a departure.
#[test]
fn a_short_freeze_changes_nothing() {
    let n = 4;
    let xs = Arc::new(sequence_inputs(n, 4, 5));
    let faults = vec![Fault::Freeze {
        rank: 2,
        at_reduction: 1,
        after_rounds: 0,
        duration: Duration::from_millis(100),
    }];
    let opts = options(Schedule::Exact, Duration::from_secs(1), faults);
    let shared = Arc::clone(&xs);
    let results = within(Duration::from_secs(10), move || {
        threaded::run(n, opts, |comm| reduce_all(comm, &shared)).unwrap()
    });
    for (rank, calls) in results.iter().enumerate() {
        for (k, (outcome, _)) in calls.iter().enumerate() {
            let context = format!("rank {rank}, reduction {k}");
            let r = outcome.as_ref().unwrap();
            assert_eq!(named(r), vec![0, 1, 2, 3], "{context}");
            assert_exact(r, &xs[k], 1e-12, &context);
        }
    }
}

/// Two of four frozen: neither side holds a strict majority. The two that
/// run stop with `Partitioned`; the frozen ones learn, when they wake,
/// that they were cut off; nobody returns a result over half the job.
#[test]
fn two_frozen_ranks_of_four_stop_everyone() {
    let n = 4;
    let count = 4;
    let peer_timeout = Duration::from_millis(150);
    for schedule in [Schedule::Exact, Schedule::Metropolis] {
        let xs = Arc::new(sequence_inputs(n, count, 9));
        let faults = [2, 3]
            .map(|rank| Fault::Freeze {
                rank,
                at_reduction: 1,
                after_rounds: 0,
                duration: 3 * peer_timeout,
            })
            .to_vec();
        let opts = options(schedule, peer_timeout, faults);
        let shared = Arc::clone(&xs);
        let results = within(Duration::from_secs(10), move || {
            threaded::run(n, opts, |comm| reduce_all(comm, &shared)).unwrap()
        });
        for (rank, calls) in results.iter().enumerate() {
            let context = format!("{schedule}, rank {rank}");
            let r = calls[0].0.as_ref().unwrap();
            assert_eq!(named(r), vec![0, 1, 2, 3], "{context}");
            assert_cut_off_from(calls, 1, &context);
            // (Once one of them has stopped, its exit is proof: the other
            // holds 1 of 3, not 2 of 4.)
            if rank < 2 {
                assert!(
                    matches!(calls[1].0, Err(Error::Partitioned { .. })),
                    "{context}: {:?}",
                    calls[1].0
                );
            }
        }
    }
}

/// A rank whose body returns early has left: the others hold it proven
/// gone at once (well before the peer timeout) and reduce exactly over the
/// survivors, on the graph repaired around it.
#[test]
fn a_rank_that_returns_early_is_left_out_exactly() {
    let n = 8;
    let count = 6;
    for schedule in [Schedule::Exact, Schedule::Metropolis] {
        let tol = if schedule == Schedule::Exact {
            1e-12
        } else {
            1e-10
        };
        let xs = Arc::new(sequence_inputs(n, count, 21));
        let opts = options(schedule, Duration::from_secs(2), Vec::new());
        let shared = Arc::clone(&xs);
        let started = Instant::now();
        let results = within(Duration::from_secs(10), move || {
            threaded::run(n, opts, |comm| {
                let xs: &[Vec<f64>] = if comm.rank() == 5 {
                    &shared[..2]
                } else {
                    &shared
                };
                reduce_all(comm, xs)
            })
            .unwrap()
        });
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{schedule}: slow"
        );
        let survivors: Vec<usize> = (0..n).filter(|&r| r != 5).collect();
        for (rank, calls) in results.iter().enumerate() {
            assert_eq!(calls.len(), if rank == 5 { 2 } else { count });
            for (k, (outcome, _)) in calls.iter().enumerate() {
                let context = format!("{schedule}, rank {rank}, reduction {k}");
                let r = outcome.as_ref().unwrap();
                assert_exact(r, &xs[k], tol, &context);
                let expected: Vec<usize> = if k < 2 {
                    (0..n).collect()
                } else {
                    survivors.clone()
                };
                assert_eq!(named(r), expected, "{context}");
            }
        }
    }
}

/// A rank that panics mid-sequence is reported by `run`, and the survivors
/// (whose results are kept aside) go on exactly over themselves.
#[test]
fn a_panicking_rank_is_left_out_and_reported() {
    let n = 4;
    let count = 4;
    let xs = Arc::new(sequence_inputs(n, count, 3));
    let kept: Arc<Mutex<Vec<Option<Calls>>>> = Arc::new(Mutex::new(vec![None; n]));
    let (shared, sink) = (Arc::clone(&xs), Arc::clone(&kept));
    let opts = options(Schedule::Exact, Duration::from_secs(2), Vec::new());
    let outcome = within(Duration::from_secs(10), move || {
        threaded::run(n, opts, |comm| {
            let rank = comm.rank();
            let calls = if rank == 1 {
                let first = comm.allreduce_mean(mine(&shared, 0, rank));
                assert!(first.is_err(), "rank 1 panics on purpose after reduction 0");
                Vec::new()
            } else {
                reduce_all(comm, &shared)
            };
            sink.lock().unwrap()[rank] = Some(calls);
        })
    });
    assert!(
        matches!(&outcome, Err(Error::Transport { reason, .. }) if reason.contains("rank 1")),
        "{outcome:?}"
    );
    let kept = kept.lock().unwrap();
    for rank in [0, 2, 3] {
        let calls = kept[rank].as_ref().unwrap();
        for (k, (outcome, _)) in calls.iter().enumerate() {
            let context = format!("rank {rank}, reduction {k}");
            let r = outcome.as_ref().unwrap();
            assert_exact(r, &xs[k], 1e-12, &context);
            let expected = if k == 0 {
                vec![0, 1, 2, 3]
            } else {
                vec![0, 2, 3]
            };
            assert_eq!(named(r), expected, "{context}");
        }
    }
}

/// An injected crash in the middle of a reduction: the survivors finish it
/// over whatever the crashed rank's input had reached (exactly), and go on
/// without it; the crashed rank's calls fail from then on.
#[test]
fn a_crash_mid_reduction_is_survived_exactly() {
    let n = 4;
    let count = 4;
    // The exact schedule on four ranks has two rounds: a crash due after
    // two strikes once the reduction has ended.
    for after_rounds in [0, 1, 2] {
        let xs = Arc::new(sequence_inputs(n, count, 40 + u64::from(after_rounds)));
        let faults = vec![Fault::Crash {
            rank: 2,
            at_reduction: 1,
            after_rounds,
        }];
        let opts = options(Schedule::Exact, Duration::from_secs(2), faults);
        let shared = Arc::clone(&xs);
        let started = Instant::now();
        let results = within(Duration::from_secs(10), move || {
            threaded::run(n, opts, |comm| reduce_all(comm, &shared)).unwrap()
        });
        assert!(started.elapsed() < Duration::from_secs(1), "slow");
        for (rank, calls) in results.iter().enumerate() {
            for (k, (outcome, _)) in calls.iter().enumerate() {
                let context = format!("crash after {after_rounds}: rank {rank}, reduction {k}");
                if rank == 2 && k >= 1 {
                    assert!(
                        matches!(outcome, Err(Error::Transport { .. })),
                        "{context}: {outcome:?}"
                    );
                    continue;
                }
                let r = outcome.as_ref().unwrap();
                assert_exact(r, &xs[k], 1e-12, &context);
                match k {
                    0 => assert_eq!(named(r), vec![0, 1, 2, 3], "{context}"),
                    1 => assert!(named(r).len() >= 3, "{context}: {:?}", named(r)),
                    _ => assert_eq!(named(r), vec![0, 1, 3], "{context}"),
                }
            }
        }
    }
}

/// Three of four leave — by an injected leave, by `ThreadComm::leave`, by
/// returning — and the last one goes on alone with its own input: a member
/// that left is proven gone and does not count against the quorum.
#[test]
fn three_of_four_leave_and_the_last_goes_on_alone() {
    let n = 4;
    let count = 3;
    let xs = Arc::new(sequence_inputs(n, count, 11));
    let faults = vec![Fault::Leave {
        rank: 0,
        at_reduction: 1,
    }];
    let opts = options(Schedule::Exact, Duration::from_secs(2), faults);
    let shared = Arc::clone(&xs);
    let started = Instant::now();
    let results = within(Duration::from_secs(10), move || {
        threaded::run(n, opts, |comm| match comm.rank() {
            1 => {
                let mut calls = reduce_all(comm, &shared[..1]);
                comm.leave();
                calls.extend(reduce_all(comm, &shared[1..]));
                calls
            }
            2 => reduce_all(comm, &shared[..1]),
            _ => reduce_all(comm, &shared),
        })
        .unwrap()
    });
    assert!(started.elapsed() < Duration::from_secs(1), "slow");
    for calls in &results {
        let r = calls[0].0.as_ref().unwrap();
        assert_eq!(named(r), vec![0, 1, 2, 3]);
        assert_exact(r, &xs[0], 1e-12, "reduction 0");
    }
    for rank in [0, 1] {
        for (k, (outcome, _)) in results[rank].iter().enumerate().skip(1) {
            assert!(
                matches!(outcome, Err(Error::Left { rank: r }) if *r == rank),
                "rank {rank}, reduction {k}: {outcome:?}"
            );
        }
    }
    for (k, (outcome, _)) in results[3].iter().enumerate().skip(1) {
        let r = outcome.as_ref().unwrap();
        assert_eq!(named(r), vec![3], "reduction {k}");
        assert_eq!(r.value, mine(&xs, k, 3), "reduction {k}: its own input");
    }
}

/// A member that left does not count against the quorum, one that froze
/// does: after 0 leaves and 1 freezes, 2 and 3 hold 2 of the 3 members not
/// proven gone and go on (with two suspicions they would have stopped).
#[test]
fn a_leave_then_a_freeze_keeps_the_quorum() {
    let n = 4;
    let count = 4;
    let peer_timeout = Duration::from_millis(150);
    let xs = Arc::new(sequence_inputs(n, count, 13));
    let faults = vec![
        Fault::Leave {
            rank: 0,
            at_reduction: 1,
        },
        Fault::Freeze {
            rank: 1,
            at_reduction: 2,
            after_rounds: 0,
            duration: 3 * peer_timeout,
        },
    ];
    let opts = options(Schedule::Exact, peer_timeout, faults);
    let shared = Arc::clone(&xs);
    let results = within(Duration::from_secs(10), move || {
        threaded::run(n, opts, |comm| reduce_all(comm, &shared)).unwrap()
    });
    let expected = [vec![0, 1, 2, 3], vec![1, 2, 3], vec![2, 3], vec![2, 3]];
    for rank in [2, 3] {
        for (k, (outcome, _)) in results[rank].iter().enumerate() {
            let context = format!("rank {rank}, reduction {k}");
            let r = outcome.as_ref().unwrap();
            assert_eq!(named(r), expected[k], "{context}");
            assert_exact(r, &xs[k], 1e-12, &context);
        }
    }
    assert_cut_off_from(&results[1], 2, "rank 1");
}

#[test]
fn bad_fault_injection_and_timeouts_are_rejected_before_threads_start() {
    let stray = Options {
        faults: vec![Fault::Leave {
            rank: 4,
            at_reduction: 0,
        }],
        ..Options::default()
    };
    assert!(matches!(
        threaded::run(4, stray, |_| ()),
        Err(Error::InvalidConfig {
            field: "faults",
            ..
        })
    ));
    let zero = Options {
        peer_timeout: Duration::ZERO,
        ..Options::default()
    };
    assert!(matches!(
        threaded::run(4, zero, |_| ()),
        Err(Error::InvalidConfig {
            field: "peer_timeout",
            ..
        })
    ));
}

/// A neighbour that is alive but stays away (busy in its own code) longer
/// than `timeout`: the ranks waiting for it fail with `Timeout` instead of
/// hanging, and are out of the job from then on; whatever the late rank
/// gets is exact over the members it names.
#[test]
fn ranks_waiting_longer_than_the_timeout_give_up_and_leave() {
    let n = 4;
    let xs = Arc::new(sequence_inputs(n, 3, 17));
    let opts = Options {
        timeout: Duration::from_millis(300),
        ..options(Schedule::Exact, Duration::from_secs(10), Vec::new())
    };
    let shared = Arc::clone(&xs);
    let results = within(Duration::from_secs(10), move || {
        threaded::run(n, opts, |comm| {
            let first = reduce_all(comm, &shared[..1]);
            if comm.rank() == 1 {
                std::thread::sleep(Duration::from_secs(2));
            }
            [first, reduce_all(comm, &shared[1..])].concat()
        })
        .unwrap()
    });
    for (rank, calls) in results.iter().enumerate() {
        assert_eq!(named(calls[0].0.as_ref().unwrap()), vec![0, 1, 2, 3]);
        if rank == 1 {
            for (k, (outcome, _)) in calls.iter().enumerate() {
                if let Ok(r) = outcome {
                    assert_exact(r, &xs[k], 1e-12, &format!("rank 1, reduction {k}"));
                    assert!(r.contributors.contains(1));
                }
            }
            continue;
        }
        let context = format!("rank {rank}");
        let error = calls[1].0.as_ref().err().cloned();
        assert!(
            matches!(error, Some(Error::Timeout { .. })),
            "{context}: {error:?}"
        );
        assert_eq!(calls[2].0.as_ref().err(), error.as_ref(), "{context}");
        assert!(calls[2].1 < Duration::from_millis(100), "{context}");
    }
}
