//! A pool whose blobs live in an S3 bucket: modules, inputs and outputs go through the bucket,
//! the results are there after a hard restart, and nothing is written to the data dir's blob
//! directory; and a bucket that does not exist stops the coordinator at its start, saying so.
//! `scripts/test` starts an S3 server (SeaweedFS) and requires this to run.

use std::time::Duration;

use bytes::Bytes;
use wire::{InputFile, JobState, Limits, TaskState};

use crate::harness::{BINARY, Pool, probe, s3_env};

/// A prefix of its own in the bucket `scripts/seaweedfs` made, or `None` outside the test
/// script.
// The clock only makes a prefix no other run uses.
#[allow(clippy::disallowed_methods)]
fn fresh_location() -> Option<String> {
    if std::env::var_os("CROWDCLOUD_TEST_S3_ENDPOINT").is_none() {
        assert!(
            std::env::var_os("CROWDCLOUD_REQUIRE_S3").is_none(),
            "CROWDCLOUD_TEST_S3_ENDPOINT is not set: scripts/test starts an S3 server with \
             scripts/seaweedfs, and says above if it could not"
        );
        eprintln!("skipped: no S3 server (CROWDCLOUD_TEST_S3_ENDPOINT); scripts/test starts one");
        return None;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    Some(format!(
        "s3://crowdcloud-test/e2e-{}-{nanos}",
        std::process::id()
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_with_its_blobs_in_s3_runs_jobs_and_keeps_their_results_across_a_restart() {
    let Some(location) = fresh_location() else {
        return;
    };
    let mut pool = Pool::start_with(4_000, None, &["--blobs", &location]).await;
    let _agent = pool.agent("node", 2).await;
    pool.wait_online(&["node"]).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let text = Bytes::from_static(b"kept in a bucket\n");
    let input = pool.owner.upload_bytes(text.clone()).await.unwrap();
    // Copies each input to /output, reversed.
    let mut task = probe(&["copy-inputs"]);
    task.inputs = vec![InputFile {
        name: "note.txt".to_owned(),
        blob: input,
    }];
    let job = pool.submit(module, vec![task], Limits::default()).await;
    let ended = pool.finish(job, Duration::from_secs(60)).await;
    assert_eq!(ended.state, JobState::Completed, "{ended:?}");

    pool.kill_coordinator().await;
    pool.start_coordinator_again().await;
    let task = pool.owner.all_tasks(job).await.unwrap().remove(0);
    assert_eq!(task.state, TaskState::Succeeded, "{task:?}");
    let output = task
        .outputs
        .iter()
        .find(|output| output.path == "note.txt")
        .expect("the input was copied to /output");
    let read = pool.owner.download(&output.hash).await.unwrap();
    // The probe copies each input reversed, so the output is the guest's work.
    let reversed: Vec<u8> = text.iter().rev().copied().collect();
    assert_eq!(
        read, reversed,
        "the output, read back from the bucket after a restart"
    );
    let blob_dir = pool.coordinator_dir().join("blobs");
    let local_files = std::fs::read_dir(&blob_dir).map_or(0, |dir| dir.count());
    assert_eq!(local_files, 0, "no blob in {}", blob_dir.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_whose_bucket_does_not_exist_refuses_to_start_and_says_why() {
    let Some(location) = fresh_location() else {
        return;
    };
    let missing = location.replace("crowdcloud-test", "crowdcloud-missing");
    let dir = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(BINARY)
        .args([
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--blobs",
            &missing,
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .envs(s3_env())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the coordinator stops at once")
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("the blob store does not answer") && said.contains("NoSuchBucket"),
        "{said}"
    );
}
