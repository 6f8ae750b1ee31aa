//! The owner's routes for trust: API and join tokens (create, list, revoke), join codes, and
//! the code exchange through which a new device joins (`crowdcloud join`).
//!
//! Token management and join codes take the owner's API token. The exchange itself takes no
//! token (the joiner has none yet): it is bounded by the join desk instead (one live code, a few
//! wrong tries, limits per source address, few exchanges in flight).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;

use wire::auth::{TokenKind, token_hash};
use wire::pairing::{
    JoinCodeIssued, JoinCodeRequest, JoinFinishRequest, JoinFinishResponse, JoinGrant,
    JoinStartRequest, JoinStartResponse,
};
use wire::tokens::{
    ManagedTokenKind, TokenCreateRequest, TokenCreated, TokenInfo, TokenList, token_id,
};
use wire::{ApiError, ErrorCode};

use super::{ApiResult, AppState, Body, Failure, bearer};
use crate::join::{CODE_TRIES, CODE_TTL_MS, JoinRefusal, Source};
use crate::pool::{CreateToken, NewToken, RevokeToken};

/// Hex digits of a SPAKE2 message (a side byte and a 32-byte point).
const MESSAGE_HEX_MAX: usize = 2 * 64;
/// Hex digits of a confirmation (HMAC-SHA256).
const CONFIRMATION_HEX_MAX: usize = 2 * 64;
const SESSION_CHARS_MAX: usize = 64;

/// The pool owner, from an owner API token; the token's hash is kept so the owner cannot revoke
/// the token it is using.
pub(crate) struct Owner {
    token_hash: String,
}

impl FromRequestParts<AppState> for Owner {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, shared: &AppState) -> Result<Self, Failure> {
        let token = bearer(parts).ok_or_else(|| {
            Failure::new(
                ErrorCode::Unauthorized,
                "send the owner's API token as `Authorization: Bearer ccr_…`; it is owner.token in the data dir of `crowdcloud up`",
            )
        })?;
        let hash = token_hash(token);
        let live = TokenKind::of(token) == Some(TokenKind::Requester)
            && shared.requester_by_token(&hash).is_some();
        if !live {
            return Err(Failure::new(
                ErrorCode::Unauthorized,
                "the API token is not valid for this pool (unknown or revoked)",
            ));
        }
        if !shared.join.is_owner_token(&hash) {
            return Err(Failure::new(
                ErrorCode::Forbidden,
                "only the pool owner may do this; run it on the machine of `crowdcloud up` (it uses owner.token there)",
            ));
        }
        Ok(Owner { token_hash: hash })
    }
}

fn check_name(name: &str, what: &str) -> ApiResult<()> {
    if name.trim().is_empty()
        || name.len() > wire::limits::DEVICE_NAME_BYTES_MAX
        || name.chars().any(char::is_control)
    {
        return Err(Failure::bad_request(format!(
            "{what}: give 1 to {} bytes of printable text",
            wire::limits::DEVICE_NAME_BYTES_MAX
        )));
    }
    Ok(())
}

fn token_info(shared: &AppState, row: &store::TokenRow) -> TokenInfo {
    TokenInfo {
        id: token_id(&row.hash),
        name: row.name.clone(),
        kind: match row.role {
            store::TokenRole::Requester(_) => ManagedTokenKind::Requester,
            store::TokenRole::Join => ManagedTokenKind::Join,
            store::TokenRole::Federation => ManagedTokenKind::Federation,
        },
        owner: shared.join.is_owner_token(&row.hash),
        created_at_ms: row.created_at_ms,
        revoked_at_ms: row.revoked_at_ms,
    }
}

/// Every stored token, after everything done before this request has reached the store.
async fn stored_tokens(shared: &AppState) -> ApiResult<Vec<store::TokenRow>> {
    shared.store.flush().await?;
    let mut rows = shared.store.tokens().await?;
    rows.sort_by(|a, b| {
        a.created_at_ms
            .cmp(&b.created_at_ms)
            .then(a.name.cmp(&b.name))
    });
    Ok(rows)
}

#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, body = TokenList), (status = 401, body = ApiError, description = "no valid API token"), (status = 403, body = ApiError, description = "only the pool owner may do this")),
    security(("requester" = [])))]
pub(crate) async fn list(
    State(shared): State<AppState>,
    _owner: Owner,
) -> ApiResult<Json<TokenList>> {
    let rows = stored_tokens(&shared).await?;
    Ok(Json(TokenList {
        tokens: rows.iter().map(|row| token_info(&shared, row)).collect(),
    }))
}

#[utoipa::path(post, path = "/v1/tokens", tag = "tokens",
    request_body = TokenCreateRequest,
    responses(
        (status = 200, body = TokenCreated),
        (status = 400, body = ApiError, description = "the body is not valid, or the name is empty, too long or `owner`"),
        (status = 401, body = ApiError, description = "no valid API token"), (status = 403, body = ApiError, description = "only the pool owner may do this"),
        (status = 409, body = ApiError, description = "the pool has as many live tokens as it keeps"),
        (status = 413, body = ApiError, description = "the body is larger than this route accepts"),
    ),
    security(("requester" = [])))]
pub(crate) async fn create(
    State(shared): State<AppState>,
    _owner: Owner,
    Body(request): Body<TokenCreateRequest>,
) -> ApiResult<Json<TokenCreated>> {
    check_name(&request.name, "the token's name")?;
    if request.name == crate::OWNER_TOKEN_NAME {
        return Err(Failure::bad_request(
            "the name `owner` is the pool owner's own token; choose another name",
        ));
    }
    let (token, created) = mint(&shared, request.kind, &request.name).await?;
    Ok(Json(TokenCreated {
        token,
        info: TokenInfo {
            id: token_id(&created),
            name: request.name,
            kind: request.kind,
            owner: false,
            created_at_ms: shared.now_ms(),
            revoked_at_ms: None,
        },
    }))
}

/// Makes and stores a token of `kind` called `name`; returns it and its hash once committed.
async fn mint(
    shared: &AppState,
    kind: ManagedTokenKind,
    name: &str,
) -> ApiResult<(String, String)> {
    let token_kind = match kind {
        ManagedTokenKind::Requester => TokenKind::Requester,
        ManagedTokenKind::Join => TokenKind::Join,
        ManagedTokenKind::Federation => TokenKind::Federation,
    };
    let token = token_kind.token_from_secret(shared.entropy().secret());
    let hash = token_hash(&token);
    let (made, commit) = shared.apply(CreateToken {
        hash: hash.clone(),
        name: name.to_owned(),
        kind: match kind {
            ManagedTokenKind::Requester => NewToken::Requester,
            ManagedTokenKind::Join => NewToken::Join,
            ManagedTokenKind::Federation => NewToken::Federation,
        },
        live_max: wire::limits::TOKENS_MAX,
    });
    if !made {
        return Err(Failure::new(
            ErrorCode::Conflict,
            format!(
                "the pool already has {} live tokens; revoke some with `crowdcloud tokens revoke`",
                wire::limits::TOKENS_MAX
            ),
        ));
    }
    shared.committed(commit).await?;
    Ok((token, hash))
}

#[utoipa::path(post, path = "/v1/tokens/{id}/revoke", tag = "tokens",
    // Named `id`, not `token`: it is never the secret, which must not travel in a URL.
    params(("id" = String, Path, description = "the token's id (16 hex digits) or its name, if no other live token has it")),
    responses(
        (status = 200, body = TokenInfo),
        (status = 401, body = ApiError, description = "no valid API token"), (status = 403, body = ApiError, description = "only the pool owner may do this"),
        (status = 404, body = ApiError, description = "no token has this id, and no live token this name"),
        (status = 409, body = ApiError, description = "the token is already revoked, is the caller's own, or its name is not unique"),
    ),
    security(("requester" = [])))]
pub(crate) async fn revoke(
    State(shared): State<AppState>,
    owner: Owner,
    Path(which): Path<String>,
) -> ApiResult<Json<TokenInfo>> {
    let rows = stored_tokens(&shared).await?;
    let by_id: Vec<&store::TokenRow> = rows
        .iter()
        .filter(|row| token_id(&row.hash) == which)
        .collect();
    let candidates: Vec<&store::TokenRow> = if by_id.is_empty() {
        rows.iter()
            .filter(|row| row.name == which && row.revoked_at_ms.is_none())
            .collect()
    } else {
        by_id
    };
    let row = match candidates.as_slice() {
        [] => {
            return Err(Failure::new(
                ErrorCode::NotFound,
                format!(
                    "no live token has the id or name {which:?}; `crowdcloud tokens list` shows them"
                ),
            ));
        }
        [row] => *row,
        many => {
            return Err(Failure::new(
                ErrorCode::Conflict,
                format!(
                    "{} live tokens are called {which:?}; revoke one by its id (`crowdcloud tokens list` shows them)",
                    many.len()
                ),
            ));
        }
    };
    if row.hash == owner.token_hash {
        return Err(Failure::new(
            ErrorCode::Conflict,
            "this is the token you are using; revoking it would lock you out",
        ));
    }
    let hash = row.hash.clone();
    let (revoked, commit) = shared.apply(RevokeToken { hash: hash.clone() });
    shared.committed(commit).await?;
    if !revoked {
        return Err(Failure::new(
            ErrorCode::Conflict,
            format!("the token {} is already revoked", token_id(&hash)),
        ));
    }
    tracing::info!(token = %token_id(&hash), name = %row.name, "token revoked");
    let mut info = token_info(&shared, row);
    info.revoked_at_ms = Some(shared.now_ms());
    Ok(Json(info))
}

#[utoipa::path(post, path = "/v1/join/codes", tag = "join",
    request_body = JoinCodeRequest,
    responses(
        (status = 200, body = JoinCodeIssued),
        (status = 400, body = ApiError, description = "the body is not a valid request"),
        (status = 401, body = ApiError, description = "no valid API token"), (status = 403, body = ApiError, description = "only the pool owner may do this"),
        (status = 409, body = ApiError, description = "the coordinator serves plain HTTP; joining needs TLS"),
        (status = 413, body = ApiError, description = "the body is larger than this route accepts"),
    ),
    security(("requester" = [])))]
pub(crate) async fn new_code(
    State(shared): State<AppState>,
    _owner: Owner,
    Body(request): Body<JoinCodeRequest>,
) -> ApiResult<Json<JoinCodeIssued>> {
    if shared.join.fingerprint().is_none() {
        return Err(refusal(JoinRefusal::NoTls));
    }
    let code = shared.join.new_code(
        shared.now_ms(),
        shared.entropy().next_u64(),
        request.grant_api_token,
    );
    Ok(Json(JoinCodeIssued {
        code,
        expires_in_ms: CODE_TTL_MS,
        tries: CODE_TRIES,
        grants_api_token: request.grant_api_token,
    }))
}

fn refusal(refusal: JoinRefusal) -> Failure {
    match refusal {
        JoinRefusal::NoTls => Failure::new(
            ErrorCode::Conflict,
            "this coordinator serves plain HTTP on loopback; joining needs TLS: start it with --lan (or --listen on a LAN address, or --tls)",
        ),
        JoinRefusal::NoCode => Failure::new(
            ErrorCode::Unauthorized,
            "no join code is live (it expired, was used, or too many wrong tries burned it); get a fresh one with `crowdcloud join-code` on the owner's machine",
        ),
        JoinRefusal::Malformed(message) => Failure::bad_request(message),
        JoinRefusal::Busy(message) => Failure::new(ErrorCode::Unavailable, message),
        JoinRefusal::Failed(message) => Failure::new(ErrorCode::Unauthorized, message),
    }
}

fn hex_field(text: &str, what: &str, max: usize) -> ApiResult<Vec<u8>> {
    if text.len() > max {
        return Err(Failure::bad_request(format!("{what} is too long")));
    }
    hex::decode(text).map_err(|_| Failure::bad_request(format!("{what} must be hex")))
}

#[utoipa::path(post, path = "/v1/join/start", tag = "join",
    request_body = JoinStartRequest,
    responses(
        (status = 200, body = JoinStartResponse),
        (status = 400, body = ApiError, description = "the body is not valid: device name or message"),
        (status = 401, body = ApiError, description = "no join code is live"),
        (status = 409, body = ApiError, description = "the coordinator serves plain HTTP; joining needs TLS"),
        (status = 413, body = ApiError, description = "the body is larger than this route accepts"),
        (status = 503, body = ApiError, description = "too many exchanges at once, or starts too close together; retry shortly"),
    ))]
pub(crate) async fn start(
    State(shared): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Body(request): Body<JoinStartRequest>,
) -> ApiResult<Json<JoinStartResponse>> {
    check_name(&request.device_name, "device_name")?;
    let message = hex_field(&request.message, "message", MESSAGE_HEX_MAX)?;
    let started = shared
        .join
        .start(
            Source::of(peer.ip()),
            &request.device_name,
            &message,
            shared.now_ms(),
            shared.entropy(),
        )
        .map_err(refusal)?;
    tracing::info!(device = %request.device_name, %peer, "join exchange started");
    Ok(Json(JoinStartResponse {
        session: started.session,
        pool_name: shared.config.pool_name.clone(),
        message: hex::encode(started.message),
    }))
}

#[utoipa::path(post, path = "/v1/join/finish", tag = "join",
    request_body = JoinFinishRequest,
    responses(
        (status = 200, body = JoinFinishResponse),
        (status = 400, body = ApiError, description = "the body is not valid: session or confirmation"),
        (status = 401, body = ApiError, description = "the exchange is unknown, or the joiner did not prove the code"),
        (status = 409, body = ApiError, description = "the pool already has as many live tokens as it keeps"),
        (status = 413, body = ApiError, description = "the body is larger than this route accepts"),
    ))]
pub(crate) async fn finish(
    State(shared): State<AppState>,
    Body(request): Body<JoinFinishRequest>,
) -> ApiResult<Json<JoinFinishResponse>> {
    if request.session.len() > SESSION_CHARS_MAX {
        return Err(Failure::bad_request("session is too long"));
    }
    let confirmation = hex_field(&request.confirmation, "confirmation", CONFIRMATION_HEX_MAX)?;
    let joined = shared
        .join
        .finish(&request.session, &confirmation, shared.now_ms())
        .map_err(|refused| {
            tracing::warn!(?refused, "a join exchange failed");
            refusal(refused)
        })?;
    let (join_token, _) = mint(
        &shared,
        ManagedTokenKind::Join,
        &format!("join: {}", joined.device_name),
    )
    .await?;
    let api_token = if joined.grants_api_token {
        Some(
            mint(&shared, ManagedTokenKind::Requester, &joined.device_name)
                .await?
                .0,
        )
    } else {
        None
    };
    let grant = JoinGrant {
        pool_name: shared.config.pool_name.clone(),
        join_token,
        api_token,
    };
    let plaintext = serde_json::to_vec(&grant).map_err(|error| {
        Failure::new(
            ErrorCode::Internal,
            format!("cannot encode the grant: {error}"),
        )
    })?;
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&shared.entropy().secret()[..12]);
    tracing::info!(device = %joined.device_name, api = joined.grants_api_token, "a device joined the pool");
    Ok(Json(JoinFinishResponse {
        confirmation: hex::encode(joined.sealer.confirmation()),
        sealed: hex::encode(joined.sealer.seal(&plaintext, nonce)),
    }))
}
