//! Forming a job: every member learns every member's peer id and
//! addresses, in rank order.
//!
//! Rank 0 is the coordinator (its address is the bootstrap address). Every
//! other rank dials it, opens a roster stream and sends `Join { rank, size,
//! settings, addrs }`; when all `size − 1` have joined, rank 0 draws a job
//! id and answers each with the member list. A join for a taken rank, for
//! another size or with other settings (topology, schedule, tolerance) is
//! refused with a reason, and the joiner fails with it.

use std::time::Duration;

use dac_core::{Error, Result};
use futures::{AsyncWriteExt, StreamExt};
use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::transport::SwarmCommand;
use crate::wire::{encode_control, read_control};

pub(crate) const ROSTER_PROTOCOL: StreamProtocol = StreamProtocol::new("/dac/roster/1");

/// Version of the roster and data protocols.
const VERSION: u32 = 1;

/// Largest roster message (a member list of thousands of members).
const MAX_ROSTER_MESSAGE: usize = 16 << 20;

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
}

fn error(reason: impl Into<String>) -> Error {
    Error::Transport {
        reason: reason.into(),
    }
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

async fn send(stream: &mut Stream, message: &RosterMessage) -> std::io::Result<()> {
    stream.write_all(&encode_control(message)).await?;
    stream.flush().await
}

/// Rank 0: waits for the other `size − 1` members, then answers them all.
/// Keeps refusing late joiners until `late` is dropped.
pub(crate) async fn coordinate(
    mut incoming: libp2p_stream::IncomingStreams,
    me: (PeerId, Vec<Multiaddr>),
    size: usize,
    settings: String,
    timeout: Duration,
) -> Result<(Roster, tokio::task::JoinHandle<()>)> {
    let deadline = Instant::now() + timeout;
    let mut joined: Vec<Option<(PeerId, Vec<Multiaddr>, Stream)>> =
        (0..size).map(|_| None).collect();
    let mut missing = size - 1;
    let (tx, mut rx) = mpsc::channel(64);
    // Reading each join in its own task: a silent dialer cannot stall the
    // others.
    let reader = tokio::spawn(async move {
        while let Some((peer, mut stream)) = incoming.next().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let read = read_control::<_, RosterMessage>(&mut stream, MAX_ROSTER_MESSAGE);
                if let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(10), read).await {
                    let _ = tx.send((peer, message, stream)).await;
                }
            });
        }
    });
    while missing > 0 {
        let Ok(Some((peer, message, mut stream))) =
            tokio::time::timeout_at(deadline, rx.recv()).await
        else {
            reader.abort();
            let absent: Vec<usize> = (1..size).filter(|&r| joined[r].is_none()).collect();
            return Err(error(format!(
                "rank 0: rank(s) {absent:?} did not join within {:.0} s",
                timeout.as_secs_f64()
            )));
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
    for (peer, addrs, stream) in joined.into_iter().skip(1).flatten() {
        members.push((peer, addrs));
        streams.push(stream);
    }
    let accepted = RosterMessage::Accepted {
        job,
        members: members
            .iter()
            .map(|(p, a)| (p.to_bytes(), addrs_to_bytes(a)))
            .collect(),
    };
    for stream in &mut streams {
        // A member that vanished now is detected by the data plane.
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
    Ok((Roster { job, members }, late))
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
/// `timeout`, so rank 0 may start later).
pub(crate) async fn join(
    commands: &mpsc::UnboundedSender<SwarmCommand>,
    control: &mut libp2p_stream::Control,
    bootstrap: &[Multiaddr],
    me: Applicant,
    timeout: Duration,
) -> Result<Roster> {
    let Applicant {
        rank,
        size,
        settings,
        addrs: my_addrs,
    } = me;
    if bootstrap.is_empty() {
        return Err(error(format!(
            "rank {rank}: no bootstrap address (the address of rank 0) was given"
        )));
    }
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no attempt");
    loop {
        for addr in bootstrap {
            let (reply, answer) = oneshot::channel();
            let dial = SwarmCommand::Dial {
                addr: addr.clone(),
                reply,
            };
            if commands.send(dial).is_err() {
                return Err(error("the network task has stopped"));
            }
            let peer = match tokio::time::timeout_at(deadline, answer).await {
                Ok(Ok(Ok(peer))) => peer,
                Ok(Ok(Err(e))) => {
                    last = e;
                    continue;
                }
                Ok(Err(_)) => return Err(error("the network task has stopped")),
                Err(_) => break,
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
                read_control::<_, RosterMessage>(&mut stream, MAX_ROSTER_MESSAGE)
                    .await
                    .map_err(|e| format!("waiting for the member list from {addr}: {e}"))
            };
            match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(RosterMessage::Accepted { job, members })) => {
                    return roster_from(job, members, size, rank);
                }
                Ok(Ok(RosterMessage::Refused { reason })) => {
                    return Err(error(format!(
                        "rank {rank}: rank 0 refused to admit it: {reason}"
                    )));
                }
                Ok(Ok(RosterMessage::Join { .. })) => last = format!("{addr} sent a join"),
                Ok(Err(e)) => last = e,
                Err(_) => break,
            }
        }
        if Instant::now() >= deadline {
            return Err(error(format!(
                "rank {rank}: could not join the job within {:.0} s (last error: {last})",
                timeout.as_secs_f64()
            )));
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
        return Err(error(format!(
            "rank {rank}: rank 0 sent {} members for a job of {size}",
            members.len()
        )));
    }
    let members = members
        .into_iter()
        .map(|(peer, addrs)| {
            PeerId::from_bytes(&peer)
                .map(|p| (p, addrs_from_bytes(addrs)))
                .map_err(|e| error(format!("rank {rank}: bad peer id in the member list: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Roster { job, members })
}
