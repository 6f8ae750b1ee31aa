//! A private job's manifest: sealed under the job key and uploaded as a blob, it says what only
//! the key's holders can have written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wire::BlobHash;

use crate::{DataKey, EncryptionKey, SealError, open_bytes, seal_bytes, sealed_len};

/// The largest manifest, as plaintext, that [`Manifest::open`] accepts: 64 MiB.
pub const MANIFEST_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// What only holders of a private job's key can have written.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The requester's key: outputs are wrapped to it. Nodes take it from here, not from the
    /// coordinator, which could otherwise have outputs wrapped to itself.
    pub requester: EncryptionKey,
    /// For every sealed blob of the job (inputs, stdin, mount files, and the module if sealed):
    /// the ciphertext's hash, the blob's name, to the plaintext's hash, which the node checks
    /// after opening.
    pub plain: BTreeMap<BlobHash, BlobHash>,
}

impl Manifest {
    /// The manifest as JSON, sealed under the job's key.
    pub fn seal(&self, key: &DataKey) -> Vec<u8> {
        let json = serde_json::to_vec(self)
            .expect("a manifest always serializes: its map keys are hex strings");
        seal_bytes(key, &json)
    }

    /// Opens a manifest sealed under `key`. One over [`MANIFEST_BYTES_MAX`] is refused before
    /// it is opened.
    pub fn open(sealed: &[u8], key: &DataKey) -> Result<Self, SealError> {
        if sealed.len() as u64 > sealed_len(MANIFEST_BYTES_MAX) {
            return Err(SealError::Format(format!(
                "a sealed manifest of {} bytes is over the limit of {} MiB: this is not a job's \
                 manifest, check the blob's hash",
                sealed.len(),
                MANIFEST_BYTES_MAX / (1024 * 1024)
            )));
        }
        let json = open_bytes(key, sealed)?;
        serde_json::from_slice(&json).map_err(|error| {
            SealError::Format(format!(
                "the manifest opened but is not one this version reads ({error}): update \
                 crowdcloud, or ask the requester which client wrote it"
            ))
        })
    }
}
