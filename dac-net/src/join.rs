//! Joining a running job: a new process asks any member to admit it, and
//! enters at the next reduction boundary.
//!
//! 1. **Ask.** The joiner dials one of the addresses it was given, opens a
//!    join stream and sends `Request { version, settings, addrs }`. The
//!    member (the *admitter*) refuses at once another protocol version or
//!    other settings (topology, schedule, tolerance, round limit, seed,
//!    frame limit), saying which; a process without the job key never gets
//!    this far (the access gate refuses its connection, naming the key).
//! 2. **Agree.** The admitter keeps the request in its lobby until the
//!    job's next admission point (`Comm::admit`, a collective every member
//!    calls at the same point of its loop). There every member first
//!    reduces one value: 1 from a member with joiners waiting, 0
//!    otherwise. If anyone has joiners, every member runs one more
//!    reduction, of a fixed layout, in which each admitter publishes its
//!    joiners' identities (peer id and addresses, as 16-bit chunks that a
//!    sum with zeros carries exactly). Every member reads the same
//!    identities from the same sum, gives them the next ranks in the order
//!    of their admitters' ranks, and moves to the view of that reduction's
//!    contributors plus the joiners.
//! 3. **Enter.** The admitter answers its joiner with its rank, the job
//!    id, the new view, the last reduction before its first, and every
//!    member's identity. The joiner's first collective pairs with every
//!    member's first one after the admission point, and its result
//!    includes the joiner. The older members dial it (the lower rank of a
//!    pair opens the link), so nobody opens a link to a member it has not
//!    admitted.
//!
//! Admission waits for an admission point, not merely for a reduction, so
//! that a joiner never enters in the middle of an operation of several
//! reductions (a least-squares fit) with its program at the top of its
//! loop.
//!
//! No member coordinates: any member admits, and the member that formed
//! the job may be gone.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dac_core::{Result, TransportKind};
use futures::{AsyncWriteExt, StreamExt};
use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use crate::failure::{failure, failure_with, network_stopped, refused};
use crate::transport::{Dialed, SwarmCommand, dial};
use crate::wire::{encode_control, read_control};

/// The join protocol.
pub(crate) const JOIN_PROTOCOL: StreamProtocol = StreamProtocol::new("/dac/join/1");

/// Version of the join and data protocols a joiner must speak.
const VERSION: u32 = 1;

/// Largest request (settings and a few addresses).
const MAX_REQUEST: usize = 16 << 10;

/// Largest admission (every member's identity).
const MAX_ADMISSION: usize = 16 << 20;

/// How long a request may take to arrive.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Join streams read at once; more wait for a turn.
const MAX_JOIN_STREAMS: usize = 8;

/// Joiners an admitter keeps waiting; more are refused.
const MAX_WAITING: usize = 16;

/// Joiners one admitter offers in one admission.
pub(crate) const PER_ADMISSION: usize = 4;

/// Bytes of one identity in an admission (a peer id and a few addresses,
/// encoded); addresses that do not fit are left out.
const IDENTITY_BYTES: usize = 256;

/// Values of one identity slot in an admission: its length plus one (0:
/// empty), then its bytes as 16-bit chunks.
pub(crate) const SLOT: usize = 1 + IDENTITY_BYTES / 2;

#[derive(Debug, Serialize, Deserialize)]
enum JoinMessage {
    Request {
        version: u32,
        settings: String,
        addrs: Vec<Vec<u8>>,
    },
    Refused {
        reason: String,
    },
    Admitted(Admission),
}

/// What a joiner needs to enter the job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Admission {
    /// The job id every frame carries.
    pub(crate) job: u64,
    /// The joiner's rank.
    pub(crate) rank: usize,
    /// The last reduction before the joiner's first.
    pub(crate) op: u64,
    /// The view of the joiner's first reduction: its id and ranks.
    pub(crate) view_id: u64,
    pub(crate) view: Vec<usize>,
    /// Every rank's peer id and addresses (encoded), by rank.
    members: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
}

impl Admission {
    pub(crate) fn new(
        job: u64,
        rank: usize,
        op: u64,
        (view_id, view): (u64, Vec<usize>),
        members: &[(PeerId, Vec<Multiaddr>)],
    ) -> Admission {
        Admission {
            job,
            rank,
            op,
            view_id,
            view,
            members: members
                .iter()
                .map(|(p, a)| (p.to_bytes(), a.iter().map(|a| a.to_vec()).collect()))
                .collect(),
        }
    }

    /// Every rank's identity, checked.
    pub(crate) fn members(&self) -> Result<Vec<(PeerId, Vec<Multiaddr>)>> {
        self.members
            .iter()
            .map(|(peer, addrs)| {
                let peer = PeerId::from_bytes(peer).map_err(|e| {
                    failure(
                        TransportKind::ProtocolViolation,
                        format!("the admission has a bad peer id: {e}"),
                    )
                })?;
                let addrs = addrs
                    .iter()
                    .filter_map(|a| Multiaddr::try_from(a.clone()).ok());
                Ok((peer, addrs.collect()))
            })
            .collect()
    }

    /// Whether it is consistent: the rank is the joiner's, in the view and
    /// the member list.
    fn sound(&self, size: usize) -> bool {
        self.rank < size
            && self.view.binary_search(&self.rank).is_ok()
            && self.view.windows(2).all(|w| w[0] < w[1])
            && self.view.last().is_some_and(|&r| r < size)
    }
}

/// A joiner waiting in an admitter's lobby.
#[derive(Debug)]
pub(crate) struct Candidate {
    pub(crate) peer: PeerId,
    pub(crate) addrs: Vec<Multiaddr>,
    /// Where the answer goes (`Ok`: admitted; `Err`: refused, why).
    pub(crate) answer: oneshot::Sender<std::result::Result<Admission, String>>,
}

/// The joiners a member has accepted and not yet offered.
pub(crate) type Lobby = Arc<Mutex<VecDeque<Candidate>>>;

/// Takes up to [`PER_ADMISSION`] joiners from the lobby (those whose
/// joiner gave up are dropped).
pub(crate) fn take_offers(lobby: &Lobby) -> Vec<Candidate> {
    let mut lobby = lobby.lock().unwrap_or_else(|e| e.into_inner());
    lobby.retain(|c| !c.answer.is_closed());
    let n = lobby.len().min(PER_ADMISSION);
    lobby.drain(..n).collect()
}

/// Puts offers back at the front of the lobby (their admission failed).
pub(crate) fn put_back(lobby: &Lobby, offers: Vec<Candidate>) {
    let mut lobby = lobby.lock().unwrap_or_else(|e| e.into_inner());
    for c in offers.into_iter().rev() {
        lobby.push_front(c);
    }
}

/// An identity as admission bytes: postcard of (peer id, addresses), with
/// as many addresses as fit in [`IDENTITY_BYTES`].
pub(crate) fn identity_bytes(peer: &PeerId, addrs: &[Multiaddr]) -> Vec<u8> {
    let mut kept: Vec<Vec<u8>> = addrs.iter().map(|a| a.to_vec()).collect();
    loop {
        let bytes = postcard::to_stdvec(&(peer.to_bytes(), &kept)).unwrap_or_default();
        if bytes.len() <= IDENTITY_BYTES || kept.is_empty() {
            return bytes;
        }
        kept.pop();
    }
}

/// Writes an identity into an admission slot.
pub(crate) fn write_slot(slot: &mut [f64], bytes: &[u8]) {
    if bytes.len() > IDENTITY_BYTES || slot.len() != SLOT {
        return; // a peer id alone always fits
    }
    slot[0] = bytes.len() as f64 + 1.0;
    for (k, pair) in bytes.chunks(2).enumerate() {
        let lo = u16::from(pair[0]);
        let hi = pair.get(1).map_or(0, |&b| u16::from(b));
        slot[1 + k] = f64::from(lo | (hi << 8));
    }
}

/// Reads an identity from a summed admission slot: `None` for an empty
/// slot or one that is not an identity.
pub(crate) fn read_slot(slot: &[f64]) -> Option<(PeerId, Vec<Multiaddr>)> {
    let whole = |x: f64, max: f64| {
        let r = x.round();
        ((x - r).abs() < 0.25 && (0.0..=max).contains(&r)).then_some(r as usize)
    };
    let len = whole(*slot.first()?, (IDENTITY_BYTES + 1) as f64)?.checked_sub(1)?;
    let mut bytes = Vec::with_capacity(len + 1);
    for &x in slot.get(1..1 + len.div_ceil(2))? {
        let chunk = whole(x, 65535.0)? as u16;
        bytes.extend(chunk.to_le_bytes());
    }
    bytes.truncate(len);
    let (peer, addrs): (Vec<u8>, Vec<Vec<u8>>) = postcard::from_bytes(&bytes).ok()?;
    let peer = PeerId::from_bytes(&peer).ok()?;
    let addrs = addrs
        .into_iter()
        .filter_map(|a| Multiaddr::try_from(a).ok());
    Some((peer, addrs.collect()))
}

/// Answers join streams: refuses another version or other settings at
/// once, and puts the others in `lobby`, answering each when the session
/// admits or refuses it (or after `wait`, if no admission point came).
pub(crate) fn accept_joins(
    mut incoming: libp2p_stream::IncomingStreams,
    settings: String,
    lobby: Lobby,
    wait: Duration,
) -> tokio::task::JoinHandle<()> {
    let turns = Arc::new(Semaphore::new(MAX_JOIN_STREAMS));
    tokio::spawn(async move {
        while let Some((peer, stream)) = incoming.next().await {
            let Ok(turn) = Arc::clone(&turns).try_acquire_owned() else {
                continue; // a flood of join streams; an honest joiner retries
            };
            let (settings, lobby) = (settings.clone(), Arc::clone(&lobby));
            tokio::spawn(async move {
                serve(peer, stream, &settings, &lobby, wait).await;
                drop(turn);
            });
        }
    })
}

async fn serve(peer: PeerId, mut stream: Stream, settings: &str, lobby: &Lobby, wait: Duration) {
    let request = tokio::time::timeout(REQUEST_TIMEOUT, read_control(&mut stream, MAX_REQUEST));
    let Ok(Ok(JoinMessage::Request {
        version,
        settings: theirs,
        addrs,
    })) = request.await
    else {
        return;
    };
    let refusal = if version != VERSION {
        Some(format!(
            "join protocol version {version}, this member speaks {VERSION}"
        ))
    } else if theirs != settings {
        Some(format!(
            "settings {theirs:?} differ from the job's {settings:?}"
        ))
    } else {
        None
    };
    let answer = match refusal {
        Some(reason) => JoinMessage::Refused { reason },
        None => {
            let (tx, rx) = oneshot::channel();
            let candidate = Candidate {
                peer,
                addrs: addrs
                    .into_iter()
                    .filter_map(|a| Multiaddr::try_from(a).ok())
                    .collect(),
                answer: tx,
            };
            let full = {
                let mut lobby = lobby.lock().unwrap_or_else(|e| e.into_inner());
                let full = lobby.len() >= MAX_WAITING;
                if !full {
                    lobby.push_back(candidate);
                }
                full
            };
            if full {
                JoinMessage::Refused {
                    reason: format!("{MAX_WAITING} joiners are waiting already; try again"),
                }
            } else {
                match tokio::time::timeout(wait, rx).await {
                    Ok(Ok(Ok(admission))) => JoinMessage::Admitted(admission),
                    Ok(Ok(Err(reason))) => JoinMessage::Refused { reason },
                    Ok(Err(_)) => JoinMessage::Refused {
                        reason: "the member closed before admitting it".into(),
                    },
                    Err(_) => JoinMessage::Refused {
                        reason: format!(
                            "the job reached no admission point (Comm::admit) within {:.0} s, \
                             so it could not be admitted",
                            wait.as_secs_f64()
                        ),
                    },
                }
            }
        }
    };
    let _ = stream.write_all(&encode_control(&answer)).await;
    let _ = stream.flush().await;
    let _ = stream.close().await;
}

/// The joiner's side: asks the members at `addrs` in turn (retrying until
/// `timeout`) to admit it.
///
/// # Errors
/// A refusal (its reason, and who refused), a connection refused by the
/// access gate (a missing or wrong key), or no answer within `timeout`.
pub(crate) async fn request(
    commands: &mpsc::UnboundedSender<SwarmCommand>,
    control: &mut libp2p_stream::Control,
    addrs: &[Multiaddr],
    settings: String,
    my_addrs: &[Multiaddr],
    timeout: Duration,
) -> Result<Admission> {
    if addrs.is_empty() {
        return Err(failure(
            TransportKind::Setup,
            "no address of a member to join was given",
        ));
    }
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no attempt");
    loop {
        for addr in addrs {
            let peer = match dial(commands, addr, deadline).await {
                Dialed::Peer(peer) => peer,
                Dialed::Refused { peer, why } => {
                    return Err(refused(
                        peer,
                        &why,
                        format!("cannot join the job at {addr} (peer {peer}): {why}"),
                    ));
                }
                Dialed::Failed(e) => {
                    last = e;
                    continue;
                }
                Dialed::Stopped => return Err(network_stopped()),
                Dialed::TimedOut => break,
            };
            let attempt = async {
                let mut stream = control
                    .open_stream(peer, JOIN_PROTOCOL)
                    .await
                    .map_err(|e| format!("{addr} is not a member of a dac job: {e}"))?;
                let message = JoinMessage::Request {
                    version: VERSION,
                    settings: settings.clone(),
                    addrs: my_addrs.iter().map(|a| a.to_vec()).collect(),
                };
                stream
                    .write_all(&encode_control(&message))
                    .await
                    .map_err(|e| format!("sending the request to {addr}: {e}"))?;
                stream
                    .flush()
                    .await
                    .map_err(|e| format!("sending the request to {addr}: {e}"))?;
                read_control::<_, JoinMessage>(&mut stream, MAX_ADMISSION)
                    .await
                    .map_err(|e| format!("waiting for the answer of {addr}: {e}"))
            };
            match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(JoinMessage::Admitted(admission))) => {
                    if !admission.sound(admission.members.len()) {
                        return Err(failure_with(
                            TransportKind::ProtocolViolation,
                            peer,
                            format!("{addr} sent an inconsistent admission"),
                        ));
                    }
                    return Ok(admission);
                }
                Ok(Ok(JoinMessage::Refused { reason })) => {
                    return Err(failure_with(
                        TransportKind::Refused,
                        peer,
                        format!("the member at {addr} refused to admit this process: {reason}"),
                    ));
                }
                Ok(Ok(JoinMessage::Request { .. })) => {
                    last = format!("{addr} sent a request instead of an answer");
                }
                Ok(Err(e)) => last = e,
                Err(_) => break,
            }
        }
        if Instant::now() >= deadline {
            return Err(failure(
                TransportKind::Timeout,
                format!(
                    "could not join the job within {:.0} s (last error: {last})",
                    timeout.as_secs_f64()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_travel_through_a_slot_and_garbage_does_not_read() {
        let peer = PeerId::random();
        let addrs: Vec<Multiaddr> = vec![
            "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
            "/ip6/::1/tcp/4002".parse().unwrap(),
        ];
        let bytes = identity_bytes(&peer, &addrs);
        let mut slot = vec![0.0; SLOT];
        write_slot(&mut slot, &bytes);
        // A sum with zeros, through a consensus that rounds.
        let summed: Vec<f64> = slot.iter().map(|x| x * (1.0 + 1e-13)).collect();
        assert_eq!(read_slot(&summed), Some((peer, addrs.clone())));
        assert_eq!(read_slot(&vec![0.0; SLOT]), None, "an empty slot");
        let mut bad = slot.clone();
        bad[3] += 0.5;
        assert_eq!(read_slot(&bad), None, "not whole numbers");
        bad = slot.clone();
        bad[0] = 1e9;
        assert_eq!(read_slot(&bad), None, "a length beyond the slot");
        // Too many addresses: the ones that do not fit are left out.
        let many: Vec<Multiaddr> = (0..100)
            .map(|i| {
                format!("/ip4/10.0.0.{}/tcp/{}", i % 250, 4000 + i)
                    .parse()
                    .unwrap()
            })
            .collect();
        let bytes = identity_bytes(&peer, &many);
        assert!(bytes.len() <= IDENTITY_BYTES);
        write_slot(&mut slot, &bytes);
        let (p, kept) = read_slot(&slot).unwrap();
        assert_eq!(p, peer);
        assert!(!kept.is_empty() && kept.len() < many.len() && many.starts_with(&kept));
    }
}
