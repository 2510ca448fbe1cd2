//! The data-plane frame format, and its checks.
//!
//! A frame on a neighbour stream is
//!
//! ```text
//! u32 LE  body length (bytes after this prefix; at most the frame limit)
//! u32 LE  header length h
//! h bytes postcard-encoded FrameHeader { job, op, view, shape, message header, events, abort, payload_len }
//! 8·payload_len bytes  the payload, f64 little-endian
//! ```
//!
//! Two kinds of body carry no engine message: an empty body (length 0) is a
//! heartbeat, sent on a link that has been quiet for a while so that the
//! failure detector can tell a quiet member from a silent one; and a body
//! whose header length is `u32::MAX` is a [`Control`] word: one byte,
//! followed for a goodbye by the last reduction the sender finished (u64
//! LE), or one byte that tells us that we were excluded.
//!
//! Everything a peer controls is checked before it is used: the length
//! prefix against the limit before any allocation, the header against the
//! body, the payload length against the header, the job id against ours.
//! The engine then checks what only it can (payload width, finiteness,
//! event ids). A frame that fails any check closes the peer's connection.

use dac_core::engine::{AbortReason, Event, Header, Message, OwnedMessage};
use futures::{AsyncRead, AsyncReadExt};
use serde::{Deserialize, Serialize};

/// Default frame limit: 65 MiB, enough for a round message of an input of
/// 8 · 2^20 f64 values (the mass, its weight and the header).
pub const DEFAULT_MAX_FRAME: usize = 65 << 20;

/// Bytes of a frame kept for its header and events: an input may fill the
/// rest of the frame limit.
pub(crate) const HEADER_ROOM: usize = 16 << 10;

/// Smallest frame limit a node accepts.
pub(crate) const MIN_MAX_FRAME: usize = 2 * HEADER_ROOM;

/// Bytes of the two length fields.
const PREFIX: usize = 4;
const HEADER_LEN: usize = 4;

/// The serde part of a frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct FrameHeader {
    /// The job the frame belongs to (agreed when the job starts).
    job: u64,
    /// The reduction (operation) of the job, counted from 1.
    op: u64,
    /// The tag of the membership view the reduction runs in.
    view: u64,
    /// The reduction's shape tag ([`shape_tag`] of the input's shape).
    shape: u64,
    /// The engine's message header (kind, round, view, …).
    header: Header,
    /// Membership events the sender attaches.
    events: Vec<Event>,
    /// Why the reduction failed (abort messages only).
    abort: Option<AbortReason>,
    /// Number of f64 values after the header.
    payload_len: u32,
}

/// Header length that marks a control body.
const CONTROL: u32 = u32::MAX;

/// A heartbeat: a frame with an empty body.
pub(crate) const HEARTBEAT: [u8; PREFIX] = [0; PREFIX];

/// A word about the link itself rather than a reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Control {
    /// The sender leaves the job (a clean shutdown): it is gone, not
    /// suspected. `finished` is the last reduction it finished with a
    /// result (0: none), so that a member still running that reduction
    /// may trust the result the sender announced in it.
    Leaving { finished: u64 },
    /// The sender holds the receiver departed: the receiver was excluded.
    Fenced,
}

impl Control {
    /// The frame that carries this word.
    pub(crate) fn encode(self) -> Vec<u8> {
        let (code, argument) = match self {
            Control::Leaving { finished } => (1, Some(finished)),
            Control::Fenced => (2, None),
        };
        let body = HEADER_LEN + 1 + if argument.is_some() { 8 } else { 0 };
        let mut out = Vec::with_capacity(PREFIX + body);
        out.extend_from_slice(&(body as u32).to_le_bytes());
        out.extend_from_slice(&CONTROL.to_le_bytes());
        out.push(code);
        if let Some(a) = argument {
            out.extend_from_slice(&a.to_le_bytes());
        }
        out
    }
}

/// What a link carries: a reduction's frame or a control word.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Body {
    /// An engine message.
    Frame(Frame),
    /// A word about the link.
    Control(Control),
}

/// Which reduction a frame belongs to, as its sender sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// The reduction (counted from 1).
    pub(crate) op: u64,
    /// The tag of the view it runs in (`View::tag`).
    pub(crate) view: u64,
    /// Its shape tag ([`shape_tag`]; 0 for an abort of unknown shape).
    pub(crate) shape: u64,
}

/// A checked frame from a peer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Frame {
    /// The reduction it belongs to.
    pub(crate) op: u64,
    /// The tag of the view the sender runs it in.
    pub(crate) view: u64,
    /// The sender's shape tag for it.
    pub(crate) shape: u64,
    /// The engine message it carries.
    pub(crate) message: OwnedMessage,
}

/// Why a peer's frame was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix exceeds the frame limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    Oversized {
        /// Declared body length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The body is too short for its own header.
    #[error("frame of {len} bytes is too short for a {header} byte header")]
    Truncated {
        /// Body length.
        len: usize,
        /// Declared header length.
        header: usize,
    },
    /// The header does not decode.
    #[error("malformed frame header: {reason}")]
    Header {
        /// The decoder's message.
        reason: String,
    },
    /// The payload does not have the length the header declares.
    #[error("frame declares {declared} values but carries {found} bytes of payload")]
    PayloadLength {
        /// Values declared by the header.
        declared: u32,
        /// Payload bytes present.
        found: usize,
    },
    /// The frame belongs to another job.
    #[error("frame for job {found:016x}, expected job {expected:016x}")]
    WrongJob {
        /// Our job id.
        expected: u64,
        /// The frame's job id.
        found: u64,
    },
    /// A control word that does not exist, or with the wrong length.
    #[error("unknown or malformed control word {code}")]
    UnknownControl {
        /// The word received.
        code: u8,
    },
    /// A frame's bytes did not all arrive within the deadline its length
    /// allows (a member that declares a large frame and then stalls);
    /// found by the failure detector.
    #[error("sent {received} of the {len} bytes of a frame in {seconds:.1} s")]
    Stalled {
        /// Declared body length.
        len: usize,
        /// Bytes that arrived.
        received: usize,
        /// How long it had.
        seconds: f64,
    },
}

/// Why reading a frame stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The stream failed or ended in the middle of a frame.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer sent something that is not a valid frame.
    #[error("{0}")]
    Frame(#[from] FrameError),
}

/// A reduction's shape tag: a hash of its input's shape (FNV-1a of the
/// number of dimensions and each extent). Inputs without a shape of their
/// own are one-dimensional: `shape_tag(&[len])`.
pub(crate) fn shape_tag(shape: &[usize]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for word in std::iter::once(shape.len()).chain(shape.iter().copied()) {
        for byte in (word as u64).to_le_bytes() {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Encodes one engine message of the reduction `stamp` names, of job
/// `job`, as a frame.
pub(crate) fn encode(job: u64, stamp: Stamp, message: &Message<'_>) -> Vec<u8> {
    let header = FrameHeader {
        job,
        op: stamp.op,
        view: stamp.view,
        shape: stamp.shape,
        header: message.header,
        events: message.events.to_vec(),
        abort: message.abort,
        payload_len: u32::try_from(message.payload.len()).unwrap_or(u32::MAX),
    };
    // Encoding a plain struct into a Vec cannot fail.
    let head = postcard::to_stdvec(&header).unwrap_or_default();
    let body = HEADER_LEN + head.len() + 8 * message.payload.len();
    let mut out = Vec::with_capacity(PREFIX + body);
    out.extend_from_slice(&u32::try_from(body).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(&head);
    let start = out.len();
    out.resize(start + 8 * message.payload.len(), 0);
    for (bytes, x) in out[start..].chunks_exact_mut(8).zip(message.payload) {
        bytes.copy_from_slice(&x.to_le_bytes());
    }
    out
}

/// Decodes and checks a non-empty body: a control word or a frame.
pub(crate) fn decode(body: &[u8], job: u64) -> Result<Body, FrameError> {
    if let [a, b, c, d, code, ref argument @ ..] = *body
        && u32::from_le_bytes([a, b, c, d]) == CONTROL
    {
        return match (code, argument) {
            (1, &[a0, a1, a2, a3, a4, a5, a6, a7]) => Ok(Body::Control(Control::Leaving {
                finished: u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            })),
            (2, []) => Ok(Body::Control(Control::Fenced)),
            (code, _) => Err(FrameError::UnknownControl { code }),
        };
    }
    decode_body(body, job).map(Body::Frame)
}

/// Decodes and checks a frame body (everything after the length prefix).
pub(crate) fn decode_body(body: &[u8], job: u64) -> Result<Frame, FrameError> {
    let (len_bytes, rest) = body
        .split_at_checked(HEADER_LEN)
        .ok_or(FrameError::Truncated {
            len: body.len(),
            header: HEADER_LEN,
        })?;
    let mut word = [0u8; 4];
    word.copy_from_slice(len_bytes);
    let header_len = u32::from_le_bytes(word) as usize;
    let (head, payload) = rest
        .split_at_checked(header_len)
        .ok_or(FrameError::Truncated {
            len: body.len(),
            header: header_len,
        })?;
    let (header, unread): (FrameHeader, _) =
        postcard::take_from_bytes(head).map_err(|e| FrameError::Header {
            reason: e.to_string(),
        })?;
    if !unread.is_empty() {
        return Err(FrameError::Header {
            reason: format!("{} trailing bytes after the header", unread.len()),
        });
    }
    if header.job != job {
        return Err(FrameError::WrongJob {
            expected: job,
            found: header.job,
        });
    }
    if payload.len() % 8 != 0 || payload.len() / 8 != header.payload_len as usize {
        return Err(FrameError::PayloadLength {
            declared: header.payload_len,
            found: payload.len(),
        });
    }
    let mut values = vec![0.0; payload.len() / 8];
    for (x, bytes) in values.iter_mut().zip(payload.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes);
        *x = f64::from_le_bytes(b);
    }
    Ok(Frame {
        op: header.op,
        view: header.view,
        shape: header.shape,
        message: OwnedMessage {
            header: header.header,
            events: header.events,
            payload: values,
            abort: header.abort,
        },
    })
}

/// Reads one frame body into `buf`; `Ok(false)` on a clean end of stream
/// between frames.
pub(crate) async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<bool, ReadError> {
    let Some(len) = read_prefix(reader, &|_| {}).await? else {
        return Ok(false);
    };
    if len > max {
        return Err(FrameError::Oversized {
            len: len as u64,
            max,
        }
        .into());
    }
    // `read_exact` overwrites every byte, so only a longer buffer's new
    // tail needs initialising.
    buf.resize(len, 0);
    reader.read_exact(buf).await?;
    Ok(true)
}

/// What the next read on a link gave.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming {
    /// An empty frame: the sender is alive.
    Heartbeat,
    /// A frame or a control word.
    Body(Body),
    /// The stream ended cleanly between frames.
    End,
}

/// What a link's reader reports while it reads: the failure detector's
/// evidence of life, and where a frame stands (so that a frame that does
/// not arrive within its deadline can be told apart from a quiet link).
pub(crate) trait LinkWatch {
    /// Bytes arrived; `mid_frame` when they leave a frame incomplete.
    fn heard(&self, mid_frame: bool);
    /// `got` bytes of a body of `len` have arrived (0 of `len`: the body
    /// begins; `len` of `len`: it is complete).
    fn body(&self, got: usize, len: usize);
}

/// Reads the next frame of a link and checks it, reporting its progress to
/// `watch`. The buffer grows as the body arrives, so a peer that declares a
/// large frame and stalls does not make us allocate all of it.
pub(crate) async fn read_incoming<R: AsyncRead + Unpin>(
    reader: &mut R,
    limits: (usize, u64),
    buf: &mut Vec<u8>,
    watch: &(dyn LinkWatch + Sync),
) -> Result<Incoming, ReadError> {
    let (max, job) = limits;
    let Some(len) = read_prefix(reader, &|mid| watch.heard(mid)).await? else {
        return Ok(Incoming::End);
    };
    if len == 0 {
        return Ok(Incoming::Heartbeat);
    }
    if len > max {
        return Err(FrameError::Oversized {
            len: len as u64,
            max,
        }
        .into());
    }
    watch.body(0, len);
    read_growing(reader, len, buf, watch).await?;
    Ok(Incoming::Body(decode(buf, job)?))
}

/// Reads a frame's length prefix; `None` on a clean end of stream before
/// it. `progress(mid_frame)` is called whenever bytes arrive.
async fn read_prefix<R: AsyncRead + Unpin>(
    reader: &mut R,
    progress: &(dyn Fn(bool) + Sync),
) -> Result<Option<usize>, ReadError> {
    let mut prefix = [0u8; PREFIX];
    let mut got = 0;
    while got < PREFIX {
        let n = reader.read(&mut prefix[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        got += n;
        progress(got < PREFIX);
    }
    Ok(Some(u32::from_le_bytes(prefix) as usize))
}

/// Reads exactly `len` bytes into `buf`, growing it as they arrive.
async fn read_growing<R: AsyncRead + Unpin>(
    reader: &mut R,
    len: usize,
    buf: &mut Vec<u8>,
    watch: &(dyn LinkWatch + Sync),
) -> Result<(), ReadError> {
    /// Growth step: a stalled peer costs at most this much beyond what it
    /// sent.
    const STEP: usize = 1 << 20;
    buf.clear();
    while buf.len() < len {
        let start = buf.len();
        let want = (len - start).min(STEP.max(start));
        buf.resize(start + want, 0);
        let mut filled = start;
        while filled < start + want {
            let n = reader.read(&mut buf[filled..start + want]).await?;
            if n == 0 {
                buf.truncate(filled);
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            filled += n;
            watch.heard(filled < len);
            watch.body(filled, len);
        }
    }
    Ok(())
}

/// Reads and checks one frame; `Ok(None)` on a clean end of stream.
#[cfg(test)]
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
    job: u64,
    buf: &mut Vec<u8>,
) -> Result<Option<Frame>, ReadError> {
    if !read_body(reader, max, buf).await? {
        return Ok(None);
    }
    Ok(Some(decode_body(buf, job)?))
}

/// Encodes a control message (roster protocol) as a length-prefixed
/// postcard body.
pub(crate) fn encode_control<T: Serialize>(value: &T) -> Vec<u8> {
    let body = postcard::to_stdvec(value).unwrap_or_default();
    let mut out = Vec::with_capacity(PREFIX + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads one control message of at most `max` bytes.
pub(crate) async fn read_control<R, T>(reader: &mut R, max: usize) -> Result<T, ReadError>
where
    R: AsyncRead + Unpin,
    T: for<'de> Deserialize<'de>,
{
    let mut buf = Vec::new();
    if !read_body(reader, max, &mut buf).await? {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    postcard::from_bytes(&buf).map_err(|e| {
        FrameError::Header {
            reason: e.to_string(),
        }
        .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dac_core::engine::{Kind, ViewId};
    use futures::executor::block_on;

    fn sample() -> OwnedMessage {
        let header = Header {
            kind: Kind::Round,
            round: 7,
            view: ViewId(5),
            degree: 3,
            counter: 1,
            flags: 0,
            proposal: 0,
            streak: 0.25,
            epoch: 0.5,
        };
        OwnedMessage {
            header,
            events: vec![Event::Departed { member: 2 }],
            payload: vec![1.5, -2.0, 1e-300, 4.0],
            abort: None,
        }
    }

    /// A goodbye carries the last finished reduction; a word of another
    /// length than its own is refused.
    #[test]
    fn control_words_round_trip_and_are_checked() {
        for word in [
            Control::Leaving { finished: 0 },
            Control::Leaving {
                finished: 0x0102_0304_0506_0708,
            },
            Control::Fenced,
        ] {
            let bytes = word.encode();
            let len = u32::from_le_bytes(bytes[..PREFIX].try_into().unwrap()) as usize;
            assert_eq!(len, bytes.len() - PREFIX);
            assert_eq!(decode(&bytes[PREFIX..], 9), Ok(Body::Control(word)));
        }
        let mut bad = Control::Leaving { finished: 5 }.encode();
        bad.pop();
        let short = decode(&bad[PREFIX..], 9);
        assert_eq!(short, Err(FrameError::UnknownControl { code: 1 }));
        let mut long = Control::Fenced.encode();
        long.push(0);
        let long = decode(&long[PREFIX..], 9);
        assert_eq!(long, Err(FrameError::UnknownControl { code: 2 }));
        let mut unknown = Control::Fenced.encode();
        unknown[PREFIX + HEADER_LEN] = 9;
        let unknown = decode(&unknown[PREFIX..], 9);
        assert_eq!(unknown, Err(FrameError::UnknownControl { code: 9 }));
    }

    fn stamp() -> Stamp {
        Stamp {
            op: 1,
            view: 3,
            shape: 7,
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let stamp = Stamp {
            op: 42,
            view: 0x5eed,
            shape: 7,
        };
        let bytes = encode(9, stamp, &m.as_message());
        let mut reader = &bytes[..];
        let mut buf = Vec::new();
        let frame = block_on(read_frame(&mut reader, DEFAULT_MAX_FRAME, 9, &mut buf))
            .unwrap()
            .unwrap();
        assert_eq!((frame.op, frame.view, frame.shape), (42, 0x5eed, 7));
        assert_eq!(frame.message, m);
        // Clean end of stream between frames.
        assert!(
            block_on(read_frame(&mut reader, DEFAULT_MAX_FRAME, 9, &mut buf))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn refuses_other_jobs_and_oversized_frames() {
        let bytes = encode(9, stamp(), &sample().as_message());
        let mut buf = Vec::new();
        let err = block_on(read_frame(&mut &bytes[..], DEFAULT_MAX_FRAME, 8, &mut buf));
        assert!(matches!(
            err,
            Err(ReadError::Frame(FrameError::WrongJob {
                expected: 8,
                found: 9
            }))
        ));
        let err = block_on(read_frame(&mut &bytes[..], 16, 9, &mut buf));
        assert!(matches!(
            err,
            Err(ReadError::Frame(FrameError::Oversized { max: 16, .. }))
        ));
        // A 4 GiB prefix is refused before anything is allocated.
        let huge = [0xff, 0xff, 0xff, 0xff, 0, 0];
        let err = block_on(read_frame(&mut &huge[..], DEFAULT_MAX_FRAME, 9, &mut buf));
        assert!(matches!(
            err,
            Err(ReadError::Frame(FrameError::Oversized { .. }))
        ));
    }

    #[test]
    fn every_corruption_is_an_error_not_a_panic() {
        let bytes = encode(9, stamp(), &sample().as_message());
        let body = &bytes[PREFIX..];
        // Every truncation of the body.
        for cut in 0..body.len() {
            assert!(decode_body(&body[..cut], 9).is_err(), "cut at {cut}");
        }
        // Every single-byte change of the header region either fails or
        // decodes to a well-formed frame; none panics.
        let header_len = u32::from_le_bytes(body[..4].try_into().unwrap()) as usize;
        for at in 0..HEADER_LEN + header_len {
            for delta in [1u8, 0x80, 0xff] {
                let mut corrupt = body.to_vec();
                corrupt[at] = corrupt[at].wrapping_add(delta);
                let _ = decode_body(&corrupt, 9);
            }
        }
        // Payload that does not match its declared length.
        let mut longer = body.to_vec();
        longer.extend_from_slice(&[0; 8]);
        assert!(matches!(
            decode_body(&longer, 9),
            Err(FrameError::PayloadLength {
                declared: 4,
                found: 40
            })
        ));
        // A stream that ends inside a frame.
        let mut buf = Vec::new();
        let cut = &bytes[..bytes.len() - 3];
        assert!(matches!(
            block_on(read_frame(&mut &cut[..], DEFAULT_MAX_FRAME, 9, &mut buf)),
            Err(ReadError::Io(_))
        ));
        // Random garbage.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let len = (state % 64) as usize;
            let garbage: Vec<u8> = (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 56) as u8
                })
                .collect();
            let _ = decode_body(&garbage, 9);
        }
    }

    #[test]
    fn control_messages_round_trip_and_are_bounded() {
        let bytes = encode_control(&(3u32, String::from("x")));
        let value: (u32, String) = block_on(read_control(&mut &bytes[..], 1024)).unwrap();
        assert_eq!(value, (3, "x".to_string()));
        let err = block_on(read_control::<_, (u32, String)>(&mut &bytes[..], 2));
        assert!(matches!(
            err,
            Err(ReadError::Frame(FrameError::Oversized { .. }))
        ));
    }
}
