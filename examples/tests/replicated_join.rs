//! Replicated jobs with joiners (issue 18): two processes join a running
//! four-member `lstsq_replicated` job, receive its state
//! (`Replicated::joined`) and take a fair share of its partitions at the
//! next heal; every fit before and after is exact to 1e-9 against the
//! central QR of all the data, and a founder that leaves after the join
//! loses nothing: the heal after it restores its partitions.
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

use dac_examples::{qr_solve, relative_error};
use dac_linalg::{LstsqOptions, Placement, ReplicaEvent, Replicated, ReplicatedOptions};
use dac_net::Comm;
use ndarray::{Array2, concatenate};

type Block = (Array2<f64>, Array2<f64>);

const PARTITIONS: usize = 12;
const FOUNDERS: usize = 4;
const JOINERS: usize = 2;

fn block(p: usize) -> Block {
    let (rows, n) = (10, 4);
    let a = Array2::from_shape_fn((rows, n), |(i, j)| {
        let x = ((p * rows + i) as f64 * 0.731 * (j as f64 + 1.0)).sin();
        if j == 0 {
            1.0
        } else {
            x * 10f64.powi(j as i32)
        }
    });
    let b = Array2::from_shape_fn((rows, 1), |(i, _)| {
        a.row(i).sum() + ((p * rows + i) as f64 * 2.3).cos()
    });
    (a, b)
}

fn central() -> Vec<f64> {
    let blocks: Vec<Block> = (0..PARTITIONS).map(block).collect();
    let a = concatenate(
        ndarray::Axis(0),
        &blocks.iter().map(|(a, _)| a.view()).collect::<Vec<_>>(),
    )
    .unwrap();
    let b = concatenate(
        ndarray::Axis(0),
        &blocks.iter().map(|(_, b)| b.view()).collect::<Vec<_>>(),
    )
    .unwrap();
    qr_solve(&a, &b).unwrap().iter().copied().collect()
}

/// What one member saw: its rank, the relative errors of its fits, the
/// partitions it held after the join, its events.
type Seen = (usize, Vec<f64>, Vec<usize>, Vec<ReplicaEvent>);

fn fits(
    comm: &mut Comm,
    job: &mut Replicated,
    parts: &BTreeMap<usize, Block>,
    want: &[f64],
) -> f64 {
    let fit =
        dac_linalg::lstsq_replicated(comm, job, (4, 1), parts, &LstsqOptions::default()).unwrap();
    let x: Vec<f64> = fit.x.iter().copied().collect();
    relative_error(&x, want)
}

#[test]
fn joiners_take_a_fair_share_and_every_fit_stays_exact() {
    let want = central();
    let pl = Placement::new(PARTITIONS, FOUNDERS, 2).unwrap();
    let dir = std::env::temp_dir().join(format!("dac-replicated-join-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (addr_tx, addr_rx) = mpsc::channel::<String>();
    let seen: Vec<Seen> = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for rank in 0..FOUNDERS {
            let (pl, want, dir, addr_tx) = (pl.clone(), &want, &dir, addr_tx.clone());
            handles.push(scope.spawn(move || {
                let mut comm = Comm::builder()
                    .size(FOUNDERS)
                    .rank(rank)
                    .run_dir(dir)
                    .startup_timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                if rank == 0 {
                    addr_tx.send(comm.address()).unwrap();
                }
                let mut job = Replicated::new(pl.clone(), ReplicatedOptions::default());
                let mut parts: BTreeMap<usize, Block> = pl
                    .held_by(rank)
                    .into_iter()
                    .map(|p| (p, block(p)))
                    .collect();
                let mut errors = vec![fits(&mut comm, &mut job, &parts, want)];
                // Both joiners wait in the lobby by now (they are started
                // at once and ask within milliseconds).
                std::thread::sleep(Duration::from_millis(1500));
                let admitted = comm.admit().unwrap();
                assert_eq!(admitted, vec![4, 5], "rank {rank}");
                job.heal(&mut comm, &mut parts).unwrap();
                let held: Vec<usize> = parts.keys().copied().collect();
                for _ in 0..2 {
                    errors.push(fits(&mut comm, &mut job, &parts, want));
                }
                // Then founder 1 leaves: the next fit learns it, the heal
                // after it restores its partitions, and the fits stay exact.
                if rank == 1 {
                    comm.shutdown().unwrap();
                    return (rank, errors, held, job.take_events());
                }
                errors.push(fits(&mut comm, &mut job, &parts, want));
                job.heal(&mut comm, &mut parts).unwrap();
                errors.push(fits(&mut comm, &mut job, &parts, want));
                comm.shutdown().unwrap();
                (rank, errors, held, job.take_events())
            }));
        }
        let addr: dac_net::Multiaddr = addr_rx.recv().unwrap().parse().unwrap();
        for _ in 0..JOINERS {
            let (want, addr) = (&want, addr.clone());
            handles.push(scope.spawn(move || {
                let mut comm = Comm::builder().join([addr]).build().unwrap();
                let rank = comm.rank();
                let mut job = Replicated::joined(&mut comm, ReplicatedOptions::default()).unwrap();
                let mut parts: BTreeMap<usize, Block> = BTreeMap::new();
                job.heal(&mut comm, &mut parts).unwrap();
                let held: Vec<usize> = parts.keys().copied().collect();
                // Its copies are the data itself.
                for (p, (a, b)) in &parts {
                    assert_eq!((a, b), (&block(*p).0, &block(*p).1), "partition {p}");
                }
                let mut errors = Vec::new();
                for _ in 0..2 {
                    errors.push(fits(&mut comm, &mut job, &parts, want));
                }
                errors.push(fits(&mut comm, &mut job, &parts, want));
                job.heal(&mut comm, &mut parts).unwrap();
                errors.push(fits(&mut comm, &mut job, &parts, want));
                comm.shutdown().unwrap();
                (rank, errors, held, job.take_events())
            }));
        }
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(seen.len(), FOUNDERS + JOINERS);
    let mut holdings = BTreeMap::new();
    for (rank, errors, held, events) in &seen {
        for e in errors {
            assert!(*e <= 1e-9, "rank {rank}: a fit is off by {e:e}");
        }
        // Each of the 24 holdings is now one of 6 ranks' 4.
        assert_eq!(
            held.len(),
            2 * PARTITIONS / (FOUNDERS + JOINERS),
            "rank {rank}: {held:?}"
        );
        for &p in held {
            *holdings.entry(p).or_insert(0) += 1;
        }
        let moved = events
            .iter()
            .filter(|e| matches!(e, ReplicaEvent::Moved { .. }))
            .count();
        assert_eq!(moved, 8, "rank {rank}: {events:?}");
    }
    // Every partition is still held twice.
    assert!(holdings.values().all(|&h| h == 2), "{holdings:?}");
    assert_eq!(holdings.len(), PARTITIONS);
    // Rank 1's partitions were restored after it died.
    let (_, _, held1, _) = seen.iter().find(|s| s.0 == 1).unwrap();
    for (rank, _, _, events) in seen.iter().filter(|s| s.0 != 1) {
        let restored: Vec<usize> = events
            .iter()
            .filter_map(|e| match e {
                ReplicaEvent::Restored { partition, .. } => Some(*partition),
                _ => None,
            })
            .collect();
        assert_eq!(&restored, held1, "rank {rank}");
    }
}
