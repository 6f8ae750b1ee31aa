//! The node's ed25519 identity and its X25519 encryption key: made on first start, kept in the
//! data dir, readable only by its owner. The node id is derived from the public key, so it
//! cannot be claimed without the key; the encryption key, which private jobs' keys are wrapped
//! to, is published signed by the identity.

use std::fs;
use std::io::Write;
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey};
use rand::RngExt;

use wire::NodeId;

use crate::AgentError;

const KEY_FILE: &str = "identity.key";
const ENCRYPTION_KEY_FILE: &str = "encryption.key";

pub(crate) struct Identity {
    key: SigningKey,
    encryption: seal::EncryptionSecret,
    /// The public half, signed: made once, since every heartbeat's capabilities carry it.
    published: wire::NodeEncryptionKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.node_id())
    }
}

impl Identity {
    /// Loads the keys from `data_dir`, creating them on first start.
    pub(crate) fn load_or_create(data_dir: &Path) -> Result<Self, AgentError> {
        let seed = load_or_create_secret(&data_dir.join(KEY_FILE))?;
        let encryption = load_or_create_secret(&data_dir.join(ENCRYPTION_KEY_FILE))?;
        let key = SigningKey::from_bytes(&seed);
        let encryption = seal::EncryptionSecret::from_bytes(encryption);
        let public = encryption.public().to_hex();
        let signature = key.sign(&wire::private::encryption_key_message(&public));
        Ok(Self {
            key,
            encryption,
            published: wire::NodeEncryptionKey {
                key: public,
                signature: hex::encode(signature.to_bytes()),
            },
        })
    }

    /// The encryption key as the node publishes it: signed by its identity.
    pub(crate) fn encryption_key(&self) -> wire::NodeEncryptionKey {
        self.published.clone()
    }

    pub(crate) fn encryption_secret(&self) -> &seal::EncryptionSecret {
        &self.encryption
    }

    /// The node id of the key in `data_dir`, without making one.
    pub(crate) fn load_existing(data_dir: &Path) -> Option<NodeId> {
        let text = fs::read_to_string(data_dir.join(KEY_FILE)).ok()?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed).ok()?;
        let public_key = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        Some(wire::auth::node_id_of(&public_key))
    }

    pub(crate) fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    pub(crate) fn node_id(&self) -> NodeId {
        wire::auth::node_id_of(&self.key.verifying_key().to_bytes())
    }

    pub(crate) fn sign_hex(&self, message: &[u8]) -> String {
        hex::encode(self.key.sign(message).to_bytes())
    }
}

/// The 32 secret bytes kept as hex in `path`: read, or made and written (owner-only) on first
/// start. A damaged file is an error, never silently a new key.
fn load_or_create_secret(path: &Path) -> Result<[u8; 32], AgentError> {
    let io = |source| AgentError::Io {
        path: path.display().to_string(),
        source,
    };
    match fs::read_to_string(path) {
        Ok(text) => {
            let mut secret = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut secret).map_err(|_| AgentError::Identity {
                path: path.display().to_string(),
            })?;
            Ok(secret)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let secret: [u8; 32] = rand::rng().random();
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(io)?;
            file.write_all(hex::encode(secret).as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            Ok(secret)
        }
        Err(error) => Err(io(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_survives_a_restart_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.node_id(), again.node_id());
        assert_eq!(first.encryption_key(), again.encryption_key());
        let public_key: [u8; 32] = hex::decode(first.public_key_hex())
            .unwrap()
            .try_into()
            .unwrap();
        first.encryption_key().verify(&public_key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for file in [KEY_FILE, ENCRYPTION_KEY_FILE] {
                let mode = fs::metadata(dir.path().join(file))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o077, 0, "no one but the owner may read {file}");
            }
        }
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            Identity::load_or_create(other.path()).unwrap().node_id(),
            first.node_id()
        );
    }

    #[test]
    fn a_damaged_key_file_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), "not hex").unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(AgentError::Identity { .. })
        ));
    }
}
