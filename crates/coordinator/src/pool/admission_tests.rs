//! Registration admission, driven directly through the gate and the pool: nonces spent once,
//! the nodes and the rate of each join token bounded, silent nodes purged, and the heartbeat
//! interval following live nodes.

use std::collections::BTreeMap;

use store::Write;
use wire::{JobId, JobSubmission, NodeId, RequesterId, TaskSpec};

use super::*;
use crate::gate::{CHALLENGE_TTL_MS, CHALLENGES_MAX, Gate};
use crate::pool::events::{Event, NodeGone};
use crate::pool::{HEARTBEATS_PER_S_MAX, NewJob, NewNode, Outbox};

const LEASE_MS: u64 = 3_000;
const START_MS: u64 = 1_000_000;

fn pool() -> PoolState {
    PoolState::new("test".to_owned(), LEASE_MS)
}

fn new_node(id: u64, join_token_hash: &str) -> NewNode {
    crate::pool::tests::new_node(id, 1, &[], join_token_hash)
}

/// Registers as the coordinator does: a challenge, then the registration that spends it and
/// that the join token's bound admits.
fn join(
    gate: &mut Gate,
    pool: &mut PoolState,
    id: u64,
    join: &str,
    now_ms: u64,
) -> Result<(), PoolError> {
    let nonce = format!("nonce-{id}-{now_ms}");
    gate.issue(join, nonce.clone(), now_ms)?;
    gate.spend(join, &nonce, now_ms)?;
    pool.may_bring(join, NodeId(id))?;
    pool.register(new_node(id, join), now_ms, &mut Outbox::new());
    Ok(())
}

/// A request of the node reached the coordinator.
fn heard(pool: &mut PoolState, node: u64, at_ms: u64) {
    let event = Event::NodeHeard {
        node: NodeId(node),
        at_ms,
    };
    pool.record(event, &mut Outbox::new());
}

fn forget(pool: &mut PoolState, node: u64) {
    let event = Event::NodeGone {
        node: NodeId(node),
        why: NodeGone::Silent,
        at_ms: START_MS,
    };
    pool.record(event, &mut Outbox::new());
}

#[test]
fn a_nonce_admits_one_registration_with_its_own_join_token_within_its_time() {
    let mut gate = Gate::new(NODES_PER_JOIN_TOKEN_MAX_DEFAULT);
    let ttl_ms = gate.issue("join", "n1".to_owned(), START_MS).unwrap();
    assert_eq!(ttl_ms, CHALLENGE_TTL_MS);
    assert_eq!(gate.spend("join", "n1", START_MS + 10), Ok(()));
    assert!(
        matches!(
            gate.spend("join", "n1", START_MS + 20),
            Err(PoolError::Unauthorized(_))
        ),
        "a replayed nonce is refused"
    );

    gate.issue("join", "n2".to_owned(), START_MS).unwrap();
    assert!(matches!(
        gate.spend("other", "n2", START_MS + 10),
        Err(PoolError::Unauthorized(_))
    ));
    gate.issue("join", "n3".to_owned(), START_MS).unwrap();
    assert!(matches!(
        gate.spend("join", "n3", START_MS + CHALLENGE_TTL_MS),
        Err(PoolError::Unauthorized(_))
    ));
    assert!(matches!(
        gate.spend("join", "never-issued", START_MS),
        Err(PoolError::Unauthorized(_))
    ));
}

#[test]
fn a_join_token_brings_at_most_its_bound_of_distinct_nodes() {
    let mut pool = pool();
    pool.set_nodes_per_join_token_max(3);
    let mut gate = Gate::new(3);
    for id in 1..=3 {
        join(&mut gate, &mut pool, id, "join", START_MS).unwrap();
    }
    let refused = join(&mut gate, &mut pool, 4, "join", START_MS);
    let Err(PoolError::Forbidden(message)) = refused else {
        panic!("a fourth node must be refused, got {refused:?}");
    };
    assert!(message.contains("--nodes-per-join-token"), "{message}");
    assert_eq!(pool.nodes_of_join_token("join"), 3);

    // A node of the token registering again is no new node; another token has its own bound.
    join(&mut gate, &mut pool, 2, "join", START_MS + 1).unwrap();
    join(&mut gate, &mut pool, 4, "other", START_MS + 1).unwrap();
    assert_eq!(pool.nodes_of_join_token("join"), 3);
    assert_eq!(pool.nodes_of_join_token("other"), 1);

    // A node forgotten frees its place.
    forget(&mut pool, 1);
    join(&mut gate, &mut pool, 5, "join", START_MS + 2).unwrap();
    assert_eq!(pool.nodes_of_join_token("join"), 3);
}

#[test]
fn a_join_token_registers_in_bursts_then_at_a_steady_rate() {
    let mut pool = pool();
    pool.set_nodes_per_join_token_max(1_000);
    let mut gate = Gate::new(1_000);
    // A tenth of the bound at once...
    for n in 0..100 {
        gate.issue("join", format!("n{n}"), START_MS).unwrap();
    }
    assert!(matches!(
        gate.issue("join", "over".to_owned(), START_MS),
        Err(PoolError::TooManyRequests(_))
    ));
    // ...while other tokens are not slowed down...
    gate.issue("other", "o".to_owned(), START_MS).unwrap();
    // ...then a hundredth of it per second: one every 100 ms.
    assert!(
        gate.issue("join", "early".to_owned(), START_MS + 99)
            .is_err()
    );
    gate.issue("join", "on-time".to_owned(), START_MS + 100)
        .unwrap();
    assert!(
        gate.issue("join", "again".to_owned(), START_MS + 150)
            .is_err()
    );
    let second_later = START_MS + 1_100;
    for n in 0..10 {
        gate.issue("join", format!("later{n}"), second_later)
            .unwrap();
    }
    assert!(
        gate.issue("join", "later-over".to_owned(), second_later)
            .is_err()
    );
}

#[test]
fn outstanding_challenges_are_bounded_and_expired_ones_make_room() {
    let mut pool = pool();
    pool.set_nodes_per_join_token_max(u32::MAX);
    let mut gate = Gate::new(u32::MAX);
    for n in 0..CHALLENGES_MAX {
        gate.issue("join", format!("n{n}"), START_MS).unwrap();
    }
    assert!(matches!(
        gate.issue("other", "o".to_owned(), START_MS + 1),
        Err(PoolError::TooManyRequests(_))
    ));
    gate.issue("other", "o".to_owned(), START_MS + CHALLENGE_TTL_MS)
        .unwrap();
    assert_eq!(gate.outstanding(), 1);
}

#[test]
fn nodes_silent_past_the_purge_time_are_forgotten_unless_they_hold_attempts() {
    let mut pool = pool();
    let mut gate = Gate::new(NODES_PER_JOIN_TOKEN_MAX_DEFAULT);
    for id in 1..=3 {
        join(&mut gate, &mut pool, id, "join", START_MS).unwrap();
    }
    let mut out = Outbox::new();
    let job = JobId(77);
    pool.add_job(
        NewJob {
            id: job,
            requester: RequesterId(1),
            submission: JobSubmission {
                name: "job".to_owned(),
                module: wire::BlobHash::of(b"module"),
                env: BTreeMap::new(),
                mounts: vec![],
                requirements: Default::default(),
                limits: Default::default(),
                max_attempts: 3,
                replicas: 1,
                deterministic: None,
                verify: None,
                validator: None,
                success_exit_codes: Vec::new(),
                tasks: vec![TaskSpec::default()],
                checkpoint: None,
                on_failure: None,
                private: None,
            },
            module_bytes: 1 << 10,
            component: false,
            wasm_features: Vec::new(),
        },
        START_MS,
        &mut out,
    );
    let granted = pool.take_work(NodeId(2), 1, START_MS, &mut out);
    assert_eq!(granted.attempts.len(), 1, "node 2 holds an attempt");
    let day_ms = 24 * 3_600_000;
    let later_ms = START_MS + 8 * day_ms;
    heard(&mut pool, 3, later_ms - day_ms);

    out = Outbox::new();
    let purged = pool.purge_silent_nodes(later_ms, later_ms - 7 * day_ms, 100, &mut out);
    assert_eq!(purged, 1);
    assert_eq!(out.writes, vec![Write::DeleteNode { node_id: NodeId(1) }]);
    assert!(pool.node_by_token("token1").is_none());
    assert!(pool.node_by_token("token2").is_some(), "it holds work");
    assert!(pool.node_by_token("token3").is_some(), "it was heard");
    assert_eq!(pool.nodes_of_join_token("join"), 2);
    pool.check_invariants();
}

#[test]
fn when_nodes_were_heard_is_written_only_when_it_moved_enough() {
    let mut pool = pool();
    let mut gate = Gate::new(NODES_PER_JOIN_TOKEN_MAX_DEFAULT);
    join(&mut gate, &mut pool, 1, "join", START_MS).unwrap();
    join(&mut gate, &mut pool, 2, "join", START_MS).unwrap();
    let mut out = Outbox::new();
    heard(&mut pool, 1, START_MS + 500);
    pool.store_heard(1_000, 100, &mut out);
    assert!(out.writes.is_empty(), "half a step is not worth a write");
    heard(&mut pool, 1, START_MS + 1_000);
    pool.store_heard(1_000, 100, &mut out);
    assert_eq!(
        out.writes,
        vec![Write::SetNodesSeen(vec![(NodeId(1), START_MS + 1_000)])]
    );
    out = Outbox::new();
    pool.store_heard(1_000, 100, &mut out);
    assert!(out.writes.is_empty(), "written once");
}

#[test]
fn the_heartbeat_interval_follows_the_live_nodes_not_every_node_ever_seen() {
    let mut pool = pool();
    pool.set_nodes_per_join_token_max(u32::MAX);
    let base_ms = LEASE_MS / 3;
    assert_eq!(pool.heartbeat_interval_ms(), base_ms);
    let flood = 20_000;
    let mut out = Outbox::new();
    for id in 0..flood {
        pool.register(new_node(id, "join"), START_MS, &mut out);
    }
    // 2,000 heartbeats a second in all: 20,000 nodes heartbeat every 10 s.
    assert_eq!(pool.heartbeat_interval_ms(), 10_000);
    assert_eq!(pool.lease_term_ms(), 30_000);

    // One node keeps heartbeating; the rest fall silent and their leases run out.
    let lapsed_ms = START_MS + 30_001;
    heard(&mut pool, 0, START_MS + 29_000);
    pool.recount_live_nodes(lapsed_ms, &mut Outbox::new());
    assert_eq!(pool.heartbeat_interval_ms(), base_ms);
    assert_eq!(pool.lease_term_ms(), LEASE_MS);

    // Nodes heard from count again at once, before the next recount.
    for id in 1..4_001 {
        heard(&mut pool, id, lapsed_ms + 1);
    }
    assert_eq!(
        pool.heartbeat_interval_ms(),
        4_001 * 1000 / HEARTBEATS_PER_S_MAX
    );
    pool.recount_live_nodes(lapsed_ms + 2, &mut Outbox::new());
    assert_eq!(
        pool.heartbeat_interval_ms(),
        4_001 * 1000 / HEARTBEATS_PER_S_MAX
    );
    forget(&mut pool, 1);
    assert_eq!(
        pool.heartbeat_interval_ms(),
        4_000 * 1000 / HEARTBEATS_PER_S_MAX
    );
}

#[test]
fn spent_challenges_do_not_count_against_those_outstanding() {
    let mut pool = pool();
    pool.set_nodes_per_join_token_max(u32::MAX);
    let mut gate = Gate::new(u32::MAX);
    // Three times the cap of outstanding challenges, each spent at once, within one lifetime
    // of a challenge: a large pool joining, not a flood.
    let joining = 3 * CHALLENGES_MAX as u64;
    for id in 1..=joining {
        join(&mut gate, &mut pool, id, "join", START_MS).unwrap();
    }
    assert_eq!(pool.nodes_of_join_token("join"), joining as u32);
    assert!(
        gate.queued_nonces() <= 2 * CHALLENGES_MAX,
        "spent nonces are dropped from the expiry queue as it grows"
    );
    // Unspent ones are still bounded.
    for n in 0..CHALLENGES_MAX {
        gate.issue("join", format!("open{n}"), START_MS).unwrap();
    }
    assert!(matches!(
        gate.issue("join", "one-too-many".to_owned(), START_MS),
        Err(PoolError::TooManyRequests(_))
    ));
}
