//! Private jobs on the wire: what a node publishes to receive job keys, what a requester
//! attaches to a job whose data is sealed, and what a node running one of its attempts is sent.
//!
//! The bytes behind these strings are made and opened by the `seal` crate (HPKE for keys, a
//! streaming AEAD for blobs); this module only carries them and checks their shape. A node's
//! encryption key is signed by its ed25519 identity, so a requester who names a node by id can
//! check that the key it wraps to belongs to that node, whatever the coordinator says.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::WireError;
use crate::ids::{BlobHash, NodeId};

/// The hex digits of a wrapped key: an HPKE encapsulated key (32 bytes) and the sealed 32-byte
/// key with its tag (48 bytes).
pub const WRAPPED_KEY_HEX_DIGITS: usize = 160;

/// Nodes a private job's key may be wrapped to: each wrap is a node that may run its tasks.
pub const KEY_HOLDERS_MAX: usize = 10_000;

/// A node's X25519 public key for receiving job keys, signed by the node's identity key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeEncryptionKey {
    /// 64 hex digits.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub key: String,
    /// 128 hex digits: the node's ed25519 signature of [`encryption_key_message`].
    #[schema(pattern = "^[0-9a-fA-F]{128}$")]
    pub signature: String,
}

/// The bytes a node signs to publish `key_hex` as its encryption key.
pub fn encryption_key_message(key_hex: &str) -> Vec<u8> {
    let mut message = b"crowdcloud node encryption key v1\n".to_vec();
    message.extend_from_slice(key_hex.as_bytes());
    message
}

impl NodeEncryptionKey {
    /// The key as bytes, once its shape is right.
    pub fn key_bytes(&self) -> Result<[u8; 32], WireError> {
        crate::auth::parse_hex_array::<32>(&self.key, "encryption key", "64 hex digits")
    }

    /// Checks that the node whose ed25519 public key is `public_key` signed this key.
    pub fn verify(&self, public_key: &[u8; 32]) -> Result<(), WireError> {
        self.key_bytes()?;
        let signature =
            crate::auth::parse_hex_array::<64>(&self.signature, "signature", "128 hex digits")?;
        let verifying_key =
            VerifyingKey::from_bytes(public_key).map_err(|_| WireError::BadSignature)?;
        verifying_key
            .verify_strict(
                &encryption_key_message(&self.key),
                &Signature::from_bytes(&signature),
            )
            .map_err(|_| WireError::BadSignature)
    }
}

/// A 32-byte key wrapped to one holder's encryption key with HPKE, as hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WrappedKey(pub String);

impl utoipa::PartialSchema for WrappedKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::ids::string_schema(
            "a 32-byte key wrapped with HPKE (X25519, HKDF-SHA256, ChaCha20-Poly1305): 160 \
             lowercase hex digits",
            "^[0-9a-f]{160}$",
        )
    }
}

impl utoipa::ToSchema for WrappedKey {}

impl WrappedKey {
    pub fn check(&self, field: &str) -> Result<(), WireError> {
        crate::validate::hex_digits(&self.0, field, WRAPPED_KEY_HEX_DIGITS).map_err(|_| {
            WireError::Invalid {
                field: field.to_owned(),
                problem: format!(
                    "a wrapped key is {WRAPPED_KEY_HEX_DIGITS} lowercase hex digits; wrap it \
                     again with `crowdcloud keys grant`"
                ),
            }
        })
    }
}

/// What makes a job private: its inputs, stdin and mount files are sealed with a key of its
/// own, which only the requester and the nodes named here can unwrap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivateJob {
    /// The requester's X25519 public key, 64 hex digits: outputs are sealed to it.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub requester_key: String,
    /// The job's key wrapped to the requester's own key, so that `keys grant` can wrap it to
    /// more nodes later, from any device that holds the requester's key.
    pub requester_wrap: WrappedKey,
    /// The sealed manifest: the requester's key and, for every sealed blob, the hash of its
    /// plaintext. Only holders of the job's key could have written it.
    pub manifest: ManifestRef,
    /// The job's key wrapped to each node that may run its tasks; no other node is offered
    /// them. At most [`KEY_HOLDERS_MAX`].
    pub keys: BTreeMap<NodeId, WrappedKey>,
    /// The module is sealed too. The coordinator cannot check it then: a node that cannot
    /// compile it ends the attempt as `module_rejected`, and a node keeps its compiled code in
    /// memory only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub module_sealed: bool,
}

/// A sealed manifest of at most this many bytes travels in the job itself (base64), saving a
/// blob's upload and fetch on every small job; a larger one is a blob.
pub const MANIFEST_INLINE_BYTES_MAX: usize = 64 * 1024;

/// Where a private job's sealed manifest is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ManifestRef {
    /// A blob the requester uploaded.
    Blob(BlobHash),
    /// The sealed bytes themselves, base64 (standard alphabet, padded), at most
    /// [`MANIFEST_INLINE_BYTES_MAX`] bytes once decoded.
    Inline(String),
}

impl ManifestRef {
    /// The sealed bytes as an inline manifest; the caller keeps them within
    /// [`MANIFEST_INLINE_BYTES_MAX`].
    pub fn inline(sealed: &[u8]) -> ManifestRef {
        use base64::Engine as _;
        ManifestRef::Inline(base64::engine::general_purpose::STANDARD.encode(sealed))
    }

    /// The blob it names, if it is one.
    pub fn blob(&self) -> Option<BlobHash> {
        match self {
            ManifestRef::Blob(hash) => Some(*hash),
            ManifestRef::Inline(_) => None,
        }
    }

    /// The sealed bytes of an inline manifest, once their shape is checked.
    pub fn inline_bytes(&self) -> Option<Result<Vec<u8>, WireError>> {
        use base64::Engine as _;
        let ManifestRef::Inline(text) = self else {
            return None;
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()
            .filter(|bytes| bytes.len() <= MANIFEST_INLINE_BYTES_MAX);
        Some(decoded.ok_or_else(|| WireError::Invalid {
            field: "private.manifest.inline".to_owned(),
            problem: format!(
                "an inline manifest is base64 of at most {MANIFEST_INLINE_BYTES_MAX} bytes; \
                 upload a larger one as a blob"
            ),
        }))
    }
}

/// `POST /v1/jobs/{job}/keys`: the job's key wrapped to more nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyGrant {
    /// At most [`KEY_HOLDERS_MAX`] with those the job has.
    pub keys: BTreeMap<NodeId, WrappedKey>,
}

/// The answer to a [`KeyGrant`]: every node that may now run the job's tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeysGranted {
    pub holders: Vec<NodeId>,
}

/// What a node running an attempt of a private job is sent with the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrivateRuntime {
    /// The sealed manifest, which the node opens with the job's key.
    pub manifest: ManifestRef,
    /// The job's key wrapped to this node; absent when it was never granted one, and then the
    /// attempt ends as `no_key` without reading anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<WrappedKey>,
    /// The job's module is sealed like its inputs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub module_sealed: bool,
}

/// What sealing adds to one blob at most, besides its chunks' tags: the wrapped key of an
/// output (80 bytes), the stream's header (40) and the tags of a short and an empty last chunk.
pub const SEALED_BYTES_PER_BLOB: u64 = 256;

/// The plaintext bytes of one chunk of a sealed stream; each chunk adds a 16-byte tag.
pub const SEALED_CHUNK_BYTES: u64 = 64 * 1024;

/// The most bytes a blob of `plain_bytes` takes once sealed: what the coordinator's caps on
/// a private job's outputs allow for each cap on the plaintext.
pub fn sealed_bytes_bound(plain_bytes: u64) -> u64 {
    plain_bytes
        .saturating_add(plain_bytes.div_ceil(SEALED_CHUNK_BYTES).saturating_mul(16))
        .saturating_add(SEALED_BYTES_PER_BLOB)
}

/// What a private job's data is sealed from, and what it is not: said wherever such a job is
/// shown, in the same words.
pub const PRIVATE_JOB_TRUTH: &str = "sealed from the coordinator and the network; readable by \
     the owner of the machine that runs it";
