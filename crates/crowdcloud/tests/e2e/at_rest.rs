//! Files at rest: whatever umask the coordinator and the agent start with, what they keep on disk
//! (state, blobs, tokens, identity, cache, attempt trees) is readable by their owner only, so
//! other users of the machine cannot read anyone's jobs.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use wire::{InputFile, Limits};

use crate::harness::{Pool, eventually, probe};

/// Files the test harness itself writes into the data dirs (the processes' stderr), not
/// crowdcloud.
const HARNESS_FILES: [&str; 2] = ["coordinator.log", "agent.log"];

/// Every file and directory under `root` (and `root`) that its group or others may access.
fn open_to_others(root: &Path) -> Vec<String> {
    let mut open = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        // The agent creates and removes attempt trees as the walk goes.
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let harness_file = path
            .file_name()
            .is_some_and(|name| HARNESS_FILES.iter().any(|file| name == *file));
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 && !harness_file {
            open.push(format!("{:o} {}", mode, path.display()));
        }
        if metadata.is_dir() {
            let entries = std::fs::read_dir(&path).into_iter().flatten().flatten();
            pending.extend(entries.map(|entry| entry.path()));
        }
    }
    open
}

#[tokio::test(flavor = "multi_thread")]
async fn data_dirs_stay_private_under_an_open_umask() {
    // The common default, inherited by the coordinator and agent processes the pool spawns:
    // on its own it leaves directories 0755 and files 0644.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let pool = Pool::start(5_000).await;
    let agent = pool.agent("worker", 2).await;
    pool.wait_online(&["worker"]).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let secret = pool
        .owner
        .upload_bytes(Bytes::from_static(b"the family's tax return"))
        .await
        .unwrap();
    let mut copy = probe(&["copy-inputs"]);
    copy.inputs = vec![InputFile {
        name: "taxes.txt".to_owned(),
        blob: secret,
    }];
    let job = pool
        .submit(
            module,
            vec![copy, probe(&["sleep", "600000"])],
            Limits::default(),
        )
        .await;
    let owner = &pool.owner;
    eventually(
        "the copy to finish while the sleeper runs",
        Duration::from_secs(60),
        || async move {
            let tasks = owner.job(job).await.ok()?.tasks;
            (tasks.succeeded == 1 && tasks.running == 1).then_some(())
        },
    )
    .await;
    for dir in [pool.coordinator_dir(), agent.dir.clone()] {
        assert!(dir.join("work").exists() || dir.join("state.db").exists());
        let open = open_to_others(&dir);
        assert!(open.is_empty(), "open to other users: {open:#?}");
    }
}
