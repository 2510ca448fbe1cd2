//! The job's membership as one member knows it: the current view, and
//! every departure. The session owns it and is its only writer; the
//! `Comm` reads it between calls.
//!
//! # Views
//!
//! A job is a sequence of views. Each view has an id (0 for the members
//! the job formed with, one more at every change) and its members' ranks,
//! ascending. A rank is a member's identity for the whole job: it is never
//! reused and never renumbered.
//!
//! Every reduction runs in one view. Its engine numbers the view's members
//! `0..len` in rank order, so the exact schedule runs over exactly the
//! members present, and every frame carries the view's [`View::tag`].
//!
//! The next view is decided by the reduction that completes: its members
//! are that reduction's contributors. Every member that completes a
//! reduction reports the same contributors (the engine's soundness tests
//! check it under every fault they inject), so every member moves to the
//! same view without a word more. The exception is a member cut off at the
//! very moment a reduction ends, which may finish it with everyone while
//! the others leave it out: it is fenced, and its next call fails with
//! `Error::Excluded`. A reduction that fails (an abort, a usage error)
//! leaves the view as it was; a member that cannot complete one
//! (partitioned, excluded) is out of the job anyway.
//!
//! Why this keeps one job: a reduction completes only on members that hold
//! a strict majority of the view's members not proven gone (the quorum
//! rule), so two disjoint groups of a view cannot both complete one, and
//! each view descends from the last by a majority of it.

use std::collections::{BTreeMap, BTreeSet};

use dac_core::Contributors;

/// One view of the job: an id and its members' ranks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct View {
    /// 0 for the view the job formed with, one more at every change.
    pub(crate) id: u64,
    /// The members' ranks, ascending.
    pub(crate) members: Vec<usize>,
    /// What frames of this view carry (see [`View::tag`]).
    tag: u64,
}

impl View {
    /// The view `id` of `members` (ascending ranks).
    pub(crate) fn new(id: u64, members: Vec<usize>) -> View {
        debug_assert!(members.windows(2).all(|w| w[0] < w[1]));
        let tag = tag_of(id, &members);
        View { id, members, tag }
    }

    /// A 64-bit digest of the id and the members, carried by every frame of
    /// a reduction in this view: a frame of another view (a member fenced
    /// from it that woke up, or one that disagrees) is never mixed into
    /// this view's reduction.
    pub(crate) fn tag(&self) -> u64 {
        self.tag
    }

    /// Number of members.
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// The position of `rank` in the view (its id in the engine).
    pub(crate) fn position(&self, rank: usize) -> Option<usize> {
        self.members.binary_search(&rank).ok()
    }

    /// The rank at `position`; `usize::MAX`, which is no member's, for a
    /// position outside the view (named only by a peer that lies).
    pub(crate) fn rank(&self, position: usize) -> usize {
        self.members.get(position).copied().unwrap_or(usize::MAX)
    }

    /// `contributors` (positions in this view, as an engine reports them)
    /// as ranks of a job whose ranks are `0..size`.
    pub(crate) fn to_ranks(&self, contributors: &Contributors, size: usize) -> Contributors {
        let present: BTreeSet<usize> = contributors.iter().map(|p| self.rank(p)).collect();
        let absent = (0..size).filter(|r| !present.contains(r));
        let versions = contributors
            .changed_inputs()
            .iter()
            .map(|&(p, v)| (self.rank(p), v));
        Contributors::with_versions(size, absent, versions)
    }
}

/// FNV-1a of the id, the member count and the ranks.
fn tag_of(id: u64, members: &[usize]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let words = [id, members.len() as u64]
        .into_iter()
        .chain(members.iter().map(|&r| r as u64));
    for word in words {
        for byte in word.to_le_bytes() {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// What one member knows of the job's membership.
#[derive(Debug)]
pub(crate) struct Membership {
    /// Ranks assigned so far (`0..size`).
    size: usize,
    /// The view the next reduction runs in.
    view: View,
    /// Every departure this member knows of, from any source (its own
    /// failure detector, a goodbye, another member's report): rank →
    /// whether it is proven gone.
    departed: BTreeMap<usize, bool>,
    /// Members whose input a reduction this member completed lacks: they
    /// departed mid-job.
    missing: BTreeSet<usize>,
}

impl Membership {
    /// The membership of a job formed with ranks `0..size`.
    pub(crate) fn new(size: usize) -> Membership {
        Membership {
            size,
            view: View::new(0, (0..size).collect()),
            departed: BTreeMap::new(),
            missing: BTreeSet::new(),
        }
    }

    /// The membership of a member that joined a job of `size` ranks in
    /// `view`.
    pub(crate) fn joined(size: usize, view: View) -> Membership {
        Membership {
            size,
            view,
            departed: BTreeMap::new(),
            missing: BTreeSet::new(),
        }
    }

    /// Admits `joiners` new members: they take the next ranks, and the view
    /// gains them. Returns their ranks.
    pub(crate) fn admit(&mut self, joiners: usize) -> std::ops::Range<usize> {
        let first = self.size;
        self.size += joiners;
        if joiners > 0 {
            let mut members = self.view.members.clone();
            members.extend(first..self.size);
            self.view = View::new(self.view.id + 1, members);
        }
        first..self.size
    }

    /// Ranks assigned so far.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// The view the next reduction runs in.
    pub(crate) fn view(&self) -> &View {
        &self.view
    }

    /// Records a departure; returns true if it is news (a new departure,
    /// or the proof of one known only by silence).
    pub(crate) fn depart(&mut self, rank: usize, proven: bool) -> bool {
        match self.departed.get_mut(&rank) {
            Some(known) if *known || !proven => false,
            Some(known) => {
                *known = true;
                true
            }
            None => {
                self.departed.insert(rank, proven);
                true
            }
        }
    }

    /// Whether `rank` is known to have departed.
    pub(crate) fn has_departed(&self, rank: usize) -> bool {
        self.departed.contains_key(&rank)
    }

    /// Number of departures known.
    pub(crate) fn departures(&self) -> usize {
        self.departed.len()
    }

    /// The known departures of members of `view`, as (position, proven).
    pub(crate) fn departed_in<'a>(
        &'a self,
        view: &'a View,
    ) -> impl Iterator<Item = (usize, bool)> + 'a {
        self.departed
            .iter()
            .filter_map(|(&r, &proven)| view.position(r).map(|p| (p, proven)))
    }

    /// A reduction in the current view completed with `contributors`
    /// (ranks): they are the next view. Returns true if the view changed.
    pub(crate) fn completed(&mut self, contributors: &Contributors) -> bool {
        self.missing.extend(contributors.departed());
        let next: Vec<usize> = contributors.iter().collect();
        if next == self.view.members {
            return false;
        }
        self.view = View::new(self.view.id + 1, next);
        true
    }

    /// Members that departed mid-job, in rank order (see
    /// `Comm::departed`).
    pub(crate) fn missing(&self) -> Vec<usize> {
        self.missing.iter().copied().collect()
    }

    /// Members known to be gone whose input is in every reduction this
    /// member completed, in rank order (see `Comm::left`).
    pub(crate) fn left(&self) -> Vec<usize> {
        self.departed
            .keys()
            .copied()
            .filter(|r| !self.missing.contains(r))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_follow_the_contributors() {
        let mut m = Membership::new(8);
        assert_eq!(m.view().len(), 8);
        let first = m.view().tag();
        // A reduction with every member changes nothing.
        assert!(!m.completed(&Contributors::all(8)));
        assert_eq!(m.view().tag(), first);
        // Rank 3 is missing from the next one: the view is the survivors.
        assert!(m.completed(&Contributors::excluding(8, [3])));
        let view = m.view().clone();
        assert_eq!(
            (view.id, view.members.clone()),
            (1, vec![0, 1, 2, 4, 5, 6, 7])
        );
        assert_ne!(view.tag(), first);
        assert_eq!(view.position(4), Some(3));
        assert_eq!(view.position(3), None);
        assert_eq!(view.rank(3), 4);
        assert_eq!(view.rank(7), usize::MAX, "no member's rank");
        assert_eq!(m.missing(), vec![3]);
        // The same members under another id have another tag.
        assert_ne!(View::new(2, view.members.clone()).tag(), view.tag());
    }

    #[test]
    fn contributors_in_positions_become_ranks() {
        let view = View::new(1, vec![0, 2, 5, 7]);
        // Position 1 (rank 2) departed, position 3 (rank 7) changed input.
        let positions = Contributors::with_versions(4, [1], [(3, 2)]);
        let ranks = view.to_ranks(&positions, 8);
        assert_eq!(ranks.to_vec(), vec![0, 5, 7]);
        assert_eq!(ranks.members(), 8);
        assert_eq!(ranks.input_version(7), Some(2));
        assert_eq!(ranks.input_version(2), None);
    }

    #[test]
    fn departures_are_recorded_once_and_proofs_upgrade() {
        let mut m = Membership::new(4);
        assert!(m.depart(2, false));
        assert!(!m.depart(2, false));
        assert!(m.depart(2, true), "the proof is news");
        assert!(!m.depart(2, false), "a suspicion does not undo a proof");
        assert!(m.depart(3, true));
        let view = m.view().clone();
        assert_eq!(
            m.departed_in(&view).collect::<Vec<_>>(),
            vec![(2, true), (3, true)]
        );
        assert_eq!(m.left(), vec![2, 3]);
        m.completed(&Contributors::excluding(4, [3]));
        assert_eq!(m.left(), vec![2]);
        assert_eq!(m.missing(), vec![3]);
    }
}
