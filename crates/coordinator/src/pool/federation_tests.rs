//! Federation's rules in the pool: other pools take only what this pool's nodes leave, and
//! never a job that stays home; a revoked federation token removes its nodes at once; borrowed
//! tasks go after this pool's own jobs; peers come and go by events.

use super::*;

const FEDERATION_TOKEN: &str = "Federation";

/// A pool with a federation token, a node of its own (1) with `own_slots`, and another pool
/// registered with the token as node 2 with `lent_slots`.
fn home(own_slots: u32, lent_slots: u32) -> Harness {
    let mut h = Harness::new();
    let create = CreateToken {
        hash: FEDERATION_TOKEN.to_owned(),
        name: "pool b".to_owned(),
        kind: NewToken::Federation,
        live_max: 10,
    };
    assert!(h.run(create).0);
    h.node(1, own_slots);
    h.pool.register(
        new_node(2, lent_slots, &[], FEDERATION_TOKEN),
        h.now_ms,
        &mut h.out,
    );
    h.settle();
    h
}

fn tasks_on(grants: &[wire::AttemptGrant]) -> usize {
    grants.len()
}

#[test]
fn another_pool_takes_only_what_this_pools_nodes_leave() {
    let mut h = home(2, 4);
    let mut own = h.park(NodeId(1), 1, 2);
    let mut lent = h.park(NodeId(2), 2, 4);
    h.job(2, 1);
    h.follow();
    assert_eq!(
        own.try_recv().unwrap().attempts.len(),
        2,
        "its own node first"
    );
    assert!(
        lent.try_recv().is_err(),
        "nothing was left for the other pool"
    );
    let mut lent = h.park(NodeId(2), 3, 4);
    h.job(3, 1);
    h.follow();
    assert_eq!(
        lent.try_recv().unwrap().attempts.len(),
        3,
        "with its own node full, the other pool takes them"
    );
    assert!(h.pool.is_federated(&h.pool.nodes[&NodeId(2)]));
    assert!(!h.pool.is_federated(&h.pool.nodes[&NodeId(1)]));
}

#[test]
fn a_job_that_stays_home_private_or_checkpointing_never_leaves() {
    let mut h = home(1, 4);
    h.job_from(2, 1, |s| s.requirements.home_pool = true);
    h.job_from(2, 1, |s| {
        s.checkpoint = Some(wire::CheckpointSpec {
            interval_ms: 60_000,
            exit_code: wire::checkpoint::DEFAULT_EXIT_CODE,
            bytes_max: wire::checkpoint::DEFAULT_BYTES_MAX,
        });
    });
    assert_eq!(tasks_on(&h.take(NodeId(2), 4)), 0, "nothing may leave");
    assert_eq!(tasks_on(&h.take(NodeId(1), 1)), 1, "its own node runs them");
    let roaming = h.job(1, 1);
    let grants = h.take(NodeId(2), 4);
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].job_id, roaming, "a job that may federate does");
}

#[test]
fn revoking_a_federation_token_removes_its_nodes_and_requeues_their_tasks() {
    let mut h = home(1, 4);
    let job = h.job(2, 1);
    assert_eq!(h.take(NodeId(2), 4).len(), 2);
    let (revoked, kinds) = h.run(RevokeToken {
        hash: FEDERATION_TOKEN.to_owned(),
    });
    assert!(revoked);
    assert!(kinds.contains(&"NodeGone"), "{kinds:?}");
    assert!(
        !h.pool.nodes.contains_key(&NodeId(2)),
        "the other pool is out"
    );
    assert_eq!(h.pool.jobs[&job].pending.len(), 2, "its tasks wait again");
    assert_eq!(
        h.pool.jobs[&job].tasks[0].attempts, 0,
        "and nothing counted"
    );
    assert!(
        h.pool.is_removed(NodeId(2)),
        "its identity may not come back"
    );
}

/// A peer added, given a bridge token, and removed.
pub(super) fn a_peer_comes_and_goes(h: &mut Harness) {
    peer(h, "https://c.example");
    let id = h.pool.peers().last().unwrap().id;
    let bridge = BridgeToken {
        peer: id,
        hash: "bridge-c".to_owned(),
    };
    assert!(h.run(bridge).0);
    assert!(h.run(RemovePeer { id }).0.is_ok());
}

/// A peer this pool lends to; returns its account.
fn peer(h: &mut Harness, url: &str) -> RequesterId {
    let (added, kinds) = h.run(AddPeer {
        url: url.to_owned(),
        fingerprint: wire::Fingerprint::of_der(url.as_bytes()),
        token: format!("ccf_{}", "0".repeat(64)),
    });
    assert_eq!(kinds, ["PeerAdded"]);
    added.unwrap().requester_id
}

fn borrowed_job(h: &mut Harness, account: RequesterId, tasks: usize) -> JobId {
    let id = JobId(h.entropy.next_u64());
    let submission = JobSubmission::new(
        "borrowed",
        BlobHash::of(b"module"),
        (0..tasks).map(|_| TaskSpec::default()).collect(),
    );
    let job = NewJob {
        id,
        requester: account,
        submission,
        module_bytes: 1 << 10,
        component: false,
        wasm_features: Vec::new(),
    };
    h.pool.add_job(job, h.now_ms, &mut h.out);
    id
}

#[test]
fn borrowed_tasks_go_after_this_pools_own_jobs() {
    let mut h = Harness::new();
    h.node(1, 2);
    let account = peer(&mut h, "https://b.example:7878");
    let borrowed = borrowed_job(&mut h, account, 2);
    assert_eq!(
        h.pool.lendable(h.now_ms).idle_slots,
        2,
        "borrowed tasks hold what the bridge counts, not what this pool keeps"
    );
    let own = h.job(2, 1);
    let grants = h.take(NodeId(1), 2);
    assert!(
        grants.iter().all(|grant| grant.job_id == own),
        "the own job, submitted later, goes first"
    );
    assert_eq!(h.pool.jobs[&borrowed].pending.len(), 2);
    assert_eq!(h.pool.lendable(h.now_ms).idle_slots, 0, "no slot is idle");
}

#[test]
fn what_a_pool_can_lend_is_its_idle_slots_less_what_waits() {
    let mut h = Harness::new();
    h.node(1, 4);
    h.labeled_node(3, 2, &[("region", "eu")]);
    let lendable = h.pool.lendable(h.now_ms);
    assert_eq!(lendable.idle_slots, 6);
    let (capabilities, _) = lendable.largest.unwrap();
    assert_eq!(capabilities.memory_bytes, 8 << 30);
    h.job(4, 1);
    assert_eq!(h.pool.lendable(h.now_ms).idle_slots, 2, "four tasks wait");
    h.now_ms += 10 * LEASE_MS;
    assert_eq!(
        h.pool.lendable(h.now_ms),
        Lendable::default(),
        "silent nodes lend nothing"
    );
}

#[test]
fn peers_are_bounded_unique_and_removed_with_their_bridges_tokens() {
    let mut h = Harness::new();
    for n in 0..wire::federation::PEERS_MAX {
        peer(&mut h, &format!("https://pool{n}.example"));
    }
    let (full, kinds) = h.run(AddPeer {
        url: "https://one-more.example".to_owned(),
        fingerprint: wire::Fingerprint::of_der(b"x"),
        token: String::new(),
    });
    assert!(matches!(full, Err(PoolError::Conflict(_))), "{full:?}");
    assert!(kinds.is_empty(), "a refusal changes nothing");
    let (twice, _) = h.run(AddPeer {
        url: "https://pool0.example".to_owned(),
        fingerprint: wire::Fingerprint::of_der(b"x"),
        token: String::new(),
    });
    assert!(matches!(twice, Err(PoolError::Conflict(_))), "{twice:?}");
    let first = h.pool.peers().next().unwrap().clone();
    let (made, kinds) = h.run(BridgeToken {
        peer: first.id,
        hash: "bridge-1".to_owned(),
    });
    assert!(made);
    assert_eq!(kinds, ["TokenCreated"]);
    let (_, kinds) = h.run(BridgeToken {
        peer: first.id,
        hash: "bridge-2".to_owned(),
    });
    assert_eq!(
        kinds,
        ["TokenRevoked", "TokenCreated"],
        "one token per bridge"
    );
    assert_eq!(
        h.pool.requester_tokens.get("bridge-2"),
        Some(&first.requester_id)
    );
    let (removed, kinds) = h.run(RemovePeer { id: first.id });
    assert_eq!(removed.unwrap(), first);
    assert_eq!(kinds, ["TokenRevoked", "PeerRemoved"]);
    assert!(!h.pool.is_peer_account(first.requester_id));
    let (gone, _) = h.run(RemovePeer { id: first.id });
    assert!(matches!(gone, Err(PoolError::NotFound(_))), "{gone:?}");
    assert!(
        !h.run(BridgeToken {
            peer: first.id,
            hash: "bridge-3".to_owned()
        })
        .0
    );
}

#[test]
fn another_pool_gets_only_tasks_it_can_place_and_learns_their_requirements() {
    let mut h = home(0, 4);
    let create = CreateToken {
        hash: "Federation eu".to_owned(),
        name: "pool c".to_owned(),
        kind: NewToken::Federation,
        live_max: 10,
    };
    assert!(h.run(create).0);
    let eu = [("region", "eu")];
    h.pool
        .register(new_node(3, 4, &eu, "Federation eu"), h.now_ms, &mut h.out);
    h.settle();
    let job = h.job_from(1, 1, |s| {
        s.requirements
            .labels
            .insert("region".to_owned(), "eu".to_owned());
    });
    assert!(
        h.take(NodeId(2), 4).is_empty(),
        "pool b has no node in the eu"
    );
    let lease = h.pool.take_work(NodeId(3), 4, h.now_ms, &mut h.out);
    assert_eq!(lease.attempts.len(), 1);
    let sent = lease.jobs[0]
        .requirements
        .as_ref()
        .expect("sent to another pool");
    assert_eq!(sent.labels["region"], "eu");
    assert_eq!(
        h.pool.jobs[&job].runtime.requirements, None,
        "own nodes are not told"
    );
}

#[test]
fn a_task_another_pool_gave_back_is_not_offered_to_it_again_for_a_while() {
    let mut h = home(1, 4);
    h.job(1, 1);
    let granted = h.take(NodeId(2), 4);
    assert_eq!(granted.len(), 1);
    let release = Release {
        node: NodeId(2),
        attempts: vec![granted[0].attempt_id],
    };
    assert_eq!(h.run(release).0.len(), 1);
    assert!(h.take(NodeId(2), 4).is_empty(), "not passed straight back");
    h.now_ms += REFUSAL_HOLD_MS;
    assert_eq!(
        h.take(NodeId(2), 4).len(),
        1,
        "offered again once the hold ended"
    );
}

#[test]
fn a_task_another_pool_gave_back_goes_to_this_pools_own_nodes() {
    let mut h = home(1, 4);
    let job = h.job(1, 1);
    let granted = h.take(NodeId(2), 4);
    h.run(Release {
        node: NodeId(2),
        attempts: vec![granted[0].attempt_id],
    });
    let own = h.take(NodeId(1), 1);
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].job_id, job);
    assert_eq!(
        h.pool.jobs[&job].tasks[0].attempts, 1,
        "only its own node's attempt counts, not the give-back"
    );
}
