//! The lockstep fast path: an optimisation of the general path, for hosts
//! that deliver whole rounds (the simulator).
//!
//! A host that hands every neighbour's round message over at once, and
//! takes this member's message as soon as it is due, can skip the inbox:
//! [`Engine::take_plain_round`] hands out the plain round message without
//! a polling closure, [`Engine::receive_plain_rounds`] takes a tick's
//! round messages given by their parts, and
//! [`Engine::advance_with_round_from`] completes the round straight from
//! the host's own buffer in one pass. Each falls back to the general path
//! (or declines, changing nothing) whenever anything but the plain
//! iterative round is pending. None decides anything of its own: results
//! are bit for bit those of [`Engine::receive`] and [`Engine::advance`]
//! (the test below), and the termination gossip is taken in by the same
//! functions (`Acc::fold`, `take_view_gossip`).

use super::message::{Header, Kind, Message, Violation};
use super::receive::sane_round;
use super::state::{Acc, EMPTY, Phase, SLOT_DIRTY, take_view_gossip};
use super::step::{EdgeFold, SAVED_FLOWS};
use super::{Engine, Progress};

impl Engine {
    /// [`Engine::receive`] for a round message without events, given by
    /// its parts (hosts that keep headers and payloads apart, like the
    /// simulator, skip assembling a [`Message`]). `index` is where the
    /// sender probably is among [`Engine::peers`] (a wrong guess only
    /// costs a search).
    #[inline]
    pub(crate) fn receive_plain_round(
        &mut self,
        from: usize,
        index: usize,
        header: &Header,
        payload: &[f64],
    ) -> Result<(), Violation> {
        if self.receive_round_fast(from, Some(index), header, payload) {
            return Ok(());
        }
        self.receive_general(from, &Message::new(*header, &[], payload))
    }

    /// [`Engine::receive_plain_round`] for each of `messages`, given as
    /// `(from, index, header, payload)`, in order (one call per member and
    /// tick saves a call per message). Returns how many were malformed.
    pub(crate) fn receive_plain_rounds<'m>(
        &mut self,
        messages: impl Iterator<Item = (usize, usize, Header, &'m [f64])>,
    ) -> u64 {
        let mut violations = 0;
        for (from, index, header, payload) in messages {
            if !self.receive_round_fast(from, Some(index), &header, payload)
                && self
                    .receive_general(from, &Message::new(header, &[], payload))
                    .is_err()
            {
                violations += 1;
            }
        }
        violations
    }

    /// [`Engine::poll_outgoing`] for the common case in which the only
    /// message due is this round's plain message to every neighbour: marks
    /// it sent, as polling would, and returns it. Returns `None`, having
    /// changed nothing, in every other case; the host then polls as usual.
    pub(crate) fn take_plain_round(&mut self) -> Option<Message<'_>> {
        let simple = self.phase == Phase::Running
            && !self.events_due
            && !self.attach_events
            && self.rare.is_none()
            && self.plan.is_none()
            && !self.peers.is_empty();
        if !simple || !(self.round_due || self.retransmit) {
            return None;
        }
        self.sent = true;
        self.round_due = false;
        self.retransmit = false;
        // The current round's state is always held, so this is `Some`.
        self.round_message(self.round, false)
    }

    /// Completes the current round directly from this tick's plain round
    /// messages, without buffering them, when the host can look up each
    /// neighbour's message: `message_of(index, peer)` gives the message of
    /// `peer` (at `index` in [`Engine::peers`]) for this tick, if one
    /// arrived.
    ///
    /// The result is the same, bit for bit, as [`Engine::receive`] of each
    /// message followed by [`Engine::advance`]. Returns `None`, having
    /// changed nothing, when the shortcut does not apply — a neighbour
    /// without a message, a malformed or early message, a message already
    /// buffered, or anything pending beyond the plain round —; the host
    /// then receives the messages and advances as usual.
    pub(crate) fn advance_with_round_from<'m, F>(&mut self, message_of: F) -> Option<Progress>
    where
        F: Fn(usize, u32) -> Option<(Header, &'m [f64])>,
    {
        if !self.fits_round_shortcut() {
            return None;
        }
        match self.width() {
            2 => self.step_with_rounds::<2, F>(message_of),
            _ => self.step_with_rounds::<0, F>(message_of),
        }
    }

    /// True when [`Engine::advance_with_round_from`] may take the round if
    /// the messages fit: the iterative phase with nothing pending, the
    /// round's own message sent, and room to have stored a message of the
    /// round from every neighbour (none buffered already).
    fn fits_round_shortcut(&self) -> bool {
        let t = self.round;
        let acc_round = self.acc[(t % 2) as usize].round;
        let fits = self.phase == Phase::Running
            && self.plan.is_none()
            && self.rare.is_none()
            && self.sent
            && !self.peers.is_empty()
            && t < self.max_rounds
            && (acc_round == t || acc_round == EMPTY || acc_round < t);
        fits && (self.inbox.is_none()
            || (0..self.peers.len()).all(|p| self.slot_to_store(p, t).is_some()))
    }

    /// The round of [`Engine::advance_with_round_from`], once
    /// [`Engine::fits_round_shortcut`] holds: what receiving each message
    /// and then [`Engine::step_iterative_w`] do, in the same order, in one
    /// pass over the messages. The flows are updated in place and put back
    /// if a message turns out not to fit (a non-finite value, another
    /// round); everything else is committed at the end. The next round's
    /// mass is summed as the flows are updated, in peer order as
    /// [`Engine::finish_round_w`] sums it.
    fn step_with_rounds<'m, const W: usize, F>(&mut self, message_of: F) -> Option<Progress>
    where
        F: Fn(usize, u32) -> Option<(Header, &'m [f64])>,
    {
        let t = self.round;
        let slot = (t % 2) as usize;
        let meta = self.meta[slot];
        if meta.round != t {
            return None; // not recorded yet: `advance` records it
        }
        let view = self.events.id();
        let mut acc = if self.acc[slot].round == t {
            self.acc[slot]
        } else {
            Acc::fresh(t)
        };
        let w = if W == 0 { self.width() } else { W };
        let n = self.peers.len();
        let me_at = self.hist_offset(t);
        let flow_base = self.flow_offset(0);
        let (head, edges) = self.buf.split_at_mut(flow_base);
        let flows = &mut edges[..n * w];
        let mut small = [0.0; SAVED_FLOWS];
        let large;
        let saved: &[f64] = if flows.len() <= SAVED_FLOWS {
            small[..flows.len()].copy_from_slice(flows);
            &small[..flows.len()]
        } else {
            large = flows.to_vec();
            &large
        };
        let mut fold = EdgeFold::new::<W>(self.schedule, &head[me_at..me_at + w], meta, view);
        // `W = 0` (any width) leaves the sum to `finish_round_w`.
        let mut mass = [0.0; W];
        mass.copy_from_slice(&head[..W]);
        let mut proposal = self.proposal;
        let mut attach = false;
        let mut fits = true;
        for (k, (&peer, flow)) in self.peers.iter().zip(flows.chunks_exact_mut(w)).enumerate() {
            let message = message_of(k, peer).filter(|(h, them)| {
                h.kind == Kind::Round
                    && h.round == t
                    && them.len() == w
                    && sane_round(h, &them[..w])
            });
            let Some((h, them)) = message else {
                fits = false;
                break;
            };
            acc.fold(&h);
            take_view_gossip(&h, view, t, &mut attach, &mut proposal);
            let degree = h.degree & !SLOT_DIRTY;
            fold.edge::<W>(flow, &them[..w], degree, h.view);
            for c in 0..W {
                mass[c] -= flow[c];
            }
        }
        if !fits {
            flows.copy_from_slice(saved);
            return None;
        }
        self.acc[slot] = Acc::fresh(EMPTY);
        self.proposal = proposal;
        self.attach_events |= attach;
        let edges = fold.summary();
        self.close_iterative::<W>(t, edges, acc, (W != 0).then_some(&mass[..]));
        Some(self.progress_after_step())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{engines_with, metropolis, outgoing, state_bits};
    use super::*;
    use crate::graph::Graph;

    /// One member's plain round messages of a tick: `(from, index, header,
    /// payload)`.
    type Batch = Vec<(usize, usize, Header, Vec<f64>)>;

    /// Taking a whole round's messages at once (`advance_with_round_from`)
    /// gives bit for bit what receiving them one by one and then advancing
    /// gives, both when the shortcut applies (also to a batch that arrived in
    /// reverse order) and when a tampered batch (a duplicate, a non-finite
    /// value, a missing message) sends it down the general path. Before the
    /// first tampered batch, every round took the shortcut.
    #[test]
    fn a_round_taken_at_once_equals_receiving_then_advancing() {
        // d = 8 has more flows than the shortcut saves on the stack.
        for dim in [1usize, 2, 8] {
            // Degrees 3 to 6: the Metropolis weight of an edge depends on which
            // end has the larger degree.
            let regular = Graph::random_regular(10, 3, 5).unwrap();
            let mut edges: Vec<_> = regular.edges().collect();
            edges.extend(
                [2, 5, 7, 9]
                    .iter()
                    .filter(|&&b| !regular.has_edge(0, b))
                    .map(|&b| (0, b)),
            );
            let graph = Graph::from_edges(10, &edges).unwrap();
            assert!(graph.max_degree() > graph.min_degree());
            let input = |i: usize| (0..dim).map(|k| (i * 7 + k) as f64 / 3.0).collect();
            let make = || engines_with(&graph, &metropolis(), input);
            let (mut at_once, mut one_by_one) = (make(), make());
            let mut finished = false;
            for tick in 0..5_000u32 {
                if tick == 5 {
                    // Until now, the shortcut took every round (it buffers
                    // nothing, receiving buffers every message).
                    assert!(at_once.iter().all(|e| e.inbox.is_none()));
                    assert!(one_by_one.iter().all(|e| e.inbox.is_some()));
                }
                // Both sets hand out the same messages.
                let mut batches: Vec<Batch> = vec![Vec::new(); graph.len()];
                let mut other = Vec::new();
                for i in 0..graph.len() {
                    at_once[i].tick();
                    one_by_one[i].tick();
                    let (a, b) = (outgoing(&mut at_once[i]), outgoing(&mut one_by_one[i]));
                    assert_eq!(
                        format!("{a:?}"),
                        format!("{b:?}"),
                        "tick {tick}, member {i}"
                    );
                    for (to, m) in a {
                        let index = at_once[to].peers().position(|p| p == i).unwrap();
                        if m.header.kind == Kind::Round && m.events.is_empty() {
                            batches[to].push((i, index, m.header, m.payload));
                        } else {
                            other.push((i, to, m));
                        }
                    }
                }
                for (from, to, m) in &other {
                    let (a, b) = (
                        at_once[*to].receive(*from, &m.as_message()),
                        one_by_one[*to].receive(*from, &m.as_message()),
                    );
                    assert_eq!(a, b);
                }
                for (to, batch) in batches.iter_mut().enumerate() {
                    batch.sort_by_key(|m| m.1);
                    match (tick, to) {
                        (5, 0) if !batch.is_empty() => batch.push(batch[0].clone()),
                        (7, 1) if !batch.is_empty() => batch[0].3[0] = f64::NAN,
                        (9, 2) => drop(batch.pop()),
                        (11, 3) => batch.reverse(),
                        _ => {}
                    }
                    let messages = batch.iter().map(|(f, i, h, p)| (*f, *i, *h, &p[..]));
                    // As the simulator looks messages up: the one message from
                    // each neighbour, or none.
                    let message_of = |_: usize, peer: u32| {
                        let mut from_peer = batch.iter().filter(|m| m.0 == peer as usize);
                        match (from_peer.next(), from_peer.next()) {
                            (Some((_, _, h, p)), None) => Some((*h, &p[..])),
                            _ => None,
                        }
                    };
                    let violations = match at_once[to].advance_with_round_from(message_of) {
                        Some(_) => 0,
                        None => {
                            let violations = at_once[to].receive_plain_rounds(messages.clone());
                            at_once[to].advance();
                            violations
                        }
                    };
                    let expected = one_by_one[to].receive_plain_rounds(messages);
                    one_by_one[to].advance();
                    assert_eq!(violations, expected, "tick {tick}, member {to}");
                    assert_eq!(
                        state_bits(&at_once[to]),
                        state_bits(&one_by_one[to]),
                        "tick {tick}, member {to}"
                    );
                }
                if at_once.iter().all(|e| e.phase() != Phase::Running) {
                    finished = true;
                    break;
                }
            }
            assert!(finished, "d = {dim}: did not finish");
            let n = graph.len() as f64;
            for i in 0..graph.len() {
                let (a, b) = (
                    at_once[i].take_outcome().unwrap().unwrap(),
                    one_by_one[i].take_outcome().unwrap().unwrap(),
                );
                assert_eq!(format!("{a:?}"), format!("{b:?}"));
                for (k, v) in a.value.iter().enumerate() {
                    let mean = (0..graph.len())
                        .map(|j| (j * 7 + k) as f64 / 3.0)
                        .sum::<f64>()
                        / n;
                    assert!(
                        (v - mean).abs() <= 1e-9 * mean.abs().max(1.0),
                        "member {i}: {v} vs {mean}"
                    );
                }
            }
        }
    }
}
