//! Wrapping a key to its holder: HPKE (RFC 9180) single-shot, base mode, DHKEM(X25519,
//! HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305. What the key is for is the HPKE `info`, so a
//! wrap made for one purpose does not open for another.

use std::fmt;
use std::str::FromStr;

use hpke::aead::{AeadTag, ChaCha20Poly1305};
use hpke::kdf::HkdfSha256;
use hpke::{
    Deserializable, OpModeR, OpModeS, Serializable, single_shot_open_inout_detached,
    single_shot_seal_inout_detached_with_rng,
};
use rand::rand_core::UnwrapErr;
use rand::rngs::SysRng;
use zeroize::{Zeroize, Zeroizing};

use crate::keys::Kem;
use crate::{DataKey, EncryptionKey, EncryptionSecret, SealError};

/// The AEAD and KDF of every wrap (the KEM is [`Kem`]).
type Aead = ChaCha20Poly1305;
type Kdf = HkdfSha256;

/// Bytes of the X25519 encapsulated key at the front of a wrap.
const ENCAPPED_KEY_BYTES: usize = 32;

/// Bytes of a wrapped key: the encapsulated key, then the 32-byte key sealed with its 16-byte
/// tag.
pub const WRAPPED_KEY_BYTES: usize = ENCAPPED_KEY_BYTES + 32 + 16;

/// What a key is wrapped for. It becomes the HPKE `info`: a job key's wrap does not open as an
/// output key, nor one attempt's output key as another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapContext {
    /// A job's data key, granted to a node that runs the job (or to the requester).
    JobKey,
    /// The key one attempt sealed its outputs under, wrapped to the requester.
    OutputKey { attempt: u64 },
}

impl WrapContext {
    /// The HPKE `info` string of this purpose.
    fn info(self) -> Vec<u8> {
        match self {
            WrapContext::JobKey => b"crowdcloud job key v1".to_vec(),
            WrapContext::OutputKey { attempt } => {
                let mut info = b"crowdcloud output key v1".to_vec();
                info.extend_from_slice(&attempt.to_be_bytes());
                info
            }
        }
    }
}

/// A wrapped key: [`WRAPPED_KEY_BYTES`] bytes, written as lowercase hex (in text, JSON and
/// `Display`). Only the holder of the recipient's secret can unwrap it; it is not secret.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WrappedKey([u8; WRAPPED_KEY_BYTES]);

impl WrappedKey {
    /// A wrapped key from its bytes, which must be exactly [`WRAPPED_KEY_BYTES`] long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        let array = bytes.try_into().map_err(|_| {
            SealError::Format(format!(
                "a wrapped key is {WRAPPED_KEY_BYTES} bytes, this one is {}: copy it again whole",
                bytes.len()
            ))
        })?;
        Ok(Self(array))
    }

    pub fn as_bytes(&self) -> &[u8; WRAPPED_KEY_BYTES] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedKey({})", self.to_hex())
    }
}

impl FromStr for WrappedKey {
    type Err = SealError;
    fn from_str(text: &str) -> Result<Self, SealError> {
        let mut bytes = [0u8; WRAPPED_KEY_BYTES];
        match hex::decode_to_slice(text, &mut bytes) {
            Ok(()) if text.bytes().all(|b| !b.is_ascii_uppercase()) => Ok(Self(bytes)),
            _ => Err(SealError::Malformed {
                what: "wrapped key",
                value: text.chars().take(80).collect(),
                expected: "160 lowercase hex digits (an HPKE-wrapped key)",
            }),
        }
    }
}

crate::keys::serde_as_text!(WrappedKey);

/// Where the parts of a wrap lie: the encapsulated key, the sealed key, the tag.
fn split_wrap(wrapped: &mut [u8; WRAPPED_KEY_BYTES]) -> (&mut [u8], &mut [u8], &mut [u8]) {
    let (encapped_part, rest) = wrapped.split_at_mut(ENCAPPED_KEY_BYTES);
    let (key_part, tag_part) = rest.split_at_mut(32);
    (encapped_part, key_part, tag_part)
}

/// Wraps `key` so only the holder of `recipient`'s secret can unwrap it, and only for
/// `context`. Each wrap is fresh (a new ephemeral key), so two wraps of one key differ.
///
/// Fails only if `recipient` is not a usable public key (a low-order point, such as all zeros).
pub fn wrap(
    key: &DataKey,
    recipient: &EncryptionKey,
    context: WrapContext,
) -> Result<WrappedKey, SealError> {
    let mut wrapped = [0u8; WRAPPED_KEY_BYTES];
    let (encapped_part, key_part, tag_part) = split_wrap(&mut wrapped);
    // Sealed in place, so the key is never copied to the heap.
    key_part.copy_from_slice(key.as_bytes());
    let sealing = single_shot_seal_inout_detached_with_rng::<Aead, Kdf, Kem>(
        &OpModeS::Base,
        &recipient.hpke_public(),
        &context.info(),
        (&mut *key_part).into(),
        b"",
        &mut UnwrapErr(SysRng),
    );
    let Ok((encapped_key, tag)) = sealing else {
        // The key was not sealed: wipe its copy.
        key_part.zeroize();
        return Err(SealError::UnusableKey(recipient.to_hex()));
    };
    encapped_part.copy_from_slice(&encapped_key.to_bytes());
    tag_part.copy_from_slice(&tag.to_bytes());
    Ok(WrappedKey(wrapped))
}

/// Opens a [`wrap`] with the recipient's secret, for the same `context` it was made for.
/// Another holder's secret, another context or a changed byte all fail alike, with
/// [`SealError::NotForThisHolder`].
pub fn unwrap(
    wrapped: &WrappedKey,
    secret: &EncryptionSecret,
    context: WrapContext,
) -> Result<DataKey, SealError> {
    let mut opened = Zeroizing::new(wrapped.0);
    let (encapped_part, key_part, tag_part) = split_wrap(&mut opened);
    let encapped_key = <Kem as hpke::Kem>::EncappedKey::from_bytes(encapped_part)
        .expect("an X25519 encapsulated key is any 32 bytes");
    let tag = AeadTag::<Aead>::from_bytes(tag_part)
        .expect("the tag part of a wrap is a ChaCha20-Poly1305 tag's 16 bytes");
    single_shot_open_inout_detached::<Aead, Kdf, Kem>(
        &OpModeR::Base,
        &secret.hpke_private(),
        &encapped_key,
        &context.info(),
        (&mut *key_part).into(),
        b"",
        &tag,
    )
    .map_err(|_| SealError::NotForThisHolder)?;
    let key_bytes: [u8; 32] = (&*key_part)
        .try_into()
        .expect("the key part of a wrap is 32 bytes");
    Ok(DataKey::from_bytes(key_bytes))
}
