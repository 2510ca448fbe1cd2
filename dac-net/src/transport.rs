//! The libp2p side: TCP (+ optional pnet) + noise + yamux and a stream
//! behaviour for the data plane, driven by one task. Liveness is not
//! libp2p's: the links carry heartbeats and the node's failure detector
//! watches them (see `node`).

use std::time::Duration;

use dac_core::{Error, Result};
use futures::StreamExt;
use futures::future::Either;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::swarm::dial_opts::DialOpts;
use std::collections::HashMap;

use libp2p::swarm::DialError;
use libp2p::swarm::dial_opts::PeerCondition;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, SwarmBuilder, Transport, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};

/// The behaviours every node runs.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Long-lived neighbour streams, probes and the roster protocol.
    stream: libp2p_stream::Behaviour,
}

/// Why a connection to a member could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DialFailure {
    /// Another process answered at the member's address: the member's
    /// process has ended.
    Gone(String),
    /// Anything else (refused, unreachable, timed out, a handshake that
    /// failed). A refused connection is told apart by [`listening`], which
    /// sees the socket error that libp2p's error chain hides.
    Other(String),
}

impl DialFailure {
    fn of(error: &DialError) -> DialFailure {
        let text = error.to_string();
        match error {
            DialError::WrongPeerId { .. } => {
                DialFailure::Gone(format!("another process answers at its address ({text})"))
            }
            _ => DialFailure::Other(text),
        }
    }
}

/// Whether anything listens at a member's TCP addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listening {
    /// Some address accepted a TCP connection.
    Yes,
    /// Every address refused: nothing listens there, the member's process
    /// has ended.
    Refused,
    /// Not known (unreachable, timed out, no TCP address).
    Unknown(String),
}

/// Tries a plain TCP connection to each of `addrs` (closed again at once)
/// within `timeout`. Only a refused connection on every address proves the
/// process gone; a host that is down or cut off answers nothing.
pub(crate) async fn listening(addrs: &[Multiaddr], timeout: Duration) -> Listening {
    use libp2p::multiaddr::Protocol;
    let mut sockets = Vec::new();
    for addr in addrs {
        let mut ip = None;
        for protocol in addr.iter() {
            match protocol {
                Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
                Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
                Protocol::Tcp(port) => {
                    if let Some(ip) = ip {
                        sockets.push(std::net::SocketAddr::new(ip, port));
                    }
                }
                _ => {}
            }
        }
    }
    if sockets.is_empty() {
        return Listening::Unknown("no TCP address".into());
    }
    let attempts = sockets
        .iter()
        .map(|s| tokio::time::timeout(timeout, tokio::net::TcpStream::connect(*s)));
    let mut refused = 0;
    let mut last = String::new();
    for outcome in futures::future::join_all(attempts).await {
        match outcome {
            Ok(Ok(_)) => return Listening::Yes,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused += 1,
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = format!("no answer within {:.1} s", timeout.as_secs_f64()),
        }
    }
    if refused == sockets.len() {
        Listening::Refused
    } else {
        Listening::Unknown(last)
    }
}

/// What the rest of the node asks of the swarm task.
#[derive(Debug)]
pub(crate) enum SwarmCommand {
    /// Dial an address whose peer id is not known yet (a bootstrap).
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<std::result::Result<PeerId, String>>,
    },
    /// Remember the members' addresses (streams to them dial them);
    /// answered once they are in place.
    AddAddresses {
        members: Vec<(PeerId, Vec<Multiaddr>)>,
        done: oneshot::Sender<()>,
    },
    /// Make sure there is a connection to a member (dialing its roster
    /// addresses if needed) before a stream is opened on it.
    Connect {
        peer: PeerId,
        reply: oneshot::Sender<std::result::Result<(), DialFailure>>,
    },
    /// Close every connection to a peer.
    Disconnect { peer: PeerId },
}

/// A running swarm.
pub(crate) struct Started {
    pub(crate) control: libp2p_stream::Control,
    pub(crate) peer_id: PeerId,
    pub(crate) listen_addrs: Vec<Multiaddr>,
    pub(crate) commands: mpsc::UnboundedSender<SwarmCommand>,
    /// Peers with which the last connection closed.
    pub(crate) closed: mpsc::UnboundedReceiver<PeerId>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

fn transport_error(e: impl std::fmt::Display) -> Error {
    Error::Transport {
        reason: e.to_string(),
    }
}

/// Builds the swarm, starts listening on `listen` and spawns its task on
/// the current runtime. A new connection must complete its handshake
/// (key, noise, yamux) within `handshake_timeout`.
pub(crate) async fn start(
    keypair: Keypair,
    psk: Option<PreSharedKey>,
    listen: Multiaddr,
    handshake_timeout: Duration,
) -> Result<Started> {
    let mut swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| {
            let noise = noise::Config::new(key)?;
            let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
            let base = tcp.and_then(move |socket, _| async move {
                match psk {
                    Some(psk) => PnetConfig::new(psk)
                        .handshake(socket)
                        .await
                        .map(Either::Left)
                        .map_err(std::io::Error::other),
                    None => Ok(Either::Right(socket)),
                }
            });
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                base.upgrade(Version::V1Lazy)
                    .authenticate(noise)
                    .multiplex(yamux::Config::default())
                    .timeout(handshake_timeout),
            )
        })
        .map_err(transport_error)?
        .with_behaviour(|_| Behaviour {
            stream: libp2p_stream::Behaviour::new(),
        })
        .map_err(transport_error)?
        // Quiet links between reductions must stay open.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(24 * 3600)))
        .build();
    swarm
        .listen_on(listen.clone())
        .map_err(|e| Error::Transport {
            reason: format!("cannot listen on {listen}: {e}"),
        })?;
    let mut listen_addrs = Vec::new();
    while listen_addrs.is_empty() {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => listen_addrs.push(address),
            SwarmEvent::ListenerError { error, .. }
            | SwarmEvent::ListenerClosed {
                reason: Err(error), ..
            } => {
                return Err(Error::Transport {
                    reason: format!("cannot listen on {listen}: {error}"),
                });
            }
            _ => {}
        }
    }
    // A wildcard address reports one address per interface, in a burst.
    while let Ok(event) =
        tokio::time::timeout(Duration::from_millis(20), swarm.select_next_some()).await
    {
        if let SwarmEvent::NewListenAddr { address, .. } = event {
            listen_addrs.push(address);
        }
    }
    let control = swarm.behaviour().stream.new_control();
    let peer_id = *swarm.local_peer_id();
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let task = tokio::spawn(drive(swarm, command_rx, closed_tx));
    Ok(Started {
        control,
        peer_id,
        listen_addrs,
        commands,
        closed,
        task,
    })
}

/// The swarm task: runs until every command sender is gone.
async fn drive(
    mut swarm: Swarm<Behaviour>,
    mut commands: mpsc::UnboundedReceiver<SwarmCommand>,
    closed: mpsc::UnboundedSender<PeerId>,
) {
    type Reply<T, E> = oneshot::Sender<std::result::Result<T, E>>;
    let mut dials: Vec<(ConnectionId, Reply<PeerId, String>)> = Vec::new();
    let mut addresses: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
    let mut connecting: HashMap<PeerId, Vec<Reply<(), DialFailure>>> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => break,
                Some(SwarmCommand::Dial { addr, reply }) => {
                    let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
                    let id = opts.connection_id();
                    match swarm.dial(opts) {
                        Ok(()) => dials.push((id, reply)),
                        Err(e) => {
                            let _ = reply.send(Err(format!("cannot dial {addr}: {e}")));
                        }
                    }
                }
                Some(SwarmCommand::AddAddresses { members, done }) => {
                    addresses.extend(members);
                    let _ = done.send(());
                }
                Some(SwarmCommand::Connect { peer, reply }) => {
                    if swarm.is_connected(&peer) {
                        let _ = reply.send(Ok(()));
                        continue;
                    }
                    let waiting = connecting.entry(peer).or_default();
                    waiting.push(reply);
                    if waiting.len() > 1 {
                        continue; // a dial is under way
                    }
                    let addrs = addresses.get(&peer).cloned().unwrap_or_default();
                    let opts = DialOpts::peer_id(peer)
                        .addresses(addrs)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    if let Err(e) = swarm.dial(opts) {
                        let failure = DialFailure::of(&e);
                        for reply in connecting.remove(&peer).unwrap_or_default() {
                            let _ = reply.send(Err(failure.clone()));
                        }
                    }
                }
                Some(SwarmCommand::Disconnect { peer }) => {
                    let _ = swarm.disconnect_peer_id(peer);
                }
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, connection_id, .. } => {
                    if let Some(at) = dials.iter().position(|d| d.0 == connection_id) {
                        let (_, reply) = dials.swap_remove(at);
                        let _ = reply.send(Ok(peer_id));
                    }
                    for reply in connecting.remove(&peer_id).unwrap_or_default() {
                        let _ = reply.send(Ok(()));
                    }
                }
                SwarmEvent::OutgoingConnectionError { connection_id, peer_id, error } => {
                    if let Some(at) = dials.iter().position(|d| d.0 == connection_id) {
                        let (_, reply) = dials.swap_remove(at);
                        let _ = reply.send(Err(error.to_string()));
                    }
                    if let Some(peer) = peer_id {
                        let failure = DialFailure::of(&error);
                        for reply in connecting.remove(&peer).unwrap_or_default() {
                            let _ = reply.send(Err(failure.clone()));
                        }
                    }
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                    let _ = closed.send(peer_id);
                }
                _ => {}
            }
        }
    }
}
