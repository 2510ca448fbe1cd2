//! The SPMD handle every transport implements.

use crate::error::Result;
use crate::reduction::Reduction;

/// One member's handle on a job: its rank, the job size, and collective
/// reductions. Every member calls the same collectives in the same order
/// (SPMD), each with its own local input, and every member gets the same
/// global answer.
///
/// Implemented by [`crate::threaded::ThreadComm`] (threads in one process)
/// and by the libp2p handle of `dac-net`.
///
/// # Departures
///
/// Members may crash, leave or fall silent mid-job; the others go on
/// without them, and each result names the members whose inputs it
/// contains ([`Reduction::contributors`]). A member that the others went on
/// without ([`crate::Error::Excluded`]), or that lost contact with too much
/// of the job to know whether it goes on ([`crate::Error::Partitioned`]),
/// is cut off: every later call on its handle fails at once with the same
/// error, so that it never runs on alone.
pub trait Communicator {
    /// This member's rank in `0..size()`: its identity for the whole job
    /// (never renumbered, so ranks stay comparable with every result's
    /// contributors).
    fn rank(&self) -> usize;

    /// Ranks assigned so far: the number of members the job started with.
    /// Members that departed keep their ranks (the networked `Comm` lists
    /// the current members as its view).
    fn size(&self) -> usize;

    /// The members the next collective runs over, by rank, ascending:
    /// every rank (`0..size()`) unless the transport keeps views of a job
    /// whose members come and go (the networked `Comm`: the contributors of
    /// the last reduction that completed, plus the members admitted since).
    /// An operation whose data must come from every member checks its
    /// results' contributors against these.
    fn members(&self) -> Vec<usize> {
        (0..self.size()).collect()
    }

    /// The mean of the members' `x` (all members pass vectors of the same
    /// length).
    ///
    /// # Errors
    /// Typed [`crate::Error`]s: empty or non-finite input on any member
    /// (every member gets the error naming that rank), a length mismatch
    /// between members, no convergence within `max_rounds`, a transport
    /// failure; [`crate::Error::Excluded`] or [`crate::Error::Partitioned`]
    /// for a member cut off from the job, on this and every later call.
    fn allreduce_mean(&mut self, x: &[f64]) -> Result<Reduction>;

    /// The sum of the members' `x`: the mean times the number of
    /// contributors (members that departed before their input was counted
    /// are not in it; see [`Reduction::contributors`]).
    ///
    /// # Errors
    /// As [`Communicator::allreduce_mean`].
    fn allreduce_sum(&mut self, x: &[f64]) -> Result<Reduction> {
        self.allreduce_mean(x).map(Reduction::into_sum)
    }
}
