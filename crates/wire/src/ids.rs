//! Identifiers: 64-bit ids with a kind prefix, and BLAKE3 content hashes of blobs.
//!
//! Ids are made by the coordinator from an injected random source (never inside the state store),
//! so a whole pool can be replayed from a seed. The prefix makes a pasted id self-describing and
//! catches a node id given where a job id belongs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::WireError;

macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u64);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// The id as stored in a signed 64-bit database column (a bit-for-bit cast).
            pub fn as_db(self) -> i64 {
                self.0 as i64
            }

            pub fn from_db(value: i64) -> Self {
                Self(value as u64)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{:016x}", $prefix, self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = WireError;
            fn from_str(text: &str) -> Result<Self, WireError> {
                let malformed = || WireError::Malformed {
                    what: $what,
                    value: text.chars().take(80).collect(),
                    expected: concat!("\"", $prefix, "\" and 16 hex digits"),
                };
                let hex = text.strip_prefix($prefix).ok_or_else(malformed)?;
                // from_str_radix alone would take a leading '+'.
                if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(malformed());
                }
                u64::from_str_radix(hex, 16).map(Self).map_err(|_| malformed())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                string_schema(
                    concat!($what, ": \"", $prefix, "\" followed by 16 hex digits"),
                    // Written out in lowercase; parsing takes either case.
                    concat!("^", $prefix, "[0-9a-fA-F]{16}$"),
                )
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

prefixed_id!(
    /// A job: one module plus its tasks.
    JobId, "j-", "job id"
);
prefixed_id!(
    /// A provider node, derived from the node's public key.
    NodeId, "n-", "node id"
);
prefixed_id!(
    /// One placement of a task on a node; also the fencing token of its lease.
    AttemptId, "a-", "attempt id"
);
prefixed_id!(
    /// A requester: the owner of API tokens and of the jobs submitted with them.
    RequesterId, "r-", "requester id"
);
prefixed_id!(
    /// A pipeline: stages, each a job, joined by their outputs.
    PipelineId, "p-", "pipeline id"
);
prefixed_id!(
    /// A pool this one lends its idle slots to (federation).
    PeerId, "f-", "peer id"
);

/// A string schema with the pattern its parser enforces, so clients (and contract tests) know
/// what is accepted before they send it.
pub(crate) fn string_schema(
    description: &str,
    pattern: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .into()
}

/// The BLAKE3 hash of a blob's bytes; the blob's name everywhere.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobHash(pub [u8; 32]);

impl BlobHash {
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A short form for people: the first 12 hex digits.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl From<blake3::Hash> for BlobHash {
    fn from(hash: blake3::Hash) -> Self {
        Self(*hash.as_bytes())
    }
}

impl fmt::Display for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobHash({})", self.short())
    }
}

impl FromStr for BlobHash {
    type Err = WireError;
    fn from_str(text: &str) -> Result<Self, WireError> {
        let mut bytes = [0u8; 32];
        match hex::decode_to_slice(text, &mut bytes) {
            Ok(()) if text.bytes().all(|b| !b.is_ascii_uppercase()) => Ok(Self(bytes)),
            _ => Err(WireError::Malformed {
                what: "blob hash",
                value: text.chars().take(80).collect(),
                expected: "64 lowercase hex digits (a BLAKE3 hash)",
            }),
        }
    }
}

impl Serialize for BlobHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BlobHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for BlobHash {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_schema(
            "blob hash: 64 lowercase hex digits of the BLAKE3 hash of the bytes",
            "^[0-9a-f]{64}$",
        )
    }
}

impl utoipa::ToSchema for BlobHash {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text_and_json() {
        let id = JobId(0x0123_4567_89ab_cdef);
        assert_eq!(id.to_string(), "j-0123456789abcdef");
        assert_eq!("j-0123456789abcdef".parse::<JobId>(), Ok(id));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"j-0123456789abcdef\"");
        assert_eq!(serde_json::from_str::<JobId>(&json).unwrap(), id);
        assert_eq!(JobId::from_db(id.as_db()), id);
        assert_eq!(JobId::from_db(JobId(u64::MAX).as_db()), JobId(u64::MAX));
    }

    #[test]
    fn ids_of_the_wrong_kind_or_shape_are_refused() {
        assert!("n-0123456789abcdef".parse::<JobId>().is_err());
        assert!("j-0123".parse::<JobId>().is_err());
        assert!("j-0123456789abcdeg".parse::<JobId>().is_err());
        assert!("j-+123456789abcdef".parse::<JobId>().is_err());
        assert!(serde_json::from_str::<JobId>("42").is_err());
        let message = "x".parse::<AttemptId>().unwrap_err().to_string();
        assert!(message.contains("attempt id"), "{message}");
    }

    #[test]
    fn blob_hashes_are_lowercase_hex_of_blake3() {
        let hash = BlobHash::of(b"hello");
        assert_eq!(hash.to_hex(), blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(hash.to_hex().parse::<BlobHash>(), Ok(hash));
        assert!(hash.to_hex().to_uppercase().parse::<BlobHash>().is_err());
        assert!("abc".parse::<BlobHash>().is_err());
    }
}
