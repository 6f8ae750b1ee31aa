//! Who may register, and how fast: the challenges handed out to nodes about to register, each
//! join token's bucket of registrations and count of nodes, and the count of live nodes the
//! heartbeat interval is based on.
//!
//! A registration signs the nonce of a challenge, and the nonce is spent by the registration
//! that uses it, so a captured registration cannot be replayed. Challenges live a minute and
//! there are at most [`CHALLENGES_MAX`] at once, so they hold little memory whoever asks.
//!
//! One join token brings at most `nodes_per_join_token_max` distinct nodes, and draws
//! challenges from a token bucket that refills at a hundredth of that bound per second (a
//! tenth of it at once), so a leaked join token can neither flood the pool with identities nor
//! take long to be noticed.

use std::collections::{HashMap, VecDeque};

use super::{PoolError, PoolState};
use wire::NodeId;

/// How long a challenge's nonce may be used.
pub(crate) const CHALLENGE_TTL_MS: u64 = 60_000;

/// Challenges outstanding (issued, neither spent nor expired) at once, across join tokens.
pub(crate) const CHALLENGES_MAX: usize = 10_000;

/// Distinct nodes one join token may bring, unless the owner says otherwise.
pub(crate) const NODES_PER_JOIN_TOKEN_MAX_DEFAULT: u32 = 1_000;

/// A node silent this long is forgotten, unless the owner says otherwise.
pub(crate) const SILENT_NODE_PURGE_MS_DEFAULT: u64 = 7 * 24 * 3_600_000;

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

pub(crate) struct Admission {
    nodes_per_join_token_max: u32,
    challenges: HashMap<String, Challenge>,
    /// Nonces in the order they expire (every challenge lives as long).
    challenge_order: VecDeque<(u64, String)>,
    buckets: HashMap<String, Bucket>,
    /// Nodes in the pool by the join token they registered with.
    nodes_per_join_token: HashMap<String, u32>,
    /// Nodes counted as live: those whose lease had not run out when last counted, and those
    /// heard from since (see [`PoolState::recount_live_nodes`]).
    pub(crate) live_nodes: u64,
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            nodes_per_join_token_max: NODES_PER_JOIN_TOKEN_MAX_DEFAULT,
            challenges: HashMap::new(),
            challenge_order: VecDeque::new(),
            buckets: HashMap::new(),
            nodes_per_join_token: HashMap::new(),
            live_nodes: 0,
        }
    }
}

impl Admission {
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

    pub(crate) fn count_node(&mut self, join_token_hash: &str) {
        *self
            .nodes_per_join_token
            .entry(join_token_hash.to_owned())
            .or_default() += 1;
    }

    pub(crate) fn uncount_node(&mut self, join_token_hash: &str) {
        if let Some(count) = self.nodes_per_join_token.get_mut(join_token_hash) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.nodes_per_join_token.remove(join_token_hash);
            }
        }
    }
}

impl PoolState {
    /// Sets how many distinct nodes one join token may bring (at least one).
    pub(crate) fn set_nodes_per_join_token_max(&mut self, nodes_max: u32) {
        self.admission.nodes_per_join_token_max = nodes_max.max(1);
    }

    /// Hands out `nonce` for one registration with the join token of `join_token_hash` within
    /// [`CHALLENGE_TTL_MS`]; the caller checked the token. Refused when the token registers
    /// faster than its bucket allows or too many challenges are outstanding.
    pub(crate) fn issue_challenge(
        &mut self,
        join_token_hash: &str,
        nonce: String,
        now_ms: u64,
    ) -> Result<u64, PoolError> {
        let admission = &mut self.admission;
        admission.drop_expired_challenges(now_ms);
        if admission.challenge_order.len() >= 2 * CHALLENGES_MAX {
            // Spent nonces wait here for their expiry; dropping them once the queue holds twice
            // the cap keeps it bounded at a cost spread over as many challenges.
            let challenges = &admission.challenges;
            admission
                .challenge_order
                .retain(|(_, nonce)| challenges.contains_key(nonce));
        }
        if admission.challenges.len() >= CHALLENGES_MAX {
            return Err(PoolError::TooManyRequests(format!(
                "{CHALLENGES_MAX} registrations are under way; retry in a minute"
            )));
        }
        if !admission.take(join_token_hash, now_ms) {
            return Err(PoolError::TooManyRequests(format!(
                "this join token registers nodes faster than the pool allows ({} at once, then {} a second); \
                 retry in a few seconds",
                admission.burst(),
                admission.refill_per_s()
            )));
        }
        let expires_at_ms = now_ms + CHALLENGE_TTL_MS;
        admission
            .challenge_order
            .push_back((expires_at_ms, nonce.clone()));
        admission.challenges.insert(
            nonce,
            Challenge {
                join_token_hash: join_token_hash.to_owned(),
                expires_at_ms,
            },
        );
        Ok(CHALLENGE_TTL_MS)
    }

    /// Spends the nonce of a registration by `node_id` with the join token of
    /// `join_token_hash`, and checks the token may bring this node. The nonce is spent even
    /// when the node is refused, so each signed registration is tried at most once.
    pub(crate) fn admit_registration(
        &mut self,
        join_token_hash: &str,
        nonce: &str,
        node_id: NodeId,
        now_ms: u64,
    ) -> Result<(), PoolError> {
        let challenge = self.admission.challenges.remove(nonce);
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
        let same_token = self
            .nodes
            .get(&node_id)
            .is_some_and(|node| node.join_token_hash == join_token_hash);
        let brought = self
            .admission
            .nodes_per_join_token
            .get(join_token_hash)
            .copied()
            .unwrap_or(0);
        let nodes_max = self.admission.nodes_per_join_token_max;
        if !same_token && brought >= nodes_max {
            return Err(PoolError::Forbidden(format!(
                "this join token has already brought {brought} nodes, the most one token may; \
                 ask the pool owner for another join token, or to raise \
                 --nodes-per-join-token (now {nodes_max})"
            )));
        }
        Ok(())
    }

    /// Counts the nodes whose lease has not run out. Run now and then (the lease reaper does),
    /// so that nodes that went silent stop counting; nodes heard from count again at once.
    pub(crate) fn recount_live_nodes(&mut self, now_ms: u64) {
        let mut live = 0;
        for node in self.nodes.values_mut() {
            node.counted_live = node.lease_until_ms > now_ms;
            live += u64::from(node.counted_live);
        }
        self.admission.live_nodes = live;
    }

    /// Nodes from the join token of `join_token_hash`, for tests and metrics.
    #[cfg(test)]
    pub(crate) fn nodes_of_join_token(&self, join_token_hash: &str) -> u32 {
        self.admission
            .nodes_per_join_token
            .get(join_token_hash)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
