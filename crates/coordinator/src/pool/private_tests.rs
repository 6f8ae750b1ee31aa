//! Private jobs in the pool: their tasks go only to the nodes their key is wrapped to, each
//! node is sent its own wrap and no other, a grant lets one more node in (and survives a
//! restart), and a checked result of one must carry its sealed digest.

use super::*;

fn wrap(byte: char) -> wire::WrappedKey {
    wire::WrappedKey(
        byte.to_string()
            .repeat(wire::private::WRAPPED_KEY_HEX_DIGITS),
    )
}

/// A private job of `tasks` tasks whose key is wrapped to `holders`.
pub(super) fn private_job(h: &mut Harness, tasks: usize, holders: &[u64]) -> JobId {
    h.job_from(tasks, 3, |job| {
        job.private = Some(Box::new(wire::PrivateJob {
            requester_key: "a".repeat(64),
            requester_wrap: wrap('b'),
            manifest: wire::private::ManifestRef::Blob(BlobHash::of(b"manifest")),
            keys: holders
                .iter()
                .map(|node| (NodeId(*node), wrap('c')))
                .collect(),
            module_sealed: false,
        }));
    })
}

/// Node 2 holds no key of a private job until it is granted one; returns the job.
pub(super) fn granted_to_another_node(h: &mut Harness) -> JobId {
    let holder = h.node(1, 1);
    let stranger = h.node(2, 2);
    let job = private_job(h, 3, &[1]);
    h.settle();
    assert!(
        h.take(stranger, 2).is_empty(),
        "a node without the key is offered nothing"
    );
    let runtime = h.pool.jobs[&job].runtime_for(holder);
    let private = runtime.private.expect("a private job's runtime says so");
    assert_eq!(private.key, Some(wrap('c')));
    assert_eq!(
        private.manifest,
        wire::private::ManifestRef::Blob(BlobHash::of(b"manifest"))
    );
    assert_eq!(
        h.pool.jobs[&job].runtime_for(stranger).private.unwrap().key,
        None
    );
    let grant = wire::KeyGrant {
        keys: [(stranger, wrap('d'))].into(),
    };
    let (holders, kinds) = h.run(GrantKeys {
        job,
        requester: OWNER,
        grant,
    });
    assert_eq!(holders, Ok(vec![holder, stranger]));
    assert_eq!(kinds, ["KeysGranted"]);
    assert_eq!(h.take(stranger, 2).len(), 2);
    assert_eq!(
        h.pool.jobs[&job].runtime_for(stranger).private.unwrap().key,
        Some(wrap('d'))
    );
    job
}

#[test]
fn a_private_jobs_tasks_go_only_to_the_nodes_its_key_is_wrapped_to() {
    let mut h = Harness::new();
    let job = granted_to_another_node(&mut h);
    assert!(h.pool.job_status(job, OWNER).unwrap().private);
    let write = h.out.writes.iter().find_map(|write| match write {
        Write::SetJobKeys { job_id, keys } if *job_id == job => Some(keys.clone()),
        _ => None,
    });
    let keys = write.expect("a grant is written to the store");
    assert_eq!(
        keys.keys().copied().collect::<Vec<_>>(),
        [NodeId(1), NodeId(2)]
    );
}

#[test]
fn keys_are_granted_only_by_the_jobs_requester_and_only_for_a_private_job() {
    let mut h = Harness::new();
    h.node(1, 1);
    let private = private_job(&mut h, 1, &[1]);
    let clear = h.job(1, 1);
    let grant = || wire::KeyGrant {
        keys: [(NodeId(2), wrap('d'))].into(),
    };
    let (other, kinds) = h.run(GrantKeys {
        job: private,
        requester: RequesterId(99),
        grant: grant(),
    });
    assert!(matches!(other, Err(PoolError::NotFound(_))), "{other:?}");
    assert!(kinds.is_empty());
    let (not_private, kinds) = h.run(GrantKeys {
        job: clear,
        requester: OWNER,
        grant: grant(),
    });
    assert!(
        matches!(not_private, Err(PoolError::Invalid(_))),
        "{not_private:?}"
    );
    assert!(kinds.is_empty());
}

#[test]
fn a_checked_result_of_a_private_job_needs_its_sealed_digest() {
    let mut h = Harness::new();
    h.node(1, 1);
    let job = h.job_from(1, 3, |job| {
        job.deterministic = Some(wire::Deterministic { seed: 1 });
        job.verify = Some(wire::VerifyMode::Replicate);
        job.private = Some(Box::new(wire::PrivateJob {
            requester_key: "a".repeat(64),
            requester_wrap: wrap('b'),
            manifest: wire::private::ManifestRef::Blob(BlobHash::of(b"manifest")),
            keys: [(NodeId(1), wrap('c'))].into(),
            module_sealed: false,
        }));
    });
    h.settle();
    let attempt = h.take(NodeId(1), 1)[0].attempt_id;
    let mut report = report(attempt, Outcome::Succeeded);
    let acks = h.pool.report(
        NodeId(1),
        vec![report.clone()],
        h.now_ms,
        &h.entropy,
        &mut h.out,
    );
    assert!(!acks[0].accepted);
    assert!(
        acks[0]
            .message
            .as_deref()
            .unwrap()
            .contains("sealed_digest")
    );
    report.sealed_digest = Some("e".repeat(64));
    let acks = h
        .pool
        .report(NodeId(1), vec![report], h.now_ms, &h.entropy, &mut h.out);
    assert!(acks[0].accepted, "{:?}", acks[0].message);
    assert!(h.pool.has_job(job));
}

#[test]
fn a_private_job_wrapped_to_no_node_that_can_open_it_is_refused() {
    let mut h = Harness::new();
    h.node(1, 1);
    let submission = |holder: u64| JobSubmission {
        private: Some(Box::new(wire::PrivateJob {
            requester_key: "a".repeat(64),
            requester_wrap: wrap('b'),
            manifest: wire::private::ManifestRef::Blob(BlobHash::of(b"manifest")),
            keys: [(NodeId(holder), wrap('c'))].into(),
            module_sealed: false,
        })),
        ..JobSubmission::new("p", BlobHash::of(b"m"), vec![TaskSpec::default()])
    };
    // Node 1 has no encryption key; node 7 is not in the pool.
    for holder in [1, 7] {
        let refused = h.pool.check_private(&submission(holder));
        assert!(matches!(refused, Err(PoolError::Invalid(_))), "{refused:?}");
    }
    let mut with_key = new_node(3, 1, &[], "join");
    with_key.capabilities.encryption_key = Some(wire::NodeEncryptionKey {
        key: "f".repeat(64),
        signature: "0".repeat(128),
    });
    h.pool.register(with_key, h.now_ms, &mut h.out);
    assert_eq!(h.pool.check_private(&submission(3)), Ok(()));
}

#[test]
fn a_grant_hands_the_jobs_tasks_to_a_node_that_waits_for_work_at_once() {
    let mut h = Harness::new();
    h.node(1, 1);
    let stranger = h.node(2, 2);
    let job = private_job(&mut h, 2, &[1]);
    h.settle();
    let mut waiting = h.park(stranger, 7, 2);
    h.follow();
    assert!(
        waiting.try_recv().is_err(),
        "nothing for a node without the key"
    );
    let grant = wire::KeyGrant {
        keys: [(stranger, wrap('d'))].into(),
    };
    let (granted, _) = h.run(GrantKeys {
        job,
        requester: OWNER,
        grant,
    });
    assert!(granted.is_ok());
    h.follow();
    let lease = waiting
        .try_recv()
        .expect("the waiting node is handed the tasks");
    assert_eq!(lease.attempts.len(), 2);
}
