//! Telling a departure from a lost link: the probe a member sends when a
//! link ends, its answer, and the watchdog that turns silence into
//! suspicion.

use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Cut, Node, PROBE_PROTOCOL, PeerEvent};
use crate::transport::{DialFailure, Listening, SwarmCommand, listening};

/// Answers to a probe.
const EXCLUDED: u8 = 0;
const MEMBER: u8 = 1;
const LEAVING: u8 = 2;

/// What a probe found out.
enum Probed {
    /// The member says it is leaving: it is gone, and it still counted us
    /// as a member.
    Gone(String),
    /// Its address refuses connections, or another process answers there:
    /// its process has ended (whether it cut us off first is not known).
    Refused(String),
    /// It holds us departed: we were excluded.
    Fenced,
    /// It answers and still counts us as a member: only the link failed.
    Alive,
    /// No answer within the peer timeout.
    Silent(String),
    /// An answer that is not one.
    Invalid(u8),
}

impl Node {
    /// Probes member `rank`, whose link ended (`reason`), on a fresh
    /// connection for at most `peer_timeout`, and acts on the answer.
    pub(super) async fn probe(self: Arc<Self>, rank: usize, reason: String) {
        let timeout = self.limits.peer_timeout;
        let found = self.ask_until(rank, Instant::now() + timeout).await;
        let Some(found) = found else {
            return; // the network task stopped: the comm is closing
        };
        match found {
            Probed::Refused(why) if !self.trusts_refusals() => {
                let why = format!(
                    "{reason}, and {why}; but this member was stalled itself and cannot tell \
                     whether the job went on without it"
                );
                self.cut_off(rank, Cut::Silent, why);
            }
            Probed::Gone(why) | Probed::Refused(why) => {
                let event = PeerEvent::Departed {
                    rank,
                    reason: format!("{reason}, and {why}"),
                    proven: true,
                };
                self.decide(rank, true, event, false);
            }
            Probed::Fenced => {
                self.state().probing.remove(&rank);
                self.fenced(rank);
            }
            Probed::Alive => {
                let why = format!("{reason}, though its process still answers");
                self.cut_off(rank, Cut::Silent, why);
            }
            Probed::Silent(last) => {
                let why = format!(
                    "{reason}, and it did not answer within {:.1} s ({last})",
                    timeout.as_secs_f64()
                );
                self.cut_off(rank, Cut::Silent, why);
            }
            Probed::Invalid(answer) => {
                let why = format!("answered a probe with {answer}");
                self.cut_off(rank, Cut::Misbehaved, why);
            }
        }
    }

    /// Dials member `rank` and asks it, retrying until `deadline`; `None`
    /// if the network task has stopped.
    async fn ask_until(&self, rank: usize, deadline: Instant) -> Option<Probed> {
        let peer = self.peer(rank)?;
        let mut last = String::from("no answer");
        loop {
            if Instant::now() >= deadline {
                return Some(Probed::Silent(last));
            }
            let (reply, connected) = oneshot::channel();
            self.commands
                .send(SwarmCommand::Connect { peer, reply })
                .ok()?;
            match tokio::time::timeout_at(deadline, connected).await {
                Err(_) => continue,
                Ok(Err(_)) => return None,
                Ok(Ok(Err(DialFailure::Gone(why)))) => return Some(Probed::Refused(why)),
                // Another key at its address: not the member, no proof.
                Ok(Ok(Err(refused @ DialFailure::Refused { .. }))) => {
                    return Some(Probed::Silent(refused.to_string()));
                }
                Ok(Ok(Err(DialFailure::Other(e)))) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match listening(&self.addrs_of(rank), left).await {
                        Listening::Refused => {
                            let why = "its address refuses connections: its process has ended";
                            return Some(Probed::Refused(why.into()));
                        }
                        Listening::Yes | Listening::Unknown(_) => last = e,
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Ok(Ok(Ok(()))) => {}
            }
            match tokio::time::timeout_at(deadline, self.ask(peer)).await {
                Ok(Ok(MEMBER)) => return Some(Probed::Alive),
                Ok(Ok(EXCLUDED)) => return Some(Probed::Fenced),
                Ok(Ok(LEAVING)) => return Some(Probed::Gone("it is leaving the job".into())),
                Ok(Ok(other)) => return Some(Probed::Invalid(other)),
                // The old connection may still be closing: dial again.
                Ok(Err(e)) => {
                    last = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(_) => {}
            }
        }
    }

    /// Opens a probe stream to `peer`: our job id out, one byte back.
    async fn ask(&self, peer: PeerId) -> Result<u8, String> {
        let mut control = self.control.clone();
        let mut stream = control
            .open_stream(peer, PROBE_PROTOCOL)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(&self.job.to_le_bytes())
            .await
            .map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let mut answer = [0u8; 1];
        stream
            .read_exact(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        Ok(answer[0])
    }

    /// Takes an inbound probe stream.
    pub(crate) fn accept_probe(self: &Arc<Self>, peer: PeerId, stream: Stream) {
        match self.rank_of(&peer) {
            Some(rank) => {
                tokio::spawn(Arc::clone(self).answer(rank, stream));
            }
            None => self.refuse(peer, "probed us but is not a member of this job".into()),
        }
    }

    /// Answers a probe from member `rank`: it was excluded, we are
    /// leaving, or it is still a member.
    async fn answer(self: Arc<Self>, rank: usize, mut stream: Stream) {
        let mut job = [0u8; 8];
        let read = tokio::time::timeout(self.limits.peer_timeout, stream.read_exact(&mut job));
        if !matches!(read.await, Ok(Ok(()))) || u64::from_le_bytes(job) != self.job {
            return;
        }
        let answer = {
            let state = self.state();
            // A member we hold departed learns so even while we close.
            if state.departed.contains_key(&rank) {
                EXCLUDED
            } else if state.stopped {
                LEAVING
            } else {
                MEMBER
            }
        };
        let reply = async {
            stream.write_all(&[answer]).await?;
            stream.flush().await?;
            stream.close().await
        };
        let _ = tokio::time::timeout(self.limits.peer_timeout, reply).await;
    }
}
