//! Trust on the wire, on loopback: each refusal is clear and changes nothing. A node presenting
//! another node's id, a registration signed with the wrong key, one node acting on another's
//! attempts, a revoked token, a certificate with the wrong fingerprint, a wrong join code, and
//! a cloned data dir.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use tokio::process::Command;

use client::{Client, ClientError};
use wire::tokens::{ManagedTokenKind, TokenCreateRequest};
use wire::{
    AttemptReport, ErrorCode, Fingerprint, LeaseRequest, Limits, NodeState, Outcome,
    RegisterRequest, ReleaseRequest, ReportRequest, Usage,
};

use crate::harness::{BINARY, Pool, eventually, probe, signed_registration};

/// A registration of `key` over a fresh nonce (signed by `signer`, which is the same key unless
/// a test forges).
async fn registration(
    client: &Client,
    join_token: &str,
    key: &SigningKey,
    signer: &SigningKey,
    name: &str,
) -> RegisterRequest {
    // A revoked join token gets no nonce; its registration is refused for the token anyway.
    let nonce = match client.challenge(join_token).await {
        Ok(challenge) => challenge.nonce,
        Err(_) => "00".repeat(32),
    };
    signed_registration(join_token, nonce, (key, signer), name, 1, BTreeMap::new())
}

fn api_error<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (ErrorCode, String) {
    match result {
        Err(ClientError::Api { error, .. }) => (error.code, error.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A report that `attempt` exited with `code`, leaving nothing.
fn exited(attempt: wire::AttemptId, code: i32) -> ReportRequest {
    ReportRequest {
        reports: vec![AttemptReport {
            ran_on: None,
            attempt_id: attempt,
            outcome: Outcome::ExitCode { code },
            usage: Usage::default(),
            stdout: None,
            stderr: None,
            outputs: vec![],
            sealed_digest: None,
        }],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registration_for_another_nodes_id_or_signed_with_the_wrong_key_is_refused() {
    let pool = Pool::start(5_000).await;
    let anonymous = Client::new(&pool.url, None).unwrap();
    let victim = SigningKey::from_bytes(&[1; 32]);
    let thief = SigningKey::from_bytes(&[2; 32]);
    anonymous
        .register(&registration(&anonymous, &pool.join_token, &victim, &victim, "victim").await)
        .await
        .unwrap();
    let before = pool.owner.nodes().await.unwrap();

    // The thief names the victim's key (and so its node id) but can only sign with its own.
    let (code, message) = api_error(
        anonymous
            .register(&registration(&anonymous, &pool.join_token, &victim, &thief, "thief").await)
            .await,
    );
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(message.contains("signature does not verify"), "{message}");
    // A signature over other values than those sent does not verify either.
    let mut changed = registration(&anonymous, &pool.join_token, &thief, &thief, "thief").await;
    changed.slots = 64;
    let (code, _) = api_error(anonymous.register(&changed).await);
    assert_eq!(code, ErrorCode::BadRequest);

    let after = pool.owner.nodes().await.unwrap();
    assert_eq!(
        after.nodes.len(),
        before.nodes.len(),
        "nothing was registered"
    );
    assert_eq!(after.nodes[0].name, "victim");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_node_cannot_report_release_or_read_for_another() {
    let pool = Pool::start(5_000).await;
    let anonymous = Client::new(&pool.url, None).unwrap();
    let mut nodes = Vec::new();
    for (seed, name) in [(1u8, "holder"), (2, "other")] {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let registered = anonymous
            .register(&registration(&anonymous, &pool.join_token, &key, &key, name).await)
            .await
            .unwrap();
        nodes.push(anonymous.with_token(registered.node_token));
    }
    let (holder, other) = (&nodes[0], &nodes[1]);
    let module = pool.upload_wasm(guests::PROBE).await;
    let job = pool
        .submit(module, vec![probe(&["echo", "mine"])], Limits::default())
        .await;
    let lease = holder
        .lease(&LeaseRequest {
            slots_free: 1,
            wait_ms: 5_000,
        })
        .await
        .unwrap();
    let attempt = lease.attempts[0].attempt_id;
    let before = pool.owner.all_tasks(job).await.unwrap();

    let report = exited(attempt, 3);
    let refused = other.report(&report).await.unwrap();
    assert!(
        !refused.acks[0].accepted,
        "another node's report is refused"
    );
    let released = other
        .release(&ReleaseRequest {
            attempts: vec![attempt],
            reason: "stealing".to_owned(),
        })
        .await
        .unwrap();
    assert!(
        released.released.is_empty(),
        "another node cannot release it"
    );
    let (code, _) = api_error(other.job_runtime(job).await);
    assert_eq!(
        code,
        ErrorCode::NotFound,
        "nor read the job it does not hold"
    );
    assert!(
        !matches!(other.has_blob(&module).await, Ok(true)),
        "nor its module"
    );
    assert_eq!(
        pool.owner.all_tasks(job).await.unwrap(),
        before,
        "nothing changed"
    );

    // The holder still holds the attempt and finishes it.
    let mut good = report.clone();
    good.reports[0].outcome = Outcome::Succeeded;
    assert!(holder.report(&good).await.unwrap().acks[0].accepted);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_listed_without_secrets_and_a_revoked_one_stops_working_at_once() {
    let pool = Pool::start(5_000).await;
    let created = pool
        .owner
        .create_token(&TokenCreateRequest {
            name: "alice".to_owned(),
            kind: ManagedTokenKind::Requester,
        })
        .await
        .unwrap();
    let alice = Client::new(&pool.url, Some(created.token.clone())).unwrap();
    alice.jobs(10).await.unwrap();
    let (code, _) = api_error(alice.tokens().await);
    assert_eq!(code, ErrorCode::Forbidden, "only the owner manages tokens");

    let listed = pool.owner.tokens().await.unwrap();
    let text = serde_json::to_string(&listed).unwrap();
    assert!(!text.contains(&created.token), "no secret in the listing");
    assert!(!text.contains(&pool.owner_token));
    let names: Vec<&str> = listed.tokens.iter().map(|t| t.name.as_str()).collect();
    assert!(names.contains(&"owner") && names.contains(&"join") && names.contains(&"alice"));

    let (code, message) = api_error(pool.owner.revoke_token("owner").await);
    assert_eq!(code, ErrorCode::Conflict, "{message}");
    let revoked = pool.owner.revoke_token("alice").await.unwrap();
    assert!(revoked.revoked_at_ms.is_some());
    let (code, message) = api_error(alice.jobs(10).await);
    assert_eq!(code, ErrorCode::Unauthorized);
    assert!(message.contains("revoked"), "{message}");
    let listed = pool.owner.tokens().await.unwrap();
    let alice_row = listed.tokens.iter().find(|t| t.name == "alice").unwrap();
    assert!(alice_row.revoked_at_ms.is_some());

    // Revoking the pool's join token keeps new nodes out.
    pool.owner.revoke_token("join").await.unwrap();
    let key = SigningKey::from_bytes(&[5; 32]);
    let anonymous = Client::new(&pool.url, None).unwrap();
    let late = registration(&anonymous, &pool.join_token, &key, &key, "late").await;
    let (code, _) = api_error(anonymous.register(&late).await);
    assert_eq!(code, ErrorCode::Unauthorized);
}

/// A coordinator serving TLS on loopback; returns its data dir's files and the process.
pub struct TlsPool {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub fingerprint: Fingerprint,
    pub owner_token: String,
    _child: tokio::process::Child,
}

impl TlsPool {
    pub async fn start() -> TlsPool {
        TlsPool::start_with(&[]).await
    }

    /// A TLS coordinator started with `coordinator_args` as well.
    pub async fn start_with(coordinator_args: &[&str]) -> TlsPool {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("coordinator.log")).unwrap();
        let child = Command::new(BINARY)
            .args([
                "coordinator",
                "--listen",
                "127.0.0.1:0",
                "--tls",
                "--lease-ms",
                "3000",
            ])
            .args(coordinator_args)
            .arg("--data-dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let path = dir.path().join("coordinator.json");
        let path = &path;
        let (url, fingerprint) = eventually(
            "the TLS coordinator",
            Duration::from_secs(30),
            || async move {
                let value: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
                Some((
                    value["url"].as_str()?.to_owned(),
                    value["fingerprint"].as_str()?.parse().ok()?,
                ))
            },
        )
        .await;
        let owner_token = std::fs::read_to_string(dir.path().join("owner.token"))
            .unwrap()
            .trim()
            .to_owned();
        TlsPool {
            dir,
            url,
            fingerprint,
            owner_token,
            _child: child,
        }
    }

    pub async fn cli(&self, args: &[&str], data_dir: &Path) -> std::process::Output {
        Command::new(BINARY)
            .args(args)
            .env("CROWDCLOUD_DATA_DIR", data_dir)
            .env_remove("CROWDCLOUD_COORDINATOR")
            .env_remove("CROWDCLOUD_TOKEN")
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_with_the_wrong_fingerprint_is_refused_and_says_what_to_do() {
    let pool = TlsPool::start().await;
    assert!(pool.url.starts_with("https://"));
    let right =
        Client::pinned(&pool.url, Some(pool.owner_token.clone()), pool.fingerprint).unwrap();
    assert_eq!(right.health().await.unwrap().pool_name, "family");
    let wrong = Fingerprint([7; 32]);
    let impostor = Client::pinned(&pool.url, Some(pool.owner_token.clone()), wrong).unwrap();
    match impostor.jobs(1).await {
        Err(ClientError::WrongCertificate {
            pinned, presented, ..
        }) => {
            assert_eq!((pinned, presented), (wrong, pool.fingerprint));
        }
        other => panic!("expected a wrong certificate, got {other:?}"),
    }
    let message = impostor.health().await.unwrap_err().to_string();
    assert!(
        message.contains("impersonating") && message.contains("crowdcloud join"),
        "{message}"
    );

    // The agent refuses too, before it sends its join token anywhere.
    let agent_dir = tempfile::tempdir().unwrap();
    let output = pool
        .cli(
            &[
                "agent",
                "--coordinator",
                &pool.url,
                "--join-token",
                "ccj_00",
                "--fingerprint",
                &wrong.to_string(),
                "--data-dir",
                agent_dir.path().to_str().unwrap(),
            ],
            agent_dir.path(),
        )
        .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("not the pinned"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_code_is_refused_and_the_right_one_joins_once() {
    let pool = TlsPool::start().await;
    let device = tempfile::tempdir().unwrap();
    let code_for = |requests: bool| {
        let pool = &pool;
        async move {
            let mut args = vec!["join-code", "--json"];
            if requests {
                args.push("--requests");
            }
            let output = pool.cli(&args, pool.dir.path()).await;
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let issued: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            issued["code"].as_str().unwrap().to_owned()
        }
    };
    let code = code_for(true).await;
    let join = |code: String| {
        let pool = &pool;
        let device = device.path().to_owned();
        async move {
            pool.cli(
                &[
                    "join",
                    "--coordinator",
                    &pool.url,
                    "--code",
                    &code,
                    "--json",
                    "--name",
                    "laptop",
                ],
                &device,
            )
            .await
        }
    };
    let wrong = if code == "0000-0000" {
        "0000-0001"
    } else {
        "0000-0000"
    };
    let refused = join(wrong.to_owned()).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("does not match the code"), "{stderr}");
    assert!(
        !device.path().join("pool.json").exists(),
        "nothing remembered"
    );

    // The exchange is spaced; the right code still works (one try of five spent).
    let joined = eventually("the right code to join", Duration::from_secs(10), || {
        let join = &join;
        let code = code.clone();
        async move {
            let output = join(code).await;
            output.status.success().then_some(output)
        }
    })
    .await;
    let joined: serde_json::Value = serde_json::from_slice(&joined.stdout).unwrap();
    assert_eq!(
        joined["fingerprint"].as_str().unwrap(),
        pool.fingerprint.to_string()
    );
    assert_eq!(joined["requests"], true);
    // Requester commands on the device now work with no flags.
    let nodes = pool.cli(&["nodes", "--json"], device.path()).await;
    assert!(
        nodes.status.success(),
        "{}",
        String::from_utf8_lossy(&nodes.stderr)
    );
    // The code is used up.
    let again = join(code.clone()).await;
    assert!(String::from_utf8_lossy(&again.stderr).contains("no join code is live"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cloned_data_dir_is_refused_while_the_original_runs_and_a_restart_gets_in() {
    let pool = Pool::start(3_000).await;
    let original = pool.agent("original", 1).await;
    pool.wait_online(&["original"]).await;
    let nodes = pool.owner.nodes().await.unwrap();
    let node_id = nodes.nodes[0].node_id;

    let clone_dir = pool.dir.path().join("clone");
    std::fs::create_dir_all(&clone_dir).unwrap();
    std::fs::copy(
        original.dir.join("identity.key"),
        clone_dir.join("identity.key"),
    )
    .unwrap();
    let run_clone = |wait_secs: &'static str| {
        let pool = &pool;
        let clone_dir = clone_dir.clone();
        async move {
            Command::new(BINARY)
                .args([
                    "agent",
                    "--coordinator",
                    &pool.url,
                    "--join-token",
                    &pool.join_token,
                ])
                .arg("--data-dir")
                .arg(&clone_dir)
                .args(["--name", "clone", "--slots", "1", "--dedicated"])
                .args(["--identity-wait-secs", wait_secs])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap()
        }
    };
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        run_clone("3").await.wait_with_output(),
    )
    .await
    .expect("the clone gives up by itself")
    .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains(&format!(
            "node id {node_id} is already online from another process"
        )) && stderr.contains("delete identity.key"),
        "{stderr}"
    );
    let after = pool.owner.nodes().await.unwrap();
    assert_eq!(after.nodes.len(), 1);
    assert_eq!(
        (after.nodes[0].name.as_str(), after.nodes[0].state.clone()),
        ("original", NodeState::Online),
        "the original was not disturbed"
    );

    // The original dies; the same identity starting again gets in once it has been silent.
    let mut original = original;
    original.kill().await;
    let _restarted = run_clone("30").await;
    let owner = &pool.owner;
    eventually(
        "the restarted identity to come online",
        Duration::from_secs(30),
        || async move {
            let nodes = owner.nodes().await.ok()?;
            nodes
                .nodes
                .iter()
                .any(|n| n.node_id == node_id && n.name == "clone" && n.state == NodeState::Online)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_the_owner_removes_gives_its_work_back_and_cannot_join_again() {
    let mut pool = Pool::start(5_000).await;
    let mut stolen = pool.agent("stolen", 1).await;
    pool.wait_online(&["stolen"]).await;
    let node_id = pool
        .owner
        .nodes()
        .await
        .unwrap()
        .nodes
        .iter()
        .find(|node| node.name == "stolen")
        .unwrap()
        .node_id;
    let module = pool.upload_wasm(guests::PROBE).await;
    let job = pool
        .submit(module, vec![probe(&["sleep", "4000"])], Limits::default())
        .await;
    let owner = &pool.owner;
    eventually(
        "the task to run on the node",
        Duration::from_secs(30),
        || async move { (owner.job(job).await.ok()?.tasks.running == 1).then_some(()) },
    )
    .await;

    // Only the owner may remove a node.
    let created = pool
        .owner
        .create_token(&TokenCreateRequest {
            name: "guest".to_owned(),
            kind: ManagedTokenKind::Requester,
        })
        .await
        .unwrap();
    let guest = Client::new(&pool.url, Some(created.token)).unwrap();
    let refused = guest.remove_node(node_id).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Forbidden), "{refused}");

    // The owner removes it with the CLI.
    let output = Command::new(BINARY)
        .args(["nodes", "remove", &node_id.to_string(), "--json"])
        .env("CROWDCLOUD_COORDINATOR", &pool.url)
        .env("CROWDCLOUD_TOKEN", &pool.owner_token)
        .env("CROWDCLOUD_DATA_DIR", pool.dir.path().join("nowhere"))
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let removed: wire::NodeRemoved = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((removed.node_id, removed.attempts_requeued), (node_id, 1));
    let again = pool.owner.remove_node(node_id).await.unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::NotFound), "{again}");

    // The removed agent finds itself refused and stops, saying why.
    let status = stolen.exited(Duration::from_secs(30)).await;
    assert!(!status.success());
    assert!(
        stolen
            .log()
            .contains("was removed from this pool by its owner"),
        "{}",
        stolen.log()
    );

    // Its task runs elsewhere, without counting the removed node's attempt.
    let _spare = pool.agent("spare", 1).await;
    let finished = pool.finish(job, Duration::from_secs(60)).await;
    assert_eq!(finished.state, wire::JobState::Completed);
    let tasks = pool.owner.all_tasks(job).await.unwrap();
    assert_eq!(
        tasks[0].attempts, 1,
        "the given-back attempt does not count"
    );
    let names: Vec<String> = pool
        .owner
        .nodes()
        .await
        .unwrap()
        .nodes
        .into_iter()
        .map(|node| node.name)
        .collect();
    assert_eq!(names, vec!["spare".to_owned()]);

    // The removal outlives a restart of the coordinator.
    pool.restart_coordinator_hard().await;
    let mut back = pool.agent("stolen", 1).await;
    assert!(!back.exited(Duration::from_secs(30)).await.success());
    assert!(
        back.log()
            .contains("was removed from this pool by its owner")
    );
}
