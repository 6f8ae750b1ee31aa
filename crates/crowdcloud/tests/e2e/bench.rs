//! A short run of each benchmark, so they never rot: only correctness is asserted (every task
//! done, counts right), never speed.

use std::process::Output;

use tokio::process::Command;

use crate::harness::BINARY;

async fn bench(args: &[&str]) -> (Output, serde_json::Value) {
    bench_with(args, Vec::new()).await
}

async fn bench_with(args: &[&str], env: Vec<(&str, String)>) -> (Output, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = Command::new(BINARY)
        .arg("bench")
        .args(args)
        .envs(env)
        .arg("--json")
        .arg(&json)
        .output()
        .await
        .expect("running the benchmark");
    let report = std::fs::read_to_string(&json)
        .map(|text| serde_json::from_str(&text).unwrap())
        .unwrap_or(serde_json::Value::Null);
    (output, report)
}

fn assert_checks_pass(output: &Output, report: &serde_json::Value) {
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let checks = report["checks"].as_array().expect("the report has checks");
    assert!(!checks.is_empty());
    for check in checks {
        assert_eq!(check["ok"], true, "{check}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_dispatch_benchmark_runs_every_task_once() {
    let (output, report) = bench(&[
        "dispatch",
        "--tasks",
        "300",
        "--agents",
        "2",
        "--slots",
        "4",
        "--round-trips",
        "20",
    ])
    .await;
    assert_checks_pass(&output, &report);
    assert!(report["figures"][0]["value"].as_f64().unwrap() > 0.0);
    // The coordinator's part of a round trip, from its own count of reports, is a part of it.
    let share = report["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|figure| {
            figure["name"]
                == "round trip: the report's handler in the coordinator, to its commit's end (mean)"
        })
        .unwrap_or_else(|| panic!("no coordinator's share in {report}"));
    let (part, whole) = (
        share["value"].as_f64().unwrap(),
        share["baseline"]["value"].as_f64().unwrap(),
    );
    assert!(part > 0.0 && part < whole, "{share}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_remote_dispatch_benchmark_runs_every_path_it_names() {
    // The same namespaces as the remote tests: where they cannot be made, this says so.
    if crate::internet::internet_or_skip(&[], &[]).is_none() {
        return;
    }
    let (output, report) = bench(&[
        "dispatch",
        "--remote",
        "--tasks",
        "200",
        "--slots",
        "4",
        "--round-trips",
        "10",
    ])
    .await;
    // Among the checks: the café's doctor names the path each run is labelled with.
    assert_checks_pass(&output, &report);
    let figures = report["figures"].as_array().unwrap();
    for path in ["LAN", "direct", "relay"] {
        let name = format!("round trip p50, {path}");
        assert!(figures.iter().any(|f| f["name"] == name), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_dispatch_benchmark_runs_the_same_tasks_with_blobs_in_s3_and_on_disk() {
    let env = crate::harness::s3_env();
    if env.is_empty() {
        assert!(
            std::env::var_os("CROWDCLOUD_REQUIRE_S3").is_none(),
            "run the tests through scripts/test, which starts an S3 server"
        );
        return;
    }
    let prefix = format!("s3://crowdcloud-test/bench-{}", std::process::id());
    let (output, report) = bench_with(
        &[
            "dispatch",
            "--tasks",
            "200",
            "--agents",
            "1",
            "--slots",
            "2",
            "--round-trips",
            "10",
            "--s3",
            &prefix,
        ],
        env,
    )
    .await;
    assert_checks_pass(&output, &report);
    let figures = report["figures"].as_array().unwrap();
    assert!(
        figures
            .iter()
            .any(|figure| figure["name"].as_str().unwrap().starts_with("blobs in S3")),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_stages_benchmark_runs_the_shuffle_and_nothing_again() {
    let (output, report) = bench(&[
        "stages",
        "--maps",
        "20",
        "--parts",
        "4",
        "--agents",
        "2",
        "--slots",
        "2",
        "--scale-maps",
        "10",
        "--scale-reduces",
        "6",
        "--scale-fanout",
        "3",
        "--churn-maps",
        "40",
        "--churn-parts",
        "4",
        "--churn-agents",
        "3",
        "--churn-down-ms",
        "500",
        "--locality-books",
        "8",
        "--locality-words",
        "2000",
    ])
    .await;
    assert_checks_pass(&output, &report);
    let egress = report["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|figure| figure["name"] == "coordinator egress, word count with locality = nodes")
        .expect("the egress of either locality is reported");
    let (nodes, coordinator) = (
        egress["value"].as_f64(),
        egress["baseline"]["value"].as_f64(),
    );
    assert!(
        nodes
            .zip(coordinator)
            .is_some_and(|(nodes, coordinator)| nodes < coordinator),
        "{egress}"
    );
    let large = report["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|figure| figure["name"] == "large graph: tasks")
        .expect("the large graph's size is reported");
    assert_eq!(large["value"].as_f64(), Some(10.0 + 6.0 * 4.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_sandbox_benchmark_matches_native_checksums() {
    let (output, report) = bench(&[
        "sandbox",
        "--instantiations",
        "50",
        "--kernel-scale",
        "0.01",
        "--repeats",
        "1",
        "--large-module-mib",
        "2",
    ])
    .await;
    assert_checks_pass(&output, &report);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_scale_benchmark_keeps_every_node_answered() {
    let (output, report) = bench(&[
        "scale",
        "--nodes",
        "50,200",
        "--window-ms",
        "1000",
        "--tasks",
        "100",
    ])
    .await;
    assert_checks_pass(&output, &report);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_recover_benchmark_reruns_the_killed_agents_tasks() {
    let (output, report) = bench(&[
        "recover",
        "--tasks",
        "40",
        "--agents",
        "3",
        "--slots",
        "2",
        "--kill",
        "1",
        "--task-ms",
        "300",
        "--lease-ms",
        "1500",
    ])
    .await;
    assert_checks_pass(&output, &report);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_failover_benchmark_loses_nothing_acknowledged_when_the_leader_dies_or_freezes() {
    let Ok(admin) = std::env::var("CROWDCLOUD_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CROWDCLOUD_REQUIRE_POSTGRES").is_none(),
            "run the tests through scripts/test, which starts PostgreSQL"
        );
        return;
    };
    let (output, report) = bench(&[
        "failover",
        "--database-url",
        &admin,
        "--runs",
        "1",
        "--tasks",
        "400",
        "--faults",
        "kill,freeze",
    ])
    .await;
    assert_checks_pass(&output, &report);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_verify_benchmark_delivers_no_wrong_result_in_the_model_or_end_to_end() {
    let (output, report) = bench(&[
        "verify",
        "--model-tasks",
        "20000",
        "--model-nodes",
        "200",
        "--agents",
        "6",
        // One cheater of six: a liar whose every lie the pool checks. A ring of liars that
        // outnumber the honest nodes of so small a pool may agree on a lie while on probation,
        // which the model measures at scale instead.
        "--cheaters",
        "10",
        "--tasks",
        "60",
    ])
    .await;
    assert_checks_pass(&output, &report);
    let figures = report["figures"].as_array().unwrap();
    let wrong = figures
        .iter()
        .find(|f| f["name"] == "end to end: wrong results delivered")
        .expect("the end-to-end part ran");
    assert_eq!(wrong["value"].as_f64(), Some(0.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_checkpointed_recover_benchmark_resumes_killed_tasks_with_the_same_outputs() {
    let (output, report) = bench(&[
        "recover",
        "--checkpoints",
        "--agents",
        "2",
        "--slots",
        "2",
        "--kill",
        "1",
        "--lease-ms",
        "2000",
        "--interval-ms",
        "1000",
        "--state-mib",
        "1",
        "--limit",
        "15000000",
    ])
    .await;
    assert_checks_pass(&output, &report);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_private_benchmark_runs_sealed_and_clear_jobs_to_the_end() {
    let (output, report) = bench(&[
        "private",
        "--round-trips",
        "5",
        "--input-mib",
        "4",
        "--input-files",
        "4",
    ])
    .await;
    assert_checks_pass(&output, &report);
}
