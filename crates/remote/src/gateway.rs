//! The pool's side: an iroh endpoint under the pool's own key, carrying each stream a device
//! opens to the coordinator's listener, within bounds on connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use iroh::endpoint::Connection;
use iroh::{Endpoint, EndpointId, RelayMap, RelayMode, SecretKey, Watcher};
use rand::RngExt;
use tokio::sync::Mutex;

use crate::{ALPN, CONNECTIONS_MAX, CONNECTIONS_PER_PEER_MAX, PoolAddress, RelayLink, RemoteError};

/// How long a gateway waits for its endpoint to know an address of its own at start.
const ADDRESS_WAIT: Duration = Duration::from_secs(5);

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
pub(crate) fn transport() -> iroh::endpoint::QuicTransportConfig {
    let idle: iroh::endpoint::IdleTimeout = iroh::endpoint::VarInt::from_u32(10_000).into();
    iroh::endpoint::QuicTransportConfig::builder()
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(Duration::from_secs(2))
        .build()
}

/// An endpoint's builder for the pool's remote path: through `relay` where there is one,
/// which tells it the address the internet sees it at (QUIC address discovery, on the relay's
/// host at iroh's port 7842) so holes can be punched, its certificate checked by the pinned
/// fingerprint where the relay has one, else by the public authorities.
pub(crate) fn endpoint_builder(relay: Option<&RelayLink>) -> iroh::endpoint::Builder {
    let mut builder = Endpoint::builder(iroh::endpoint::presets::Minimal)
        .transport_config(transport())
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
    /// reachable through `relay` where given, carrying every stream to `forward_to`.
    pub async fn start(
        key_file: &Path,
        bind: SocketAddr,
        relay: Option<RelayLink>,
        forward_to: SocketAddr,
    ) -> Result<Gateway, RemoteError> {
        let key = load_or_create_key(key_file)?;
        let endpoint = endpoint_builder(relay.as_ref())
            .secret_key(key)
            .alpns(vec![ALPN.to_vec()])
            .bind_addr(bind)
            .map_err(|error| RemoteError::Bind(error.to_string()))?
            .bind()
            .await
            .map_err(|error| RemoteError::Bind(error.to_string()))?;
        let accepting = tokio::spawn(accept(endpoint.clone(), forward_to));
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

async fn accept(endpoint: Endpoint, forward_to: SocketAddr) {
    let open: Open = Arc::default();
    while let Some(incoming) = endpoint.accept().await {
        let open = Arc::clone(&open);
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
            carry_streams(connection, forward_to).await;
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

/// Each stream of `connection` becomes one TCP connection to the coordinator.
async fn carry_streams(connection: Connection, forward_to: SocketAddr) {
    while let Ok((send, recv)) = connection.accept_bi().await {
        tokio::spawn(async move {
            let mut stream = tokio::io::join(recv, send);
            match tokio::net::TcpStream::connect(forward_to).await {
                Ok(mut tcp) => {
                    let _ = tcp.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot reach the coordinator for a remote device")
                }
            }
        });
    }
}
