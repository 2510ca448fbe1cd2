//! Events that change what a reduction computes, and the view they define.
//!
//! A member's *view* is the set of events it knows about: departures, input
//! changes, and which departures are proven (the member's process is known
//! to have ended or left, rather than merely gone silent). Two members agree on what they are reducing exactly when
//! their views are equal, so an edge only moves mass in a round when both
//! endpoints sent that round's message under the same view. Views are
//! compared by a 64-bit order-independent fingerprint of the event set.

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use crate::reduction::Contributors;

/// Something that changes what a reduction computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum Event {
    /// A member crashed or left; its flows are dropped and its input no
    /// longer counts.
    Departed {
        /// The member that departed.
        member: u32,
    },
    /// A member replaced its input.
    InputChanged {
        /// The member whose input changed.
        member: u32,
        /// Per-member sequence number of the change (1, 2, …).
        seq: u32,
    },
    /// A departed member is known to be gone: its process ended (its
    /// connection was reset and a new one refused) or it left. Always
    /// accompanied by [`Event::Departed`]; unlike a departure known only
    /// by silence, it does not count against the quorum (see
    /// [`crate::Error::Partitioned`]).
    Gone {
        /// The member that is gone.
        member: u32,
    },
}

impl Event {
    /// A pseudo-random 64-bit fingerprint (splitmix64 of the encoding).
    fn fingerprint(self) -> u64 {
        let code = match self {
            Event::Departed { member } => u64::from(member) << 1,
            Event::InputChanged { member, seq } => {
                (u64::from(member) << 33) ^ (u64::from(seq) << 1) ^ 1 ^ (1 << 63)
            }
            Event::Gone { member } => (u64::from(member) << 1) ^ (1 << 62),
        };
        let mut z = code.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Fingerprint of a member's view (the set of events it knows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct ViewId(pub u64);

/// A set of events, kept sorted, with its fingerprint and the counts the
/// quorum rule needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EventSet {
    events: Vec<Event>,
    id: ViewId,
    /// Number of [`Event::Departed`] events.
    departed: u32,
    /// Number of [`Event::Gone`] events.
    gone: u32,
}

impl EventSet {
    /// Adds `event`; returns true if it was new.
    pub(crate) fn insert(&mut self, event: Event) -> bool {
        match self.events.binary_search(&event) {
            Ok(_) => false,
            Err(at) => {
                self.events.insert(at, event);
                self.id = ViewId(self.id.0.wrapping_add(event.fingerprint()));
                match event {
                    Event::Departed { .. } => self.departed += 1,
                    Event::Gone { .. } => self.gone += 1,
                    Event::InputChanged { .. } => {}
                }
                true
            }
        }
    }

    pub(crate) fn id(&self) -> ViewId {
        self.id
    }

    pub(crate) fn as_slice(&self) -> &[Event] {
        &self.events
    }

    /// Departed members, ascending.
    pub(crate) fn departed(&self) -> impl Iterator<Item = u32> + '_ {
        self.events.iter().filter_map(|e| match *e {
            Event::Departed { member } => Some(member),
            Event::InputChanged { .. } | Event::Gone { .. } => None,
        })
    }

    /// Members of `0..members` not known to have departed (by proof or by
    /// silence).
    pub(crate) fn live(&self, members: usize) -> usize {
        members.saturating_sub(self.departed as usize)
    }

    /// Members of `0..members` not proven gone: the base of the quorum.
    pub(crate) fn not_gone(&self, members: usize) -> usize {
        members.saturating_sub(self.gone as usize)
    }

    /// The contributors a value computed under this view contains.
    pub(crate) fn contributors(&self, members: usize) -> Contributors {
        contributors_of(members, &self.events)
    }

    pub(crate) fn contains(&self, event: Event) -> bool {
        self.events.binary_search(&event).is_ok()
    }

    pub(crate) fn has_departed(&self, member: u32) -> bool {
        self.events
            .binary_search(&Event::Departed { member })
            .is_ok()
    }
}

/// Members minus the departed, with the latest input version per member.
pub(crate) fn contributors_of(members: usize, events: &[Event]) -> Contributors {
    let departed = events.iter().filter_map(|e| match *e {
        Event::Departed { member } => Some(member as usize),
        Event::InputChanged { .. } | Event::Gone { .. } => None,
    });
    let versions = events.iter().filter_map(|e| match *e {
        Event::InputChanged { member, seq } => Some((member as usize, seq)),
        Event::Departed { .. } | Event::Gone { .. } => None,
    });
    Contributors::with_versions(members, departed, versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_id_is_independent_of_insertion_order() {
        let evs = [
            Event::Departed { member: 3 },
            Event::InputChanged { member: 1, seq: 1 },
            Event::Departed { member: 9 },
        ];
        let mut a = EventSet::default();
        let mut b = EventSet::default();
        for e in evs {
            assert!(a.insert(e));
        }
        for e in evs.iter().rev() {
            assert!(b.insert(*e));
        }
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), ViewId::default());
        assert!(!a.insert(evs[0]), "duplicates are not new");
        assert_eq!(a.departed().collect::<Vec<_>>(), vec![3, 9]);
    }

    #[test]
    fn different_sets_have_different_ids() {
        let mut a = EventSet::default();
        let mut b = EventSet::default();
        a.insert(Event::Departed { member: 1 });
        b.insert(Event::Departed { member: 2 });
        assert_ne!(a.id(), b.id());
        let mut c = EventSet::default();
        c.insert(Event::InputChanged { member: 1, seq: 0 });
        assert_ne!(a.id(), c.id());
        let mut d = EventSet::default();
        d.insert(Event::Gone { member: 1 });
        assert_ne!(a.id(), d.id());
        assert_ne!(c.id(), d.id());
    }

    #[test]
    fn counts_for_the_quorum() {
        let mut s = EventSet::default();
        for e in [
            Event::Departed { member: 1 },
            Event::Departed { member: 2 },
            Event::Gone { member: 2 },
            Event::Gone { member: 2 },
            Event::InputChanged { member: 0, seq: 1 },
        ] {
            s.insert(e);
        }
        assert_eq!(s.live(5), 3);
        assert_eq!(s.not_gone(5), 4);
        assert_eq!(s.departed().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(s.contributors(5).to_vec(), vec![0, 3, 4]);
    }
}
