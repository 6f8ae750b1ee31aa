//! Bad input gets a clear 4xx error, changes nothing, and the coordinator keeps serving.

use std::time::Duration;

use bytes::Bytes;

use client::{Client, ClientError};
use wire::{BlobHash, ErrorCode, JobId, JobSubmission, Limits, TaskSpec};

use crate::harness::{Pool, probe};

fn api_error(result: Result<impl std::fmt::Debug, ClientError>) -> (u16, ErrorCode, String) {
    match result {
        Err(ClientError::Api { status, error }) => (status, error.code, error.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn submission(module: BlobHash) -> JobSubmission {
    JobSubmission {
        name: "bad".to_owned(),
        module,
        env: Default::default(),
        mounts: vec![],
        requirements: Default::default(),
        limits: Limits::default(),
        max_attempts: 1,
        replicas: 1,
        deterministic: None,
        verify: None,
        validator: None,
        success_exit_codes: Vec::new(),
        tasks: vec![TaskSpec::default()],
        checkpoint: None,
        on_failure: None,
        private: None,
    }
}

async fn raw(
    pool: &Pool,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, String) {
    let http = reqwest::Client::new();
    let mut request = http
        .request(method, format!("{}{path}", pool.url))
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the coordinator answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let pool = Pool::start(5_000).await;
    let owner = &pool.owner;
    let good = pool.upload_wasm(guests::PROBE).await;
    let kept = owner.submit(&submission(good)).await.unwrap().job_id;
    let jobs_before = owner.jobs(100).await.unwrap();

    // A module that is not WebAssembly.
    let not_wasm = owner
        .upload_bytes(Bytes::from_static(b"#!/bin/sh\nrm -rf /\n"))
        .await
        .unwrap();
    let (status, code, message) = api_error(owner.submit(&submission(not_wasm)).await);
    assert_eq!((status, code), (400, ErrorCode::BadRequest));
    assert!(message.contains("not WebAssembly"), "{message}");

    // Bytes that start like WebAssembly but are not valid.
    let broken = owner
        .upload_bytes(Bytes::from_static(b"\0asm\x01\0\0\0\x01\x05"))
        .await
        .unwrap();
    let (status, _, message) = api_error(owner.submit(&submission(broken)).await);
    assert_eq!(status, 400);
    assert!(message.contains("not valid WebAssembly"), "{message}");

    // A module nobody uploaded.
    let (status, _, message) = api_error(
        owner
            .submit(&submission(BlobHash::of(b"never uploaded")))
            .await,
    );
    assert_eq!(status, 400);
    assert!(message.contains("not uploaded"), "{message}");

    // A spec that breaks a rule.
    let mut climbing = submission(good);
    climbing.tasks[0].inputs = vec![wire::InputFile {
        name: "../../etc/passwd".into(),
        blob: good,
    }];
    let (status, _, message) = api_error(owner.submit(&climbing).await);
    assert_eq!(status, 400);
    assert!(message.starts_with("tasks[0].inputs[0].name"), "{message}");

    // Malformed JSON and the wrong shape.
    let (status, body) = raw(
        &pool,
        reqwest::Method::POST,
        "/v1/jobs",
        Some(&pool.owner_token),
        b"{\"name\": ".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a valid request"), "{body}");
    let (status, body) = raw(
        &pool,
        reqwest::Method::POST,
        "/v1/jobs",
        Some(&pool.owner_token),
        b"{\"name\": 5}".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // An upload whose bytes do not hash to its name.
    let claimed = BlobHash::of(b"what I claim");
    let (status, code, _) = api_error(
        owner
            .put_blob(claimed, Bytes::from_static(b"what I send"))
            .await,
    );
    assert_eq!((status, code), (400, ErrorCode::HashMismatch));
    assert!(
        !owner.has_blob(&claimed).await.unwrap(),
        "nothing was stored"
    );

    // A body larger than the endpoint takes.
    let (status, body) = raw(
        &pool,
        reqwest::Method::POST,
        "/v1/nodes/register",
        None,
        vec![b' '; 17 << 20],
    )
    .await;
    assert_eq!(status, 413, "{body}");

    // Ids that are unknown or malformed.
    let (status, code, _) = api_error(owner.job(JobId(42)).await);
    assert_eq!((status, code), (404, ErrorCode::NotFound));
    let (status, body) = raw(
        &pool,
        reqwest::Method::GET,
        "/v1/jobs/42",
        Some(&pool.owner_token),
        vec![],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("job id"), "{body}");

    // Missing and wrong credentials.
    let anonymous = Client::new(&pool.url, None).unwrap();
    assert_eq!(api_error(anonymous.jobs(10).await).0, 401);
    let stranger = Client::new(&pool.url, Some("ccr_0000".to_owned())).unwrap();
    assert_eq!(api_error(stranger.job(kept).await).0, 401);
    let join_as_api = Client::new(&pool.url, Some(pool.join_token.clone())).unwrap();
    assert_eq!(api_error(join_as_api.jobs(10).await).0, 401);
    let register = wire::RegisterRequest {
        join_token: "ccj_wrong".to_owned(),
        public_key: "00".repeat(32),
        signature: "00".repeat(64),
        nonce: "00".repeat(32),
        name: "intruder".to_owned(),
        capabilities: Default::default(),
        labels: Default::default(),
        slots: 1,
        agent_version: "x".to_owned(),
    };
    let (status, _, message) = api_error(anonymous.register(&register).await);
    assert_eq!(status, 401);
    assert!(message.contains("join token"), "{message}");
    let mut forged = register.clone();
    forged.join_token = pool.join_token.clone();
    forged.nonce = anonymous.challenge(&pool.join_token).await.unwrap().nonce;
    assert_eq!(
        api_error(anonymous.register(&forged).await).0,
        400,
        "a bad signature is refused"
    );

    // Nothing changed, and the coordinator still serves.
    assert_eq!(owner.health().await.unwrap().service, "crowdcloud");
    let jobs_after = owner.jobs(100).await.unwrap();
    assert_eq!(
        jobs_after.jobs.iter().map(|j| j.job_id).collect::<Vec<_>>(),
        jobs_before
            .jobs
            .iter()
            .map(|j| j.job_id)
            .collect::<Vec<_>>()
    );
    assert!(
        owner.nodes().await.unwrap().nodes.is_empty(),
        "no node joined"
    );
    let _agent = pool.agent("after", 1).await;
    let job = pool
        .submit(
            good,
            vec![probe(&["echo", "still fine"])],
            Limits::default(),
        )
        .await;
    assert_eq!(
        pool.finish(job, Duration::from_secs(60)).await.state,
        wire::JobState::Completed
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn another_requesters_blobs_and_jobs_are_out_of_reach() {
    let pool = Pool::start(5_000).await;
    let secret = pool
        .owner
        .upload_bytes(Bytes::from_static(b"the owner's data"))
        .await
        .unwrap();
    // A node token is not an API token, and a node holding nothing may read nothing.
    let anonymous = Client::new(&pool.url, None).unwrap();
    let key_seed = [3u8; 32];
    let key = ed25519_dalek::SigningKey::from_bytes(&key_seed);
    let mut request = wire::RegisterRequest {
        join_token: pool.join_token.clone(),
        public_key: hex::encode(key.verifying_key().to_bytes()),
        signature: String::new(),
        nonce: anonymous.challenge(&pool.join_token).await.unwrap().nonce,
        name: "curious".to_owned(),
        capabilities: Default::default(),
        labels: Default::default(),
        slots: 1,
        agent_version: "x".to_owned(),
    };
    use ed25519_dalek::Signer;
    let message = wire::auth::registration_message(&request);
    request.signature = hex::encode(key.sign(&message).to_bytes());
    let registered = anonymous.register(&request).await.unwrap();
    let node = anonymous.with_token(registered.node_token);
    let (status, _, _) = api_error(node.download(&secret).await);
    assert_eq!(
        status, 404,
        "a node may read only the blobs of attempts it holds"
    );
    assert_eq!(
        api_error(node.jobs(10).await).0,
        401,
        "a node token is not an API token"
    );
    let (status, code, _) = api_error(
        node.put_blob(BlobHash::of(b"x"), Bytes::from_static(b"x"))
            .await,
    );
    assert_eq!(
        (status, code),
        (400, ErrorCode::BadRequest),
        "a node names the attempt it uploads for"
    );
    let (status, code, _) = api_error(
        node.put_output(
            wire::AttemptId(7),
            BlobHash::of(b"x"),
            Bytes::from_static(b"x"),
        )
        .await,
    );
    assert_eq!(
        (status, code),
        (403, ErrorCode::Forbidden),
        "a node holding nothing uploads nothing"
    );
}
