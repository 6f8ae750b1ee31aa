//! Verification in a public pool, driven through the pool's rules: probation replicas, the
//! audit window, disagreements settled by a larger quorum, bans and inconclusive tasks.

use super::*;
use wire::{Trust, VerifiedBy};

/// A join token hash whose owner key is `owner`.
fn token_of(owner: u64) -> String {
    format!("{owner:016x}{}", "0".repeat(48))
}

/// Switches both the pool and its follower to a public pool with `policy`: a start setting,
/// not an event.
fn go_public(h: &mut Harness, policy: verify::Policy) {
    h.pool.set_verifying(Trust::Public, policy, true);
    h.follower.set_verifying(Trust::Public, policy, true);
}

pub(super) fn public(policy: verify::Policy) -> Harness {
    let mut h = Harness::new();
    go_public(&mut h, policy);
    h
}

/// A node of `owner`, on a network of its own unless `network` names one.
pub(super) fn owned(
    h: &mut Harness,
    id: u64,
    owner: u64,
    slots: u32,
    network: Option<&str>,
) -> NodeId {
    let mut node = new_node(id, slots, &[], &token_of(owner));
    node.network = Some(network.map_or_else(|| format!("10.0.{id}.0/24"), str::to_owned));
    h.pool.register(node, h.now_ms, &mut h.out);
    NodeId(id)
}

pub(super) fn deterministic_job(h: &mut Harness, tasks: usize) -> JobId {
    h.job_from(tasks, 3, |job| {
        job.deterministic = Some(wire::Deterministic { seed: 1 });
        job.verify = Some(wire::VerifyMode::Adaptive);
    })
}

/// `node` reports `attempt` succeeded with `fuel`: the fuel stands for the whole result, so
/// two reports agree exactly when their fuel does.
pub(super) fn result(h: &mut Harness, node: NodeId, attempt: AttemptId, fuel: u64) {
    let report = AttemptReport {
        ran_on: None,
        attempt_id: attempt,
        outcome: Outcome::Succeeded,
        usage: Usage {
            fuel_used: fuel,
            ..Usage::default()
        },
        stdout: None,
        stderr: None,
        outputs: vec![],
        sealed_digest: None,
    };
    assert!(h.send(node, report).accepted);
}

/// Takes one attempt on `node`, or panics.
pub(super) fn one(h: &mut Harness, node: NodeId) -> AttemptId {
    let grants = h.take(node, 1);
    assert_eq!(grants.len(), 1, "{node} gets one attempt");
    grants[0].attempt_id
}

/// The verdicts written so far: (job, task, result attempt, how verified).
pub(super) fn verdicts(
    h: &Harness,
) -> Vec<(JobId, u32, Option<AttemptId>, Option<wire::Verification>)> {
    h.out
        .writes
        .iter()
        .filter_map(|write| match write {
            Write::EndTasks(verdicts) => Some(verdicts.clone()),
            _ => None,
        })
        .flatten()
        .map(|v| (v.job_id, v.index, v.result_attempt, v.verification))
        .collect()
}

fn probation_of(results: u32) -> verify::Policy {
    verify::Policy {
        probation_results: results,
        ..verify::Policy::PUBLIC
    }
}

#[test]
fn a_new_node_s_result_waits_for_other_owners_and_a_trusted_one_vouches_alone() {
    let mut h = public(probation_of(1));
    let (alice, alice_too) = (owned(&mut h, 1, 1, 1, None), owned(&mut h, 2, 1, 1, None));
    let (bob, carol) = (owned(&mut h, 3, 2, 1, None), owned(&mut h, 4, 3, 1, None));
    let job = deterministic_job(&mut h, 1);
    let first = one(&mut h, alice);
    result(&mut h, alice, first, 10);
    let status = h.status(job);
    assert_eq!((status.tasks.succeeded, status.verifying), (0, 1));
    assert!(
        h.take(alice_too, 1).is_empty(),
        "a node of the same owner is no second witness"
    );
    let second = one(&mut h, bob);
    result(&mut h, bob, second, 10);
    assert_eq!(
        h.status(job).state,
        JobState::Running,
        "two new identities do not vouch for each other"
    );
    let third = one(&mut h, carol);
    result(&mut h, carol, third, 10);
    assert_eq!(h.status(job).state, JobState::Completed);
    let verification = wire::Verification {
        by: VerifiedBy::Probation,
        nodes: vec![alice, bob, carol],
    };
    assert_eq!(
        verdicts(&h),
        vec![(job, 0, Some(first), Some(verification))]
    );
    let standing = h.pool.standing_of(alice).unwrap();
    assert_eq!(standing.record.verified, 1);
    assert_eq!(standing.standing, wire::Standing::Trusted);

    // Bob is trusted now: his word alone confirms a new node's result.
    let dave = owned(&mut h, 5, 4, 1, None);
    let job = deterministic_job(&mut h, 1);
    let first = one(&mut h, dave);
    result(&mut h, dave, first, 10);
    let second = one(&mut h, bob);
    result(&mut h, bob, second, 10);
    assert_eq!(h.status(job).state, JobState::Completed);
}

#[test]
fn replicas_are_kept_off_a_shared_network_unless_the_owner_relaxed_it() {
    for networks_apart in [true, false] {
        let mut h = Harness::new();
        let policy = probation_of(2);
        h.pool.set_verifying(Trust::Public, policy, networks_apart);
        h.follower
            .set_verifying(Trust::Public, policy, networks_apart);
        let a = owned(&mut h, 1, 1, 1, Some("192.0.2.0/24"));
        let b = owned(&mut h, 2, 2, 1, Some("192.0.2.0/24"));
        deterministic_job(&mut h, 1);
        let first = one(&mut h, a);
        result(&mut h, a, first, 10);
        assert_eq!(h.take(b, 1).len(), usize::from(!networks_apart));
    }
}

#[test]
fn a_disagreement_needs_three_agreeing_owners_and_bans_every_node_of_the_liar_s_owner() {
    let mut h = public(probation_of(5));
    h.pool.create_join_token(
        token_of(2),
        "stranger",
        TokenRole::Join,
        h.now_ms,
        &mut h.out,
    );
    let honest = owned(&mut h, 1, 1, 1, None);
    let liar = owned(&mut h, 2, 2, 1, None);
    let liar_too = owned(&mut h, 3, 2, 1, None);
    let (carol, dave) = (owned(&mut h, 4, 3, 1, None), owned(&mut h, 5, 4, 1, None));
    let job = deterministic_job(&mut h, 1);
    let first = one(&mut h, honest);
    result(&mut h, honest, first, 10);
    let lie = one(&mut h, liar);
    result(&mut h, liar, lie, 99);
    assert_eq!(h.status(job).state, JobState::Running, "one against one");
    let (c, d) = (one(&mut h, carol), one(&mut h, dave));
    result(&mut h, carol, c, 10);
    assert_eq!(h.status(job).state, JobState::Running, "two against one");
    result(&mut h, dave, d, 10);
    assert_eq!(h.status(job).state, JobState::Completed);
    let (_, _, attempt, verification) = verdicts(&h).remove(0);
    assert_eq!(attempt, Some(first));
    assert_eq!(verification.unwrap().nodes, vec![honest, carol, dave]);
    for node in [liar, liar_too] {
        assert!(h.pool.is_removed(node), "{node} is banned");
        assert_eq!(
            h.pool.standing_of(node).unwrap().standing,
            wire::Standing::Banned
        );
    }
    assert!(
        h.out
            .writes
            .iter()
            .any(|w| matches!(w, Write::RevokeToken { hash, .. } if *hash == token_of(2))),
        "the liar's join token stops working"
    );
}

/// Three trusted nodes of distinct owners, and the pool's audit rate at zero, so every result
/// of theirs is held until an audit is forced.
fn trusted_trio(h: &mut Harness) -> [NodeId; 3] {
    go_public(
        h,
        verify::Policy {
            probation_results: 1,
            audit_per_million: 0,
            ..verify::Policy::PUBLIC
        },
    );
    let trio = [11, 12, 13].map(|id| owned(h, id, id, 3, None));
    deterministic_job(h, 1);
    for node in trio {
        let attempt = one(h, node);
        result(h, node, attempt, 10);
    }
    trio
}

/// A trusted node runs all three tasks of a job; once nothing else of the job runs, its newest
/// result is audited on the two others, which answer `audit_fuel` (7 is what it said).
pub(super) fn held_then_audited(h: &mut Harness, audit_fuel: u64) -> ([NodeId; 3], JobId) {
    let trio = trusted_trio(h);
    let job = deterministic_job(h, 3);
    let grants = h.take(trio[0], 3);
    for grant in &grants {
        result(h, trio[0], grant.attempt_id, 7);
    }
    assert_eq!(h.status(job).verifying, 3, "all three wait");
    for auditor in &trio[1..] {
        let audit = one(h, *auditor);
        result(h, *auditor, audit, audit_fuel);
    }
    (trio, job)
}

#[test]
fn a_trusted_node_s_results_wait_for_an_audit_and_a_passed_audit_releases_the_older_ones() {
    let mut h = Harness::new();
    let ([a, b, c], job) = held_then_audited(&mut h, 7);
    assert_eq!(h.status(job).state, JobState::Completed);
    let ways: Vec<_> = verdicts(&h)
        .into_iter()
        .filter(|(j, ..)| *j == job)
        .map(|(_, task, _, v)| (task, v.unwrap()))
        .collect();
    assert_eq!(ways.len(), 3);
    let audited: Vec<_> = ways
        .iter()
        .filter(|(_, v)| v.by == VerifiedBy::Audit)
        .collect();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].1.nodes, vec![a, b, c]);
    let standing = h.pool.standing_of(a).unwrap();
    assert_eq!(standing.record.audits_passed, 1);
    assert_eq!(standing.record.held, 0);
}

/// A trusted node that lies fails its audit: the audit's other voices settle it, the node is
/// banned, and its held results run again elsewhere; none of them is ever delivered.
pub(super) fn cheater_caught_by_audit(h: &mut Harness) {
    let ([cheater, honest, _], job) = held_then_audited(h, 8);
    let d = owned(h, 14, 14, 3, None);
    let settling = one(h, d);
    result(h, d, settling, 8);
    assert!(h.pool.is_removed(cheater));
    let again = h.take(honest, 3);
    assert_eq!(again.len(), 2, "the two held results run again");
    for grant in again {
        result(h, honest, grant.attempt_id, 8);
    }
    assert_eq!(
        h.status(job).state,
        JobState::Running,
        "the new results wait for an audit of their own"
    );
}

#[test]
fn a_trusted_node_that_lies_is_caught_by_its_audit_and_none_of_its_held_results_is_delivered() {
    let mut h = Harness::new();
    cheater_caught_by_audit(&mut h);
    let delivered: HashSet<_> = verdicts(&h)
        .into_iter()
        .filter_map(|(_, _, attempt, _)| attempt)
        .collect();
    let cheater_attempts: Vec<_> = h
        .out
        .writes
        .iter()
        .filter_map(|w| match w {
            Write::GrantAttempts(rows) => Some(rows.clone()),
            _ => None,
        })
        .flatten()
        .filter(|row| row.node_id == NodeId(11))
        .map(|row| row.id)
        .collect();
    assert!(!cheater_attempts.is_empty());
    for attempt in cheater_attempts.iter().skip(1) {
        assert!(
            !delivered.contains(attempt),
            "a result of the cheater's was delivered"
        );
    }
}

/// Results split past the bound: the task fails as inconclusive and no one is banned.
pub(super) fn split_past_the_bound(h: &mut Harness) -> JobId {
    go_public(
        h,
        verify::Policy {
            results_max: 3,
            ..probation_of(5)
        },
    );
    let (a, b) = (owned(h, 21, 21, 1, None), owned(h, 22, 22, 1, None));
    let job = deterministic_job(h, 1);
    let first = one(h, a);
    result(h, a, first, 1);
    let second = one(h, b);
    result(h, b, second, 2);
    job
}

#[test]
fn a_task_split_past_the_bound_fails_as_inconclusive_and_bans_no_one() {
    let mut h = Harness::new();
    let job = split_past_the_bound(&mut h);
    let status = h.status(job);
    assert_eq!((status.state, status.tasks.failed), (JobState::Failed, 1));
    let inconclusive = h.out.writes.iter().any(
        |w| matches!(w, Write::EndTasks(v) if v[0].outcome == Outcome::Inconclusive { results: 2, validator_failed: None }),
    );
    assert!(inconclusive);
    assert!(!h.pool.is_removed(NodeId(21)) && !h.pool.is_removed(NodeId(22)));
}

#[test]
fn a_public_pool_refuses_a_job_it_cannot_check_and_never_checks_less_than_asked() {
    let h = public(verify::Policy::PUBLIC);
    assert!(matches!(
        h.pool.checked_mode(None, false, 1, false),
        Err(PoolError::Invalid(message)) if message.contains("deterministic")
    ));
    assert_eq!(
        h.pool.checked_mode(None, true, 1, false),
        Ok(Some(wire::VerifyMode::Adaptive))
    );
    assert_eq!(
        h.pool.checked_mode(None, false, 1, true),
        Ok(Some(wire::VerifyMode::Adaptive)),
        "a validator compares results that are not the same bytes"
    );
    assert_eq!(
        h.pool
            .checked_mode(Some(wire::VerifyMode::Replicate), true, 1, false),
        Ok(Some(wire::VerifyMode::Replicate))
    );
    assert!(h.pool.checked_mode(None, true, 2, false).is_err());
    let family = Harness::new();
    assert_eq!(family.pool.checked_mode(None, false, 1, false), Ok(None));
    assert!(matches!(
        family.pool.checked_mode(None, false, 1, true),
        Err(PoolError::Invalid(message)) if message.contains("validator")
    ));
}

#[test]
fn a_node_on_probation_runs_one_attempt_at_a_time() {
    let mut h = public(probation_of(5));
    let node = owned(&mut h, 1, 1, 4, None);
    deterministic_job(&mut h, 4);
    assert_eq!(h.take(node, 4).len(), 1);
    assert!(h.take(node, 3).is_empty());
}

fn owner_account(owner: u64) -> wire::Account {
    wire::Account::Owner(owner)
}

pub(super) fn transfers(h: &Harness) -> Vec<wire::Transfer> {
    h.out
        .writes
        .iter()
        .filter_map(|write| match write {
            Write::InsertTransfers(transfers) => Some(transfers.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn the_requester_pays_every_execution_and_owners_earn_only_once_their_result_is_verified() {
    let mut h = public(probation_of(1));
    let nodes = [1, 2, 3].map(|id| owned(&mut h, id, id, 1, None));
    let requester = wire::Account::Requester(OWNER);
    deterministic_job(&mut h, 1);
    let first = one(&mut h, nodes[0]);
    result(&mut h, nodes[0], first, 10);
    assert_eq!(h.pool.balance(requester), -10);
    assert_eq!(h.pool.balance(wire::Account::Pending(1)), 10);
    assert_eq!(
        h.pool.balance(owner_account(1)),
        0,
        "nothing earned unverified"
    );
    for node in &nodes[1..] {
        let attempt = one(&mut h, *node);
        result(&mut h, *node, attempt, 10);
    }
    assert_eq!(h.pool.balance(requester), -30, "three executions, all paid");
    for owner in [1, 2, 3] {
        assert_eq!(h.pool.balance(owner_account(owner)), 10);
        assert_eq!(h.pool.balance(wire::Account::Pending(owner)), 0);
    }
}

#[test]
fn a_ban_refunds_what_the_cheater_had_pending_and_claws_back_what_it_earned() {
    let mut h = Harness::new();
    cheater_caught_by_audit(&mut h);
    let cheater_owner = 11;
    assert_eq!(h.pool.balance(owner_account(cheater_owner)), 0);
    assert_eq!(h.pool.balance(wire::Account::Pending(cheater_owner)), 0);
    let moved = transfers(&h);
    let earned_unverified = moved.iter().any(|t| {
        t.to == owner_account(cheater_owner) && t.memo == wire::Memo::Verified && t.fuel == 7
    });
    assert!(!earned_unverified, "no credit for a result never verified");
    let clawed: u64 = moved
        .iter()
        .filter(|t| t.memo == wire::Memo::Clawback)
        .map(|t| t.fuel)
        .sum();
    assert_eq!(
        clawed, 10,
        "the honest probation result it earned goes back"
    );
    let refunded: u64 = moved
        .iter()
        .filter(|t| t.memo == wire::Memo::Refund && t.from == wire::Account::Pending(11))
        .map(|t| t.fuel)
        .sum();
    assert_eq!(refunded, 3 * 7, "its three held results are paid back");
}

#[test]
fn a_public_pool_takes_a_job_only_from_a_requester_with_credit() {
    let mut h = public(verify::Policy::PUBLIC);
    let roomy = UnfinishedMax {
        pool: 100,
        per_requester: 100,
        pool_bytes: u64::MAX,
        per_requester_bytes: u64::MAX,
    };
    let submission = |_: &Harness| Submit {
        requester: OWNER,
        submission: {
            let mut job = JobSubmission::new("job", BlobHash::of(b"m"), vec![TaskSpec::default()]);
            job.deterministic = Some(wire::Deterministic { seed: 1 });
            job
        },
        module_bytes: 1 << 10,
        component_imports: None,
        wasm_features: Vec::new(),
        adding: Held { tasks: 1, bytes: 1 },
        unfinished_max: roomy,
        reusable: Vec::new(),
    };
    let refused = h.run(submission(&h)).0;
    assert!(matches!(refused, Err(PoolError::Forbidden(m)) if m.contains("credits grant")));
    let granted = h.run(GrantCredits {
        requester: OWNER,
        credits: 2,
    });
    assert_eq!(
        granted.0.unwrap().fuel,
        2 * wire::credits::FUEL_PER_CREDIT as i64
    );
    assert!(h.run(submission(&h)).0.is_ok());
    assert!(
        h.run(GrantCredits {
            requester: OWNER,
            credits: 0
        })
        .0
        .is_err()
    );
}

#[test]
fn a_family_job_that_asks_for_replicas_counts_each_node_as_a_witness_and_a_ban_spares_the_token() {
    let mut h = Harness::new();
    h.pool
        .create_join_token(token_of(1), "family", TokenRole::Join, h.now_ms, &mut h.out);
    let nodes = [1, 2, 3, 4].map(|id| owned(&mut h, id, 1, 1, Some("192.0.2.0/24")));
    let job = h.job_from(1, 3, |job| {
        job.deterministic = Some(wire::Deterministic { seed: 1 });
        job.verify = Some(wire::VerifyMode::Replicate);
    });
    let answers = [10, 99, 10, 10];
    for (node, fuel) in nodes.iter().zip(answers) {
        let attempt = one(&mut h, *node);
        result(&mut h, *node, attempt, fuel);
    }
    assert_eq!(h.status(job).state, JobState::Completed);
    assert!(h.pool.is_removed(nodes[1]), "the faulty machine is out");
    assert!(
        !h.pool.is_removed(nodes[0]),
        "its siblings of one join token stay"
    );
    let revoked = h
        .out
        .writes
        .iter()
        .any(|w| matches!(w, Write::RevokeToken { .. }));
    assert!(!revoked, "the family's join token keeps working");
}

/// A job that is not deterministic, whose results a validator compares.
fn validated_job(h: &mut Harness, tasks: usize) -> JobId {
    h.job_from(tasks, 4, |job| {
        job.verify = Some(wire::VerifyMode::Replicate);
        job.validator = Some(wire::Validator {
            module: BlobHash::of(b"validator"),
            args: vec!["--absolute".to_owned(), "0.01".to_owned()],
        });
    })
}

/// Runs the comparison the pool waits for with `verdict`, after checking it is of `attempt`
/// with `with`.
fn compare(h: &mut Harness, attempt: AttemptId, with: AttemptId, verdict: Verdict) {
    let comparison = h
        .pool
        .next_comparison()
        .expect("a result waits for the validator");
    assert_eq!((comparison.attempt, comparison.with), (attempt, with));
    h.run(super::Compare {
        job: comparison.job,
        task: comparison.task,
        attempt,
        with,
        verdict,
    });
}

/// Two results of one task that are not the same bytes: the validator finds them equivalent,
/// and the task is verified with the first.
pub(super) fn equivalent_by_the_validator(h: &mut Harness) -> JobId {
    go_public(h, probation_of(5));
    let (a, b) = (owned(h, 31, 31, 1, None), owned(h, 32, 32, 1, None));
    let c = owned(h, 33, 33, 1, None);
    let job = validated_job(h, 1);
    let first = one(h, a);
    result(h, a, first, 100);
    assert_eq!(
        h.pool.next_comparison(),
        None,
        "one result has nothing to compare with"
    );
    let second = one(h, b);
    result(h, b, second, 101);
    let waiting = &h.pool.jobs[&job];
    assert!(
        waiting.short.is_empty() && waiting.pending.is_empty(),
        "nothing more runs while a comparison waits"
    );
    compare(h, second, first, Verdict::Equivalent);
    // Two new identities do not vouch for each other: a third, equivalent too.
    let third = one(h, c);
    result(h, c, third, 102);
    compare(h, third, first, Verdict::Equivalent);
    assert_eq!(h.pool.next_comparison(), None);
    job
}

#[test]
fn results_a_validator_finds_equivalent_verify_a_task_that_is_not_deterministic() {
    let mut h = Harness::new();
    let job = equivalent_by_the_validator(&mut h);
    assert_eq!(h.status(job).state, JobState::Completed);
    let (_, _, attempt, verification) = verdicts(&h).pop().unwrap();
    assert_eq!(verification.unwrap().nodes.len(), 3);
    assert!(attempt.is_some());
}

#[test]
fn a_result_found_different_is_compared_with_the_next_and_outvoted() {
    let mut h = public(probation_of(5));
    let nodes: Vec<NodeId> = (41..45).map(|id| owned(&mut h, id, id, 1, None)).collect();
    let job = validated_job(&mut h, 1);
    let first = one(&mut h, nodes[0]);
    result(&mut h, nodes[0], first, 100);
    let second = one(&mut h, nodes[1]);
    result(&mut h, nodes[1], second, 500);
    compare(&mut h, second, first, Verdict::Different);
    // The split wants more results; the third is compared with each label in turn.
    let third = one(&mut h, nodes[2]);
    result(&mut h, nodes[2], third, 501);
    compare(&mut h, third, first, Verdict::Different);
    compare(&mut h, third, second, Verdict::Equivalent);
    let fourth = one(&mut h, nodes[3]);
    // The same bytes as an earlier result need no validator.
    result(&mut h, nodes[3], fourth, 500);
    assert_eq!(h.pool.next_comparison(), None);
    assert_eq!(h.status(job).state, JobState::Completed);
    let (_, _, attempt, _) = verdicts(&h).pop().unwrap();
    assert_eq!(attempt, Some(second));
    assert!(h.pool.is_removed(nodes[0]), "the outvoted node is banned");
}

#[test]
fn a_validator_that_fails_leaves_the_task_inconclusive_and_a_stale_verdict_changes_nothing() {
    let mut h = public(probation_of(5));
    let (a, b) = (
        owned(&mut h, 51, 51, 1, None),
        owned(&mut h, 52, 52, 1, None),
    );
    let job = validated_job(&mut h, 1);
    let first = one(&mut h, a);
    result(&mut h, a, first, 100);
    let second = one(&mut h, b);
    result(&mut h, b, second, 101);
    let (_, kinds) = h.run(super::Compare {
        job,
        task: 0,
        attempt: first,
        with: second,
        verdict: Verdict::Equivalent,
    });
    assert!(
        kinds.is_empty(),
        "a verdict on a comparison not asked for: {kinds:?}"
    );
    compare(
        &mut h,
        second,
        first,
        Verdict::Failed("it ran out of fuel".to_owned()),
    );
    let status = h.status(job);
    assert_eq!((status.state, status.tasks.failed), (JobState::Failed, 1));
    let failed = h.out.writes.iter().any(|w| {
        matches!(w, Write::EndTasks(v) if matches!(&v[0].outcome,
            Outcome::Inconclusive { validator_failed: Some(why), .. } if why.contains("fuel")))
    });
    assert!(failed, "the outcome says the validator failed");
    assert_eq!(h.pool.next_comparison(), None);
    assert!(
        !h.pool.is_removed(a) && !h.pool.is_removed(b),
        "no one is banned for it"
    );
}

/// `node` says it cannot run `attempt` (a node error, no result).
fn cannot(h: &mut Harness, node: NodeId, attempt: AttemptId) {
    let report = AttemptReport {
        ran_on: None,
        attempt_id: attempt,
        outcome: Outcome::NodeError {
            message: "no".to_owned(),
        },
        usage: Usage::default(),
        stdout: None,
        stderr: None,
        outputs: vec![],
        sealed_digest: None,
    };
    assert!(h.send(node, report).accepted);
}

#[test]
fn a_stranger_that_says_it_cannot_run_a_task_is_kept_from_it_with_its_owner_for_a_while() {
    let mut h = public(probation_of(1));
    let (burner, burner_too) = (owned(&mut h, 1, 1, 1, None), owned(&mut h, 2, 1, 1, None));
    let other = owned(&mut h, 3, 2, 1, None);
    let job = h.job_from(2, 3, |job| {
        job.deterministic = Some(wire::Deterministic { seed: 1 });
    });
    let first = h.take(burner, 1);
    assert_eq!(first[0].task_index, 0);
    cannot(&mut h, burner, first[0].attempt_id);
    // Task 0 is back first in the queue, but not for this node or its owner's other one.
    let next = one(&mut h, burner);
    assert_eq!(
        h.take(burner_too, 1).len(),
        0,
        "task 1 runs; task 0 is refused"
    );
    assert_eq!(h.status(job).tasks.pending, 1);
    let taken = h.take(other, 1);
    assert_eq!(taken[0].task_index, 0, "another owner's node takes it");
    cannot(&mut h, burner, next);
    assert_eq!(
        h.take(burner_too, 1).len(),
        0,
        "the owner refused task 1 too"
    );
    assert_eq!(h.status(job).tasks.failed, 0, "refusals spent no task");
    let why = h.pool.why(job, OWNER, h.now_ms).unwrap().reasons;
    assert!(
        why.iter()
            .any(|r| r.contains("1 waiting task is held for up to 60 s")),
        "{why:?}"
    );
    // A minute on, it may try again: a task every owner refused must not wait for ever.
    h.now_ms += super::REFUSAL_HOLD_MS;
    assert_eq!(h.take(burner_too, 1)[0].task_index, 1);
}

#[test]
fn a_family_node_that_could_not_run_a_task_may_try_it_again() {
    let mut h = Harness::new();
    let node = h.node(1, 1);
    h.job(1, 3);
    let attempt = one(&mut h, node);
    cannot(&mut h, node, attempt);
    assert_eq!(
        h.take(node, 1).len(),
        1,
        "its own machines are trusted to retry"
    );
}
