//! `crowdcloud relay`: a relay of one's own, for devices that find no direct path to their
//! pool. It forwards only what is already encrypted end to end (QUIC, and TLS inside it).

use std::net::SocketAddr;

use std::num::NonZeroU32;

use iroh_relay::server::{ClientRateLimit, QuicConfig, RelayConfig, Server, ServerConfig};

use crate::RemoteError;

/// The least a relay may read from a client a second: a burst of a second's worth must hold
/// the largest relay frame.
pub const RELAY_CLIENT_BYTES_PER_S_MIN: u32 = 64 << 10;

/// Where a relay answers QUIC address discovery (UDP; clients ask at port
/// [`ADDRESS_DISCOVERY_PORT`] of the relay's host) and the TLS it answers under, whose
/// certificate pools pin by `--relay-fingerprint`.
pub struct AddressDiscovery {
    pub bind: SocketAddr,
    pub tls: rustls::ServerConfig,
}

/// The UDP port clients ask a relay's host for the address it sees them at: iroh's.
pub const ADDRESS_DISCOVERY_PORT: u16 = iroh_relay::defaults::DEFAULT_RELAY_QUIC_PORT;

/// A running relay; dropping it stops it.
pub struct Relay {
    server: Server,
}

impl Relay {
    /// Serves the relay protocol over plain HTTP on `listen`, reading at most
    /// `client_bytes_per_s` from each client (a pool's gateway, or a device); what it carries
    /// is encrypted end to end either way. With `discovery`, it also tells each client the
    /// address it sees it at (QUIC address discovery, under that certificate), which is what
    /// lets two devices behind home routers punch a hole to each other.
    pub async fn start(
        listen: SocketAddr,
        client_bytes_per_s: u32,
        discovery: Option<AddressDiscovery>,
    ) -> Result<Relay, RemoteError> {
        let bytes_per_second = NonZeroU32::new(client_bytes_per_s)
            .filter(|rate| rate.get() >= RELAY_CLIENT_BYTES_PER_S_MIN)
            .ok_or_else(|| {
                RemoteError::Relay(format!(
                    "give each client at least {RELAY_CLIENT_BYTES_PER_S_MIN} bytes a second: \
                     less cannot carry one full packet's worth of bursts"
                ))
            })?;
        let mut rate = ClientRateLimit::new(bytes_per_second);
        // A second's worth at once: bursts as large as a full frame pass, no more than the rate.
        rate.max_burst_bytes = Some(bytes_per_second);
        let mut relay = RelayConfig::new(listen);
        relay.limits.client_rx = Some(rate);
        let mut config = ServerConfig::default();
        config.relay = Some(relay);
        config.quic = discovery.map(|discovery| {
            let mut quic = QuicConfig::new(discovery.bind);
            quic.server_config = Some(discovery.tls);
            quic
        });
        let server = Server::spawn(config)
            .await
            .map_err(|error| RemoteError::Relay(error.to_string()))?;
        Ok(Relay { server })
    }

    /// Where it listens.
    pub fn address(&self) -> Option<SocketAddr> {
        self.server.http_addr()
    }

    /// Where it answers address discovery, if it does.
    pub fn discovery_address(&self) -> Option<SocketAddr> {
        self.server.quic_addr()
    }
}
