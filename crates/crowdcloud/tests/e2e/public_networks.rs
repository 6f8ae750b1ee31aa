//! The rule that keeps a task's replicas on distinct networks, over real networks: machines
//! made of network namespaces on one bridge, on different IPv4 /24s, so the coordinator sees
//! each node register from its own machine's address. Two of them share a /24: a public pool
//! (no `--one-network`) never lets those two vouch for one result, and still completes a job on
//! the other networks. Every node joins with a join token of its own, so owners never decide.
//!
//! Where network namespaces cannot be made, the test says why and passes (see `lan`).

use std::collections::BTreeMap;
use std::time::Duration;

use wire::{JobState, JobStatus, NodeList, NodeState, TaskStatus};

use crate::harness::{announced, eventually};
use crate::lan::{Lan, addressed_lan_or_skip};

/// The coordinator, then the agents: `a1` and `a2` share 10.77.1.0/24, each other machine has
/// a /24 of its own.
const MACHINES: [(&str, &str); 6] = [
    ("coord", "10.77.3.1/24"),
    ("a1", "10.77.1.2/24"),
    ("a2", "10.77.1.3/24"),
    ("b", "10.77.2.2/24"),
    ("c", "10.77.4.2/24"),
    ("d", "10.77.5.2/24"),
];

const COORDINATOR: &str = "https://10.77.3.1:7878";

const TASKS: usize = 20;

/// The /24 a machine sits on, as `10.77.1`.
fn network(machine: &str) -> &'static str {
    let (_, address) = MACHINES.iter().find(|(m, _)| *m == machine).unwrap();
    address.rsplit_once('.').unwrap().0
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_of_a_task_never_run_on_two_nodes_of_one_network() {
    let Some(mut lan) = addressed_lan_or_skip(&MACHINES) else {
        return;
    };
    let listen = COORDINATOR.trim_start_matches("https://");
    lan.spawn(
        "coord",
        &[
            "coordinator",
            "--listen",
            listen,
            "--trust",
            "public",
            "--no-advertise",
        ],
        "coordinator",
    );
    let fingerprint = announced(&lan.data_dir("coord"), "fingerprint").await;
    for (machine, _) in &MACHINES[1..] {
        start_agent(&mut lan, machine, &fingerprint).await;
    }
    let names = all_online(&lan).await;
    lan.run("coord", &["credits", "grant", "owner", "1000"])
        .await;

    let status = run_job(&lan).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    let tasks = tasks(&lan, &status).await;
    every_stdout_right(&lan, &status).await;
    let mut took_part = 0;
    for task in &tasks {
        let verification = task
            .verification
            .as_ref()
            .unwrap_or_else(|| panic!("task {} unverified", task.index));
        let machines: Vec<&str> = verification
            .nodes
            .iter()
            .map(|node| names[node].as_str())
            .collect();
        // No trusted node in the pool: three owners (and three networks) vouch for each result.
        assert!(machines.len() >= 3, "task {}: {machines:?}", task.index);
        let mut networks: Vec<&str> = machines.iter().map(|m| network(m)).collect();
        networks.sort_unstable();
        networks.dedup();
        assert_eq!(
            networks.len(),
            machines.len(),
            "task {} was vouched for by two nodes of one /24: {machines:?}",
            task.index
        );
        took_part += usize::from(machines.iter().any(|m| *m == "a1" || *m == "a2"));
    }
    assert!(took_part > 0, "the shared /24 took part in no verification");
    eprintln!("10.77.1.0/24 (a1 or a2) vouched for {took_part} of {TASKS} tasks");
}

/// Starts the agent of `machine`, one slot, with a join token of its own: an owner of its own.
async fn start_agent(lan: &mut Lan, machine: &str, fingerprint: &str) {
    let created = lan
        .run(
            "coord",
            &["tokens", "create", machine, "--kind", "join", "--json"],
        )
        .await;
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let dir = lan.data_dir(machine).join("agent");
    lan.spawn(
        machine,
        &[
            "agent",
            "--coordinator",
            COORDINATOR,
            "--fingerprint",
            fingerprint,
            "--join-token",
            &token,
            "--data-dir",
            dir.to_str().unwrap(),
            "--slots",
            "1",
            "--name",
            machine,
            "--dedicated",
            "--drain-secs",
            "1",
        ],
        "agent",
    );
}

/// Waits for every agent to be online; returns each node's name by its id.
async fn all_online(lan: &Lan) -> BTreeMap<wire::NodeId, String> {
    eventually(
        "every agent online",
        Duration::from_secs(60),
        || async move {
            let output = lan
                .command("coord", &["nodes", "--json"])
                .output()
                .await
                .ok()?;
            let nodes: NodeList = serde_json::from_slice(&output.stdout).ok()?;
            let online = nodes
                .nodes
                .iter()
                .filter(|node| node.state == NodeState::Online)
                .count();
            (online == MACHINES.len() - 1).then(|| {
                nodes
                    .nodes
                    .into_iter()
                    .map(|node| (node.node_id, node.name))
                    .collect()
            })
        },
    )
    .await
}

/// Submits a deterministic job of echo tasks and follows it to its end.
async fn run_job(lan: &Lan) -> JobStatus {
    let dir = lan.data_dir("coord");
    std::fs::write(dir.join("probe.wasm"), guests::PROBE).unwrap();
    let spec = format!(
        "name = \"networks\"\nmodule = \"probe.wasm\"\ndeterministic = {{ seed = 1 }}\n\
         [sweep]\ncount = {TASKS}\nargs = [\"echo\", \"task\", \"{{i}}\"]\n"
    );
    let spec_path = dir.join("job.toml");
    std::fs::write(&spec_path, spec).unwrap();
    let submit = lan
        .command(
            "coord",
            &["submit", spec_path.to_str().unwrap(), "--wait", "--json"],
        )
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), submit)
        .await
        .expect("the job ends in time")
        .unwrap();
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "submit: {error}: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

async fn tasks(lan: &Lan, status: &JobStatus) -> Vec<TaskStatus> {
    let job = status.job_id.to_string();
    let shown = lan
        .run("coord", &["status", &job, "--tasks", "--json"])
        .await;
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let tasks: Vec<TaskStatus> = serde_json::from_value(shown["tasks"].clone()).unwrap();
    assert_eq!(tasks.len(), TASKS);
    tasks
}

/// Every task delivered its own right answer.
async fn every_stdout_right(lan: &Lan, status: &JobStatus) {
    let out = lan.data_dir("coord").join("results");
    let job = status.job_id.to_string();
    lan.run("coord", &["results", &job, "--out", out.to_str().unwrap()])
        .await;
    for index in 0..TASKS {
        let stdout =
            std::fs::read_to_string(out.join(index.to_string()).join("stdout")).unwrap_or_default();
        assert_eq!(stdout, format!("task {index}\n"), "task {index}");
    }
}
