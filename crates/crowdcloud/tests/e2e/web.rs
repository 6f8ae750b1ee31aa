//! What the web app reads beside the CLI's routes: the pool's presets, which any requester
//! runs without an upload; a job's attempts for its timeline; its results as one zip; the
//! history of the pool's figures; blobs served as images only when they are images; and the
//! app's own files under a strict policy.

use std::io::Read;
use std::time::Duration;

use wire::{JobState, TaskSpec};

use crate::harness::{Pool, eventually};

fn render_tile(x0: u32, y0: u32) -> TaskSpec {
    let args = [
        "--width",
        "32",
        "--height",
        "16",
        "--x0",
        &x0.to_string(),
        "--y0",
        &y0.to_string(),
        "--w",
        "16",
        "--h",
        "16",
        "--samples",
        "1",
    ];
    TaskSpec {
        args: args.map(str::to_owned).to_vec(),
        ..TaskSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_requester_runs_the_render_preset_without_uploading_and_gets_its_attempts_and_zip() {
    let pool = Pool::start(5_000).await;
    let _agent = pool.agent("worker", 2).await;
    pool.wait_online(&["worker"]).await;
    // A requester that has uploaded nothing.
    let (phone, phone_token) = pool.requester_with_token("phone").await;
    let presets = phone.presets().await.unwrap().presets;
    let render = presets
        .iter()
        .find(|p| p.name == "render")
        .expect("a render preset");
    assert_eq!(render.module, wire::BlobHash::of(guests::RENDER));
    let mut submission = pool.submission(
        render.module,
        vec![render_tile(0, 0), render_tile(16, 0)],
        wire::Limits::default(),
    );
    submission.name = "render 32x16".to_owned();
    let job = phone.submit(&submission).await.unwrap().job_id;
    let status = eventually("the render to end", Duration::from_secs(120), || async {
        let status = phone
            .wait_job(job, 0, Duration::from_millis(500))
            .await
            .ok()?;
        status.state.is_terminal().then_some(status)
    })
    .await;
    assert_eq!(status.state, JobState::Completed);

    let attempts = phone.attempts(job, 0).await.unwrap();
    assert_eq!(attempts.attempts.len(), 2);
    assert_eq!(attempts.next_offset, None);
    let worker = pool.node_id("worker").await;
    for attempt in &attempts.attempts {
        assert_eq!(attempt.node_id, worker);
        assert_eq!(attempt.state, "succeeded");
        let finished = attempt.finished_at_ms.expect("an ended attempt has an end");
        assert!(attempt.granted_at_ms <= finished);
        assert_eq!(attempt.outcome, Some(wire::Outcome::Succeeded));
    }
    // Another requester sees none of it.
    let stranger = pool.requester("stranger").await;
    assert!(stranger.attempts(job, 0).await.is_err());

    let (_, stranger_token) = pool.requester_with_token("zipper").await;
    let zip = results_zip(&pool, &stranger_token, job).await;
    assert_eq!(zip.status(), 404, "a job is zipped only for its requester");
    let tasks = phone.all_tasks(job).await.unwrap();
    let bytes = results_zip(&pool, &phone_token, job).await;
    assert_eq!(bytes.headers()["content-type"], "application/zip");
    let bytes = bytes.bytes().await.unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    for task in &tasks {
        let tile = task.outputs.iter().find(|f| f.path == "tile.ppm").unwrap();
        let mut zipped = Vec::new();
        archive
            .by_name(&format!("{}/output/tile.ppm", task.index))
            .unwrap()
            .read_to_end(&mut zipped)
            .unwrap();
        assert_eq!(zipped, phone.download(&tile.hash).await.unwrap());
        assert!(archive.by_name(&format!("{}/stdout", task.index)).is_ok());
    }
}

async fn results_zip(pool: &Pool, token: &str, job: wire::JobId) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}/v1/jobs/{job}/results.zip", pool.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_are_images_only_when_their_bytes_are_and_the_app_is_served_under_its_policy() {
    let pool = Pool::start(5_000).await;
    let http = reqwest::Client::new();
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0".to_vec();
    let html = b"<html><script>alert(1)</script></html>".to_vec();
    for (bytes, served_as) in [(png, "image/png"), (html, "application/octet-stream")] {
        let hash = pool.owner.upload_bytes(bytes.clone().into()).await.unwrap();
        let response = http
            .get(format!("{}/v1/blobs/{hash}", pool.url))
            .bearer_auth(&pool.owner_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["content-type"], served_as);
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert!(
            response.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .starts_with("sandbox")
        );
        assert_eq!(response.bytes().await.unwrap(), bytes);
    }
    let page = http.get(&pool.url).send().await.unwrap();
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"),
        "{policy}"
    );
    let text = page.text().await.unwrap();
    assert!(text.contains("/app/js/main.js"), "{text}");
    let script = http
        .get(format!("{}/app/js/main.js", pool.url))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    for missing in [
        "/app/nothing.js",
        "/app/../Cargo.toml",
        "/app/%2e%2e/Cargo.toml",
    ] {
        let response = http
            .get(format!("{}{missing}", pool.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{missing}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pool_keeps_a_history_of_its_figures_and_counts_ended_tasks() {
    let pool = Pool::start(5_000).await;
    let _agent = pool.agent("worker", 1).await;
    pool.wait_online(&["worker"]).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let task = TaskSpec {
        args: vec!["echo".to_owned(), "hi".to_owned()],
        ..TaskSpec::default()
    };
    let job = pool
        .submit(module, vec![task], wire::Limits::default())
        .await;
    assert_eq!(
        pool.finish(job, Duration::from_secs(60)).await.state,
        JobState::Completed
    );
    // The first sample is taken as the coordinator starts.
    let history = pool.owner.metrics_history().await.unwrap();
    assert_eq!(history.interval_ms, 10_000);
    assert!(!history.samples.is_empty());
    let metrics = pool.owner.metrics().await.unwrap();
    for line in [
        r#"crowdcloud_tasks_ended_total{state="succeeded"} 1"#,
        r#"crowdcloud_attempts_ended_total{end="succeeded"} 1"#,
        "crowdcloud_nodes_online 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    assert!(
        metrics.contains("crowdcloud_report_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("crowdcloud_blob_bytes_in_total"),
        "{metrics}"
    );
}
