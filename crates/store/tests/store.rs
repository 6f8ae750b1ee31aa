//! The store against a real SQLite database: what is written is what a restart loads.

use store::{
    AttemptEnd, AttemptEndState, AttemptRow, Durability, JobRow, NodeRow, RequesterRow, Store,
    TaskEnd, TokenRole, TokenRow, Write,
};
use wire::{
    AttemptId, BlobHash, BlobRef, JobId, JobState, JobSubmission, NodeId, Outcome, RequesterId,
    TaskSpec, TaskState, Usage,
};

async fn open(url: &str) -> Store {
    Store::open(url, Durability::Full).await.unwrap()
}

/// The databases every test runs against: SQLite always, and PostgreSQL when the test script
/// started a server (`CROWDCLOUD_TEST_POSTGRES_URL`, an admin URL), each test in a database of
/// its own. `scripts/test` sets `CROWDCLOUD_REQUIRE_POSTGRES` so the PostgreSQL side cannot be
/// skipped there by accident.
async fn databases(dir: &tempfile::TempDir) -> Vec<String> {
    let mut urls = vec![format!(
        "sqlite://{}",
        dir.path().join("state.db").display()
    )];
    match std::env::var("CROWDCLOUD_TEST_POSTGRES_URL") {
        Ok(admin) => urls.push(fresh_postgres_database(&admin).await),
        Err(_) => assert!(
            std::env::var_os("CROWDCLOUD_REQUIRE_POSTGRES").is_none(),
            "CROWDCLOUD_TEST_POSTGRES_URL is not set; run the tests through scripts/test, which starts a PostgreSQL server"
        ),
    }
    urls
}

// The clock only makes a database name no other run uses.
#[allow(clippy::disallowed_methods)]
async fn fresh_postgres_database(admin: &str) -> String {
    use sqlx::{Connection, Executor};
    sqlx::any::install_default_drivers();
    let name = format!(
        "store_test_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut connection = sqlx::AnyConnection::connect(admin).await.unwrap();
    connection
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

fn job(id: JobId, tasks: u32) -> (JobRow, Vec<TaskSpec>) {
    let spec = JobSubmission {
        name: "demo".to_owned(),
        module: BlobHash::of(b"module"),
        env: Default::default(),
        mounts: vec![],
        requirements: Default::default(),
        limits: Default::default(),
        max_attempts: 3,
        replicas: 1,
        deterministic: None,
        verify: None,
        validator: None,
        success_exit_codes: Vec::new(),
        tasks: vec![],
        checkpoint: None,
        on_failure: None,
        private: None,
    };
    let tasks = (0..tasks)
        .map(|i| TaskSpec {
            args: vec![format!("{i}")],
            ..TaskSpec::default()
        })
        .collect();
    (
        JobRow {
            id,
            requester_id: RequesterId(1),
            spec,
            task_count: 5,
            state: JobState::Running,
            submitted_seq: 1,
            created_at_ms: 10,
            finished_at_ms: None,
            module_bytes: 2 << 20,
            component: true,
            wasm_features: vec!["exceptions".to_owned(), "simd".to_owned()],
            aborted: None,
            keys_granted: None,
        },
        tasks,
    )
}

#[tokio::test]
async fn a_reopened_store_loads_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        reopened_store_loads_what_was_committed(&url).await;
    }
}

async fn reopened_store_loads_what_was_committed(url: &str) {
    let store = open(url).await;
    let job_id = JobId(u64::MAX - 7);
    let node_id = NodeId(42);
    let (job_row, tasks) = job(job_id, 5);
    store
        .write(vec![
            Write::InsertRequester(RequesterRow {
                id: RequesterId(1),
                name: "owner".to_owned(),
                created_at_ms: 1,
            }),
            Write::InsertToken(TokenRow {
                hash: "h".to_owned(),
                role: TokenRole::Requester(RequesterId(1)),
                name: "owner".to_owned(),
                created_at_ms: 1,
                revoked_at_ms: None,
            }),
            Write::UpsertNode(NodeRow {
                labels: [("region".to_owned(), "eu".to_owned())].into(),
                ..node_row(node_id.0, Some("jh"))
            }),
            Write::InsertJob {
                job: Box::new(job_row),
                tasks,
            },
        ])
        .await
        .unwrap();
    let attempts: Vec<AttemptRow> = (0..3)
        .map(|i| AttemptRow {
            id: AttemptId(100 + i),
            job_id,
            task_index: i as u32,
            node_id,
            granted_at_ms: 20,
        })
        .collect();
    let grant = store.enqueue(vec![Write::GrantAttempts(attempts)]);
    let stdout = BlobRef {
        hash: BlobHash::of(b"out"),
        size_bytes: 3,
    };
    store
        .write(vec![Write::EndAttempts(vec![
            AttemptEnd {
                ran_on: Some("pool b/laptop".to_owned()),
                state: AttemptEndState::Succeeded,
                outcome: Some(Outcome::Succeeded),
                usage: Some(Usage {
                    fuel_used: 1234,
                    wall_ms: 5,
                    memory_peak_bytes: 65536,
                    ..Usage::default()
                }),
                stdout: Some(stdout),
                task_end: Some(TaskEnd {
                    state: TaskState::Succeeded,
                    outcome: Outcome::Succeeded,
                }),
                ..unreported(AttemptId(100), job_id, 0, 30)
            },
            unreported(AttemptId(101), job_id, 1, 30),
        ])])
        .await
        .unwrap();
    grant.wait().await.unwrap();
    assert_eq!(store.queued(), 0);
    store.close().await;

    let store = open(url).await;
    let image = store.load().await.unwrap();
    assert_eq!(image.requesters.len(), 1);
    assert_eq!(image.tokens[0].role, TokenRole::Requester(RequesterId(1)));
    assert_eq!(image.nodes[0].labels["region"], "eu");
    assert_eq!(image.nodes[0].network.as_deref(), Some("203.0.113.0/24"));
    assert_eq!(image.jobs[0].id, job_id);
    assert_eq!(image.open_tasks.len(), 5);
    let task = |i: u32| image.open_tasks.iter().find(|t| t.index == i).unwrap();
    assert_eq!(task(0).state, TaskState::Succeeded);
    assert_eq!(task(0).spec, None);
    assert_eq!(task(1).state, TaskState::Pending);
    assert_eq!(task(1).attempts, 1, "an expired attempt counts");
    assert_eq!(task(1).spec.as_ref().unwrap().args, ["1"]);
    assert_eq!(image.live_attempts.len(), 1);
    assert_eq!(image.live_attempts[0].id, AttemptId(102));
    assert_eq!(image.job_usage, vec![(job_id, 3, 1234)]);
    assert_eq!(image.node_shares, vec![(job_id, node_id, 1)]);

    let page = store.task_page(job_id, 0, 10).await.unwrap();
    assert_eq!(page.len(), 5);
    assert_eq!(page[0].stdout, Some(stdout));
    assert_eq!(page[0].usage.unwrap().fuel_used, 1234);
    assert_eq!(page[0].node_id, Some(node_id));
    assert_eq!(page[0].ran_on.as_deref(), Some("pool b/laptop"));
    assert_eq!(page[1].ran_on, None);
    assert_eq!(page[2].state, TaskState::Running);
    assert_eq!(page[2].attempt_id, Some(AttemptId(102)));
    assert_eq!(page[3].state, TaskState::Pending);

    store.write(vec![cancelled(job_id, 40)]).await.unwrap();
    let image = store.load().await.unwrap();
    assert_eq!(image.jobs[0].state, JobState::Cancelled);
    assert!(image.live_attempts.is_empty());
    assert!(image.open_tasks.is_empty(), "a cancelled job is not open");
}

/// The end of an attempt that reported nothing (an expiry), for tests to build on.
fn unreported(attempt_id: AttemptId, job_id: JobId, task_index: u32, at_ms: u64) -> AttemptEnd {
    AttemptEnd {
        attempt_id,
        job_id,
        task_index,
        state: AttemptEndState::Expired,
        at_ms,
        outcome: None,
        usage: None,
        stdout: None,
        stderr: None,
        outputs: vec![],
        ran_on: None,
        task_end: None,
    }
}

#[tokio::test]
async fn blobs_are_readable_only_by_their_readers() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        blob_readers_on(&url).await;
    }
}

async fn blob_readers_on(url: &str) {
    let store = open(url).await;
    let hash = BlobHash::of(b"data");
    store
        .write(vec![Write::InsertBlob {
            hash,
            size_bytes: 4,
            at_ms: 1,
            reader: Some(RequesterId(1)),
        }])
        .await
        .unwrap();
    assert_eq!(
        store.readable_blob(&hash, RequesterId(1)).await.unwrap(),
        Some(4)
    );
    assert_eq!(
        store.readable_blob(&hash, RequesterId(2)).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .unreadable_blobs(&[hash, BlobHash::of(b"x")], RequesterId(1))
            .await
            .unwrap(),
        vec![BlobHash::of(b"x")]
    );
}

#[tokio::test]
async fn a_nodes_join_token_and_when_it_was_heard_from_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        node_admission_on(&url).await;
    }
}

/// A node registered at 5 ms from 203.0.113.0/24 with the join token of `join_token_hash`.
fn node_row(id: u64, join_token_hash: Option<&str>) -> NodeRow {
    NodeRow {
        id: NodeId(id),
        public_key: format!("pk{id}"),
        token_hash: format!("nh{id}"),
        name: format!("box{id}"),
        capabilities: Default::default(),
        labels: Default::default(),
        slots: 1,
        agent_version: "1".to_owned(),
        join_token_hash: join_token_hash.map(str::to_owned),
        network: Some("203.0.113.0/24".to_owned()),
        seen_at_ms: 5,
        registered_at_ms: 5,
    }
}

async fn node_admission_on(url: &str) {
    let store = open(url).await;
    store
        .write(vec![
            Write::UpsertNode(node_row(1, Some("jh"))),
            Write::UpsertNode(node_row(2, None)),
            Write::UpsertNode(node_row(3, Some("jh"))),
            Write::SetNodesSeen(vec![(NodeId(1), 900)]),
            Write::DeleteNode { node_id: NodeId(3) },
        ])
        .await
        .unwrap();
    store.close().await;

    let mut nodes = open(url).await.load().await.unwrap().nodes;
    nodes.sort_by_key(|node| node.id);
    let seen: Vec<(NodeId, Option<&str>, u64)> = nodes
        .iter()
        .map(|node| (node.id, node.join_token_hash.as_deref(), node.seen_at_ms))
        .collect();
    assert_eq!(
        seen,
        vec![(NodeId(1), Some("jh"), 900), (NodeId(2), None, 5)]
    );
}

#[tokio::test]
async fn a_url_of_another_kind_is_refused_with_a_clear_error() {
    let error = Store::open("mysql://x", Durability::Full)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("sqlite: or postgres:"),
        "{error}"
    );
}

#[tokio::test]
async fn many_attempts_ended_in_one_write_all_land() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        many_attempts_ended_on(&url).await;
    }
}

async fn many_attempts_ended_on(url: &str) {
    let store = open(url).await;
    let job_id = JobId(9);
    let (mut job_row, tasks) = job(job_id, 150);
    job_row.task_count = 150;
    store
        .write(vec![Write::InsertJob {
            job: Box::new(job_row),
            tasks,
        }])
        .await
        .unwrap();
    let grants: Vec<AttemptRow> = (0..150)
        .map(|i| AttemptRow {
            id: AttemptId(1000 + i),
            job_id,
            task_index: i as u32,
            node_id: NodeId(1),
            granted_at_ms: 5,
        })
        .collect();
    let ends: Vec<AttemptEnd> = (0..150u64)
        .map(|i| AttemptEnd {
            state: if i % 3 == 0 {
                AttemptEndState::Expired
            } else {
                AttemptEndState::Succeeded
            },
            outcome: (i % 3 != 0).then_some(Outcome::Succeeded),
            usage: (i % 3 != 0).then_some(Usage {
                fuel_used: i,
                compile_ms: 2 * i,
                ..Usage::default()
            }),
            task_end: (i % 3 != 0).then_some(TaskEnd {
                state: TaskState::Succeeded,
                outcome: Outcome::Succeeded,
            }),
            ..unreported(AttemptId(1000 + i), job_id, i as u32, 10 + i)
        })
        .collect();
    store
        .write(vec![Write::GrantAttempts(grants), Write::EndAttempts(ends)])
        .await
        .unwrap();
    let image = store.load().await.unwrap();
    let succeeded = image
        .open_tasks
        .iter()
        .filter(|t| t.state == TaskState::Succeeded)
        .count();
    assert_eq!(succeeded, 100);
    assert!(image.live_attempts.is_empty());
    let fuel: u64 = (0..150u64).filter(|i| i % 3 != 0).sum();
    assert_eq!(image.job_usage, vec![(job_id, 150, fuel)]);
    let page = store.task_page(job_id, 140, 10).await.unwrap();
    assert_eq!(page[0].usage.unwrap().fuel_used, 140);
    assert_eq!(
        page[0].usage.unwrap().compile_ms,
        280,
        "compile time is kept"
    );
    assert_eq!(page[0].attempt_id, Some(AttemptId(1140)));
}

#[tokio::test]
async fn retention_deletes_only_blobs_no_job_uses_and_nobody_used_lately() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        retention_deletes_only_unused_blobs(&url).await;
    }
}

async fn retention_deletes_only_unused_blobs(url: &str) {
    let store = open(url).await;
    let owner = RequesterId(1);
    let job_id = JobId(77);
    let (mut job_row, mut tasks) = job(job_id, 2);
    let module = job_row.spec.module;
    let input = BlobHash::of(b"input");
    let output = BlobHash::of(b"output");
    let orphan = BlobHash::of(b"uploaded, never used");
    let fresh = BlobHash::of(b"uploaded just now");
    job_row.task_count = 2;
    tasks[0].inputs = vec![wire::InputFile {
        name: "in.txt".to_owned(),
        blob: input,
    }];
    let blob = |hash, at_ms, reader| Write::InsertBlob {
        hash,
        size_bytes: 1,
        at_ms,
        reader,
    };
    store
        .write(vec![
            blob(module, 1_000, Some(owner)),
            blob(input, 1_000, Some(owner)),
            blob(orphan, 1_000, Some(owner)),
            blob(fresh, 9_000, Some(owner)),
            Write::InsertJob {
                job: Box::new(job_row),
                tasks,
            },
            Write::GrantAttempts(vec![AttemptRow {
                id: AttemptId(5),
                job_id,
                task_index: 0,
                node_id: NodeId(3),
                granted_at_ms: 1_100,
            }]),
            blob(output, 1_200, None),
            Write::EndAttempts(vec![AttemptEnd {
                state: AttemptEndState::Succeeded,
                outcome: Some(Outcome::Succeeded),
                usage: Some(Usage::default()),
                outputs: vec![wire::OutputFile {
                    path: "out.txt".to_owned(),
                    hash: output,
                    size_bytes: 1,
                }],
                task_end: Some(TaskEnd {
                    state: TaskState::Succeeded,
                    outcome: Outcome::Succeeded,
                }),
                ..unreported(AttemptId(5), job_id, 0, 1_300)
            }]),
        ])
        .await
        .unwrap();
    let unused = |store: &Store| {
        let store = store.clone();
        async move {
            let mut hashes = store.unused_blobs(5_000, 100).await.unwrap();
            hashes.sort();
            hashes
        }
    };
    assert_eq!(
        unused(&store).await,
        vec![orphan],
        "the job's module, input and output are in use, and a fresh upload is kept"
    );

    // A store opened on a database written before job_blobs existed names the old jobs' blobs.
    forget_job_blob_uses(url).await;
    let store = open(url).await;
    assert_eq!(unused(&store).await, vec![orphan]);

    store
        .write(vec![
            Write::PurgeJobs(vec![job_id]),
            Write::TouchBlobs {
                hashes: vec![module],
                at_ms: 6_000,
            },
        ])
        .await
        .unwrap();
    assert!(store.load().await.unwrap().jobs.is_empty());
    let mut expected = vec![input, output, orphan];
    expected.sort();
    assert_eq!(unused(&store).await, expected, "a touched module stays");

    let mut candidates = expected.clone();
    candidates.push(module);
    store
        .write(vec![Write::ForgetBlobs {
            hashes: candidates,
            used_before_ms: 5_000,
        }])
        .await
        .unwrap();
    assert_eq!(
        store.unused_blobs(u64::MAX / 2, 100).await.unwrap().len(),
        2
    );
    assert_eq!(store.readable_blob(&input, owner).await.unwrap(), None);
    assert_eq!(store.readable_blob(&orphan, owner).await.unwrap(), None);
    assert_eq!(store.readable_blob(&module, owner).await.unwrap(), Some(1));
    assert_eq!(store.readable_blob(&fresh, owner).await.unwrap(), Some(1));
}

/// Makes the database look as one written before job_blobs existed.
async fn forget_job_blob_uses(url: &str) {
    use sqlx::{Connection, Executor};
    sqlx::any::install_default_drivers();
    let mut connection = sqlx::AnyConnection::connect(url).await.unwrap();
    connection.execute("DELETE FROM job_blobs").await.unwrap();
    connection
        .execute("DELETE FROM meta WHERE key = 'job_blobs_filled'")
        .await
        .unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_flush_returns_once_everything_queued_before_it_committed() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        let store = open(&url).await;
        store.flush().await.unwrap();
        let job_id = JobId(9);
        let (mut job_row, tasks) = job(job_id, 20_000);
        job_row.task_count = 20_000;
        // Not waited for: only the flush says when it is in.
        let _ = store.enqueue(vec![Write::InsertJob {
            job: Box::new(job_row),
            tasks,
        }]);
        store.flush().await.unwrap();
        let page = store.task_page(job_id, 19_990, 100).await.unwrap();
        assert_eq!(
            page.len(),
            10,
            "{url}: the queued job is there after the flush"
        );
    }
}

#[tokio::test]
async fn fuel_sums_past_a_bigint_load_saturated_and_uploads_of_live_attempts_load() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        fuel_sums_and_uploads_on(&url).await;
    }
}

/// A database that already holds fuel figures whose sum passes a BIGINT (written before reports
/// were bounded, or by many honest attempts at the ceiling) must still load.
async fn fuel_sums_and_uploads_on(url: &str) {
    let store = open(url).await;
    let job_id = JobId(77);
    let (mut job_row, tasks) = job(job_id, 3);
    job_row.task_count = 3;
    let grants: Vec<AttemptRow> = (0..3)
        .map(|i| AttemptRow {
            id: AttemptId(500 + i),
            job_id,
            task_index: i as u32,
            node_id: NodeId(1),
            granted_at_ms: 5,
        })
        .collect();
    let huge = i64::MAX as u64;
    let ends: Vec<AttemptEnd> = (0..2u64)
        .map(|i| AttemptEnd {
            ran_on: None,
            attempt_id: AttemptId(500 + i),
            job_id,
            task_index: i as u32,
            state: AttemptEndState::Failed,
            at_ms: 10,
            outcome: Some(Outcome::ExitCode { code: 1 }),
            usage: Some(Usage {
                fuel_used: huge,
                ..Usage::default()
            }),
            stdout: None,
            stderr: None,
            outputs: vec![],
            task_end: None,
        })
        .collect();
    let upload = |attempt: u64, bytes: &[u8]| Write::RecordAttemptUpload {
        attempt_id: AttemptId(attempt),
        job_id,
        hash: BlobHash::of(bytes),
        size_bytes: bytes.len() as u64,
        at_ms: 8,
    };
    store
        .write(vec![
            Write::InsertJob {
                job: Box::new(job_row),
                tasks,
            },
            Write::GrantAttempts(grants),
            upload(500, b"ended attempt's"),
            upload(502, b"live attempt's"),
            upload(502, b"live attempt's"),
            Write::EndAttempts(ends),
        ])
        .await
        .unwrap();
    store.close().await;

    let image = open(url).await.load().await.unwrap();
    assert_eq!(
        image.job_usage,
        vec![(job_id, 3, huge.saturating_mul(2))],
        "the fuel total saturates instead of failing the load"
    );
    assert_eq!(
        image.attempt_uploads,
        vec![(AttemptId(502), BlobHash::of(b"live attempt's"), 14)],
        "only live attempts' uploads load, each once"
    );
}

#[tokio::test]
async fn a_requesters_uploads_count_against_its_quota_and_its_results_do_not() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        let store = open(&url).await;
        let (owner, other) = (RequesterId(1), RequesterId(2));
        let upload = |hash, size_bytes, uploader| Write::InsertBlob {
            hash,
            size_bytes,
            at_ms: 1_000,
            reader: Some(uploader),
        };
        let module = BlobHash::of(b"module");
        let input = BlobHash::of(b"input");
        let result = BlobHash::of(b"result");
        store
            .write(vec![
                upload(module, 300, owner),
                upload(input, 200, owner),
                // The same bytes uploaded by another requester count for each of them.
                upload(module, 300, other),
                Write::InsertBlob {
                    hash: result,
                    size_bytes: 5_000,
                    at_ms: 1_000,
                    reader: None,
                },
                Write::AddBlobReaders {
                    hashes: vec![(result, 5_000)],
                    reader: owner,
                    at_ms: 1_000,
                },
            ])
            .await
            .unwrap();
        assert_eq!(store.uploaded_bytes(owner).await.unwrap(), 500, "{url}");
        assert_eq!(store.uploaded_bytes(other).await.unwrap(), 300, "{url}");
        assert_eq!(store.uploaded_bytes(RequesterId(3)).await.unwrap(), 0);
        // What retention deleted counts no more.
        store
            .write(vec![Write::ForgetBlobs {
                hashes: vec![input],
                used_before_ms: 2_000,
            }])
            .await
            .unwrap();
        assert_eq!(store.uploaded_bytes(owner).await.unwrap(), 300, "{url}");
    }
}

fn join_token(hash: &str) -> Write {
    Write::InsertToken(TokenRow {
        hash: hash.to_owned(),
        role: TokenRole::Join,
        name: hash.to_owned(),
        created_at_ms: 1,
        revoked_at_ms: None,
    })
}

#[tokio::test]
async fn a_store_opened_later_fences_the_earlier_one_out_of_the_database() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        let earlier = open(&url).await;
        earlier.write(vec![join_token("before")]).await.unwrap();
        let later = open(&url).await;
        assert_eq!(
            later.epoch(),
            earlier.epoch() + 1,
            "{url}: each opening raises the epoch"
        );
        let refused = earlier.write(vec![join_token("stale")]).await;
        assert!(
            matches!(refused, Err(store::StoreError::Fenced { epoch }) if epoch == earlier.epoch()),
            "{url}: the replaced store may not write: {refused:?}"
        );
        later.write(vec![join_token("after")]).await.unwrap();
        earlier.close().await;
        later.close().await;
        let reopened = open(&url).await;
        let mut hashes: Vec<String> = reopened
            .load()
            .await
            .unwrap()
            .tokens
            .into_iter()
            .map(|token| token.hash)
            .collect();
        hashes.sort();
        assert_eq!(
            hashes,
            ["after", "before"],
            "{url}: nothing of the stale write landed"
        );
        assert_eq!(reopened.epoch(), later.epoch() + 1);
    }
}

#[tokio::test]
async fn each_lead_issues_attempt_ids_from_a_span_of_its_own_past_any_stored_there() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        attempt_id_spans_on(&url).await;
    }
}

async fn attempt_id_spans_on(url: &str) {
    let first = open(url).await;
    let span = first.load().await.unwrap().attempt_ids;
    assert_eq!(
        span.end - span.start,
        1 << 40,
        "{url}: a fresh lead has its whole span"
    );
    assert!(
        i64::try_from(span.end).is_ok(),
        "{url}: every id of the span is a positive BIGINT"
    );
    // A commit of two grants of this lead, and one from a span of no lead's (an id drawn at
    // random before ids were issued in order).
    let grant = |id: u64| AttemptRow {
        id: AttemptId(id),
        job_id: JobId(1),
        task_index: 0,
        node_id: NodeId(1),
        granted_at_ms: 1,
    };
    let grants = vec![
        grant(span.start),
        grant(span.start + 6),
        grant(u64::MAX - 3),
    ];
    first
        .write(vec![Write::GrantAttempts(grants)])
        .await
        .unwrap();
    assert_eq!(
        first.load().await.unwrap().attempt_ids,
        span.start + 7..span.end,
        "{url}: a load in the same lead goes on past the ids stored"
    );
    first.close().await;
    let second = open(url).await;
    let next = second.load().await.unwrap().attempt_ids;
    assert!(
        next.start >= span.end || next.end <= span.start,
        "{url}: the next lead's span {next:?} and the last one's {span:?} are apart"
    );
    second.close().await;
}

/// The requester's cancel of `job_id` at `at_ms`.
fn cancelled(job_id: JobId, at_ms: u64) -> Write {
    Write::CancelJob {
        job_id,
        at_ms,
        aborted: None,
    }
}

fn requester(id: u64) -> Write {
    Write::InsertRequester(RequesterRow {
        id: RequesterId(id),
        name: format!("requester {id}"),
        created_at_ms: 1,
    })
}

#[tokio::test]
async fn after_a_failed_commit_nothing_more_is_written_and_every_later_write_fails() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        let store = open(&url).await;
        store.write(vec![requester(1)]).await.unwrap();
        // The same id again breaks the primary key: the commit fails.
        let failed = store.write(vec![requester(1)]).await.unwrap_err();
        assert!(
            matches!(failed, store::StoreError::Database(_)),
            "{url}: {failed:?}"
        );
        let later = store.write(vec![join_token("later")]).await.unwrap_err();
        assert_eq!(
            later.to_string(),
            failed.to_string(),
            "{url}: a later write gets the failure"
        );
        let flushed = store.flush().await.unwrap_err();
        assert_eq!(flushed.to_string(), failed.to_string(), "{url}");
        store.close().await;
        let reopened = open(&url).await;
        let image = reopened.load().await.unwrap();
        assert!(
            image.tokens.is_empty(),
            "{url}: nothing after the failure landed"
        );
        assert_eq!(image.requesters.len(), 1, "{url}");
        reopened.close().await;
    }
}

#[tokio::test]
async fn a_close_commits_what_was_queued_and_refuses_what_comes_after() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        let store = open(&url).await;
        let queued = store.enqueue(vec![join_token("queued")]);
        store.close().await;
        queued.wait().await.unwrap();
        assert_eq!(store.queued(), 0, "{url}");
        let refused = store.write(vec![join_token("late")]).await;
        assert!(
            matches!(refused, Err(store::StoreError::Closed)),
            "{url}: {refused:?}"
        );
        assert_eq!(
            store.queued(),
            0,
            "{url}: a refused write is not counted as queued"
        );
        let reopened = open(&url).await;
        let hashes: Vec<String> = reopened
            .load()
            .await
            .unwrap()
            .tokens
            .into_iter()
            .map(|token| token.hash)
            .collect();
        assert_eq!(hashes, ["queued"], "{url}");
        reopened.close().await;
    }
}

#[tokio::test]
async fn results_whose_witnesses_were_all_banned_are_found_and_taken_back() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        recall_on(&url).await;
    }
}

/// A verdict on task `index` of `job_id`, by attempt `100 + index`, verified `by` `nodes`.
fn verdict(job_id: JobId, index: u32, by: wire::VerifiedBy, nodes: &[u64]) -> store::TaskVerdict {
    store::TaskVerdict {
        job_id,
        index,
        state: TaskState::Succeeded,
        outcome: Outcome::Succeeded,
        result_attempt: Some(AttemptId(100 + u64::from(index))),
        verification: Some(wire::Verification {
            by,
            nodes: nodes.iter().copied().map(NodeId).collect(),
        }),
        at_ms: 40,
    }
}

fn record(node: u64, banned: bool) -> store::RecordRow {
    store::RecordRow {
        node_id: NodeId(node),
        owner: node,
        join_token_hash: String::new(),
        verified: 3,
        audits_passed: 1,
        mismatches: u64::from(banned),
        banned,
    }
}

/// Job 7's five tasks ran on node 42, each paid 7; 0 and 2 ended on its word alone (a later
/// audit), 1 and 4 with node 43 agreeing, 3 on node 44's word, and the job completed.
async fn job_vouched_by_42(store: &Store, job_id: JobId) {
    let (row, tasks) = job(job_id, 5);
    let grants = (0..5)
        .map(|i| AttemptRow {
            id: AttemptId(100 + i),
            job_id,
            task_index: i as u32,
            node_id: NodeId(42),
            granted_at_ms: 20,
        })
        .collect();
    let ends = (0..5)
        .map(|i| AttemptEnd {
            ran_on: None,
            attempt_id: AttemptId(100 + i),
            job_id,
            task_index: i as u32,
            state: AttemptEndState::Succeeded,
            at_ms: 30,
            outcome: Some(Outcome::Succeeded),
            usage: Some(Usage {
                fuel_used: 7,
                ..Usage::default()
            }),
            stdout: None,
            stderr: None,
            outputs: vec![],
            task_end: None,
        })
        .collect();
    use wire::VerifiedBy::{Audit, LaterAudit, Replicas};
    let verdicts = vec![
        verdict(job_id, 0, LaterAudit, &[42]),
        verdict(job_id, 1, Audit, &[42, 43]),
        verdict(job_id, 2, LaterAudit, &[42]),
        verdict(job_id, 3, LaterAudit, &[44]),
        verdict(job_id, 4, Replicas, &[42, 43]),
    ];
    let finish = Write::FinishJob {
        job_id,
        state: JobState::Completed,
        at_ms: 50,
    };
    store
        .write(vec![
            Write::InsertJob {
                job: Box::new(row),
                tasks,
            },
            Write::GrantAttempts(grants),
            Write::EndAttempts(ends),
            Write::EndTasks(verdicts),
            finish,
            Write::SetRecords(vec![record(42, false), record(44, false)]),
        ])
        .await
        .unwrap();
}

/// Tasks 1 and 4 of `job_vouched_by_42` rest on 43's word as well: once it is banned too,
/// nothing but liars' word stands behind them.
async fn recallable_once_every_witness_is_banned(store: &Store) {
    store
        .write(vec![Write::SetRecords(vec![record(43, true)])])
        .await
        .unwrap();
    let found: Vec<_> = store
        .recallable(10)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.index, r.node))
        .collect();
    assert_eq!(found, [(1, NodeId(42)), (2, NodeId(42)), (4, NodeId(42))]);
}

async fn recall_on(url: &str) {
    let store = open(url).await;
    let job_id = JobId(7);
    job_vouched_by_42(&store, job_id).await;
    assert!(
        store.recallable(10).await.unwrap().is_empty(),
        "no one is banned"
    );
    let banned = Write::SetRecords(vec![record(42, true)]);
    store.write(vec![banned]).await.unwrap();
    let found = store.recallable(10).await.unwrap();
    let found_tasks: Vec<_> = found.iter().map(|r| (r.index, r.node, r.fuel)).collect();
    assert_eq!(found_tasks, [(0, NodeId(42), 7), (2, NodeId(42), 7)]);
    assert_eq!(found[1].spec.args, ["2"]);
    assert_eq!(
        store.recallable(1).await.unwrap().len(),
        1,
        "the limit holds"
    );

    let ended = store.ended_job(job_id).await.unwrap().unwrap();
    assert_eq!(ended.row.state, JobState::Completed);
    assert_eq!(ended.row.module_bytes, 2 << 20, "the module's size is kept");
    assert_eq!(ended.task_states, vec![TaskState::Succeeded; 5]);
    assert!(store.ended_job(JobId(8)).await.unwrap().is_none());

    let recall = Write::RecallTasks(store::TaskRecall {
        job_id,
        tasks: vec![(0, NodeId(42))],
        reopen: true,
        at_ms: 60,
    });
    store.write(vec![recall]).await.unwrap();
    let left: Vec<_> = store.recallable(10).await.unwrap();
    assert_eq!(left.len(), 1, "a result is taken back once");
    assert_eq!(left[0].index, 2);

    let image = store.load().await.unwrap();
    assert_eq!(image.jobs[0].state, JobState::Running);
    assert_eq!(image.jobs[0].finished_at_ms, None);
    assert_eq!(image.recalled, vec![(job_id, 1)]);
    let task = image.open_tasks.iter().find(|t| t.index == 0).unwrap();
    assert_eq!(task.state, TaskState::Pending);
    assert_eq!(task.recalled_from, Some(NodeId(42)));
    assert_eq!(task.attempts, 0, "attempts before the recall do not count");
    assert_eq!(task.spec.as_ref().unwrap().args, ["0"]);
    let page = store.task_page(job_id, 0, 10).await.unwrap();
    assert_eq!(page[0].recalled_from, Some(NodeId(42)));
    assert_eq!(
        (page[0].verification.as_ref(), page[0].outcome.as_ref()),
        (None, None)
    );
    assert_eq!(page[2].recalled_from, None);

    recallable_once_every_witness_is_banned(&store).await;
    store.write(vec![cancelled(job_id, 70)]).await.unwrap();
    let cancelled = store.recallable(10).await.unwrap();
    assert!(
        cancelled.is_empty(),
        "a cancelled job's results stay as they are"
    );
}

#[tokio::test]
async fn a_tasks_latest_checkpoint_loads_shows_and_alone_is_kept_from_retention() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        checkpoints_on(&url).await;
    }
}

/// A checkpoint of 11 bytes.
fn checkpoint(hash: BlobHash, fuel_used: u64, sequence: u32) -> wire::CheckpointRef {
    wire::CheckpointRef {
        hash,
        size_bytes: 11,
        fuel_used,
        sequence,
    }
}

/// The task page shows the checkpoints `checkpoints_on` saved: two, the latest of 250 fuel.
async fn shows_progress(store: &Store, job_id: JobId) {
    let page = store.task_page(job_id, 0, 10).await.unwrap();
    let progress = page[0].checkpoints.expect("the task shows its checkpoints");
    assert_eq!(
        (
            progress.saved,
            progress.fuel_covered,
            progress.size_bytes,
            progress.lost_ms
        ),
        (2, 250, 11, 1_500)
    );
}

async fn checkpoints_on(url: &str) {
    let store = open(url).await;
    let job_id = JobId(91);
    let (mut job_row, tasks) = job(job_id, 1);
    job_row.task_count = 1;
    let (first, second) = (BlobHash::of(b"first state"), BlobHash::of(b"second state"));
    let saved = |latest, lost_ms, makers: &[u64]| Write::SetTaskCheckpoint {
        job_id,
        task_index: 0,
        latest: Some(latest),
        lost_ms,
        makers: makers.to_vec(),
    };
    let blob = |hash| Write::InsertBlob {
        hash,
        size_bytes: 11,
        at_ms: 1_000,
        reader: None,
    };
    let writes = vec![
        Write::InsertJob {
            job: Box::new(job_row),
            tasks,
        },
        blob(first),
        saved(checkpoint(first, 100, 1), 0, &[]),
        blob(second),
    ];
    store.write(writes).await.unwrap();
    let unused = || async { store.unused_blobs(u64::MAX / 2, 100).await.unwrap() };
    assert_eq!(
        unused().await,
        [second],
        "the latest is kept, a blob no task names is not"
    );

    let latest = checkpoint(second, 250, 2);
    // Witnesses are whole u64s, past what a JSON double holds exactly.
    let makers = vec![u64::MAX - 1, 7];
    store
        .write(vec![saved(latest, 1_500, &makers)])
        .await
        .unwrap();
    assert_eq!(unused().await, [first], "only the latest is kept");
    let image = store.load().await.unwrap();
    let task = &image.open_tasks[0];
    assert_eq!(
        (
            task.checkpoint,
            task.checkpoints_lost_ms,
            &task.checkpoint_makers
        ),
        (Some(latest), 1_500, &makers)
    );
    shows_progress(&store, job_id).await;

    store
        .write(vec![Write::PurgeJobs(vec![job_id])])
        .await
        .unwrap();
    let mut gone = unused().await;
    gone.sort();
    assert_eq!(gone.len(), 2, "a purged job's checkpoints go");
    assert!(gone.contains(&first) && gone.contains(&second));
}

#[tokio::test]
async fn a_deferred_commit_is_made_durable_by_the_next_flush_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        deferred_on(&url).await;
    }
}

async fn deferred_on(url: &str) {
    let store = open(url).await;
    let meta = |key: &str, value: &str| Write::SetMeta {
        key: key.to_owned(),
        value: value.to_owned(),
    };
    store
        .enqueue_deferred(vec![meta("deferred", "1")])
        .wait()
        .await
        .unwrap();
    let image = store.load().await.unwrap();
    assert_eq!(image.meta.get("deferred").map(String::as_str), Some("1"));
    assert_eq!(
        image.meta.get("synced"),
        None,
        "a deferred commit waits for no sync"
    );
    store.flush().await.unwrap();
    let synced = store.load().await.unwrap().meta.get("synced").cloned();
    assert!(synced.is_some(), "a flush after a deferred commit syncs it");

    store.write(vec![meta("plain", "1")]).await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(
        store.load().await.unwrap().meta.get("synced"),
        synced.as_ref(),
        "a flush after a synced commit adds none"
    );
    store.close().await;
    let reopened = open(url).await.load().await.unwrap();
    assert_eq!(reopened.meta.get("deferred").map(String::as_str), Some("1"));
}

#[tokio::test]
async fn a_pipeline_loads_as_written_and_its_waiting_stages_keep_their_blobs() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        pipelines_on(&url).await;
    }
}

async fn pipelines_on(url: &str) {
    let store = open(url).await;
    let module = BlobHash::of(b"reduce module");
    let (job_row, tasks) = job(JobId(5), 1);
    let waiting = store::WaitingStage {
        job: JobSubmission {
            module,
            tasks,
            ..job_row.spec.clone()
        },
        module_bytes: 12,
        component_imports: None,
        wasm_features: vec!["simd".to_owned()],
    };
    let mut row = store::PipelineRow {
        id: wire::PipelineId(u64::MAX - 3),
        requester_id: RequesterId(1),
        name: "count".to_owned(),
        created_at_ms: 1_000,
        ended_at_ms: None,
        cancelled: false,
        stages: vec![store::StageRow {
            name: "reduce".to_owned(),
            input: Some(wire::StageInput::All("map".to_owned())),
            job_id: JobId(u64::MAX - 9),
            waiting: Some(waiting),
            not_run: None,
        }],
        locality: wire::Locality::Nodes,
        copies: 1,
    };
    let blob = Write::InsertBlob {
        hash: module,
        size_bytes: 12,
        at_ms: 1_000,
        reader: None,
    };
    store
        .write(vec![blob, Write::UpsertPipeline(row.clone())])
        .await
        .unwrap();
    let unused = || async { store.unused_blobs(u64::MAX / 2, 100).await.unwrap() };
    assert!(
        unused().await.is_empty(),
        "a waiting stage's module is kept"
    );
    assert_eq!(store.load().await.unwrap().pipelines, [row.clone()]);

    row.stages[0].waiting = None;
    row.stages[0].not_run = Some("not run, because stage map failed".to_owned());
    row.ended_at_ms = Some(2_000);
    store
        .write(vec![Write::UpsertPipeline(row.clone())])
        .await
        .unwrap();
    assert_eq!(store.load().await.unwrap().pipelines, [row.clone()]);
    store
        .write(vec![
            Write::PurgePipelines(vec![row.id]),
            Write::PurgeJobs(vec![row.stages[0].job_id]),
        ])
        .await
        .unwrap();
    assert!(store.load().await.unwrap().pipelines.is_empty());
    assert_eq!(unused().await, [module], "a purged pipeline keeps no blob");
}

#[tokio::test]
async fn a_result_found_by_key_is_copied_and_outlives_its_original() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        reuse_on(&url).await;
    }
}

/// Job 1 of requester 1, its task 0 succeeded on node 42 with one output: the job, the task's
/// key and the output.
async fn a_result_to_take(store: &Store) -> (JobRow, BlobHash, wire::OutputFile) {
    let (mut first, tasks) = job(JobId(1), 1);
    first.task_count = 1;
    let output = wire::OutputFile {
        path: "part-0".to_owned(),
        hash: BlobHash::of(b"part"),
        size_bytes: 4,
    };
    let end = AttemptEnd {
        ran_on: None,
        attempt_id: AttemptId(100),
        job_id: first.id,
        task_index: 0,
        state: AttemptEndState::Succeeded,
        at_ms: 30,
        outcome: Some(Outcome::Succeeded),
        usage: Some(Usage {
            fuel_used: 9,
            ..Usage::default()
        }),
        stdout: None,
        stderr: None,
        outputs: vec![output.clone()],
        task_end: Some(TaskEnd {
            state: TaskState::Succeeded,
            outcome: Outcome::Succeeded,
        }),
    };
    let grant = AttemptRow {
        id: AttemptId(100),
        job_id: first.id,
        task_index: 0,
        node_id: NodeId(42),
        granted_at_ms: 20,
    };
    let key = wire::key::task_key(&first.spec, 0, &tasks[0]);
    let blob = Write::InsertBlob {
        hash: output.hash,
        size_bytes: 4,
        at_ms: 30,
        reader: None,
    };
    store
        .write(vec![
            Write::InsertJob {
                job: Box::new(first.clone()),
                tasks: tasks.clone(),
            },
            Write::GrantAttempts(vec![grant]),
            blob,
            Write::EndAttempts(vec![end]),
        ])
        .await
        .unwrap();
    (first, key, output)
}

/// Job 1's task 0 succeeds on node 42 with an output; job 2's task 0 of the same key takes it.
async fn reuse_on(url: &str) {
    let store = open(url).await;
    let (first, key, output) = a_result_to_take(&store).await;
    let other = RequesterId(2);
    assert!(
        store.reusable(other, &[(0, key)]).await.unwrap().is_empty(),
        "only its requester's"
    );
    let found = store
        .reusable(first.requester_id, &[(5, key)])
        .await
        .unwrap();
    let [(5, reused)] = found.as_slice() else {
        panic!("one result for the key: {found:?}");
    };
    assert_eq!((reused.job_id, reused.node_id), (first.id, NodeId(42)));

    let (mut second, tasks) = job(JobId(2), 1);
    second.task_count = 1;
    store
        .write(vec![
            Write::InsertJob {
                job: Box::new(JobRow {
                    submitted_seq: 2,
                    ..second.clone()
                }),
                tasks,
            },
            Write::ReuseResults {
                job_id: second.id,
                at_ms: 50,
                tasks: vec![(0, AttemptId(200), reused.clone())],
            },
            Write::PurgeJobs(vec![first.id]),
        ])
        .await
        .unwrap();
    let page = store.task_page(second.id, 0, 10).await.unwrap();
    let task = &page[0];
    assert_eq!(task.state, TaskState::Succeeded);
    assert_eq!(task.attempts, 0, "a copy is no attempt");
    assert_eq!(
        task.outputs,
        std::slice::from_ref(&output),
        "the result outlives its original's job"
    );
    assert_eq!(
        task.reused_from,
        Some(wire::ReusedFrom {
            job_id: first.id,
            index: 0
        })
    );
    let unused = store.unused_blobs(u64::MAX / 2, 100).await.unwrap();
    assert!(
        unused.is_empty(),
        "the copy's job names its output: {unused:?}"
    );
    let image = store.load().await.unwrap();
    assert!(
        image.node_shares.is_empty(),
        "a copy counts toward no node's share"
    );
}

#[tokio::test]
async fn a_tasks_retried_failures_and_a_jobs_stop_load_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        failures_on(&url).await;
    }
}

/// A failed attempt of task `index` of `job_id`, which ends the task when `ends` says so.
fn failed(id: u64, job_id: JobId, index: u32, outcome: Outcome, ends: bool) -> AttemptEnd {
    AttemptEnd {
        ran_on: None,
        attempt_id: AttemptId(id),
        job_id,
        task_index: index,
        state: AttemptEndState::Failed,
        at_ms: 30 + id,
        outcome: Some(outcome.clone()),
        usage: Some(Usage::default()),
        stdout: None,
        stderr: None,
        outputs: vec![],
        task_end: ends.then_some(TaskEnd {
            state: TaskState::Failed,
            outcome,
        }),
    }
}

async fn failures_on(url: &str) {
    let store = open(url).await;
    let (retried, stopped) = (JobId(300), JobId(301));
    let node_id = NodeId(42);
    let mut writes = vec![requester(1), Write::UpsertNode(node_row(node_id.0, None))];
    for job_id in [retried, stopped] {
        let (job, tasks) = job(job_id, 5);
        writes.push(Write::InsertJob {
            job: Box::new(job),
            tasks,
        });
    }
    let attempt = |id: u64, job_id, task_index| AttemptRow {
        id: AttemptId(id),
        job_id,
        task_index,
        node_id,
        granted_at_ms: 20 + id,
    };
    writes.push(Write::GrantAttempts(vec![
        attempt(1, retried, 0),
        attempt(2, retried, 0),
        attempt(3, retried, 1),
        attempt(4, stopped, 0),
    ]));
    store.write(writes).await.unwrap();
    let exit = |code| Outcome::ExitCode { code };
    store
        .write(vec![
            Write::EndAttempts(vec![
                failed(1, retried, 0, Outcome::MemoryLimit, false),
                failed(2, retried, 0, exit(1), false),
                failed(3, retried, 1, exit(2), true),
                failed(4, stopped, 0, exit(42), true),
            ]),
            Write::CancelJob {
                job_id: stopped,
                at_ms: 50,
                aborted: Some(wire::Aborted {
                    task_index: 0,
                    exit_code: 42,
                }),
            },
        ])
        .await
        .unwrap();
    store.close().await;

    let store = open(url).await;
    let image = store.load().await.unwrap();
    let task = |i: u32| {
        let found = image
            .open_tasks
            .iter()
            .find(|t| t.job_id == retried && t.index == i);
        found.unwrap()
    };
    assert_eq!(
        task(0).failed,
        [Outcome::MemoryLimit, exit(1)],
        "oldest first"
    );
    assert!(task(1).failed.is_empty(), "an ended task needs no count");
    let job = |id| image.jobs.iter().find(|job| job.id == id).unwrap();
    assert_eq!(job(retried).aborted, None);
    assert_eq!(job(stopped).state, JobState::Failed);
    let aborted = job(stopped).aborted.unwrap();
    assert_eq!((aborted.task_index, aborted.exit_code), (0, 42));
    store.close().await;
}

fn standby(holder: &str, term_ms: u64) -> store::LeadTerms {
    store::LeadTerms {
        holder: holder.to_owned(),
        term_ms,
        standby: true,
    }
}

/// Opens `url` as a standby of `holder`, reporting who leads meanwhile on `leader`.
fn open_standby(
    url: &str,
    terms: store::LeadTerms,
    leader: tokio::sync::watch::Sender<Option<String>>,
) -> tokio::task::JoinHandle<Store> {
    let url = url.to_owned();
    tokio::spawn(async move {
        Store::open_leading(&url, Durability::Full, &terms, &leader)
            .await
            .unwrap()
    })
}

#[tokio::test]
async fn a_standby_leads_only_once_the_leaders_term_ran_out_and_then_fences_it() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        let (leader_tx, _) = tokio::sync::watch::channel(None);
        let leader = Store::open_leading(&url, Durability::Full, &standby("a", 1_500), &leader_tx)
            .await
            .expect("a free lead is taken at once");
        let (told, mut seen) = tokio::sync::watch::channel(None);
        let waiting = open_standby(&url, standby("b", 1_500), told);
        seen.wait_for(|holder| holder.as_deref() == Some("a"))
            .await
            .expect("the standby says who leads");
        // Renewed well inside its term, the lead stays with its holder.
        for _ in 0..6 {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert_eq!(
                leader.renew_lead(1_500).await.unwrap(),
                store::Renewal::Held,
                "{url}"
            );
            assert!(
                !waiting.is_finished(),
                "{url}: the standby waits for a live leader"
            );
        }
        // The leader stops renewing, as one that died or froze: its term runs out.
        let taken_over = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .expect("the standby leads once the term ran out")
            .unwrap();
        assert!(
            taken_over.epoch() > leader.epoch(),
            "{url}: taking the lead raises the epoch"
        );
        assert_eq!(
            leader.renew_lead(1_500).await.unwrap(),
            store::Renewal::Lost {
                holder: "b".to_owned()
            },
            "{url}: the old leader learns who leads now"
        );
        let refused = leader.write(vec![join_token("stale")]).await;
        assert!(
            matches!(refused, Err(store::StoreError::Fenced { .. })),
            "{url}: the old leader may not write: {refused:?}"
        );
        taken_over.write(vec![join_token("after")]).await.unwrap();
        leader.close().await;
        taken_over.close().await;
    }
}
