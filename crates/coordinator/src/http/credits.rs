//! Credit routes: a requester's balance and history, what owners of nodes earned (for the
//! pool's owner), and the owner's grants.

use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;

use axum::extract::FromRequestParts;
use wire::auth::{TokenKind, token_hash};
use wire::{Account, ApiError, CreditGrant, CreditGranted, Credits};

use super::trust::Owner;
use super::{ApiResult, AppState, Body, Failure, Requester, bearer};
use crate::pool::GrantCredits;

/// Whether the caller's token is the pool owner's.
fn is_owner(parts: &Parts, shared: &AppState) -> bool {
    bearer(parts).is_some_and(|token| shared.join.is_owner_token(&token_hash(token)))
}

#[utoipa::path(get, path = "/v1/credits", tag = "credits",
    description = "With an API token, the requester's balance and history (and, for the pool's \
        owner, every account). With a join token, what the owner of the nodes that joined with it \
        earned and has pending, and its history.",
    responses(
        (status = 200, body = Credits),
        (status = 401, body = ApiError, description = "no valid API or join token"),
    ),
    security(("requester" = [])))]
pub(crate) async fn show(
    State(shared): State<AppState>,
    mut parts: Parts,
) -> ApiResult<Json<Credits>> {
    if bearer(&parts).and_then(TokenKind::of) == Some(TokenKind::Join) {
        let owner = provider(&shared, &parts)?;
        let pending = Some(Account::Pending(owner));
        return credits_of(&shared, Account::Owner(owner), pending, false).await;
    }
    let Requester(requester) = Requester::from_request_parts(&mut parts, &shared).await?;
    let every_account = is_owner(&parts, &shared);
    credits_of(&shared, Account::Requester(requester), None, every_account).await
}

/// The owner key of the nodes that joined with the caller's join token, if it works.
fn provider(shared: &AppState, parts: &Parts) -> ApiResult<u64> {
    let hash = bearer(parts).map(token_hash).unwrap_or_default();
    let owner = crate::pool::owner_key(&hash).filter(|_| shared.is_join_token(&hash));
    owner.ok_or_else(|| {
        Failure::new(
            wire::ErrorCode::Unauthorized,
            "the join token is not valid for this pool (unknown or revoked)",
        )
    })
}

/// `account`'s balance (and `pending`'s, for an owner of nodes), their history, and with
/// `every_account` (the pool's owner) every balance of the ledger.
async fn credits_of(
    shared: &AppState,
    account: Account,
    pending: Option<Account>,
    every_account: bool,
) -> ApiResult<Json<Credits>> {
    let balance = |pool: &crate::pool::PoolState, account| wire::Balance {
        account,
        fuel: pool.balance(account),
    };
    let (balance_now, pending_now, accounts, required) = shared.read(|pool, _| {
        let accounts = match every_account {
            true => pool.all_balances(),
            false => Vec::new(),
        };
        let pending_now = pending.map(|pending| balance(pool, pending));
        (
            balance(pool, account),
            pending_now,
            accounts,
            pool.credit_required(),
        )
    });
    // The history is read after what came before this request is in the store.
    shared.store.flush().await?;
    let held: Vec<Account> = std::iter::once(account).chain(pending).collect();
    let history = shared
        .store
        .history(&held, wire::limits::CREDIT_HISTORY_MAX)
        .await?;
    Ok(Json(Credits {
        balance: balance_now,
        pending: pending_now,
        history,
        accounts,
        required,
        fuel_per_credit: wire::credits::FUEL_PER_CREDIT,
    }))
}

#[utoipa::path(post, path = "/v1/credits/grant", tag = "credits",
    request_body = CreditGrant,
    responses(
        (status = 200, body = CreditGranted),
        (status = 400, body = ApiError, description = "no credits, more than a grant may give, or no single requester of that name"),
        (status = 401, body = ApiError, description = "no valid API token"),
        (status = 403, body = ApiError, description = "only the pool owner may do this"),
    ),
    security(("requester" = [])))]
pub(crate) async fn grant(
    State(shared): State<AppState>,
    _owner: Owner,
    Body(request): Body<CreditGrant>,
) -> ApiResult<Json<CreditGranted>> {
    if !(1..=wire::limits::CREDITS_PER_GRANT_MAX).contains(&request.credits) {
        return Err(Failure::bad_request(format!(
            "credits: give between 1 and {}",
            wire::limits::CREDITS_PER_GRANT_MAX
        )));
    }
    shared.store.flush().await?;
    let named = shared.store.requesters_named(&request.requester).await?;
    let requester = match named.as_slice() {
        [one] => *one,
        [] => {
            return Err(Failure::bad_request(format!(
                "no requester is named {:?}; `crowdcloud tokens list` shows their names",
                request.requester
            )));
        }
        _ => {
            return Err(Failure::bad_request(format!(
                "{} requesters are named {:?}; give each token its own name",
                named.len(),
                request.requester
            )));
        }
    };
    let credits = request.credits;
    let (granted, commit) = shared.apply(GrantCredits { requester, credits });
    let balance = granted?;
    shared.committed(commit).await?;
    tracing::info!(%requester, credits, "credits granted");
    Ok(Json(CreditGranted { balance }))
}
