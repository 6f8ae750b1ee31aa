//! Registration on loopback: a captured registration cannot be replayed, neither as it was nor
//! with other labels or capabilities, and one join token brings only so many nodes.

use std::collections::BTreeMap;
use std::time::Duration;

use ed25519_dalek::SigningKey;

use client::{Client, ClientError};
use wire::{ErrorCode, HeartbeatRequest, NodeActivity, NodeState, RegisterRequest};

use crate::harness::{Pool, eventually, signed_registration};

/// A registration of `key` over a fresh nonce, signed.
async fn signed(client: &Client, join_token: &str, key: &SigningKey) -> RegisterRequest {
    let challenge = client.challenge(join_token).await.unwrap();
    let labels = BTreeMap::from([("region".to_owned(), "eu".to_owned())]);
    signed_registration(join_token, challenge.nonce, (key, key), "victim", 1, labels)
}

fn api_error<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (ErrorCode, String) {
    match result {
        Err(ClientError::Api { error, .. }) => (error.code, error.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_captured_registration_replayed_is_refused_even_after_the_node_went_silent() {
    let pool = Pool::start(600).await;
    let anonymous = Client::new(&pool.url, None).unwrap();
    let key = SigningKey::from_bytes(&[21; 32]);
    let captured = signed(&anonymous, &pool.join_token, &key).await;
    let registered = anonymous.register(&captured).await.unwrap();
    let victim = anonymous.with_token(registered.node_token);

    let (code, message) = api_error(anonymous.register(&captured).await);
    assert_eq!(code, ErrorCode::Unauthorized, "{message}");
    assert!(message.contains("nonce"), "{message}");

    // Once the node has been silent for a while its identity may register from a new process,
    // but only with a registration signed now, by its key.
    eventually(
        "the node to go offline",
        Duration::from_secs(20),
        || async {
            let nodes = pool.owner.nodes().await.ok()?.nodes;
            (nodes[0].state == NodeState::Offline).then_some(())
        },
    )
    .await;
    let (code, message) = api_error(anonymous.register(&captured).await);
    assert_eq!(code, ErrorCode::Unauthorized, "{message}");
    assert!(message.contains("already used"), "{message}");

    // Other labels and capabilities break the signature, over the old nonce or a fresh one.
    let mut changed = captured.clone();
    changed.labels.insert("gpu".to_owned(), "yes".to_owned());
    changed.capabilities.cores = 64;
    let (code, message) = api_error(anonymous.register(&changed).await);
    assert_eq!(code, ErrorCode::BadRequest, "{message}");
    changed.nonce = anonymous.challenge(&pool.join_token).await.unwrap().nonce;
    let (code, message) = api_error(anonymous.register(&changed).await);
    assert_eq!(code, ErrorCode::BadRequest, "{message}");
    assert!(message.contains("signature does not verify"), "{message}");

    // The node is as it registered, and its own token still works: no new one was made.
    let nodes = pool.owner.nodes().await.unwrap().nodes;
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].labels, captured.labels);
    assert_eq!(nodes[0].capabilities.cores, 1);
    victim
        .heartbeat(&HeartbeatRequest {
            running: vec![],
            slots_free: 1,
            activity: NodeActivity::Active,
            capabilities: None,
            forgotten: Vec::new(),
            copied: Vec::new(),
            kept: Vec::new(),
            dropped: Vec::new(),
        })
        .await
        .expect("the node's own token still works");
}

#[tokio::test(flavor = "multi_thread")]
async fn registering_past_the_join_tokens_bound_is_refused_with_a_clear_message() {
    let pool = Pool::start_with(5_000, None, &["--nodes-per-join-token", "2"]).await;
    let anonymous = Client::new(&pool.url, None).unwrap();
    for seed in [31, 32] {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let request = signed(&anonymous, &pool.join_token, &key).await;
        anonymous.register(&request).await.unwrap();
    }
    let key = SigningKey::from_bytes(&[33; 32]);
    let request = signed(&anonymous, &pool.join_token, &key).await;
    let (code, message) = api_error(anonymous.register(&request).await);
    assert_eq!(code, ErrorCode::Forbidden, "{message}");
    assert!(
        message.contains("join token has already brought 2 nodes")
            && message.contains("--nodes-per-join-token"),
        "{message}"
    );
    assert_eq!(pool.owner.nodes().await.unwrap().nodes.len(), 2);
}
