//! The front door of registration: the challenges handed out to nodes about to register, and
//! each join token's bucket of registrations.
//!
//! A registration signs the nonce of a challenge, and the nonce is spent by the registration
//! that uses it, so a captured registration cannot be replayed. Challenges live a minute and
//! there are at most [`CHALLENGES_MAX`] at once, so they hold little memory whoever asks.
//!
//! One join token draws challenges from a token bucket that refills at a hundredth of its bound
//! on nodes per second (a tenth of it at once), so a leaked join token can neither flood the
//! pool with identities nor take long to be noticed. The bound itself is the pool's (see
//! `PoolState::may_bring`): it counts nodes, which the pool holds.
//!
//! The gate lives beside the pool, not in it: what it holds is not the pool's state but the
//! traffic in front of it, lost at a restart (a node then asks for a new challenge) and never
//! replayed.

use std::collections::{HashMap, VecDeque};

use crate::pool::PoolError;

/// How long a challenge's nonce may be used.
pub(crate) const CHALLENGE_TTL_MS: u64 = 60_000;

/// Challenges outstanding (issued, neither spent nor expired) at once, across join tokens.
pub(crate) const CHALLENGES_MAX: usize = 10_000;

/// Milli-registrations per registration: buckets count in thousandths so they refill smoothly.
const MILLI: u64 = 1_000;

struct Challenge {
    join_token_hash: String,
    expires_at_ms: u64,
}

/// A join token's registrations: so many may be taken at once, and they come back at a steady
/// rate.
struct Bucket {
    milli_left: u64,
    refilled_at_ms: u64,
}

pub(crate) struct Gate {
    nodes_per_join_token_max: u32,
    challenges: HashMap<String, Challenge>,
    /// Nonces in the order they expire (every challenge lives as long).
    challenge_order: VecDeque<(u64, String)>,
    buckets: HashMap<String, Bucket>,
}

impl Gate {
    /// A gate whose buckets suit join tokens that bring up to `nodes_per_join_token_max` nodes.
    pub(crate) fn new(nodes_per_join_token_max: u32) -> Self {
        Self {
            nodes_per_join_token_max: nodes_per_join_token_max.max(1),
            challenges: HashMap::new(),
            challenge_order: VecDeque::new(),
            buckets: HashMap::new(),
        }
    }

    /// Registrations a join token may make at once.
    fn burst(&self) -> u64 {
        u64::from(self.nodes_per_join_token_max / 10).max(10)
    }

    /// Registrations a join token gets back per second.
    fn refill_per_s(&self) -> u64 {
        u64::from(self.nodes_per_join_token_max / 100).max(1)
    }

    /// Takes one registration from the token's bucket; whether there was one.
    fn take(&mut self, join_token_hash: &str, now_ms: u64) -> bool {
        let burst_milli = self.burst() * MILLI;
        // One registration per second refills one milli-registration per millisecond.
        let refill_per_ms = self.refill_per_s();
        let bucket = self
            .buckets
            .entry(join_token_hash.to_owned())
            .or_insert(Bucket {
                milli_left: burst_milli,
                refilled_at_ms: now_ms,
            });
        let elapsed_ms = now_ms.saturating_sub(bucket.refilled_at_ms);
        bucket.milli_left = bucket
            .milli_left
            .saturating_add(elapsed_ms.saturating_mul(refill_per_ms))
            .min(burst_milli);
        bucket.refilled_at_ms = now_ms;
        if bucket.milli_left < MILLI {
            return false;
        }
        bucket.milli_left -= MILLI;
        true
    }

    fn drop_expired_challenges(&mut self, now_ms: u64) {
        while let Some((expires_at_ms, _)) = self.challenge_order.front() {
            if *expires_at_ms > now_ms {
                break;
            }
            let (_, nonce) = self.challenge_order.pop_front().expect("checked above");
            // A spent nonce is already gone from the map; a re-used key cannot occur (random).
            self.challenges.remove(&nonce);
        }
    }

    /// Hands out `nonce` for one registration with the join token of `join_token_hash` within
    /// [`CHALLENGE_TTL_MS`]; the caller checked the token. Refused when the token registers
    /// faster than its bucket allows or too many challenges are outstanding.
    pub(crate) fn issue(
        &mut self,
        join_token_hash: &str,
        nonce: String,
        now_ms: u64,
    ) -> Result<u64, PoolError> {
        self.drop_expired_challenges(now_ms);
        if self.challenge_order.len() >= 2 * CHALLENGES_MAX {
            // Spent nonces wait here for their expiry; dropping them once the queue holds twice
            // the cap keeps it bounded at a cost spread over as many challenges.
            let challenges = &self.challenges;
            self.challenge_order
                .retain(|(_, nonce)| challenges.contains_key(nonce));
        }
        if self.challenges.len() >= CHALLENGES_MAX {
            return Err(PoolError::TooManyRequests(format!(
                "{CHALLENGES_MAX} registrations are under way; retry in a minute"
            )));
        }
        if !self.take(join_token_hash, now_ms) {
            return Err(PoolError::TooManyRequests(format!(
                "this join token registers nodes faster than the pool allows ({} at once, then {} a second); \
                 retry in a few seconds",
                self.burst(),
                self.refill_per_s()
            )));
        }
        let expires_at_ms = now_ms + CHALLENGE_TTL_MS;
        self.challenge_order
            .push_back((expires_at_ms, nonce.clone()));
        self.challenges.insert(
            nonce,
            Challenge {
                join_token_hash: join_token_hash.to_owned(),
                expires_at_ms,
            },
        );
        Ok(CHALLENGE_TTL_MS)
    }

    /// Spends the nonce of a registration with the join token of `join_token_hash`; refused
    /// when it is unknown, expired, spent or another token's. Spent even when the pool then
    /// refuses the node, so each signed registration is tried at most once.
    pub(crate) fn spend(
        &mut self,
        join_token_hash: &str,
        nonce: &str,
        now_ms: u64,
    ) -> Result<(), PoolError> {
        let challenge = self.challenges.remove(nonce);
        let spendable = challenge.is_some_and(|challenge| {
            challenge.join_token_hash == join_token_hash && challenge.expires_at_ms > now_ms
        });
        if !spendable {
            return Err(PoolError::Unauthorized(
                "the registration's nonce is unknown, expired or already used; ask for a new \
                 one at POST /v1/nodes/challenge and sign the registration again (agents do \
                 this by themselves)"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// Challenges issued and neither spent nor dropped, for tests of their bound.
    #[cfg(test)]
    pub(crate) fn outstanding(&self) -> usize {
        self.challenges.len()
    }

    /// Nonces in the expiry queue, spent ones included, for tests of its bound.
    #[cfg(test)]
    pub(crate) fn queued_nonces(&self) -> usize {
        self.challenge_order.len()
    }
}
