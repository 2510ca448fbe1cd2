//! Checkpoints of iterative solvers, so that a job that was stopped (or
//! killed) can be started again and resume where it left off.
//!
//! Each rank writes its own state to `DIR/<name>.rank<R>.<slot>`. It uses
//! two slots in turn, so a crash in the middle of a write leaves the
//! previous checkpoint intact. A file is written to a temporary name and
//! renamed into place. It ends with a SHA-256 of its contents, and it names
//! the problem it belongs to, as a hash of this rank's data. A damaged file,
//! or one from another problem, is ignored. On restart the ranks agree in
//! one reduction on the latest iteration that *every* rank has saved, and
//! resume from it. If there is none they start from scratch.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{LinalgError, Result};

const MAGIC: &[u8; 8] = b"DACCKPT1";

/// Where and how often a solver saves its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoints {
    dir: PathBuf,
    every: usize,
    name: String,
}

impl Checkpoints {
    /// Saves every `every` iterations (at least 1) into `dir`, which must
    /// exist and be private to the job (every rank of the job uses the
    /// same directory or its own copy of it).
    pub fn new(dir: impl Into<PathBuf>, every: usize) -> Checkpoints {
        Checkpoints {
            dir: dir.into(),
            every: every.max(1),
            name: "cg".into(),
        }
    }

    /// The iterations between two saves.
    pub fn every(&self) -> usize {
        self.every
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, rank: usize, slot: usize) -> PathBuf {
        self.dir.join(format!("{}.rank{rank}.{slot}", self.name))
    }

    /// The valid saved states of `rank` for `problem`, by slot.
    pub(crate) fn load(&self, rank: usize, problem: &[u8; 16]) -> [Option<Saved>; 2] {
        [0, 1].map(|slot| {
            let bytes = std::fs::read(self.path(rank, slot)).ok()?;
            Saved::decode(&bytes, problem)
        })
    }

    /// Writes `state` into `slot` (atomically: a temporary file, renamed).
    pub(crate) fn save(
        &self,
        rank: usize,
        slot: usize,
        saved: &Saved,
        problem: &[u8; 16],
    ) -> Result<()> {
        let path = self.path(rank, slot);
        let tmp = path.with_extension(format!("{slot}.tmp"));
        let io = |e: std::io::Error| LinalgError::InvalidArgument {
            ranks: vec![rank],
            detail: format!("; cannot write the checkpoint {}: {e}", path.display()),
        };
        std::fs::write(&tmp, saved.encode(problem)).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }
}

/// One rank's saved solver state: an iteration and named vectors and
/// scalars, in a fixed order the solver defines.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Saved {
    pub(crate) iteration: u64,
    pub(crate) scalars: Vec<f64>,
    pub(crate) vectors: Vec<Vec<f64>>,
}

impl Saved {
    fn encode(&self, problem: &[u8; 16]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(problem);
        out.extend_from_slice(&self.iteration.to_le_bytes());
        out.extend_from_slice(&(self.scalars.len() as u64).to_le_bytes());
        for s in &self.scalars {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out.extend_from_slice(&(self.vectors.len() as u64).to_le_bytes());
        for v in &self.vectors {
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    fn decode(bytes: &[u8], problem: &[u8; 16]) -> Option<Saved> {
        let body_len = bytes.len().checked_sub(32)?;
        let (body, digest) = bytes.split_at(body_len);
        if Sha256::digest(body).as_slice() != digest {
            return None;
        }
        let mut r = Reader(body);
        if r.take(8)? != MAGIC || r.take(16)? != problem {
            return None;
        }
        let iteration = r.u64()?;
        let count = usize::try_from(r.u64()?).ok()?;
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
        r.0.is_empty().then_some(Saved {
            iteration,
            scalars,
            vectors,
        })
    }
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

/// A fingerprint of this rank's problem: its data, rank and job size.
pub(crate) fn fingerprint<'a>(parts: impl IntoIterator<Item = &'a f64>, extra: &[u64]) -> [u8; 16] {
    let mut h = Sha256::new();
    for x in parts {
        h.update(x.to_le_bytes());
    }
    for e in extra {
        h.update(e.to_le_bytes());
    }
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_state_reads_back_and_damage_is_detected() {
        let saved = Saved {
            iteration: 12,
            scalars: vec![1.5, -2.0],
            vectors: vec![vec![1.0, 2.0, 3.0], vec![], vec![f64::MIN_POSITIVE]],
        };
        let problem = [7u8; 16];
        let bytes = saved.encode(&problem);
        assert_eq!(Saved::decode(&bytes, &problem), Some(saved.clone()));
        // Another problem, a flipped bit, a truncated file.
        assert_eq!(Saved::decode(&bytes, &[8u8; 16]), None);
        let mut flipped = bytes.clone();
        flipped[30] ^= 1;
        assert_eq!(Saved::decode(&flipped, &problem), None);
        assert_eq!(Saved::decode(&bytes[..bytes.len() - 1], &problem), None);
        assert_eq!(Saved::decode(&[], &problem), None);
    }
}
