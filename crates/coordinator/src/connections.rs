//! Accepting connections, plain or TLS, and serving them with hyper's HTTP/1 connection (or
//! HTTP/2, where TLS negotiates it) and the axum router, within bounds that a stranger on the
//! network cannot push past. An HTTP/2 connection carries at most `H2_STREAMS_MAX` requests at
//! once; the bounds below count its requests in flight as they do HTTP/1's.
//!
//! Authentication is per request, so a connection is anonymous until it sends one. The bounds:
//! - At most `connections_max` connections are open, well under the process's open-files limit
//!   (which is raised to its hard limit first): each may hold a blob file besides its socket, and
//!   the store and the runtime keep some files of their own. At the cap, no more are accepted
//!   until one closes; they wait in the listener's backlog.
//! - A connection must finish its TLS handshake and its first request's headers within the
//!   header timeout of being accepted, and later requests' headers within the header timeout of
//!   their first byte. A connection with no request in flight and no bytes of a next one closes
//!   after the idle timeout. Requests in flight (long-polls included) are never timed out here.
//! - When fewer than an eighth of the slots are free, connections with no request in flight are
//!   closed to make room, those that never made an authenticated request first (half-sent,
//!   handshaking, anonymous or idle), and the longest idle first among them. So connections of
//!   nodes and requesters, which authenticate on their first request, are the last to go: that
//!   is the reserve for node and owner traffic. A request in flight is never cut off.
//!
//! Connections come from the TCP listener and from the rest of the process ([`Listener`]:
//! the remote path hands in each stream a device opens, with the address it stands for). Both
//! kinds take the same slots, deadlines and TLS.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

/// How long stopping waits for open connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Open files kept aside from connections: the database and its journal, the blob store's
/// directories, the listener, the runtime and logs.
const FILES_RESERVED: u64 = 256;
/// Bounds on the derived connection cap.
const CONNECTIONS_FLOOR: usize = 16;
const CONNECTIONS_CEILING: usize = 16_384;
/// How often the accept loop looks again for connections to shed while every slot is taken.
const SHED_RETRY: Duration = Duration::from_millis(500);
/// Requests one HTTP/2 connection may have in flight at once: a browser's app and its lending
/// tabs' long-polls with room to spare, not a way around the connection cap.
const H2_STREAMS_MAX: u32 = 32;

/// How many connections the coordinator keeps open and for how long they may sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; `None` derives it from the open-files limit.
    pub connections_max: Option<usize>,
    /// Time to finish the TLS handshake and a request's headers.
    pub header_timeout_ms: u64,
    /// Time a connection with no request in flight stays open.
    pub idle_timeout_ms: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            connections_max: None,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
        }
    }
}

/// [`ConnectionLimits`] resolved for serving.
#[derive(Debug, Clone, Copy)]
struct Limits {
    connections_max: usize,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl Limits {
    fn resolve(limits: &ConnectionLimits) -> Self {
        // Raised whatever the cap: blob files and the store need descriptors too.
        let open_files_max = raise_open_files_limit();
        let connections_max = limits
            .connections_max
            .unwrap_or_else(|| connections_max_for(open_files_max))
            .max(1);
        tracing::info!(
            connections_max,
            open_files_max = open_files_max.unwrap_or(u64::MAX),
            "accepting connections"
        );
        Self {
            connections_max,
            header_timeout: Duration::from_millis(limits.header_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(limits.idle_timeout_ms.max(1)),
        }
    }

    /// Free slots below which idle connections are shed.
    fn headroom(&self) -> usize {
        (self.connections_max / 8).max(1)
    }
}

/// Raises the soft limit on open files to the hard limit; the soft limit after (`None`: none).
fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(%error, "cannot raise the open files limit; fewer connections fit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Connections that fit `open_files_max`: two files each (its socket and a blob it streams).
fn connections_max_for(open_files_max: Option<u64>) -> usize {
    let Some(open_files_max) = open_files_max else {
        return CONNECTIONS_CEILING;
    };
    let fitting = open_files_max.saturating_sub(FILES_RESERVED) / 2;
    usize::try_from(fitting)
        .unwrap_or(usize::MAX)
        .clamp(CONNECTIONS_FLOOR, CONNECTIONS_CEILING)
}

/// Where a connection stands, for its timeouts and for shedding.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No request in flight since `since`; `header_since` is when the next request's first
    /// bytes came (a new connection is taken to be sending from the start).
    Waiting {
        since: Instant,
        header_since: Option<Instant>,
    },
    /// Requests in flight, their responses being made or sent.
    Busy(u32),
}

#[derive(Debug)]
struct ConnState {
    phase: Phase,
    /// It made a request with credentials that were not refused.
    authenticated: bool,
    /// It was picked to be shed and has not yet acted on it.
    shedding: bool,
}

/// One open connection, shared between its task and the registry.
#[derive(Debug)]
struct Conn {
    state: Mutex<ConnState>,
    shed: Notify,
}

impl Conn {
    fn new(now: Instant) -> Self {
        Self {
            state: Mutex::new(ConnState {
                phase: Phase::Waiting {
                    since: now,
                    header_since: Some(now),
                },
                authenticated: false,
                shedding: false,
            }),
            shed: Notify::new(),
        }
    }

    fn saw_bytes(&self, now: Instant) {
        let mut state = self.state.lock();
        if let Phase::Waiting {
            header_since: header_since @ None,
            ..
        } = &mut state.phase
        {
            *header_since = Some(now);
        }
    }

    fn begin(&self) {
        let mut state = self.state.lock();
        state.phase = match state.phase {
            Phase::Waiting { .. } => Phase::Busy(1),
            Phase::Busy(requests) => Phase::Busy(requests + 1),
        };
    }

    fn end(&self, now: Instant) {
        let mut state = self.state.lock();
        state.phase = match state.phase {
            Phase::Busy(requests) if requests > 1 => Phase::Busy(requests - 1),
            _ => Phase::Waiting {
                since: now,
                header_since: None,
            },
        };
    }

    /// When the connection runs out of time unless something happens; `None` while busy.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        match self.state.lock().phase {
            Phase::Busy(_) => None,
            Phase::Waiting {
                since,
                header_since,
            } => {
                let idle_end = since + limits.idle_timeout;
                Some(header_since.map_or(idle_end, |h| idle_end.min(h + limits.header_timeout)))
            }
        }
    }

    /// Whether the connection should close now: shed while not busy, or out of time.
    fn should_close(&self, now: Instant, limits: &Limits) -> bool {
        let mut state = self.state.lock();
        if matches!(state.phase, Phase::Busy(_)) {
            // Picked while idle, busy by the time it looked: it stays.
            state.shedding = false;
            return false;
        }
        drop(state);
        self.deadline(limits)
            .is_some_and(|deadline| deadline <= now)
            || self.state.lock().shedding
    }

    /// The order of shedding (smallest first), or `None` when it must not be shed.
    fn shed_rank(&self) -> Option<(bool, Instant)> {
        let state = self.state.lock();
        match state.phase {
            Phase::Waiting { since, .. } if !state.shedding => Some((state.authenticated, since)),
            _ => None,
        }
    }
}

/// The open connections and the slots they hold.
struct Registry {
    limits: Limits,
    slots: Arc<Semaphore>,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
}

/// A connection's place in the registry; dropping it frees the slot.
struct Registration {
    id: u64,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.open.lock().remove(&self.id);
    }
}

impl Registry {
    fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            slots: Arc::new(Semaphore::new(limits.connections_max)),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// A free slot, shedding idle connections when few are left.
    async fn slot(&self) -> OwnedSemaphorePermit {
        loop {
            if self.slots.available_permits() <= self.limits.headroom() {
                self.shed();
            }
            let acquire = Arc::clone(&self.slots).acquire_owned();
            if let Ok(acquired) = tokio::time::timeout(SHED_RETRY, acquire).await {
                return acquired.expect("the connection slots are never closed");
            }
        }
    }

    fn register(self: &Arc<Self>, slot: OwnedSemaphorePermit) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(Instant::now()));
        self.open.lock().insert(id, Arc::clone(&conn));
        Registration {
            id,
            conn,
            registry: Arc::clone(self),
            _slot: slot,
        }
    }

    /// Tells the first connections in shedding order to close: as many as the headroom, less
    /// those told before that have not closed yet. Counting those keeps an accept loop that
    /// looks again before they close from reaching past the anonymous ones into idle
    /// connections of nodes and requesters, which may be sending a request at that moment.
    fn shed(&self) {
        let open = self.open.lock();
        let mut closing = 0;
        let mut candidates: Vec<((bool, Instant), &Arc<Conn>)> = Vec::new();
        for conn in open.values() {
            match conn.shed_rank() {
                Some(rank) => candidates.push((rank, conn)),
                None => closing += usize::from(conn.state.lock().shedding),
            }
        }
        let count = (self.limits.headroom().saturating_sub(closing)).min(candidates.len());
        if count == 0 {
            return;
        }
        candidates.select_nth_unstable_by_key(count - 1, |(rank, _)| *rank);
        for (_, conn) in &candidates[..count] {
            conn.state.lock().shedding = true;
            conn.shed.notify_one();
        }
        tracing::debug!(count, open = open.len(), "shedding idle connections");
    }
}

/// A connection the rest of the process hands the coordinator, and the address it stands for,
/// which handlers see as the peer's (limits per source, the network a node is seen from).
pub struct Handed {
    pub io: Box<dyn HandedIo>,
    pub peer: SocketAddr,
}

/// What a handed connection is: bytes both ways.
pub trait HandedIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> HandedIo for T {}

/// Where a coordinator's connections come from: its TCP listener, and those handed in.
pub struct Listener {
    tcp: tokio::net::TcpListener,
    handed: Option<tokio::sync::mpsc::Receiver<Handed>>,
}

impl From<tokio::net::TcpListener> for Listener {
    fn from(tcp: tokio::net::TcpListener) -> Self {
        Listener { tcp, handed: None }
    }
}

impl Listener {
    /// `tcp`, and the connections sent on `handed`'s channel.
    pub fn with_handed(
        tcp: tokio::net::TcpListener,
        handed: tokio::sync::mpsc::Receiver<Handed>,
    ) -> Self {
        Listener {
            tcp,
            handed: Some(handed),
        }
    }

    async fn accept(&mut self) -> std::io::Result<(Stream, SocketAddr)> {
        let Listener { tcp, handed } = self;
        let next_handed = async {
            match handed {
                Some(handed) => handed.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = tcp.accept() => accepted.map(|(tcp, peer)| (Stream::Tcp(tcp), peer)),
            Some(handed) = next_handed => Ok((Stream::Handed(handed.io), handed.peer)),
        }
    }
}

/// An accepted connection's bytes.
enum Stream {
    Tcp(tokio::net::TcpStream),
    Handed(Box<dyn HandedIo>),
}

/// Serves `app` on `listener` (over TLS with `tls`) until `stop` resolves, then lets open
/// connections finish their requests (for at most [`DRAIN_TIMEOUT`]).
pub(crate) async fn serve(
    mut listener: Listener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: axum::Router,
    limits: &ConnectionLimits,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = Limits::resolve(limits);
    let registry = Registry::new(limits);
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let slot = tokio::select! {
            slot = registry.slot() => slot,
            () = &mut stop => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: the listener itself is fine; breathe.
            Err(error) => {
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let connection = Connection {
            app: app.clone(),
            peer,
            limits,
            registration: registry.register(slot),
        };
        let (acceptor, watcher) = (acceptor.clone(), graceful.watcher());
        match stream {
            Stream::Tcp(tcp) => {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(connection.run(tcp, acceptor, watcher));
            }
            Stream::Handed(io) => {
                tokio::spawn(connection.run(io, acceptor, watcher));
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain timeout; closing them");
    }
    Ok(())
}

/// One accepted connection and what serving it needs.
struct Connection {
    app: axum::Router,
    peer: SocketAddr,
    limits: Limits,
    registration: Registration,
}

impl Connection {
    async fn run<S>(self, tcp: S, acceptor: Option<TlsAcceptor>, watcher: Watcher)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Some(acceptor) = acceptor else {
            return self.serve(tcp, watcher, false).await;
        };
        let conn = Arc::clone(&self.registration.conn);
        let deadline = Instant::now() + self.limits.header_timeout;
        // The handshake is the first part of sending a request: it has the same deadline, and
        // a handshaking connection may be shed like any other that sent no request.
        let handshake = tokio::select! {
            handshake = tokio::time::timeout_at(deadline, acceptor.accept(tcp)) => handshake,
            () = conn.shed.notified() => return,
        };
        match handshake {
            Ok(Ok(stream)) => {
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                self.serve(stream, watcher, h2).await
            }
            Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
            Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
        }
    }

    async fn serve<S>(self, stream: S, watcher: Watcher, h2: bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let conn = Arc::clone(&self.registration.conn);
        let io = TokioIo::new(Watched {
            inner: stream,
            conn: Arc::clone(&conn),
        });
        let (app, peer) = (self.app.clone(), self.peer);
        let service_conn = Arc::clone(&conn);
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            handle(app.clone(), peer, Arc::clone(&service_conn), request)
        });
        if h2 {
            let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .max_concurrent_streams(H2_STREAMS_MAX)
                .serve_connection(io, service);
            self.drive(watcher.watch(connection), &conn).await;
        } else {
            let connection =
                hyper::server::conn::http1::Builder::new().serve_connection(io, service);
            self.drive(watcher.watch(connection), &conn).await;
        }
    }

    /// Runs a connection to its end, closing it when it has sat without a request past its
    /// deadline or is shed.
    async fn drive<E: std::fmt::Display>(
        &self,
        connection: impl Future<Output = Result<(), E>>,
        conn: &Conn,
    ) {
        let mut connection = std::pin::pin!(connection);
        loop {
            // While busy there is no deadline: look again later.
            let wake_at = conn
                .deadline(&self.limits)
                .unwrap_or_else(|| Instant::now() + self.limits.header_timeout);
            tokio::select! {
                ended = &mut connection => {
                    if let Err(error) = ended {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    return;
                }
                () = tokio::time::sleep_until(wake_at) => {}
                () = conn.shed.notified() => {}
            }
            if conn.should_close(Instant::now(), &self.limits) {
                tracing::debug!(peer = %self.peer, "closing a connection with no request in flight");
                return;
            }
        }
    }
}

/// One request: the peer's address for the handlers, and the connection's phase around it.
async fn handle(
    app: axum::Router,
    peer: SocketAddr,
    conn: Arc<Conn>,
    mut request: Request<Incoming>,
) -> Result<axum::response::Response, Infallible> {
    let in_flight = InFlight::begin(conn);
    request.extensions_mut().insert(ConnectInfo(peer));
    let credentials = request.headers().contains_key(header::AUTHORIZATION);
    let response = app.oneshot(request).await?;
    let refused = matches!(
        response.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    );
    if credentials && !refused {
        in_flight.conn.state.lock().authenticated = true;
    }
    Ok(response.map(|body| {
        axum::body::Body::new(GuardedBody {
            body,
            _in_flight: in_flight,
        })
    }))
}

/// A request in flight on a connection, until its response has been sent (or dropped).
struct InFlight {
    conn: Arc<Conn>,
}

impl InFlight {
    fn begin(conn: Arc<Conn>) -> Self {
        conn.begin();
        Self { conn }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn.end(Instant::now());
    }
}

/// A response body that keeps its request in flight until hyper is done sending it.
struct GuardedBody {
    body: axum::body::Body,
    _in_flight: InFlight,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A connection's byte stream that notes when a request's first bytes arrive.
struct Watched<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.saw_bytes(Instant::now());
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(connections_max: usize) -> Limits {
        Limits {
            connections_max,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn the_cap_fits_two_files_per_connection_under_the_open_files_limit() {
        assert_eq!(connections_max_for(Some(1024)), 384);
        assert_eq!(connections_max_for(Some(100)), CONNECTIONS_FLOOR);
        assert_eq!(connections_max_for(Some(1 << 40)), CONNECTIONS_CEILING);
        assert_eq!(connections_max_for(None), CONNECTIONS_CEILING);
    }

    #[test]
    fn headers_must_come_in_time_and_idle_connections_close_later() {
        let limits = limits(8);
        let start = Instant::now();
        let conn = Conn::new(start);
        assert_eq!(conn.deadline(&limits), Some(start + limits.header_timeout));
        conn.begin();
        assert_eq!(
            conn.deadline(&limits),
            None,
            "a long-poll is never timed out"
        );
        assert!(!conn.should_close(start + Duration::from_secs(3600), &limits));
        let ended = start + Duration::from_secs(30);
        conn.end(ended);
        assert_eq!(conn.deadline(&limits), Some(ended + limits.idle_timeout));
        let next = ended + Duration::from_secs(5);
        conn.saw_bytes(next);
        assert_eq!(conn.deadline(&limits), Some(next + limits.header_timeout));
        assert!(conn.should_close(next + limits.header_timeout, &limits));
    }

    #[tokio::test]
    async fn anonymous_and_longest_idle_connections_are_shed_first_and_busy_ones_never() {
        let registry = Registry::new(limits(16));
        let mut registrations = Vec::new();
        for _ in 0..16 {
            let slot = Arc::clone(&registry.slots).try_acquire_owned().unwrap();
            registrations.push(registry.register(slot));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let conn = |index: usize| &registrations[index].conn;
        // The oldest connection is busy, the next two are authenticated and idle.
        conn(0).begin();
        for index in [1, 2] {
            conn(index).begin();
            conn(index).state.lock().authenticated = true;
            conn(index).end(Instant::now());
        }
        let shedding = |registrations: &[Registration]| -> Vec<u64> {
            let mut ids: Vec<u64> = registrations
                .iter()
                .filter(|registration| registration.conn.state.lock().shedding)
                .map(|registration| registration.id)
                .collect();
            ids.sort_unstable();
            ids
        };
        registry.shed();
        registry.shed();
        assert_eq!(
            shedding(&registrations),
            vec![3, 4],
            "the oldest anonymous ones, never the busy or authenticated, and a second look \
             before they close tells no more"
        );
        assert!(!conn(0).should_close(Instant::now(), &registry.limits));
        assert!(conn(3).should_close(Instant::now(), &registry.limits));
        registrations.retain(|registration| !registration.conn.state.lock().shedding);
        registry.shed();
        assert_eq!(
            shedding(&registrations),
            vec![5, 6],
            "once they closed, two more"
        );
        drop(registrations);
        assert!(registry.open.lock().is_empty(), "closing frees the slots");
        assert_eq!(registry.slots.available_permits(), 16);
    }

    #[tokio::test]
    async fn a_handed_connection_is_served_as_the_address_it_stands_for() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let peer_of = |ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() };
        let app = axum::Router::new().route("/", axum::routing::get(peer_of));
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (hand, handed) = tokio::sync::mpsc::channel(1);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = ConnectionLimits::default();
        let listener = Listener::with_handed(tcp, handed);
        let serving = tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.await;
            };
            serve(listener, None, app, &limits, stopped).await
        });
        let (mut device, coordinator_side) = tokio::io::duplex(4096);
        let stands_for: SocketAddr = "[fd12:3456:789a::]:0".parse().unwrap();
        let handed = Handed {
            io: Box::new(coordinator_side),
            peer: stands_for,
        };
        assert!(hand.send(handed).await.is_ok());
        let request = b"GET / HTTP/1.1\r\nhost: pool\r\nconnection: close\r\n\r\n";
        device.write_all(request).await.unwrap();
        let mut answer = String::new();
        device.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with(&stands_for.to_string()), "{answer}");
        let _ = stop.send(());
        serving.await.unwrap().unwrap();
    }
}
