//! The silence-based failure detector: per-link heartbeats, and the
//! suspicions that their absence raises.

use std::collections::BTreeMap;

use super::outage::Outages;
use crate::engine::Engine;

/// Every member that is up sends a heartbeat on each of its links every
/// tick; a member that hears none from a neighbour for `after` ticks
/// suspects it. Heartbeats are lost only to outages (cuts, isolations,
/// freezes), never to the random faults in transit, so while no outage is
/// in effect every link is heard and nothing needs looking at.
#[derive(Debug)]
pub(super) struct Detector {
    /// Ticks of silence before a suspicion (at least 1).
    after: u64,
    /// The links silent at the last tick looked at: (listener, neighbour)
    /// → the first tick of the silence. Links not listed were heard.
    silent: BTreeMap<(u32, u32), u64>,
}

impl Detector {
    pub(super) fn new(after: u32) -> Detector {
        Detector {
            after: u64::from(after.max(1)),
            silent: BTreeMap::new(),
        }
    }

    /// Listens on every link at `tick` and returns the suspicions due, as
    /// (listener, suspected neighbour). `up(i)`: member `i` has not crashed
    /// or left (its links would be reset otherwise, and its departure is
    /// reported as proven). Frozen members neither send heartbeats nor
    /// listen, so a member that thaws starts its clocks afresh.
    pub(super) fn listen(
        &mut self,
        tick: u64,
        outages: &Outages,
        engines: &[Engine],
        up: impl Fn(usize) -> bool,
    ) -> Vec<(usize, usize)> {
        if !outages.active() {
            self.silent.clear();
            return Vec::new();
        }
        let mut silent = BTreeMap::new();
        let mut suspicions = Vec::new();
        for (j, engine) in engines.iter().enumerate() {
            if !up(j) || engine.phase() != crate::engine::Phase::Running || outages.frozen(j) {
                continue;
            }
            for p in engine.peers() {
                let heard = !up(p) || (!outages.frozen(p) && outages.open(p, j));
                if heard {
                    continue;
                }
                let link = (j as u32, p as u32);
                let since = self.silent.get(&link).copied().unwrap_or(tick);
                if tick - since + 1 >= self.after {
                    suspicions.push((j, p));
                } else {
                    silent.insert(link, since);
                }
            }
        }
        self.silent = silent;
        suspicions
    }
}
