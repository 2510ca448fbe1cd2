//! Checkpoints of iterative loops, so that a job that was stopped (or
//! killed) can be started again and resume where it left off.
//!
//! Each rank writes its own state to `DIR/<name>.rank<R>.<slot>`. It uses
//! two slots in turn, so a crash in the middle of a write leaves the
//! previous checkpoint intact. A file is written to a temporary name and
//! renamed into place. It ends with a SHA-256 of its contents, and it names
//! the problem it belongs to ([`ProblemId`], a hash of this rank's data).
//! A damaged file, or one from another problem, is ignored. On restart the
//! ranks agree in one reduction on the latest iteration that *every* rank
//! has saved, and resume from it. If there is none they start from
//! scratch.
//!
//! [`crate::cg_checkpointed`] is built on this, and so can any loop over a
//! [`Communicator`]: save a [`Snapshot`] with [`Checkpoints::save`] when
//! [`Checkpoints::is_due`], and call [`Checkpoints::resume`] once before
//! the loop.

use std::path::{Path, PathBuf};

use dac_core::Communicator;
use sha2::{Digest, Sha256};

use crate::check::{Ballot, reduce_checked};
use crate::error::{LinalgError, Result};

const MAGIC: &[u8; 8] = b"DACCKPT1";

/// Where and how often an iterative loop saves its state.
///
/// Each rank writes `DIR/<name>.rank<R>.<slot>`, two slots in turn, each
/// written to a temporary file and renamed, ending with its SHA-256 and
/// naming its [`ProblemId`]; damaged files and other problems' files are
/// ignored. [`Checkpoints::resume`] agrees on the latest iteration every
/// rank saved. A finished run leaves its files behind: clear the directory
/// to start a new job from scratch.
///
/// ```
/// use dac_core::{threaded, Communicator};
/// use dac_linalg::{Checkpoints, ProblemId, Snapshot};
///
/// let dir = std::env::temp_dir().join(format!("dac-doc-ckpt-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let store = Checkpoints::new(&dir, 10).named("halving").unwrap();
/// // Each rank halves its own number 30 times, saving every 10 steps.
/// let out = threaded::run(2, threaded::Options::default(), |comm| {
///     let rank = comm.rank();
///     let problem = ProblemId::new(&[1.0], &[rank as u64]);
///     let (mut step, mut value) = match store.resume(comm, &problem)? {
///         Some(s) => (s.iteration, s.scalars[0]),
///         None => (0, 1.0),
///     };
///     while step < 30 {
///         value /= 2.0;
///         step += 1;
///         if store.is_due(step) {
///             let snapshot = Snapshot { iteration: step, scalars: vec![value], vectors: vec![] };
///             store.save(rank, &snapshot, &problem)?;
///         }
///     }
///     Ok::<_, dac_linalg::LinalgError>(value)
/// })
/// .unwrap();
/// assert!(out.into_iter().all(|v| v.unwrap() == 0.5f64.powi(30)));
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoints {
    /// Where every rank writes its files.
    dir: PathBuf,
    /// Iterations between two saves (at least 1).
    every: usize,
    /// The files' prefix, so that several loops can share a directory.
    name: String,
}

/// One rank's saved state of an iterative loop: the iteration it belongs
/// to, and scalars and vectors in an order the loop defines.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The iteration the state belongs to (the loop goes on from it).
    pub iteration: usize,
    /// The state's scalars.
    pub scalars: Vec<f64>,
    /// The state's vectors.
    pub vectors: Vec<Vec<f64>>,
}

/// What a checkpoint belongs to: a 128-bit hash of this rank's data and of
/// anything else that must match for a saved state to be reused (its rank,
/// the job size, the shapes, the loop's options).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProblemId([u8; 16]);

impl ProblemId {
    /// The hash of `data` (bit for bit) followed by `tags`.
    pub fn new<'a>(data: impl IntoIterator<Item = &'a f64>, tags: &[u64]) -> ProblemId {
        let mut h = Sha256::new();
        for x in data {
            h.update(x.to_le_bytes());
        }
        for t in tags {
            h.update(t.to_le_bytes());
        }
        let d = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&d[..16]);
        ProblemId(out)
    }

    /// The hash's bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl Checkpoints {
    /// Saves every `every` iterations (at least 1) into `dir`, which must
    /// exist and be private to the job (every rank of the job uses the
    /// same directory or its own copy of it). The files are named
    /// `cg.rank<R>.<slot>` unless [`Checkpoints::named`] says otherwise.
    pub fn new(dir: impl Into<PathBuf>, every: usize) -> Checkpoints {
        Checkpoints {
            dir: dir.into(),
            every: every.max(1),
            name: "cg".into(),
        }
    }

    /// The same checkpoints under the file prefix `name`, so that several
    /// loops can save into one directory.
    ///
    /// # Errors
    /// [`LinalgError::InvalidArgument`] for an empty name or one that is
    /// not a plain file name (a path separator, `.` or `..`).
    pub fn named(self, name: &str) -> Result<Checkpoints> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\']) {
            return Err(LinalgError::InvalidArgument {
                ranks: Vec::new(),
                detail: format!("checkpoint name {name:?} must be a plain file name"),
            });
        }
        Ok(Checkpoints {
            name: name.into(),
            ..self
        })
    }

    /// The iterations between two saves.
    pub fn every(&self) -> usize {
        self.every
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a loop saves after reaching `iteration`: a positive
    /// multiple of [`Checkpoints::every`].
    pub fn is_due(&self, iteration: usize) -> bool {
        iteration > 0 && iteration.is_multiple_of(self.every)
    }

    fn path(&self, rank: usize, slot: usize) -> PathBuf {
        self.dir.join(format!("{}.rank{rank}.{slot}", self.name))
    }

    /// The valid saved states of `rank` for `problem`, by slot.
    fn load(&self, rank: usize, problem: &ProblemId) -> [Option<Snapshot>; 2] {
        [0, 1].map(|slot| {
            let bytes = std::fs::read(self.path(rank, slot)).ok()?;
            decode(&bytes, problem)
        })
    }

    /// Writes this rank's `snapshot` of `problem`, atomically (a temporary
    /// file, renamed), into the slot of its iteration: consecutive saves
    /// at multiples of [`Checkpoints::every`] alternate between the two
    /// slots, so the previous one survives a crash during the write.
    ///
    /// It touches no communicator: every rank saves its own state.
    ///
    /// # Errors
    /// [`LinalgError::InvalidArgument`] naming the file when it cannot be
    /// written. The error is this rank's alone: to fail every rank alike,
    /// carry it as a flag in the loop's next reduction (as
    /// [`crate::cg_checkpointed`] does).
    pub fn save(&self, rank: usize, snapshot: &Snapshot, problem: &ProblemId) -> Result<()> {
        let slot = (snapshot.iteration / self.every) % 2;
        let path = self.path(rank, slot);
        let tmp = path.with_extension(format!("{slot}.tmp"));
        let io = |e: std::io::Error| LinalgError::InvalidArgument {
            ranks: vec![rank],
            detail: format!("cannot write the checkpoint {}: {e}", path.display()),
        };
        std::fs::write(&tmp, encode(snapshot, problem)).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// Where to resume: the latest saved iteration that *every* rank has
    /// for its `problem`, and this rank's state at it, or `None` to start
    /// from scratch. Every rank calls it, once, before its loop.
    ///
    /// It takes one reduction, in which the ranks agree on the iteration.
    ///
    /// # Errors
    /// The reduction's error ([`LinalgError::Incomplete`] if a rank
    /// departed), on every rank alike.
    pub fn resume<C: Communicator>(
        &self,
        comm: &mut C,
        problem: &ProblemId,
    ) -> Result<Option<Snapshot>> {
        self.resume_counting(comm, problem).map(|(s, _)| s)
    }

    /// [`Checkpoints::resume`], with the rounds its reduction took.
    pub(crate) fn resume_counting<C: Communicator>(
        &self,
        comm: &mut C,
        problem: &ProblemId,
    ) -> Result<(Option<Snapshot>, u32)> {
        let size = comm.size();
        let saved = self.load(comm.rank(), problem);
        let mine: Vec<f64> = saved
            .iter()
            .map(|s| s.as_ref().map_or(0.0, |s| s.iteration as f64 + 1.0))
            .collect();
        let ballot = Ballot::ok().with_values(&mine);
        let checked = reduce_checked(comm, ballot, &[], "the checkpoints")?;
        let all = checked.tally;
        let has = |r: usize, it: usize| (0..2).any(|j| all.count(r, j) == it + 1);
        let mut candidates: Vec<usize> = (0..2)
            .filter_map(|j| all.count(0, j).checked_sub(1))
            .collect();
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        let agreed = candidates
            .into_iter()
            .find(|&it| (0..size).all(|r| has(r, it)));
        let snapshot =
            agreed.and_then(|it| saved.into_iter().flatten().find(|s| s.iteration == it));
        Ok((snapshot, checked.rounds))
    }
}

fn encode(snapshot: &Snapshot, problem: &ProblemId) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(problem.as_bytes());
    out.extend_from_slice(&(snapshot.iteration as u64).to_le_bytes());
    out.extend_from_slice(&(snapshot.scalars.len() as u64).to_le_bytes());
    for s in &snapshot.scalars {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.extend_from_slice(&(snapshot.vectors.len() as u64).to_le_bytes());
    for v in &snapshot.vectors {
        out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        for x in v {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

fn decode(bytes: &[u8], problem: &ProblemId) -> Option<Snapshot> {
    let body_len = bytes.len().checked_sub(32)?;
    let (body, digest) = bytes.split_at(body_len);
    if Sha256::digest(body).as_slice() != digest {
        return None;
    }
    let mut r = Reader(body);
    if r.take(8)? != MAGIC || r.take(16)? != problem.as_bytes() {
        return None;
    }
    let iteration = usize::try_from(r.u64()?).ok()?;
    let count = usize::try_from(r.u64()?).ok()?;
    if count > r.0.len() / 8 {
        return None;
    }
    let scalars = (0..count).map(|_| r.f64()).collect::<Option<Vec<_>>>()?;
    let count = usize::try_from(r.u64()?).ok()?;
    let mut vectors = Vec::new();
    for _ in 0..count {
        let len = usize::try_from(r.u64()?).ok()?;
        if len > r.0.len() / 8 {
            return None;
        }
        vectors.push((0..len).map(|_| r.f64()).collect::<Option<Vec<_>>>()?);
    }
    r.0.is_empty().then_some(Snapshot {
        iteration,
        scalars,
        vectors,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_reads_back_and_damage_is_detected() {
        let snapshot = Snapshot {
            iteration: 12,
            scalars: vec![1.5, -2.0],
            vectors: vec![vec![1.0, 2.0, 3.0], vec![], vec![f64::MIN_POSITIVE]],
        };
        let problem = ProblemId::new(&[1.0, 2.0], &[3]);
        let bytes = encode(&snapshot, &problem);
        assert_eq!(decode(&bytes, &problem), Some(snapshot.clone()));
        // Another problem, a flipped bit, a truncated file.
        assert_eq!(decode(&bytes, &ProblemId::new(&[1.0, 2.0], &[4])), None);
        let mut flipped = bytes.clone();
        flipped[30] ^= 1;
        assert_eq!(decode(&flipped, &problem), None);
        assert_eq!(decode(&bytes[..bytes.len() - 1], &problem), None);
        assert_eq!(decode(&[], &problem), None);
    }

    #[test]
    fn only_plain_file_names_are_accepted() {
        let store = Checkpoints::new("/tmp", 0);
        assert_eq!(store.every(), 1);
        assert!(store.is_due(1) && !store.is_due(0));
        for bad in ["", ".", "..", "a/b", "a\\b"] {
            assert!(store.clone().named(bad).is_err(), "{bad:?}");
        }
        let named = store.named("power").unwrap();
        assert_eq!(named.path(2, 1), Path::new("/tmp/power.rank2.1"));
    }
}
