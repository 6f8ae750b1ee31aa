//! Retention: ended jobs, their results and uploads no job uses go once `--keep-results` has
//! passed; a running job keeps what it uses however long it runs.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use wire::{BlobHash, JobState, Limits};

use crate::harness::{Pool, eventually, probe};

fn blob_file(pool: &Pool, hash: &BlobHash) -> PathBuf {
    let hex = hash.to_hex();
    pool.coordinator_dir()
        .join("blobs")
        .join(&hex[..2])
        .join(hex)
}

#[tokio::test(flavor = "multi_thread")]
async fn ended_jobs_and_unused_uploads_go_after_keep_results_while_running_jobs_keep_theirs() {
    let pool = Pool::start_with(5_000, None, &["--keep-results", "2s"]).await;
    let _agent = pool.agent("keeper", 2).await;
    pool.wait_online(&["keeper"]).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let unused = pool
        .owner
        .upload_bytes(Bytes::from_static(b"uploaded and never used"))
        .await
        .unwrap();
    assert!(blob_file(&pool, &module).exists() && blob_file(&pool, &unused).exists());

    let long = pool
        .submit(module, vec![probe(&["sleep", "9000"])], Limits::default())
        .await;
    let quick = pool
        .submit(
            module,
            vec![probe(&["write", "/output/result.bin", "1000"])],
            Limits::default(),
        )
        .await;
    assert_eq!(
        pool.finish(quick, Duration::from_secs(60)).await.state,
        JobState::Completed
    );
    let tasks = pool.owner.all_tasks(quick).await.unwrap();
    let output = tasks[0].outputs[0].hash;
    assert_eq!(pool.owner.download(&output).await.unwrap().len(), 1000);

    let owner = &pool.owner;
    eventually(
        "the ended job and its output to be deleted",
        Duration::from_secs(30),
        || async move {
            let job_gone = owner
                .job(quick)
                .await
                .is_err_and(|error| error.code() == Some(wire::ErrorCode::NotFound));
            let output_gone = owner.download(&output).await.is_err();
            (job_gone && output_gone).then_some(())
        },
    )
    .await;
    assert!(!blob_file(&pool, &output).exists());
    assert!(
        !blob_file(&pool, &unused).exists(),
        "an upload no job used is gone too"
    );
    assert_eq!(
        pool.owner.job(long).await.unwrap().state,
        JobState::Running,
        "the long job still runs"
    );
    assert!(
        blob_file(&pool, &module).exists(),
        "the module of a running job stays past the retention time"
    );

    assert_eq!(
        pool.finish(long, Duration::from_secs(60)).await.state,
        JobState::Completed
    );
    let module_file = blob_file(&pool, &module);
    let module_file = &module_file;
    eventually(
        "the module to go once no job uses it",
        Duration::from_secs(30),
        || async move { (!module_file.exists()).then_some(()) },
    )
    .await;

    // The pool goes on: the module is uploaded again and runs.
    let module = pool.upload_wasm(guests::PROBE).await;
    let again = pool
        .submit(module, vec![probe(&["echo", "again"])], Limits::default())
        .await;
    assert_eq!(
        pool.finish(again, Duration::from_secs(60)).await.state,
        JobState::Completed
    );
}

#[tokio::test]
async fn a_bad_keep_results_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    for (value, expected) in [
        ("soon", "--keep-results"),
        ("500ms", "under a second"),
        ("-3d", "--keep-results"),
    ] {
        let output = tokio::process::Command::new(crate::harness::BINARY)
            .args(["coordinator", "--listen", "127.0.0.1:0"])
            .arg(format!("--keep-results={value}"))
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "--keep-results {value} was taken");
        assert!(
            stderr.contains(expected),
            "--keep-results {value}: {stderr}"
        );
    }
    assert!(
        !dir.path().join("state.db").exists(),
        "nothing was created for a refused start"
    );
}
