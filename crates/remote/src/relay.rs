//! `crowdcloud relay`: a relay of one's own, for devices that find no direct path to their
//! pool. It forwards only what is already encrypted end to end (QUIC, and TLS inside it).

use std::net::SocketAddr;

use iroh_relay::server::{RelayConfig, Server, ServerConfig};

use crate::RemoteError;

/// A running relay; dropping it stops it.
pub struct Relay {
    server: Server,
}

impl Relay {
    /// Serves the relay protocol over plain HTTP on `listen`. A relay on the internet belongs
    /// behind a TLS terminating proxy; the traffic it carries is encrypted either way.
    pub async fn start(listen: SocketAddr) -> Result<Relay, RemoteError> {
        let mut config = ServerConfig::default();
        config.relay = Some(RelayConfig::new(listen));
        let server = Server::spawn(config)
            .await
            .map_err(|error| RemoteError::Relay(error.to_string()))?;
        Ok(Relay { server })
    }

    /// Where it listens.
    pub fn address(&self) -> Option<SocketAddr> {
        self.server.http_addr()
    }
}
