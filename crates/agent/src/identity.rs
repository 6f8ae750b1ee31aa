//! The node's ed25519 identity: made on first start, kept in the data dir, readable only by its
//! owner. The node id is derived from the public key, so it cannot be claimed without the key.

use std::fs;
use std::io::Write;
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey};
use rand::RngExt;

use wire::NodeId;

use crate::AgentError;

const KEY_FILE: &str = "identity.key";

#[derive(Debug)]
pub(crate) struct Identity {
    key: SigningKey,
}

impl Identity {
    /// Loads the key from `data_dir`, creating it on first start.
    pub(crate) fn load_or_create(data_dir: &Path) -> Result<Self, AgentError> {
        let path = data_dir.join(KEY_FILE);
        let io = |source| AgentError::Io {
            path: path.display().to_string(),
            source,
        };
        match fs::read_to_string(&path) {
            Ok(text) => {
                let mut seed = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| AgentError::Identity {
                    path: path.display().to_string(),
                })?;
                Ok(Self {
                    key: SigningKey::from_bytes(&seed),
                })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let seed: [u8; 32] = rand::rng().random();
                let mut options = fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&path).map_err(io)?;
                file.write_all(hex::encode(seed).as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(Self {
                    key: SigningKey::from_bytes(&seed),
                })
            }
            Err(error) => Err(io(error)),
        }
    }

    /// The node id of the key in `data_dir`, without making one.
    pub(crate) fn load_existing(data_dir: &Path) -> Option<NodeId> {
        let text = fs::read_to_string(data_dir.join(KEY_FILE)).ok()?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed).ok()?;
        Some(
            Self {
                key: SigningKey::from_bytes(&seed),
            }
            .node_id(),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_survives_a_restart_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.node_id(), again.node_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "no one but the owner may read the key");
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
