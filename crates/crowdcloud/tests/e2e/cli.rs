//! The requester CLI against a real pool: submit a spec, follow it, read it, fetch its results.

use std::process::Output;

use wire::{
    AttemptReport, ErrorCode, HeartbeatRequest, LeaseRequest, Limits, NodeActivity, Outcome,
    ReportRequest, Usage,
};

use crate::harness::{Pool, probe};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spec_submitted_with_the_cli_runs_and_its_results_come_back() {
    let pool = Pool::start(5_000).await;
    let _agent = pool.agent("worker", 2).await;
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("wordcount.wasm"), guests::WORDCOUNT).unwrap();
    std::fs::create_dir(work.path().join("texts")).unwrap();
    for (name, text) in [
        ("one.txt", "a b c\n"),
        ("two.txt", "d e\nf\n"),
        ("three.txt", ""),
    ] {
        std::fs::write(work.path().join("texts").join(name), text).unwrap();
    }
    std::fs::write(
        work.path().join("job.toml"),
        "name = \"count\"\nmodule = \"wordcount.wasm\"\n[limits]\nmemory = \"64MiB\"\ndeadline = \"30s\"\n\
         [per_input]\ndir = \"texts\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(work.path().join("data/nested")).unwrap();
    std::fs::write(work.path().join("data/nested/table.csv"), "x,y\n1,2\n").unwrap();
    std::fs::write(work.path().join("probe.wasm"), guests::PROBE).unwrap();
    std::fs::write(
        work.path().join("mounts.toml"),
        "module = \"probe.wasm\"\n[[mounts]]\nguest_path = \"/share\"\ndir = \"data\"\n\
         [[tasks]]\nargs = [\"read\", \"/share/nested/table.csv\"]\n\
         [[tasks]]\nargs = [\"write\", \"/share/nested/table.csv\", \"3\"]\n",
    )
    .unwrap();
    let mounted = pool
        .cli(&[
            "submit",
            work.path().join("mounts.toml").to_str().unwrap(),
            "--wait",
            "--json",
        ])
        .await;
    let mounted: wire::JobStatus = serde_json::from_slice(&mounted.stdout).unwrap();
    let tasks = pool.owner.all_tasks(mounted.job_id).await.unwrap();
    let read = pool
        .owner
        .download(&tasks[0].stdout.unwrap().hash)
        .await
        .unwrap();
    assert_eq!(
        &read[..],
        b"ok 8\n",
        "the mount is readable at its guest path"
    );
    assert_eq!(
        tasks[1].outcome,
        Some(wire::Outcome::ExitCode { code: 3 }),
        "and read-only"
    );
    let spec = work.path().join("job.toml");
    let submitted = pool
        .cli(&["submit", spec.to_str().unwrap(), "--wait", "--json"])
        .await;
    assert!(submitted.status.success(), "{submitted:?}");
    let status: wire::JobStatus = serde_json::from_slice(&submitted.stdout).unwrap();
    assert_eq!(status.state, wire::JobState::Completed);
    assert_eq!(status.tasks.succeeded, 3);
    let job = status.job_id.to_string();

    let shown = pool.cli(&["status", &job, "--tasks"]).await;
    assert!(shown.status.success());
    assert!(
        stdout(&shown).contains("3 of 3 ended"),
        "{}",
        stdout(&shown)
    );

    let out = work.path().join("results");
    let fetched = pool
        .cli(&["results", &job, "--out", out.to_str().unwrap()])
        .await;
    assert!(fetched.status.success(), "{fetched:?}");
    // Tasks follow the files in name order: one, three, two.
    let read = |task: &str, file: &str| std::fs::read_to_string(out.join(task).join(file)).unwrap();
    assert_eq!(read("0", "stdout"), "1 3 6 one.txt\n1 3 6 total\n");
    assert_eq!(
        read("2", "output/counts.txt"),
        "2 3 6 two.txt\n2 3 6 total\n"
    );
    assert_eq!(read("1", "stdout"), "0 0 0 three.txt\n0 0 0 total\n");

    let nodes = pool.cli(&["nodes", "--json"]).await;
    let nodes: wire::NodeList = serde_json::from_slice(&nodes.stdout).unwrap();
    assert_eq!(nodes.nodes[0].name, "worker");
    assert_eq!(
        nodes.nodes[0].tasks_succeeded, 4,
        "3 counts and 1 mount read"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_sweep_can_be_cancelled_and_bad_specs_are_refused_before_upload() {
    let pool = Pool::start(5_000).await;
    let work = tempfile::tempdir().unwrap();
    let module = work.path().join("probe.wasm");
    std::fs::write(&module, guests::PROBE).unwrap();
    let submitted = pool
        .cli(&[
            "submit",
            module.to_str().unwrap(),
            "--tasks",
            "5",
            "--",
            "echo",
            "{i}",
        ])
        .await;
    assert!(submitted.status.success(), "{submitted:?}");
    let job = stdout(&submitted).trim().to_owned();
    let status = pool.owner.job(job.parse().unwrap()).await.unwrap();
    assert_eq!(status.tasks.pending, 5, "no agent: every task waits");
    let why = pool.cli(&["status", &job, "--why"]).await;
    assert!(
        stdout(&why).contains("no nodes are online"),
        "{}",
        stdout(&why)
    );
    let cancelled = pool.cli(&["cancel", &job]).await;
    assert!(cancelled.status.success());
    assert!(
        stdout(&cancelled).contains("cancelled"),
        "{}",
        stdout(&cancelled)
    );
    let again = pool.cli(&["cancel", &job]).await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already ended"));

    std::fs::write(
        work.path().join("bad.toml"),
        "module = \"probe.wasm\"\n[limits]\nmemory = \"lots\"\n[sweep]\ncount = 2\n",
    )
    .unwrap();
    let refused = pool
        .cli(&["submit", work.path().join("bad.toml").to_str().unwrap()])
        .await;
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("limits.memory"), "{message}");
    let jobs = pool.owner.jobs(10).await.unwrap();
    assert_eq!(jobs.jobs.len(), 1, "the bad spec made no job");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_node_can_neither_break_nor_steer_the_terminal_of_nodes_and_status() {
    let pool = Pool::start(5_000).await;
    let node = pool.raw_node(7, "hostile", 1).await;
    // Sets the window title, clears the screen, turns text red (by ESC and by C1 CSI).
    let escapes = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m";
    let huge = format!("{escapes}{}", "x".repeat(70_000));
    for reason in [huge.clone(), escapes.to_owned()] {
        let paused = HeartbeatRequest {
            running: vec![],
            slots_free: 1,
            activity: NodeActivity::Paused { reason },
            capabilities: None,
            forgotten: Vec::new(),
            copied: Vec::new(),
            kept: Vec::new(),
            dropped: Vec::new(),
        };
        let refused = node.heartbeat(&paused).await.unwrap_err();
        assert_eq!(refused.code(), Some(ErrorCode::BadRequest), "{refused}");
    }
    let module = pool.upload_wasm(guests::PROBE).await;
    let job = pool
        .submit(module, vec![probe(&["echo", "x"])], Limits::default())
        .await;
    let lease = node
        .lease(&LeaseRequest {
            slots_free: 1,
            wait_ms: 5_000,
        })
        .await
        .unwrap();
    let trap = |message: String| ReportRequest {
        reports: vec![AttemptReport {
            ran_on: None,
            attempt_id: lease.attempts[0].attempt_id,
            outcome: Outcome::Trap { message },
            usage: Usage::default(),
            stdout: None,
            stderr: None,
            outputs: vec![],
            sealed_digest: None,
        }],
    };
    let refused = node.report(&trap(huge)).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::BadRequest), "{refused}");
    // A trap's message is free text: it is taken, and shown with its escapes written out.
    let taken = node.report(&trap(format!("boom {escapes}"))).await.unwrap();
    assert!(taken.acks[0].accepted, "{taken:?}");

    let nodes = pool.cli(&["nodes"]).await;
    assert!(nodes.status.success(), "{nodes:?}");
    assert!(stdout(&nodes).contains("hostile"), "{}", stdout(&nodes));
    let status = pool.cli(&["status", &job.to_string(), "--tasks"]).await;
    assert!(status.status.success(), "{status:?}");
    assert!(
        stdout(&status).contains("boom \\u{1b}]0;owned\\u{7}\\u{1b}[2J\\u{9b}31m"),
        "{}",
        stdout(&status)
    );
    for output in [&nodes, &status] {
        let controls: Vec<char> = stdout(output)
            .chars()
            .filter(|c| c.is_control() && *c != '\n')
            .collect();
        assert!(
            controls.is_empty(),
            "raw controls reach the terminal: {controls:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_named_as_success_end_tasks_succeeded_and_still_show_the_code() {
    let pool = Pool::start(5_000).await;
    let _agent = pool.agent("worker", 2).await;
    let work = tempfile::tempdir().unwrap();
    let module = work.path().join("probe.wasm");
    std::fs::write(&module, guests::PROBE).unwrap();
    let module = module.to_str().unwrap();
    // As a SAT solver says "satisfiable".
    let solved = pool
        .cli(&[
            "submit",
            module,
            "--tasks",
            "2",
            "--success-exit-codes",
            "10,20",
            "--wait",
            "--json",
            "--",
            "exit",
            "10",
        ])
        .await;
    assert!(solved.status.success(), "{}", stdout(&solved));
    let solved: wire::JobStatus = serde_json::from_slice(&solved.stdout).unwrap();
    assert_eq!(
        (solved.state, solved.tasks.succeeded),
        (wire::JobState::Completed, 2)
    );
    let listed = pool
        .cli(&["status", &solved.job_id.to_string(), "--tasks"])
        .await;
    assert!(
        stdout(&listed).contains("exited with code 10"),
        "the code is shown: {}",
        stdout(&listed)
    );
    let failed = pool
        .cli(&[
            "submit",
            module,
            "--success-exit-codes",
            "10",
            "--wait",
            "--json",
            "--",
            "exit",
            "11",
        ])
        .await;
    let failed: wire::JobStatus = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(failed.state, wire::JobState::Failed, "11 was not named");
    let refused = pool
        .cli(&["submit", module, "--success-exit-codes", "300"])
        .await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("success_exit_codes"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// Counts the words of the input it is given and hashes it, with the standard library:
/// `json`, `hashlib`, `os`.
const ANALYZE_PY: &str = r#"import hashlib, json, os, sys
name = sys.argv[1]
data = open(os.path.join("/input", name), "rb").read()
summary = {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "words": len(data.split())}
with open("/output/" + name + ".json", "w") as out:
    json.dump(summary, out, sort_keys=True)
print(name, summary["words"])
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_python_script_runs_over_input_files_and_its_outputs_are_exactly_right() {
    let python = std::env::var("CROWDCLOUD_TEST_PYTHON_WASM").expect(
        "CROWDCLOUD_TEST_PYTHON_WASM is not set; run the tests through scripts/test, which \
         fetches CPython for WASI with scripts/python-runtime",
    );
    let pool = Pool::start(5_000).await;
    let _agent = pool.agent("worker", 2).await;
    let work = tempfile::tempdir().unwrap();
    let script = work.path().join("analyze.py");
    std::fs::write(&script, ANALYZE_PY).unwrap();
    std::fs::create_dir(work.path().join("texts")).unwrap();
    let texts = [
        ("a.txt", "the quick brown fox\n"),
        ("b.txt", "jumps over\nthe dog\n"),
    ];
    for (name, text) in texts {
        std::fs::write(work.path().join("texts").join(name), text).unwrap();
    }
    let script = script.to_str().unwrap();
    let texts_dir = work.path().join("texts");
    let submit = [
        "submit",
        script,
        "--inputs",
        texts_dir.to_str().unwrap(),
        "--wait",
        "--json",
        "--",
        "{name}",
    ];
    let missing = pool.cli(&submit).await;
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("runtimes add python"),
        "without the runtime it says how to install it"
    );
    installs_only_the_pinned_python(&pool, work.path(), &python).await;

    let submitted = pool.cli(&submit).await;
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let status: wire::JobStatus = serde_json::from_slice(&submitted.stdout).unwrap();
    assert_eq!(status.tasks.succeeded, 2, "{status:?}");
    for task in pool.owner.all_tasks(status.job_id).await.unwrap() {
        let (name, text) = texts[task.index as usize];
        let output = pool.owner.download(&task.outputs[0].hash).await.unwrap();
        let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()));
        let words = text.split_whitespace().count();
        let expected = format!(r#"{{"name": "{name}", "sha256": "{sha256}", "words": {words}}}"#);
        assert_eq!(String::from_utf8_lossy(&output), expected);
        assert_eq!(
            pool.stdout(&task).await,
            format!("{name} {words}\n").as_bytes()
        );
    }
    a_spec_runs_a_program_with_its_packages(&pool, work.path()).await;
}

/// A spec's `program` imports from its `packages`, a directory of pure-Python code.
async fn a_spec_runs_a_program_with_its_packages(pool: &Pool, work: &std::path::Path) {
    std::fs::create_dir_all(work.join("lib/wordstats")).unwrap();
    std::fs::write(
        work.join("lib/wordstats/__init__.py"),
        "def longest(words):\n    return max(words, key=len)\n",
    )
    .unwrap();
    std::fs::write(
        work.join("longest.py"),
        "import sys, wordstats\nprint(wordstats.longest(sys.argv[1:]))\n",
    )
    .unwrap();
    std::fs::write(
        work.join("job.toml"),
        "program = \"longest.py\"\npackages = \"lib\"\n[[tasks]]\nargs = [\"a\", \"abc\", \"ab\"]\n",
    )
    .unwrap();
    let spec = work.join("job.toml");
    let ran = pool
        .cli(&["submit", spec.to_str().unwrap(), "--wait", "--json"])
        .await;
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let status: wire::JobStatus = serde_json::from_slice(&ran.stdout).unwrap();
    let tasks = pool.owner.all_tasks(status.job_id).await.unwrap();
    assert_eq!(pool.stdout(&tasks[0]).await, &b"abc\n"[..]);
}

/// `runtimes add python` refuses a module that is not the pinned CPython, then takes it.
async fn installs_only_the_pinned_python(pool: &Pool, work: &std::path::Path, python: &str) {
    let probe = work.join("probe.wasm");
    std::fs::write(&probe, guests::PROBE).unwrap();
    let wrong = pool
        .cli(&["runtimes", "add", "python", probe.to_str().unwrap()])
        .await;
    assert!(
        !wrong.status.success(),
        "a module that is not the pinned CPython is refused"
    );
    let added = pool.cli(&["runtimes", "add", "python", python]).await;
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
}
