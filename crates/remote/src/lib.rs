//! The remote path: a pool reached by its key from anywhere, through iroh (QUIC dialled by
//! public key, direct where a path is found, through a relay where not). The only user of iroh.
//!
//! The transport is the only difference from the LAN. The pool's [`Gateway`] hands each QUIC
//! stream to the coordinator in its process as one more connection, with the address the
//! device stands for, and a device's [`Tunnel`] offers a loopback port whose connections go
//! over such streams. So clients speak the same HTTPS to the same
//! `/v1/` API, pinned to the same certificate: the relay, and anyone on the path, sees only
//! TLS inside QUIC, and a pool address names the pool's key, which only the pool can answer
//! for.

mod address;
mod gateway;
mod relay;
mod tunnel;

pub use address::{PoolAddress, RelayLink};
pub use gateway::{Arrival, Carried, Gateway, key_address};
pub use relay::{ADDRESS_DISCOVERY_PORT, AddressDiscovery, RELAY_CLIENT_BYTES_PER_S_MIN, Relay};
pub use tunnel::{PathReport, Tunnel};

/// The protocol a pool's gateway answers; a connection that asks for another is refused.
pub const ALPN: &[u8] = b"crowdcloud/1";

/// What a relay reads from each client a second unless told otherwise: room for a family's
/// tasks and results, not for one pool to take a shared relay's whole uplink.
pub const RELAY_CLIENT_BYTES_PER_S_DEFAULT: u32 = 4 << 20;

/// Connections a gateway serves at once, in all and per device.
pub const CONNECTIONS_MAX: usize = 256;
pub const CONNECTIONS_PER_PEER_MAX: usize = 8;
/// Streams (each one HTTP connection to the coordinator) a device may have open at once on one
/// connection: flow control holds the next one back until one ends.
pub const STREAMS_PER_CONNECTION_MAX: u32 = 32;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "malformed pool address {0:?}: give it as `crowdcloud up --remote` prints it, iroh:KEY?relay=URL"
    )]
    BadAddress(String),
    #[error("cannot open the remote endpoint: {0}")]
    Bind(String),
    #[error(
        "cannot reach the pool {pool} remotely: {message}; check the relay the pool names, or that both sides are online"
    )]
    Connect { pool: String, message: String },
    #[error("cannot keep the pool's remote key in {path}: {source}")]
    Key {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen for the tunnel's connections: {0}")]
    Listen(#[source] std::io::Error),
    #[error("cannot start the relay: {0}")]
    Relay(String),
}

#[cfg(test)]
mod hostile_relay_tests;
#[cfg(test)]
mod tests;
