//! What an engine sends: round messages, events, hellos, resends and its
//! final answer.

use super::Engine;
use super::message::{FLAG_ACK, FLAG_ACKED, Header, Kind, Message, Target};
use super::state::Phase;

impl Engine {
    /// Advances the engine's clock by one time step. A member that has
    /// waited a whole step for its round resends its round message, and any
    /// unanswered hello, so that lost messages are recovered. Hosts on
    /// reliable links need not call it.
    pub fn tick(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        self.wait_ticks = self.wait_ticks.saturating_add(1);
        if self.wait_ticks < 2 {
            return;
        }
        self.retransmit = true;
        if let Some(rare) = self.rare.as_mut() {
            for join in &mut rare.joins {
                if join.their_start.is_none() || !join.acked {
                    join.hello_due = true;
                }
            }
        }
    }

    /// Hands every message due now to `send`. Messages borrow the engine's
    /// buffers, so `send` copies or encodes them.
    pub fn poll_outgoing<F: FnMut(Target, &Message<'_>)>(&mut self, mut send: F) {
        if self.phase != Phase::Running {
            self.poll_terminal(&mut send);
            return;
        }
        if self.events_due {
            self.events_due = false;
            let message = Message {
                header: self.events_header(),
                events: self.events.as_slice(),
                payload: &[],
                abort: None,
            };
            send(Target::Peers, &message);
        }
        if let Some(rare) = self.rare.as_mut() {
            if !rare.events_to.is_empty() {
                let message = Message {
                    header: Header {
                        view: self.events.id(),
                        ..Header::new(Kind::Events, self.round)
                    },
                    events: self.events.as_slice(),
                    payload: &[],
                    abort: None,
                };
                for to in rare.events_to.drain(..) {
                    send(Target::Peer(to as usize), &message);
                }
            }
            for join in rare.joins.iter_mut().filter(|j| j.hello_due) {
                join.hello_due = false;
                let mut header = Header::new(Kind::Hello, join.my_start);
                if join.their_start.is_some() {
                    header.flags |= FLAG_ACK;
                }
                if join.acked {
                    header.flags |= FLAG_ACKED;
                }
                let message = Message {
                    header,
                    events: &[],
                    payload: &[],
                    abort: None,
                };
                send(Target::Peer(join.peer as usize), &message);
            }
        }
        if self.round_due || self.retransmit {
            let attach = self.attach_events;
            if let Some((target, message)) = self
                .round_target()
                .zip(self.round_message(self.round, attach))
            {
                send(target, &message);
                self.sent = true;
                self.attach_events = false;
                if self.plan.is_some() && self.round < 64 {
                    self.sent_bits |= 1 << self.round;
                }
            }
            self.round_due = false;
            self.retransmit = false;
        }
        let owed: Vec<(u32, u32)> = match self.rare.as_mut() {
            Some(rare) if !rare.replies.is_empty() => rare
                .replies
                .drain(..)
                .filter_map(|(to, round)| round.map(|r| (to, r)))
                .collect(),
            _ => return,
        };
        for (to, round) in owed {
            if let Some(message) = self.round_message(round, false) {
                send(Target::Peer(to as usize), &message);
            }
        }
    }

    /// After the end: announce the result once, then answer whoever asks
    /// (members we hold departed get our view instead).
    fn poll_terminal<F: FnMut(Target, &Message<'_>)>(&mut self, send: &mut F) {
        let announce = std::mem::take(&mut self.terminal_due);
        let header = self.events_header();
        let Some(rare) = self.rare.as_mut() else {
            return;
        };
        if !rare.events_to.is_empty() {
            let message = Message {
                header,
                events: self.events.as_slice(),
                payload: &[],
                abort: None,
            };
            for to in rare.events_to.drain(..) {
                send(Target::Peer(to as usize), &message);
            }
        }
        if rare.terminal.is_none() {
            rare.replies.clear();
            return;
        }
        let replies = std::mem::take(&mut rare.replies);
        let Some(terminal) = self.rare.as_ref().and_then(|r| r.terminal.as_ref()) else {
            return;
        };
        let message = terminal.as_message();
        if announce {
            send(Target::Peers, &message);
        }
        for (to, round) in replies {
            match round {
                None => send(Target::Peer(to as usize), &message),
                // A round a member behind this one asks for (see
                // `Engine::owes_round`).
                Some(r) => {
                    if let Some(round_message) = self.round_message(r, false) {
                        send(Target::Peer(to as usize), &round_message);
                    }
                }
            }
        }
    }

    fn events_header(&self) -> Header {
        Header {
            view: self.events.id(),
            ..Header::new(Kind::Events, self.round)
        }
    }

    /// Who gets this round's message: the partner in the exact phase,
    /// every neighbour otherwise.
    pub(super) fn round_target(&self) -> Option<Target> {
        match self.plan {
            Some(plan) => {
                let pairing = plan.pairing(self.id, self.round)?;
                if self.events.has_departed(pairing.peer) {
                    return None;
                }
                self.peer_index(pairing.peer)?;
                Some(Target::Peer(pairing.peer as usize))
            }
            None if self.peers.is_empty() => None,
            None => Some(Target::Peers),
        }
    }

    /// The message this member sent (or sends) for `round`, if it still
    /// holds that round's state.
    #[inline]
    pub(super) fn round_message(&self, round: u32, attach_events: bool) -> Option<Message<'_>> {
        if round > self.round || round + self.hist_len <= self.round {
            return None;
        }
        let meta = self.meta[(round % 2) as usize];
        let mut header = Header::new(Kind::Round, round);
        if meta.round == round {
            header.view = meta.view;
            header.degree = meta.degree;
            header.counter = meta.counter;
            header.flags = meta.flags;
        } else {
            // An exact-phase round older than the last two: only the mass
            // and the dirty flag matter to the partner.
            if round < 64 && self.dirty_bits & (1 << round) != 0 {
                header.flags = super::message::FLAG_DIRTY;
            }
            header.view = self.events.id();
        }
        header.proposal = self.proposal;
        header.streak = self.streak;
        header.epoch = self.epoch;
        Some(Message {
            header,
            events: if attach_events {
                self.events.as_slice()
            } else {
                &[]
            },
            payload: self.hist(round),
            abort: None,
        })
    }
}
