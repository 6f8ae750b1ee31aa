//! The envelope of the API: the error body every non-2xx response carries, and the health check.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What went wrong, as a stable machine-readable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or breaks a rule; nothing was changed.
    BadRequest,
    /// No credentials, or credentials that are not valid.
    Unauthorized,
    /// Valid credentials that may not do this.
    Forbidden,
    NotFound,
    /// The request conflicts with the current state, e.g. a report of an expired attempt.
    Conflict,
    /// The body is larger than the endpoint accepts.
    PayloadTooLarge,
    /// A blob's bytes do not hash to the name they were sent under.
    HashMismatch,
    /// The caller has as much unfinished work as the pool takes from it; retry once some has
    /// ended.
    TooManyRequests,
    /// The coordinator cannot serve now (shutting down, storage failure); retry later.
    Unavailable,
    Internal,
    /// This coordinator is a standby: another one leads the pool. Nothing was changed; send the
    /// request to the leader (a client given every coordinator's URL moves on by itself).
    Standby,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::HashMismatch => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Unavailable | ErrorCode::Standby => 503,
            ErrorCode::Internal => 500,
        }
    }
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    pub code: ErrorCode,
    /// A sentence for people: what is wrong and what to do about it.
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// `GET /v1/health`: answered without credentials, so clients can tell a crowdcloud coordinator
/// from anything else listening on a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// Always `"crowdcloud"`.
    pub service: String,
    pub version: String,
    pub pool_name: String,
    /// The coordinator's clock, in milliseconds since the Unix epoch; `crowdcloud doctor`
    /// compares it with the local one (registration refuses nodes whose clock is far off).
    #[serde(default)]
    pub time_ms: u64,
    /// Whether this coordinator leads the pool or stands by for the one that does (absent from
    /// coordinators older than standbys, which always lead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<CoordinatorRole>,
    /// Who leads the pool, as it names itself (its URL), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The pool's remote address (`iroh:…`) while it serves the remote path: where a device
    /// that joined on the LAN reaches it away from home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

/// A coordinator's part in its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CoordinatorRole {
    /// It holds the lead of the pool's database and serves the pool.
    Leader,
    /// It waits to lead, answering only its health, once the leader's lead runs out.
    Standby,
}

pub const SERVICE_NAME: &str = "crowdcloud";
