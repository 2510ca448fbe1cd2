//! The libp2p side: TCP + noise + the access gate (the job key, see
//! `access`) + yamux, and a stream behaviour for the data plane, driven by
//! one task. Liveness is not libp2p's: the links carry heartbeats and the
//! node's failure detector watches them (see `node`).

use std::sync::Arc;
use std::time::Duration;

use dac_core::{Error, Result, TransportKind};
use futures::StreamExt;
use libp2p::connection_limits::{self, ConnectionLimits};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::swarm::dial_opts::DialOpts;
use std::collections::HashMap;

use crate::access::{Access, Gate, Refusal, refusal_in};
use crate::failure::failure;

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
    /// Bounds on pending and established connections.
    limits: connection_limits::Behaviour,
}

/// The most streams a connection may carry: yamux gives each at least
/// 256 KiB of its 1 GiB connection window.
pub(crate) const MAX_STREAMS_PER_CONNECTION: usize = 4096;

/// How many connections a member accepts (see
/// [`CommBuilder::max_pending_connections`](crate::CommBuilder::max_pending_connections)
/// and the settings after it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionBounds {
    /// Connections still in their handshake, in each direction.
    pub(crate) pending: u32,
    /// Established connections in all.
    pub(crate) established: u32,
    /// Established connections with any one peer.
    pub(crate) per_peer: u32,
    /// Streams open at once on one connection.
    pub(crate) streams: usize,
}

/// Why a connection to a member could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DialFailure {
    /// Another process answered at the member's address: the member's
    /// process has ended.
    Gone(String),
    /// The access gate refused the connection: the job keys do not match
    /// (or only one side has one). Trying again cannot help.
    Refused { peer: PeerId, why: Refusal },
    /// Anything else (refused, unreachable, timed out, a handshake that
    /// failed). A refused connection is told apart by [`listening`], which
    /// sees the socket error that libp2p's error chain hides.
    Other(String),
}

/// What dialing an address whose peer id is not known gave ([`dial`]).
#[derive(Debug)]
pub(crate) enum Dialed {
    /// A connection to this peer.
    Peer(PeerId),
    /// The access gate refused it (another key, or none): trying again
    /// cannot help.
    Refused { peer: PeerId, why: Refusal },
    /// Anything else; another try may succeed.
    Failed(String),
    /// The network task has stopped.
    Stopped,
    /// `deadline` passed.
    TimedOut,
}

/// Dials `addr` (a bootstrap or join address) until `deadline`.
pub(crate) async fn dial(
    commands: &mpsc::UnboundedSender<SwarmCommand>,
    addr: &Multiaddr,
    deadline: tokio::time::Instant,
) -> Dialed {
    let (reply, answer) = oneshot::channel();
    let dial = SwarmCommand::Dial {
        addr: addr.clone(),
        reply,
    };
    if commands.send(dial).is_err() {
        return Dialed::Stopped;
    }
    match tokio::time::timeout_at(deadline, answer).await {
        Ok(Ok(Ok(peer))) => Dialed::Peer(peer),
        Ok(Ok(Err(DialFailure::Refused { peer, why }))) => Dialed::Refused { peer, why },
        Ok(Ok(Err(e))) => Dialed::Failed(e.to_string()),
        Ok(Err(_)) => Dialed::Stopped,
        Err(_) => Dialed::TimedOut,
    }
}

impl std::fmt::Display for DialFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DialFailure::Gone(text) | DialFailure::Other(text) => f.write_str(text),
            DialFailure::Refused { peer, why } => write!(f, "{why} (peer {peer})"),
        }
    }
}

impl DialFailure {
    fn of(error: &DialError) -> DialFailure {
        let text = error.to_string();
        match error {
            DialError::WrongPeerId { .. } => {
                DialFailure::Gone(format!("another process answers at its address ({text})"))
            }
            DialError::Transport(errors) => errors
                .iter()
                .find_map(|(_, e)| refusal_in(e))
                .map(|(peer, why)| DialFailure::Refused { peer, why })
                .unwrap_or(DialFailure::Other(text)),
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
        reply: oneshot::Sender<std::result::Result<PeerId, DialFailure>>,
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

/// An error with every cause under it: libp2p's errors often print
/// nothing of their own and keep the reason in their sources.
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let part = cause.to_string();
        if !part.is_empty() && !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        next = cause.source();
    }
    if text.is_empty() {
        text = format!("{e:?}");
    }
    text
}

fn transport_error(e: impl std::fmt::Display) -> Error {
    failure(TransportKind::Setup, e.to_string())
}

/// Builds the swarm, starts listening on `listen` and spawns its task on
/// the current runtime. A new connection must complete its handshake
/// (noise, the access gate, yamux) within `handshake_timeout`.
pub(crate) async fn start(
    keypair: Keypair,
    access: Arc<Access>,
    listen: Multiaddr,
    handshake_timeout: Duration,
    bounds: ConnectionBounds,
) -> Result<Started> {
    let limits = ConnectionLimits::default()
        .with_max_pending_incoming(Some(bounds.pending))
        .with_max_pending_outgoing(Some(bounds.pending))
        .with_max_established(Some(bounds.established))
        .with_max_established_per_peer(Some(bounds.per_peer));
    let mut swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| {
            let gate = Gate {
                inner: noise::Config::new(key)?,
                local: key.public().to_peer_id(),
                access,
            };
            let mut yamux = yamux::Config::default();
            yamux.set_max_num_streams(bounds.streams);
            let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                tcp.upgrade(Version::V1Lazy)
                    .authenticate(gate)
                    .multiplex(yamux)
                    .timeout(handshake_timeout),
            )
        })
        .map_err(transport_error)?
        .with_behaviour(|_| Behaviour {
            stream: libp2p_stream::Behaviour::new(),
            limits: connection_limits::Behaviour::new(limits),
        })
        .map_err(transport_error)?
        // Quiet links between reductions must stay open.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(24 * 3600)))
        .build();
    swarm.listen_on(listen.clone()).map_err(|e| {
        failure(
            TransportKind::Setup,
            format!("cannot listen on {listen}: {}", with_causes(&e)),
        )
    })?;
    let mut listen_addrs = Vec::new();
    while listen_addrs.is_empty() {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => listen_addrs.push(address),
            SwarmEvent::ListenerError { error, .. }
            | SwarmEvent::ListenerClosed {
                reason: Err(error), ..
            } => {
                return Err(failure(
                    TransportKind::Setup,
                    format!("cannot listen on {listen}: {}", with_causes(&error)),
                ));
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
    let mut dials: Vec<(ConnectionId, Reply<PeerId, DialFailure>)> = Vec::new();
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
                            let failure = DialFailure::Other(format!("cannot dial {addr}: {e}"));
                            let _ = reply.send(Err(failure));
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
                        let _ = reply.send(Err(DialFailure::of(&error)));
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
