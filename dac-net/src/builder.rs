//! Configuring a [`Comm`](crate::Comm): explicit arguments, or the
//! environment `dacrun` sets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dac_core::{Config, Error, Result, Schedule, Topology, TransportKind};
use libp2p::{Multiaddr, PeerId};

use crate::Comm;
use crate::access::JobKey;
use crate::failure::{closed, failure};
use crate::session::Session;
use crate::wire::{DEFAULT_MAX_FRAME, MIN_MAX_FRAME};

/// Settings of a [`Comm`](crate::Comm); made by [`Comm::builder`](crate::Comm::builder)
/// or [`CommBuilder::from_env`].
#[derive(Clone, Debug)]
pub struct CommBuilder {
    /// Address to listen on (default `/ip4/127.0.0.1/tcp/0`).
    pub(crate) listen: Multiaddr,
    /// Addresses of rank 0 (every other rank joins through them).
    pub(crate) bootstrap: Vec<Multiaddr>,
    /// Addresses of members of a running job to join (empty: form a new
    /// job).
    pub(crate) join: Vec<Multiaddr>,
    /// A run directory: publish our address in it, and (ranks > 0) read
    /// rank 0's from it when no bootstrap address is given.
    pub(crate) run_dir: Option<PathBuf>,
    pub(crate) size: Option<usize>,
    pub(crate) rank: Option<usize>,
    pub(crate) topology: Topology,
    /// `None`: the exact schedule when the topology has its pairs,
    /// Metropolis otherwise.
    pub(crate) schedule: Option<Schedule>,
    pub(crate) tol: f64,
    pub(crate) max_rounds: u32,
    pub(crate) seed: u64,
    pub(crate) peer_timeout: Duration,
    pub(crate) startup_timeout: Duration,
    pub(crate) key: Option<JobKey>,
    /// The identity file, for a peer id that stays the same across runs.
    pub(crate) identity: Option<PathBuf>,
    /// The only peers admitted, if set.
    pub(crate) allow: Option<Vec<PeerId>>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_pending_connections: u32,
    pub(crate) max_connections: Option<u32>,
    pub(crate) max_connections_per_peer: u32,
    pub(crate) max_streams_per_connection: usize,
    pub(crate) max_frame: usize,
    pub(crate) queue_depth: usize,
    /// An error found while setting options, reported by `build`.
    pub(crate) invalid: Option<Error>,
    /// A fault to commit while the job forms (tests only).
    #[cfg(feature = "testing")]
    pub(crate) after_join: Option<crate::testing::AfterJoin>,
}

impl Default for CommBuilder {
    fn default() -> CommBuilder {
        let config = Config::default();
        CommBuilder {
            listen: "/ip4/127.0.0.1/tcp/0"
                .parse()
                .unwrap_or_else(|_| Multiaddr::empty()),
            bootstrap: Vec::new(),
            join: Vec::new(),
            run_dir: None,
            size: None,
            rank: None,
            topology: Topology::Exponential,
            schedule: None,
            tol: config.tol,
            max_rounds: config.max_rounds,
            seed: 0,
            peer_timeout: Duration::from_secs(10),
            startup_timeout: Duration::from_secs(60),
            key: None,
            identity: None,
            allow: None,
            handshake_timeout: Duration::from_secs(5),
            max_pending_connections: 32,
            max_connections: None,
            max_connections_per_peer: 4,
            max_streams_per_connection: 64,
            max_frame: DEFAULT_MAX_FRAME,
            queue_depth: 64,
            invalid: None,
            #[cfg(feature = "testing")]
            after_join: None,
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        field,
        reason: reason.into(),
    }
}

/// Parses a job key: 64 hex digits, optionally in the libp2p `swarm.key`
/// format (see [`JobKey::parse`]).
///
/// # Errors
/// [`Error::InvalidConfig`] (field `key`) naming what is wrong; the key
/// itself is never echoed.
pub fn parse_key(text: &str) -> Result<JobKey> {
    JobKey::parse(text)
}

impl CommBuilder {
    /// The address to listen on, e.g. `/ip4/0.0.0.0/tcp/7000` for rank 0
    /// of a job across machines.
    pub fn listen(mut self, addr: Multiaddr) -> Self {
        self.listen = addr;
        self
    }

    /// Addresses of rank 0; every other rank joins the job through them.
    pub fn bootstrap(mut self, addrs: impl IntoIterator<Item = Multiaddr>) -> Self {
        self.bootstrap = addrs.into_iter().collect();
        self
    }

    /// Joins a running job instead of forming a new one: asks the member at
    /// the first of `addrs` that answers (any member: see [`Comm::address`](crate::Comm::address))
    /// to admit this process, which then enters at the job's next
    /// admission point ([`Comm::admit`](crate::Comm::admit)) with the next
    /// free rank; `build` returns then, and the program runs the job's loop
    /// from its top. Forming (`size`, `rank`,
    /// `bootstrap`) is for the members a job starts with; a joiner sets
    /// none of them, and the same settings as the job (topology, schedule,
    /// `tol`, `max_rounds`, seed, frame limit) and its key. A member with
    /// other settings refuses it, saying which; without the key its
    /// connection is refused. The schedule a joiner assumes, unless set, is
    /// the exact one for the exponential, complete and hypercube
    /// topologies, Metropolis otherwise.
    pub fn join(mut self, addrs: impl IntoIterator<Item = Multiaddr>) -> Self {
        self.join = addrs.into_iter().collect();
        self
    }

    /// A rendezvous directory shared by the members (set by `dacrun`): each
    /// member publishes its address as `rank-R.addr`, and a rank without
    /// bootstrap addresses waits for `rank-0.addr`.
    pub fn run_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.run_dir = Some(dir.into());
        self
    }

    /// The number of members.
    pub fn size(mut self, size: usize) -> Self {
        self.size = Some(size);
        self
    }

    /// This member's rank in `0..size`.
    pub fn rank(mut self, rank: usize) -> Self {
        self.rank = Some(rank);
        self
    }

    /// The topology policy (default: exponential).
    pub fn topology(mut self, topology: Topology) -> Self {
        self.topology = topology;
        self
    }

    /// The schedule (default: exact when the topology contains its pairs,
    /// as the exponential and complete graphs do; Metropolis otherwise).
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = Some(schedule);
        self
    }

    /// Target accuracy (default `1e-12`).
    pub fn tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }

    /// Rounds after which a reduction fails (default 100 000).
    pub fn max_rounds(mut self, rounds: u32) -> Self {
        self.max_rounds = rounds;
        self
    }

    /// Seed of random topologies (the same on every member; default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// A neighbour from which nothing has arrived for this long (quiet
    /// links carry a heartbeat every quarter of it) is suspected departed,
    /// within this time plus a quarter of it (default 10 s). A crashed
    /// process is found at once: its connections reset and its address
    /// refuses a new one. New connections must complete their handshake,
    /// and probes their answer, within this time too.
    pub fn peer_timeout(mut self, timeout: Duration) -> Self {
        self.peer_timeout = timeout;
        self
    }

    /// How long the members may take to join the job through rank 0
    /// (default 60 s, so that they may start in any order). Opening the
    /// links once all have joined is bounded by `peer_timeout` + 5 s.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// A job key: only processes that hold the same key can connect, and
    /// a member with another key, or none, is refused within the
    /// handshake with an error that names the key (see [`JobKey`]).
    /// `dacrun` gives every job a fresh key.
    pub fn key(mut self, key: JobKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Reads the job key from a file (see [`JobKey::parse`] for the format).
    pub fn key_file(mut self, path: impl AsRef<Path>) -> Self {
        match JobKey::read(path) {
            Ok(key) => self.key = Some(key),
            Err(e) => self.invalid = Some(e),
        }
        self
    }

    /// The member's identity file (see [`identity`](crate::identity)): its
    /// peer id then stays the same from one run to the next, so that other
    /// members can put it on their allow-list. Without it every run has a
    /// fresh peer id.
    pub fn identity_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.identity = Some(path.into());
        self
    }

    /// Admits only these peers: a connection from, or to, any other peer id
    /// is refused by the access gate, and both sides say so. For a job
    /// across machines without a key, list every other member's peer id
    /// (each keeps it in its [`identity_file`](Self::identity_file)). It
    /// works with a key too, as a second condition.
    pub fn allow_peers(mut self, peers: impl IntoIterator<Item = PeerId>) -> Self {
        self.allow = Some(peers.into_iter().collect());
        self
    }

    /// How long a new connection may take to complete its handshake (TCP,
    /// noise, the key check, yamux) before it is closed (default 5 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Connections still in their handshake, in each direction, beyond
    /// which new ones are closed at once (default 32). This bounds what a
    /// flood of half-open connections costs.
    pub fn max_pending_connections(mut self, limit: u32) -> Self {
        self.max_pending_connections = limit;
        self
    }

    /// Established connections in all (default `4 · size + 16`).
    pub fn max_connections(mut self, limit: u32) -> Self {
        self.max_connections = Some(limit);
        self
    }

    /// Established connections with any one peer (default 4).
    pub fn max_connections_per_peer(mut self, limit: u32) -> Self {
        self.max_connections_per_peer = limit;
        self
    }

    /// Streams open at once on one connection (default 64, at most 4096; a
    /// member uses one per link, plus a few probes and its roster stream).
    pub fn max_streams_per_connection(mut self, limit: usize) -> Self {
        self.max_streams_per_connection = limit;
        self
    }

    /// Largest frame accepted from a peer, in bytes (default 65 MiB:
    /// vectors of 8 · 2^20 values). Larger frames close the connection; a
    /// reduction of a longer input fails on every member with
    /// [`Error::InputTooLarge`]. Every member must use the same limit.
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Frames queued per neighbour before a sender waits (default 64).
    pub fn queue_depth(mut self, depth: usize) -> Self {
        self.queue_depth = depth;
        self
    }

    /// Settings from the environment `dacrun` sets: `DAC_RANK`, `DAC_SIZE`
    /// (required, unless `DAC_JOIN` is set), and optionally `DAC_RUN_DIR`,
    /// `DAC_TOPOLOGY`, `DAC_SCHEDULE`, `DAC_PEER_TIMEOUT` (seconds),
    /// `DAC_KEY_FILE` or `DAC_JOB_KEY` (the key itself), `DAC_LISTEN`,
    /// `DAC_BOOTSTRAP` and `DAC_JOIN` (multiaddrs separated by commas; the
    /// latter joins a running job, see [`CommBuilder::join`]), `DAC_SEED`, `DAC_IDENTITY_FILE`
    /// and `DAC_ALLOW_PEERS` (peer ids separated by commas). Options set on
    /// the returned builder override them.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the variable that is missing or
    /// cannot be parsed.
    pub fn from_env() -> Result<CommBuilder> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let required = |name: &'static str| -> Result<usize> {
            let value = var(name).ok_or_else(|| {
                invalid(
                    name,
                    "is not set (start the program with dacrun, or use Comm::builder())",
                )
            })?;
            value
                .trim()
                .parse()
                .map_err(|_| invalid(name, format!("= {value:?} is not a non-negative integer")))
        };
        // A joiner gets its rank when it is admitted.
        let mut b = CommBuilder::default();
        if var("DAC_JOIN").is_none() {
            b = b.rank(required("DAC_RANK")?).size(required("DAC_SIZE")?);
        }
        if let Some(dir) = var("DAC_RUN_DIR") {
            b = b.run_dir(dir);
        }
        if let Some(t) = var("DAC_TOPOLOGY") {
            b = b.topology(t.parse()?);
        }
        if let Some(s) = var("DAC_SCHEDULE") {
            b = b.schedule(s.parse()?);
        }
        if let Some(t) = var("DAC_PEER_TIMEOUT") {
            let secs: f64 = t.trim().parse().map_err(|_| {
                invalid(
                    "DAC_PEER_TIMEOUT",
                    format!("= {t:?} is not a number of seconds"),
                )
            })?;
            if !(secs > 0.0 && secs < 1e9) {
                return Err(invalid(
                    "DAC_PEER_TIMEOUT",
                    format!("= {secs} must be positive"),
                ));
            }
            b = b.peer_timeout(Duration::from_secs_f64(secs));
        }
        if let Some(path) = var("DAC_KEY_FILE") {
            b = b.key_file(path);
        } else if let Some(key) = var("DAC_JOB_KEY") {
            b = b.key(JobKey::parse(&key).map_err(|_| {
                invalid(
                    "DAC_JOB_KEY",
                    "is not a valid job key: expected 64 hex digits",
                )
            })?);
        }
        if let Some(addr) = var("DAC_LISTEN") {
            let addr = addr
                .trim()
                .parse()
                .map_err(|e| invalid("DAC_LISTEN", format!("= {addr:?}: {e}")))?;
            b = b.listen(addr);
        }
        if let Some(list) = var("DAC_JOIN") {
            let addrs = list
                .split(',')
                .map(|a| {
                    a.trim()
                        .parse::<Multiaddr>()
                        .map_err(|e| invalid("DAC_JOIN", format!("{a:?}: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            b = b.join(addrs);
        }
        if let Some(list) = var("DAC_BOOTSTRAP") {
            let addrs = list
                .split(',')
                .map(|a| {
                    a.trim()
                        .parse::<Multiaddr>()
                        .map_err(|e| invalid("DAC_BOOTSTRAP", format!("{a:?}: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            b = b.bootstrap(addrs);
        }
        if let Some(path) = var("DAC_IDENTITY_FILE") {
            b = b.identity_file(path);
        }
        if let Some(list) = var("DAC_ALLOW_PEERS") {
            let peers = list
                .split(',')
                .map(|p| {
                    p.trim()
                        .parse::<PeerId>()
                        .map_err(|e| invalid("DAC_ALLOW_PEERS", format!("{p:?}: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            b = b.allow_peers(peers);
        }
        if let Some(seed) = var("DAC_SEED") {
            b = b.seed(
                seed.trim()
                    .parse()
                    .map_err(|_| invalid("DAC_SEED", format!("= {seed:?} is not an integer")))?,
            );
        }
        Ok(b)
    }

    /// Checks a joiner's settings and resolves its configuration (see
    /// [`CommBuilder::join`]).
    pub(crate) fn checked_join(&self) -> Result<Config> {
        if let Some(e) = &self.invalid {
            return Err(e.clone());
        }
        for (field, set) in [
            ("size", self.size.is_some()),
            ("rank", self.rank.is_some()),
            ("bootstrap", !self.bootstrap.is_empty()),
        ] {
            if set {
                return Err(invalid(
                    field,
                    "is for forming a job; a member that joins a running one gets its rank \
                     when it is admitted",
                ));
            }
        }
        self.check_limits()?;
        let schedule = self.schedule.unwrap_or(match self.topology {
            Topology::Exponential | Topology::Complete | Topology::Hypercube => Schedule::Exact,
            _ => Schedule::Metropolis,
        });
        let config = Config {
            schedule,
            tol: self.tol,
            max_rounds: self.max_rounds,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the settings and resolves the configuration every member
    /// must share.
    pub(crate) fn checked(&self) -> Result<(usize, usize, Config)> {
        if let Some(e) = &self.invalid {
            return Err(e.clone());
        }
        let size = self
            .size
            .ok_or_else(|| invalid("size", "is not set: call .size(N)"))?;
        let rank = self
            .rank
            .ok_or_else(|| invalid("rank", "is not set: call .rank(R)"))?;
        if size == 0 {
            return Err(invalid("size", "must be at least 1"));
        }
        if rank >= size {
            return Err(invalid("rank", format!("{rank} is not below size {size}")));
        }
        self.check_limits()?;
        let graph = self.topology.build(size, self.seed)?;
        let config = |schedule| Config {
            schedule,
            tol: self.tol,
            max_rounds: self.max_rounds,
        };
        let config = match &self.schedule {
            Some(s) => config(*s),
            None => {
                let exact = config(Schedule::Exact);
                if exact.validate_for(&graph).is_ok() {
                    exact
                } else {
                    config(Schedule::Metropolis)
                }
            }
        };
        config.validate_for(&graph)?;
        Ok((rank, size, config))
    }

    /// Checks the limits and timeouts.
    fn check_limits(&self) -> Result<()> {
        if self.peer_timeout.is_zero() {
            return Err(invalid("peer_timeout", "must be positive"));
        }
        if self.max_frame < MIN_MAX_FRAME || self.max_frame > u32::MAX as usize {
            return Err(invalid(
                "max_frame_bytes",
                format!(
                    "{} is outside {MIN_MAX_FRAME}..={}",
                    self.max_frame,
                    u32::MAX
                ),
            ));
        }
        if self.queue_depth == 0 {
            return Err(invalid("queue_depth", "must be at least 1"));
        }
        if self.handshake_timeout.is_zero() {
            return Err(invalid("handshake_timeout", "must be positive"));
        }
        for (field, value) in [
            (
                "max_pending_connections",
                self.max_pending_connections as usize,
            ),
            (
                "max_connections",
                self.max_connections.unwrap_or(1) as usize,
            ),
            (
                "max_connections_per_peer",
                self.max_connections_per_peer as usize,
            ),
            (
                "max_streams_per_connection",
                self.max_streams_per_connection,
            ),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        if self.allow.as_ref().is_some_and(Vec::is_empty) {
            return Err(invalid(
                "allow_peers",
                "is empty: it would refuse every member",
            ));
        }
        let most = crate::transport::MAX_STREAMS_PER_CONNECTION;
        if self.max_streams_per_connection > most {
            return Err(invalid(
                "max_streams_per_connection",
                format!("{} is above {most}", self.max_streams_per_connection),
            ));
        }
        Ok(())
    }

    /// The connection limits for a job of `size` members.
    pub(crate) fn bounds(&self, size: usize) -> crate::transport::ConnectionBounds {
        let default = u32::try_from(size)
            .unwrap_or(u32::MAX / 4)
            .saturating_mul(4)
            + 16;
        crate::transport::ConnectionBounds {
            pending: self.max_pending_connections,
            established: self.max_connections.unwrap_or(default),
            per_peer: self.max_connections_per_peer,
            streams: self.max_streams_per_connection,
        }
    }

    /// What every member must agree on, compared when the job forms.
    pub(crate) fn settings(&self, config: &Config) -> String {
        format!(
            "topology={} schedule={} tol={:e} max_rounds={} seed={} max_frame={}",
            self.topology,
            config.schedule,
            config.tol,
            config.max_rounds,
            self.seed,
            self.max_frame
        )
    }
}

impl CommBuilder {
    /// Forms the job: listens, publishes the address, joins through rank 0
    /// (rank 0 waits for everyone), and opens the links to this member's
    /// neighbours.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (and the other configuration errors of
    /// `dac-core`) for bad settings; [`Error::Transport`] if the job cannot
    /// be formed: within the startup timeout (rank 0 unreachable, a member
    /// missing, settings that differ between members, a wrong job key), or,
    /// once every member has joined, within `peer_timeout` + 5 s of a member
    /// lost before its links were up (the error names it, on every member).
    pub fn build(self) -> Result<Comm> {
        let joining = !self.join.is_empty();
        let formed = if joining {
            self.checked_join().map(|config| (0, 0, config))
        } else {
            self.checked()
        };
        let (rank, size, config) = formed?;
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(closed(
                "Comm::build was called inside an async runtime; build it on a plain thread \
                 (e.g. tokio::task::spawn_blocking)",
            ));
        }
        // One worker thread runs the swarm, the links and their checks in
        // the background; the reduction itself runs on the caller's
        // thread. A second worker measured slower on a 2-core machine
        // running 8 members (more threads to wake per message).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("dac-net")
            .build()
            .map_err(|e| {
                failure(
                    TransportKind::Setup,
                    format!("cannot start the network runtime: {e}"),
                )
            })?;
        let session = if joining {
            runtime.block_on(Session::join(self, config))?
        } else {
            runtime.block_on(Session::connect(self, rank, size, config))?
        };
        Ok(Comm::formed(runtime, session))
    }
}
