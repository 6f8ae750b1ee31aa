//! Pipelines: a stage with its own tasks starts with the pipeline, a stage that reads another
//! waits until it completed and starts once under the id it was given, a stage whose source
//! did not complete is given up and so are its readers, and the pipeline ends with its stages.

use wire::{PipelineId, PipelineSubmission, StageInput, StageState, StageSubmission};

use super::*;

pub(super) fn submission(tasks: usize) -> JobSubmission {
    JobSubmission::new(
        "stage",
        BlobHash::of(b"module"),
        (0..tasks)
            .map(|index| TaskSpec {
                args: vec![index.to_string()],
                ..TaskSpec::default()
            })
            .collect(),
    )
}

fn module() -> StageModule {
    StageModule {
        module_bytes: 1 << 10,
        component_imports: None,
        wasm_features: Vec::new(),
    }
}

/// A pipeline of `map` (2 tasks) and `reduce` (reads all of map's outputs).
fn map_reduce(h: &mut Harness) -> (PipelineId, JobId, JobId) {
    let pipeline = PipelineSubmission {
        name: "count".to_owned(),
        stages: vec![
            StageSubmission {
                name: "map".to_owned(),
                input: None,
                job: submission(2),
            },
            StageSubmission {
                name: "reduce".to_owned(),
                input: Some(StageInput::All("map".to_owned())),
                job: submission(1),
            },
        ],
        locality: wire::Locality::Coordinator,
        copies: 0,
    };
    let (submitted, kinds) = h.run(SubmitPipeline {
        requester: OWNER,
        submission: pipeline,
        modules: vec![module(), module()],
        reusable: Vec::new(),
        unfinished_max: UNBOUNDED,
    });
    assert_eq!(kinds, ["PipelineSubmitted", "JobSubmitted", "StageStarted"]);
    let submitted = submitted.unwrap();
    let jobs: Vec<JobId> = submitted.stages.iter().map(|stage| stage.job_id).collect();
    (submitted.pipeline_id, jobs[0], jobs[1])
}

const UNBOUNDED: UnfinishedMax = UnfinishedMax {
    pool: u64::MAX / 4,
    per_requester: u64::MAX / 4,
    pool_bytes: u64::MAX / 4,
    per_requester_bytes: u64::MAX / 4,
};

fn run_all(h: &mut Harness, node: NodeId, outcome: Outcome) {
    for grant in h.take(node, 8) {
        h.report(node, grant.attempt_id, outcome.clone());
    }
    h.settle();
}

fn stages(h: &Harness, pipeline: PipelineId) -> Vec<StageState> {
    let status = h.pool.pipeline_status(pipeline, OWNER).unwrap();
    status.stages.iter().map(|stage| stage.state).collect()
}

#[test]
fn a_reading_stage_waits_for_its_source_then_starts_once_under_its_id() {
    let mut h = Harness::new();
    let node = h.node(1, 8);
    let (pipeline, map, reduce) = map_reduce(&mut h);
    assert!(h.pool.has_job(map));
    assert!(!h.pool.has_job(reduce), "the reading stage has no job yet");
    assert_eq!(
        stages(&h, pipeline),
        [StageState::Running, StageState::Waiting]
    );
    assert!(
        h.pool.stage_work().is_empty(),
        "nothing to start while map runs"
    );

    run_all(&mut h, node, Outcome::Succeeded);
    assert!(h.pool.stages_wanted(), "the driver is woken by map's end");
    let work = h.pool.stage_work();
    let [StageWork::Start { reads, stage, .. }] = work.as_slice() else {
        panic!("one stage to start: {work:?}");
    };
    assert_eq!((*reads, *stage), (map, 1));
    let tasks = vec![TaskSpec::default()];
    let start = |tasks: Vec<TaskSpec>| StartStage {
        pipeline,
        stage: 1,
        tasks,
        reusable: Vec::new(),
        unfinished_max: UNBOUNDED,
    };
    let (started, kinds) = h.run(start(tasks.clone()));
    assert_eq!(started, Ok(reduce));
    assert_eq!(kinds, ["JobSubmitted", "StageStarted"]);
    let (again, kinds) = h.run(start(tasks));
    assert!(matches!(again, Err(PoolError::Conflict(_))), "{again:?}");
    assert!(kinds.is_empty(), "a stage starts once");

    run_all(&mut h, node, Outcome::Succeeded);
    let work = h.pool.stage_work();
    assert_eq!(work, [StageWork::End { pipeline }]);
    let (_, kinds) = h.run(EndPipeline { pipeline });
    assert_eq!(kinds, ["PipelineEnded"]);
    let status = h.pool.pipeline_status(pipeline, OWNER).unwrap();
    assert_eq!(status.state, JobState::Completed);
    assert!(h.pool.stage_work().is_empty());
}

#[test]
fn a_failed_source_gives_up_its_readers_with_the_reason() {
    let mut h = Harness::new();
    let node = h.node(1, 8);
    let (pipeline, _, reduce) = map_reduce(&mut h);
    run_all(&mut h, node, Outcome::ExitCode { code: 1 });
    let work = h.pool.stage_work();
    let [StageWork::GiveUp { reason, .. }] = work.as_slice() else {
        panic!("the reader is given up: {work:?}");
    };
    assert_eq!(reason, "not run, because stage map failed");
    let (_, kinds) = h.run(GiveUpStage {
        pipeline,
        stage: 1,
        reason: reason.clone(),
    });
    assert_eq!(kinds, ["StageNotRun"]);
    h.run(EndPipeline { pipeline });
    let status = h.pool.pipeline_status(pipeline, OWNER).unwrap();
    assert_eq!(status.state, JobState::Failed);
    assert_eq!(
        stages(&h, pipeline),
        [StageState::Failed, StageState::NotRun]
    );
    assert!(!h.pool.has_job(reduce));
    let (started, kinds) = h.run(StartStage {
        pipeline,
        stage: 1,
        tasks: vec![TaskSpec::default()],
        reusable: Vec::new(),
        unfinished_max: UNBOUNDED,
    });
    assert!(
        started.is_err() && kinds.is_empty(),
        "a stage given up never starts"
    );
}

#[test]
fn an_abort_on_exit_code_in_one_stage_stops_the_whole_pipeline() {
    let mut h = Harness::new();
    let node = h.node(1, 8);
    let mut map = submission(2);
    map.on_failure = Some(Box::new(wire::OnFailure {
        abort_on: vec![42],
        ..wire::OnFailure::default()
    }));
    let stage = |name: &str, input: Option<StageInput>, job: JobSubmission| StageSubmission {
        name: name.to_owned(),
        input,
        job,
    };
    let pipeline = PipelineSubmission {
        name: "stops".to_owned(),
        stages: vec![
            stage("map", None, map),
            stage("side", None, submission(1)),
            stage("reduce", Some(StageInput::All("map".into())), submission(1)),
        ],
        locality: wire::Locality::Coordinator,
        copies: 0,
    };
    let (submitted, _) = h.run(SubmitPipeline {
        requester: OWNER,
        submission: pipeline,
        modules: vec![module(), module(), module()],
        reusable: Vec::new(),
        unfinished_max: UNBOUNDED,
    });
    let pipeline = submitted.unwrap().pipeline_id;
    let grants = h.take(node, 8);
    assert_eq!(grants.len(), 3, "map's two tasks and side's one run");
    let map_task = &grants[0];
    assert!(h.report(node, map_task.attempt_id, Outcome::ExitCode { code: 42 }));
    h.settle();
    assert_eq!(
        stages(&h, pipeline),
        [
            StageState::Failed,
            StageState::Cancelled,
            StageState::NotRun
        ]
    );
    let status = h.pool.pipeline_status(pipeline, OWNER).unwrap();
    let reason = status.stages[2].reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("exited with code 42, which stops the pipeline"),
        "{reason}"
    );
    assert_eq!(h.pool.stage_work(), [StageWork::End { pipeline }]);
    h.run(EndPipeline { pipeline });
    let status = h.pool.pipeline_status(pipeline, OWNER).unwrap();
    assert_eq!(status.state, JobState::Failed);
}

#[test]
fn a_pipeline_past_the_unfinished_bounds_is_refused_whole() {
    let mut h = Harness::new();
    let tight = UnfinishedMax {
        per_requester: 1,
        ..UNBOUNDED
    };
    let pipeline = PipelineSubmission {
        name: "big".to_owned(),
        stages: vec![StageSubmission {
            name: "map".to_owned(),
            input: None,
            job: submission(2),
        }],
        locality: wire::Locality::Coordinator,
        copies: 0,
    };
    let (refused, kinds) = h.run(SubmitPipeline {
        requester: OWNER,
        submission: pipeline,
        modules: vec![module()],
        reusable: Vec::new(),
        unfinished_max: tight,
    });
    assert!(
        matches!(refused, Err(PoolError::TooMuchUnfinished(_))),
        "{refused:?}"
    );
    assert!(kinds.is_empty(), "a refused pipeline records nothing");
}

#[test]
fn another_requester_cannot_see_a_pipeline() {
    let mut h = Harness::new();
    let (pipeline, _, _) = map_reduce(&mut h);
    let error = h
        .pool
        .pipeline_status(pipeline, RequesterId(99))
        .unwrap_err();
    assert!(matches!(error, PoolError::NotFound(_)), "{error:?}");
}

#[test]
fn an_ended_pipeline_is_purged_with_what_its_unrun_stages_named() {
    let mut h = Harness::new();
    a_whole_life(&mut h);
}

/// A pipeline whose reader is given up, ended and purged: every pipeline event, for the
/// replay test of every kind.
pub(super) fn a_whole_life(h: &mut Harness) {
    let node = h.node(1, 8);
    let (pipeline, _, reduce) = map_reduce(h);
    run_all(h, node, Outcome::ExitCode { code: 1 });
    let reason = "not run, because stage map failed".to_owned();
    h.run(GiveUpStage {
        pipeline,
        stage: 1,
        reason,
    });
    h.run(EndPipeline { pipeline });
    h.now_ms += 10_000;
    let (purged, kinds) = h.run(PurgeEnded {
        keep_ms: 1_000,
        jobs_max: 10,
    });
    assert_eq!(purged, 2, "the pipeline and its one job");
    assert_eq!(kinds, ["PipelinesPurged", "JobsPurged"]);
    assert!(!h.pool.has_pipeline(pipeline));
    h.settle();
    let writes: Vec<&Write> = h.out.writes.iter().collect();
    assert!(
        writes
            .iter()
            .any(|write| matches!(write, Write::PurgeJobs(jobs) if jobs == &[reduce])),
        "the unrun stage's id is purged in the store: {writes:?}"
    );
}

fn reusable_result() -> store::Reusable {
    store::Reusable {
        job_id: JobId(77),
        index: 0,
        node_id: NodeId(1),
        outcome: Outcome::Succeeded,
        usage: Usage::default(),
        stdout: None,
        stderr: None,
        outputs: vec![],
        verification: None,
    }
}

/// `map_reduce`'s map stage submitted again with the results found for its two tasks under
/// `keys`; the events it records.
fn map_again(h: &mut Harness, keys: [BlobHash; 2]) -> (PipelineId, JobId, Vec<&'static str>) {
    let map = submission(2);
    let found = (0..2)
        .map(|index| (index as u32, keys[index], reusable_result()))
        .collect();
    let pipeline = PipelineSubmission {
        name: "again".to_owned(),
        stages: vec![StageSubmission {
            name: "map".to_owned(),
            input: None,
            job: map,
        }],
        locality: wire::Locality::Coordinator,
        copies: 0,
    };
    let (submitted, kinds) = h.run(SubmitPipeline {
        requester: OWNER,
        submission: pipeline,
        modules: vec![module()],
        reusable: vec![found],
        unfinished_max: UNBOUNDED,
    });
    let submitted = submitted.unwrap();
    (submitted.pipeline_id, submitted.stages[0].job_id, kinds)
}

/// Both tasks take a result found under their own key: the stage ends without running.
pub(super) fn taken_whole(h: &mut Harness) {
    let map = submission(2);
    let keys = [0, 1].map(|index| wire::key::task_key(&map, index, &map.tasks[index as usize]));
    let node = h.node(1, 8);
    let (pipeline, job, kinds) = map_again(h, keys);
    assert_eq!(
        kinds,
        [
            "PipelineSubmitted",
            "JobSubmitted",
            "StageStarted",
            "TasksReused",
            "JobFinished"
        ]
    );
    assert!(h.take(node, 8).is_empty(), "nothing runs");
    assert_eq!(stages(h, pipeline), [StageState::Completed]);
    let status = h.pool.job_status(job, OWNER).unwrap();
    assert_eq!((status.tasks.succeeded, status.attempts), (2, 0));
}

#[test]
fn tasks_whose_key_has_a_result_take_it_and_never_run() {
    let mut h = Harness::new();
    taken_whole(&mut h);
}

#[test]
fn a_result_found_under_another_key_is_not_taken() {
    let mut h = Harness::new();
    let node = h.node(1, 8);
    let stale = [BlobHash::of(b"another key"), BlobHash::of(b"and another")];
    let (_, job, kinds) = map_again(&mut h, stale);
    assert!(!kinds.contains(&"TasksReused"), "{kinds:?}");
    assert_eq!(h.take(node, 8).len(), 2, "both tasks run");
    let status = h.pool.job_status(job, OWNER).unwrap();
    assert_eq!(status.tasks.succeeded, 0);
}

/// `map_reduce` cancelled while its map runs: the map's job is cancelled, the reduce never
/// runs, and the pipeline ends cancelled.
pub(super) fn cancelled_mid_map(h: &mut Harness) {
    let (pipeline, map, _) = map_reduce(h);
    let cancel = || CancelPipeline {
        pipeline,
        requester: OWNER,
    };
    let (cancelled, kinds) = h.run(cancel());
    assert_eq!(cancelled, Ok(()));
    assert_eq!(
        kinds,
        [
            "PipelineCancelled",
            "JobCancelled",
            "StageNotRun",
            "PipelineEnded"
        ]
    );
    assert_eq!(
        stages(h, pipeline),
        [StageState::Cancelled, StageState::NotRun]
    );
    let status = h.pool.pipeline_status(pipeline, OWNER).unwrap();
    assert_eq!(status.state, JobState::Cancelled);
    assert_eq!(
        status.stages[1].reason.as_deref(),
        Some("not run: the pipeline was cancelled")
    );
    assert_eq!(
        h.pool.job_status(map, OWNER).unwrap().state,
        JobState::Cancelled
    );
    let (again, kinds) = h.run(cancel());
    assert!(matches!(again, Err(PoolError::Conflict(_))), "{again:?}");
    assert!(kinds.is_empty());
    let (others, _) = h.run(CancelPipeline {
        pipeline,
        requester: RequesterId(99),
    });
    assert!(matches!(others, Err(PoolError::NotFound(_))), "{others:?}");
}

#[test]
fn a_cancelled_pipeline_stops_its_running_stage_and_never_runs_the_others() {
    let mut h = Harness::new();
    cancelled_mid_map(&mut h);
}
