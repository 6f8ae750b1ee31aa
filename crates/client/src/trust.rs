//! Calls about trust: joining with a code, join codes, and the owner's tokens.

use wire::pairing::{
    JoinCodeIssued, JoinCodeRequest, JoinFinishRequest, JoinFinishResponse, JoinStartRequest,
    JoinStartResponse,
};
use wire::tokens::{TokenCreateRequest, TokenCreated, TokenInfo, TokenList};

use crate::{Client, Result};

impl Client {
    /// A fresh join code (owner only); it replaces the live one.
    pub async fn new_join_code(&self, grant_api_token: bool) -> Result<JoinCodeIssued> {
        self.post("/v1/join/codes", &JoinCodeRequest { grant_api_token })
            .await
    }

    pub async fn join_start(&self, request: &JoinStartRequest) -> Result<JoinStartResponse> {
        self.post("/v1/join/start", request).await
    }

    pub async fn join_finish(&self, request: &JoinFinishRequest) -> Result<JoinFinishResponse> {
        self.post("/v1/join/finish", request).await
    }

    /// Every token of the pool, secrets left out (owner only).
    pub async fn tokens(&self) -> Result<TokenList> {
        self.get("/v1/tokens").await
    }

    pub async fn create_token(&self, request: &TokenCreateRequest) -> Result<TokenCreated> {
        self.post("/v1/tokens", request).await
    }

    /// Revokes a token by its id or (unique) name; it stops working at once.
    pub async fn revoke_token(&self, id_or_name: &str) -> Result<TokenInfo> {
        self.post(
            &format!("/v1/tokens/{}/revoke", path_segment(id_or_name)),
            &(),
        )
        .await
    }
}

/// Percent-encodes everything but unreserved characters, so a token name is one path segment.
fn path_segment(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
