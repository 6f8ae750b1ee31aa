//! Results taken back after a ban, end to end: a trusted node's results that a later audit
//! released rest on its word alone. When the node is caught lying afterwards, those results
//! run again on other nodes, their ended job runs again, and the requester sees which results
//! were replaced and gets back what it paid for them.

use std::time::Duration;

use wire::{Account, JobId, JobState, Memo, NodeId, Standing, VerifiedBy};

use crate::harness::{Agent, Pool, eventually};
use crate::public::{
    all_right_and_verified, banned, echo_job, grant_the_owner_credit, public_pool,
};

const HONEST: [&str; 3] = ["honest-1", "honest-2", "honest-3"];

async fn all_trusted(pool: &Pool, names: &[&str]) -> bool {
    let nodes = pool.owner.nodes().await.unwrap();
    names.iter().all(|name| {
        nodes.nodes.iter().any(|node| {
            node.name == *name
                && node
                    .standing
                    .is_some_and(|s| s.standing == Standing::Trusted)
        })
    })
}

/// Agents of the named strangers, each with a join token of its own made once in `tokens`.
async fn start(
    pool: &Pool,
    tokens: &mut Vec<(String, String)>,
    name: &str,
    args: &[&str],
) -> Agent {
    let token = match tokens.iter().find(|(n, _)| n == name) {
        Some((_, token)) => token.clone(),
        None => {
            let token = pool.join_token_for(name).await;
            tokens.push((name.to_owned(), token.clone()));
            token
        }
    };
    let agent = pool.agent_joined(name, 1, &token, args);
    pool.wait_online(&[name]).await;
    agent
}

async fn stop(agents: &mut Vec<Agent>) {
    for agent in agents.iter_mut() {
        agent.terminate().await;
    }
    agents.clear();
}

/// Waits until every task of `job` waits for a check: all of them held in a node's window.
async fn all_held(pool: &Pool, job: JobId, tasks: u32) {
    eventually(
        "every result to wait in the window",
        Duration::from_secs(60),
        || async {
            let status = pool.owner.job(job).await.ok()?;
            (status.verifying == tasks).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_a_banned_node_vouched_for_alone_run_again_and_their_job_ends_again() {
    // No random audits: a trusted node's results wait until the end of their job audits the
    // newest, so which results rest on one node's word is known.
    let pool = public_pool("1", &["--audit-percent", "0"]).await;
    grant_the_owner_credit(&pool).await;
    let mut tokens = Vec::new();
    let mut vouching = start(&pool, &mut tokens, "vouching", &[]).await;
    let mut honest = Vec::new();
    for name in HONEST {
        honest.push(start(&pool, &mut tokens, name, &[]).await);
    }
    let everyone = ["vouching", HONEST[0], HONEST[1], HONEST[2]];
    for _ in 0..10 {
        let warm_up = echo_job(&pool, 8).await;
        pool.finish(warm_up, Duration::from_secs(120)).await;
        if all_trusted(&pool, &everyone).await {
            break;
        }
    }
    assert!(all_trusted(&pool, &everyone).await, "everyone is trusted");

    // Alone, the node runs a whole job; its results wait until others audit the newest.
    stop(&mut honest).await;
    let tasks = 4;
    let vouched = echo_job(&pool, tasks).await;
    all_held(&pool, vouched, tasks as u32).await;
    for name in HONEST {
        honest.push(start(&pool, &mut tokens, name, &[]).await);
    }
    let status = pool.finish(vouched, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    let liar = pool.node_id("vouching").await;
    let page = pool.owner.tasks(vouched, 0, 10).await.unwrap();
    let on_its_word: Vec<u32> = page
        .tasks
        .iter()
        .filter(|task| {
            task.verification
                .as_ref()
                .is_some_and(|v| v.by == VerifiedBy::LaterAudit && v.nodes == [liar])
        })
        .map(|task| task.index)
        .collect();
    assert_eq!(
        on_its_word.len(),
        tasks - 1,
        "all but the audited one: {page:?}"
    );

    // The same identity turns liar, alone again, and is caught by the audit of its newest lie.
    stop(&mut honest).await;
    vouching.terminate().await;
    let mut vouching = start(&pool, &mut tokens, "vouching", &["--cheat", "always"]).await;
    let lies = echo_job(&pool, 2).await;
    all_held(&pool, lies, 2).await;
    for name in HONEST {
        honest.push(start(&pool, &mut tokens, name, &[]).await);
    }
    let status = pool.finish(lies, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    all_right_and_verified(&pool, lies, 2).await;
    assert!(banned(&pool, "vouching").await);
    assert!(!vouching.exited(Duration::from_secs(30)).await.success());

    replaced_and_paid_back(&pool, vouched, &on_its_word, liar).await;
    providers_see_what_they_earned(&pool, &tokens).await;
}

/// An owner of nodes reads what they earned with its join token, through the API and the
/// CLI; the banned owner's token reads nothing.
async fn providers_see_what_they_earned(pool: &Pool, tokens: &[(String, String)]) {
    let token_of = |name: &str| tokens.iter().find(|(n, _)| n == name).unwrap().1.clone();
    let honest = client::Client::new(&pool.url, Some(token_of(HONEST[0]))).unwrap();
    let credits = honest.credits().await.unwrap();
    assert!(matches!(credits.balance.account, Account::Owner(_)));
    assert!(credits.balance.fuel > 0, "{credits:?}");
    assert_eq!(
        credits.pending.map(|p| p.fuel),
        Some(0),
        "every job ended verified"
    );
    assert!(
        credits.accounts.is_empty(),
        "a provider sees its own accounts only"
    );
    let verified = credits.history.iter().any(|t| t.memo == Memo::Verified);
    assert!(verified, "{:?}", credits.history);
    let banned = client::Client::new(&pool.url, Some(token_of("vouching"))).unwrap();
    let refused = banned.credits().await.unwrap_err().to_string();
    assert!(refused.contains("revoked"), "{refused}");

    let output = tokio::process::Command::new(crate::harness::BINARY)
        .args(["credits", "--provider", "--coordinator", &pool.url])
        .env("CROWDCLOUD_TOKEN", token_of(HONEST[1]))
        .env("CROWDCLOUD_DATA_DIR", pool.dir.path().join("nowhere"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("earned: ") && stdout.contains("verified"),
        "{stdout}"
    );
    let output = tokio::process::Command::new(crate::harness::BINARY)
        .args(["credits", "--provider", "--coordinator", &pool.url])
        .env("CROWDCLOUD_TOKEN", &pool.owner_token)
        .env("CROWDCLOUD_DATA_DIR", pool.dir.path().join("nowhere"))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("ccj_"),
        "{stderr}"
    );
}

/// The job whose results rested on the liar's word ran those tasks again and ended again, with
/// results from others; the requester sees which were replaced and got back what it paid.
async fn replaced_and_paid_back(pool: &Pool, job: JobId, replaced: &[u32], liar: NodeId) {
    let status = eventually(
        "the job to run again and end",
        Duration::from_secs(120),
        || async {
            let status = pool.owner.job(job).await.ok()?;
            (status.recalled > 0 && status.state.is_terminal()).then_some(status)
        },
    )
    .await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    assert_eq!(status.recalled as usize, replaced.len());
    all_right_and_verified(pool, job, replaced.len() + 1).await;
    let page = pool.owner.tasks(job, 0, 10).await.unwrap();
    for task in &page.tasks {
        let was_replaced = replaced.contains(&task.index);
        let expected = was_replaced.then_some(liar);
        assert_eq!(task.recalled_from, expected, "task {}", task.index);
        if was_replaced {
            let nodes = &task.verification.as_ref().unwrap().nodes;
            assert!(
                !nodes.contains(&liar),
                "task {} rests on the liar",
                task.index
            );
        }
    }
    let credits = pool.owner.credits().await.unwrap();
    let paid_back = credits
        .history
        .iter()
        .any(|t| t.memo == Memo::Refund && t.from == Account::Pool && t.job_id == Some(job));
    assert!(paid_back, "{:?}", credits.history);
    let sum: i64 = credits.accounts.iter().map(|b| b.fuel).sum();
    assert_eq!(sum, 0, "{:?}", credits.accounts);
}
