//! Replicated dot, matvec, Gram and Bayesian updates against central
//! computations on all the rows: with departed holders, a cheating holder
//! and lost partitions, over the test communicator of `common`.
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{Loss, Mock, run};
use dac_core::Communicator;
use dac_linalg::{
    LinalgError, Placement, ReplicaEvent, Replicated, ReplicatedOptions, dot_replicated,
    gaussian_linear_replicated, gram_replicated, matvec_rows_replicated, rmatvec_replicated,
};
use nalgebra::{DMatrix, DVector};
use ndarray::{Array1, Array2, Axis, Slice};

const N: usize = 3;
const NOISE: f64 = 0.5;

/// Rows `A_p` and `y_p` of every partition (2 to 4 rows each), and `x`.
struct Data {
    parts: Vec<(Array2<f64>, Array1<f64>)>,
    x: Array1<f64>,
}

fn data(partitions: usize) -> Data {
    let mut start = 0;
    let parts = (0..partitions)
        .map(|p| {
            let rows = 2 + p % 3;
            let a = Array2::from_shape_fn((rows, N), |(i, j)| {
                ((start + i) as f64 * 0.731 * (j as f64 + 1.0)).sin() * 10f64.powi(j as i32)
            });
            let y = Array1::from_shape_fn(rows, |i| ((start + i) as f64 * 2.3).cos());
            start += rows;
            (a, y)
        })
        .collect();
    Data {
        parts,
        x: Array1::from(vec![0.5, -1.25, 2.0]),
    }
}

/// The five operations, each result flattened.
#[derive(Clone, Copy, Debug)]
enum Op {
    Dot,
    MatvecRows,
    Rmatvec,
    Gram,
    Gaussian,
}

const OPS: [Op; 5] = [Op::Dot, Op::MatvecRows, Op::Rmatvec, Op::Gram, Op::Gaussian];

fn prior() -> (Array1<f64>, Array2<f64>) {
    (Array1::zeros(N), Array2::eye(N) * 2.0)
}

/// The partitions of `d` that `placement` gives `rank`.
fn held(
    d: &Data,
    placement: &Placement,
    rank: usize,
) -> BTreeMap<usize, (Array2<f64>, Array1<f64>)> {
    placement
        .held_by(rank)
        .into_iter()
        .map(|p| (p, d.parts[p].clone()))
        .collect()
}

/// `op` on this rank's partitions of `d`.
fn apply(op: Op, comm: &mut Mock, job: &mut Replicated, d: &Data) -> Result<Vec<f64>, LinalgError> {
    let mine = held(d, job.placement(), comm.rank());
    let rows: BTreeMap<usize, Array2<f64>> =
        mine.iter().map(|(&p, (a, _))| (p, a.clone())).collect();
    Ok(match op {
        Op::Dot => {
            let columns = mine
                .iter()
                .map(|(&p, (a, y))| (p, (a.column(0).to_owned(), y.clone())))
                .collect();
            vec![dot_replicated(comm, job, &columns)?]
        }
        Op::MatvecRows => matvec_rows_replicated(comm, job, &rows, &d.x)?.to_vec(),
        Op::Rmatvec => rmatvec_replicated(comm, job, N, &mine)?.to_vec(),
        Op::Gram => gram_replicated(comm, job, N, &rows)?.into_iter().collect(),
        Op::Gaussian => {
            let (m0, s0) = prior();
            let post = gaussian_linear_replicated(comm, job, &mine, &m0, &s0, NOISE)?;
            post.mean.iter().chain(post.cov.iter()).copied().collect()
        }
    })
}

/// `op` computed centrally on the rows of the partitions in `keep`.
fn central(op: Op, d: &Data, keep: impl Fn(usize) -> bool) -> Vec<f64> {
    let kept: Vec<usize> = (0..d.parts.len()).filter(|&p| keep(p)).collect();
    let a = ndarray::concatenate(
        Axis(0),
        &kept
            .iter()
            .map(|&p| d.parts[p].0.view())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let y = ndarray::concatenate(
        Axis(0),
        &kept
            .iter()
            .map(|&p| d.parts[p].1.view())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    match op {
        Op::Dot => vec![a.column(0).dot(&y)],
        Op::MatvecRows => a.dot(&d.x).to_vec(),
        Op::Rmatvec => a.t().dot(&y).to_vec(),
        Op::Gram => a.t().dot(&a).into_iter().collect(),
        Op::Gaussian => {
            let an = DMatrix::from_fn(a.nrows(), N, |i, j| a[(i, j)]);
            let yn = DVector::from_iterator(y.len(), y.iter().copied());
            // Prior mean 0, covariance 2 I.
            let precision = DMatrix::identity(N, N) * 0.5 + an.transpose() * &an / NOISE;
            let cov = precision.try_inverse().unwrap();
            let mean = &cov * (an.transpose() * yn / NOISE);
            mean.iter().chain(cov.transpose().iter()).copied().collect()
        }
    }
}

fn assert_close(op: Op, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{op:?}");
    let scale = want.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-10 * scale,
            "{op:?}: {got:?} vs {want:?}"
        );
    }
}

#[test]
fn every_operation_keeps_the_full_data_answer_when_a_holder_departs() {
    let d = data(16);
    let pl = Placement::new(16, 8, 2).unwrap();
    // The five calls take 12 reductions without faults: rank 5 is lost in
    // the dot product's hash and data rounds, in matvec's row counts
    // (after they were counted), in the Gram matrix's hash round and
    // (after it was counted) in its data round.
    for loss in [
        None,
        Some(Loss::Before(0)),
        Some(Loss::Before(1)),
        Some(Loss::After(3)),
        Some(Loss::Before(8)),
        Some(Loss::After(9)),
    ] {
        let losses: Vec<(usize, Loss)> = loss.map(|l| (5, l)).into_iter().collect();
        let results = run(8, &losses, |comm| {
            let mut job = Replicated::new(pl.clone(), ReplicatedOptions::default());
            let out: Vec<_> = OPS
                .iter()
                .map(|&op| apply(op, comm, &mut job, &d))
                .collect();
            (out, job.departed())
        });
        let survivors: Vec<_> = results.into_iter().flatten().collect();
        assert_eq!(survivors.len(), 8 - losses.len());
        for (out, departed) in survivors {
            for (op, got) in OPS.iter().zip(out) {
                assert_close(*op, &got.unwrap(), &central(*op, &d, |_| true));
            }
            assert_eq!(departed, losses.iter().map(|l| l.0).collect::<Vec<_>>());
        }
    }
}

/// `d` as rank `cheat` holds it: one entry of its first partition off by
/// 1e-3 (a skipped or faked piece of work).
fn cheated(d: &Data, pl: &Placement, cheat: usize) -> (Data, usize) {
    let bad = pl.held_by(cheat)[0];
    let mut parts = d.parts.clone();
    parts[bad].0[(0, 0)] += 1e-3;
    (
        Data {
            parts,
            x: d.x.clone(),
        },
        bad,
    )
}

#[test]
fn with_three_replicas_every_operation_excludes_a_cheating_holder_and_stays_exact() {
    let d = data(12);
    let pl = Placement::new(12, 6, 3).unwrap();
    let cheat = 4;
    let (wrong, bad) = cheated(&d, &pl, cheat);
    for op in OPS {
        let results = run(6, &[], |comm| {
            let mut job = Replicated::new(pl.clone(), ReplicatedOptions::default());
            let mine = if comm.rank() == cheat { &wrong } else { &d };
            let got = apply(op, comm, &mut job, mine);
            (got, job.excluded(), job.take_events())
        });
        for (got, excluded, events) in results.into_iter().flatten() {
            assert_close(op, &got.unwrap(), &central(op, &d, |_| true));
            assert_eq!(excluded, vec![cheat], "{op:?}");
            assert!(
                events.contains(&ReplicaEvent::ReplicaMismatch {
                    partition: bad,
                    ranks: vec![cheat]
                }),
                "{op:?}: {events:?}"
            );
        }
    }
}

#[test]
fn with_two_replicas_a_cheating_holder_fails_every_operation_on_every_rank() {
    let d = data(8);
    let pl = Placement::new(8, 4, 2).unwrap();
    let cheat = 1;
    let (wrong, bad) = cheated(&d, &pl, cheat);
    for op in OPS {
        let results = run(4, &[], |comm| {
            let mut job = Replicated::new(pl.clone(), ReplicatedOptions::default());
            let mine = if comm.rank() == cheat { &wrong } else { &d };
            apply(op, comm, &mut job, mine)
        });
        for got in results.into_iter().flatten() {
            match got {
                Err(LinalgError::ReplicaMismatch { partition, ranks }) => {
                    assert_eq!(partition, bad, "{op:?}");
                    assert!(ranks.contains(&cheat) && ranks.len() == 2, "{ranks:?}");
                }
                other => panic!("{op:?}: expected a mismatch, got {other:?}"),
            }
        }
    }
}

#[test]
fn with_one_replica_a_lost_holder_fails_every_rank_or_is_left_out() {
    let d = data(8);
    let pl = Placement::new(8, 4, 1).unwrap();
    let gone = pl.held_by(2);
    for degraded in [false, true] {
        let options = ReplicatedOptions {
            allow_degraded: degraded,
            ..ReplicatedOptions::default()
        };
        for op in OPS {
            let results = run(4, &[(2, Loss::Before(1))], |comm| {
                let mut job = Replicated::new(pl.clone(), options);
                (apply(op, comm, &mut job, &d), job.lost())
            });
            for (got, lost) in results.into_iter().flatten() {
                // Matvec's rows have no place without their partition.
                if degraded && !matches!(op, Op::MatvecRows) {
                    let want = central(op, &d, |p| !gone.contains(&p));
                    assert_close(op, &got.unwrap(), &want);
                    assert_eq!(lost, gone);
                } else {
                    assert_eq!(
                        got,
                        Err(LinalgError::PartitionLost { partition: gone[0] }),
                        "{op:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn partitions_that_do_not_fit_fail_every_rank() {
    let d = data(8);
    let pl = Placement::new(8, 4, 2).unwrap();
    let mut narrow = Data {
        parts: d.parts.clone(),
        x: d.x.clone(),
    };
    // Rank 3's first partition loses a column (and y_p an entry).
    let p = pl.held_by(3)[0];
    narrow.parts[p].0 = narrow.parts[p]
        .0
        .slice_axis(Axis(1), Slice::from(..N - 1))
        .to_owned();
    narrow.parts[p].1 = narrow.parts[p]
        .1
        .slice_axis(Axis(0), Slice::from(1..))
        .to_owned();
    for op in [Op::Dot, Op::MatvecRows, Op::Rmatvec, Op::Gram, Op::Gaussian] {
        let results = run(4, &[], |comm| {
            let mut job = Replicated::new(pl.clone(), ReplicatedOptions::default());
            let mine = if comm.rank() == 3 { &narrow } else { &d };
            apply(op, comm, &mut job, mine)
        });
        for got in results.into_iter().flatten() {
            assert!(
                matches!(got, Err(LinalgError::Shape { .. })),
                "{op:?}: {got:?}"
            );
        }
    }
}

#[test]
fn ranks_passing_different_priors_fail_every_rank() {
    let d = data(8);
    let pl = Placement::new(8, 4, 2).unwrap();
    let (m0, s0) = prior();
    let results = run(4, &[], |comm| {
        let mut job = Replicated::new(pl.clone(), ReplicatedOptions::default());
        let mine = held(&d, &pl, comm.rank());
        let noise = if comm.rank() == 1 { 0.6 } else { NOISE };
        gaussian_linear_replicated(comm, &mut job, &mine, &m0, &s0, noise)
    });
    for got in results.into_iter().flatten() {
        assert!(
            matches!(got, Err(LinalgError::InvalidArgument { .. })),
            "{got:?}"
        );
    }
}

#[test]
fn an_invalid_prior_on_one_rank_fails_every_rank_naming_it() {
    let d = data(8);
    let pl = Placement::new(8, 4, 2).unwrap();
    let (m0, s0) = prior();
    let results = run(4, &[], |comm| {
        let mut job = Replicated::new(pl.clone(), ReplicatedOptions::default());
        let mine = held(&d, &pl, comm.rank());
        let mut cov = s0.clone();
        if comm.rank() == 2 {
            cov[(0, 0)] = -1.0; // not positive definite
        }
        gaussian_linear_replicated(comm, &mut job, &mine, &m0, &cov, NOISE)
    });
    let results: Vec<_> = results.into_iter().flatten().collect();
    assert_eq!(results.len(), 4);
    for (rank, got) in results.iter().enumerate() {
        match got {
            Err(LinalgError::InvalidArgument { ranks, detail }) => {
                assert_eq!(ranks, &vec![2], "rank {rank}");
                assert_eq!(
                    detail.contains("positive definite"),
                    rank == 2,
                    "rank {rank}: {detail}"
                );
            }
            other => panic!("rank {rank}: {other:?}"),
        }
    }
}
