//! A member that breaks the protocol, for tests only (cargo feature
//! `testing`, off by default and not part of the release API).
//!
//! The bad frames are built from this crate's own wire code, so they are
//! exactly what a buggy or hostile member would put on a link: frames of
//! another job or of a reduction far ahead, a length prefix beyond the
//! limit, a body too short for its header, random bytes, a NaN, a frame
//! that stops in the middle, and floods of valid frames.

use std::time::Duration;

use dac_core::Result;
use dac_core::engine::{Header, Kind, Message};

use crate::builder::CommBuilder;
use crate::comm::Comm;
use crate::wire;

/// What a member does right after rank 0 handed it the member list, before
/// it opens its links (see [`CommBuilder::after_join_for_tests`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterJoin {
    /// It vanishes: its sockets close and its address stops listening, as
    /// when its process is killed.
    Vanish,
    /// Its network stops for this long, as under `SIGSTOP`: connections
    /// to it are accepted by the kernel but nothing answers.
    Freeze(Duration),
}

impl CommBuilder {
    /// Makes this member fail in the middle of forming the job. Test only.
    pub fn after_join_for_tests(mut self, fault: AfterJoin) -> Self {
        self.after_join = Some(fault);
        self
    }
}

/// A way to break the protocol once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadFrame {
    /// A well-formed frame of another job.
    WrongJob,
    /// A well-formed frame of a reduction far ahead.
    FutureOp,
    /// A length prefix beyond the frame limit.
    Oversized,
    /// A body too short for the header it declares.
    Truncated,
    /// Random bytes behind a plausible length prefix.
    Garbage,
    /// A round message of the next reduction whose mass holds a NaN.
    NonFinite,
    /// A prefix that declares a frame of the largest size, then 100 bytes
    /// of it, then nothing.
    Stalled,
}

impl BadFrame {
    /// Every mode.
    pub const ALL: [BadFrame; 7] = [
        BadFrame::WrongJob,
        BadFrame::FutureOp,
        BadFrame::Oversized,
        BadFrame::Truncated,
        BadFrame::Garbage,
        BadFrame::NonFinite,
        BadFrame::Stalled,
    ];
}

impl std::str::FromStr for BadFrame {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<BadFrame, String> {
        Ok(match s {
            "wrong-job" => BadFrame::WrongJob,
            "future-op" => BadFrame::FutureOp,
            "oversized" => BadFrame::Oversized,
            "truncated" => BadFrame::Truncated,
            "garbage" => BadFrame::Garbage,
            "nan" => BadFrame::NonFinite,
            "stalled" => BadFrame::Stalled,
            other => {
                return Err(format!(
                    "unknown bad frame {other:?}: expected wrong-job, future-op, oversized, \
                     truncated, garbage, nan or stalled"
                ));
            }
        })
    }
}

impl Comm {
    /// The round-0 frame of the next reduction of a member whose input is
    /// `input` (before any departure): the frame it sends, byte for byte.
    fn round_zero(&self, job: u64, input: &[f64]) -> Vec<u8> {
        let mut mass = input.to_vec();
        mass.push(1.0);
        let header = Header {
            degree: self.neighbour_count() as u32,
            ..Header::new(Kind::Round, 0)
        };
        wire::encode(job, self.next_op(), &Message::new(header, &[], &mass))
    }

    /// The bytes of `bad`, for a member whose next input is `input`.
    fn bad_bytes(&self, bad: BadFrame, input: &[f64]) -> Vec<u8> {
        let job = self.job();
        let input = input.to_vec();
        match bad {
            BadFrame::WrongJob => self.round_zero(job ^ 0x5a5a, &input),
            BadFrame::FutureOp => {
                let header = Header::new(Kind::Events, 0);
                wire::encode(job, self.next_op() + 1000, &Message::new(header, &[], &[]))
            }
            BadFrame::Oversized => (u32::MAX - 8).to_le_bytes().to_vec(),
            BadFrame::Truncated => {
                let mut frame = self.round_zero(job, &input);
                // Keep the prefix's claim but cut the header short.
                frame.truncate(4);
                frame[..4].copy_from_slice(&6u32.to_le_bytes());
                frame.extend_from_slice(&[200, 0, 0, 0, 1, 2]);
                frame
            }
            BadFrame::Garbage => {
                let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ self.rank() as u64;
                let body: Vec<u8> = (0..200)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        (state >> 56) as u8
                    })
                    .collect();
                [(body.len() as u32).to_le_bytes().to_vec(), body].concat()
            }
            BadFrame::NonFinite => {
                let mut input = input;
                input[0] = f64::NAN;
                self.round_zero(job, &input)
            }
            BadFrame::Stalled => {
                let declared = u32::try_from(self.max_frame()).unwrap_or(u32::MAX);
                let mut frame = declared.to_le_bytes().to_vec();
                frame.extend_from_slice(&[7; 100]);
                frame
            }
        }
    }

    /// Sends `bad` to member `to`; `input` is the member's input of the
    /// next reduction (the frames that carry a mass carry it). Test only:
    /// `to` cuts this member off.
    ///
    /// # Errors
    /// As [`Comm::send_raw_for_tests`].
    pub fn send_bad_frame(&mut self, to: usize, bad: BadFrame, input: &[f64]) -> Result<()> {
        let bytes = self.bad_bytes(bad, input);
        self.send_raw_for_tests(to, bytes)
    }

    /// Sends `copies` copies of this member's own round-0 frame of the next
    /// reduction (`input` is its input there) to member `to`, as fast as
    /// the link takes them. Test only: a flood of valid, duplicate frames.
    ///
    /// # Errors
    /// As [`Comm::send_raw_for_tests`].
    pub fn flood(&mut self, to: usize, copies: usize, input: &[f64]) -> Result<()> {
        let frame: std::sync::Arc<[u8]> = self.round_zero(self.job(), input).into();
        self.send_waiting(to, frame, copies)
    }

    /// From now on every frame this member sends goes out `copies` times
    /// (1: normal). Test only: a member that floods on every send.
    pub fn duplicate_frames(&mut self, copies: usize) {
        self.set_copies(copies.max(1));
    }
}
