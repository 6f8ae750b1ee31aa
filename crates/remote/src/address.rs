//! A pool's remote address as people paste it: `iroh:KEY`, then the relay it is reached
//! through and the direct addresses it was last seen at, if any
//! (`iroh:KEY?relay=http://relay.example:3340&relay_fingerprint=…&direct=203.0.113.7:7879`).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use iroh::{EndpointAddr, EndpointId, RelayUrl};
use wire::Fingerprint;

use crate::RemoteError;

/// A relay as a pool names it: its URL, and the fingerprint of the certificate it answers
/// address discovery with where that certificate is its own rather than a public authority's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayLink {
    pub url: RelayUrl,
    pub fingerprint: Option<Fingerprint>,
}

/// The most direct addresses an address carries.
const DIRECT_MAX: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolAddress {
    /// The pool's key: only the pool can answer for it.
    pub id: EndpointId,
    pub relay: Option<RelayLink>,
    pub direct: Vec<SocketAddr>,
}

impl PoolAddress {
    pub(crate) fn endpoint_addr(&self) -> EndpointAddr {
        let mut addr = EndpointAddr::new(self.id);
        if let Some(relay) = &self.relay {
            addr = addr.with_relay_url(relay.url.clone());
        }
        for direct in &self.direct {
            addr = addr.with_ip_addr(*direct);
        }
        addr
    }

    /// Whether `text` is meant as a pool address rather than a URL.
    pub fn is_one(text: &str) -> bool {
        text.starts_with("iroh:")
    }
}

impl FromStr for PoolAddress {
    type Err = RemoteError;

    fn from_str(text: &str) -> Result<Self, RemoteError> {
        let bad = || RemoteError::BadAddress(text.to_owned());
        let rest = text.strip_prefix("iroh:").ok_or_else(bad)?;
        let (key, query) = rest.split_once('?').unwrap_or((rest, ""));
        let id = EndpointId::from_str(key).map_err(|_| bad())?;
        let mut address = PoolAddress {
            id,
            relay: None,
            direct: Vec::new(),
        };
        let mut relay_fingerprint = None;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            match pair.split_once('=').ok_or_else(bad)? {
                ("relay", url) if address.relay.is_none() => {
                    let url = RelayUrl::from_str(url).map_err(|_| bad())?;
                    address.relay = Some(RelayLink {
                        url,
                        fingerprint: None,
                    });
                }
                ("relay_fingerprint", hex) if relay_fingerprint.is_none() => {
                    relay_fingerprint = Some(Fingerprint::from_str(hex).map_err(|_| bad())?);
                }
                ("direct", socket) if address.direct.len() < DIRECT_MAX => {
                    address.direct.push(socket.parse().map_err(|_| bad())?);
                }
                _ => return Err(bad()),
            }
        }
        match (&mut address.relay, relay_fingerprint) {
            (Some(relay), fingerprint) => relay.fingerprint = fingerprint,
            (None, Some(_)) => return Err(bad()),
            (None, None) => {}
        }
        Ok(address)
    }
}

impl fmt::Display for PoolAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "iroh:{}", self.id)?;
        let mut separator = '?';
        if let Some(relay) = &self.relay {
            write!(f, "{separator}relay={}", relay.url)?;
            separator = '&';
            if let Some(fingerprint) = &relay.fingerprint {
                write!(f, "&relay_fingerprint={fingerprint}")?;
            }
        }
        for direct in &self.direct {
            write!(f, "{separator}direct={direct}")?;
            separator = '&';
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_reads_back_as_written_and_nothing_else_reads_as_one() {
        let key = iroh::SecretKey::from_bytes(&[7; 32]).public();
        let address = PoolAddress {
            id: key,
            relay: Some(RelayLink {
                url: RelayUrl::from_str("http://10.77.0.3:3340").unwrap(),
                fingerprint: Some(Fingerprint::of_der(b"a relay's certificate")),
            }),
            direct: vec!["10.77.0.1:7879".parse().unwrap()],
        };
        assert_eq!(address.to_string().parse::<PoolAddress>().unwrap(), address);
        let bare = format!("iroh:{key}");
        assert!(bare.parse::<PoolAddress>().unwrap().relay.is_none());
        for bad in [
            "https://a.example".to_owned(),
            "iroh:".to_owned(),
            "iroh:notakey".to_owned(),
            format!("iroh:{key}?relay=not a url"),
            format!("iroh:{key}?direct=nowhere"),
            format!("iroh:{key}?other=1"),
            format!("iroh:{key}?relay"),
            format!("iroh:{key}?relay_fingerprint={}", "ab".repeat(32)),
            format!("iroh:{key}?relay=http://r.example&relay_fingerprint=abc"),
        ] {
            assert!(bad.parse::<PoolAddress>().is_err(), "{bad:?}");
        }
        let many: Vec<String> = (0..=DIRECT_MAX)
            .map(|n| format!("direct=10.0.0.{n}:1"))
            .collect();
        let too_many = format!("iroh:{key}?{}", many.join("&"));
        assert!(
            too_many.parse::<PoolAddress>().is_err(),
            "at most {DIRECT_MAX}"
        );
    }
}
