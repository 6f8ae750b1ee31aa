//! Private jobs end to end: the CLI seals a job's inputs, stdin and mount, the agent opens them
//! and seals the outputs to the requester, and `results` opens those. Canary strings in every
//! part of the data never appear in the coordinator's database, blob store, log or metrics, nor
//! in the agent's data dir once the attempts ended. Only nodes the key is wrapped to run the
//! tasks, `keys grant` lets another in, and a ciphertext swapped in from another job, or
//! changed, ends its attempt as `seal_broken` rather than running on it.

use std::path::Path;
use std::time::Duration;

use wire::{JobId, JobState, Outcome};

use crate::harness::{Pool, eventually};

const INPUT_CANARY: &str = "CANARY-INPUT-7f3a9c: the family's tax return";
const STDIN_CANARY: &str = "CANARY-STDIN-2b81e4: medical records";
const MOUNT_CANARY: &str = "CANARY-MOUNT-c05d11: bank statements";

/// Every file under `root` whose bytes contain `needle`.
fn files_containing(root: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if metadata.is_dir() {
            let entries = std::fs::read_dir(&path).into_iter().flatten().flatten();
            pending.extend(entries.map(|entry| entry.path()));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|window| window == needle)
        {
            found.push(path.display().to_string());
        }
    }
    found
}

fn reversed(text: &str) -> Vec<u8> {
    text.bytes().rev().collect()
}

/// A job directory: the probe module, a spec of three tasks (copy an input to /output, copy
/// stdin to stdout, read the mount) and their files.
fn job_dir(private: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    std::fs::write(path.join("probe.wasm"), guests::PROBE).unwrap();
    std::fs::write(path.join("taxes.txt"), INPUT_CANARY).unwrap();
    std::fs::write(path.join("stdin.txt"), STDIN_CANARY).unwrap();
    std::fs::create_dir_all(path.join("share")).unwrap();
    std::fs::write(path.join("share/bank.txt"), MOUNT_CANARY).unwrap();
    let spec = format!(
        r#"
        name = "canary"
        module = "probe.wasm"
        {private}
        [[mounts]]
        guest_path = "/share"
        dir = "share"
        [[tasks]]
        args = ["copy-inputs"]
        inputs = ["taxes.txt"]
        [[tasks]]
        args = ["cat"]
        stdin = "stdin.txt"
        [[tasks]]
        args = ["read", "/share/bank.txt"]
        "#
    );
    std::fs::write(path.join("job.toml"), spec).unwrap();
    dir
}

async fn submit(pool: &Pool, spec: &Path, more: &[&str]) -> JobId {
    let spec = spec.display().to_string();
    let mut args = vec!["submit", spec.as_str()];
    args.extend_from_slice(more);
    let output = pool.cli(&args).await;
    assert!(
        output.status.success(),
        "submit failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_jobs_data_is_sealed_from_the_coordinator_and_opens_for_its_requester() {
    let pool = Pool::start(5_000).await;
    let agent = pool.agent("holder", 2).await;
    pool.wait_online(&["holder"]).await;
    let dir = job_dir("");
    let job = submit(&pool, &dir.path().join("job.toml"), &["--private"]).await;
    let status = pool.finish(job, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    assert!(status.private);

    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().display().to_string();
    let results = pool
        .cli(&["results", &job.to_string(), "--out", &out_dir])
        .await;
    assert!(
        results.status.success(),
        "{}",
        String::from_utf8_lossy(&results.stderr)
    );
    let read = |relative: &str| std::fs::read(out.path().join(relative)).unwrap();
    assert_eq!(read("0/output/taxes.txt"), reversed(INPUT_CANARY));
    assert_eq!(read("0/stdout"), b"copied 1\n");
    assert_eq!(read("1/stdout"), STDIN_CANARY.as_bytes());
    assert_eq!(
        read("2/stdout"),
        format!("ok {}\n", MOUNT_CANARY.len()).as_bytes()
    );

    // What the coordinator holds of the job is ciphertext, and so is what it serves.
    let tasks = pool.owner.all_tasks(job).await.unwrap();
    let sealed_stdout = pool.stdout(&tasks[1]).await;
    assert!(
        !sealed_stdout
            .windows(8)
            .any(|w| w == &STDIN_CANARY.as_bytes()[..8])
    );
    let metrics = pool.owner.metrics().await.unwrap();

    // The agent's attempts have ended: their directories are gone, and only ciphertext is
    // cached. Everything the pool wrote (coordinator, agent, the CLI's own data dir) is under
    // the pool's directory; the job's files and the opened results are elsewhere.
    let status_line = pool.cli(&["status", &job.to_string()]).await;
    let status_text = String::from_utf8_lossy(&status_line.stdout).into_owned();
    assert!(
        status_text.contains("sealed from the coordinator and the network"),
        "{status_text}"
    );
    drop(agent);
    for canary in [
        INPUT_CANARY.as_bytes().to_vec(),
        reversed(INPUT_CANARY),
        STDIN_CANARY.as_bytes().to_vec(),
        MOUNT_CANARY.as_bytes().to_vec(),
    ] {
        let text = String::from_utf8_lossy(&canary).into_owned();
        let found = files_containing(pool.dir.path(), &canary);
        assert!(found.is_empty(), "{text:?} found in {found:?}");
        assert!(!metrics.contains(text.as_str()), "{text:?} in the metrics");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_trusted_nodes_run_a_private_job_and_a_grant_lets_another_in() {
    // A short lease: the test waits for a node to go offline.
    let pool = Pool::start(2_000).await;
    let mut trusted = pool.agent("trusted", 1).await;
    let _other = pool.agent("other", 2).await;
    pool.wait_online(&["trusted", "other"]).await;
    let trusted_id = pool.node_id("trusted").await;
    let other_id = pool.node_id("other").await;
    let dir = job_dir(&format!("private = {{ nodes = [\"{trusted_id}\"] }}"));
    let job = submit(&pool, &dir.path().join("job.toml"), &[]).await;
    let status = pool.finish(job, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    let tasks = pool.owner.all_tasks(job).await.unwrap();
    assert!(tasks.iter().all(|task| task.node_id == Some(trusted_id)));

    // With its one trusted node gone, a second job waits, and says why.
    trusted.terminate().await;
    let owner = &pool.owner;
    eventually(
        "the trusted node to be offline",
        Duration::from_secs(30),
        || async move {
            let nodes = owner.nodes().await.ok()?;
            let node = nodes.nodes.iter().find(|node| node.node_id == trusted_id)?;
            (node.state == wire::NodeState::Offline).then_some(())
        },
    )
    .await;
    let waiting = submit(&pool, &dir.path().join("job.toml"), &[]).await;
    let why = pool.cli(&["status", &waiting.to_string(), "--why"]).await;
    let why = String::from_utf8_lossy(&why.stdout).into_owned();
    assert!(why.contains("its key is wrapped to"), "{why}");
    let other = other_id.to_string();
    let granted = pool
        .cli(&["keys", "grant", &waiting.to_string(), "--node", &other])
        .await;
    assert!(
        granted.status.success(),
        "{}",
        String::from_utf8_lossy(&granted.stderr)
    );
    let status = pool.finish(waiting, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    let tasks = pool.owner.all_tasks(waiting).await.unwrap();
    assert!(tasks.iter().all(|task| task.node_id == Some(other_id)));
}

/// A private job of four `cat` tasks, sealed by hand as a requester's client would, but with
/// three bad stdins: changed by one byte, sealed under another job's key, and missing from the
/// manifest. Only the first is good.
async fn sealed_by_hand(
    pool: &Pool,
    requester: &seal::EncryptionSecret,
    holders: &client::private::KeyHolders,
) -> wire::JobSubmission {
    let job_key = seal::DataKey::generate();
    let good = seal::seal_bytes(&job_key, b"fine");
    let mut changed = seal::seal_bytes(&job_key, b"changed");
    let last = changed.len() - 1;
    changed[last] ^= 1;
    let foreign = seal::seal_bytes(&seal::DataKey::generate(), b"another job's");
    let unlisted = seal::seal_bytes(&job_key, b"not in the manifest");
    let mut manifest = seal::Manifest {
        requester: requester.public(),
        plain: Default::default(),
    };
    let mut stdins = Vec::new();
    for (sealed, plain) in [
        (good, &b"fine"[..]),
        (changed, b"changed"),
        (foreign, b"another job's"),
        (unlisted, b"not in the manifest"),
    ] {
        let hash = pool.owner.upload_bytes(sealed.into()).await.unwrap();
        if plain != b"not in the manifest" {
            manifest.plain.insert(hash, wire::BlobHash::of(plain));
        }
        stdins.push(hash);
    }
    let manifest = manifest.seal(&job_key);
    // Uploaded as a blob, as a large job's manifest is.
    let manifest = pool.owner.upload_bytes(manifest.into()).await.unwrap();
    let manifest = wire::private::ManifestRef::Blob(manifest);
    let wrap = |key: &seal::EncryptionKey| {
        let wrapped = seal::wrap(&job_key, key, seal::WrapContext::JobKey).unwrap();
        wire::WrappedKey(wrapped.to_hex())
    };
    let module = pool.upload_wasm(guests::PROBE).await;
    let tasks = stdins
        .iter()
        .map(|stdin| wire::TaskSpec {
            args: vec!["cat".to_owned()],
            stdin: Some(*stdin),
            inputs: Vec::new(),
        })
        .collect();
    let mut submission = wire::JobSubmission::new("tampered", module, tasks);
    submission.private = Some(Box::new(wire::PrivateJob {
        requester_key: requester.public().to_hex(),
        requester_wrap: wrap(&requester.public()),
        manifest,
        keys: holders
            .iter()
            .map(|(node, key)| (*node, wrap(key)))
            .collect(),
        module_sealed: false,
    }));
    submission
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_or_foreign_ciphertext_ends_its_attempt_before_the_task_runs() {
    let pool = Pool::start(5_000).await;
    let _agent = pool.agent("holder", 1).await;
    pool.wait_online(&["holder"]).await;
    let nodes = pool.owner.nodes().await.unwrap();
    let trust = jobspec::PrivatePlan::default();
    let holders = client::private::pick_key_holders(&nodes.nodes, &trust, &Default::default())
        .expect("the agent can hold a key");
    let requester = seal::EncryptionSecret::generate();
    let submission = sealed_by_hand(&pool, &requester, &holders).await;
    let job = pool.owner.submit(&submission).await.unwrap().job_id;
    let status = pool.finish(job, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Failed, "{status:?}");
    let tasks = pool.owner.all_tasks(job).await.unwrap();
    assert_eq!(tasks[0].outcome, Some(Outcome::Succeeded), "{:?}", tasks[0]);
    for task in &tasks[1..] {
        assert!(
            matches!(task.outcome, Some(Outcome::SealBroken { .. })),
            "{task:?}"
        );
        assert!(
            task.stdout.is_none(),
            "a task on bad data never ran: {task:?}"
        );
    }
    // The good task's stdout opens with the requester's key, for its attempt only.
    let sealed = pool.stdout(&tasks[0]).await;
    let attempt = tasks[0].attempt_id.unwrap();
    let mut opened = Vec::new();
    let context = seal::WrapContext::OutputKey { attempt: attempt.0 };
    seal::open_from(&requester, context, &sealed[..], &mut opened).unwrap();
    assert_eq!(opened, b"fine");
    let elsewhere = seal::WrapContext::OutputKey {
        attempt: attempt.0 + 1,
    };
    assert!(seal::open_from(&requester, elsewhere, &sealed[..], Vec::new()).is_err());
}

/// The regular files under `dir`, as paths relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_job_leaves_nothing_on_the_coordinator_or_the_node_that_confirmed() {
    let pool = Pool::start(5_000).await;
    let agent = pool.agent("holder", 2).await;
    pool.wait_online(&["holder"]).await;
    let blob_dir = pool.coordinator_dir().join("blobs");
    let blobs_before = files_under(&blob_dir);
    let dir = job_dir("private = true");
    let job = submit(&pool, &dir.path().join("job.toml"), &[]).await;
    let status = pool.finish(job, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    assert_ne!(files_under(&blob_dir), blobs_before);
    assert!(!files_under(&agent.dir.join("cache/blobs")).is_empty());
    assert!(!files_under(&agent.dir.join("compiled")).is_empty());

    let deleted = pool.cli(&["delete", &job.to_string()]).await;
    let said = String::from_utf8_lossy(&deleted.stdout).into_owned();
    assert!(
        deleted.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    assert!(
        said.contains("1 of 1 nodes that ran it confirmed they dropped their copies"),
        "{said}"
    );
    assert_eq!(
        files_under(&blob_dir),
        blobs_before,
        "the coordinator keeps none of its blobs"
    );
    assert_eq!(
        files_under(&agent.dir.join("cache/blobs")),
        Vec::<String>::new()
    );
    assert_eq!(
        files_under(&agent.dir.join("compiled")),
        Vec::<String>::new()
    );
    let gone = pool.owner.job(job).await.unwrap_err();
    assert_eq!(gone.code(), Some(wire::ErrorCode::NotFound), "{gone}");
    // Asked again, it says where the nodes stand rather than that the job is unknown.
    let again = pool.cli(&["delete", &job.to_string(), "--json"]).await;
    let again: wire::JobDeletion = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again.confirmed, [pool.node_id("holder").await]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_job_no_node_could_open_is_refused_before_anything_is_uploaded() {
    let pool = Pool::start(5_000).await;
    let _agent = pool.agent_labeled("holder", 1, &["jurisdiction=fr"]).await;
    pool.wait_online(&["holder"]).await;
    for (private, says) in [
        (
            "private = { nodes = [\"n-00000000000000ab\"] }",
            "is not in the pool with an encryption key",
        ),
        (
            "private = { labels = { jurisdiction = \"de\" } }",
            "no node of the pool can be trusted with this private job",
        ),
    ] {
        let dir = job_dir(private);
        let refused = pool
            .cli(&["submit", &dir.path().join("job.toml").display().to_string()])
            .await;
        let error = String::from_utf8_lossy(&refused.stderr).into_owned();
        assert!(!refused.status.success(), "{private}");
        assert!(error.contains(says), "{private}: {error}");
    }
    let jobs = pool.owner.jobs(10).await.unwrap();
    assert!(jobs.jobs.is_empty(), "nothing was submitted");
    let blobs = files_under(&pool.coordinator_dir().join("blobs"));
    assert!(
        !blobs
            .iter()
            .any(|path| path.ends_with(&wire::BlobHash::of(guests::PROBE).to_hex())),
        "nothing was uploaded: {blobs:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sealed_module_is_never_in_the_clear_on_the_coordinator_or_on_the_nodes_disk() {
    let pool = Pool::start(5_000).await;
    let agent = pool.agent("holder", 2).await;
    pool.wait_online(&["holder"]).await;
    let dir = job_dir("private = { module = true }");
    let job = submit(&pool, &dir.path().join("job.toml"), &[]).await;
    let status = pool.finish(job, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    let out = tempfile::tempdir().unwrap();
    let results = pool
        .cli(&[
            "results",
            &job.to_string(),
            "--out",
            &out.path().display().to_string(),
        ])
        .await;
    assert!(
        results.status.success(),
        "{}",
        String::from_utf8_lossy(&results.stderr)
    );
    assert_eq!(
        std::fs::read(out.path().join("1/stdout")).unwrap(),
        STDIN_CANARY.as_bytes()
    );
    // A stretch of the module's code, from its middle, appears nowhere the pool keeps files;
    // nor does any compiled code of it stay on the node's disk.
    let middle = guests::PROBE.len() / 2;
    let code = &guests::PROBE[middle..middle + 256];
    let found = files_containing(&pool.coordinator_dir(), code);
    assert!(
        found.is_empty(),
        "the module in the clear on the coordinator: {found:?}"
    );
    let found = files_containing(&agent.dir, code);
    assert!(
        found.is_empty(),
        "the module in the clear on the node: {found:?}"
    );
    assert_eq!(
        files_under(&agent.dir.join("compiled")),
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_of_a_private_job_in_a_public_pool_agree_by_digest_without_being_read() {
    let pool = crate::public::public_pool("3", &[]).await;
    let _strangers = [
        crate::public::stranger(&pool, "alice", &[]).await,
        crate::public::stranger(&pool, "bob", &[]).await,
        crate::public::stranger(&pool, "carol", &[]).await,
    ];
    pool.wait_online(&["alice", "bob", "carol"]).await;
    crate::public::grant_the_owner_credit(&pool).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("probe.wasm"), guests::PROBE).unwrap();
    let spec = "module = \"probe.wasm\"\ndeterministic = { seed = 1 }\nprivate = true\n\
                [sweep]\ncount = 3\nargs = [\"echo\", \"task\", \"{i}\"]\n";
    let plan = jobspec::parse(spec, dir.path()).unwrap();
    let nodes = pool.owner.nodes().await.unwrap();
    let holders =
        client::private::pick_key_holders(&nodes.nodes, &Default::default(), &Default::default())
            .unwrap();
    assert_eq!(holders.len(), 3);
    let requester = seal::EncryptionSecret::generate();
    let submission = pool
        .owner
        .upload_private_plan(&plan, &requester, &holders)
        .await
        .unwrap();
    let job = pool.owner.submit(&submission).await.unwrap().job_id;
    let status = pool.finish(job, Duration::from_secs(90)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    for task in pool.owner.all_tasks(job).await.unwrap() {
        let verification = task
            .verification
            .as_ref()
            .expect("every result is verified");
        assert!(verification.nodes.len() >= 2, "{task:?}");
        let sealed = pool.stdout(&task).await;
        let context = seal::WrapContext::OutputKey {
            attempt: task.attempt_id.unwrap().0,
        };
        let mut opened = Vec::new();
        seal::open_from(&requester, context, &sealed[..], &mut opened).unwrap();
        assert_eq!(opened, format!("task {}\n", task.index).as_bytes());
    }
}
