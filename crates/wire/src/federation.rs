//! Federation: pools that lend each other capacity. The owner of the lending pool adds the other
//! pool as a peer, with a `ccf_…` token that the other pool's owner made; the lending pool then
//! joins the other one as a node, takes tasks there when its own nodes are idle, and runs them
//! as its own jobs, behind its own requesters' work.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::TokenKind;
use crate::{Fingerprint, WireError};

/// The most pools one pool lends its nodes to.
pub const PEERS_MAX: usize = 16;

/// The most tasks of another pool this pool holds at once, per peer: what it registers there as
/// its slots.
pub const HELD_MAX: u32 = 64;

/// The longest URL of a peer, in bytes.
pub const PEER_URL_BYTES_MAX: usize = 512;

/// `POST /v1/federation/peers`: lend this pool's idle slots to the pool at `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerRequest {
    /// The other pool's coordinator, `https://host:port`.
    #[schema(max_length = 512)]
    pub url: String,
    /// The SHA-256 fingerprint of its certificate, `sha256:…`.
    #[schema(value_type = String)]
    pub fingerprint: Fingerprint,
    /// The `ccf_…` token its owner made for this pool (`crowdcloud federation token`).
    #[schema(max_length = 68)]
    pub token: String,
}

impl PeerRequest {
    /// Refuses a URL that is not http(s), too long or with control characters, and a token that
    /// is not a federation token.
    pub fn check(&self) -> Result<(), WireError> {
        let url = self.url.as_str();
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        if !scheme_ok || url.len() > PEER_URL_BYTES_MAX || url.chars().any(char::is_control) {
            return Err(WireError::Invalid {
                field: "url".to_owned(),
                problem: format!(
                    "give the other pool's coordinator as https://HOST:PORT, at most \
                     {PEER_URL_BYTES_MAX} bytes"
                ),
            });
        }
        let token_ok = TokenKind::of(&self.token) == Some(TokenKind::Federation)
            && self.token.len() == 4 + 64
            && self.token[4..].bytes().all(|b| b.is_ascii_hexdigit());
        if !token_ok {
            return Err(WireError::Invalid {
                field: "token".to_owned(),
                problem: "give the ccf_… token the other pool's owner made with \
                          `crowdcloud tokens create NAME --kind federation`"
                    .to_owned(),
            });
        }
        Ok(())
    }
}

/// What the bridge to a peer is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BridgeState {
    /// Waiting for a node of this pool to be online, or joining the peer's pool.
    Starting,
    /// A node of the peer's pool, holding `borrowed` of its tasks now.
    Lending {
        node_id: crate::NodeId,
        borrowed: u32,
    },
    /// Stopped, and why; it starts again when the peer is added again or the coordinator
    /// restarts.
    Stopped { reason: String },
}

/// A pool this one lends its idle slots to; never its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Peer {
    /// Names it in `remove`.
    pub id: crate::PeerId,
    pub url: String,
    #[schema(value_type = String)]
    pub fingerprint: Fingerprint,
    pub added_at_ms: u64,
    /// The account its tasks are paid from here: what the other pool owes this one.
    pub account: crate::RequesterId,
    /// What its bridge does now; absent where this coordinator runs no bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<BridgeState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct PeerList {
    pub peers: Vec<Peer>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str, token: &str) -> PeerRequest {
        PeerRequest {
            url: url.to_owned(),
            fingerprint: Fingerprint::of_der(b"certificate"),
            token: token.to_owned(),
        }
    }

    #[test]
    fn a_peer_id_is_not_a_pipeline_id() {
        let peer = crate::PeerId(1).to_string();
        assert!(peer.parse::<crate::PipelineId>().is_err(), "{peer}");
        let pipeline = crate::PipelineId(1).to_string();
        assert!(pipeline.parse::<crate::PeerId>().is_err(), "{pipeline}");
    }

    #[test]
    fn a_peer_request_needs_an_http_url_and_a_federation_token() {
        let token = format!("ccf_{}", "ab".repeat(32));
        assert!(request("https://a.example:7878", &token).check().is_ok());
        let long = format!("https://{}", "a".repeat(PEER_URL_BYTES_MAX));
        for url in [
            "ftp://a.example",
            "a.example:7878",
            "https://a\n.example",
            long.as_str(),
        ] {
            let refused = request(url, &token).check().unwrap_err();
            assert!(
                refused.to_string().starts_with("url:"),
                "{url:?}: {refused}"
            );
        }
        let join = format!("ccj_{}", "ab".repeat(32));
        let short = "ccf_abc".to_owned();
        let not_hex = format!("ccf_{}", "zz".repeat(32));
        for token in [join, short, not_hex] {
            let refused = request("https://a.example", &token).check().unwrap_err();
            assert!(
                refused.to_string().starts_with("token:"),
                "{token:?}: {refused}"
            );
        }
    }
}
