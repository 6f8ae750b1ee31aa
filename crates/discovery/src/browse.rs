//! Browsing for pools: ask the LAN, collect answers until the deadline or until the pool asked
//! for has answered.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mdns_sd::ServiceEvent;

use wire::Fingerprint;

use crate::interfaces::{ChosenDaemon, InterfaceChoice, daemon_on};
use crate::{DiscoveryError, SERVICE_TYPE, txt};

/// Pools one browse keeps; more answers than this on one LAN are ignored.
pub const POOLS_FOUND_MAX: usize = 32;
/// Addresses kept per pool.
const ADDRESSES_PER_POOL_MAX: usize = 16;

/// What to look for and for how long.
#[derive(Debug, Clone)]
pub struct BrowseOptions {
    /// Give up after this long.
    pub deadline: Duration,
    /// Once a pool has answered, wait this much longer for others (with no filter).
    pub settle: Duration,
    /// Keep only pools of this name (several pools may share one: the owner names them).
    pub pool_name: Option<String>,
    /// Keep only the pool with this certificate, and stop as soon as it answers: a certificate
    /// names exactly one pool.
    pub fingerprint: Option<Fingerprint>,
    /// Use exactly these interfaces (empty: the suitable ones).
    pub interfaces: Vec<String>,
}

impl Default for BrowseOptions {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(3),
            settle: Duration::from_millis(500),
            pool_name: None,
            fingerprint: None,
            interfaces: Vec::new(),
        }
    }
}

/// One pool that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPool {
    pub pool_name: String,
    /// The DNS-SD instance name, unique on the LAN.
    pub instance: String,
    pub addresses: Vec<IpAddr>,
    pub port: u16,
    /// `https` or `http`.
    pub scheme: String,
    pub fingerprint: Option<Fingerprint>,
    pub version: String,
    /// How long after the browse started this pool's answer arrived.
    pub found_after: Duration,
}

impl FoundPool {
    /// The API's URL at each address, IPv4 first.
    pub fn urls(&self) -> Vec<String> {
        let mut addresses = self.addresses.clone();
        addresses.sort_by_key(|a| (a.is_ipv6(), *a));
        addresses
            .iter()
            .map(|address| match address {
                IpAddr::V4(v4) => format!("{}://{v4}:{}", self.scheme, self.port),
                IpAddr::V6(v6) => format!("{}://[{v6}]:{}", self.scheme, self.port),
            })
            .collect()
    }

    fn matches(&self, options: &BrowseOptions) -> bool {
        let name_ok = options
            .pool_name
            .as_ref()
            .is_none_or(|name| *name == self.pool_name);
        let fingerprint_ok = options
            .fingerprint
            .is_none_or(|fingerprint| self.fingerprint == Some(fingerprint));
        name_ok && fingerprint_ok
    }
}

/// The outcome of a browse.
#[derive(Debug, Clone)]
pub struct Browsed {
    /// Pools that answered (those matching the options' filters), by name then instance.
    pub pools: Vec<FoundPool>,
    /// Every interface and whether the browse used it.
    pub interfaces: Vec<InterfaceChoice>,
    pub elapsed: Duration,
}

/// Browses the LAN for pools, blocking for at most `options.deadline`.
pub fn browse(options: &BrowseOptions) -> Result<Browsed, DiscoveryError> {
    let started = Instant::now();
    let ChosenDaemon {
        daemon, interfaces, ..
    } = daemon_on(&options.interfaces)?;
    let events = daemon.browse(SERVICE_TYPE)?;
    let deadline = started + options.deadline;
    let wanted_one = options.fingerprint.is_some();
    let mut found: BTreeMap<String, FoundPool> = BTreeMap::new();
    let mut settle_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let until = settle_until.map_or(deadline, |settle| settle.min(deadline));
        if now >= until {
            break;
        }
        let event = match events.recv_timeout(until - now) {
            Ok(event) => event,
            Err(mdns_sd::RecvTimeoutError::Timeout) => break,
            Err(mdns_sd::RecvTimeoutError::Disconnected) => {
                return Err(DiscoveryError::Mdns("the mDNS thread stopped".to_owned()));
            }
        };
        let ServiceEvent::ServiceResolved(service) = event else {
            continue;
        };
        let Some(pool) = found_pool(&service, started.elapsed()) else {
            continue;
        };
        if !pool.matches(options) {
            continue;
        }
        let room = found.len() < POOLS_FOUND_MAX;
        match found.get_mut(&pool.instance) {
            Some(known) => {
                for address in pool.addresses {
                    if !known.addresses.contains(&address)
                        && known.addresses.len() < ADDRESSES_PER_POOL_MAX
                    {
                        known.addresses.push(address);
                    }
                }
            }
            None if room => {
                found.insert(pool.instance.clone(), pool);
            }
            None => {}
        }
        if wanted_one && !found.is_empty() {
            break;
        }
        settle_until.get_or_insert_with(|| Instant::now() + options.settle);
    }
    let _ = daemon.stop_browse(SERVICE_TYPE);
    if let Ok(done) = daemon.shutdown() {
        let _ = done.recv_timeout(Duration::from_millis(200));
    }
    let mut pools: Vec<FoundPool> = found.into_values().collect();
    pools.sort_by(|a, b| {
        a.pool_name
            .cmp(&b.pool_name)
            .then(a.instance.cmp(&b.instance))
    });
    Ok(Browsed {
        pools,
        interfaces,
        elapsed: started.elapsed(),
    })
}

fn found_pool(service: &mdns_sd::ResolvedService, found_after: Duration) -> Option<FoundPool> {
    let property = |key: &str| {
        service
            .get_property_val_str(key)
            .map(|value| value.chars().take(256).collect::<String>())
    };
    let pool_name = property(txt::POOL)?;
    let scheme = match property(txt::SCHEME).as_deref() {
        Some("https") => "https",
        Some("http") => "http",
        _ => return None,
    };
    let fingerprint = match property(txt::FINGERPRINT) {
        Some(text) => Some(text.parse::<Fingerprint>().ok()?),
        None => None,
    };
    // An https advert without a certificate to pin is useless; skip it rather than trust it.
    if scheme == "https" && fingerprint.is_none() {
        return None;
    }
    let instance = service
        .get_fullname()
        .strip_suffix(&format!(".{SERVICE_TYPE}"))
        .unwrap_or(service.get_fullname())
        .to_owned();
    let addresses: Vec<IpAddr> = service
        .get_addresses()
        .iter()
        .map(|scoped| scoped.to_ip_addr())
        // Link-local IPv6 needs a scope id in a URL; the IPv4 and routable addresses serve.
        .filter(|address| !matches!(address, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
        .take(ADDRESSES_PER_POOL_MAX)
        .collect();
    if addresses.is_empty() {
        return None;
    }
    Some(FoundPool {
        pool_name,
        instance,
        addresses,
        port: service.get_port(),
        scheme: scheme.to_owned(),
        fingerprint,
        version: property(txt::VERSION).unwrap_or_default(),
        found_after,
    })
}
