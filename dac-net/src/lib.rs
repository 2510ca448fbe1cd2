//! Networked distributed average consensus for `dac`: the same reductions
//! as [`dac_core::threaded`], between processes and machines, over libp2p.
//!
//! # A tour
//!
//! - [`Comm`] is the SPMD handle (MPI's communicator): every rank calls the
//!   same reductions with its own data and gets the same answer, with the
//!   list of members whose data it contains. [`Comm::from_env`] joins a job
//!   started by the `dacrun` launcher; [`Comm::builder`] takes explicit
//!   addresses (across machines).
//! - `transport` (TCP, optional pre-shared job key, noise, yamux) and
//!   `node` (one long-lived stream per neighbour, heartbeats, bounded
//!   queues, the failure detector and its probes) carry frames whose
//!   format `wire` defines and checks; a peer that sends a bad frame is
//!   cut off and reported as a [`PeerEvent`].
//! - [`Neighbourhood`] is the topology layer: each member's neighbour set,
//!   repaired over the survivors when members depart.
//! - `roster` forms the job: rank 0 collects every member's peer id and
//!   addresses, hands out the list in rank order, and starts the job once
//!   every member has its links up (or aborts it on every member, naming
//!   the member that was lost).
//! - `join` grows a running job: a process asks any member to admit it
//!   ([`CommBuilder::join`]) and enters at the job's next admission point
//!   ([`Comm::admit`]), with the next free rank.
//!
//! ```no_run
//! use dac_net::{Comm, Communicator};
//!
//! // Under `dacrun -n 4 -- ./my_program`:
//! let mut comm = Comm::from_env()?;
//! let x = [comm.rank() as f64, 1.0];
//! let r = comm.allreduce_mean(&x)?;
//! assert_eq!(r.value, vec![1.5, 1.0]);
//! println!("rank {}: mean over {} members in {} rounds", comm.rank(), r.contributors.len(), r.rounds);
//! comm.shutdown()?;
//! # Ok::<(), dac_core::Error>(())
//! ```
//!
//! # Faults
//!
//! A member whose process dies is found at once (its connections reset and
//! its address refuses a probe); a member that falls silent — frozen, or
//! cut off by the network — is suspected after `peer_timeout`. Its
//! neighbours drop its flows, the topology is repaired, and the reduction
//! in progress completes with the exact mean of the survivors' inputs.
//! Later reductions run in a new view of the survivors (the contributors
//! of the reduction that completed, the same on every member), with the
//! exact schedule over exactly them: [`Comm::members`] lists the view, and
//! ranks are never renumbered. A member goes on only while
//! the members it holds live are a strict majority of those not proven
//! gone ([`Error::Partitioned`] otherwise), and a member the others went on
//! without is told so ([`Error::Excluded`]); either way every later call on
//! its `Comm` fails too. The repository's `docs/architecture.md` gives the
//! rules in full.
//!
//! # Features
//!
//! - `cli` (default): the `dacrun` and `dac-allreduce` programs. A crate
//!   that uses only the library depends with `default-features = false`.
//! - `fault-injection` (on with `cli`): `SelfKill`, the demonstration
//!   programs' `--kill-rank`/`--kill-after-ms`.
//! - `testing`: members that break the protocol, for the test suites.
#![deny(missing_docs)]

mod access;
mod builder;
mod comm;
mod failure;
mod join;
mod membership;
mod node;
mod repeats;
mod roster;
#[cfg(feature = "fault-injection")]
mod self_kill;
mod session;
#[cfg(feature = "testing")]
pub mod testing;
mod topology;
mod transport;
mod wire;

pub use access::{JobKey, identity};
pub use builder::{CommBuilder, parse_key};
pub use comm::Comm;
pub use dac_core::{
    ArgumentKind, Communicator, Config, Error, Reduction, Result, Schedule, Topology, TransportKind,
};
pub use libp2p::{Multiaddr, PeerId};
pub use node::PeerEvent;
#[cfg(feature = "fault-injection")]
pub use self_kill::SelfKill;
pub use topology::Neighbourhood;
pub use wire::{DEFAULT_MAX_FRAME, FrameError};
