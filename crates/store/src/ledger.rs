//! The credit ledger as the store keeps it: balances and what is pending per job at a start,
//! and an account's history for requesters and owners.

use std::collections::BTreeMap;

use sqlx::Row;
use wire::{Account, JobId, Memo, Transfer};

use crate::load::{corrupt, opt_u64_at, u64_at};
use crate::{Store, StoreError};

/// The ledger as a restart needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerImage {
    /// Every account's balance, in fuel.
    pub balances: BTreeMap<Account, i64>,
    /// What each pending account holds per job: a restart forgets the results it was held
    /// for, so it goes back to the job's requester.
    pub pending: Vec<(Account, JobId, i64)>,
    /// The sequence the next transfer takes.
    pub next_seq: u64,
}

fn account_at(row: &sqlx::any::AnyRow, column: &str) -> Result<Account, StoreError> {
    let text: String = row.try_get(column)?;
    text.parse().map_err(|error| corrupt(column, error))
}

/// Accounts one history may cover: a holder's few.
const ACCOUNTS_PER_HISTORY_MAX: usize = 4;

impl Store {
    pub(crate) async fn ledger(&self) -> Result<LedgerImage, StoreError> {
        let mut image = LedgerImage::default();
        for (column, sign) in [("to_account", 1i64), ("from_account", -1)] {
            let sql = format!(
                "SELECT {column} AS account, job_id, CAST(SUM(fuel) AS BIGINT) AS fuel \
                 FROM ledger GROUP BY {column}, job_id"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&self.pool)
                .await?;
            let mut pending: BTreeMap<(Account, JobId), i64> = image
                .pending
                .drain(..)
                .map(|(account, job, fuel)| ((account, job), fuel))
                .collect();
            for row in &rows {
                let account = account_at(row, "account")?;
                let fuel = sign * row.try_get::<i64, _>("fuel")?;
                *image.balances.entry(account).or_default() += fuel;
                let job = opt_u64_at(row, "job_id")?.map(|id| JobId::from_db(id as i64));
                if let (Account::Pending(_), Some(job)) = (account, job) {
                    *pending.entry((account, job)).or_default() += fuel;
                }
            }
            image.pending = pending
                .into_iter()
                .filter(|(_, fuel)| *fuel != 0)
                .map(|((account, job), fuel)| (account, job, fuel))
                .collect();
        }
        image.balances.retain(|_, fuel| *fuel != 0);
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM ledger")
            .fetch_one(&self.pool)
            .await?;
        image.next_seq = u64_at(&row, "seq")? + 1;
        Ok(image)
    }

    /// The transfers of any of `accounts` (one holder's, such as an owner's earned and
    /// pending accounts), newest first, at most `limit`.
    pub async fn history(
        &self,
        accounts: &[Account],
        limit: usize,
    ) -> Result<Vec<Transfer>, StoreError> {
        assert!(
            (1..=ACCOUNTS_PER_HISTORY_MAX).contains(&accounts.len()),
            "a history is of one holder's few accounts"
        );
        // Numbered parameters, each used twice: both engines bind `$n` by its number.
        let numbers: Vec<String> = (1..=accounts.len()).map(|n| format!("${n}")).collect();
        let list = format!("({})", numbers.join(", "));
        let limit_at = format!("${}", accounts.len() + 1);
        let sql = format!(
            "SELECT seq, at_ms, from_account, to_account, fuel, memo, job_id FROM ledger \
             WHERE from_account IN {list} OR to_account IN {list} ORDER BY seq DESC LIMIT {limit_at}"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for account in accounts {
            query = query.bind(account.to_string());
        }
        let rows = query.bind(limit as i64).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let memo: String = row.try_get("memo")?;
                Ok(Transfer {
                    seq: u64_at(row, "seq")?,
                    at_ms: u64_at(row, "at_ms")?,
                    from: account_at(row, "from_account")?,
                    to: account_at(row, "to_account")?,
                    fuel: u64_at(row, "fuel")?,
                    memo: serde_json::from_str::<Memo>(&memo).map_err(|e| corrupt("memo", e))?,
                    job_id: opt_u64_at(row, "job_id")?.map(|id| JobId::from_db(id as i64)),
                })
            })
            .collect()
    }

    /// The requesters whose token was created with `name`.
    pub async fn requesters_named(&self, name: &str) -> Result<Vec<wire::RequesterId>, StoreError> {
        let rows = sqlx::query("SELECT id FROM requesters WHERE name = $1 ORDER BY id")
            .bind(name.to_owned())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok(wire::RequesterId::from_db(row.try_get("id")?)))
            .collect()
    }
}
