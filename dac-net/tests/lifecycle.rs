//! Forming, leaving and misusing a job.
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{TempDir, assert_close, exact_mean, input};
use dac_net::{Comm, Communicator, Error, Topology};

/// Member `leaver` of `n` reduces once, then drops its comm; the others
/// reduce again once they know it is gone, over the repaired topology.
fn leave_and_go_on(topology: Topology, n: usize, leaver: usize) {
    let dir = TempDir::new("drop");
    let dir = dir.path();
    let all: Vec<usize> = (0..n).collect();
    let rest: Vec<usize> = all.iter().copied().filter(|&r| r != leaver).collect();
    let builder = |rank: usize| {
        Comm::builder()
            .size(n)
            .rank(rank)
            .run_dir(dir)
            .topology(topology.clone())
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|rank| {
                let b = builder(rank);
                scope.spawn(move || {
                    let mut comm = b.build().unwrap();
                    let first = comm.allreduce_mean(&input(rank, 5)).unwrap();
                    if rank == leaver {
                        let start = Instant::now();
                        drop(comm);
                        return (first, None, start.elapsed());
                    }
                    // Wait until the leaver is known to be gone. It left
                    // after its part (it is in the first result), so it is
                    // listed as left, not departed, until a reduction
                    // lacks it.
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while !comm.left().contains(&leaver) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    assert_eq!(comm.departed(), Vec::<usize>::new(), "rank {rank}");
                    let second = comm.allreduce_mean(&input(rank, 5)).unwrap();
                    // Now a reduction of this member lacks it.
                    assert_eq!(comm.departed(), vec![leaver], "rank {rank}");
                    // (Others that finished already may be listed as left.)
                    assert!(!comm.left().contains(&leaver), "rank {rank}");
                    comm.shutdown().unwrap();
                    (first, Some(second), Duration::ZERO)
                })
            })
            .collect();
        for (rank, h) in handles.into_iter().enumerate() {
            let (first, second, drop_time) = h.join().unwrap();
            assert_close(
                &first.value,
                &exact_mean(&all, 5),
                &format!("rank {rank} before"),
            );
            assert!(
                drop_time < Duration::from_secs(5),
                "drop took {drop_time:?}"
            );
            if let Some(second) = second {
                assert_close(
                    &second.value,
                    &exact_mean(&rest, 5),
                    &format!("rank {rank} after"),
                );
                assert_eq!(second.contributors.to_vec(), rest);
            }
        }
    });
}

#[test]
fn a_dropped_comm_does_not_hang_and_the_others_go_on_without_it() {
    leave_and_go_on(Topology::Exponential, 3, 2);
}

#[test]
fn a_ring_is_repaired_around_a_member_that_left() {
    // Ranks 1 and 3 were not neighbours: the repair links them, over a
    // stream opened after the job started.
    leave_and_go_on(Topology::Ring, 5, 2);
}

#[test]
fn members_with_other_settings_are_refused() {
    let dir = TempDir::new("settings");
    let dir = dir.path();
    std::thread::scope(|scope| {
        let zero = scope.spawn(|| {
            Comm::builder()
                .size(2)
                .rank(0)
                .run_dir(dir)
                .startup_timeout(Duration::from_secs(3))
                .build()
        });
        let err = Comm::builder()
            .size(2)
            .rank(1)
            .run_dir(dir)
            .topology(Topology::Ring)
            .startup_timeout(Duration::from_secs(3))
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
        assert!(err.to_string().contains("topology=ring"), "{err}");
        // Rank 0 never got a valid member 1.
        let err = zero.join().unwrap().unwrap_err();
        assert!(err.to_string().contains("did not join"), "{err}");
    });
}

#[test]
fn bad_settings_are_typed_errors() {
    let b = || Comm::builder().size(4).rank(1);
    let cases = [
        (Comm::builder().rank(0).build(), "size"),
        (Comm::builder().size(2).build(), "rank"),
        (Comm::builder().size(2).rank(2).build(), "rank"),
        (Comm::builder().size(0).rank(0).build(), "size"),
        (b().tol(0.0).build(), "tol"),
        (b().max_frame_bytes(10).build(), "max_frame_bytes"),
        (b().peer_timeout(Duration::ZERO).build(), "peer_timeout"),
        (b().queue_depth(0).build(), "queue_depth"),
    ];
    for (result, field) in cases {
        match result {
            Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert!(matches!(
        b().topology(Topology::Hypercube).size(6).build(),
        Err(Error::InvalidGraph { .. })
    ));
    // The exact schedule needs the exponential graph's pairs.
    assert!(
        b().topology(Topology::Ring)
            .schedule(dac_net::Schedule::Exact)
            .build()
            .is_err()
    );
}

#[test]
fn blocking_calls_inside_an_async_runtime_are_errors() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let result = runtime.block_on(async { Comm::builder().size(1).rank(0).build() });
    assert!(matches!(result, Err(Error::Transport { .. })));
    // Built outside, a comm's async methods work inside a runtime.
    let mut comm = Comm::builder().size(1).rank(0).build().unwrap();
    let r = runtime
        .block_on(comm.allreduce_sum_async(&[1.0, 2.0]))
        .unwrap();
    assert_eq!(r.value, vec![1.0, 2.0]);
    let err = runtime
        .block_on(async { comm.allreduce_mean(&[1.0]) })
        .unwrap_err();
    assert!(err.to_string().contains("_async"), "{err}");
    comm.shutdown().unwrap();
}

#[test]
fn from_env_names_what_is_missing() {
    // Run in a child process so that the variables are controlled.
    if std::env::var("DAC_FROM_ENV_CHILD").is_err() {
        let exe = std::env::current_exe().unwrap();
        let run = |vars: &[(&str, &str)]| {
            let mut c = std::process::Command::new(&exe);
            c.args(["from_env_names_what_is_missing", "--exact", "--nocapture"])
                .env("DAC_FROM_ENV_CHILD", "1")
                .env_remove("DAC_RANK")
                .env_remove("DAC_SIZE");
            for (k, v) in vars {
                c.env(k, v);
            }
            String::from_utf8_lossy(&c.output().unwrap().stdout).into_owned()
        };
        assert!(run(&[]).contains("error: invalid configuration: DAC_RANK"));
        let out = run(&[("DAC_RANK", "0"), ("DAC_SIZE", "two")]);
        assert!(out.contains("DAC_SIZE = \"two\""), "{out}");
        let out = run(&[
            ("DAC_RANK", "0"),
            ("DAC_SIZE", "1"),
            ("DAC_TOPOLOGY", "star"),
        ]);
        assert!(out.contains("unknown topology \"star\""), "{out}");
        return;
    }
    println!("error: {}", Comm::from_env().unwrap_err());
}

#[test]
fn bad_inputs_fail_on_every_rank_and_the_next_reduction_works() {
    let results = common::run_job(
        3,
        |_, b| b,
        |comm| {
            let mut x = input(comm.rank(), 4);
            if comm.rank() == 1 {
                x[2] = f64::NAN;
            }
            let bad = comm.allreduce_mean(&x);
            let short = comm.allreduce_mean(&input(comm.rank(), 4 + (comm.rank() == 2) as usize));
            let good = comm.allreduce_mean(&input(comm.rank(), 4)).unwrap();
            (bad, short, good)
        },
    );
    for (rank, (bad, short, good)) in results.into_iter().enumerate() {
        assert!(
            matches!(
                bad,
                Err(Error::NonFiniteInput {
                    rank: 1,
                    index: 2,
                    ..
                })
            ),
            "rank {rank}: {bad:?}"
        );
        // Every rank names the rank whose length differs, not the one
        // that noticed.
        assert_eq!(
            short.unwrap_err(),
            Error::DimensionMismatch {
                rank: 2,
                expected: 4,
                found: 5
            },
            "rank {rank}"
        );
        assert_close(&good.value, &exact_mean(&[0, 1, 2], 4), "after the errors");
    }
}

#[test]
fn inputs_beyond_the_frame_limit_fail_on_every_rank() {
    let results = common::run_job(
        3,
        |_, b| b.max_frame_bytes(64 << 10),
        |comm| {
            let long = comm.allreduce_mean(&input(comm.rank(), 10_000));
            let short = comm.allreduce_mean(&input(comm.rank(), 100)).unwrap();
            (long, short)
        },
    );
    for (rank, (long, short)) in results.into_iter().enumerate() {
        match long {
            Err(Error::InputTooLarge {
                len: 10_000, max, ..
            }) => assert!(max < 10_000 && max > 4000),
            other => panic!("rank {rank}: {other:?}"),
        }
        assert_close(&short.value, &exact_mean(&[0, 1, 2], 100), "after");
    }
}

/// Only rank 2 is too long, and it finds out before its input is built
/// (`check_input_len`): every rank fails alike, and the next call works.
#[test]
fn an_input_refused_before_it_is_built_fails_on_every_rank() {
    let results = common::run_job(
        3,
        |_, b| b.max_frame_bytes(64 << 10),
        |comm| {
            let len = if comm.rank() == 2 { 10_000 } else { 100 };
            let long = comm
                .check_input_len(len)
                .and_then(|()| comm.allreduce_mean(&input(comm.rank(), len)));
            let short = comm.allreduce_mean(&input(comm.rank(), 100)).unwrap();
            (long, short)
        },
    );
    for (rank, (long, short)) in results.into_iter().enumerate() {
        assert!(
            matches!(
                long,
                Err(Error::InputTooLarge {
                    rank: 2,
                    len: 10_000,
                    ..
                })
            ),
            "rank {rank}: {long:?}"
        );
        assert_close(&short.value, &exact_mean(&[0, 1, 2], 100), "after");
    }
}

/// Arrays of the same length in different shapes — `(2, 3)` against
/// `(3, 2)`, a scalar against `(1,)` — fail the call on every member (they
/// used to be combined entry by entry), and the next call works.
#[test]
fn the_same_length_in_another_shape_fails_on_every_member() {
    for schedule in [dac_net::Schedule::Exact, dac_net::Schedule::Metropolis] {
        another_shape_fails_on_every_member(schedule);
    }
}

fn another_shape_fails_on_every_member(schedule: dac_net::Schedule) {
    let n = 4;
    let results = common::run_job(
        n,
        |_, b| b.schedule(schedule),
        |comm| {
            let rank = comm.rank();
            let transposed: &[usize] = if rank == 3 { &[3, 2] } else { &[2, 3] };
            let matrix = comm.allreduce_mean_shaped(&input(rank, 6), transposed);
            let scalar: &[usize] = if rank == 0 { &[] } else { &[1] };
            let one = comm.allreduce_sum_shaped(&input(rank, 1), scalar);
            let same = comm
                .allreduce_mean_shaped(&input(rank, 6), &[2, 3])
                .unwrap();
            let plain = comm.allreduce_mean(&input(rank, 6)).unwrap();
            let wrong = comm.allreduce_mean_shaped(&input(rank, 5), &[2, 3]);
            let after = comm.allreduce_mean(&input(rank, 5)).unwrap();
            (matrix, one, same, plain, wrong, after)
        },
    );
    let all: Vec<usize> = (0..n).collect();
    for (rank, (matrix, one, same, plain, wrong, after)) in results.into_iter().enumerate() {
        // Every rank names the rank whose shape differs from the others'.
        assert_eq!(
            matrix.unwrap_err(),
            Error::ShapeMismatch {
                rank: 3,
                neighbour: 0,
                len: 6
            },
            "rank {rank}"
        );
        assert_eq!(
            one.unwrap_err(),
            Error::ShapeMismatch {
                rank: 0,
                neighbour: 1,
                len: 1
            },
            "rank {rank}"
        );
        assert_close(&same.value, &exact_mean(&all, 6), "the same shape");
        // A one-dimensional call is the shape (len,).
        assert_close(&plain.value, &exact_mean(&all, 6), "plain");
        // Every rank's shape disagrees with its own length: all fail.
        assert!(
            matches!(
                wrong,
                Err(Error::InvalidConfig { field: "shape", .. })
                    | Err(Error::InvalidArgument { .. })
            ),
            "rank {rank}: {wrong:?}"
        );
        assert_close(&after.value, &exact_mean(&all, 5), "after");
    }
}

/// A member that finds its own arguments invalid fails the call on every
/// member, naming itself, instead of returning early; the next call pairs
/// up as it should.
#[test]
fn a_call_one_member_rejects_fails_on_every_member() {
    use dac_net::ArgumentKind;
    let n = 3;
    let results = common::run_job(
        n,
        |_, b| b,
        |comm| {
            let rank = comm.rank();
            let first = if rank == 1 {
                comm.abort_call(ArgumentKind::Shape).map(|()| None)
            } else {
                comm.allreduce_mean(&input(rank, 4)).map(Some)
            };
            let second = comm.allreduce_mean(&input(rank, 4)).unwrap();
            (first, second)
        },
    );
    let all: Vec<usize> = (0..n).collect();
    for (rank, (first, second)) in results.iter().enumerate() {
        if rank == 1 {
            assert_eq!(first, &Ok(None));
        } else {
            assert_eq!(
                first,
                &Err(Error::InvalidArgument {
                    rank: 1,
                    kind: ArgumentKind::Shape
                }),
                "rank {rank}"
            );
        }
        assert_close(&second.value, &exact_mean(&all, 4), &format!("rank {rank}"));
        assert_eq!(second.contributors.to_vec(), all);
    }
}

/// A member that rejects several calls in a row runs ahead of the others
/// (each rejection returns at once): its frames for reductions the others
/// have not started wait for them, and every call pairs up.
#[test]
fn a_member_several_calls_ahead_is_waited_for() {
    use dac_net::ArgumentKind;
    let n = 3;
    let results = common::run_job(
        n,
        |_, b| b,
        |comm| {
            let rank = comm.rank();
            let mut firsts = Vec::new();
            for _ in 0..3 {
                if rank == 1 {
                    comm.abort_call(ArgumentKind::Value).unwrap();
                } else {
                    std::thread::sleep(Duration::from_millis(100));
                    firsts.push(comm.allreduce_mean(&input(rank, 4)));
                }
            }
            let last = comm.allreduce_mean(&input(rank, 4)).unwrap();
            (firsts, last)
        },
    );
    let all: Vec<usize> = (0..n).collect();
    for (rank, (firsts, last)) in results.iter().enumerate() {
        for first in firsts {
            assert_eq!(
                first,
                &Err(Error::InvalidArgument {
                    rank: 1,
                    kind: ArgumentKind::Value
                }),
                "rank {rank}"
            );
        }
        assert_close(&last.value, &exact_mean(&all, 4), &format!("rank {rank}"));
        assert_eq!(last.contributors.to_vec(), all);
    }
}

/// Members that leave gracefully are gone, not suspected: two of four
/// leave, and the other two go on (two suspicions of four would stop
/// them).
#[test]
fn members_that_leave_do_not_count_against_the_quorum() {
    let n = 4;
    let results = common::run_job(
        n,
        |_, b| b,
        |comm| {
            let rank = comm.rank();
            let first = comm.allreduce_mean(&input(rank, 3)).unwrap();
            if rank >= 2 {
                return (first, None);
            }
            // Wait until both are known to be gone.
            let deadline = Instant::now() + Duration::from_secs(10);
            while comm.left() != [2, 3] && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let second = comm.allreduce_mean(&input(rank, 3));
            (first, Some(second))
        },
    );
    for (rank, (first, second)) in results.iter().enumerate() {
        assert_close(&first.value, &exact_mean(&[0, 1, 2, 3], 3), "first");
        if let Some(second) = second {
            let second = second.as_ref().unwrap();
            assert_eq!(second.contributors.to_vec(), vec![0, 1], "rank {rank}");
            assert_close(&second.value, &exact_mean(&[0, 1], 3), "second");
        }
    }
}

/// After a member leaves, the others move to a view of themselves: the
/// reductions in it run the exact schedule over exactly them (2 rounds for
/// 4 members), their results name ranks, and so does every error (a rank's
/// position in the view is another number: rank 4 is at position 3).
#[test]
fn a_new_view_runs_the_exact_schedule_and_its_errors_name_ranks() {
    let (n, leaver) = (5, 1);
    let rest = vec![0, 2, 3, 4];
    let outcomes = common::run_job(
        n,
        |_, b| b,
        |comm| {
            let rank = comm.rank();
            let first = comm.allreduce_mean(&input(rank, 5)).unwrap();
            assert_eq!((comm.view_id(), comm.members().len()), (0, n));
            if rank == leaver {
                return None;
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while !comm.left().contains(&leaver) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            // Known gone at its start: this one runs without it, and its
            // contributors are the next view.
            let second = comm.allreduce_mean(&input(rank, 5)).unwrap();
            assert_eq!(second.contributors.to_vec(), rest, "rank {rank}");
            assert_eq!((comm.view_id(), comm.members()), (1, &rest[..]));
            let third = comm.allreduce_mean(&input(rank, 5)).unwrap();
            let nan = if rank == 4 {
                vec![f64::NAN; 5]
            } else {
                input(rank, 5)
            };
            let non_finite = comm.allreduce_mean(&nan).unwrap_err();
            let len = if rank == 3 { 6 } else { 5 };
            let mismatch = comm.allreduce_mean(&input(rank, len)).unwrap_err();
            let shape: &[usize] = if rank == 2 { &[5, 1] } else { &[5] };
            let shaped = comm
                .allreduce_mean_shaped(&input(rank, 5), shape)
                .unwrap_err();
            let last = comm.allreduce_mean(&input(rank, 5)).unwrap();
            assert_eq!(comm.members(), &rest[..], "rank {rank}");
            Some((first, third, non_finite, mismatch, shaped, last))
        },
    );
    for (rank, outcome) in outcomes.into_iter().enumerate() {
        let Some((first, third, non_finite, mismatch, shaped, last)) = outcome else {
            assert_eq!(rank, leaver);
            continue;
        };
        assert_close(&first.value, &exact_mean(&[0, 1, 2, 3, 4], 5), "first");
        for r in [&third, &last] {
            assert_close(&r.value, &exact_mean(&rest, 5), &format!("rank {rank}"));
            assert_eq!(r.contributors.to_vec(), rest, "rank {rank}");
            assert_eq!((r.rounds, r.residual), (2, 0.0), "rank {rank}");
        }
        assert!(
            matches!(non_finite, Error::NonFiniteInput { rank: 4, .. }),
            "rank {rank}: {non_finite}"
        );
        assert!(
            matches!(
                mismatch,
                Error::DimensionMismatch {
                    rank: 3,
                    found: 6,
                    ..
                }
            ),
            "rank {rank}: {mismatch}"
        );
        assert!(
            matches!(shaped, Error::ShapeMismatch { rank: 2, .. }),
            "rank {rank}: {shaped}"
        );
    }
}
