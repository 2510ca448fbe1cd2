//! A member that breaks the protocol, for tests only (cargo feature
//! `testing`, off by default and not part of the release API).
//!
//! The bad frames are built from this crate's own wire code, so they are
//! exactly what a buggy or hostile member would put on a link: frames of
//! another job or of a reduction far ahead, a length prefix beyond the
//! limit, a body too short for its header, random bytes, a NaN, a frame
//! that stops in the middle, and floods of valid frames.

use std::time::Duration;

use dac_core::engine::{Header, Kind, Message};
use dac_core::{Result, TransportKind};

use crate::builder::CommBuilder;
use crate::comm::Comm;
use crate::wire;

pub use libp2p::multiaddr::Protocol;

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
    /// A well-formed result announcement of the next reduction, with the
    /// shape of an exact result and the value 12345: an insider's lie.
    ForgedDone,
}

impl BadFrame {
    /// Every mode.
    pub const ALL: [BadFrame; 8] = [
        BadFrame::WrongJob,
        BadFrame::FutureOp,
        BadFrame::Oversized,
        BadFrame::Truncated,
        BadFrame::Garbage,
        BadFrame::NonFinite,
        BadFrame::Stalled,
        BadFrame::ForgedDone,
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
            "forged-done" => BadFrame::ForgedDone,
            other => {
                return Err(format!(
                    "unknown bad frame {other:?}: expected wrong-job, future-op, oversized, \
                     truncated, garbage, nan, stalled or forged-done"
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
        let stamp = self.next_stamp(wire::shape_tag(&[input.len()]));
        wire::encode(job, stamp, &Message::new(header, &[], &mass))
    }

    /// The bytes of `bad`, for a member whose next input is `input`.
    fn bad_bytes(&self, bad: BadFrame, input: &[f64]) -> Vec<u8> {
        let job = self.job();
        let input = input.to_vec();
        match bad {
            BadFrame::WrongJob => self.round_zero(job ^ 0x5a5a, &input),
            BadFrame::FutureOp => {
                let header = Header::new(Kind::Events, 0);
                let mut stamp = self.next_stamp(wire::shape_tag(&[input.len()]));
                stamp.op += 1000;
                wire::encode(job, stamp, &Message::new(header, &[], &[]))
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
            BadFrame::ForgedDone => {
                // The exact plan's rounds: log2 N for a power of two,
                // ⌊log2 N⌋ + 2 otherwise.
                let n = self.members().len().max(1);
                let dims = usize::BITS - 1 - n.leading_zeros();
                let rounds = dims + if n.is_power_of_two() { 0 } else { 2 };
                let header = Header::new(Kind::Done, rounds);
                let value = vec![12345.0; input.len()];
                let stamp = self.next_stamp(wire::shape_tag(&[input.len()]));
                wire::encode(job, stamp, &Message::new(header, &[], &value))
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

/// A process that is not a member of the job: it speaks this crate's own
/// transport (TCP, noise, the access gate, yamux) with an identity and a
/// key of its own, to attack a job from outside. Test only.
pub struct Outsider {
    runtime: tokio::runtime::Runtime,
    control: libp2p_stream::Control,
    commands: tokio::sync::mpsc::UnboundedSender<crate::transport::SwarmCommand>,
    /// Streams it keeps open.
    held: Vec<libp2p::Stream>,
}

impl std::fmt::Debug for Outsider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outsider")
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl Outsider {
    /// Starts an outsider holding `key` (or none), listening on a free
    /// loopback port. Its own limits are wide, so that only the job's
    /// limits bound what it can do.
    ///
    /// # Errors
    /// [`dac_core::Error::Transport`] when it cannot start.
    pub fn new(key: Option<crate::JobKey>) -> Result<Outsider> {
        use std::sync::Arc;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| crate::failure::failure(TransportKind::Setup, e.to_string()))?;
        let bounds = crate::transport::ConnectionBounds {
            pending: 1 << 16,
            established: 1 << 16,
            per_peer: 1 << 10,
            streams: crate::transport::MAX_STREAMS_PER_CONNECTION,
        };
        let listen: libp2p::Multiaddr =
            "/ip4/127.0.0.1/tcp/0"
                .parse()
                .map_err(|e: libp2p::multiaddr::Error| {
                    crate::failure::failure(TransportKind::Setup, e.to_string())
                })?;
        let started = runtime.block_on(crate::transport::start(
            libp2p::identity::Keypair::generate_ed25519(),
            Arc::new(crate::access::Access::new(key, None)),
            listen,
            Duration::from_secs(5),
            bounds,
        ))?;
        Ok(Outsider {
            runtime,
            control: started.control,
            commands: started.commands,
            held: Vec::new(),
        })
    }

    /// Dials `addr`: the peer id at it once the connection is complete, or
    /// why it was refused or failed.
    ///
    /// # Errors
    /// The dial's failure, as text (a refusal names the key problem).
    pub fn connect(&self, addr: &libp2p::Multiaddr) -> std::result::Result<libp2p::PeerId, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let dial = crate::transport::SwarmCommand::Dial {
            addr: addr.clone(),
            reply,
        };
        self.commands
            .send(dial)
            .map_err(|_| "the outsider's network has stopped".to_string())?;
        self.runtime.block_on(async {
            match tokio::time::timeout(Duration::from_secs(10), answer).await {
                Ok(Ok(outcome)) => outcome.map_err(|e| e.to_string()),
                Ok(Err(_)) => Err("the outsider's network has stopped".to_string()),
                Err(_) => Err("no answer within 10 s".to_string()),
            }
        })
    }

    /// Opens up to `count` roster streams to `peer` (connected first), on
    /// each writes a length prefix that declares `declared` bytes followed
    /// by `body` bytes of junk, and keeps them open. Returns how many
    /// streams opened, and on how many the whole write went through.
    pub fn hold_roster_streams(
        &mut self,
        peer: libp2p::PeerId,
        count: usize,
        declared: u32,
        body: usize,
    ) -> (usize, usize) {
        use futures::AsyncWriteExt;
        let control = self.control.clone();
        let tried: Vec<(libp2p::Stream, bool)> = self.runtime.block_on(async move {
            let mut bytes = declared.to_le_bytes().to_vec();
            bytes.resize(4 + body, 0xa5);
            let attempts = (0..count).map(|_| {
                let mut control = control.clone();
                let bytes = bytes.clone();
                async move {
                    let open = control.open_stream(peer, crate::roster::ROSTER_PROTOCOL);
                    let mut stream = tokio::time::timeout(Duration::from_secs(5), open)
                        .await
                        .ok()?
                        .ok()?;
                    let write = async {
                        stream.write_all(&bytes).await?;
                        stream.flush().await
                    };
                    let written = tokio::time::timeout(Duration::from_secs(5), write).await;
                    Some((stream, matches!(written, Ok(Ok(())))))
                }
            });
            let tried = futures::future::join_all(attempts).await;
            tried.into_iter().flatten().collect()
        });
        let opened = tried.len();
        let delivered = tried.iter().filter(|(_, written)| *written).count();
        self.held
            .extend(tried.into_iter().map(|(stream, _)| stream));
        (opened, delivered)
    }
}

/// A job that a `dacrun` process runs, found the way a person joining it
/// by hand finds it: the key file dacrun names on stderr, and rank 0's
/// address published next to it. Test only.
#[derive(Debug)]
pub struct RunningJob {
    /// The dacrun process (its stdout is piped; its stderr is read).
    pub child: std::process::Child,
    /// The job's key file.
    pub key: std::path::PathBuf,
    /// Rank 0's address.
    pub addr: String,
    /// The rest of dacrun's stderr, read to its end in the background.
    pub notes: std::thread::JoinHandle<Vec<String>>,
}

impl RunningJob {
    /// Starts `dacrun` with `args` (its stdout and stderr piped) and waits
    /// (at most 30 s) until rank 0 has published its address.
    ///
    /// # Errors
    /// A message if dacrun cannot start, names no key, or rank 0 publishes
    /// no address in time.
    pub fn start(dacrun: &str, args: &[String]) -> std::result::Result<RunningJob, String> {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(dacrun)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {dacrun}: {e}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let key = loop {
            let line = lines
                .next()
                .ok_or("dacrun ended without naming its key")?
                .map_err(|e| e.to_string())?;
            if let Some(at) = line.find("job key ") {
                let rest = &line[at + "job key ".len()..];
                break std::path::PathBuf::from(rest.split(' ').next().unwrap_or_default());
            }
        };
        // The rest of the notes, so that dacrun never blocks on a full pipe.
        let notes = std::thread::spawn(move || lines.map_while(std::result::Result::ok).collect());
        let published = key.with_file_name("rank-0.addr");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let first = std::fs::read_to_string(&published)
                .ok()
                .and_then(|t| t.lines().next().map(str::to_string));
            if let Some(addr) = first {
                break addr;
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "rank 0 published no address in {}",
                    published.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(RunningJob {
            child,
            key,
            addr,
            notes,
        })
    }

    /// `dacrun OPTIONS --join ADDR --key-file KEY`: the command that starts
    /// processes joining this job, as a person would type it; the caller
    /// adds `--`, the program and its arguments.
    pub fn joiners(&self, dacrun: &str, options: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(dacrun);
        command
            .args(options)
            .args(["--join", &self.addr, "--key-file"])
            .arg(&self.key);
        command
    }
}
