//! The API's self-description and the pool's observability surfaces.

use std::time::Duration;

use wire::{Deterministic, JobState, JobSubmission, Limits, Requirements};

use crate::harness::{Pool, probe};

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_metrics_and_web_app_are_served() {
    let pool = Pool::start(5_000).await;
    let http = reqwest::Client::new();
    let openapi: serde_json::Value = http
        .get(format!("{}/v1/openapi.json", pool.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/jobs",
        "/v1/nodes/lease",
        "/v1/nodes/report",
        "/v1/blobs/{hash}",
    ] {
        assert!(openapi["paths"].get(path).is_some(), "{path} is documented");
    }
    assert!(
        openapi["components"]["schemas"]
            .get("JobSubmission")
            .is_some()
    );
    assert!(
        openapi["paths"].get("/metrics").is_some(),
        "/metrics is documented"
    );
    // The gauges tell how busy the pool is: they take an API token, as a Prometheus scraper
    // sends one.
    let anonymous = http
        .get(format!("{}/metrics", pool.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let metrics = http
        .get(format!("{}/metrics", pool.url))
        .bearer_auth(&pool.owner_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("crowdcloud_nodes_online 0"), "{metrics}");
    assert!(
        metrics.contains("crowdcloud_heartbeat_seconds_count 0"),
        "{metrics}"
    );
    let page = http
        .get(&pool.url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<title>crowdcloud</title>"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deterministic_job_gives_the_same_bytes_and_fuel_on_different_agents() {
    let pool = Pool::start(5_000).await;
    let _agents = [
        pool.agent_labeled("one", 1, &["box=one"]).await,
        pool.agent_labeled("two", 1, &["box=two"]).await,
    ];
    pool.wait_online(&["one", "two"]).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let run_on = |label: &'static str| {
        let pool = &pool;
        async move {
            let mut requirements = Requirements::default();
            requirements
                .labels
                .insert("box".to_owned(), label.to_owned());
            let submission = JobSubmission {
                name: "same everywhere".to_owned(),
                module,
                env: Default::default(),
                mounts: vec![],
                requirements,
                limits: Limits::default(),
                max_attempts: 1,
                replicas: 1,
                deterministic: Some(Deterministic { seed: 11 }),
                verify: None,
                validator: None,
                success_exit_codes: Vec::new(),
                tasks: vec![
                    probe(&["random", "64"]),
                    probe(&["clock"]),
                    probe(&["floats"]),
                ],
                checkpoint: None,
                on_failure: None,
                private: None,
            };
            let job = pool.owner.submit(&submission).await.unwrap().job_id;
            let status = pool.finish(job, Duration::from_secs(60)).await;
            assert_eq!(status.state, JobState::Completed);
            assert_eq!(
                status.nodes[0].node_name, label,
                "the job ran where it was sent"
            );
            pool.owner.all_tasks(job).await.unwrap()
        }
    };
    let (on_one, on_two) = (run_on("one").await, run_on("two").await);
    for (a, b) in on_one.iter().zip(&on_two) {
        assert_eq!(
            a.stdout.unwrap().hash,
            b.stdout.unwrap().hash,
            "task {}",
            a.index
        );
        assert_eq!(
            a.usage.unwrap().fuel_used,
            b.usage.unwrap().fuel_used,
            "task {}",
            a.index
        );
    }
    assert_ne!(on_one[0].stdout, on_one[1].stdout);
}
