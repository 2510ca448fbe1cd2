//! Replicated jobs: exactly-once contributions under departures, checkpoint
//! hashes, exclusion of a minority holder, lost partitions, over the test
//! communicator of `common` (departures at chosen reductions, copies that
//! differ in the last bits).
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{Loss, run};
use dac_core::Communicator;
use dac_linalg::{LinalgError, Placement, ReplicaEvent, Replicated, ReplicatedOptions};

/// Partition `p`'s contribution (the same on every holder).
fn contribution(p: usize, len: usize) -> Vec<f64> {
    (0..len)
        .map(|j| ((p * 7 + j * 3) as f64 * 0.37).sin() * 10f64.powi((j % 4) as i32))
        .collect()
}

fn exact(partitions: impl IntoIterator<Item = usize>, len: usize) -> Vec<f64> {
    let mut sum = vec![0.0; len];
    for p in partitions {
        sum.iter_mut()
            .zip(contribution(p, len))
            .for_each(|(s, x)| *s += x);
    }
    sum
}

fn held(pl: &Placement, rank: usize, len: usize) -> BTreeMap<usize, Vec<f64>> {
    pl.held_by(rank)
        .into_iter()
        .map(|p| (p, contribution(p, len)))
        .collect()
}

fn assert_close(got: &[f64], want: &[f64]) {
    let scale = want.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-12 * scale, "{got:?} vs {want:?}");
    }
}

const LEN: usize = 5;

#[test]
fn without_faults_every_partition_counts_once() {
    let pl = Placement::new(16, 8, 2).unwrap();
    let results = run(8, &[], |comm| {
        let mut job = Replicated::new(pl.clone(), ReplicatedOptions::default());
        let first = job
            .allreduce_sum(comm, LEN, &held(&pl, comm.rank(), LEN), true)
            .unwrap();
        let unchecked = job
            .allreduce_sum(comm, LEN, &held(&pl, comm.rank(), LEN), false)
            .unwrap();
        (first, unchecked, job.take_events())
    });
    for (first, unchecked, events) in results.into_iter().flatten() {
        assert_close(&first.value, &exact(0..16, LEN));
        assert_close(&unchecked.value, &exact(0..16, LEN));
        // One hash reduction, one data reduction; unchecked: data only.
        assert_eq!((first.reductions, unchecked.reductions), (2, 1));
        assert!(first.lost.is_empty() && events.is_empty(), "{events:?}");
    }
}

#[test]
fn a_departed_contributor_is_replaced_by_a_standby_at_every_point() {
    let pl = Placement::new(16, 8, 2).unwrap();
    // Rank 3 lost before the hash round, before the data round (after
    // its hash was counted), and after its data was counted; and rank 5
    // lost in the second call's correction.
    // Whether a standby must step in after a data reduction went without
    // its contributor (a loss before the hash round is known in time).
    // A second rank that shares no partition with rank 3 (losing both
    // holders of a partition is another test).
    let other = (0..8)
        .find(|&r| {
            r != 3 && (0..16).all(|p| !(pl.holders(p).contains(&3) && pl.holders(p).contains(&r)))
        })
        .unwrap();
    for (losses, takeover) in [
        (vec![(3, Loss::Before(0))], false),
        (vec![(3, Loss::Before(1))], true),
        (vec![(3, Loss::After(1))], false),
        (vec![(3, Loss::Before(1)), (other, Loss::Before(2))], true),
        (vec![(3, Loss::Before(3)), (other, Loss::Before(4))], true),
    ] {
        let results = run(8, &losses, |comm| {
            let mut job = Replicated::new(pl.clone(), ReplicatedOptions::default());
            let mut sums = Vec::new();
            for _ in 0..3 {
                sums.push(job.allreduce_sum(comm, LEN, &held(&pl, comm.rank(), LEN), true));
            }
            (sums, job.departed(), job.take_events())
        });
        let survivors: Vec<_> = results.into_iter().flatten().collect();
        assert_eq!(survivors.len(), 8 - losses.len());
        for (sums, departed, events) in survivors {
            for s in sums {
                let s = s.unwrap();
                assert_close(&s.value, &exact(0..16, LEN));
                assert!(s.lost.is_empty());
            }
            let mut lost: Vec<usize> = losses.iter().map(|l| l.0).collect();
            lost.sort_unstable();
            assert_eq!(departed, lost, "{losses:?}");
            assert_eq!(
                events
                    .iter()
                    .any(|e| matches!(e, ReplicaEvent::TookOver { .. })),
                takeover,
                "{losses:?}: {events:?}"
            );
        }
    }
}

#[test]
fn with_one_replica_a_lost_holder_fails_every_survivor_or_is_listed() {
    let pl = Placement::new(8, 4, 1).unwrap();
    let gone = pl.held_by(2);
    for degraded in [false, true] {
        let options = ReplicatedOptions {
            allow_degraded: degraded,
            ..ReplicatedOptions::default()
        };
        let results = run(4, &[(2, Loss::Before(1))], |comm| {
            let mut job = Replicated::new(pl.clone(), options);
            job.allreduce_sum(comm, LEN, &held(&pl, comm.rank(), LEN), true)
        });
        for r in results.into_iter().flatten() {
            if degraded {
                let s = r.unwrap();
                assert_eq!(s.lost, gone);
                assert_close(&s.value, &exact((0..8).filter(|p| !gone.contains(p)), LEN));
            } else {
                assert_eq!(r, Err(LinalgError::PartitionLost { partition: gone[0] }));
            }
        }
    }
}

/// Rank `cheat` adds 1e-9 to its contribution of every partition it holds.
fn cheating(pl: &Placement, rank: usize, cheat: usize) -> BTreeMap<usize, Vec<f64>> {
    let mut parts = held(pl, rank, LEN);
    if rank == cheat {
        for c in parts.values_mut() {
            c[1] += 1e-9;
        }
    }
    parts
}

#[test]
fn with_three_replicas_the_minority_holder_is_excluded_and_the_result_is_exact() {
    let pl = Placement::new(8, 6, 3).unwrap();
    let cheat = 2;
    let results = run(6, &[], |comm| {
        let mut job = Replicated::new(pl.clone(), ReplicatedOptions::default());
        let first = job.allreduce_sum(comm, LEN, &cheating(&pl, comm.rank(), cheat), true);
        let second = job.allreduce_sum(comm, LEN, &cheating(&pl, comm.rank(), cheat), true);
        (first, second, job.excluded(), job.take_events())
    });
    for (first, second, excluded, events) in results.into_iter().flatten() {
        let first = first.unwrap();
        assert_close(&first.value, &exact(0..8, LEN));
        assert_close(&second.unwrap().value, &exact(0..8, LEN));
        assert_eq!(excluded, vec![cheat]);
        // Every partition rank 2 holds is reported, naming rank 2 only.
        let mut reported: Vec<usize> = events
            .iter()
            .filter_map(|e| match e {
                ReplicaEvent::ReplicaMismatch { partition, ranks } => {
                    assert_eq!(ranks, &vec![cheat]);
                    Some(*partition)
                }
                _ => None,
            })
            .collect();
        reported.sort_unstable();
        assert_eq!(reported, pl.held_by(cheat));
        assert!(events.contains(&ReplicaEvent::Excluded { rank: cheat }));
    }
}

#[test]
fn with_two_replicas_a_mismatch_fails_every_rank() {
    let pl = Placement::new(8, 4, 2).unwrap();
    let cheat = 1;
    let bad = pl.held_by(cheat)[0];
    let results = run(4, &[], |comm| {
        let mut job = Replicated::new(pl.clone(), ReplicatedOptions::default());
        job.allreduce_sum(comm, LEN, &cheating(&pl, comm.rank(), cheat), true)
    });
    for r in results.into_iter().flatten() {
        match r {
            Err(LinalgError::ReplicaMismatch { partition, ranks }) => {
                assert_eq!(partition, bad);
                assert!(ranks.contains(&cheat) && ranks.len() == 2, "{ranks:?}");
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
    }
    // Without a checkpoint the cheat is not looked for (and not caught).
    let unchecked = ReplicatedOptions {
        checkpoint_every: 0,
        ..ReplicatedOptions::default()
    };
    for r in run(4, &[], |comm| {
        let mut job = Replicated::new(pl.clone(), unchecked);
        job.allreduce_sum(comm, LEN, &cheating(&pl, comm.rank(), cheat), true)
    })
    .into_iter()
    .flatten()
    {
        assert_eq!(r.unwrap().reductions, 1);
    }
}

#[test]
fn bad_contributions_fail_every_rank() {
    let pl = Placement::new(8, 4, 2).unwrap();
    for check in [true, false] {
        // Rank 1 passes a partition it does not hold.
        for r in run(4, &[], |comm| {
            let mut job = Replicated::new(pl.clone(), ReplicatedOptions::default());
            let mut parts = held(&pl, comm.rank(), LEN);
            if comm.rank() == 1 {
                let other = (0..8).find(|p| !parts.contains_key(p)).unwrap();
                parts.insert(other, contribution(other, LEN));
            }
            job.allreduce_sum(comm, LEN, &parts, check)
        })
        .into_iter()
        .flatten()
        {
            assert!(matches!(r, Err(LinalgError::Shape { .. })), "{r:?}");
        }
        // Rank 2 has a NaN.
        for r in run(4, &[], |comm| {
            let mut job = Replicated::new(pl.clone(), ReplicatedOptions::default());
            let mut parts = held(&pl, comm.rank(), LEN);
            if comm.rank() == 2 {
                parts.values_mut().next().unwrap()[0] = f64::NAN;
            }
            job.allreduce_sum(comm, LEN, &parts, check)
        })
        .into_iter()
        .flatten()
        {
            assert!(
                matches!(&r, Err(LinalgError::NonFinite { ranks, .. }) if ranks == &vec![2]),
                "{r:?}"
            );
        }
    }
    // A placement for another job size.
    for r in run(4, &[], |comm| {
        let mut job = Replicated::new(
            Placement::new(8, 5, 2).unwrap(),
            ReplicatedOptions::default(),
        );
        job.allreduce_sum(comm, LEN, &BTreeMap::new(), true)
    })
    .into_iter()
    .flatten()
    {
        assert!(
            matches!(r, Err(LinalgError::InvalidArgument { .. })),
            "{r:?}"
        );
    }
}

/// A least-squares problem cut into `partitions` blocks of rows: the
/// blocks, and the central solution (QR of all the rows).
#[allow(clippy::type_complexity)]
fn problem(partitions: usize) -> (Vec<(ndarray::Array2<f64>, ndarray::Array2<f64>)>, Vec<f64>) {
    let (rows, n) = (10, 4);
    let blocks: Vec<_> = (0..partitions)
        .map(|p| {
            let a = ndarray::Array2::from_shape_fn((rows, n), |(i, j)| {
                let x = ((p * rows + i) as f64 * 0.731 * (j as f64 + 1.0)).sin();
                // Columns in different units, plus an intercept.
                if j == 0 {
                    1.0
                } else {
                    x * 10f64.powi(j as i32)
                }
            });
            let b = ndarray::Array2::from_shape_fn((rows, 1), |(i, _)| {
                a.row(i).sum() + ((p * rows + i) as f64 * 2.3).cos()
            });
            (a, b)
        })
        .collect();
    let want = central(&blocks, &[]);
    (blocks, want)
}

/// The QR solution over every block but the `lost` ones.
fn central(blocks: &[(ndarray::Array2<f64>, ndarray::Array2<f64>)], lost: &[usize]) -> Vec<f64> {
    let kept: Vec<_> = (0..blocks.len())
        .filter(|p| !lost.contains(p))
        .map(|p| &blocks[p])
        .collect();
    let (rows, n) = blocks[0].0.dim();
    let m = rows * kept.len();
    let a = nalgebra::DMatrix::from_fn(m, n, |i, j| kept[i / rows].0[(i % rows, j)]);
    let b = nalgebra::DVector::from_fn(m, |i, _| kept[i / rows].1[(i % rows, 0)]);
    let qr = a.qr();
    let x = qr
        .r()
        .solve_upper_triangular(&(qr.q().transpose() * b))
        .unwrap();
    x.iter().copied().collect()
}

fn my_blocks(
    pl: &Placement,
    rank: usize,
    blocks: &[(ndarray::Array2<f64>, ndarray::Array2<f64>)],
) -> BTreeMap<usize, (ndarray::Array2<f64>, ndarray::Array2<f64>)> {
    pl.held_by(rank)
        .into_iter()
        .map(|p| (p, blocks[p].clone()))
        .collect()
}

fn rel_err(x: &ndarray::Array2<f64>, want: &[f64]) -> f64 {
    let diff: f64 = x.iter().zip(want).map(|(a, b)| (a - b).powi(2)).sum();
    let norm: f64 = want.iter().map(|b| b * b).sum();
    (diff / norm).sqrt()
}

#[test]
fn replicated_least_squares_keeps_the_full_data_answer_when_a_holder_departs() {
    let (blocks, want) = problem(16);
    let pl = Placement::new(16, 8, 2).unwrap();
    // Lost before the hash round, before the data round, in a refinement.
    for loss in [Loss::Before(0), Loss::Before(1), Loss::Before(3)] {
        let results = run(8, &[(5, loss)], |comm| {
            let mut job = Replicated::new(pl.clone(), ReplicatedOptions::default());
            let fit = dac_linalg::lstsq_replicated(
                comm,
                &mut job,
                (4, 1),
                &my_blocks(&pl, comm.rank(), &blocks),
                &dac_linalg::LstsqOptions::default(),
            );
            (fit, job.departed())
        });
        let survivors: Vec<_> = results.into_iter().flatten().collect();
        assert_eq!(survivors.len(), 7);
        for (fit, departed) in survivors {
            let fit = fit.unwrap();
            assert!(
                rel_err(&fit.x, &want) <= 1e-9,
                "{loss:?}: {}",
                rel_err(&fit.x, &want)
            );
            assert_eq!(departed, vec![5]);
        }
    }
}

/// With one replica and `allow_degraded`, a holder lost at any reduction
/// of a fit (the normal equations, a refinement step) gives the fit of
/// the partitions that survived, never a mixture: the refinement steps
/// must not sum fewer partitions than the normal matrix they are solved
/// with.
#[test]
fn degraded_least_squares_is_the_fit_of_the_surviving_partitions_whenever_the_holder_goes() {
    let (blocks, _) = problem(8);
    let pl = Placement::new(8, 4, 1).unwrap();
    let gone = pl.held_by(2);
    let options = ReplicatedOptions {
        allow_degraded: true,
        ..ReplicatedOptions::default()
    };
    let losses = (0..6).flat_map(|op| [Loss::Before(op), Loss::After(op)]);
    for loss in losses {
        let results = run(4, &[(2, loss)], |comm| {
            let mut job = Replicated::new(pl.clone(), options);
            let mine = my_blocks(&pl, comm.rank(), &blocks);
            let first = dac_linalg::lstsq_replicated(
                comm,
                &mut job,
                (4, 1),
                &mine,
                &dac_linalg::LstsqOptions::default(),
            );
            let lost = job.lost();
            // The next fit is over the survivors whatever the first saw.
            let second = dac_linalg::lstsq_replicated(
                comm,
                &mut job,
                (4, 1),
                &mine,
                &dac_linalg::LstsqOptions::default(),
            );
            (first, lost, second, job.lost())
        });
        let survivors: Vec<_> = results.into_iter().flatten().collect();
        assert_eq!(survivors.len(), 3, "{loss:?}");
        for (first, lost, second, lost_after) in survivors {
            let first = first.unwrap();
            let err = rel_err(&first.x, &central(&blocks, &lost));
            assert!(
                err <= 1e-9,
                "{loss:?}: first fit off by {err:e} (lost {lost:?})"
            );
            assert_eq!(lost_after, gone, "{loss:?}");
            let err = rel_err(&second.unwrap().x, &central(&blocks, &gone));
            assert!(err <= 1e-9, "{loss:?}: second fit off by {err:e}");
        }
    }
}

#[test]
fn replicated_least_squares_excludes_a_cheating_holder() {
    let (blocks, want) = problem(12);
    let pl = Placement::new(12, 6, 3).unwrap();
    let cheat = 4;
    let results = run(6, &[], |comm| {
        let mut job = Replicated::new(pl.clone(), ReplicatedOptions::default());
        let mut mine = my_blocks(&pl, comm.rank(), &blocks);
        if comm.rank() == cheat {
            // Skipped work: one row of one partition is left out.
            let (a, b) = mine.values_mut().next().unwrap();
            a.row_mut(0).fill(0.0);
            b[(0, 0)] = 0.0;
        }
        let fit = dac_linalg::lstsq_replicated(
            comm,
            &mut job,
            (4, 1),
            &mine,
            &dac_linalg::LstsqOptions::default(),
        );
        (fit, job.excluded())
    });
    for (fit, excluded) in results.into_iter().flatten() {
        assert!(rel_err(&fit.unwrap().x, &want) <= 1e-9);
        assert_eq!(excluded, vec![cheat]);
    }
}

/// Issue 18: after a holder departs, `heal` copies each of its partitions
/// to another rank (a `Restored` event each), so that when the other
/// original holder of one of them departs too, the fit is still the
/// full-data one. Without healing the same two departures lose that
/// partition, on every survivor.
#[test]
fn healing_restores_the_replication_so_a_second_failure_loses_nothing() {
    let (blocks, want) = problem(16);
    let pl = Placement::new(16, 8, 2).unwrap();
    let first = 5;
    let p = pl.held_by(first)[0];
    let second = *pl.holders(p).iter().find(|&&h| h != first).unwrap();
    for heal in [true, false] {
        let results = run(8, &[(first, Loss::Before(0))], |comm| {
            let rank = comm.rank();
            let mut job = Replicated::new(pl.clone(), ReplicatedOptions::default());
            let mut parts = my_blocks(&pl, rank, &blocks);
            let mut fits = Vec::new();
            let mut restored = Vec::new();
            for fit in 0..3 {
                if heal {
                    restored.extend(job.heal(comm, &mut parts).unwrap());
                }
                // The second holder dies once `p` has a new holder (without
                // healing, at the same point: after the first fit).
                let copied = restored.iter().any(|&(q, _)| q == p);
                if rank == second && (copied || (!heal && fit == 1)) {
                    comm.die();
                    return None;
                }
                let result = dac_linalg::lstsq_replicated(
                    comm,
                    &mut job,
                    (4, 1),
                    &parts,
                    &dac_linalg::LstsqOptions::default(),
                );
                let failed = result.is_err();
                fits.push(result);
                if failed {
                    break;
                }
            }
            let held: Vec<usize> = parts.keys().copied().collect();
            Some((rank, fits, restored, job.take_events(), held))
        });
        let survivors: Vec<_> = results.into_iter().flatten().flatten().collect();
        assert_eq!(survivors.len(), 6, "heal {heal}");
        for (rank, fits, restored, events, held) in survivors {
            if !heal {
                let last = fits.last().unwrap();
                assert!(
                    matches!(last, Err(LinalgError::PartitionLost { partition }) if *partition == p),
                    "{last:?}"
                );
                continue;
            }
            assert_eq!(fits.len(), 3);
            for fit in fits {
                let fit = fit.unwrap();
                assert!(rel_err(&fit.x, &want) <= 1e-9, "{}", rel_err(&fit.x, &want));
            }
            // Every partition of each departed holder was copied once.
            let mut copied: Vec<usize> = restored.iter().map(|&(q, _)| q).collect();
            copied.sort_unstable();
            let mut lost_holders: Vec<usize> = pl.held_by(first);
            lost_holders.extend(pl.held_by(second));
            lost_holders.sort_unstable();
            assert_eq!(copied, lost_holders);
            for &(q, holder) in &restored {
                assert!(events.contains(&ReplicaEvent::Restored {
                    partition: q,
                    holder
                }));
                assert!(holder != first && holder != second);
            }
            // A new holder keeps its copies, for the fits after.
            let mut gained: Vec<usize> = restored
                .iter()
                .filter(|&&(_, holder)| holder == rank)
                .map(|&(q, _)| q)
                .collect();
            gained.sort_unstable();
            let original = pl.held_by(rank);
            let extra: Vec<usize> = held.into_iter().filter(|q| !original.contains(q)).collect();
            assert_eq!(extra, gained, "rank {rank}");
        }
    }
}
