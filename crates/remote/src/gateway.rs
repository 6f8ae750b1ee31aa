//! The pool's side: an iroh endpoint under the pool's own key, handing each stream a device
//! opens to the coordinator in this process, with the address it stands for, within bounds on
//! connections and streams.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use iroh::endpoint::{Connection, RecvStream, SendStream};
use iroh::{Endpoint, EndpointId, RelayMap, RelayMode, SecretKey, Watcher};
use rand::RngExt;
use tokio::sync::{Mutex, mpsc};

use crate::{
    ALPN, CONNECTIONS_MAX, CONNECTIONS_PER_PEER_MAX, PoolAddress, RelayLink, RemoteError,
    STREAMS_PER_CONNECTION_MAX,
};

/// How long a gateway waits for its endpoint to know an address of its own at start.
const ADDRESS_WAIT: Duration = Duration::from_secs(5);

/// A stream a device opened: bytes both ways, HTTPS to the coordinator inside.
pub type Carried = tokio::io::Join<RecvStream, SendStream>;

/// A stream as the gateway hands it on, and the address it stands for: the device's own
/// where the connection goes straight to it, else one only its key gives ([`key_address`]).
pub struct Arrival {
    pub stream: Carried,
    pub origin: SocketAddr,
}

/// The address a device reached only through a relay stands for: in fd00::/8 (unique local,
/// never routed), its first 56 bits the device's key's, so each device counts as a source and
/// a network of its own, as far as the coordinator's limits and replicas go.
pub fn key_address(device: EndpointId) -> SocketAddr {
    let mut octets = [0u8; 16];
    octets[0] = 0xfd;
    octets[1..8].copy_from_slice(&device.as_bytes()[..7]);
    SocketAddr::new(Ipv6Addr::from(octets).into(), 0)
}

/// The pool's remote endpoint; dropping it stops it.
pub struct Gateway {
    endpoint: Endpoint,
    relay: Option<RelayLink>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// How QUIC notices a path that died (a relay down, a network gone): a keep-alive every
/// 2 s, and the connection closed after 10 s without an answer, so a device says it lost the
/// pool and connects again rather than waiting on a dead connection.
///
/// A side that `accepts_streams` (the pool's) takes at most [`STREAMS_PER_CONNECTION_MAX`] at
/// once on each connection; a device's side takes none, and neither takes one-way streams.
pub(crate) fn transport(accepts_streams: bool) -> iroh::endpoint::QuicTransportConfig {
    use iroh::endpoint::VarInt;
    let idle: iroh::endpoint::IdleTimeout = VarInt::from_u32(10_000).into();
    let streams = if accepts_streams {
        STREAMS_PER_CONNECTION_MAX
    } else {
        0
    };
    iroh::endpoint::QuicTransportConfig::builder()
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(Duration::from_secs(2))
        .max_concurrent_bidi_streams(VarInt::from_u32(streams))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .build()
}

/// An endpoint's builder for the pool's remote path: through `relay` where there is one,
/// which tells it the address the internet sees it at (QUIC address discovery, on the relay's
/// host at iroh's port 7842) so holes can be punched, its certificate checked by the pinned
/// fingerprint where the relay has one, else by the public authorities.
pub(crate) fn endpoint_builder(
    relay: Option<&RelayLink>,
    accepts_streams: bool,
) -> iroh::endpoint::Builder {
    let mut builder = Endpoint::builder(iroh::endpoint::presets::Minimal)
        .transport_config(transport(accepts_streams))
        .relay_mode(match relay {
            Some(relay) => RelayMode::Custom(RelayMap::from(relay.url.clone())),
            None => RelayMode::Disabled,
        });
    if let Some(fingerprint) = relay.and_then(|relay| relay.fingerprint) {
        let pinned = move |provider: Arc<rustls::crypto::CryptoProvider>| {
            Ok(client::pinned::verifier(fingerprint, &provider))
        };
        builder = builder.ca_tls_config(iroh::tls::CaTlsConfig::custom_server_cert_verifier(
            Arc::new(pinned),
        ));
    }
    builder
}

impl Gateway {
    /// Serves the pool under the key kept in `key_file` (made on first start), on UDP `bind`,
    /// reachable through `relay` where given, handing every stream to `deliver` (waiting while
    /// it is full: the coordinator takes no more connections than it has room for).
    pub async fn start(
        key_file: &Path,
        bind: SocketAddr,
        relay: Option<RelayLink>,
        deliver: mpsc::Sender<Arrival>,
    ) -> Result<Gateway, RemoteError> {
        let key = load_or_create_key(key_file)?;
        let endpoint = endpoint_builder(relay.as_ref(), true)
            .secret_key(key)
            .alpns(vec![ALPN.to_vec()])
            .bind_addr(bind)
            .map_err(|error| RemoteError::Bind(error.to_string()))?
            .bind()
            .await
            .map_err(|error| RemoteError::Bind(error.to_string()))?;
        let accepting = tokio::spawn(accept(endpoint.clone(), deliver));
        Ok(Gateway {
            endpoint,
            relay,
            accepting,
        })
    }

    /// The UDP sockets the endpoint listens on.
    pub fn bound(&self) -> Vec<SocketAddr> {
        self.endpoint.bound_sockets()
    }

    /// The address devices reach the pool by: its key, its relay, and the direct addresses
    /// its endpoint knows once it knows some (within a few seconds of its start).
    pub async fn address(&self) -> PoolAddress {
        let mut watched = self.endpoint.watch_addr();
        let known = async {
            loop {
                let addr = watched.get();
                if addr.ip_addrs().next().is_some() {
                    return addr;
                }
                if watched.updated().await.is_err() {
                    return self.endpoint.addr();
                }
            }
        };
        let addr = tokio::time::timeout(ADDRESS_WAIT, known)
            .await
            .unwrap_or_else(|_| self.endpoint.addr());
        PoolAddress {
            id: self.endpoint.id(),
            relay: self.relay.clone(),
            direct: addr.ip_addrs().copied().take(8).collect(),
        }
    }
}

fn load_or_create_key(path: &Path) -> Result<SecretKey, RemoteError> {
    let kept = |source| RemoteError::Key {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
                kept(std::io::Error::other(
                    "it is not 32 bytes; move it away and a new key is made (devices must join again)",
                ))
            })?;
            Ok(SecretKey::from_bytes(&bytes))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let bytes: [u8; 32] = rand::rng().random();
            write_secret(path, &bytes).map_err(kept)?;
            Ok(SecretKey::from_bytes(&bytes))
        }
        Err(error) => Err(kept(error)),
    }
}

fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// Connections open now, per device.
type Open = Arc<Mutex<HashMap<EndpointId, usize>>>;

async fn accept(endpoint: Endpoint, deliver: mpsc::Sender<Arrival>) {
    let open: Open = Arc::default();
    while let Some(incoming) = endpoint.accept().await {
        let (open, deliver) = (Arc::clone(&open), deliver.clone());
        tokio::spawn(async move {
            let connection = match incoming.await {
                Ok(connection) => connection,
                Err(error) => return tracing::debug!(%error, "a remote connection failed"),
            };
            let peer = connection.remote_id();
            if !admit(&open, peer).await {
                tracing::warn!(%peer, "a remote device has too many connections open; refused");
                return connection.close(1u32.into(), b"too many connections");
            }
            hand_on_streams(connection, deliver).await;
            let mut open = open.lock().await;
            if let Some(count) = open.get_mut(&peer) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&peer);
                }
            }
        });
    }
}

async fn admit(open: &Open, peer: EndpointId) -> bool {
    let mut open = open.lock().await;
    let total: usize = open.values().sum();
    let mine = open.entry(peer).or_default();
    if total >= CONNECTIONS_MAX || *mine >= CONNECTIONS_PER_PEER_MAX {
        return false;
    }
    *mine += 1;
    true
}

/// Each stream of `connection` is handed on as one connection to the coordinator.
async fn hand_on_streams(connection: Connection, deliver: mpsc::Sender<Arrival>) {
    while let Ok((send, recv)) = connection.accept_bi().await {
        let arrival = Arrival {
            stream: tokio::io::join(recv, send),
            origin: origin(&connection),
        };
        if deliver.send(arrival).await.is_err() {
            return; // The coordinator stopped.
        }
    }
}

/// The address `connection`'s device stands for now: where its direct path comes from, if
/// that is the path in use, else its [`key_address`].
fn origin(connection: &Connection) -> SocketAddr {
    let paths = connection.paths();
    let direct = paths
        .iter()
        .filter(|path| path.is_selected())
        .find_map(|path| match path.remote_addr() {
            iroh::TransportAddr::Ip(addr) => Some(*addr),
            _ => None,
        });
    direct.unwrap_or_else(|| key_address(connection.remote_id()))
}
