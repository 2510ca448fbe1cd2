//! A test double of a communicator for replicated jobs.
//!
//! It sums exactly what the live ranks submitted. It can lose a rank
//! before or after its input to a given reduction was counted. It gives
//! each rank a copy of the result that differs in the last bits, as
//! consensus copies do. The real transports run the same code in
//! `dac-examples` (`fault_tolerant_lstsq`, under `dacrun`, with a SIGKILL).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

use dac_core::{Communicator, Contributors, Error, Reduction};

/// When a rank is lost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Loss {
    /// Before it submits to reduction `op` (its input is not counted).
    Before(u64),
    /// Right after it submitted to reduction `op` (its input is counted).
    After(u64),
}

#[derive(Default)]
struct State {
    inputs: HashMap<u64, Vec<Option<Vec<f64>>>>,
    dead: Vec<bool>,
}

/// One rank's handle: it fails its reductions from its loss on.
pub(crate) struct Mock {
    rank: usize,
    size: usize,
    op: u64,
    loss: Option<Loss>,
    shared: Arc<(Mutex<State>, Condvar)>,
}

#[allow(dead_code)] // the tests of healing only
impl Mock {
    /// Dies now, as a SIGKILL between two reductions would: every later
    /// reduction goes on without this rank.
    pub(crate) fn die(&self) {
        let (lock, cv) = &*self.shared;
        lock.lock().unwrap().dead[self.rank] = true;
        cv.notify_all();
    }
}

impl Communicator for Mock {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn allreduce_mean(&mut self, _x: &[f64]) -> dac_core::Result<Reduction> {
        unreachable!("the replicated layer sums")
    }

    fn allreduce_sum(&mut self, x: &[f64]) -> dac_core::Result<Reduction> {
        let op = self.op;
        self.op += 1;
        let (lock, cv) = &*self.shared;
        let mut state = lock.lock().unwrap();
        let lost = Err(Error::Left { rank: self.rank });
        if state.dead[self.rank] {
            return lost;
        }
        if self.loss == Some(Loss::Before(op)) {
            state.dead[self.rank] = true;
            cv.notify_all();
            return lost;
        }
        let size = self.size;
        state.inputs.entry(op).or_insert_with(|| vec![None; size])[self.rank] = Some(x.to_vec());
        if self.loss == Some(Loss::After(op)) {
            state.dead[self.rank] = true;
            cv.notify_all();
            return lost;
        }
        cv.notify_all();
        let state = cv
            .wait_while(state, |s| {
                (0..size).any(|r| !s.dead[r] && s.inputs[&op][r].is_none())
            })
            .unwrap();
        let inputs = &state.inputs[&op];
        let len = x.len();
        if let Some(other) = inputs.iter().flatten().find(|v| v.len() != len) {
            return Err(Error::DimensionMismatch {
                rank: self.rank,
                expected: len,
                found: other.len(),
            });
        }
        let mut value = vec![0.0; len];
        for v in inputs.iter().flatten() {
            value.iter_mut().zip(v).for_each(|(s, x)| *s += x);
        }
        // Each rank's copy differs in the last bits.
        let wobble = 1.0 + (self.rank as f64 - 3.5) * 1e-15;
        value.iter_mut().for_each(|v| *v *= wobble);
        let departed = (0..size).filter(|&r| inputs[r].is_none());
        Ok(Reduction {
            value,
            rounds: 1,
            residual: 0.0,
            contributors: Contributors::excluding(size, departed),
        })
    }
}

/// Runs `body` on `size` ranks (threads), rank `r` lost as `losses[r]`
/// says; returns each rank's result (`None` for lost ranks).
pub(crate) fn run<T: Send>(
    size: usize,
    losses: &[(usize, Loss)],
    body: impl Fn(&mut Mock) -> T + Sync,
) -> Vec<Option<T>> {
    let shared = Arc::new((
        Mutex::new(State {
            inputs: HashMap::new(),
            dead: vec![false; size],
        }),
        Condvar::new(),
    ));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..size)
            .map(|rank| {
                let loss = losses.iter().find(|l| l.0 == rank).map(|l| l.1);
                let mut comm = Mock {
                    rank,
                    size,
                    op: 0,
                    loss,
                    shared: Arc::clone(&shared),
                };
                let body = &body;
                s.spawn(move || {
                    let out = body(&mut comm);
                    loss.is_none().then_some(out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}
