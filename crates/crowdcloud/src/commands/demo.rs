//! `demo`: the family server on one machine. A coordinator, several agents as separate
//! processes with their own identities, a ray-traced picture split into tiles, a progress bar,
//! and the tiles stitched into a PNG with who rendered how many.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use client::Client;
use wire::{JobState, JobSubmission, TaskSpec};

use crate::cli::DemoArgs;
use crate::commands::service::{ServiceOptions, serve};
use crate::commands::submit::follow;
use crate::output::{print_json, print_table};
use crate::picture::{Picture, decode_ppm};

#[derive(Debug, Serialize)]
struct Summary {
    picture: PathBuf,
    width: u32,
    height: u32,
    tiles: u32,
    agents: u32,
    slots_per_agent: u32,
    render_seconds: f64,
    tiles_per_node: Vec<(String, u32)>,
    attempts: u64,
}

/// The demo's coordinator: on loopback, everything in `data_dir`, the defaults of `up`.
fn demo_service(data_dir: &std::path::Path) -> ServiceOptions {
    ServiceOptions {
        data_dir: data_dir.join("coordinator"),
        listen: "127.0.0.1:0".to_owned(),
        pool_name: "demo".to_owned(),
        lease_ms: 5_000,
        durability: coordinator::Durability::Full,
        database_url: None,
        blobs: None,
        keep_results_ms: coordinator::KEEP_RESULTS_MS_DEFAULT,
        nodes_per_join_token_max: coordinator::NODES_PER_JOIN_TOKEN_MAX_DEFAULT,
        silent_node_purge_ms: coordinator::SILENT_NODE_PURGE_MS_DEFAULT,
        bounds: Default::default(),
        connections: coordinator::ConnectionLimits::default(),
        verifying: super::service::Verifying::FAMILY,
        lead: super::service::Lead::ALONE,
    }
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.agents == 0 || args.slots == 0 || args.tile == 0 || args.width == 0 || args.height == 0
    {
        bail!("--agents, --slots, --tile, --width and --height must all be at least 1");
    }
    let temporary = tempfile::tempdir()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temporary.path().to_owned());
    let served = serve(&demo_service(&data_dir)).await?;
    if !args.json {
        eprintln!(
            "coordinator at {}; starting {} agents",
            served.url, args.agents
        );
    }
    let mut agents = Vec::new();
    for index in 0..args.agents {
        agents.push(spawn_agent(
            &served.url,
            &served.join_token,
            &data_dir,
            index,
            args.slots,
        )?);
    }
    let client = Client::new(&served.url, Some(served.owner_token.clone()))?;
    let outcome = render(&client, &args).await;
    for agent in &mut agents {
        stop_agent(agent).await;
    }
    served.stop().await?;
    let summary = outcome?;
    if args.json {
        print_json(&summary)?;
    } else {
        println!(
            "rendered {}x{} in {} tiles on {} agents ({} slots each) in {:.1} s -> {}",
            summary.width,
            summary.height,
            summary.tiles,
            summary.agents,
            summary.slots_per_agent,
            summary.render_seconds,
            summary.picture.display()
        );
        let rows: Vec<Vec<String>> = summary
            .tiles_per_node
            .iter()
            .map(|(node, tiles)| vec![node.clone(), tiles.to_string()])
            .collect();
        print_table(&["NODE", "TILES"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

fn spawn_agent(
    url: &str,
    join_token: &str,
    data_dir: &Path,
    index: u32,
    slots: u32,
) -> anyhow::Result<tokio::process::Child> {
    let agent_dir = data_dir.join(format!("agent-{index}"));
    std::fs::create_dir_all(&agent_dir)?;
    let log = std::fs::File::create(agent_dir.join("agent.log"))?;
    tokio::process::Command::new(std::env::current_exe()?)
        .args(["agent", "--coordinator", url, "--join-token", join_token])
        .arg("--data-dir")
        .arg(&agent_dir)
        .args([
            "--slots",
            &slots.to_string(),
            "--name",
            &format!("demo-agent-{index}"),
            // The demo borrows this machine on purpose, whoever is at it.
            "--dedicated",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start an agent process")
}

/// Asks an agent to stop (SIGTERM: it finishes or releases its work), then waits for it.
async fn stop_agent(agent: &mut tokio::process::Child) {
    if let Some(pid) = agent
        .id()
        .and_then(|pid| rustix::process::Pid::from_raw(pid as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(Duration::from_secs(15), agent.wait())
        .await
        .is_err()
    {
        let _ = agent.kill().await;
    }
}

async fn wait_for_nodes(client: &Client, count: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let online = client
            .nodes()
            .await?
            .nodes
            .iter()
            .filter(|node| node.state == wire::NodeState::Online)
            .count();
        if online >= count as usize {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "only {online} of {count} agents joined within a minute; see agent.log in the data dir"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct TileJob {
    x0: u32,
    y0: u32,
}

async fn render(client: &Client, args: &DemoArgs) -> anyhow::Result<Summary> {
    wait_for_nodes(client, args.agents).await?;
    let module = client
        .upload_bytes(bytes::Bytes::from_static(guests::RENDER))
        .await?;
    let mut tiles = Vec::new();
    let mut tasks = Vec::new();
    for y0 in (0..args.height).step_by(args.tile as usize) {
        for x0 in (0..args.width).step_by(args.tile as usize) {
            let w = args.tile.min(args.width - x0);
            let h = args.tile.min(args.height - y0);
            tasks.push(TaskSpec {
                args: [
                    "--width",
                    &args.width.to_string(),
                    "--height",
                    &args.height.to_string(),
                    "--x0",
                    &x0.to_string(),
                    "--y0",
                    &y0.to_string(),
                    "--w",
                    &w.to_string(),
                    "--h",
                    &h.to_string(),
                    "--samples",
                    &args.samples.to_string(),
                ]
                .map(str::to_owned)
                .to_vec(),
                ..TaskSpec::default()
            });
            tiles.push(TileJob { x0, y0 });
        }
    }
    let submission = JobSubmission::new("demo-render", module, tasks);
    let started = Instant::now();
    let submitted = client.submit(&submission).await?;
    let status = follow(client, submitted.job_id, !args.json).await?;
    let render_seconds = started.elapsed().as_secs_f64();
    if status.state != JobState::Completed {
        bail!(
            "the render job ended {}: {}; see `crowdcloud status {} --tasks`",
            status.state,
            crate::output::counts_line(&status.tasks),
            status.job_id
        );
    }
    let mut picture = Picture::new(args.width, args.height);
    for task in client.all_tasks(submitted.job_id).await? {
        let output = task
            .outputs
            .iter()
            .find(|file| file.path == "tile.ppm")
            .with_context(|| format!("tile {} left no tile.ppm", task.index))?;
        let tile = decode_ppm(&client.download(&output.hash).await?)?;
        let place = &tiles[task.index as usize];
        picture.place(&tile, place.x0, place.y0)?;
    }
    picture.save_png(&args.out)?;
    Ok(Summary {
        picture: args.out.clone(),
        width: args.width,
        height: args.height,
        tiles: submitted.tasks,
        agents: args.agents,
        slots_per_agent: args.slots,
        render_seconds,
        tiles_per_node: status
            .nodes
            .iter()
            .map(|share| (share.node_name.clone(), share.tasks_succeeded))
            .collect(),
        attempts: status.attempts,
    })
}
