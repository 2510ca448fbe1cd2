//! Who takes part: scheduled crashes, leaves and input changes, what the
//! failure detectors report (proven departures, suspicions, false
//! suspicions), and the repaired neighbour sets that follow.

use super::{Life, Routed, Simulator};
use crate::engine::Phase;
use crate::error::Error;
use crate::sim::outbox::{NEIGHBOURS, NOBODY};

impl Simulator {
    /// Sends member `j`'s plain round message of this tick also to the
    /// members it addresses that do not list it (any more) as a neighbour:
    /// the board only serves receivers that list the sender, but a member
    /// that dropped a live neighbour must still hear it, to answer it with
    /// the view that excludes it.
    pub(super) fn reach_unlisted(&mut self, j: usize) {
        let target = self.next.records[j].target;
        if target == NOBODY {
            return;
        }
        let me = j as u32;
        let unlisted: Vec<usize> = self.engines[j]
            .peers()
            .filter(|&p| target == NEIGHBOURS || target == p as u32)
            .filter(|&p| self.engines[p].flow(j).is_none())
            .collect();
        if unlisted.is_empty() {
            return;
        }
        let message = self.next.message(j, self.dim + 1);
        for p in unlisted {
            self.routed.push(Routed {
                to: p as u32,
                from: me,
                message: message.clone(),
            });
        }
    }

    /// Crashes, leaves and input changes of member `j` that its round has
    /// reached.
    pub(super) fn apply_scheduled(&mut self, j: usize) {
        let node = j as u32;
        let detect_after = u64::from(self.options.faults.detect_after);
        let running = self.life[j] == Life::Running && self.engines[j].phase() == Phase::Running;
        let round = self.engines[j].round();
        if running && self.crash_at.get(&node).is_some_and(|&r| round >= r) {
            self.crash_at.remove(&node);
            self.life[j] = Life::Crashed { round };
            self.any_departed = true;
            self.detections.push((self.tick + detect_after, node));
            return;
        }
        if running && self.leave_at.get(&node).is_some_and(|&r| round >= r) {
            self.leave_at.remove(&node);
            self.engines[j].leave();
            self.life[j] = Life::Left { round };
            self.any_departed = true;
            // A lost announcement is covered by the failure detector.
            self.detections.push((self.tick + detect_after, node));
        }
        if !running {
            return;
        }
        let Some(list) = self.changes.get_mut(&node) else {
            return;
        };
        let mut due = Vec::new();
        while list.last().is_some_and(|(r, _)| round >= *r) {
            due.extend(list.pop());
        }
        for (_, input) in due {
            // Inputs were validated in `new`.
            if self.engines[j].set_input(&input).is_ok() {
                self.applied.entry(node).or_default().push(input);
            } else {
                self.stats.violations += 1;
            }
        }
    }

    /// Failure detectors that fire this tick tell the departed member's
    /// neighbours: those it lists, then any other member that lists it (a
    /// repair it did not make yet joined them), and members that took it
    /// as a neighbour after it was gone.
    pub(super) fn report_departures(&mut self) {
        let tick = self.tick;
        if self.detections.is_empty() && self.late_detections.is_empty() {
            return;
        }
        let due: Vec<u32> = self
            .detections
            .iter()
            .filter(|d| d.0 <= tick)
            .map(|d| d.1)
            .collect();
        self.detections.retain(|d| d.0 > tick);
        for gone in due {
            let gone = gone as usize;
            let mut neighbours: Vec<usize> = self.engines[gone].peers().collect();
            let listed = |j: usize| self.engines[gone].flow(j).is_some();
            neighbours.extend(
                (0..self.engines.len())
                    .filter(|&j| j != gone && !listed(j) && self.engines[j].flow(gone).is_some()),
            );
            for j in neighbours {
                self.tell_departed(j, gone);
            }
        }
        let late: Vec<(u32, u32)> = self
            .late_detections
            .iter()
            .filter(|d| d.0 <= tick)
            .map(|d| (d.1, d.2))
            .collect();
        self.late_detections.retain(|d| d.0 > tick);
        for (j, gone) in late {
            self.tell_departed(j as usize, gone as usize);
        }
    }

    /// Member `j`'s failure detector proves `gone` departed (a frozen `j`
    /// learns it when it thaws).
    pub(super) fn tell_departed(&mut self, j: usize, gone: usize) {
        if self.life[j] != Life::Running {
            return;
        }
        if self.outages.frozen(j) {
            self.outages.defer(j, gone, true);
        } else {
            self.engines[j].peer_departed(gone);
            self.reconfigure(j);
        }
    }

    /// Members that thawed learn the departures reported to them while
    /// they were frozen.
    pub(super) fn report_to_thawed(&mut self) {
        for (j, peer, proven) in self.outages.take_thawed_reports() {
            if self.life[j] != Life::Running {
                continue;
            }
            if proven {
                self.engines[j].peer_departed(peer);
            } else {
                self.engines[j].peer_suspected(peer);
                self.suspected = true;
            }
            self.reconfigure(j);
        }
    }

    /// The false suspicions due this tick (those of a frozen member wait
    /// until it thaws).
    pub(super) fn make_false_suspicions(&mut self) {
        for s in self.outages.due_suspicions(self.tick) {
            if self.life[s.by] != Life::Running {
                continue;
            }
            if self.outages.frozen(s.by) {
                self.outages.defer(s.by, s.of, false);
            } else {
                self.engines[s.by].peer_suspected(s.of);
                self.suspected = true;
                self.reconfigure(s.by);
            }
        }
    }

    /// The silence-based failure detector, if it runs, listens for this
    /// tick's heartbeats; members suspect the neighbours it found silent
    /// too long.
    pub(super) fn listen(&mut self) {
        let Some(detector) = self.detector.as_mut() else {
            return;
        };
        let life = &self.life;
        let up = |i: usize| life[i] == Life::Running;
        for (j, p) in detector.listen(self.tick, &self.outages, &self.engines, up) {
            self.engines[j].peer_suspected(p);
            self.suspected = true;
            self.reconfigure(j);
        }
    }

    /// Hands a member the repaired neighbour set for its current view.
    pub(super) fn reconfigure(&mut self, j: usize) {
        if !self.engines[j].pending_reconfiguration() {
            return;
        }
        let departed = self.engines[j].departed();
        if departed.binary_search(&j).is_ok() {
            // It learned that the others excluded it, and stopped: the
            // repair leaves it no neighbours, and it talks to nobody new.
            return;
        }
        let base = &self.base;
        let n = base.len();
        let (graph, diameter) = self.repairs.entry(departed.clone()).or_insert_with(|| {
            let graph = base.repaired(&departed);
            let diameter = graph.live_diameter_bound(&departed).unwrap_or(n);
            (graph, diameter)
        });
        let peers: Vec<usize> = graph.neighbors(j).collect();
        let before: Vec<usize> = self.engines[j].peers().collect();
        match self.engines[j].set_peers(&peers, *diameter) {
            // A Laplacian step too large for the repaired degree aborts the
            // run for everyone; the outcomes report it.
            Ok(()) | Err(Error::LaplacianStepTooLarge { .. }) => {}
            // The repair is monotone, so nothing else can go wrong.
            Err(_) => self.stats.violations += 1,
        }
        self.repaired = true;
        // A new neighbour that crashed or left already: its links are
        // reset, so the failure detector proves it gone.
        let due = self.tick + u64::from(self.options.faults.detect_after);
        for p in self.engines[j].peers() {
            if self.life[p] != Life::Running && before.binary_search(&p).is_err() {
                self.late_detections.push((due, j as u32, p as u32));
            }
        }
    }
}
