//! Forming a job: every member learns every member's peer id and
//! addresses, in rank order, and the job starts only once every member has
//! its links up.
//!
//! Rank 0 is the coordinator (its address is the bootstrap address). Every
//! other rank dials it, opens a roster stream and sends `Join { rank, size,
//! settings, addrs }`; when all `size − 1` have joined, rank 0 draws a job
//! id and answers each with the member list. A join for a taken rank, for
//! another size or with other settings (topology, schedule, tolerance) is
//! refused with a reason, and the joiner fails with it.
//!
//! The roster streams stay open while the members open their links. Each
//! member then reports `Ready` or `Failed { reason }`; rank 0 answers
//! everyone with `Start` once all are ready, and with `Abort { reason }`
//! as soon as one fails, its roster stream ends (its process died), or it
//! has not reported within the link deadline. So a member lost while the
//! job forms makes formation fail on every member, naming it, within that
//! deadline, and no member starts a job that lacks one.

use std::time::Duration;

use dac_core::{Result, TransportKind};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::access::Access;
use crate::failure::{failure, failure_with, network_stopped, refused};
use crate::transport::{Dialed, SwarmCommand, dial};
use crate::wire::{encode_control, read_control};

pub(crate) const ROSTER_PROTOCOL: StreamProtocol = StreamProtocol::new("/dac/roster/1");

/// Version of the roster and data protocols.
const VERSION: u32 = 2;

/// Largest member list (thousands of members), read only by a joiner
/// from the rank 0 it dialed.
const MAX_MEMBER_LIST: usize = 16 << 20;

/// Largest message a member sends to rank 0 (a join or a report: a few
/// hundred bytes of settings, addresses and reasons).
const MAX_REPORT: usize = 16 << 10;

/// Inbound roster streams rank 0 reads at once, in all and from one peer;
/// more are closed unread. Each costs at most [`MAX_REPORT`] bytes.
const MAX_ROSTER_STREAMS: usize = 32;
const MAX_ROSTER_STREAMS_PER_PEER: usize = 2;

/// How long an inbound roster stream may take to deliver its join.
const JOIN_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The members of a job, in rank order.
#[derive(Clone, Debug)]
pub(crate) struct Roster {
    pub(crate) job: u64,
    pub(crate) members: Vec<(PeerId, Vec<Multiaddr>)>,
}

#[derive(Debug, Serialize, Deserialize)]
enum RosterMessage {
    Join {
        version: u32,
        size: u64,
        rank: u64,
        settings: String,
        addrs: Vec<Vec<u8>>,
    },
    Accepted {
        job: u64,
        members: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
    },
    Refused {
        reason: String,
    },
    /// A member's links are up.
    Ready,
    /// A member could not open its links.
    Failed {
        reason: String,
    },
    /// Every member is ready: the job runs.
    Start,
    /// The job cannot form.
    Abort {
        reason: String,
    },
}

fn addrs_to_bytes(addrs: &[Multiaddr]) -> Vec<Vec<u8>> {
    addrs.iter().map(|a| a.to_vec()).collect()
}

fn addrs_from_bytes(addrs: Vec<Vec<u8>>) -> Vec<Multiaddr> {
    addrs
        .into_iter()
        .filter_map(|a| Multiaddr::try_from(a).ok())
        .collect()
}

async fn send<W: AsyncWrite + Unpin>(
    stream: &mut W,
    message: &RosterMessage,
) -> std::io::Result<()> {
    stream.write_all(&encode_control(message)).await?;
    stream.flush().await
}

/// Reads one roster message of at most `limit` bytes.
async fn receive<R: AsyncRead + Unpin>(
    stream: &mut R,
    limit: usize,
) -> Result<RosterMessage, String> {
    read_control::<_, RosterMessage>(stream, limit)
        .await
        .map_err(|e| e.to_string())
}

/// Rank 0's side of the start: the roster streams of ranks `1..size`,
/// kept open until every member has reported its links.
#[derive(Debug)]
pub(crate) struct Formation {
    streams: Vec<(usize, Stream)>,
}

impl Formation {
    /// Collects every member's report (for at most `timeout`), then starts
    /// the job or aborts it on every member; `mine` is rank 0's own link
    /// result.
    ///
    /// # Errors
    /// [`Error::Transport`] naming the member that was lost or could not
    /// link, when the job cannot form.
    pub(crate) async fn conclude(self, mine: Result<(), String>, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let (tx, mut rx) = mpsc::channel(self.streams.len().max(1));
        let (ended_tx, mut ended) = mpsc::channel::<()>(self.streams.len().max(1));
        let mut writers = Vec::with_capacity(self.streams.len());
        for (rank, stream) in self.streams {
            let (mut read, write) = stream.split();
            writers.push(write);
            let tx = tx.clone();
            let ended_tx = ended_tx.clone();
            tokio::spawn(async move {
                let report = match tokio::time::timeout_at(deadline, receive(&mut read, MAX_REPORT))
                    .await
                {
                    Ok(Ok(RosterMessage::Ready)) => Ok(()),
                    Ok(Ok(RosterMessage::Failed { reason })) => Err(reason),
                    Ok(Ok(_)) => Err(format!("rank {rank} sent an unexpected roster message")),
                    Ok(Err(e)) => Err(format!(
                        "rank {rank} was lost while the job formed (its roster stream ended: {e})"
                    )),
                    Err(_) => Err(format!(
                        "rank {rank} did not report its links within {:.1} s",
                        timeout.as_secs_f64()
                    )),
                };
                let _ = tx.send(report).await;
                // Then wait for the member to close its side: it has read
                // our answer.
                let mut rest = [0u8; 64];
                while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, read.read(&mut rest)).await
                {
                    if n == 0 {
                        break;
                    }
                }
                let _ = ended_tx.send(()).await;
            });
        }
        drop(tx);
        drop(ended_tx);
        let mut failure = mine.err();
        let mut waiting = writers.len();
        while failure.is_none() && waiting > 0 {
            match rx.recv().await {
                Some(Ok(())) => waiting -= 1,
                Some(Err(reason)) => failure = Some(reason),
                None => break,
            }
        }
        let word = match &failure {
            None => RosterMessage::Start,
            Some(reason) => RosterMessage::Abort {
                reason: reason.clone(),
            },
        };
        let tell = writers.iter_mut().map(|w| send(w, &word));
        let _ = tokio::time::timeout(Duration::from_secs(2), futures::future::join_all(tell)).await;
        match failure {
            None => Ok(()),
            Some(reason) => {
                // Our network goes when this returns: first let every
                // member read the abort (it closes its side), for at most
                // two seconds.
                let gone = async { while ended.recv().await.is_some() {} };
                let _ = tokio::time::timeout(Duration::from_secs(2), gone).await;
                Err(crate::failure::failure(
                    TransportKind::PeerLost,
                    format!("rank 0: the job could not form: {reason}"),
                ))
            }
        }
    }
}

/// A member's side of the start: opens its links (`linking`) while it
/// listens to rank 0, reports the outcome on the roster stream, and waits
/// (at most `timeout`) for rank 0 to start the job. An abort from rank 0
/// ends the wait at once, with its reason (the member that was lost).
///
/// # Errors
/// [`Error::Transport`] naming what went wrong: our own links, another
/// member's (from rank 0's abort), or rank 0 lost.
pub(crate) async fn confirm(
    stream: Stream,
    rank: usize,
    linking: impl std::future::Future<Output = Result<(), String>>,
    timeout: Duration,
) -> Result<()> {
    let (mut read, mut write) = stream.split();
    let fail = |reason: String| {
        failure(
            TransportKind::PeerLost,
            format!("rank {rank}: the job could not form: {reason}"),
        )
    };
    let lost = |e: String| {
        failure(
            TransportKind::PeerLost,
            format!(
                "rank {rank}: rank 0 was lost while the job formed (its roster stream ended: {e})"
            ),
        )
    };
    let unexpected = || {
        failure(
            TransportKind::ProtocolViolation,
            format!("rank {rank}: rank 0 sent an unexpected roster message"),
        )
    };
    // The answer is read from the start, so that an abort is seen while the
    // links are still opening; the read is kept, not restarted, after that.
    let mut answer = Box::pin(receive(&mut read, MAX_REPORT));
    let mine = tokio::select! {
        mine = linking => mine,
        early = &mut answer => return match early {
            Ok(RosterMessage::Abort { reason }) => Err(fail(reason)),
            Ok(_) => Err(unexpected()),
            Err(e) => Err(lost(e)),
        },
    };
    let report = match &mine {
        Ok(()) => RosterMessage::Ready,
        Err(reason) => RosterMessage::Failed {
            reason: reason.clone(),
        },
    };
    let sent = tokio::time::timeout(timeout, send(&mut write, &report)).await;
    if let Err(reason) = mine {
        // Rank 0 may already have aborted for the failure behind ours
        // (a member lost): its reason names the cause.
        let cause = match tokio::time::timeout(Duration::from_secs(2), &mut answer).await {
            Ok(Ok(RosterMessage::Abort { reason })) => reason,
            _ => reason,
        };
        return Err(fail(cause));
    }
    if !matches!(sent, Ok(Ok(()))) {
        return Err(lost("cannot report to it".into()));
    }
    match tokio::time::timeout(timeout, &mut answer).await {
        Ok(Ok(RosterMessage::Start)) => Ok(()),
        Ok(Ok(RosterMessage::Abort { reason })) => Err(fail(reason)),
        Ok(Ok(_)) => Err(unexpected()),
        Ok(Err(e)) => Err(lost(e)),
        Err(_) => Err(failure(
            TransportKind::Timeout,
            format!(
                "rank {rank}: rank 0 did not start the job within {:.1} s",
                timeout.as_secs_f64()
            ),
        )),
    }
}

/// Reads the inbound roster streams, each in its own task so that a silent
/// dialer cannot stall the others, and at most [`MAX_ROSTER_STREAMS`] at
/// once ([`MAX_ROSTER_STREAMS_PER_PEER`] from one peer): a stream beyond
/// that is closed unread, so a flood of streams costs a bounded amount of
/// memory. Each message read goes to `tx`.
fn read_joins(
    mut incoming: libp2p_stream::IncomingStreams,
    tx: mpsc::Sender<(PeerId, RosterMessage, Stream)>,
) -> tokio::task::JoinHandle<()> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let open: Arc<Mutex<HashMap<PeerId, usize>>> = Arc::default();
    tokio::spawn(async move {
        while let Some((peer, mut stream)) = incoming.next().await {
            {
                let Ok(mut open) = open.lock() else { return };
                let total: usize = open.values().sum();
                let mine = open.get(&peer).copied().unwrap_or(0);
                if total >= MAX_ROSTER_STREAMS || mine >= MAX_ROSTER_STREAMS_PER_PEER {
                    continue; // dropping the stream resets it
                }
                open.insert(peer, mine + 1);
            }
            let (tx, open) = (tx.clone(), Arc::clone(&open));
            tokio::spawn(async move {
                let read = receive(&mut stream, MAX_REPORT);
                if let Ok(Ok(message)) = tokio::time::timeout(JOIN_READ_TIMEOUT, read).await {
                    let _ = tx.send((peer, message, stream)).await;
                }
                // The slot is free once the message is handed over.
                if let Ok(mut open) = open.lock()
                    && let Some(count) = open.get_mut(&peer)
                {
                    *count -= 1;
                    if *count == 0 {
                        open.remove(&peer);
                    }
                }
            });
        }
    })
}

/// Rank 0: waits for the other `size − 1` members, then answers them all.
/// Keeps refusing late joiners until `late` is dropped.
pub(crate) async fn coordinate(
    incoming: libp2p_stream::IncomingStreams,
    me: (PeerId, Vec<Multiaddr>),
    size: usize,
    settings: String,
    timeout: Duration,
    access: &Access,
) -> Result<(Roster, Formation, tokio::task::JoinHandle<()>)> {
    let deadline = Instant::now() + timeout;
    let mut joined: Vec<Option<(PeerId, Vec<Multiaddr>, Stream)>> =
        (0..size).map(|_| None).collect();
    let mut missing = size - 1;
    let (tx, mut rx) = mpsc::channel(MAX_ROSTER_STREAMS);
    let reader = read_joins(incoming, tx);
    while missing > 0 {
        let Ok(Some((peer, message, mut stream))) =
            tokio::time::timeout_at(deadline, rx.recv()).await
        else {
            reader.abort();
            let absent: Vec<usize> = (1..size).filter(|&r| joined[r].is_none()).collect();
            let refused = match access.last_refusal() {
                Some((peer, why)) => format!("; the last connection refused: peer {peer}: {why}"),
                None => String::new(),
            };
            return Err(failure(
                TransportKind::Timeout,
                format!(
                    "rank 0: rank(s) {absent:?} did not join within {:.0} s{refused}",
                    timeout.as_secs_f64()
                ),
            ));
        };
        let refusal = match message {
            RosterMessage::Join {
                version,
                size: their_size,
                rank,
                settings: theirs,
                addrs,
            } => {
                let rank = rank as usize;
                if version != VERSION {
                    Some(format!("protocol version {version}, expected {VERSION}"))
                } else if their_size != size as u64 {
                    Some(format!("size {their_size}, but the job has {size} members"))
                } else if rank == 0 || rank >= size {
                    Some(format!("rank {rank} is outside 1..{size}"))
                } else if theirs != settings {
                    Some(format!(
                        "settings {theirs:?} differ from rank 0's {settings:?}"
                    ))
                } else if joined[rank].as_ref().is_some_and(|j| j.0 != peer) {
                    Some(format!("rank {rank} has already joined"))
                } else {
                    if joined[rank].is_none() {
                        missing -= 1;
                    }
                    joined[rank] = Some((peer, addrs_from_bytes(addrs), stream));
                    continue;
                }
            }
            _ => Some("expected a join".to_string()),
        };
        if let Some(reason) = refusal {
            let _ = send(&mut stream, &RosterMessage::Refused { reason }).await;
        }
    }
    let job = loop {
        let job: u64 = rand::random();
        if job != 0 {
            break job;
        }
    };
    let mut members = vec![me];
    let mut streams = Vec::new();
    for (rank, joined) in joined.into_iter().enumerate().skip(1) {
        if let Some((peer, addrs, stream)) = joined {
            members.push((peer, addrs));
            streams.push((rank, stream));
        }
    }
    let accepted = RosterMessage::Accepted {
        job,
        members: members
            .iter()
            .map(|(p, a)| (p.to_bytes(), addrs_to_bytes(a)))
            .collect(),
    };
    for (_, stream) in &mut streams {
        // A member that vanished now is caught when it does not report.
        let _ = send(stream, &accepted).await;
    }
    // Refuse anyone who comes later.
    let late = tokio::spawn(async move {
        while let Some((_, message, mut stream)) = rx.recv().await {
            if matches!(message, RosterMessage::Join { .. }) {
                let reason = "the job has already started".to_string();
                let _ = send(&mut stream, &RosterMessage::Refused { reason }).await;
            }
        }
    });
    Ok((Roster { job, members }, Formation { streams }, late))
}

/// Who asks to join, and with what.
#[derive(Debug)]
pub(crate) struct Applicant {
    pub(crate) rank: usize,
    pub(crate) size: usize,
    /// The settings every member must share.
    pub(crate) settings: String,
    pub(crate) addrs: Vec<Multiaddr>,
}

/// Any other rank: joins through the bootstrap addresses (retrying until
/// `timeout`, so rank 0 may start later). Returns the member list and the
/// roster stream, on which the member then [`confirm`]s its links.
pub(crate) async fn join(
    commands: &mpsc::UnboundedSender<SwarmCommand>,
    control: &mut libp2p_stream::Control,
    bootstrap: &[Multiaddr],
    me: Applicant,
    timeout: Duration,
) -> Result<(Roster, Stream)> {
    let Applicant {
        rank,
        size,
        settings,
        addrs: my_addrs,
    } = me;
    if bootstrap.is_empty() {
        return Err(failure(
            TransportKind::Setup,
            format!("rank {rank}: no bootstrap address (the address of rank 0) was given"),
        ));
    }
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no attempt");
    // Rank 0 took a join of ours and the stream ended before the member
    // list came: if it then refuses connections too, it is gone, and
    // waiting for it until the timeout cannot help.
    let mut dropped = false;
    loop {
        for addr in bootstrap {
            let peer = match dial(commands, addr, deadline).await {
                Dialed::Peer(peer) => {
                    dropped = false;
                    peer
                }
                Dialed::Refused { peer, why } => {
                    return Err(refused(
                        peer,
                        &why,
                        format!("rank {rank}: cannot join the job at {addr} (peer {peer}): {why}"),
                    ));
                }
                Dialed::Failed(e) if dropped => {
                    return Err(failure(
                        TransportKind::PeerLost,
                        format!(
                            "rank {rank}: rank 0 at {addr} took its join and went away before \
                             handing out the member list ({last}; now {e})"
                        ),
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
                    .open_stream(peer, ROSTER_PROTOCOL)
                    .await
                    .map_err(|e| format!("{addr} is not rank 0 of a dac job: {e}"))?;
                let message = RosterMessage::Join {
                    version: VERSION,
                    size: size as u64,
                    rank: rank as u64,
                    settings: settings.clone(),
                    addrs: addrs_to_bytes(&my_addrs),
                };
                send(&mut stream, &message)
                    .await
                    .map_err(|e| format!("sending the join to {addr}: {e}"))?;
                match receive(&mut stream, MAX_MEMBER_LIST).await {
                    Ok(answer) => Ok::<_, String>((answer, stream)),
                    Err(e) => {
                        dropped = true;
                        Err(format!("waiting for the member list from {addr}: {e}"))
                    }
                }
            };
            match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok((RosterMessage::Accepted { job, members }, stream))) => {
                    return Ok((roster_from(job, members, size, rank)?, stream));
                }
                Ok(Ok((RosterMessage::Refused { reason }, _))) => {
                    return Err(failure_with(
                        TransportKind::Refused,
                        peer,
                        format!("rank {rank}: rank 0 refused to admit it: {reason}"),
                    ));
                }
                Ok(Ok((_, _))) => last = format!("{addr} sent something other than a member list"),
                Ok(Err(e)) => last = e,
                Err(_) => break,
            }
        }
        if Instant::now() >= deadline {
            return Err(failure(
                TransportKind::Timeout,
                format!(
                    "rank {rank}: could not join the job within {:.0} s (last error: {last})",
                    timeout.as_secs_f64()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn roster_from(
    job: u64,
    members: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
    size: usize,
    rank: usize,
) -> Result<Roster> {
    if members.len() != size {
        return Err(failure(
            TransportKind::ProtocolViolation,
            format!(
                "rank {rank}: rank 0 sent {} members for a job of {size}",
                members.len()
            ),
        ));
    }
    let members = members
        .into_iter()
        .map(|(peer, addrs)| {
            PeerId::from_bytes(&peer)
                .map(|p| (p, addrs_from_bytes(addrs)))
                .map_err(|e| {
                    failure(
                        TransportKind::ProtocolViolation,
                        format!("rank {rank}: bad peer id in the member list: {e}"),
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Roster { job, members })
}
