//! The cryptography of private jobs: what lets a requester run a job on strangers' machines
//! while the coordinator, the blob store and every node not chosen see only ciphertext.
//!
//! - Every private job has a [`DataKey`]. Its blobs (inputs, stdin, mount files, the module if
//!   sealed) are [`seal`]ed under it: age's payload design, a fresh salt per blob, a subkey by
//!   HKDF-SHA256, and STREAM over ChaCha20-Poly1305 in 64 KiB chunks, so a changed, cut,
//!   extended or reordered blob does not open.
//! - The key travels only [`wrap`]ped, by HPKE (RFC 9180, base mode, X25519, HKDF-SHA256,
//!   ChaCha20-Poly1305), to the [`EncryptionKey`] of each node the job runs on, and each
//!   attempt's output key to the requester ([`seal_to`]: a fresh key per output blob, wrapped
//!   in front of it). The [`WrapContext`] is bound in, so a wrap for one
//!   purpose does not open for another.
//! - The [`Manifest`], sealed under the job key, says what only the key's holders can have
//!   written: whom outputs are for, and the plaintext hash behind every sealed blob.
//! - Replicas compare results by a [`ResultDigester`] keyed by the job key, which nobody
//!   without it can compute or test guesses against.
//!
//! No cryptography is made here: each piece is a reviewed crate, put together as designed.

mod digest;
mod error;
mod hashing;
mod keys;
mod manifest;
mod sealed_to;
mod stream;
mod wrap;

pub use digest::ResultDigester;
pub use error::SealError;
pub use hashing::Hashing;
pub use keys::{DataKey, EncryptionKey, EncryptionSecret};
pub use manifest::{MANIFEST_BYTES_MAX, Manifest};
pub use sealed_to::{PreparedKey, open_from, prepare_to, seal_to, seal_to_prepared, sealed_to_len};
pub use stream::{
    CHUNK_BYTES, HEADER_BYTES, MAGIC, TAG_BYTES, open, open_bytes, seal, seal_bytes, sealed_len,
};
pub use wrap::{WRAPPED_KEY_BYTES, WrapContext, WrappedKey, unwrap, wrap};

#[cfg(test)]
mod tests;
