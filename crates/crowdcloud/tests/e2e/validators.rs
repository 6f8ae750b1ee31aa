//! Jobs whose results are not the same bytes on every node, verified in a public pool by the
//! requester's validator: a Monte Carlo job's differing results are verified and a liar among
//! the nodes is outvoted, a validator that traps leaves every task inconclusive, and a job that
//! can be compared neither way is refused.

use std::time::Duration;

use wire::{BlobHash, JobId, JobState, Limits, Outcome, TaskSpec, Validator};

use crate::harness::{Pool, probe};
use crate::public::{grant_the_owner_credit, public_pool, stranger};

const TASKS: usize = 10;

/// A Monte Carlo estimate of π per task: the digits differ from run to run.
async fn pi_job(pool: &Pool, validator: Option<Validator>) -> Result<JobId, String> {
    let module = pool.upload_wasm(guests::PROBE).await;
    let tasks: Vec<TaskSpec> = (0..TASKS).map(|_| probe(&["pi", "200000"])).collect();
    let mut submission = pool.submission(module, tasks, Limits::default());
    submission.validator = validator;
    pool.owner
        .submit(&submission)
        .await
        .map(|submitted| submitted.job_id)
        .map_err(|error| error.to_string())
}

fn validator(module: BlobHash, args: &[&str]) -> Option<Validator> {
    Some(Validator {
        module,
        args: args.iter().map(|arg| (*arg).to_owned()).collect(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_verifies_results_that_differ_and_one_that_traps_accepts_none() {
    let pool = public_pool("2", &[]).await;
    let (mut names, mut honest) = (Vec::new(), Vec::new());
    for i in 0..4 {
        let name = format!("honest-{i}");
        honest.push(stranger(&pool, &name, &[]).await);
        names.push(name);
    }
    let liar = stranger(&pool, "liar", &["--cheat", "always"]).await;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    pool.wait_online(&names).await;
    grant_the_owner_credit(&pool).await;

    let refused = pi_job(&pool, None).await.unwrap_err();
    assert!(refused.contains("validator"), "{refused}");

    let compare = pool.upload_wasm(guests::COMPARE).await;
    let job = pi_job(&pool, validator(compare, &["--absolute", "0.05"]))
        .await
        .unwrap();
    let status = pool.finish(job, Duration::from_secs(300)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    let estimates = estimates_verified(&pool, job).await;
    assert!(
        estimates.windows(2).any(|pair| pair[0] != pair[1]),
        "the results differ from run to run, so the validator had work: {estimates:?}"
    );
    assert!(
        liar.log().contains(agent::LIE_TAKEN),
        "the liar got work and lied"
    );
    let nodes = pool.owner.nodes().await.unwrap();
    assert!(
        nodes.nodes.iter().all(|node| node.name != "liar"),
        "the liar was outvoted and banned"
    );
    for node in &honest {
        assert!(
            !node.log().contains("refused this node"),
            "an honest node was banned"
        );
    }

    a_validator_that_traps_accepts_no_result(&pool).await;
}

/// A validator that traps compares nothing: every task ends inconclusive, saying why.
async fn a_validator_that_traps_accepts_no_result(pool: &Pool) {
    let trapping = validator(pool.upload_wasm(guests::PROBE).await, &["panic"]);
    let job = pi_job(pool, trapping).await.unwrap();
    let status = pool.finish(job, Duration::from_secs(300)).await;
    assert_eq!(status.state, JobState::Failed, "{status:?}");
    let page = pool.owner.tasks(job, 0, TASKS as u32).await.unwrap();
    for task in &page.tasks {
        assert!(
            matches!(&task.outcome, Some(Outcome::Inconclusive { validator_failed: Some(why), .. })
                if why.contains("trapped")),
            "task {} accepted a result the validator never compared: {:?}",
            task.index,
            task.outcome
        );
    }
}

/// Every task's delivered estimate, each within the tolerance of π and verified.
async fn estimates_verified(pool: &Pool, job: JobId) -> Vec<String> {
    let page = pool.owner.tasks(job, 0, TASKS as u32).await.unwrap();
    assert_eq!(page.tasks.len(), TASKS);
    let mut estimates = Vec::new();
    for task in &page.tasks {
        let stdout = String::from_utf8_lossy(&pool.stdout(task).await).into_owned();
        let estimate: f64 = stdout
            .strip_prefix("pi ")
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or_else(|| panic!("task {} delivered {stdout:?}", task.index));
        assert!((estimate - std::f64::consts::PI).abs() < 0.05, "{estimate}");
        assert!(
            task.verification.is_some(),
            "task {} unverified",
            task.index
        );
        estimates.push(stdout);
    }
    estimates
}
