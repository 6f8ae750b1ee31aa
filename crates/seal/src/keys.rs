//! The keys of private jobs: X25519 key pairs that receive wrapped keys, and the symmetric keys
//! that seal blobs. Secrets are wiped on drop and never printed.

use std::fmt;
use std::str::FromStr;

use hpke::{Deserializable, Kem as _, Serializable};
use rand::TryRng as _;
use rand::rngs::SysRng;
use zeroize::Zeroizing;

use crate::SealError;

/// The KEM of every wrap: DHKEM(X25519, HKDF-SHA256).
pub(crate) type Kem = hpke::kem::X25519HkdfSha256;

/// Fills `bytes` from the operating system's random source.
///
/// # Panics
/// If the operating system cannot give randomness. No key can be made safely without it, and
/// on the systems crowdcloud runs on this happens only before the kernel's pool is seeded.
pub(crate) fn fill_random(bytes: &mut [u8]) {
    SysRng
        .try_fill_bytes(bytes)
        .expect("the operating system's random source failed; no key can be made without it");
}

/// 32 random bytes, wiped when dropped: every secret and key here starts as one.
fn random_32() -> Zeroizing<[u8; 32]> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    fill_random(bytes.as_mut_slice());
    bytes
}

/// A node's or requester's X25519 secret, for receiving wrapped keys. Wiped on drop; its
/// `Debug` does not print it.
#[derive(Clone)]
pub struct EncryptionSecret(Zeroizing<[u8; 32]>);

impl EncryptionSecret {
    /// A new secret from the operating system's random source.
    pub fn generate() -> Self {
        Self(random_32())
    }

    /// The secret saved by [`EncryptionSecret::to_bytes`]. Any 32 bytes are a secret (X25519
    /// clamps them when used).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret's bytes, for the caller to save in a file only its user can read (0600).
    pub fn to_bytes(&self) -> [u8; 32] {
        *self.0
    }

    /// The public half, to give to whoever wraps keys for this holder.
    pub fn public(&self) -> EncryptionKey {
        EncryptionKey(Kem::sk_to_pk(&self.hpke_private()).to_bytes().into())
    }

    /// The secret as HPKE takes it; that copy is wiped when dropped too.
    pub(crate) fn hpke_private(&self) -> <Kem as hpke::Kem>::PrivateKey {
        <Kem as hpke::Kem>::PrivateKey::from_bytes(self.0.as_slice())
            .expect("an X25519 secret is any 32 bytes")
    }
}

impl fmt::Debug for EncryptionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionSecret(public {})", self.public())
    }
}

/// The public half of an [`EncryptionSecret`]: 32 bytes, written as 64 lowercase hex digits
/// (in text, JSON and `Display`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EncryptionKey(pub [u8; 32]);

impl EncryptionKey {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The key as HPKE takes it.
    pub(crate) fn hpke_public(&self) -> <Kem as hpke::Kem>::PublicKey {
        <Kem as hpke::Kem>::PublicKey::from_bytes(&self.0)
            .expect("an X25519 public key is any 32 bytes")
    }
}

impl fmt::Display for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKey({})", self.to_hex())
    }
}

impl FromStr for EncryptionKey {
    type Err = SealError;
    fn from_str(text: &str) -> Result<Self, SealError> {
        let mut bytes = [0u8; 32];
        match hex::decode_to_slice(text, &mut bytes) {
            Ok(()) if text.bytes().all(|b| !b.is_ascii_uppercase()) => Ok(Self(bytes)),
            _ => Err(SealError::Malformed {
                what: "encryption key",
                value: text.chars().take(80).collect(),
                expected: "64 lowercase hex digits (an X25519 public key)",
            }),
        }
    }
}

/// Serde as its text: `Display` out, `FromStr` in, so JSON holds the same hex people see.
macro_rules! serde_as_text {
    ($name:ty) => {
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_as_text;

serde_as_text!(EncryptionKey);

/// A symmetric key of 32 random bytes: a job's data key, or one attempt's output key. Wiped on
/// drop; its `Debug` does not print it.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Self {
        Self(random_32())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<secret>)")
    }
}
