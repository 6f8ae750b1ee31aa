//! The bodies of `crowdcloud join`'s code exchange and of the owner's join codes.
//!
//! A new device proves it knows the short code that `crowdcloud up` shows, without sending it,
//! by a SPAKE2 exchange bound to the coordinator's certificate fingerprint (the `pairing`
//! crate does the cryptography). The messages here are opaque hex to everyone else.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/join/codes` (the owner's API token): make a fresh join code. The code replaces the
/// one before it, so at most one code is ever live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinCodeRequest {
    /// Also give the device that joins with this code an API token of its own, so its
    /// requester commands work as well as its agent.
    #[serde(default)]
    pub grant_api_token: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JoinCodeIssued {
    /// Eight digits in two groups, e.g. `4821-0937`.
    pub code: String,
    /// The code stops working this long from now.
    pub expires_in_ms: u64,
    /// Wrong tries the code survives before it is burned.
    pub tries: u32,
    pub grants_api_token: bool,
}

/// `POST /v1/join/start`: the joiner's SPAKE2 message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinStartRequest {
    /// A name for people: the joining device's host name; 1 to 128 bytes of printable text.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub device_name: String,
    /// The joiner's SPAKE2 message, hex.
    #[schema(pattern = r"^([0-9a-fA-F]{2}){0,64}$")]
    pub message: String,
}

/// The coordinator's SPAKE2 message alone: nothing in it lets the joiner test a guess of the
/// code, so an exchange abandoned here costs the code no try.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JoinStartResponse {
    /// Names this exchange in `finish`.
    pub session: String,
    pub pool_name: String,
    /// The coordinator's SPAKE2 message, hex.
    pub message: String,
}

/// `POST /v1/join/finish`: the joiner's key confirmation. A wrong one is a wrong guess of the
/// code and spends one of its tries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinFinishRequest {
    #[schema(max_length = 64)]
    pub session: String,
    /// HMAC by the joiner's confirmation key over the transcript, hex.
    #[schema(pattern = r"^([0-9a-fA-F]{2}){0,64}$")]
    pub confirmation: String,
}

/// What the joiner gets once it confirmed: the coordinator's key confirmation, which the joiner
/// checks first, and a [`JoinGrant`] sealed under the exchange's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JoinFinishResponse {
    /// HMAC by the coordinator's confirmation key over the transcript, hex.
    pub confirmation: String,
    /// The sealed grant, hex.
    pub sealed: String,
}

/// The credentials a paired device receives, sealed (never sent in the clear, even inside TLS
/// to a pinned certificate, so a wrong pin cannot leak them either).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinGrant {
    pub pool_name: String,
    /// A join token made for this device alone (`ccj_…`), revocable on its own.
    pub join_token: String,
    /// An API token (`ccr_…`) when the owner's code granted one.
    pub api_token: Option<String>,
}
