//! The coordinator's serving edge under abuse from the network: a flood of half-sent requests
//! past the connection cap.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use wire::{JobState, Limits};

use crate::harness::{Pool, probe};

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
    let mut half_sent = Vec::with_capacity(HALF_SENT);
    for _ in 0..HALF_SENT {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(b"PUT /v1/blobs/x HTTP/1.1\r\nHost: coordinator\r\nContent-Le")
            .await
            .unwrap();
        half_sent.push(stream);
    }

    // With all of them open, a requester uploads and submits, and the node leases, heartbeats
    // and reports.
    let module = pool.upload_wasm(guests::PROBE).await;
    let job = pool
        .submit(module, vec![probe(&["echo", "through"])], Limits::default())
        .await;
    let status = pool.finish(job, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");

    // Every half-sent request is closed by the coordinator, none left hanging.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (index, mut stream) in half_sent.into_iter().enumerate() {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout_at(deadline.into(), stream.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "half-sent request {index} is still open: {read:?}"
        );
    }
}
