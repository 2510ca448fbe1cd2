//! Who may connect: the job key, and the proof of it that every new
//! connection runs right after its noise handshake.
//!
//! A connection is TCP, then noise (which authenticates the two peer ids
//! and encrypts everything after it), then this *gate*, then yamux. The
//! gate runs inside the noise channel:
//!
//! 1. each side sends `hello`: a magic, a version, whether it holds a job
//!    key, and a fresh 32-byte nonce;
//! 2. if both hold a key, each side sends
//!    `HMAC-SHA256(key, context ‖ its role ‖ dialer id ‖ listener id ‖
//!    dialer nonce ‖ listener nonce)` and checks the other's.
//!
//! A process without the key therefore never gets a multiplexed
//! connection: it cannot open a stream, send a frame or read one. The tag
//! binds both authenticated peer ids and both nonces, so it can be neither
//! replayed nor relayed by a third process. Both sides see the outcome of
//! each step, so both can say *why* a connection was refused: the keys
//! differ, or only one side has one.
//!
//! 3. each side sends its verdict on the other: admitted, or not on its
//!    allow-list (when it has one), so that a refused peer learns why.
//!
//! Keyless (public) jobs run the same gate with no tag; they admit any
//! process that reaches them, or, with an allow-list, only the peer ids on
//! it. A member's peer id is its identity key's (see [`identity`]).

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use dac_core::{Error, Result};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use hmac::{KeyInit, Mac};
use libp2p::PeerId;
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};
use libp2p::identity::Keypair;

/// A job key: 32 secret bytes shared by the members of a private job.
///
/// Its `Debug` form never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct JobKey([u8; 32]);

impl fmt::Debug for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JobKey(…)")
    }
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        field: "key",
        reason: reason.into(),
    }
}

impl JobKey {
    /// A fresh random key.
    pub fn random() -> JobKey {
        JobKey(rand::random())
    }

    /// The key as 64 lowercase hex digits (the format of a key file).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses a key: 64 hex digits, optionally after the two header lines
    /// of the libp2p `swarm.key` format (`/key/swarm/psk/1.0.0/`,
    /// `/base16/`) that earlier versions wrote.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (field `key`) saying what is wrong; the key
    /// itself is never echoed.
    pub fn parse(text: &str) -> Result<JobKey> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let mut hex = lines.next().unwrap_or("");
        if hex == "/key/swarm/psk/1.0.0/" {
            if lines.next() != Some("/base16/") {
                return Err(invalid(
                    "is not a valid job key: a swarm.key file must be base16",
                ));
            }
            hex = lines.next().unwrap_or("");
        }
        if lines.next().is_some() {
            return Err(invalid(
                "is not a valid job key: expected 64 hex digits on one line",
            ));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(format!(
                "is not a valid job key: expected 64 hex digits, found {} characters{}",
                hex.len(),
                if hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    ""
                } else {
                    " that are not all hex digits"
                }
            )));
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| invalid("is not a valid job key"))?;
        }
        Ok(JobKey(key))
    }

    /// Reads a key file (see [`JobKey::parse`]).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (field `key`) naming the file.
    pub fn read(path: impl AsRef<Path>) -> Result<JobKey> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("file {} cannot be read: {e}", path.display())))?;
        JobKey::parse(&text).map_err(|e| match e {
            // "key in PATH is not a valid job key: …", said once.
            Error::InvalidConfig { reason, .. } => {
                invalid(format!("in {} {reason}", path.display()))
            }
            other => other,
        })
    }

    /// Writes a fresh random key to a new file that only its owner may
    /// read (mode 0600), and returns it. An existing file is not touched.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (field `key`) naming the file.
    pub fn create(path: impl AsRef<Path>) -> Result<JobKey> {
        let path = path.as_ref();
        let key = JobKey::random();
        create_private(path, format!("{}\n", key.to_hex()).as_bytes())
            .map_err(|e| invalid(format!("cannot create {}: {e}", path.display())))?;
        Ok(key)
    }
}

impl std::str::FromStr for JobKey {
    type Err = Error;
    fn from_str(text: &str) -> Result<JobKey> {
        JobKey::parse(text)
    }
}

/// Creates `path` (mode 0600) holding `bytes`; never overwrites a file.
fn create_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path)?.write_all(bytes)
}

/// A member's identity file: the ed25519 key behind its peer id, kept
/// (in libp2p's protobuf encoding) so that the peer id stays the same from
/// one run to the next, as an allow-list needs. The file is created, only
/// readable by its owner, if it does not exist. Returns its peer id.
///
/// # Errors
/// [`Error::InvalidConfig`] (field `identity`) naming the file.
pub fn identity(path: impl AsRef<Path>) -> Result<PeerId> {
    Ok(identity_keypair(path.as_ref())?.public().to_peer_id())
}

/// The key of [`identity`].
pub(crate) fn identity_keypair(path: &Path) -> Result<Keypair> {
    let bad = |why: String| Error::InvalidConfig {
        field: "identity",
        reason: format!("{}: {why}", path.display()),
    };
    match std::fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .map_err(|e| bad(format!("is not an identity file ({e})"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .map_err(|e| bad(e.to_string()))?;
            create_private(path, &bytes).map_err(|e| bad(format!("cannot create it: {e}")))?;
            Ok(keypair)
        }
        Err(e) => Err(bad(format!("cannot be read: {e}"))),
    }
}

/// Why the gate refused a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Both sides hold a key, and the keys differ.
    KeyMismatch,
    /// This side holds a key; the peer has none.
    PeerHasNoKey,
    /// The peer holds a key; this side has none.
    KeyRequired,
    /// The peer is not on this side's allow-list.
    NotAllowed,
    /// This side is not on the peer's allow-list.
    NotAllowedThere,
    /// The peer does not run dac's gate (another program, or another
    /// version of dac).
    NotDac(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::KeyMismatch => {
                f.write_str("job key mismatch: the peer holds a different job key")
            }
            Refusal::PeerHasNoKey => {
                f.write_str("job key mismatch: this member has a job key and the peer has none")
            }
            Refusal::KeyRequired => f.write_str(
                "this job requires a key: the peer has a job key and this member has none \
                 (pass it with --key-file, DAC_KEY_FILE or CommBuilder::key_file)",
            ),
            Refusal::NotAllowed => f.write_str("the peer is not on this member's allow-list"),
            Refusal::NotAllowedThere => f.write_str(
                "this member is not on the peer's allow-list (its peer id must be added there)",
            ),
            Refusal::NotDac(what) => write!(f, "the peer is not a dac member: {what}"),
        }
    }
}

/// The error of a connection the gate stopped.
#[derive(Debug)]
pub(crate) enum GateError {
    /// The secure channel under the gate failed.
    Secure(Box<dyn std::error::Error + Send + Sync>),
    /// The gate refused the peer.
    Refused { peer: PeerId, why: Refusal },
    /// The connection failed during the gate.
    Io(std::io::Error),
}

impl fmt::Display for GateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GateError::Secure(e) => write!(f, "handshake: {e}"),
            GateError::Refused { peer, why } => write!(f, "peer {peer} refused: {why}"),
            GateError::Io(e) => write!(f, "access check: {e}"),
        }
    }
}

impl std::error::Error for GateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GateError::Secure(e) => Some(e.as_ref()),
            GateError::Io(e) => Some(e),
            GateError::Refused { .. } => None,
        }
    }
}

/// The refusal somewhere in an error's chain, if any. `io::Error` hides
/// the error it wraps from `source()`, so it is unwrapped by hand.
pub(crate) fn refusal_in(error: &(dyn std::error::Error + 'static)) -> Option<(PeerId, Refusal)> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(GateError::Refused { peer, why }) = e.downcast_ref::<GateError>() {
            return Some((*peer, why.clone()));
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && let Some(found) = refusal_in(inner)
        {
            return Some(found);
        }
        next = e.source();
    }
    None
}

const MAGIC: &[u8; 4] = b"dacG";
const GATE_VERSION: u8 = 1;
const HAS_KEY: u8 = 1;
const ADMIT: u8 = 0xa5;
const NOT_ALLOWED: u8 = 0x5a;
const HELLO: usize = 4 + 1 + 1 + 32;
const CONTEXT: &[u8] = b"dac job key proof v1";

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The access settings of one member, shared by its connections.
#[derive(Debug, Default)]
pub(crate) struct Access {
    pub(crate) key: Option<JobKey>,
    /// The only peers admitted, if set.
    allow: Option<HashSet<PeerId>>,
    /// The last connection the gate refused, for error messages.
    last_refusal: Mutex<Option<(PeerId, Refusal)>>,
}

impl Access {
    pub(crate) fn new(key: Option<JobKey>, allow: Option<HashSet<PeerId>>) -> Access {
        Access {
            key,
            allow,
            last_refusal: Mutex::new(None),
        }
    }

    /// The last peer the gate refused, and why.
    pub(crate) fn last_refusal(&self) -> Option<(PeerId, Refusal)> {
        self.last_refusal.lock().ok().and_then(|l| l.clone())
    }

    fn refuse(&self, peer: PeerId, why: Refusal) -> GateError {
        if let Ok(mut last) = self.last_refusal.lock() {
            *last = Some((peer, why.clone()));
        }
        GateError::Refused { peer, why }
    }

    /// The MAC of one side's tag, before it is finalised or verified.
    fn mac(key: &JobKey, role: u8, ids: [&PeerId; 2], nonces: [&[u8]; 2]) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&key.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(CONTEXT);
        mac.update(&[role]);
        for id in ids {
            let bytes = id.to_bytes();
            mac.update(&(bytes.len() as u32).to_le_bytes());
            mac.update(&bytes);
        }
        for nonce in nonces {
            mac.update(nonce);
        }
        mac
    }

    /// Runs the gate on a fresh secure channel to `remote`.
    async fn check<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        channel: &mut S,
        local: PeerId,
        remote: PeerId,
        dialer: bool,
    ) -> std::result::Result<(), GateError> {
        let nonce: [u8; 32] = rand::random();
        let mut hello = [0u8; HELLO];
        hello[..4].copy_from_slice(MAGIC);
        hello[4] = GATE_VERSION;
        hello[5] = if self.key.is_some() { HAS_KEY } else { 0 };
        hello[6..].copy_from_slice(&nonce);
        channel.write_all(&hello).await.map_err(GateError::Io)?;
        channel.flush().await.map_err(GateError::Io)?;
        let mut theirs = [0u8; HELLO];
        channel
            .read_exact(&mut theirs)
            .await
            .map_err(GateError::Io)?;
        if &theirs[..4] != MAGIC {
            return Err(self.refuse(remote, Refusal::NotDac("no access hello".into())));
        }
        if theirs[4] != GATE_VERSION {
            let why = format!("access protocol {}, expected {GATE_VERSION}", theirs[4]);
            return Err(self.refuse(remote, Refusal::NotDac(why)));
        }
        let they_have_key = theirs[5] & HAS_KEY != 0;
        match (&self.key, they_have_key) {
            (None, false) => {}
            (None, true) => return Err(self.refuse(remote, Refusal::KeyRequired)),
            (Some(_), false) => return Err(self.refuse(remote, Refusal::PeerHasNoKey)),
            (Some(key), true) => {
                self.prove(
                    channel,
                    key,
                    [local, remote],
                    [&nonce, &theirs[6..]],
                    dialer,
                )
                .await?;
            }
        }
        let admitted = self.allow.as_ref().is_none_or(|a| a.contains(&remote));
        let verdict = if admitted { ADMIT } else { NOT_ALLOWED };
        channel.write_all(&[verdict]).await.map_err(GateError::Io)?;
        channel.flush().await.map_err(GateError::Io)?;
        let mut theirs = [0u8; 1];
        channel
            .read_exact(&mut theirs)
            .await
            .map_err(GateError::Io)?;
        match (admitted, theirs[0]) {
            (false, _) => Err(self.refuse(remote, Refusal::NotAllowed)),
            (true, ADMIT) => Ok(()),
            (true, NOT_ALLOWED) => Err(self.refuse(remote, Refusal::NotAllowedThere)),
            (true, other) => {
                let why = format!("an access verdict of {other:#x}");
                Err(self.refuse(remote, Refusal::NotDac(why)))
            }
        }
    }

    /// Both sides hold a key: each proves it with a tag over both peer
    /// ids (`[local, remote]`) and both nonces (`[ours, theirs]`).
    async fn prove<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        channel: &mut S,
        key: &JobKey,
        [local, remote]: [PeerId; 2],
        [ours, theirs]: [&[u8]; 2],
        dialer: bool,
    ) -> std::result::Result<(), GateError> {
        let (ids, nonces, mine, other) = if dialer {
            ([&local, &remote], [ours, theirs], b'D', b'L')
        } else {
            ([&remote, &local], [theirs, ours], b'L', b'D')
        };
        let tag: [u8; 32] = Access::mac(key, mine, ids, nonces)
            .finalize()
            .into_bytes()
            .into();
        channel.write_all(&tag).await.map_err(GateError::Io)?;
        channel.flush().await.map_err(GateError::Io)?;
        let mut their_tag = [0u8; 32];
        channel
            .read_exact(&mut their_tag)
            .await
            .map_err(GateError::Io)?;
        // `verify_slice` compares in constant time.
        Access::mac(key, other, ids, nonces)
            .verify_slice(&their_tag)
            .map_err(|_| self.refuse(remote, Refusal::KeyMismatch))
    }
}

/// The gate as a libp2p upgrade around the secure channel `U` (noise).
#[derive(Clone)]
pub(crate) struct Gate<U> {
    pub(crate) inner: U,
    pub(crate) local: PeerId,
    pub(crate) access: Arc<Access>,
}

impl<U: UpgradeInfo> UpgradeInfo for Gate<U> {
    type Info = U::Info;
    type InfoIter = U::InfoIter;
    fn protocol_info(&self) -> Self::InfoIter {
        self.inner.protocol_info()
    }
}

type GateFuture<S> =
    Pin<Box<dyn Future<Output = std::result::Result<(PeerId, S), GateError>> + Send>>;

async fn gated<S, E>(
    secured: impl Future<Output = std::result::Result<(PeerId, S), E>>,
    local: PeerId,
    access: Arc<Access>,
    dialer: bool,
) -> std::result::Result<(PeerId, S), GateError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    E: std::error::Error + Send + Sync + 'static,
{
    let (remote, mut channel) = secured.await.map_err(|e| GateError::Secure(Box::new(e)))?;
    access.check(&mut channel, local, remote, dialer).await?;
    Ok((remote, channel))
}

impl<T, U, S> InboundConnectionUpgrade<T> for Gate<U>
where
    U: InboundConnectionUpgrade<T, Output = (PeerId, S)>,
    U::Future: Send + 'static,
    U::Error: std::error::Error + Send + Sync + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Output = (PeerId, S);
    type Error = GateError;
    type Future = GateFuture<S>;
    fn upgrade_inbound(self, socket: T, info: Self::Info) -> Self::Future {
        let secured = self.inner.upgrade_inbound(socket, info);
        Box::pin(gated(secured, self.local, self.access, false))
    }
}

impl<T, U, S> OutboundConnectionUpgrade<T> for Gate<U>
where
    U: OutboundConnectionUpgrade<T, Output = (PeerId, S)>,
    U::Future: Send + 'static,
    U::Error: std::error::Error + Send + Sync + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Output = (PeerId, S);
    type Error = GateError;
    type Future = GateFuture<S>;
    fn upgrade_outbound(self, socket: T, info: Self::Info) -> Self::Future {
        let secured = self.inner.upgrade_outbound(socket, info);
        Box::pin(gated(secured, self.local, self.access, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory, removed when dropped (a failed test included).
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("dac-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Only the owner may read or write `path`.
    fn assert_private(path: &Path) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
    }

    const HEX: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";

    #[test]
    fn a_bad_key_file_is_named_once() {
        let scratch = Scratch::new("badkey");
        let dir = &scratch.0;
        let path = dir.join("job.key");
        std::fs::write(&path, "xyz").unwrap();
        let err = JobKey::read(&path).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "invalid configuration: key in {} is not a valid job key: expected 64 hex \
                 digits, found 3 characters that are not all hex digits",
                path.display()
            )
        );
    }

    #[test]
    fn keys_parse_in_both_formats_and_never_print() {
        let plain = JobKey::parse(HEX).unwrap();
        let old = JobKey::parse(&format!("/key/swarm/psk/1.0.0/\n/base16/\n{HEX}\n")).unwrap();
        assert_eq!(plain, old);
        assert_eq!(plain.to_hex(), HEX);
        assert_eq!(format!("{plain:?}"), "JobKey(…)");
        for bad in [
            "",
            "xyz",
            &HEX[..10],
            &format!("{HEX}00"),
            &format!("{HEX}\n{HEX}"),
        ] {
            let err = JobKey::parse(bad).unwrap_err().to_string();
            assert!(err.contains("not a valid job key"), "{bad:?}: {err}");
            assert!(!err.contains(&HEX[..16]), "the key is echoed: {err}");
        }
    }

    #[test]
    fn a_created_key_file_is_private_and_never_overwritten() {
        let scratch = Scratch::new("key");
        let dir = &scratch.0;
        let path = dir.join("job.key");
        let key = JobKey::create(&path).unwrap();
        assert_eq!(JobKey::read(&path).unwrap(), key);
        assert_private(&path);
        assert!(JobKey::create(&path).is_err());
        assert_eq!(JobKey::read(&path).unwrap(), key);
    }

    /// Runs the gate on both ends of an in-memory pipe.
    async fn meet(a: Option<JobKey>, b: Option<JobKey>) -> [std::result::Result<(), String>; 2] {
        use tokio_util::compat::TokioAsyncReadCompatExt;
        let (x, y) = tokio::net::UnixStream::pair().unwrap();
        let (mut x, mut y) = (x.compat(), y.compat());
        let (pa, pb) = (PeerId::random(), PeerId::random());
        let (ga, gb) = (Access::new(a, None), Access::new(b, None));
        let (ra, rb) = futures::join!(
            ga.check(&mut x, pa, pb, true),
            gb.check(&mut y, pb, pa, false)
        );
        [ra, rb].map(|r| r.map_err(|e| e.to_string()))
    }

    #[tokio::test]
    async fn an_allow_list_admits_only_its_peers_and_says_so_to_both() {
        use tokio_util::compat::TokioAsyncReadCompatExt;
        let (pa, pb) = (PeerId::random(), PeerId::random());
        for (allow, expect_b) in [
            (Some(pa), true),
            (Some(PeerId::random()), false),
            (None, true),
        ] {
            let (x, y) = tokio::net::UnixStream::pair().unwrap();
            let (mut x, mut y) = (x.compat(), y.compat());
            let ga = Access::new(None, None);
            let gb = Access::new(None, allow.map(|p| [p].into_iter().collect()));
            let (ra, rb) = futures::join!(
                ga.check(&mut x, pa, pb, true),
                gb.check(&mut y, pb, pa, false)
            );
            if expect_b {
                assert!(ra.is_ok() && rb.is_ok(), "{ra:?} {rb:?}");
            } else {
                let (a, b) = (ra.unwrap_err().to_string(), rb.unwrap_err().to_string());
                assert!(
                    a.contains("this member is not on the peer's allow-list"),
                    "{a}"
                );
                assert!(
                    b.contains("the peer is not on this member's allow-list"),
                    "{b}"
                );
            }
        }
    }

    #[test]
    fn an_identity_file_keeps_its_peer_id_and_is_private() {
        let scratch = Scratch::new("identity");
        let dir = &scratch.0;
        let path = dir.join("id");
        let first = identity(&path).unwrap();
        let again = identity(&path).unwrap();
        assert_eq!(first, again);
        assert_private(&path);
        std::fs::write(&path, b"not a key").unwrap();
        let err = identity(&path).unwrap_err().to_string();
        assert!(err.contains("is not an identity file"), "{err}");
    }

    #[tokio::test]
    async fn the_gate_admits_equal_keys_and_names_every_mismatch() {
        let k = JobKey::random();
        let other = JobKey::random();
        assert_eq!(meet(None, None).await, [Ok(()), Ok(())]);
        assert_eq!(
            meet(Some(k.clone()), Some(k.clone())).await,
            [Ok(()), Ok(())]
        );
        let [a, b] = meet(Some(k.clone()), Some(other)).await;
        for r in [a, b] {
            let e = r.unwrap_err();
            assert!(
                e.contains("job key mismatch: the peer holds a different"),
                "{e}"
            );
        }
        let [a, b] = meet(Some(k), None).await;
        assert!(a.unwrap_err().contains("the peer has none"));
        assert!(b.unwrap_err().contains("this job requires a key"));
    }
}
