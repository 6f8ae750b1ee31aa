//! Finding pools on the LAN with no configuration: the coordinator advertises itself by
//! mDNS/DNS-SD (`_crowdcloud._tcp.local.`) and clients browse for it.
//!
//! The advert's TXT record carries what a client needs to talk to the pool safely: its name,
//! the API's scheme and port, the SHA-256 fingerprint of its TLS certificate and the version.
//! Discovery alone proves nothing (anyone on the LAN can advertise); the fingerprint is what
//! clients pin, and `crowdcloud join`'s code exchange is what proves the pool is the owner's.
//!
//! Which interfaces carry mDNS is decided here, in one place, with a reason for every
//! interface, so `crowdcloud doctor` can say why a pool is not seen (see [`interfaces`]).
//!
//! This is the only crate that uses `mdns-sd`. Its daemon runs on its own thread; the calls here
//! block for at most their deadline and are meant for `spawn_blocking`.
//!
//! Invariants:
//! - Nothing is sent on an interface that [`interfaces`] did not choose.
//! - Every browse ends by its deadline and returns at most [`POOLS_FOUND_MAX`] pools.

mod advertise;
mod browse;
mod interfaces;

pub use advertise::{Advert, Advertiser};
pub use browse::{BrowseOptions, Browsed, FoundPool, POOLS_FOUND_MAX, browse};
pub use interfaces::{InterfaceChoice, interfaces};

/// The DNS-SD service type of a crowdcloud coordinator.
pub const SERVICE_TYPE: &str = "_crowdcloud._tcp.local.";

/// TXT keys of the advert.
pub mod txt {
    /// The pool's name.
    pub const POOL: &str = "pool";
    /// `https` or `http`.
    pub const SCHEME: &str = "scheme";
    /// The API's TCP port (the SRV record carries it too; this is for people reading adverts).
    pub const PORT: &str = "port";
    /// The certificate fingerprint, `sha256:` and 64 hex digits; absent for plain HTTP.
    pub const FINGERPRINT: &str = "fp";
    /// The coordinator's crowdcloud version.
    pub const VERSION: &str = "v";
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot list the network interfaces: {0}")]
    Interfaces(std::io::Error),
    #[error(
        "no interface is suitable for discovery (loopback, link-local-only or virtual ones are skipped); `crowdcloud doctor` lists them and why, and --interface NAME picks one anyway"
    )]
    NoInterface,
    #[error(
        "mDNS failed: {0}; is UDP port 5353 usable here (a firewall, or a sandbox without multicast)?"
    )]
    Mdns(String),
}

impl From<mdns_sd::Error> for DiscoveryError {
    fn from(error: mdns_sd::Error) -> Self {
        DiscoveryError::Mdns(error.to_string())
    }
}
