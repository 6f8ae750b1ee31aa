//! Managing the pool's bearer tokens: create, list and revoke. Secrets appear only once, in the
//! answer that creates them; listings show names, kinds and dates.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The kinds of token the owner manages. Node tokens are made by registration and end with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ManagedTokenKind {
    /// `ccr_…`: acts as a requester of its own.
    Requester,
    /// `ccj_…`: lets a node join.
    Join,
    /// `ccf_…`: lets another pool lend this one its idle slots, as one node of this pool.
    Federation,
}

impl ManagedTokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ManagedTokenKind::Requester => "requester",
            ManagedTokenKind::Join => "join",
            ManagedTokenKind::Federation => "federation",
        }
    }
}

/// A token as the owner sees it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// The first 16 hex digits of the token's BLAKE3 hash: names it in `revoke`.
    pub id: String,
    pub name: String,
    pub kind: ManagedTokenKind,
    /// The pool owner's own token(s): they may manage tokens and make join codes.
    pub owner: bool,
    pub created_at_ms: u64,
    pub revoked_at_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// `POST /v1/tokens`: a new token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreateRequest {
    /// 1 to 128 bytes of printable text, not only spaces; not `owner`.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    pub kind: ManagedTokenKind,
}

/// The new token's secret, shown this once, and its listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    pub token: String,
    pub info: TokenInfo,
}

/// Length of a token's public id, in hex digits.
pub const TOKEN_ID_HEX_DIGITS: usize = 16;

/// The public id of a token, from its stored hash.
pub fn token_id(token_hash: &str) -> String {
    token_hash.chars().take(TOKEN_ID_HEX_DIGITS).collect()
}
