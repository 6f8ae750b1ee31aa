//! Jobs across several agents, and what the pool does when agents or the coordinator die.

use std::collections::BTreeMap;
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};

use client::Client;
use wire::{
    AttemptReport, InputFile, JobState, LeaseRequest, Limits, Outcome, RegisterRequest,
    ReportRequest, TaskSpec, TaskState, Usage,
};

use crate::harness::{Pool, eventually, probe};

/// What `wc` would print for one file: the same rules as the wordcount guest.
fn word_count(name: &str, bytes: &[u8]) -> String {
    let lines = bytes.iter().filter(|b| **b == b'\n').count();
    let words = bytes
        .split(|b| b.is_ascii_whitespace())
        .filter(|word| !word.is_empty())
        .count();
    format!(
        "{lines} {words} {} {name}\n{lines} {words} {} total\n",
        bytes.len(),
        bytes.len()
    )
}

fn text_for(index: usize) -> Vec<u8> {
    let mut text = String::new();
    for line in 0..(index % 7 + 1) {
        for word in 0..(index * 3 + line) % 11 {
            text.push_str(&format!("w{index}x{word} "));
        }
        text.push('\n');
    }
    text.into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_tasks_on_three_agents_give_the_exact_outputs() {
    let pool = Pool::start(5_000).await;
    let _agents = [
        pool.agent("a", 2).await,
        pool.agent("b", 2).await,
        pool.agent("c", 2).await,
    ];
    pool.wait_online(&["a", "b", "c"]).await;
    let module = pool.upload_wasm(guests::WORDCOUNT).await;
    let mut tasks = Vec::new();
    let mut expected = Vec::new();
    for index in 0..60 {
        let text = text_for(index);
        let name = format!("part-{index:02}.txt");
        let blob = pool.owner.upload_bytes(text.clone().into()).await.unwrap();
        expected.push(word_count(&name, &text));
        tasks.push(TaskSpec {
            inputs: vec![InputFile { name, blob }],
            ..TaskSpec::default()
        });
    }
    let job = pool.submit(module, tasks, Limits::default()).await;
    let status = pool.finish(job, Duration::from_secs(180)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    assert_eq!(status.tasks.succeeded, 60);
    assert_eq!(status.attempts, 60, "no task ran twice");
    assert!(
        status.nodes.len() >= 2,
        "the work was spread: {:?}",
        status.nodes
    );
    assert_eq!(
        status.nodes.iter().map(|n| n.tasks_succeeded).sum::<u32>(),
        60
    );
    let results = pool.owner.all_tasks(job).await.unwrap();
    for task in &results {
        let want = &expected[task.index as usize];
        let stdout = pool
            .owner
            .download(&task.stdout.unwrap().hash)
            .await
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&stdout).unwrap(),
            want,
            "stdout of task {}",
            task.index
        );
        let counts = task
            .outputs
            .iter()
            .find(|f| f.path == "counts.txt")
            .expect("counts.txt");
        let file = pool.owner.download(&counts.hash).await.unwrap();
        assert_eq!(
            std::str::from_utf8(&file).unwrap(),
            want,
            "counts.txt of task {}",
            task.index
        );
        assert!(
            task.usage.unwrap().fuel_used > 0,
            "fuel is measured and stored"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_killed_mid_job_loses_its_tasks_to_the_others_and_each_task_counts_once() {
    let pool = Pool::start(1_500).await;
    let mut doomed = pool.agent("doomed", 3).await;
    let _survivor = pool.agent("survivor", 3).await;
    pool.wait_online(&["doomed", "survivor"]).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let tasks: Vec<TaskSpec> = (0..24).map(|_| probe(&["sleep", "400"])).collect();
    let job = pool.submit(module, tasks, Limits::default()).await;
    let owner = &pool.owner;
    // Kill it while it holds work, after it has finished some.
    eventually(
        "the doomed agent to finish a task and hold more",
        Duration::from_secs(60),
        || async move {
            let nodes = owner.nodes().await.ok()?;
            let doomed = nodes.nodes.iter().find(|n| n.name == "doomed")?;
            (doomed.tasks_succeeded >= 1 && doomed.running >= 1).then_some(())
        },
    )
    .await;
    doomed.kill().await;
    let status = pool.finish(job, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    assert_eq!(status.tasks.succeeded, 24);
    assert!(
        status.attempts > 24,
        "the killed agent's attempts ran again: {}",
        status.attempts
    );
    assert_eq!(
        status.nodes.iter().map(|n| n.tasks_succeeded).sum::<u32>(),
        24,
        "each task succeeded exactly once"
    );
    let results = pool.owner.all_tasks(job).await.unwrap();
    assert_eq!(results.len(), 24);
    for task in &results {
        assert_eq!(task.state, TaskState::Succeeded);
        assert_eq!(&pool.stdout(task).await[..], b"slept 400\n");
    }
    let retried = results.iter().filter(|t| t.attempts > 1).count();
    assert!(retried >= 1, "some task was retried after the kill");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_killed_and_restarted_mid_job_finishes_it_exactly_once() {
    let mut pool = Pool::start(4_000).await;
    let _agents = [pool.agent("a", 3).await, pool.agent("b", 3).await];
    pool.wait_online(&["a", "b"]).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let tasks: Vec<TaskSpec> = (0..30)
        .map(|i| probe(&["echo", &format!("task {i}")]))
        .collect();
    let slow: Vec<TaskSpec> = (0..12).map(|_| probe(&["sleep", "500"])).collect();
    let job = pool
        .submit(
            module,
            slow.into_iter().chain(tasks).collect(),
            Limits::default(),
        )
        .await;
    let owner = &pool.owner;
    eventually(
        "some tasks to finish and others to run",
        Duration::from_secs(60),
        || async move {
            let status = owner.job(job).await.ok()?;
            (status.tasks.succeeded >= 2 && status.tasks.running >= 1).then_some(())
        },
    )
    .await;
    pool.restart_coordinator_hard().await;
    let status = pool.finish(job, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    assert_eq!(status.tasks.succeeded, 42);
    assert_eq!(
        status.nodes.iter().map(|n| n.tasks_succeeded).sum::<u32>(),
        42
    );
    for task in pool.owner.all_tasks(job).await.unwrap() {
        let stdout = pool
            .owner
            .download(&task.stdout.unwrap().hash)
            .await
            .unwrap();
        let want = if task.index < 12 {
            "slept 500\n".to_owned()
        } else {
            format!("task {}\n", task.index - 12)
        };
        assert_eq!(std::str::from_utf8(&stdout).unwrap(), want);
    }
}

/// A node that speaks the protocol by hand, to send what a real agent would not.
async fn register_by_hand(pool: &Pool, seed: u8) -> Client {
    let key = SigningKey::from_bytes(&[seed; 32]);
    let anonymous = Client::new(&pool.url, None).unwrap();
    let challenge = anonymous.challenge(&pool.join_token).await.unwrap();
    let mut request = RegisterRequest {
        join_token: pool.join_token.clone(),
        public_key: hex::encode(key.verifying_key().to_bytes()),
        signature: String::new(),
        nonce: challenge.nonce,
        name: "by-hand".to_owned(),
        capabilities: wire::Capabilities {
            cores: 1,
            memory_bytes: 1 << 30,
            disk_free_bytes: 1 << 30,
            arch: std::env::consts::ARCH.to_owned(),
            os: std::env::consts::OS.to_owned(),
            module_bytes_max: wire::limits::MODULE_BYTES_MAX,
            wasi_interfaces: Vec::new(),
            wasm_features: Vec::new(),
            runtime: wire::NodeRuntime::Native,
            encryption_key: None,
            peer_address: None,
        },
        labels: BTreeMap::new(),
        slots: 1,
        agent_version: "test".to_owned(),
    };
    let message = wire::auth::registration_message(&request);
    request.signature = hex::encode(key.sign(&message).to_bytes());
    let registered = anonymous.register(&request).await.unwrap();
    anonymous.with_token(registered.node_token)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_report_of_an_expired_attempt_is_refused_and_changes_nothing() {
    let pool = Pool::start(600).await;
    let stale = register_by_hand(&pool, 9).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let job = pool
        .submit(module, vec![probe(&["echo", "real"])], Limits::default())
        .await;
    let lease = stale
        .lease(&LeaseRequest {
            slots_free: 1,
            wait_ms: 5_000,
        })
        .await
        .unwrap();
    assert_eq!(lease.attempts.len(), 1, "the hand-made node got the task");
    let attempt = lease.attempts[0].attempt_id;
    // It goes silent; its lease runs out and a real agent does the task.
    let _agent = pool.agent("real", 1).await;
    let status = pool.finish(job, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Completed);
    let before = pool.owner.all_tasks(job).await.unwrap();
    assert_ne!(before[0].attempt_id, Some(attempt));

    let late = ReportRequest {
        reports: vec![AttemptReport {
            ran_on: None,
            attempt_id: attempt,
            outcome: Outcome::ExitCode { code: 1 },
            usage: Usage {
                fuel_used: 1,
                ..Usage::default()
            },
            stdout: None,
            stderr: None,
            outputs: vec![],
            sealed_digest: None,
        }],
    };
    let response = stale.report(&late).await.unwrap();
    assert!(!response.acks[0].accepted, "the stale report is refused");
    assert!(
        response.acks[0]
            .message
            .as_deref()
            .unwrap()
            .contains("not current")
    );
    let after = pool.owner.all_tasks(job).await.unwrap();
    assert_eq!(before, after, "the refused report changed nothing");
    let status_after = pool.owner.job(job).await.unwrap();
    assert_eq!(
        (status_after.state, status_after.fuel_used),
        (JobState::Completed, status.fuel_used)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_stopped_gracefully_gives_its_unfinished_attempts_back() {
    let pool = Pool::start(5_000).await;
    let mut leaving = pool.agent("leaving", 2).await;
    pool.wait_online(&["leaving"]).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let tasks = vec![probe(&["sleep", "60000"]), probe(&["sleep", "60000"])];
    let job = pool.submit(module, tasks, Limits::default()).await;
    let owner = &pool.owner;
    eventually(
        "both tasks to run",
        Duration::from_secs(60),
        || async move { (owner.job(job).await.ok()?.tasks.running == 2).then_some(()) },
    )
    .await;
    let exit = leaving.terminate().await;
    assert!(exit.success(), "a drained agent exits cleanly");
    let status = pool.owner.job(job).await.unwrap();
    assert_eq!(
        status.tasks.pending,
        2,
        "released at once, not after a lease timeout: {status:?}\n{}",
        leaving.log()
    );
    assert_eq!(status.attempts, 0, "released attempts do not count");
    assert!(leaving.log().contains("released=2"), "{}", leaving.log());
    let work_left = std::fs::read_dir(leaving.dir.join("work")).unwrap().count();
    assert_eq!(work_left, 0, "no attempt directory is left behind");
}

/// A machine that hangs holding work holds up no task that runs replicas: the other replica's
/// success ends each task, and the job completes while the frozen node's lease still runs.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_finish_a_job_while_a_frozen_node_still_holds_its_copies() {
    // A lease of a minute: without replicas the job would wait that long for the frozen node.
    let pool = Pool::start(60_000).await;
    let frozen = pool.agent("frozen", 4).await;
    let _healthy = pool.agent("healthy", 4).await;
    pool.wait_online(&["frozen", "healthy"]).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let tasks: Vec<TaskSpec> = (0..4).map(|_| probe(&["sleep", "3000"])).collect();
    let mut submission = pool.submission(module, tasks, Limits::default());
    submission.replicas = 2;
    let job = pool.owner.submit(&submission).await.unwrap().job_id;
    let owner = &pool.owner;
    let running = |name: &'static str| async move {
        let nodes = owner.nodes().await.ok()?;
        nodes.nodes.into_iter().find(|node| node.name == name)
    };
    eventually(
        "both nodes to run a copy of every task",
        Duration::from_secs(60),
        || async {
            let (frozen, healthy) = (running("frozen").await?, running("healthy").await?);
            (frozen.running == 4 && healthy.running == 4).then_some(())
        },
    )
    .await;
    frozen.freeze();
    let status = pool.finish(job, Duration::from_secs(50)).await;
    let frozen_now = running("frozen").await.unwrap();
    frozen.thaw();
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    assert_eq!((status.tasks.succeeded, status.attempts), (4, 8));
    assert_eq!(
        frozen_now.state,
        wire::NodeState::Online,
        "the job ended before the frozen node's lease ran out"
    );
    let won: BTreeMap<String, u32> = status
        .nodes
        .iter()
        .map(|share| (share.node_name.clone(), share.tasks_succeeded))
        .collect();
    assert_eq!(
        won.values().sum::<u32>(),
        4,
        "each task succeeded once: {won:?}"
    );
    assert!(won.get("healthy").is_some_and(|won| *won >= 1), "{won:?}");
    eventually(
        "the thawed node to stop its stopped copies",
        Duration::from_secs(60),
        || async { (running("frozen").await?.running == 0).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_that_throws_and_catches_through_tail_calls_runs_on_a_node() {
    let pool = Pool::start(5_000).await;
    let _agent = pool.agent("worker", 1).await;
    let module = pool
        .upload_wasm(&wat::parse_str(guests::PROPOSALS_WAT).unwrap())
        .await;
    let job = pool
        .submit(module, vec![TaskSpec::default()], Limits::default())
        .await;
    let status = pool.finish(job, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    let tasks = pool.owner.all_tasks(job).await.unwrap();
    assert_eq!(&pool.stdout(&tasks[0]).await[..], b"caught 42\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_past_64_mib_is_taken_by_the_coordinator_and_run_by_a_node() {
    let pool = Pool::start(5_000).await;
    let _agent = pool.agent("worker", 1).await;
    // A custom section, as debug info and embedded data make real programs tens of MB.
    let mut large = guests::PROBE.to_vec();
    guests::binary::custom_section("padding", &vec![0xa5; 65 << 20], &mut large);
    assert!(large.len() > 64 << 20);
    let module = pool.upload_wasm(&large).await;
    let job = pool
        .submit(module, vec![probe(&["echo", "large"])], Limits::default())
        .await;
    let status = pool.finish(job, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    let tasks = pool.owner.all_tasks(job).await.unwrap();
    assert_eq!(&pool.stdout(&tasks[0]).await[..], b"large\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_restarted_loads_the_module_it_compiled_from_disk() {
    let pool = Pool::start(5_000).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let mut agent = pool.agent("worker", 1).await;
    let run = |words: &'static str| {
        let pool = &pool;
        async move {
            let job = pool
                .submit(module, vec![probe(&["echo", words])], Limits::default())
                .await;
            let status = pool.finish(job, Duration::from_secs(60)).await;
            assert_eq!(status.state, JobState::Completed, "{status:?}");
            let tasks = pool.owner.all_tasks(job).await.unwrap();
            assert_eq!(
                pool.stdout(&tasks[0]).await,
                format!("{words}\n").as_bytes()
            );
            tasks[0].usage.expect("the attempt reports its usage")
        }
    };
    run("compiled").await;
    assert!(agent.log().contains("from_disk=false"), "{}", agent.log());
    agent.terminate().await;

    let agent = pool.agent("worker", 1).await;
    run("loaded").await;
    assert!(
        agent.log().contains("from_disk=true"),
        "the restarted agent loads what it compiled: {}",
        agent.log()
    );
}

/// A node that compiles only small modules says so, and the pool believes it: a job whose
/// module no node compiles is refused at submit with the sizes, and once a node that takes it
/// joins, the job runs there and never on the small one.
#[tokio::test(flavor = "multi_thread")]
async fn a_module_larger_than_a_node_compiles_goes_to_a_node_that_does() {
    let pool = Pool::start(5_000).await;
    let small = pool.agent_joined(
        "small",
        2,
        &pool.join_token,
        &["--module-bytes-max", "1MiB"],
    );
    pool.wait_online(&["small"]).await;
    let mut large = guests::PROBE.to_vec();
    guests::binary::custom_section("padding", &vec![0x5a; 2 << 20], &mut large);
    let module = pool.upload_wasm(&large).await;
    let submission = pool.submission(module, vec![probe(&["echo", "big"])], Limits::default());
    let refused = pool
        .owner
        .submit(&submission)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("the largest module any node of this pool compiles is 1.0 MiB (small)"),
        "{refused}"
    );
    let _roomy = pool.agent("roomy", 1).await;
    pool.wait_online(&["roomy"]).await;
    let job = pool.owner.submit(&submission).await.unwrap().job_id;
    let status = pool.finish(job, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    let names: Vec<&str> = status.nodes.iter().map(|n| n.node_name.as_str()).collect();
    assert_eq!(names, ["roomy"], "only the node that compiles it ran it");
    assert!(!small.log().contains("more than"), "{}", small.log());

    let bad = tokio::process::Command::new(crate::harness::BINARY)
        .args([
            "agent",
            "--coordinator",
            &pool.url,
            "--join-token",
            &pool.join_token,
        ])
        .args(["--module-bytes-max", "512KiB"])
        .env("CROWDCLOUD_AGENT_DIR", pool.dir.path().join("bad"))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && stderr.contains("give 1MiB to 256MiB"),
        "{stderr}"
    );
}

/// A compile runs in a child process the agent kills at the owner's deadline: the task is
/// told why, the node goes on, and no compiler is left running.
#[tokio::test(flavor = "multi_thread")]
async fn a_compile_past_its_deadline_is_stopped_and_the_task_told_why() {
    let pool = Pool::start(5_000).await;
    // Long enough for a small module to compile in a child process on a loaded test machine.
    let agent = pool.agent_joined(
        "slow",
        1,
        &pool.join_token,
        &["--compile-deadline-secs", "5"],
    );
    pool.wait_online(&["slow"]).await;
    // Tens of seconds of compiling, far past the deadline.
    let costly = guests::binary::costly_to_compile(10_000, 1_000);
    let module = pool.upload_wasm(&costly).await;
    let job = pool.submit_with_attempts(module, vec![probe(&[])], 1).await;
    let status = pool.finish(job, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Failed, "{status:?}");
    let tasks = pool.owner.all_tasks(job).await.unwrap();
    let outcome = format!("{:?}", tasks[0].outcome);
    assert!(
        outcome.contains("compiling took longer than 5 s"),
        "{outcome}"
    );
    let compilers = children_of(agent.pid());
    assert!(
        compilers.is_empty(),
        "compilers left running: {compilers:?}"
    );

    let quick = pool.upload_wasm(guests::PROBE).await;
    let job = pool
        .submit(quick, vec![probe(&["echo", "on"])], Limits::default())
        .await;
    let status = pool.finish(job, Duration::from_secs(60)).await;
    assert_eq!(
        status.state,
        JobState::Completed,
        "the node goes on: {status:?}"
    );
}

/// The processes whose parent is `pid`, by their command lines.
fn children_of(pid: u32) -> Vec<String> {
    let parent_of = |stat: &str| -> Option<u32> {
        // The command sits in parentheses and may hold spaces: the fields after it count.
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            (parent_of(&stat)? == pid).then_some(())?;
            std::fs::read_to_string(entry.path().join("cmdline")).ok()
        })
        .collect()
}

/// What the Lua script of task `i` prints and writes: `pcall` catching an error (a `longjmp`,
/// which current C toolchains make with WebAssembly exceptions), then sorted numbers.
fn lua_expected(i: u64) -> (String, String) {
    let mut numbers: Vec<u64> = (1..=10).map(|k| (k * 7919 + i) % 101).collect();
    numbers.sort_unstable();
    let list: Vec<String> = numbers.iter().map(u64::to_string).collect();
    let sum: u64 = numbers.iter().sum();
    (
        format!("false boom {i} {}\n", list.join(",")),
        sum.to_string(),
    )
}

const LUA_SCRIPT: &str = r#"
local i = tonumber(arg[1])
local ok, err = pcall(error, "boom " .. i)
local t = {}
for k = 1, 10 do t[k] = (k * 7919 + i) % 101 end
table.sort(t)
io.write(tostring(ok), " ", err, " ", table.concat(t, ","), "\n")
local s = 0
for _, v in ipairs(t) do s = s + v end
local f = assert(io.open("/output/sum.txt", "w"))
f:write(string.format("%d", s))
f:close()
"#;

/// A third-party C program, built with a current toolchain, runs across the pool: the Lua 5.4
/// interpreter (see `guests::LUA`), its errors caught by `pcall`, in deterministic mode.
#[tokio::test(flavor = "multi_thread")]
async fn lua_a_third_party_c_program_runs_scripts_across_the_pool() {
    let pool = Pool::start(5_000).await;
    let _agents = [pool.agent("a", 2).await, pool.agent("b", 2).await];
    let module = pool.upload_wasm(guests::LUA).await;
    let tasks: Vec<TaskSpec> = (0..6)
        .map(|i| probe(&["-e", LUA_SCRIPT, &i.to_string()]))
        .map(|mut spec| {
            // `lua -e CODE N`: Lua reads `arg` from what follows a script, so name `-` as one.
            spec.args.insert(2, "-".to_owned());
            spec
        })
        .collect();
    let mut submission = pool.submission(module, tasks, Limits::default());
    submission.deterministic = Some(wire::Deterministic { seed: 1 });
    let job = pool.owner.submit(&submission).await.unwrap().job_id;
    let status = pool.finish(job, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    for task in pool.owner.all_tasks(job).await.unwrap() {
        let (stdout, sum) = lua_expected(u64::from(task.index));
        assert_eq!(String::from_utf8_lossy(&pool.stdout(&task).await), stdout);
        assert_eq!(task.outputs.len(), 1, "{:?}", task.outputs);
        assert_eq!(task.outputs[0].path, "sum.txt");
        assert_eq!(task.outputs[0].size_bytes, sum.len() as u64);
    }
}

/// A WASI 0.2 component (`wasi:cli/command`) runs across the pool as a module does: its args,
/// its outputs, the same result in deterministic mode on every node. One that imports sockets
/// is refused at submit, naming the import, before any node sees it.
#[tokio::test(flavor = "multi_thread")]
async fn wasi_components_run_across_the_pool_and_networked_ones_are_refused_at_submit() {
    let pool = Pool::start(5_000).await;
    let _agents = [pool.agent("a", 2).await, pool.agent("b", 2).await];
    let component = pool.upload_wasm(guests::PROBE_COMPONENT).await;
    let tasks: Vec<TaskSpec> = (0..4)
        .map(|i| {
            probe(&[
                "write",
                &format!("/output/part-{i}"),
                &(1000 + i).to_string(),
            ])
        })
        .chain((0..4).map(|_| probe(&["random", "16"])))
        .collect();
    let mut submission = pool.submission(component, tasks, Limits::default());
    submission.deterministic = Some(wire::Deterministic { seed: 7 });
    // Twice, so each task's seeded answer can be compared across whichever nodes ran it.
    let mut randoms = Vec::new();
    for _ in 0..2 {
        let job = pool.owner.submit(&submission).await.unwrap().job_id;
        let status = pool.finish(job, Duration::from_secs(120)).await;
        assert_eq!(status.state, JobState::Completed, "{status:?}");
        let mut answers = Vec::new();
        for task in pool.owner.all_tasks(job).await.unwrap() {
            let i = u64::from(task.index);
            if i < 4 {
                assert_eq!(task.outputs.len(), 1, "{:?}", task.outputs);
                assert_eq!(task.outputs[0].path, format!("part-{i}"));
                assert_eq!(task.outputs[0].size_bytes, 1000 + i);
            } else {
                let stdout = pool.stdout(&task).await;
                assert_eq!(stdout.len(), 33, "16 bytes as hex and a newline");
                answers.push((i, stdout));
            }
        }
        answers.sort();
        randoms.push(answers);
    }
    assert_eq!(randoms[0], randoms[1], "one seed, one answer per task");

    // A command in every other respect: it exports `wasi:cli/run`.
    let networked = wat::parse_str(
        r#"(component
            (import "wasi:sockets/tcp@0.2.0" (instance))
            (core module $m (func (export "run") (result i32) i32.const 0))
            (core instance $i (instantiate $m))
            (func $run (result (result)) (canon lift (core func $i "run")))
            (instance $runner (export "run" (func $run)))
            (export "wasi:cli/run@0.2.0" (instance $runner)))"#,
    )
    .unwrap();
    let networked = pool.upload_wasm(&networked).await;
    let refused = pool
        .owner
        .submit(&pool.submission(networked, vec![probe(&[])], Limits::default()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("imports wasi:sockets/tcp@0.2.0") && refused.contains("network access"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_submitted_with_a_wait_answers_once_it_ended_in_one_exchange() {
    let pool = Pool::start(5_000).await;
    let _agent = pool.agent("node", 2).await;
    pool.wait_online(&["node"]).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let quick = pool.submission(module, vec![probe(&["echo", "hi"])], Limits::default());
    let submitted = pool
        .owner
        .submit_and_wait(&quick, Duration::from_secs(60))
        .await
        .unwrap();
    let status = submitted
        .status
        .expect("a submission that waits carries the status");
    assert_eq!(status.state, wire::JobState::Completed, "{status:?}");
    assert_eq!(status.tasks.succeeded, 1);
    // A wait shorter than the job answers with the job as it is then, still running.
    let slow = pool.submission(module, vec![probe(&["sleep", "3000"])], Limits::default());
    let submitted = pool
        .owner
        .submit_and_wait(&slow, Duration::from_millis(200))
        .await
        .unwrap();
    let status = submitted
        .status
        .expect("a submission that waits carries the status");
    assert!(!status.state.is_terminal(), "{status:?}");
    // Without a wait, the answer is the job's id at once, as before.
    let submitted = pool.owner.submit(&quick).await.unwrap();
    assert_eq!(submitted.status, None);
}
