//! Credentials on the wire: bearer tokens and the signed registration of a node.
//!
//! Tokens are random and carry a kind prefix so a join token pasted where an API token belongs
//! is recognised. The coordinator keeps only their BLAKE3 hash. A node's id is derived from its
//! ed25519 public key, and registration is signed with that key, so a node id cannot be claimed
//! by anyone who does not hold the key.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::WireError;
use crate::ids::NodeId;
use crate::node::RegisterRequest;

/// The kinds of bearer tokens, told apart by their prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Lets a requester submit and read its own jobs.
    Requester,
    /// Lets a node join the pool.
    Join,
    /// Bound to one registered node.
    Node,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::Requester => "ccr_",
            TokenKind::Join => "ccj_",
            TokenKind::Node => "ccn_",
        }
    }

    pub fn of(token: &str) -> Option<TokenKind> {
        [TokenKind::Requester, TokenKind::Join, TokenKind::Node]
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

/// The exact bytes a node signs to register. Binding the join token's hash, the time and the
/// offer means a captured registration cannot be replayed with other values or much later.
pub fn registration_message(
    public_key_hex: &str,
    issued_at_ms: u64,
    join_token: &str,
    name: &str,
    slots: u32,
) -> Vec<u8> {
    format!(
        "crowdcloud-register-v1\npublic_key={public_key_hex}\nissued_at_ms={issued_at_ms}\n\
         join={}\nname={name}\nslots={slots}\n",
        token_hash(join_token)
    )
    .into_bytes()
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
    let message = registration_message(
        &request.public_key,
        request.issued_at_ms,
        &request.join_token,
        &request.name,
        request.slots,
    );
    verifying_key
        .verify_strict(&message, &Signature::from_bytes(&signature))
        .map_err(|_| WireError::BadSignature)?;
    Ok(node_id_of(&public_key))
}

fn parse_hex_array<const N: usize>(
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
    use crate::node::Capabilities;

    fn signed_request(key: &SigningKey, join_token: &str) -> RegisterRequest {
        let public_key = hex::encode(key.verifying_key().to_bytes());
        let message = registration_message(&public_key, 1_000, join_token, "box", 4);
        RegisterRequest {
            join_token: join_token.to_owned(),
            public_key,
            signature: hex::encode(key.sign(&message).to_bytes()),
            issued_at_ms: 1_000,
            name: "box".to_owned(),
            capabilities: Capabilities::default(),
            labels: Default::default(),
            slots: 4,
            agent_version: "test".to_owned(),
        }
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
    fn a_registration_changed_after_signing_or_signed_by_another_key_is_refused() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let mut more_slots = signed_request(&key, "ccj_secret");
        more_slots.slots = 64;
        assert_eq!(
            verify_registration(&more_slots),
            Err(WireError::BadSignature)
        );

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
