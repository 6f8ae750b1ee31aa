//! The coordinator's serving edge under abuse from the network: floods of half-sent requests
//! and stalled TLS handshakes past the connection cap, and a flood of join exchanges from one
//! host.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use wire::{JobState, Limits};

use crate::harness::{Pool, probe};
use crate::trust::TlsPool;

/// Half-sent requests opened at once: several times the cap the coordinator is given.
const HALF_SENT: usize = 300;

#[tokio::test(flavor = "multi_thread")]
async fn half_sent_requests_are_closed_and_keep_neither_nodes_nor_uploads_out() {
    let pool = Pool::start_with(
        3_000,
        None,
        &["--connections-max", "64", "--header-timeout-ms", "2000"],
    )
    .await;
    let _agent = pool.agent("worker", 1).await;
    pool.wait_online(&["worker"]).await;

    // Requests with no credentials that never finish their headers, as slowloris sends them.
    let address = format!("127.0.0.1:{}", pool.port);
    let half_sent = open_half_sent(
        &address,
        b"PUT /v1/blobs/x HTTP/1.1\r\nHost: coordinator\r\nContent-Le",
    )
    .await;

    // With all of them open, a requester uploads and submits, and the node leases, heartbeats
    // and reports.
    let module = pool.upload_wasm(guests::PROBE).await;
    let job = pool
        .submit(module, vec![probe(&["echo", "through"])], Limits::default())
        .await;
    let status = pool.finish(job, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");

    assert_all_closed(half_sent).await;
}

/// [`HALF_SENT`] connections to `address` that each send `bytes` and nothing more.
async fn open_half_sent(address: &str, bytes: &[u8]) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(HALF_SENT);
    for _ in 0..HALF_SENT {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        streams.push(stream);
    }
    streams
}

/// Every stream is closed by the coordinator, none left hanging.
async fn assert_all_closed(streams: Vec<TcpStream>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for (index, mut stream) in streams.into_iter().enumerate() {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout_at(deadline.into(), stream.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "connection {index} is still open: {read:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_tls_handshakes_are_closed_and_do_not_keep_the_owner_out() {
    let pool =
        TlsPool::start_with(&["--connections-max", "32", "--header-timeout-ms", "1000"]).await;
    let (url, fingerprint) = (&pool.url, pool.fingerprint);
    let owner = client::Client::pinned(url, Some(pool.owner_token.clone()), fingerprint).unwrap();

    // Handshakes that stop a few bytes into the client's hello.
    let stalled = open_half_sent(url.trim_start_matches("https://"), &[0x16, 0x03, 0x01]).await;
    // Under load the owner's handshake may land while the coordinator sheds the stalled ones
    // to make room, and be closed with them: it gets in on a retry, within the deadline.
    let tokens = crate::harness::eventually(
        "the owner to get in past the stalled handshakes",
        Duration::from_secs(20),
        || async { owner.tokens().await.ok() },
    )
    .await;
    assert!(!tokens.tokens.is_empty());
    assert_all_closed(stalled).await;
}

/// A client that starts join exchanges from `127.0.0.2`, another host as far as the coordinator
/// can tell, and trusts whatever certificate it is shown.
fn flood_client() -> reqwest::Client {
    // The TLS provider of this process, as the pool's own client installs it.
    let _ = client::Client::new("http://127.0.0.1:1", None);
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .tls_danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

/// One flood round: a start with a wrong code, finished with its (wrong) confirmation when the
/// coordinator lets it start, and a malformed start.
async fn flood_round(flood: &reqwest::Client, url: &str, fingerprint: &wire::Fingerprint) {
    let guess = pairing::Joiner::start("0000-0000", fingerprint, [7; 32]).unwrap();
    let started = flood
        .post(format!("{url}/v1/join/start"))
        .json(&serde_json::json!({"device_name": "flood", "message": hex::encode(guess.message())}))
        .send()
        .await
        .unwrap();
    if started.status().is_success() {
        let started: serde_json::Value = started.json().await.unwrap();
        let session = started["session"].as_str().unwrap();
        let message = hex::decode(started["message"].as_str().unwrap()).unwrap();
        let keys = guess.confirm(session, &message).unwrap();
        let finished = flood
            .post(format!("{url}/v1/join/finish"))
            .json(&serde_json::json!({"session": session, "confirmation": hex::encode(keys.confirmation())}))
            .send()
            .await
            .unwrap();
        assert!(!finished.status().is_success(), "a wrong guess is refused");
    }
    let malformed = flood
        .post(format!("{url}/v1/join/start"))
        .json(&serde_json::json!({"device_name": "flood", "message": hex::encode([0u8; 33])}))
        .send()
        .await
        .unwrap();
    assert!(!malformed.status().is_success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_join_exchanges_from_one_host_does_not_keep_another_from_joining() {
    let pool = TlsPool::start().await;
    let issued = pool.cli(&["join-code", "--json"], pool.dir.path()).await;
    assert!(issued.status.success());
    let issued: serde_json::Value = serde_json::from_slice(&issued.stdout).unwrap();
    let code = issued["code"].as_str().unwrap().to_owned();

    // For a few seconds one host starts exchanges as fast as it is answered: wrong guesses,
    // abandoned and malformed starts.
    let flood = flood_client();
    let flooding = Instant::now();
    let mut rounds = 0;
    while flooding.elapsed() < Duration::from_secs(3) {
        flood_round(&flood, &pool.url, &pool.fingerprint).await;
        rounds += 1;
    }
    assert!(rounds > 10, "the flood ran {rounds} rounds");

    // The owner's device on another host still joins with the code, at its first try.
    let device = tempfile::tempdir().unwrap();
    let joined = pool
        .cli(
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
            device.path(),
        )
        .await;
    assert!(
        joined.status.success(),
        "{}",
        String::from_utf8_lossy(&joined.stderr)
    );
}
