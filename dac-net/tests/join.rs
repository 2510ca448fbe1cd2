//! Joining a running job: a process that knows any member's address asks
//! to join, enters at the next reduction boundary, and counts from there.
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{TempDir, assert_close, exact_mean, input};
use dac_net::{Comm, Communicator, Multiaddr};

const D: usize = 6;

/// The sum of the inputs of `ranks`.
fn exact_sum(ranks: &[usize]) -> Vec<f64> {
    exact_mean(ranks, D)
        .iter()
        .map(|m| m * ranks.len() as f64)
        .collect()
}

/// Two members run reductions in a loop; a third joins through rank 1's
/// address (not the founder's). The first reduction after its admission
/// has all three contributors and the exact sum of their inputs, in the
/// exact schedule's rounds for three; every member sees the same view,
/// and the joiner has rank 2.
#[test]
fn a_process_joins_a_running_job_through_any_member() {
    let dir = TempDir::new("join");
    let (addr_tx, addr_rx) = mpsc::channel::<String>();
    std::thread::scope(|scope| {
        let founders: Vec<_> = (0..2)
            .map(|rank| {
                let addr_tx = addr_tx.clone();
                let dir = dir.path();
                scope.spawn(move || {
                    let mut comm = Comm::builder()
                        .size(2)
                        .rank(rank)
                        .run_dir(dir)
                        .build()
                        .unwrap();
                    if rank == 1 {
                        addr_tx.send(comm.address()).unwrap();
                    }
                    let deadline = Instant::now() + Duration::from_secs(30);
                    let mut before = 0;
                    let joined = loop {
                        let r = comm.allreduce_sum(&input(rank, D)).unwrap();
                        if r.contributors.len() == 3 {
                            break r;
                        }
                        assert_eq!(r.contributors.to_vec(), vec![0, 1]);
                        assert_close(&r.value, &exact_sum(&[0, 1]), "before the join");
                        before += 1;
                        assert!(Instant::now() < deadline, "nobody joined");
                        std::thread::sleep(Duration::from_millis(5));
                    };
                    let view = (comm.size(), comm.members().to_vec());
                    let after: Vec<_> = (0..2)
                        .map(|_| comm.allreduce_sum(&input(rank, D)).unwrap())
                        .collect();
                    comm.shutdown().unwrap();
                    (before, joined, view, after)
                })
            })
            .collect();
        let addr: Multiaddr = addr_rx.recv().unwrap().parse().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        let mut joiner = Comm::builder().join([addr]).build().unwrap();
        let took = started.elapsed();
        assert_eq!(joiner.rank(), 2);
        assert_eq!((joiner.size(), joiner.members()), (3, &[0, 1, 2][..]));
        let mine: Vec<_> = (0..3)
            .map(|_| joiner.allreduce_sum(&input(2, D)).unwrap())
            .collect();
        joiner.shutdown().unwrap();
        assert!(took < Duration::from_secs(10), "joining took {took:?}");
        for r in &mine {
            assert_eq!(r.contributors.to_vec(), vec![0, 1, 2]);
            assert_close(&r.value, &exact_sum(&[0, 1, 2]), "the joiner");
            assert!(r.rounds <= 3, "{} rounds", r.rounds);
        }
        for (rank, h) in founders.into_iter().enumerate() {
            let (before, joined, view, after) = h.join().unwrap();
            assert!(before > 0, "rank {rank}: the job ran before the join");
            assert_eq!(view, (3, vec![0, 1, 2]), "rank {rank}");
            for r in std::iter::once(&joined).chain(&after) {
                assert_eq!(r.contributors.to_vec(), vec![0, 1, 2], "rank {rank}");
                assert_close(&r.value, &exact_sum(&[0, 1, 2]), &format!("rank {rank}"));
                assert!(r.rounds <= 3, "rank {rank}: {} rounds", r.rounds);
            }
            // The same bytes as the joiner's.
            assert_eq!(joined.value, mine[0].value, "rank {rank}");
        }
    });
}
