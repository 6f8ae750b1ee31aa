//! What requesters can make the coordinator hold is bounded in bytes: the memory of unfinished
//! jobs, the disk of uploads, and the memory of checking a module however many submissions
//! name it at once.

use bytes::Bytes;

use client::ClientError;
use wire::{BlobHash, ErrorCode, JobSubmission, Limits, TaskSpec};

use crate::harness::Pool;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

fn api_error(result: Result<impl std::fmt::Debug, ClientError>) -> (u16, ErrorCode, String) {
    match result {
        Err(ClientError::Api { status, error }) => (status, error.code, error.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn submission(module: BlobHash, tasks: Vec<TaskSpec>) -> JobSubmission {
    JobSubmission {
        name: "bounded".to_owned(),
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
        tasks,
        checkpoint: None,
        on_failure: None,
        private: None,
    }
}

/// `tasks` tasks with `args_kib` KiB of arguments each, in 4 KiB arguments.
fn args_heavy(tasks: usize, args_kib: usize) -> Vec<TaskSpec> {
    let task = TaskSpec {
        args: vec!["a".repeat(4 * KIB); args_kib / 4],
        ..TaskSpec::default()
    };
    vec![task; tasks]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_submission_past_the_memory_bound_is_refused_and_changes_nothing() {
    let pool = Pool::start_with(5_000, None, &["--unfinished-bytes-per-requester", "1MiB"]).await;
    let owner = &pool.owner;
    let module = pool.upload_wasm(guests::PROBE).await;

    // 8 tasks are far below the bound on tasks, but their 1.6 MiB of args are not.
    let (status, code, message) =
        api_error(owner.submit(&submission(module, args_heavy(8, 200))).await);
    assert_eq!(
        (status, code),
        (429, ErrorCode::TooManyRequests),
        "{message}"
    );
    assert!(
        message.contains("a requester may hold 1.0 MiB"),
        "{message}"
    );
    assert!(
        owner.jobs(100).await.unwrap().jobs.is_empty(),
        "the refused job was not stored"
    );

    // What fits is taken, and counts against what comes next.
    let first = owner
        .submit(&submission(module, args_heavy(3, 200)))
        .await
        .expect("600 KiB of args fit")
        .job_id;
    let (status, _, message) =
        api_error(owner.submit(&submission(module, args_heavy(3, 200))).await);
    assert_eq!(status, 429, "{message}");

    // A job that ends gives its bytes back.
    owner.cancel(first).await.unwrap();
    owner
        .submit(&submission(module, args_heavy(3, 200)))
        .await
        .expect("the cancelled job's bytes were released");
    assert_eq!(owner.jobs(100).await.unwrap().jobs.len(), 2);
}

/// `bytes` bytes that differ by `seed`.
fn filled(bytes: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..bytes)
            .map(|index| (index as u8).wrapping_mul(31) ^ seed)
            .collect::<Vec<u8>>(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_past_the_storage_quota_is_refused_before_it_is_stored() {
    let pool = Pool::start_with(5_000, None, &["--upload-quota", "1MiB"]).await;
    let owner = &pool.owner;
    owner
        .upload_bytes(filled(600 * KIB, 1))
        .await
        .expect("600 KiB fit in 1 MiB");

    // With a Content-Length, it is refused before its bytes are read.
    let second = filled(600 * KIB, 2);
    let hash = BlobHash::of(&second);
    let (status, code, message) = api_error(owner.put_blob(hash, second.clone()).await);
    assert_eq!(
        (status, code),
        (413, ErrorCode::PayloadTooLarge),
        "{message}"
    );
    assert!(message.contains("storage quota of 1.0 MiB"), "{message}");
    assert!(!owner.has_blob(&hash).await.unwrap(), "nothing was stored");

    // Streamed without a length, it is refused once it passes the room left.
    let chunks: Vec<Result<Bytes, std::io::Error>> = second
        .chunks(64 * KIB)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    let streamed = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    match owner.put_blob(hash, streamed).await {
        Err(ClientError::Api { status, error }) => {
            assert_eq!(status, 413, "{}", error.message);
            assert!(error.message.contains("storage quota"), "{}", error.message);
        }
        // The coordinator may close the connection before the client finished sending.
        Err(ClientError::Unreachable { .. }) => {}
        other => panic!("expected the upload to be refused, got {other:?}"),
    }
    assert!(!owner.has_blob(&hash).await.unwrap(), "nothing was stored");

    // What fits still goes in.
    owner
        .upload_bytes(filled(300 * KIB, 3))
        .await
        .expect("300 KiB fit in what is left");
}

/// A figure of `/proc/<pid>/status` such as `VmHWM` (the peak of resident memory), in bytes.
fn memory_bytes(pid: u32, figure: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc is readable");
    let line = status
        .lines()
        .find(|line| line.starts_with(figure))
        .unwrap_or_else(|| panic!("a {figure} line"));
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|value| value.parse().ok())
        .expect("a figure in kB");
    kib * KIB
}

/// Resets the process's peak of resident memory to what it holds now, and returns that.
fn reset_peak_memory(pid: u32) -> usize {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("resetting VmHWM");
    memory_bytes(pid, "VmRSS:")
}

/// A module of `size` bytes that is invalid only at its very end: a large custom section, then
/// a section of an unknown kind.
fn invalid_at_the_end(size: usize) -> Bytes {
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    let contents = size - bytes.len() - 5 - 2;
    bytes.push(0);
    let mut value = contents as u32;
    for _ in 0..4 {
        bytes.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    let last = bytes.len() - 1;
    bytes[last] &= 0x7f;
    assert_eq!(value, 0, "the size fits 4 LEB128 bytes");
    bytes.push(3);
    bytes.extend_from_slice(b"big");
    bytes.resize(bytes.len() + contents - 4, 0);
    bytes.extend_from_slice(&[0x7f, 0x00]);
    assert_eq!(bytes.len(), size);
    Bytes::from(bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_submissions_of_a_large_invalid_module_are_refused_in_bounded_memory() {
    let pool = Pool::start(5_000).await;
    let owner = &pool.owner;
    let module_bytes = 64 * MIB;
    let module = owner
        .upload_bytes(invalid_at_the_end(module_bytes))
        .await
        .unwrap();
    let pid = pool.coordinator_pid();
    let before = reset_peak_memory(pid);

    let job = submission(module, vec![TaskSpec::default()]);
    let submissions = (0..8).map(|_| owner.submit(&job));
    for result in futures::future::join_all(submissions).await {
        let (status, _, message) = api_error(result);
        assert_eq!(status, 400, "{message}");
        assert!(message.contains("not valid WebAssembly"), "{message}");
    }
    let growth = memory_bytes(pid, "VmHWM:").saturating_sub(before);
    // Read whole once per submission, the module took 8 times its size; streamed once, the
    // coordinator holds a chunk of it at a time, far below one copy.
    assert!(
        growth < module_bytes / 4,
        "the coordinator's peak memory grew by {} MiB checking a {} MiB module",
        growth / MIB,
        module_bytes / MIB
    );
    assert!(owner.jobs(100).await.unwrap().jobs.is_empty());
    assert_eq!(owner.health().await.unwrap().service, "crowdcloud");
}
