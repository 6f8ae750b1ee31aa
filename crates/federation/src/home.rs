//! Joining the home pool as its node: a fresh identity per bridge, registered with the
//! federation token and described by this pool's largest node.

use std::collections::BTreeMap;

use client::Client;
use coordinator::Bridge;
use ed25519_dalek::{Signer, SigningKey};
use rand::RngExt;
use wire::{Capabilities, NodeRuntime, RegisterRequest};

use crate::FederationError;

/// This pool as a node of the home pool.
pub(crate) struct Home {
    /// Speaks for the node registered there.
    pub(crate) node: Client,
    pub(crate) node_id: wire::NodeId,
    pub(crate) heartbeat_ms: u64,
}

/// What the home pool is told this pool can run: its largest node, as a native node with no
/// key for private jobs (they never leave their pool).
pub(crate) fn described(largest: &Capabilities) -> Capabilities {
    Capabilities {
        runtime: NodeRuntime::Native,
        encryption_key: None,
        ..largest.clone()
    }
}

impl Home {
    /// Registers with the home pool: as a node called after this pool, that compiles and
    /// holds what this pool's largest node does, with up to [`wire::federation::HELD_MAX`]
    /// slots. A new identity each time: a bridge that restarts is a new node there, and the
    /// attempts of the old one run again, as for any node that restarted.
    pub(crate) async fn register(
        bridge: &Bridge,
        pool_name: &str,
        (largest, labels): (Capabilities, BTreeMap<String, String>),
    ) -> Result<Home, FederationError> {
        let anonymous = Client::pinned(&bridge.url, None, bridge.fingerprint)?;
        let seed: [u8; 32] = rand::rng().random();
        let key = SigningKey::from_bytes(&seed);
        let challenge = anonymous
            .challenge(&bridge.token)
            .await
            .map_err(FederationError::from_home)?;
        let capabilities = described(&largest);
        let mut request = RegisterRequest {
            join_token: bridge.token.clone(),
            public_key: hex::encode(key.verifying_key().to_bytes()),
            signature: String::new(),
            nonce: challenge.nonce,
            name: wire::validate::fit_line(
                &format!("pool {pool_name}"),
                wire::limits::DEVICE_NAME_BYTES_MAX,
            ),
            capabilities,
            labels,
            slots: wire::federation::HELD_MAX,
            agent_version: format!("crowdcloud {} (federation)", env!("CARGO_PKG_VERSION")),
        };
        let message = wire::auth::registration_message(&request);
        request.signature = hex::encode(key.sign(&message).to_bytes());
        let registered = anonymous
            .register(&request)
            .await
            .map_err(FederationError::from_home)?;
        tracing::info!(
            peer = %bridge.peer,
            pool = %registered.pool_name,
            node = %registered.node_id,
            "joined the peer's pool as a node"
        );
        Ok(Home {
            node: anonymous.with_token(registered.node_token),
            node_id: registered.node_id,
            heartbeat_ms: registered.heartbeat_ms,
        })
    }
}
