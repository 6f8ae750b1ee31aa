//! Credits: metered work, earned by providers for verified results and spent by requesters.
//!
//! Every amount is fuel, the sandbox's deterministic unit of work, so a credit is worth the
//! same on any hardware. Accounts are double-entry: every transfer moves an amount from one
//! account to another, and the balances of all accounts sum to zero. The pool's own account
//! issues what the owner grants, so it runs negative.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{JobId, RequesterId, WireError};

/// Fuel in one credit.
pub const FUEL_PER_CREDIT: u64 = 1_000_000_000;

/// An account of the ledger. As text: `pool`, `requester:r-…`, `owner:<16 hex>` (the nodes of
/// one join token), `pending:<16 hex>` (what those nodes earned that is not verified yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Account {
    Pool,
    Requester(RequesterId),
    Owner(u64),
    Pending(u64),
}

impl std::fmt::Display for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Account::Pool => f.write_str("pool"),
            Account::Requester(id) => write!(f, "requester:{id}"),
            Account::Owner(owner) => write!(f, "owner:{owner:016x}"),
            Account::Pending(owner) => write!(f, "pending:{owner:016x}"),
        }
    }
}

impl From<Account> for String {
    fn from(account: Account) -> String {
        account.to_string()
    }
}

impl TryFrom<String> for Account {
    type Error = WireError;
    fn try_from(text: String) -> Result<Self, WireError> {
        text.parse()
    }
}

impl std::str::FromStr for Account {
    type Err = WireError;
    fn from_str(text: &str) -> Result<Self, WireError> {
        let malformed = || WireError::Malformed {
            what: "account",
            value: text.to_owned(),
            expected: "pool, requester:r-…, owner:<16 hex> or pending:<16 hex>",
        };
        let owner = |hex: &str| {
            (hex.len() == 16)
                .then(|| u64::from_str_radix(hex, 16).ok())
                .flatten()
                .ok_or_else(malformed)
        };
        match text.split_once(':') {
            None if text == "pool" => Ok(Account::Pool),
            Some(("requester", id)) => Ok(Account::Requester(id.parse()?)),
            Some(("owner", hex)) => Ok(Account::Owner(owner(hex)?)),
            Some(("pending", hex)) => Ok(Account::Pending(owner(hex)?)),
            _ => Err(malformed()),
        }
    }
}

/// Why credit moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Memo {
    /// The pool's owner gave a requester credit.
    Grant,
    /// A requester paid for one execution of its job's task: to its node's owner at once in a
    /// family pool, held as pending in a pool that verifies.
    Execution,
    /// A result was verified: what its node's owner had pending is earned.
    Verified,
    /// A result was not accepted (it disagreed, stayed inconclusive, or its node was banned):
    /// the requester gets back what it paid for it.
    Refund,
    /// A banned owner loses what it had earned.
    Clawback,
}

/// One transfer, as a requester or owner reads its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Transfer {
    /// Its place in the pool's ledger.
    pub seq: u64,
    pub at_ms: u64,
    #[schema(value_type = String)]
    pub from: Account,
    #[schema(value_type = String)]
    pub to: Account,
    pub fuel: u64,
    pub memo: Memo,
    pub job_id: Option<JobId>,
}

/// An account and what it holds, in fuel (negative for the pool's own account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Balance {
    #[schema(value_type = String)]
    pub account: Account,
    pub fuel: i64,
}

/// `GET /v1/credits`: the caller's balance and history; the pool's owner also sees every
/// account's balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Credits {
    /// The caller's balance: a requester's, or what an owner of nodes earned.
    pub balance: Balance,
    /// What an owner of nodes has pending: paid for results that wait to be verified (an
    /// owner's view only, asked with its join token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Balance>,
    /// Newest first, at most [`crate::limits::CREDIT_HISTORY_MAX`].
    pub history: Vec<Transfer>,
    /// Every account with a balance, the pool's own included (the pool's owner only): what
    /// each owner of nodes earned and has pending, and what each requester holds.
    #[serde(default)]
    pub accounts: Vec<Balance>,
    /// Whether the pool lets a requester submit only with credit (a public pool).
    pub required: bool,
    pub fuel_per_credit: u64,
}

/// `POST /v1/credits/grant`: the pool's owner gives a requester credit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditGrant {
    /// The name the requester's token was created with.
    pub requester: String,
    /// Whole credits, at least 1.
    #[schema(minimum = 1)]
    pub credits: u64,
}

/// What a grant did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreditGranted {
    pub balance: Balance,
}

/// Credits as people read them: fuel over [`FUEL_PER_CREDIT`], three decimals.
pub fn credits_text(fuel: i64) -> String {
    let sign = if fuel < 0 { "-" } else { "" };
    let fuel = fuel.unsigned_abs();
    let whole = fuel / FUEL_PER_CREDIT;
    let milli = (fuel % FUEL_PER_CREDIT) / (FUEL_PER_CREDIT / 1000);
    format!("{sign}{whole}.{milli:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_read_back_as_written_and_malformed_ones_are_refused() {
        for account in [
            Account::Pool,
            Account::Requester(RequesterId(7)),
            Account::Owner(0xdead_beef),
            Account::Pending(u64::MAX),
        ] {
            assert_eq!(account.to_string().parse::<Account>(), Ok(account));
        }
        for bad in [
            "",
            "pools",
            "owner:12",
            "pending:zzzzzzzzzzzzzzzz",
            "requester:7",
        ] {
            assert!(bad.parse::<Account>().is_err(), "{bad}");
        }
    }

    #[test]
    fn credits_read_as_whole_and_thousandths() {
        assert_eq!(credits_text(0), "0.000");
        assert_eq!(credits_text(1_500_000_000), "1.500");
        assert_eq!(credits_text(-2_000_000), "-0.002");
    }
}
