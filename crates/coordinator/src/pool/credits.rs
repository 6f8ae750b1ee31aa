//! Credits in the pool: the balances of the double-entry ledger, the transfers commands make,
//! and the rule that a public pool's requester needs credit to submit.
//!
//! A requester pays for every execution that gave a result, in fuel. In a family pool the
//! node's owner earns it at once. In a pool that verifies it is pending for the owner until
//! the result is verified (then earned) or not accepted (then refunded); a ban takes back what
//! the owner earned. Every change is a [`Event::CreditsMoved`] of two-sided transfers, so the
//! balances of all accounts always sum to zero.

use std::collections::BTreeMap;

use wire::{Account, Balance, JobId, Memo, NodeId, RequesterId, Transfer, Trust};

use super::events::Event;
use super::{Outbox, PoolError, PoolState};

/// The balances of every account with a non-zero one, and the sequence of the next transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Accounts {
    balances: BTreeMap<Account, i64>,
    next_seq: u64,
}

impl Default for Accounts {
    fn default() -> Self {
        Self {
            balances: BTreeMap::new(),
            next_seq: 1,
        }
    }
}

/// One transfer a command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Move {
    pub(crate) from: Account,
    pub(crate) to: Account,
    pub(crate) fuel: u64,
    pub(crate) memo: Memo,
    pub(crate) job: Option<JobId>,
}

/// The most the pool may issue in all: its account never passes minus this, so no balance
/// can overflow.
const ISSUED_FUEL_MAX: i64 = i64::MAX / 4;

impl PoolState {
    /// Records `moves` as one event; moves of nothing are left out.
    /// Moves between the same two accounts for the same reason and job become one transfer,
    /// so a report of many attempts writes one row per job, not one per attempt.
    pub(super) fn move_credits(&mut self, moves: Vec<Move>, now_ms: u64, out: &mut Outbox) {
        let mut merged: Vec<Move> = Vec::with_capacity(moves.len().min(16));
        for m in moves.into_iter().filter(|m| m.fuel > 0 && m.from != m.to) {
            let same =
                |o: &&mut Move| (o.from, o.to, o.memo, o.job) == (m.from, m.to, m.memo, m.job);
            match merged.iter_mut().find(same) {
                Some(other) => other.fuel = other.fuel.saturating_add(m.fuel),
                None => merged.push(m),
            }
        }
        let mut seq = self.accounts.next_seq;
        let transfers: Vec<Transfer> = merged
            .into_iter()
            .map(|m| {
                seq += 1;
                Transfer {
                    seq: seq - 1,
                    at_ms: now_ms,
                    from: m.from,
                    to: m.to,
                    fuel: m.fuel,
                    memo: m.memo,
                    job_id: m.job,
                }
            })
            .collect();
        if !transfers.is_empty() {
            self.record(Event::CreditsMoved { transfers }, out);
        }
    }

    pub(super) fn apply_transfers(&mut self, transfers: &[Transfer]) {
        for transfer in transfers {
            let fuel = transfer.fuel as i64;
            for (account, change) in [(transfer.from, -fuel), (transfer.to, fuel)] {
                let balance = self.accounts.balances.entry(account).or_default();
                *balance += change;
                if *balance == 0 {
                    self.accounts.balances.remove(&account);
                }
            }
            self.accounts.next_seq = transfer.seq + 1;
        }
    }

    pub(crate) fn balance(&self, account: Account) -> i64 {
        self.accounts.balances.get(&account).copied().unwrap_or(0)
    }

    /// Every account with a balance: the whole ledger, for the pool's owner.
    pub(crate) fn all_balances(&self) -> Vec<Balance> {
        self.accounts
            .balances
            .iter()
            .map(|(account, fuel)| Balance {
                account: *account,
                fuel: *fuel,
            })
            .collect()
    }

    /// Whether a requester needs credit to submit: in a public pool only.
    pub(crate) fn credit_required(&self) -> bool {
        self.verifying.trust == Trust::Public
    }

    /// Refuses a submission of a requester without credit in a public pool.
    pub(super) fn check_credit(&self, requester: RequesterId) -> Result<(), PoolError> {
        let balance = self.balance(Account::Requester(requester));
        // A peer's account runs into debt: what the other pool owes this one.
        if self.credit_required() && balance <= 0 && !self.is_peer_account(requester) {
            return Err(PoolError::Forbidden(format!(
                "you have {} credits, and this pool runs jobs only on credit: ask its owner \
                 for some (`crowdcloud credits grant`), or earn it by lending a machine",
                wire::credits::credits_text(balance)
            )));
        }
        Ok(())
    }

    /// The pool's owner gives `requester` `credits` whole credits.
    pub(crate) fn grant_credits(
        &mut self,
        requester: RequesterId,
        credits: u64,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<Balance, PoolError> {
        let fuel = credits.saturating_mul(wire::credits::FUEL_PER_CREDIT);
        let issued = self.balance(Account::Pool).unsigned_abs();
        if credits == 0 || fuel as i128 + issued as i128 > ISSUED_FUEL_MAX as i128 {
            return Err(PoolError::Invalid(format!(
                "grant between 1 and {} credits, and no more than the pool may issue in all",
                wire::limits::CREDITS_PER_GRANT_MAX
            )));
        }
        let account = Account::Requester(requester);
        let grant = Move {
            from: Account::Pool,
            to: account,
            fuel,
            memo: Memo::Grant,
            job: None,
        };
        self.move_credits(vec![grant], now_ms, out);
        Ok(Balance {
            account,
            fuel: self.balance(account),
        })
    }

    /// Whose account a node's work is paid into: its join token's owner.
    pub(super) fn payee_of(&self, node_id: NodeId) -> u64 {
        self.nodes
            .get(&node_id)
            .and_then(|node| node.owner)
            .unwrap_or(node_id.0)
    }

    /// A restart forgets the results that pending credit was held for, and their tasks run
    /// again: what was pending goes back to each job's requester.
    pub(super) fn refund_stranded(
        &mut self,
        pending: Vec<(Account, JobId, i64)>,
        now_ms: u64,
        out: &mut Outbox,
    ) {
        let moves = pending
            .into_iter()
            .filter(|(_, _, fuel)| *fuel > 0)
            .filter_map(|(account, job, fuel)| {
                let requester = self.jobs.get(&job)?.requester;
                Some(Move {
                    from: account,
                    to: Account::Requester(requester),
                    fuel: fuel as u64,
                    memo: Memo::Refund,
                    job: Some(job),
                })
            })
            .collect();
        self.move_credits(moves, now_ms, out);
    }

    /// The accounts as the store had them at a start.
    pub(super) fn restore_accounts(&mut self, image: &store::LedgerImage) {
        self.accounts.balances = image.balances.clone();
        self.accounts.next_seq = image.next_seq;
    }

    /// Asserts the ledger's invariant: the balances sum to zero.
    #[cfg(any(test, debug_assertions))]
    pub(super) fn check_accounts(&self) {
        let sum: i128 = self
            .accounts
            .balances
            .values()
            .map(|b| i128::from(*b))
            .sum();
        assert_eq!(sum, 0, "the balances of all accounts sum to zero");
    }
}
