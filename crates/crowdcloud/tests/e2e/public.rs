//! A public pool of strangers' machines: cheating agents, as real processes over the real
//! protocol, never keep a wrong result delivered (a lie a trusted accomplice vouched for is
//! taken back once both are caught), and every one that lies is banned, again when it comes
//! back under a new identity.

use std::time::Duration;

use wire::{Account, Deterministic, JobId, JobState, Limits, Standing, TaskSpec};

use crate::harness::{Agent, Pool, eventually, probe};

const LEASE_MS: u64 = 3_000;

/// The cheaters: one that always lies, one that lies once it has two results accepted, and a
/// ring of two that turn together and tell the same lie.
const CHEATERS: [(&str, &[&str]); 4] = [
    ("liar", &["--cheat", "always"]),
    ("turncoat", &["--cheat", "after=2"]),
    ("ring-a", &["--cheat", "after=2", "--cheat-group", "ring"]),
    ("ring-b", &["--cheat", "after=2", "--cheat-group", "ring"]),
];

/// A public pool whose nodes are trusted after `probation_results` verified results, started
/// with `more` arguments as well. Every node of these tests sits on loopback, one network.
pub(crate) async fn public_pool(probation_results: &str, more: &[&str]) -> Pool {
    let mut args = vec![
        "--trust",
        "public",
        "--one-network",
        "--probation-results",
        probation_results,
    ];
    args.extend_from_slice(more);
    Pool::start_with(LEASE_MS, None, &args).await
}

/// An agent of an owner of its own, as a stranger lends a machine.
pub(crate) async fn stranger(pool: &Pool, name: &str, more_args: &[&str]) -> Agent {
    let token = pool.join_token_for(name).await;
    pool.agent_joined(name, 1, &token, more_args)
}

pub(crate) async fn echo_job(pool: &Pool, tasks: usize) -> JobId {
    let module = pool.upload_wasm(guests::PROBE).await;
    let tasks: Vec<TaskSpec> = (0..tasks)
        .map(|i| probe(&["echo", "task", &i.to_string()]))
        .collect();
    let mut submission = pool.submission(module, tasks, Limits::default());
    submission.deterministic = Some(Deterministic { seed: 1 });
    pool.owner.submit(&submission).await.unwrap().job_id
}

/// The owner's own requester gets credit to submit with.
pub(crate) async fn grant_the_owner_credit(pool: &Pool) {
    let grant = wire::CreditGrant {
        requester: "owner".to_owned(),
        credits: 1_000,
    };
    pool.owner.grant_credits(&grant).await.unwrap();
}

/// Whether `job` has ended and every one of its `tasks` with its own right answer, verified.
async fn all_right_now(pool: &Pool, job: JobId, tasks: usize) -> bool {
    let Ok(status) = pool.owner.job(job).await else {
        return false;
    };
    let Ok(page) = pool.owner.tasks(job, 0, tasks as u32).await else {
        return false;
    };
    if status.state != JobState::Completed || page.tasks.len() != tasks {
        return false;
    }
    for task in &page.tasks {
        let right = format!("task {}\n", task.index);
        if task.verification.is_none() || pool.stdout(task).await != right.as_bytes() {
            return false;
        }
    }
    true
}

/// Every task of `job` ended with its own right answer, and says how it was verified.
pub(crate) async fn all_right_and_verified(pool: &Pool, job: JobId, tasks: usize) {
    let page = pool.owner.tasks(job, 0, tasks as u32).await.unwrap();
    assert_eq!(page.tasks.len(), tasks);
    for task in &page.tasks {
        let stdout = pool.stdout(task).await;
        assert_eq!(
            String::from_utf8_lossy(&stdout),
            format!("task {}\n", task.index),
            "task {} was delivered a wrong result",
            task.index
        );
        assert!(
            task.verification.is_some(),
            "task {} unverified",
            task.index
        );
    }
}

/// Whether the pool accepted a made-up result of this cheater: a lie that its attempt's
/// cancellation cut off never reached the pool.
fn lied(cheater: &Agent) -> bool {
    cheater.log().contains(agent::LIE_TAKEN)
}

pub(crate) async fn banned(pool: &Pool, name: &str) -> bool {
    let nodes = pool.owner.nodes().await.unwrap();
    let node = nodes.nodes.iter().find(|node| node.name == name);
    // A banned node is out of the pool's list of nodes.
    node.is_none_or(|node| {
        node.standing
            .is_some_and(|s| s.standing == Standing::Banned)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheaters_get_no_wrong_result_kept_and_each_that_lies_is_banned_again_and_again() {
    let mut pool = public_pool("2", &["--audit-percent", "25"]).await;
    let mut honest = Vec::new();
    for i in 0..6 {
        honest.push(stranger(&pool, &format!("honest-{i}"), &[]).await);
    }
    let mut cheaters = Vec::new();
    for (name, args) in CHEATERS {
        cheaters.push((name, stranger(&pool, name, args).await));
    }
    let names: Vec<String> = (0..6).map(|i| format!("honest-{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    pool.wait_online(&names).await;
    refuses_without_credit_or_determinism_then_grants(&pool).await;

    let tasks = 60;
    let job = echo_job(&pool, tasks).await;
    let status = pool.finish(job, Duration::from_secs(300)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    assert!(lied(&cheaters[0].1), "the liar got work and lied");
    for (name, agent) in &cheaters {
        if lied(agent) {
            assert!(banned(&pool, name).await, "{name} lied and is not banned");
        }
    }
    // A ring member that earned trust may vouch for the other's lie, which then stands until
    // both are caught: then every witness of it is banned, it is taken back, and its task runs
    // again on honest nodes.
    let (owner, job_ref) = (&pool, job);
    eventually(
        "every result taken back that only liars stood for",
        Duration::from_secs(120),
        || async move { all_right_now(owner, job_ref, tasks).await.then_some(()) },
    )
    .await;
    for (name, agent) in &mut cheaters {
        if lied(agent) {
            assert!(
                !agent.exited(Duration::from_secs(30)).await.success(),
                "{name}"
            );
        }
    }
    for node in honest.iter() {
        assert!(
            !node.log().contains("refused this node"),
            "an honest node was refused"
        );
    }
    comes_back_and_is_banned_again(&pool).await;
    ledger_holds_through_a_restart(&mut pool).await;
}

/// The ledger's balances sum to zero, every honest owner earned, and a hard restart of the
/// coordinator changes none of it.
async fn ledger_holds_through_a_restart(pool: &mut Pool) {
    let before = pool.owner.credits().await.unwrap();
    let sum: i64 = before.accounts.iter().map(|b| b.fuel).sum();
    assert_eq!(sum, 0, "{:?}", before.accounts);
    assert!(before.balance.fuel < 1_000 * wire::credits::FUEL_PER_CREDIT as i64);
    let earned = |accounts: &[wire::Balance]| {
        accounts
            .iter()
            .filter(|b| matches!(b.account, Account::Owner(_)) && b.fuel > 0)
            .count()
    };
    assert!(earned(&before.accounts) >= 6, "every honest owner earned");
    assert!(
        before
            .history
            .iter()
            .any(|t| t.memo == wire::Memo::Execution),
        "the requester's history shows what it paid"
    );
    pool.restart_coordinator_hard().await;
    let after = pool.owner.credits().await.unwrap();
    assert_eq!(after.balance, before.balance);
    assert_eq!(after.accounts, before.accounts);
}

/// A public pool refuses a job from a requester without credit, then one whose results cannot
/// be compared; the owner then grants its own requester credit.
async fn refuses_without_credit_or_determinism_then_grants(pool: &Pool) {
    let module = pool.upload_wasm(guests::PROBE).await;
    let without_credit = pool.submission(module, vec![probe(&["echo", "hi"])], Limits::default());
    let refusal = || async {
        pool.owner
            .submit(&without_credit)
            .await
            .unwrap_err()
            .to_string()
    };
    let refused = refusal().await;
    assert!(refused.contains("credits"), "{refused}");
    grant_the_owner_credit(pool).await;
    let refused = refusal().await;
    assert!(
        refused.contains("deterministic"),
        "a job whose results cannot be compared is refused: {refused}"
    );
}

/// A banned liar that joins again under a new identity and a new join token is on probation
/// again, and its first lie bans it again.
async fn comes_back_and_is_banned_again(pool: &Pool) {
    let mut again = stranger(pool, "liar-again", &["--cheat", "always"]).await;
    pool.wait_online(&["liar-again"]).await;
    let tasks = 30;
    let job = echo_job(pool, tasks).await;
    let status = pool.finish(job, Duration::from_secs(300)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    all_right_and_verified(pool, job, tasks).await;
    eventually("the new identity to lie", Duration::from_secs(30), || {
        let lied = lied(&again);
        async move { lied.then_some(()) }
    })
    .await;
    assert!(banned(pool, "liar-again").await);
    assert!(!again.exited(Duration::from_secs(30)).await.success());
}

/// A coordinator killed while results wait for their checks forgets those checks: the tasks
/// run again, what was pending for them goes back to the requester, and the ledger still sums
/// to zero with nothing left pending once the job is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_results_wait_for_checks_keeps_the_ledger_whole() {
    // Everyone stays on probation: each task needs three owners' results.
    let mut pool = public_pool("1000", &[]).await;
    let mut strangers = Vec::new();
    for i in 0..3 {
        strangers.push(stranger(&pool, &format!("stranger-{i}"), &[]).await);
    }
    pool.wait_online(&["stranger-0", "stranger-1", "stranger-2"])
        .await;
    grant_the_owner_credit(&pool).await;
    let tasks = 150;
    let job = echo_job(&pool, tasks).await;
    let owner = pool.owner.clone();
    eventually(
        "results waiting for checks",
        Duration::from_secs(60),
        || {
            let owner = owner.clone();
            async move {
                let status = owner.job(job).await.ok()?;
                (status.verifying > 0 && status.tasks.succeeded < tasks as u32).then_some(())
            }
        },
    )
    .await;
    pool.restart_coordinator_hard().await;
    let restarted = pool.owner.credits().await.unwrap();
    assert!(
        restarted
            .history
            .iter()
            .any(|t| t.memo == wire::Memo::Refund),
        "what was pending at the crash went back to the requester"
    );
    let status = pool.finish(job, Duration::from_secs(300)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    all_right_and_verified(&pool, job, tasks).await;
    let credits = pool.owner.credits().await.unwrap();
    let sum: i64 = credits.accounts.iter().map(|b| b.fuel).sum();
    assert_eq!(sum, 0, "{:?}", credits.accounts);
    let pending: Vec<_> = credits
        .accounts
        .iter()
        .filter(|b| matches!(b.account, Account::Pending(_)))
        .collect();
    assert!(pending.is_empty(), "left pending: {pending:?}");
}
