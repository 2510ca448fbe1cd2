//! What hosts tell an engine — departures, input changes, leaving,
//! aborting, new neighbour sets — and how a reduction ends.

use super::message::{AbortReason, Header, Kind, OwnedMessage};
use super::state::{Phase, Slot};
use super::view::Event;
use super::{Engine, Join};
use crate::error::{Error, Result, check_input};
use crate::reduction::{Contributors, Reduction};
use crate::schedule::Schedule;

impl Engine {
    /// The host knows that `peer` is gone: its process ended (its
    /// connection was reset and a new one refused) or it left. Its flows
    /// are dropped, the news spreads to everyone, and the survivors converge
    /// to the mean of their own inputs. A proven departure does not count
    /// against the quorum (see [`Error::Partitioned`]).
    pub fn peer_departed(&mut self, peer: usize) {
        self.depart(peer, true);
    }

    /// The host lost contact with `peer` without proof that it is gone: it
    /// fell silent past the failure detector's timeout, its link was cut,
    /// or it was cut off for sending bad messages. It is treated as
    /// departed, like [`Engine::peer_departed`], but it counts against the
    /// quorum: a member that holds no strict majority of the members not
    /// proven gone fails with [`Error::Partitioned`].
    pub fn peer_suspected(&mut self, peer: usize) {
        self.depart(peer, false);
    }

    /// The host knows that `peer` finished this reduction before it
    /// departed: it said so when it left. Call it before
    /// [`Engine::peer_departed`]. Only such a member's exact result is
    /// adopted after it departed (by a member whose exact phase another
    /// departure spoiled); a member that left, crashed or was cut off
    /// mid-reduction may have announced a result it never computed.
    pub fn peer_finished(&mut self, peer: usize) {
        if peer < self.members() && peer != self.id() && self.phase == Phase::Running {
            let member = peer as u32;
            let finished = &mut self.rare().finished;
            if !finished.contains(&member) {
                finished.push(member);
            }
        }
    }

    fn depart(&mut self, peer: usize, proven: bool) {
        if peer < self.members() && self.phase == Phase::Running {
            let member = peer as u32;
            if proven {
                self.learn(&[Event::Departed { member }, Event::Gone { member }]);
            } else {
                self.learn(&[Event::Departed { member }]);
            }
            self.refresh_unsent_meta();
        }
    }

    /// Replaces this member's input; the estimates follow.
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] for a different length,
    /// [`Error::NonFiniteInput`] for NaN or infinity. The state is unchanged
    /// on error.
    pub fn set_input(&mut self, input: &[f64]) -> Result<()> {
        if input.len() != self.dim {
            return Err(Error::DimensionMismatch {
                rank: self.id(),
                expected: self.dim,
                found: input.len(),
            });
        }
        check_input(self.id(), input)?;
        if self.phase != Phase::Running {
            return Ok(());
        }
        self.buf[..self.dim].copy_from_slice(input);
        self.input_seq += 1;
        if self.plan.is_some() {
            self.dirty = true;
        }
        self.learn(&[Event::InputChanged {
            member: self.id,
            seq: self.input_seq,
        }]);
        self.refresh_unsent_meta();
        Ok(())
    }

    /// Leaves the reduction: the neighbours drop this member at once, and
    /// its outcome is [`Error::Left`].
    pub fn leave(&mut self) {
        if self.phase == Phase::Running {
            let message = OwnedMessage {
                header: Header::new(Kind::Leave, self.round),
                events: Vec::new(),
                payload: Vec::new(),
                abort: None,
            };
            self.terminate(Phase::Left, Err(Error::Left { rank: self.id() }), message);
        }
    }

    /// Fails the reduction for every member with `reason` (hosts call this
    /// when a peer's input has another length, for example).
    pub fn abort(&mut self, reason: AbortReason) {
        if self.phase == Phase::Running {
            let message = OwnedMessage {
                header: Header::new(Kind::Abort, self.round),
                events: Vec::new(),
                payload: Vec::new(),
                abort: Some(reason),
            };
            self.terminate(Phase::Failed, Err(reason.into()), message);
        }
    }

    /// Installs the neighbour set the topology layer computed for the
    /// current view, with a diameter bound for the repaired graph.
    ///
    /// New neighbours are opened with a hello handshake that agrees on the
    /// first round both exchange. The set may only grow (departed members
    /// aside): use a monotone repair such as [`crate::Graph::repaired`].
    ///
    /// # Errors
    /// [`Error::UnknownNode`] for an id outside `0..members`;
    /// [`Error::InvalidConfig`] if a live neighbour is missing (nothing
    /// changes); a Laplacian step too large for the new degree (the
    /// reduction is then aborted for everyone).
    pub fn set_peers(&mut self, peers: &[usize], diameter_bound: usize) -> Result<()> {
        let mut ids = Vec::with_capacity(peers.len());
        for &p in peers {
            if p >= self.members() {
                return Err(Error::UnknownNode {
                    node: p,
                    members: self.members(),
                });
            }
            if p != self.id() && !self.events.has_departed(p as u32) {
                ids.push(p as u32);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        // Dropping a live neighbour would need both ends to agree on the
        // round the edge closes; repairs only ever add edges instead.
        if let Some(kept) = self
            .peers
            .iter()
            .copied()
            .find(|id| !self.events.has_departed(*id) && ids.binary_search(id).is_err())
        {
            return Err(Error::config(
                "peers",
                format!(
                    "the new neighbour set of member {} drops live neighbour {kept}; \
                     neighbour sets only grow, except by departures",
                    self.id
                ),
            ));
        }
        self.reconfigure = false;
        self.diameter = diameter_bound.min(u32::MAX as usize / 4) as u32;
        if self.phase != Phase::Running {
            return Ok(());
        }
        let my_start = match self.plan {
            Some(plan) => (self.round + 1).max(plan.rounds()),
            None => self.round + 1,
        };
        for id in ids {
            if self.peer_index(id).is_none() {
                self.add_peer(id, my_start);
            }
        }
        self.refresh_unsent_meta();
        if let Schedule::Laplacian { eps } = self.schedule {
            let degree = self.peers.len();
            if eps * degree as f64 >= 1.0 {
                self.abort(AbortReason::StepTooLarge {
                    rank: self.id,
                    eps,
                    degree: degree as u32,
                });
                return Err(Error::LaplacianStepTooLarge {
                    eps,
                    max_degree: degree,
                    limit: 1.0 / degree as f64,
                });
            }
        }
        Ok(())
    }

    pub(super) fn add_peer(&mut self, id: u32, my_start: u32) {
        let at = self.peers.partition_point(|&p| p < id);
        let w = self.width();
        let flow = self.flow_offset(at);
        self.buf.splice(flow..flow, std::iter::repeat_n(0.0, w));
        if let Some(inbox) = self.inbox.as_deref_mut() {
            inbox.tags.splice(2 * at..2 * at, [Slot::FREE; 2]);
            let k = 2 * at * w;
            inbox.values.splice(k..k, std::iter::repeat_n(0.0, 2 * w));
        }
        self.peers.insert(at, id);
        let rare = self.rare();
        let early = rare.early_hellos.iter().position(|h| h.0 == id);
        let (their_start, acked) = match early {
            Some(k) => {
                let (_, start, ack) = rare.early_hellos.swap_remove(k);
                (Some(start), ack)
            }
            None => (None, false),
        };
        rare.joins.push(Join {
            peer: id,
            my_start,
            their_start,
            acked,
            hello_due: true,
        });
    }

    pub(super) fn remove_peer(&mut self, id: u32) {
        if let Some(at) = self.peer_index(id) {
            let w = self.width();
            let flow = self.flow_offset(at);
            self.buf.drain(flow..flow + w);
            if let Some(inbox) = self.inbox.as_deref_mut() {
                inbox.tags.drain(2 * at..2 * at + 2);
                inbox.values.drain(2 * at * w..2 * (at + 1) * w);
            }
            self.peers.remove(at);
        }
        if let Some(rare) = self.rare.as_mut() {
            rare.joins.retain(|j| j.peer != id);
            rare.replies.retain(|r| r.0 != id);
        }
    }

    /// Adds events to the view; departed neighbours are dropped with their
    /// flows (after the exact phase). A member that learns of its own
    /// departure is excluded; one left without a quorum stops (see
    /// [`Error::Partitioned`]). Returns true if the view changed.
    pub(super) fn learn(&mut self, events: &[Event]) -> bool {
        let mut changed = false;
        let mut departures = false;
        let mut dropped = Vec::new();
        for &event in events {
            // A member proven gone has departed, whichever event came first.
            let implied = match event {
                Event::Gone { member } => Some(Event::Departed { member }),
                _ => None,
            };
            for event in implied.into_iter().chain([event]) {
                if !self.events.insert(event) {
                    continue;
                }
                changed = true;
                if let Event::Departed { member } = event {
                    departures = true;
                    if member == self.id {
                        self.exclude();
                        return true;
                    }
                    // In the exact phase the flows stay until the phase
                    // ends: members whose exchanges all happened hold the
                    // exact mean of every input, including those of members
                    // that left after their input was combined.
                    if self.peer_index(member).is_some() {
                        if self.plan.is_none() {
                            self.remove_peer(member);
                            dropped.push(member);
                        }
                        self.reconfigure = true;
                    }
                }
            }
        }
        // A neighbour dropped without proof that it is gone may be alive
        // (frozen, cut off, falsely suspected): it gets our view at once,
        // rather than when it next talks to us. Read with what it buffered
        // meanwhile, the view stops it before stale round messages can
        // complete its rounds.
        for member in dropped {
            if self
                .events
                .as_slice()
                .binary_search(&Event::Gone { member })
                .is_err()
            {
                self.fence(member);
            }
        }
        if changed {
            self.proposal = 0;
            self.counter = 0;
            self.settling = false;
            self.events_due = true;
            self.attach_events = true;
        }
        if departures {
            self.check_quorum();
        }
        changed
    }

    /// Stops this member if the members it holds live are no strict
    /// majority of the members not proven gone. Its neighbours get its view
    /// as its last word, so that those on its side of a partition learn the
    /// same departures and stop too, instead of waiting for it — and its
    /// own departure, for a neighbour that knows more members to be gone
    /// and so keeps its quorum: it would otherwise wait for this member,
    /// which is alive but will send no round again.
    fn check_quorum(&mut self) {
        let members = self.members();
        let (live, base) = (self.events.live(members), self.events.not_gone(members));
        if self.phase != Phase::Running || 2 * live > base {
            return;
        }
        let mut events = self.events.as_slice().to_vec();
        let me = Event::Departed { member: self.id };
        if let Err(at) = events.binary_search(&me) {
            events.insert(at, me);
        }
        let message = OwnedMessage {
            header: Header {
                view: self.events.id(),
                ..Header::new(Kind::Events, self.round)
            },
            events,
            payload: Vec::new(),
            abort: None,
        };
        let rank = self.id();
        self.terminate(
            Phase::Failed,
            Err(Error::Partitioned { rank, live, base }),
            message,
        );
    }

    /// The others declared this member departed: it stops, and its last
    /// word — to its neighbours, and to anyone who asks later — is that
    /// departure alone. It is still alive, so no failure detector reports
    /// it: a neighbour that has not heard of the exclusion otherwise would
    /// wait for it forever. (Its other suspicions stay with it: they may
    /// be the mistakes that cut it off.)
    pub(super) fn exclude(&mut self) {
        if self.phase == Phase::Running {
            let message = OwnedMessage {
                header: Header {
                    view: self.events.id(),
                    ..Header::new(Kind::Events, self.round)
                },
                events: vec![Event::Departed { member: self.id }],
                payload: Vec::new(),
                abort: None,
            };
            let rank = self.id();
            self.terminate(Phase::Failed, Err(Error::Excluded { rank }), message);
        }
    }

    pub(super) fn terminate(
        &mut self,
        phase: Phase,
        outcome: Result<Reduction>,
        message: OwnedMessage,
    ) {
        self.phase = phase;
        self.terminal_due = true;
        let rare = self.rare();
        rare.outcome = Some(outcome);
        rare.terminal = Some(message);
    }

    /// Finishes with this member's own estimate.
    pub(super) fn finish(&mut self, residual: f64, contributors: Contributors) {
        let value = self.estimate();
        let mut header = Header::new(Kind::Done, self.round);
        header.streak = residual;
        header.view = self.events.id();
        // Adopters rebuild the contributors from these events.
        let departed = contributors
            .departed()
            .iter()
            .map(|&member| Event::Departed {
                member: member as u32,
            });
        let changed =
            contributors
                .changed_inputs()
                .iter()
                .map(|&(member, seq)| Event::InputChanged {
                    member: member as u32,
                    seq,
                });
        let message = OwnedMessage {
            header,
            events: departed.chain(changed).collect(),
            payload: value.clone(),
            abort: None,
        };
        let reduction = Reduction {
            value,
            rounds: self.round,
            residual,
            contributors,
        };
        self.terminate(Phase::Done, Ok(reduction), message);
    }

    pub(super) fn contributors(&self) -> Contributors {
        self.events.contributors(self.members())
    }
}
