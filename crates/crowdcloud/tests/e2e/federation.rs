//! Two pools that lend each other capacity, each on a machine of its own (network namespaces:
//! pool A on 10.77.0.1, pool B on 10.77.0.2). A's owner makes a federation token; B's owner
//! adds A as a peer with it; B then takes A's tasks when its own nodes are idle and A's are
//! not, runs them on its own nodes, and reports them back, naming the node that ran each.
//!
//! Everything runs through the CLI on each machine, as the owners and requesters would.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::eventually;
use crate::lan::{Lan, banner_line, lan_or_skip};

const A_URL: &str = "https://10.77.0.1:7878";

/// Two federated pools, and the accounts between them.
struct Federated {
    lan: Lan,
    /// The probe module, in A's data dir.
    module: PathBuf,
    /// B's account in A: what A's requesters' tasks that ran in B earned (`owner:…`).
    b_in_a: String,
    /// A's account in B: what A's tasks spent of B's nodes' work (`requester:…`).
    a_in_b: String,
    /// A as B's peer (`f-…`).
    peer: String,
}

/// Pools A (one slot of its own) and B (two, started with `b_args` as well), B lending to A;
/// `None` where namespaces cannot be made here.
async fn federated(b_args: &[&str]) -> Option<Federated> {
    let mut lan = lan_or_skip(&["a", "b"])?;
    let a_up = "up --lan --no-advertise --slots 1 --pool-name a --lease-ms 3000";
    let a_out = lan.spawn("a", &words(a_up), "up");
    let mut b_up = words("up --lan --no-advertise --slots 2 --pool-name b");
    b_up.extend_from_slice(b_args);
    let b_out = lan.spawn("b", &b_up, "up");
    let module = lan.data_dir("a").join("probe.wasm");
    std::fs::write(&module, guests::PROBE).unwrap();
    let fingerprint = banner_line(&a_out, "certificate:").await;
    let create = [
        "tokens",
        "create",
        "pool b",
        "--kind",
        "federation",
        "--json",
    ];
    let created = json(&lan, "a", &create).await;
    let token = created["token"].as_str().unwrap();
    assert!(token.starts_with("ccf_"), "{created}");
    // B's commands find B once its `up` has announced itself, which its banner follows.
    banner_line(&b_out, "certificate:").await;
    let mut add = words("federation add --json --peer-fingerprint");
    add.extend([fingerprint.as_str(), "--peer-token", token, A_URL]);
    let added = json(&lan, "b", &add).await;
    assert_eq!(added["url"], A_URL);
    let b_in_a = format!("owner:{}", created["info"]["id"].as_str().unwrap());
    let a_in_b = format!("requester:{}", added["account"].as_str().unwrap());
    let peer = added["id"].as_str().unwrap().to_owned();
    let lan_ref = &lan;
    let online = || async move {
        let nodes = lan_ref.nodes("a").await;
        let b = nodes.iter().find(|node| node["name"] == "pool b")?;
        (b["state"] == "online").then_some(())
    };
    eventually("pool b online in pool a", Duration::from_secs(60), online).await;
    let b_node = lan.nodes("a").await;
    let b_node = &b_node.iter().find(|node| node["name"] == "pool b").unwrap()["node_id"];
    let bridge = bridge_of(&lan).await;
    assert_eq!(bridge["state"], "lending", "{bridge}");
    assert_eq!(
        bridge["node_id"], *b_node,
        "b's owner sees the node it is in a"
    );
    Some(Federated {
        lan,
        module,
        b_in_a,
        a_in_b,
        peer,
    })
}

fn words(text: &str) -> Vec<&str> {
    text.split(' ').collect()
}

/// What B's owner sees of its bridge to A.
async fn bridge_of(lan: &Lan) -> Value {
    let peers = json(lan, "b", &["federation", "list", "--json"]).await;
    peers["peers"][0]["bridge"].clone()
}

/// The balance of `account` as `machine`'s owner sees it, in fuel.
async fn balance(lan: &Lan, machine: &str, account: &str) -> i64 {
    let credits = json(lan, machine, &["credits", "--json"]).await;
    let accounts = credits["accounts"].as_array().unwrap();
    let found = accounts
        .iter()
        .find(|balance| balance["account"] == account);
    found.map_or(0, |balance| balance["fuel"].as_i64().unwrap())
}

async fn json(lan: &Lan, machine: &str, args: &[&str]) -> Value {
    serde_json::from_str(&lan.run(machine, args).await).unwrap()
}

/// Submits on `machine`: `tasks` tasks of the probe with `args` (`{i}` is the task's index).
async fn submit(
    lan: &Lan,
    machine: &str,
    module: &std::path::Path,
    tasks: u32,
    args: &[&str],
) -> String {
    let tasks = tasks.to_string();
    let mut argv = vec![
        "submit",
        module.to_str().unwrap(),
        "--tasks",
        &tasks,
        "--json",
        "--",
    ];
    argv.extend_from_slice(args);
    let submitted = json(lan, machine, &argv).await;
    submitted["job_id"].as_str().unwrap().to_owned()
}

/// The job once it ended, with its tasks.
async fn finished(lan: &Lan, machine: &str, job: &str) -> (Value, Vec<Value>) {
    let status = eventually("the job to end", Duration::from_secs(120), || async move {
        let status = json(lan, machine, &["status", job, "--tasks", "--json"]).await;
        (status["job"]["state"] != "running").then_some(status)
    })
    .await;
    let tasks = status["tasks"].as_array().unwrap().clone();
    (status["job"].clone(), tasks)
}

/// Waits until pool B runs `count` tasks of A's `job`.
async fn running_in_b(lan: &Lan, job: &str, count: usize) {
    let b = lan.nodes("a").await;
    let b = b.iter().find(|node| node["name"] == "pool b").unwrap();
    let b = &b["node_id"];
    let running = || async move {
        let status = json(lan, "a", &["status", job, "--tasks", "--json"]).await;
        let tasks = status["tasks"].as_array()?;
        let in_b = tasks
            .iter()
            .filter(|task| task["state"] == "running" && task["node_id"] == *b);
        (in_b.count() >= count).then_some(())
    };
    eventually("pool b to run a's tasks", Duration::from_secs(60), running).await;
}

fn ran_in_b(task: &Value) -> bool {
    task["ran_on"]
        .as_str()
        .is_some_and(|on| on.starts_with("b/"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_pool_borrows_an_idle_pools_nodes_and_the_lender_keeps_its_own_first() {
    let Some(federated) = federated(&[]).await else {
        return;
    };
    borrowed_tasks_come_home_with_their_nodes_and_are_paid_for(&federated).await;
    a_job_that_stays_home_never_leaves(&federated).await;
    the_lender_keeps_its_own_first_and_a_revoked_token_stops_it(&federated).await;
}

async fn borrowed_tasks_come_home_with_their_nodes_and_are_paid_for(federated: &Federated) {
    let Federated {
        lan,
        module,
        b_in_a,
        a_in_b,
        ..
    } = federated;
    // A has one slot of its own: the rest of a sweep runs on B's two.
    let job = submit(lan, "a", module, 12, &["echo", "out-{i}"]).await;
    let (status, tasks) = finished(lan, "a", &job).await;
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(status["tasks"]["succeeded"], 12);
    let borrowed: Vec<&Value> = tasks.iter().filter(|task| ran_in_b(task)).collect();
    assert!(!borrowed.is_empty(), "some tasks ran in pool b: {tasks:?}");
    for task in &tasks {
        assert_eq!(task["attempts"], 1, "each task ran once: {task}");
    }
    // What B's nodes printed came home whole.
    let out = lan.data_dir("a").join("results");
    lan.run("a", &["results", &job, "--out", out.to_str().unwrap()])
        .await;
    for task in &borrowed {
        let index = task["index"].as_u64().unwrap();
        let stdout = std::fs::read_to_string(out.join(index.to_string()).join("stdout")).unwrap();
        assert_eq!(
            stdout.trim(),
            format!("out-{index}"),
            "task {index} ran in b"
        );
    }
    // A's requester paid B's account in A; A's account in B paid B's nodes.
    let fuel_in_b: i64 = borrowed
        .iter()
        .map(|task| task["usage"]["fuel_used"].as_i64().unwrap())
        .sum();
    assert!(fuel_in_b > 0);
    assert_eq!(balance(lan, "a", b_in_a).await, fuel_in_b, "b earned in a");
    assert_eq!(balance(lan, "b", a_in_b).await, -fuel_in_b, "a owes b");
}

async fn a_job_that_stays_home_never_leaves(Federated { lan, module, .. }: &Federated) {
    // Even with A's one slot busy, and B idle.
    let spec = lan.data_dir("a").join("home.toml");
    std::fs::write(
        &spec,
        format!(
            "module = {:?}\nfederate = false\n[sweep]\ncount = 6\nargs = [\"sleep\", \"100\"]\n",
            module.to_str().unwrap()
        ),
    )
    .unwrap();
    let home = json(lan, "a", &["submit", spec.to_str().unwrap(), "--json"]).await;
    let (status, tasks) = finished(lan, "a", home["job_id"].as_str().unwrap()).await;
    assert_eq!(status["state"], "completed", "{status}");
    assert!(
        tasks.iter().all(|task| task["ran_on"].is_null()),
        "{tasks:?}"
    );
}

async fn the_lender_keeps_its_own_first_and_a_revoked_token_stops_it(
    Federated {
        lan, module, peer, ..
    }: &Federated,
) {
    // B lends while A's long sweep runs; B's own job, submitted meanwhile, goes first on B.
    let long = submit(lan, "a", module, 16, &["sleep", "1000"]).await;
    running_in_b(lan, &long, 2).await;
    let bridge = bridge_of(lan).await;
    assert!(
        bridge["borrowed"].as_u64().unwrap() <= 2,
        "b holds no more of a's tasks than its two slots: {bridge}"
    );
    let b_module = lan.data_dir("b").join("probe.wasm");
    std::fs::write(&b_module, guests::PROBE).unwrap();
    let own = submit(lan, "b", &b_module, 4, &["sleep", "200"]).await;
    let (own_status, _) = finished(lan, "b", &own).await;
    assert_eq!(own_status["state"], "completed", "{own_status}");
    let long_status = json(lan, "a", &["status", &long, "--json"]).await;
    assert_eq!(
        long_status["job"]["state"], "running",
        "b's own job ended while a's sweep still ran on b: {long_status}"
    );

    // A revoked token stops B at once: its node leaves A, and A's tasks finish at home.
    lan.run("a", &["tokens", "revoke", "pool b"]).await;
    assert!(
        !lan.nodes("a")
            .await
            .iter()
            .any(|node| node["name"] == "pool b"),
        "pool b left pool a the moment its token was revoked"
    );
    let stopped = || async move {
        let bridge = bridge_of(lan).await;
        (bridge["state"] == "stopped").then_some(bridge)
    };
    let bridge = eventually("b's bridge to stop", Duration::from_secs(30), stopped).await;
    let reason = bridge["reason"].as_str().unwrap();
    assert!(
        reason.contains("revoked"),
        "b's owner is told why: {reason}"
    );
    let (status, _) = finished(lan, "a", &long).await;
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(status["tasks"]["succeeded"], 16);
    // B's owner stops lending to A, by the id the list shows; a pipeline's id names no peer.
    let mut wrong = lan.command("b", &["federation", "remove", "p-0000000000000001"]);
    assert!(!wrong.output().await.unwrap().status.success());
    lan.run("b", &["federation", "remove", peer]).await;
    let peers = json(lan, "b", &["federation", "list", "--json"]).await;
    assert_eq!(peers["peers"], serde_json::json!([]), "{peers}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lending_pool_that_vanishes_mid_task_gives_its_tasks_back_to_their_home() {
    let Some(Federated { lan, module, .. }) = federated(&[]).await else {
        return;
    };
    let job = submit(&lan, "a", &module, 5, &["sleep", "2500"]).await;
    running_in_b(&lan, &job, 2).await;
    let killed = Instant::now();
    lan.kill_machine("b");
    let (status, tasks) = finished(&lan, "a", &job).await;
    eprintln!(
        "after pool b vanished, pool a finished the job alone in {} ms",
        killed.elapsed().as_millis()
    );
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(status["tasks"]["succeeded"], 5);
    assert!(
        tasks.iter().all(|task| task["ran_on"].is_null()),
        "every task's result is a's own: {tasks:?}"
    );
    assert!(
        tasks.iter().any(|task| task["attempts"].as_u64() > Some(1)),
        "the tasks b held ran again at home: {tasks:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_the_lender_refuses_goes_home_and_is_asked_for_ever_more_slowly() {
    // B keeps at most 1 KiB of uploads per requester: A's module never fits, so B's account
    // cannot submit a single borrowed task.
    let Some(Federated { lan, module, .. }) = federated(&["--upload-quota", "1KiB"]).await else {
        return;
    };
    let job = submit(&lan, "a", &module, 8, &["sleep", "500"]).await;
    let (status, tasks) = finished(&lan, "a", &job).await;
    assert_eq!(status["state"], "completed", "{status}");
    assert!(
        tasks.iter().all(|task| task["ran_on"].is_null()),
        "{tasks:?}"
    );
    let log = std::fs::read_to_string(lan.data_dir("b").join("up.err")).unwrap();
    let given_back = log.matches("a borrowed task goes back to its pool").count();
    assert!(given_back >= 1, "b tried: {log}");
    // About 4 s of A's sweep: pauses of 0.1, 0.2, 0.4, 0.8, 1.6 s... allow a handful, where
    // asking at the pace the pools answer would give back hundreds.
    assert!(given_back <= 12, "b gave back {given_back} tasks in a row");
}
