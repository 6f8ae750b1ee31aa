//! The fingerprint of a coordinator's TLS certificate: SHA-256 of its DER bytes.
//!
//! Clients pin it (learnt from discovery, from `crowdcloud join` or given by hand) instead of
//! trusting a certificate authority, so a self-signed certificate made by `crowdcloud up` is as
//! good as a bought one on a LAN, and no one else on the LAN can stand in for the coordinator.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::WireError;

/// SHA-256 of a DER-encoded certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// The first 8 bytes in four groups, enough for people to tell two pools apart at a glance.
    pub fn short(&self) -> String {
        let hex = hex::encode(&self.0[..8]);
        hex.as_bytes()
            .chunks(4)
            .map(|chunk| std::str::from_utf8(chunk).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(":")
    }
}

impl fmt::Display for Fingerprint {
    /// `sha256:` and 64 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = WireError;

    /// Takes `sha256:HEX`, bare `HEX`, and hex with `:` or space separators (as tools print it).
    fn from_str(text: &str) -> Result<Self, WireError> {
        let trimmed = text.trim();
        let body = trimmed
            .strip_prefix("sha256:")
            .or_else(|| trimmed.strip_prefix("SHA256:"))
            .unwrap_or(trimmed);
        let digits: String = body.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&digits, &mut bytes).map_err(|_| WireError::Malformed {
            what: "certificate fingerprint",
            value: text.chars().take(100).collect(),
            expected: "sha256: and 64 hex digits",
        })?;
        Ok(Self(bytes))
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_reads_back_in_every_common_spelling() {
        let fingerprint = Fingerprint::of_der(b"certificate");
        let hex = hex::encode(fingerprint.0);
        let colons = hex
            .as_bytes()
            .chunks(2)
            .map(|pair| std::str::from_utf8(pair).unwrap().to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        for text in [fingerprint.to_string(), hex.clone(), colons] {
            assert_eq!(text.parse::<Fingerprint>(), Ok(fingerprint), "{text}");
        }
        assert!("sha256:abcd".parse::<Fingerprint>().is_err());
        assert_eq!(fingerprint.short().len(), 19);
        let json = serde_json::to_string(&fingerprint).unwrap();
        assert_eq!(
            serde_json::from_str::<Fingerprint>(&json).unwrap(),
            fingerprint
        );
    }
}
