//! Outages: cut links, isolated and frozen members, and false suspicions,
//! as the simulation loop sees them tick by tick.

use std::collections::BTreeMap;

use super::{Faults, MessageStats, RECEIVE_BUFFER, Span, Suspicion};
use crate::engine::OwnedMessage;
use crate::error::{Error, Result};

/// The outages of a run: their schedule, what is in effect this tick, and
/// what frozen members find when they thaw.
#[derive(Debug, Default)]
pub(super) struct Outages {
    /// Directed cuts (a cut both ways is two of them).
    cuts: Vec<(u32, u32, Span)>,
    isolations: Vec<(u32, Span)>,
    freezes: Vec<(u32, Span)>,
    /// False suspicions still to be made, the latest first.
    suspicions: Vec<Suspicion>,
    /// Some cut, isolation or freeze is scheduled at all: without one,
    /// [`Outages::begin_tick`] costs nothing.
    scheduled: bool,
    /// In effect this tick, sorted: directed cuts, isolated members and
    /// frozen members.
    cut_now: Vec<(u32, u32)>,
    isolated_now: Vec<u32>,
    frozen_now: Vec<u32>,
    /// Messages that reached frozen members, by receiver, in arrival
    /// order: (sender, message).
    held: BTreeMap<u32, Vec<(u32, OwnedMessage)>>,
    /// Departures reported to frozen members, made when they thaw:
    /// (member, departed peer, proven).
    deferred: Vec<(u32, u32, bool)>,
    /// Something above is in effect this tick: every member takes the
    /// general path of the loop.
    active: bool,
}

impl Outages {
    /// The outages `faults` schedule (validated by [`validate`]).
    pub(super) fn new(faults: &Faults) -> Outages {
        let mut cuts = Vec::new();
        for cut in &faults.cuts {
            let (from, to) = (cut.from as u32, cut.to as u32);
            cuts.push((from, to, cut.span));
            if cut.both_ways {
                cuts.push((to, from, cut.span));
            }
        }
        let by_member = |list: &[(usize, Span)]| -> Vec<(u32, Span)> {
            list.iter()
                .map(|&(node, span)| (node as u32, span))
                .collect()
        };
        // pop() yields the earliest, and those of a tick in the given order.
        let mut suspicions = faults.false_suspicions.clone();
        suspicions.reverse();
        suspicions.sort_by_key(|s| std::cmp::Reverse(s.tick));
        Outages {
            scheduled: !(cuts.is_empty()
                && faults.isolations.is_empty()
                && faults.freezes.is_empty()),
            cuts,
            isolations: by_member(&faults.isolations),
            freezes: by_member(&faults.freezes),
            suspicions,
            ..Outages::default()
        }
    }

    /// The last tick at which a scheduled outage starts, ends or strikes
    /// (0 without any): the simulation runs at least this long.
    pub(super) fn last_tick(&self) -> u64 {
        let spans = self
            .cuts
            .iter()
            .map(|c| c.2)
            .chain(self.isolations.iter().chain(&self.freezes).map(|m| m.1));
        let ends = spans.map(|s| s.end.unwrap_or(s.start));
        let suspicions = self.suspicions.iter().map(|s| s.tick);
        ends.chain(suspicions).max().unwrap_or(0)
    }

    /// Works out what is in effect at `tick`; returns true if anything is
    /// (then [`Outages::active`] stays true for the tick).
    pub(super) fn begin_tick(&mut self, tick: u64) -> bool {
        if !self.scheduled {
            return false;
        }
        self.cut_now.clear();
        self.cut_now.extend(
            self.cuts
                .iter()
                .filter(|c| c.2.contains(tick))
                .map(|c| (c.0, c.1)),
        );
        self.cut_now.sort_unstable();
        fill(&mut self.isolated_now, &self.isolations, tick);
        fill(&mut self.frozen_now, &self.freezes, tick);
        self.active = !(self.cut_now.is_empty()
            && self.isolated_now.is_empty()
            && self.frozen_now.is_empty()
            && self.held.is_empty()
            && self.deferred.is_empty());
        self.active
    }

    /// Something is in effect this tick.
    pub(super) fn active(&self) -> bool {
        self.active
    }

    /// True if member `j` is frozen this tick.
    pub(super) fn frozen(&self, j: usize) -> bool {
        self.active && self.frozen_now.binary_search(&(j as u32)).is_ok()
    }

    /// True if member `j` is frozen at `tick` by a freeze without an end.
    pub(super) fn frozen_for_good(&self, j: usize, tick: u64) -> bool {
        self.freezes
            .iter()
            .any(|&(m, span)| m as usize == j && span.end.is_none() && span.contains(tick))
    }

    /// True if a message (or heartbeat) from `from` reaches `to` this
    /// tick: the link is not cut and neither end is isolated.
    pub(super) fn open(&self, from: usize, to: usize) -> bool {
        if !self.active {
            return true;
        }
        let (from, to) = (from as u32, to as u32);
        let isolated = |m: u32| self.isolated_now.binary_search(&m).is_ok();
        !isolated(from) && !isolated(to) && self.cut_now.binary_search(&(from, to)).is_err()
    }

    /// Puts a message that reached frozen member `to` in its receive
    /// buffer (or loses it if the buffer is full).
    pub(super) fn hold(
        &mut self,
        to: usize,
        from: usize,
        message: OwnedMessage,
        stats: &mut MessageStats,
    ) {
        let buffer = self.held.entry(to as u32).or_default();
        if buffer.len() < RECEIVE_BUFFER {
            buffer.push((from as u32, message));
        } else {
            stats.cut += 1;
        }
    }

    /// The messages waiting for member `j`, which is not frozen (any
    /// longer), in arrival order.
    pub(super) fn take_held(&mut self, j: usize) -> Vec<(u32, OwnedMessage)> {
        if self.held.is_empty() {
            return Vec::new();
        }
        self.held.remove(&(j as u32)).unwrap_or_default()
    }

    /// Keeps for later the report to frozen member `j` that `peer`
    /// departed.
    pub(super) fn defer(&mut self, j: usize, peer: usize, proven: bool) {
        self.deferred.push((j as u32, peer as u32, proven));
    }

    /// The deferred reports to members that are no longer frozen, in the
    /// order they were made: (member, departed peer, proven).
    pub(super) fn take_thawed_reports(&mut self) -> Vec<(usize, usize, bool)> {
        if self.deferred.is_empty() {
            return Vec::new();
        }
        let frozen = &self.frozen_now;
        let (thawed, still): (Vec<_>, Vec<_>) = self
            .deferred
            .drain(..)
            .partition(|d| frozen.binary_search(&d.0).is_err());
        self.deferred = still;
        thawed
            .into_iter()
            .map(|(j, p, proven)| (j as usize, p as usize, proven))
            .collect()
    }

    /// The false suspicions due at `tick`, earliest first.
    pub(super) fn due_suspicions(&mut self, tick: u64) -> Vec<Suspicion> {
        let mut due = Vec::new();
        while self.suspicions.last().is_some_and(|s| s.tick <= tick) {
            due.extend(self.suspicions.pop());
        }
        due
    }
}

/// Sets `now` to the members whose span in `list` contains `tick`, sorted.
fn fill(now: &mut Vec<u32>, list: &[(u32, Span)], tick: u64) {
    now.clear();
    now.extend(
        list.iter()
            .filter(|(_, span)| span.contains(tick))
            .map(|m| m.0),
    );
    now.sort_unstable();
    now.dedup();
}

/// Checks the outage parameters of `faults` for `n` members.
pub(super) fn validate(faults: &Faults, n: usize) -> Result<()> {
    let member = |node: usize| {
        if node < n {
            Ok(())
        } else {
            Err(Error::UnknownNode { node, members: n })
        }
    };
    let span = |field: &'static str, span: &Span| match span.end {
        Some(end) if end <= span.start => Err(Error::config(
            field,
            format!(
                "must end after they start, got the span {}..{end}",
                span.start
            ),
        )),
        _ => Ok(()),
    };
    for cut in &faults.cuts {
        member(cut.from)?;
        member(cut.to)?;
        if cut.from == cut.to {
            return Err(Error::config(
                "cuts",
                format!("must join two members, got member {} twice", cut.from),
            ));
        }
        span("cuts", &cut.span)?;
    }
    for (field, list) in [
        ("isolations", &faults.isolations),
        ("freezes", &faults.freezes),
    ] {
        for (node, s) in list {
            member(*node)?;
            span(field, s)?;
        }
    }
    for s in &faults.false_suspicions {
        member(s.by)?;
        member(s.of)?;
        if s.by == s.of {
            return Err(Error::config(
                "false_suspicions",
                format!(
                    "must name two members, got member {} suspecting itself",
                    s.by
                ),
            ));
        }
    }
    if faults.suspect_after == Some(0) {
        return Err(Error::config(
            "suspect_after",
            "must be at least 1 tick, got 0",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Cut;
    use super::*;

    #[test]
    fn a_span_holds_its_start_and_not_its_end() {
        let span = Span::between(3, 5);
        assert!(!span.contains(2));
        assert!(span.contains(3) && span.contains(4));
        assert!(!span.contains(5));
        assert!(Span::from_tick(7).contains(u64::MAX));
    }

    #[test]
    fn cuts_are_directed_and_isolations_cut_every_link() {
        let faults = Faults {
            cuts: vec![
                Cut {
                    from: 0,
                    to: 1,
                    both_ways: false,
                    span: Span::between(1, 3),
                },
                Cut {
                    from: 2,
                    to: 3,
                    both_ways: true,
                    span: Span::from_tick(2),
                },
            ],
            isolations: vec![(4, Span::between(2, 3))],
            ..Faults::default()
        };
        let mut outages = Outages::new(&faults);
        assert!(outages.begin_tick(1));
        assert!(!outages.open(0, 1) && outages.open(1, 0));
        assert!(outages.open(2, 3) && outages.open(3, 2));
        assert!(outages.begin_tick(2));
        assert!(!outages.open(2, 3) && !outages.open(3, 2));
        assert!(!outages.open(4, 0) && !outages.open(0, 4));
        assert!(outages.begin_tick(3));
        assert!(outages.open(0, 1) && outages.open(4, 0));
        assert_eq!(outages.last_tick(), 3);
    }
}
