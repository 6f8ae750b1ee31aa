//! `crowdcloud bench stages`: a map → shuffle → reduce pipeline through a real coordinator and
//! agents, against the same tasks run as independent jobs side by side, and the same pipeline
//! run again, which takes every result by key and runs nothing.
//!
//! The maps are `wordfreq map PARTS` with no input (each writes PARTS empty part files), the
//! reduces `wordfreq reduce`, each reading part *i* of every map: MAPS × PARTS edges. The
//! independent run submits the same maps and as many reduces without inputs as two jobs at
//! once, so the difference is what the pipeline adds: waiting for the maps, reading their
//! outputs and making the reduces, and each reduce reading MAPS files.
//!
//! Then a large graph, for scale: maps → shuffle → reduces that each write FANOUT files → one
//! task per such file, 100,000 tasks and 1,098,000 edges by default (10^6 of them in the
//! shuffle). It reports the submit, the time to its end and the coordinator's peak memory, and
//! checks that every task ran.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use wire::{
    BlobHash, JobState, JobSubmission, PipelineStatus, PipelineSubmission, StageInput,
    StageSubmission, TaskSpec,
};

use crate::pool::{CoordinatorOptions, LocalPool, noop_job};
use crate::report::{Better, Machine};
use crate::{BenchError, Check, Figure, Report};

#[derive(Debug, Clone, Serialize)]
pub struct StagesOptions {
    pub maps: u32,
    pub parts: u32,
    pub agents: u32,
    pub slots: u32,
    pub scale: ScaleGraph,
    pub churn: crate::churn::ChurnOptions,
    pub locality: crate::locality::LocalityOptions,
}

/// The large graph: `maps` maps, each writing a part per reduce; `reduces` reduces, each
/// reading its part of every map and writing `fanout` files; one task per such file.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ScaleGraph {
    pub maps: u32,
    pub reduces: u32,
    pub fanout: u32,
}

impl ScaleGraph {
    fn tasks(&self) -> u64 {
        u64::from(self.maps) + u64::from(self.reduces) * (1 + u64::from(self.fanout))
    }

    fn edges(&self) -> u64 {
        u64::from(self.reduces) * (u64::from(self.maps) + u64::from(self.fanout))
    }
}

/// What one run of the pipeline took and made.
pub(crate) struct PipelineRun {
    pub(crate) status: PipelineStatus,
    pub(crate) submit: Duration,
    pub(crate) end: Duration,
}

pub async fn run(binary: &Path, options: &StagesOptions) -> Result<Report, BenchError> {
    // Churn first: the large graph leaves a million files just deleted, which slows creating
    // files for a while on some file systems (ext4 without a journal), and the calm run would
    // pay for it more than the churned one after it.
    let churned = crate::churn::run(binary, &options.churn).await?;
    let (locality_figures, locality_checks) =
        crate::locality::run(binary, &options.locality).await?;
    let mut pool = LocalPool::start(binary, &CoordinatorOptions::default()).await?;
    for index in 0..options.agents {
        pool.spawn_agent(&format!("bench-{index}"), options.slots)?;
    }
    let measured = measure(&pool, options).await;
    let rss = pool.coordinator_pid().and_then(crate::pool::rss_bytes);
    let peak_rss = pool.coordinator_pid().and_then(crate::pool::peak_rss_bytes);
    pool.stop().await;
    let mut measured = measured?;
    let mut figures = shuffle_figures(options, &measured);
    figures.extend(scale_figures(options.scale, &measured.large));
    figures.extend(churn_figures(&options.churn, &churned));
    figures.extend(locality_figures);
    measured.checks.extend(churned.checks);
    measured.checks.extend(locality_checks);
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    if let Some(peak_rss) = peak_rss {
        figures.push(Figure::new(
            "coordinator peak RSS, the whole run",
            mib(peak_rss),
            "MiB",
            Better::Lower,
        ));
    }
    if let Some(rss) = rss {
        figures.push(Figure::new(
            "coordinator RSS at the end",
            mib(rss),
            "MiB",
            Better::Lower,
        ));
    }
    Ok(Report {
        benchmark: "stages".to_owned(),
        machine: Machine::this(),
        parameters: serde_json::to_value(options).unwrap_or_default(),
        figures,
        checks: measured.checks,
    })
}

fn ms(took: Duration) -> f64 {
    took.as_secs_f64() * 1000.0
}

fn shuffle_figures(options: &StagesOptions, measured: &Measured) -> Vec<Figure> {
    let tasks = f64::from(options.maps + options.parts);
    let per_s = |took: Duration| tasks / took.as_secs_f64();
    vec![
        Figure::new(
            "pipeline submit",
            ms(measured.first.submit),
            "ms",
            Better::Lower,
        ),
        Figure::new(
            "pipeline, submit to the last reduce",
            per_s(measured.first.end),
            "tasks/s",
            Better::Higher,
        )
        .baseline(
            "the same tasks as independent jobs",
            Some(per_s(measured.independent)),
        ),
        Figure::new(
            "shuffle edges",
            (options.maps * options.parts).into(),
            "edges",
            Better::Higher,
        ),
        Figure::new(
            "the same pipeline again (every result taken)",
            ms(measured.again.end),
            "ms",
            Better::Lower,
        )
        .baseline("its first run", Some(ms(measured.first.end))),
    ]
}

fn scale_figures(graph: ScaleGraph, large: &PipelineRun) -> Vec<Figure> {
    let tasks = graph.tasks() as f64;
    vec![
        Figure::new("large graph: tasks", tasks, "tasks", Better::Higher),
        Figure::new(
            "large graph: edges",
            graph.edges() as f64,
            "edges",
            Better::Higher,
        ),
        Figure::new("large graph: submit", ms(large.submit), "ms", Better::Lower),
        Figure::new(
            "large graph: submit to its end",
            large.end.as_secs_f64(),
            "s",
            Better::Lower,
        ),
        Figure::new(
            "large graph: tasks per second",
            tasks / large.end.as_secs_f64(),
            "tasks/s",
            Better::Higher,
        ),
    ]
}

fn churn_figures(
    options: &crate::churn::ChurnOptions,
    runs: &crate::churn::ChurnRuns,
) -> Vec<Figure> {
    let secs = |took: Duration| took.as_secs_f64();
    let kept = match options.locality {
        wire::Locality::Nodes => ", parts kept on the nodes",
        wire::Locality::Coordinator => "",
    };
    let name = format!(
        "{} x {} shuffle{kept}, {:.0} % of {} agents killed and back in {} ms at any time, \
         median of {}",
        options.maps,
        options.parts,
        options.down_fraction * 100.0,
        options.agents,
        options.down_ms,
        runs.pairs.len()
    );
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        let middle = values.len() / 2;
        match values.len() % 2 {
            0 => (values[middle - 1] + values[middle]) / 2.0,
            _ => values[middle],
        }
    };
    let churned = median(runs.pairs.iter().map(|(_, c)| secs(*c)).collect());
    let steady = median(runs.pairs.iter().map(|(s, _)| secs(*s)).collect());
    let cost = median(
        runs.pairs
            .iter()
            .map(|(s, c)| secs(*c) / secs(*s))
            .collect(),
    );
    let steady_name = format!(
        "the same shuffle on the {} agents churn leaves up, none coming or going, median",
        runs.steady_agents
    );
    let floor = 1.0 / (1.0 - options.down_fraction);
    vec![
        Figure::new(&name, churned, "s", Better::Lower)
            .baseline("the same shuffle on all agents, no churn", Some(secs(runs.calm))),
        Figure::new(
            &format!(
                "the shuffle's time under churn against none on all {} agents (the capacity away sets a floor of {floor:.2}x where agents bound it)",
                options.agents
            ),
            churned / secs(runs.calm),
            "x",
            Better::Lower,
        ),
        Figure::new(
            "what churn itself costs: each churned shuffle against the steady one of the same capacity before it, median",
            cost,
            "x",
            Better::Lower,
        )
        .target(1.2),
        Figure::new(&steady_name, steady, "s", Better::Lower),
        Figure::new(
            "agents killed during the churned shuffles",
            f64::from(runs.kills),
            "agents",
            Better::Lower,
        ),
    ]
}

/// What the runs took and made.
struct Measured {
    independent: Duration,
    first: PipelineRun,
    again: PipelineRun,
    large: PipelineRun,
    checks: Vec<Check>,
}

async fn measure(pool: &LocalPool, options: &StagesOptions) -> Result<Measured, BenchError> {
    pool.wait_online(options.agents as usize).await?;
    let module = pool.owner.upload_bytes(guests::WORDFREQ.into()).await?;
    // Every agent compiles and caches the module before anything is timed.
    let warm_up = pool
        .owner
        .submit(&stage_job(
            module,
            "warm-up",
            options.agents * options.slots,
            &["count"],
        ))
        .await?;
    pool.job_end(warm_up.job_id, None).await?;

    let started = Instant::now();
    let parts = options.parts.to_string();
    let maps = stage_job(module, "maps", options.maps, &["map", &parts]);
    let reduces = stage_job(module, "reduces", options.parts, &["reduce"]);
    let jobs = [
        pool.owner.submit(&maps).await?,
        pool.owner.submit(&reduces).await?,
    ];
    for submitted in &jobs {
        pool.job_end(submitted.job_id, None).await?;
    }
    let independent = started.elapsed();

    let first = run_pipeline(pool, module, options).await?;
    let again = run_pipeline(pool, module, options).await?;
    let mut checks = checks(pool, options, &first, &again).await?;
    let probe = pool.owner.upload_bytes(guests::PROBE.into()).await?;
    let large = run_large(pool, (module, probe), options.scale).await?;
    checks.push(large_check(options.scale, &large));
    Ok(Measured {
        independent,
        first,
        again,
        large,
        checks,
    })
}

/// A job of `tasks` runs of `wordfreq args`. Its name is in its env, so the tasks of the
/// independent run and of the pipeline have different keys and the pipeline takes no result of
/// the independent run.
pub(crate) fn stage_job(module: BlobHash, name: &str, tasks: u32, args: &[&str]) -> JobSubmission {
    let task = TaskSpec {
        args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        ..TaskSpec::default()
    };
    let mut job = JobSubmission {
        tasks: vec![task; tasks as usize],
        ..noop_job(name, module, 0)
    };
    job.env.insert("BENCH_JOB".to_owned(), name.to_owned());
    job
}

async fn run_pipeline(
    pool: &LocalPool,
    module: BlobHash,
    options: &StagesOptions,
) -> Result<PipelineRun, BenchError> {
    let parts = options.parts.to_string();
    let pipeline = PipelineSubmission {
        name: "shuffle".to_owned(),
        stages: vec![
            StageSubmission {
                name: "map".to_owned(),
                input: None,
                job: stage_job(module, "map", options.maps, &["map", &parts]),
            },
            StageSubmission {
                name: "reduce".to_owned(),
                input: Some(StageInput::Partition {
                    stage: "map".to_owned(),
                    parts: options.parts,
                }),
                job: stage_job(module, "reduce", 1, &["reduce"]),
            },
        ],
        locality: wire::Locality::Coordinator,
        copies: 0,
    };
    wait_pipeline(pool, &pipeline, Duration::from_secs(600)).await
}

/// Submits `pipeline` and waits for its end, for at most `limit`.
pub(crate) async fn wait_pipeline(
    pool: &LocalPool,
    pipeline: &PipelineSubmission,
    limit: Duration,
) -> Result<PipelineRun, BenchError> {
    let started = Instant::now();
    let submitted = pool.owner.submit_pipeline(pipeline).await?;
    let submit = started.elapsed();
    let status = pool
        .owner
        .wait_pipeline_end(submitted.pipeline_id, limit)
        .await?;
    if !status.state.is_terminal() {
        let id = submitted.pipeline_id;
        return Err(BenchError::Setup(format!(
            "pipeline {id} did not end in {} s",
            limit.as_secs()
        )));
    }
    Ok(PipelineRun {
        status,
        submit,
        end: started.elapsed(),
    })
}

/// The large graph through the pool: `wordfreq` maps, `probe files` reduces and `probe echo`
/// leaves.
async fn run_large(
    pool: &LocalPool,
    (wordfreq, probe): (BlobHash, BlobHash),
    graph: ScaleGraph,
) -> Result<PipelineRun, BenchError> {
    let parts = graph.reduces.to_string();
    let fanout = graph.fanout.to_string();
    let stage = |name: &str, input, job| StageSubmission {
        name: name.to_owned(),
        input,
        job,
    };
    let pipeline = PipelineSubmission {
        name: "large".to_owned(),
        stages: vec![
            stage(
                "map",
                None,
                stage_job(wordfreq, "large-map", graph.maps, &["map", &parts]),
            ),
            stage(
                "reduce",
                Some(StageInput::Partition {
                    stage: "map".to_owned(),
                    parts: graph.reduces,
                }),
                stage_job(probe, "large-reduce", 1, &["files", &fanout]),
            ),
            stage(
                "leaf",
                Some(StageInput::Each("reduce".to_owned())),
                stage_job(probe, "large-leaf", 1, &["echo", "leaf"]),
            ),
        ],
        locality: wire::Locality::Coordinator,
        copies: 0,
    };
    wait_pipeline(pool, &pipeline, Duration::from_secs(3600)).await
}

fn large_check(graph: ScaleGraph, large: &PipelineRun) -> Check {
    let succeeded: Vec<u32> = large
        .status
        .stages
        .iter()
        .map(|stage| stage.counts.succeeded)
        .collect();
    let expected = [graph.maps, graph.reduces, graph.reduces * graph.fanout];
    Check::new(
        format!(
            "the large graph completed: {} maps, {} reduces, {} leaves",
            expected[0], expected[1], expected[2]
        ),
        large.status.state == JobState::Completed && succeeded == expected,
    )
}

async fn checks(
    pool: &LocalPool,
    options: &StagesOptions,
    first: &PipelineRun,
    again: &PipelineRun,
) -> Result<Vec<Check>, BenchError> {
    let reduce = first.status.stages[1].job_id;
    let inputs_read = pool.owner.all_tasks(reduce).await?.len() as u32;
    let mut attempts_again = 0;
    for stage in &again.status.stages {
        attempts_again += pool.owner.job(stage.job_id).await?.attempts;
    }
    Ok(vec![
        Check::new(
            "the pipeline completed, every map and every reduce",
            first.status.state == JobState::Completed
                && first.status.stages[0].counts.succeeded == options.maps
                && first.status.stages[1].counts.succeeded == options.parts,
        ),
        Check::new(
            format!("one reduce per part ({})", options.parts),
            inputs_read == options.parts,
        ),
        Check::new(
            "run again, it completed and no task ran",
            again.status.state == JobState::Completed && attempts_again == 0,
        ),
    ])
}
