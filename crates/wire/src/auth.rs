//! Credentials on the wire: bearer tokens and the signed registration of a node.
//!
//! Tokens are random and carry a kind prefix so a join token pasted where an API token belongs
//! is recognised. The coordinator keeps only their BLAKE3 hash. A node's id is derived from its
//! ed25519 public key, and registration is signed with that key, so a node id cannot be claimed
//! by anyone who does not hold the key. The signature covers every field of the registration
//! and a nonce the coordinator hands out once, so a captured registration cannot be replayed,
//! neither as it was nor with other labels or capabilities.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::Serialize;

use crate::WireError;
use crate::ids::NodeId;
use crate::node::{Capabilities, RegisterRequest};

/// The kinds of bearer tokens, told apart by their prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Lets a requester submit and read its own jobs.
    Requester,
    /// Lets a node join the pool.
    Join,
    /// Bound to one registered node.
    Node,
    /// Lets another pool join this one as a node that lends its own nodes' idle slots
    /// (federation); only the owner makes and revokes them.
    Federation,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::Requester => "ccr_",
            TokenKind::Join => "ccj_",
            TokenKind::Node => "ccn_",
            TokenKind::Federation => "ccf_",
        }
    }

    pub fn of(token: &str) -> Option<TokenKind> {
        [
            TokenKind::Requester,
            TokenKind::Join,
            TokenKind::Node,
            TokenKind::Federation,
        ]
        .into_iter()
        .find(|kind| token.starts_with(kind.prefix()))
    }

    /// A new token of this kind from 32 random bytes.
    pub fn token_from_secret(self, secret: [u8; 32]) -> String {
        format!("{}{}", self.prefix(), hex::encode(secret))
    }
}

/// What the coordinator stores in place of a token.
pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// The node id that belongs to an ed25519 public key.
pub fn node_id_of(public_key: &[u8; 32]) -> NodeId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"crowdcloud node id v1\n");
    hasher.update(public_key);
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    NodeId(u64::from_le_bytes(first))
}

/// What a registration signs: every field of the request but the signature, in a fixed order.
/// The join token is signed as its hash, so the message could be logged without leaking it.
#[derive(Serialize)]
struct SignedRegistration<'a> {
    nonce: &'a str,
    join_token_hash: String,
    public_key: &'a str,
    name: &'a str,
    capabilities: &'a Capabilities,
    labels: &'a BTreeMap<String, String>,
    slots: u32,
    agent_version: &'a str,
}

/// The exact bytes a node signs to register: a domain tag, then the JSON of every field of
/// `request` except its signature. JSON quotes and escapes every string and a struct keeps its
/// field order (labels are sorted by the map), so two different requests never give the same
/// bytes. Signing the challenge's nonce makes each signature good for one registration.
pub fn registration_message(request: &RegisterRequest) -> Vec<u8> {
    let signed = SignedRegistration {
        nonce: &request.nonce,
        join_token_hash: token_hash(&request.join_token),
        public_key: &request.public_key,
        name: &request.name,
        capabilities: &request.capabilities,
        labels: &request.labels,
        slots: request.slots,
        agent_version: &request.agent_version,
    };
    let mut message = b"crowdcloud-register-v2\n".to_vec();
    serde_json::to_writer(&mut message, &signed).expect("strings and numbers always serialize");
    message
}

/// Checks that `request` is signed by the key it names; returns that key's node id.
pub fn verify_registration(request: &RegisterRequest) -> Result<NodeId, WireError> {
    let public_key = parse_hex_array::<32>(&request.public_key, "public key", "64 hex digits")?;
    let signature = parse_hex_array::<64>(&request.signature, "signature", "128 hex digits")?;
    let verifying_key =
        VerifyingKey::from_bytes(&public_key).map_err(|_| WireError::Malformed {
            what: "public key",
            value: request.public_key.chars().take(80).collect(),
            expected: "a valid ed25519 public key",
        })?;
    verifying_key
        .verify_strict(
            &registration_message(request),
            &Signature::from_bytes(&signature),
        )
        .map_err(|_| WireError::BadSignature)?;
    Ok(node_id_of(&public_key))
}

pub(crate) fn parse_hex_array<const N: usize>(
    text: &str,
    what: &'static str,
    expected: &'static str,
) -> Result<[u8; N], WireError> {
    let mut bytes = [0u8; N];
    hex::decode_to_slice(text, &mut bytes).map_err(|_| WireError::Malformed {
        what,
        value: text.chars().take(80).collect(),
        expected,
    })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    fn signed_request(key: &SigningKey, join_token: &str) -> RegisterRequest {
        let mut request = RegisterRequest {
            join_token: join_token.to_owned(),
            public_key: hex::encode(key.verifying_key().to_bytes()),
            signature: String::new(),
            nonce: "ab".repeat(32),
            name: "box".to_owned(),
            capabilities: Capabilities {
                cores: 4,
                memory_bytes: 8 << 30,
                disk_free_bytes: 1 << 30,
                arch: "x86_64".to_owned(),
                os: "linux".to_owned(),
                module_bytes_max: crate::limits::MODULE_BYTES_MAX,
                wasi_interfaces: Vec::new(),
                wasm_features: Vec::new(),
                runtime: crate::NodeRuntime::Native,
                encryption_key: None,
                peer_address: None,
            },
            labels: BTreeMap::from([("region".to_owned(), "eu".to_owned())]),
            slots: 4,
            agent_version: "test".to_owned(),
        };
        request.signature = hex::encode(key.sign(&registration_message(&request)).to_bytes());
        request
    }

    #[test]
    fn a_signed_registration_verifies_to_the_keys_node_id() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let request = signed_request(&key, "ccj_secret");
        assert_eq!(
            verify_registration(&request),
            Ok(node_id_of(&key.verifying_key().to_bytes()))
        );
    }

    #[test]
    fn changing_any_signed_field_of_a_registration_breaks_its_signature() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        type Change = fn(&mut RegisterRequest);
        let changes: Vec<(&str, Change)> = vec![
            ("join token", |r| r.join_token = "ccj_other".to_owned()),
            ("nonce", |r| r.nonce = "cd".repeat(32)),
            ("name", |r| r.name = "other".to_owned()),
            ("cores", |r| r.capabilities.cores = 64),
            ("memory", |r| r.capabilities.memory_bytes += 1),
            ("disk", |r| r.capabilities.disk_free_bytes += 1),
            ("arch", |r| r.capabilities.arch = "aarch64".to_owned()),
            ("os", |r| r.capabilities.os = "macos".to_owned()),
            ("label value", |r| {
                r.labels.insert("region".to_owned(), "us".to_owned());
            }),
            ("label added", |r| {
                r.labels.insert("gpu".to_owned(), "yes".to_owned());
            }),
            ("labels removed", |r| r.labels.clear()),
            ("slots", |r| r.slots = 64),
            ("agent version", |r| r.agent_version = "9.9.9".to_owned()),
        ];
        for (what, change) in changes {
            let mut request = signed_request(&key, "ccj_secret");
            change(&mut request);
            assert_eq!(
                verify_registration(&request),
                Err(WireError::BadSignature),
                "a changed {what} must not verify"
            );
        }
    }

    #[test]
    fn fields_cannot_trade_bytes_to_keep_the_signed_message() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let mut first = signed_request(&key, "ccj_secret");
        first.labels = BTreeMap::from([("a".to_owned(), "b=c".to_owned())]);
        let mut second = first.clone();
        second.labels = BTreeMap::from([("a=b".to_owned(), "c".to_owned())]);
        second.signature = first.signature.clone();
        assert_eq!(verify_registration(&second), Err(WireError::BadSignature));
        assert_ne!(registration_message(&first), registration_message(&second));
    }

    #[test]
    fn a_registration_signed_by_another_key_or_malformed_is_refused() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let mut stolen_id = signed_request(&other, "ccj_secret");
        stolen_id.public_key = hex::encode(key.verifying_key().to_bytes());
        assert_eq!(
            verify_registration(&stolen_id),
            Err(WireError::BadSignature)
        );

        let mut garbage = signed_request(&key, "ccj_secret");
        garbage.signature = "zz".to_owned();
        assert!(matches!(
            verify_registration(&garbage),
            Err(WireError::Malformed { .. })
        ));
    }

    #[test]
    fn token_kinds_are_told_apart_by_prefix() {
        let token = TokenKind::Join.token_from_secret([1; 32]);
        assert_eq!(TokenKind::of(&token), Some(TokenKind::Join));
        assert_eq!(TokenKind::of("bearer"), None);
        assert_ne!(token_hash(&token), token_hash("ccj_other"));
    }
}
