//! A device's side: a loopback port whose every connection is carried, as one QUIC stream, to
//! the pool named by its address. Clients talk HTTPS to the port as to the coordinator itself,
//! pinned to its certificate. The same, on a public port, carries phones' browsers to a pool
//! that has no public address (`Tunnel::forward`).

use std::net::SocketAddr;
use std::sync::Arc;

use iroh::endpoint::Connection;
use iroh::{Endpoint, Watcher};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::gateway::endpoint_builder;
use crate::{ALPN, PoolAddress, RemoteError};

/// How long a connection to the pool may take to open.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The tunnel to one pool; dropping it closes the port.
pub struct Tunnel {
    local: SocketAddr,
    link: Arc<Link>,
    carrying: tokio::task::JoinHandle<()>,
}

/// How long [`Tunnel::path`] waits for a hole to be punched before it reports the relay.
const DIRECT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How a tunnel reaches its pool now.
#[derive(Debug, Clone, PartialEq)]
pub struct PathReport {
    /// Straight to the pool, rather than through a relay.
    pub direct: bool,
    /// The pool's address or the relay's URL.
    pub through: String,
    pub rtt_ms: f64,
    /// The address the relay sees this device at, and the port it uses here: a router that
    /// keeps the port maps every destination alike, so holes can be punched through it.
    pub seen_at: Option<(SocketAddr, u16)>,
}

impl std::fmt::Display for PathReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.direct {
            "direct to"
        } else {
            "through the relay"
        };
        write!(
            f,
            "{how} {}, round trip {:.1} ms",
            self.through, self.rtt_ms
        )?;
        match self.seen_at {
            Some((seen, local_port)) if seen.port() == local_port => write!(
                f,
                "; the relay sees this device at {seen}, its router keeping the port"
            ),
            Some((seen, _)) => write!(
                f,
                "; the relay sees this device at {seen}, its router changing the port (a \
                 router that gives each destination a port of its own lets no hole through)"
            ),
            None if self.direct => Ok(()),
            None => write!(
                f,
                "; no relay told this device its public address, so no hole could be punched \
                 (the pool's relay needs its --relay-fingerprint, or answers no address discovery)"
            ),
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.carrying.abort();
    }
}

/// The connection to the pool, made again when it was lost.
struct Link {
    endpoint: Endpoint,
    pool: PoolAddress,
    connection: Mutex<Option<Connection>>,
}

impl Link {
    async fn connection(&self) -> Result<Connection, RemoteError> {
        let mut held = self.connection.lock().await;
        if let Some(connection) = held.as_ref()
            && connection.close_reason().is_none()
        {
            return Ok(connection.clone());
        }
        let connect = self.endpoint.connect(self.pool.endpoint_addr(), ALPN);
        let failed = |message: String| RemoteError::Connect {
            pool: self.pool.id.to_string(),
            message,
        };
        let why = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(connection)) => {
                *held = Some(connection.clone());
                return Ok(connection);
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer in {} s", CONNECT_TIMEOUT.as_secs()),
        };
        Err(failed(match self.pool.relay {
            Some(_) => why,
            None => format!(
                "{why}, and the address names no relay: a device behind a strict NAT reaches \
                 the pool only through one (its owner adds --relay)"
            ),
        }))
    }
}

impl Tunnel {
    /// Opens the port and connects to `pool` (at once, so an unreachable pool is said now).
    pub async fn open(pool: PoolAddress) -> Result<Tunnel, RemoteError> {
        let tunnel = Self::open_lazily(pool).await?;
        tunnel.link.connection().await?;
        Ok(tunnel)
    }

    /// Opens the port without connecting: the first connection to it connects, and one that
    /// finds the pool out of reach is closed, so an agent started while its pool is offline
    /// waits for it as it would on the LAN.
    pub async fn open_lazily(pool: PoolAddress) -> Result<Tunnel, RemoteError> {
        Self::open_lazily_on(pool, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// [`Tunnel::open`] on loopback `port` (0: any free one), for a browser, which keeps what
    /// it stores per port.
    pub async fn open_at(pool: PoolAddress, port: u16) -> Result<Tunnel, RemoteError> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], port));
        let tunnel = Self::open_lazily_on(pool, loopback).await?;
        tunnel.link.connection().await?;
        Ok(tunnel)
    }

    /// A tunnel that listens on `listen`, any address, connecting when first used: a public
    /// port that carries browsers' HTTPS (TLS with the pool's own certificate, end to end) to
    /// a pool that has no public address of its own.
    pub async fn forward(pool: PoolAddress, listen: SocketAddr) -> Result<Tunnel, RemoteError> {
        Self::open_lazily_on(pool, listen).await
    }

    async fn open_lazily_on(pool: PoolAddress, listen: SocketAddr) -> Result<Tunnel, RemoteError> {
        let endpoint = endpoint_builder(pool.relay.as_ref(), false)
            .bind()
            .await
            .map_err(|error| RemoteError::Bind(error.to_string()))?;
        let link = Arc::new(Link {
            endpoint,
            pool,
            connection: Mutex::new(None),
        });
        let listener = TcpListener::bind(listen)
            .await
            .map_err(RemoteError::Listen)?;
        let local = listener.local_addr().map_err(RemoteError::Listen)?;
        let carrying = tokio::spawn(carry(listener, Arc::clone(&link)));
        Ok(Tunnel {
            local,
            link,
            carrying,
        })
    }

    /// The path the connection to the pool takes (connecting again if it was lost): a direct
    /// one if a hole is punched within a few seconds, else the relay.
    pub async fn path(&self) -> Result<PathReport, RemoteError> {
        let connection = self.link.connection().await?;
        let deadline = tokio::time::Instant::now() + DIRECT_WAIT;
        loop {
            let report = self.selected_path(&connection)?;
            if report.direct || tokio::time::Instant::now() >= deadline {
                return Ok(report);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    fn selected_path(&self, connection: &Connection) -> Result<PathReport, RemoteError> {
        let paths = connection.paths();
        let selected = paths.iter().find(|path| path.is_selected());
        let Some(path) = selected.or_else(|| paths.iter().next()) else {
            return Err(RemoteError::Connect {
                pool: self.link.pool.id.to_string(),
                message: "the connection has no path yet".to_owned(),
            });
        };
        let through = match path.remote_addr() {
            iroh::TransportAddr::Ip(addr) => addr.to_string(),
            iroh::TransportAddr::Relay(url) => url.to_string(),
            other => format!("{other:?}"),
        };
        let endpoint = &self.link.endpoint;
        let seen = endpoint
            .net_report()
            .get()
            .and_then(|report| report.global_v4);
        let local_port = endpoint.bound_sockets().first().map(SocketAddr::port);
        Ok(PathReport {
            direct: path.is_ip(),
            through,
            rtt_ms: path.rtt().as_secs_f64() * 1000.0,
            seen_at: seen.zip(local_port).map(|(seen, port)| (seen.into(), port)),
        })
    }

    /// The URL that reaches the pool's coordinator through the tunnel.
    pub fn url(&self) -> String {
        format!("https://{}", self.local)
    }
}

/// Connections a tunnel carries at once; more wait in the listener's backlog. The pool's side
/// holds each connection to fewer streams still (`STREAMS_PER_CONNECTION_MAX`).
const CARRIED_MAX: usize = 64;

async fn carry(listener: TcpListener, link: Arc<Link>) {
    let room = Arc::new(tokio::sync::Semaphore::new(CARRIED_MAX));
    loop {
        let Ok(permit) = Arc::clone(&room).acquire_owned().await else {
            return;
        };
        let Ok((mut tcp, _)) = listener.accept().await else {
            return;
        };
        let link = Arc::clone(&link);
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            let streams = match link.connection().await {
                Ok(connection) => connection.open_bi().await.map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            };
            match streams {
                Ok((send, recv)) => {
                    let mut stream = tokio::io::join(recv, send);
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut stream).await;
                }
                Err(error) => tracing::warn!(%error, "cannot reach the pool remotely"),
            }
        });
    }
}
