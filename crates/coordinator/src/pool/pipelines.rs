//! Pipelines in the pool: stages, each a job, that start once the stages they read completed.
//!
//! A pipeline is submitted whole. Every stage gets its job id then, so the answer names them
//! all; a stage with its own tasks starts at once, and a stage that reads another waits, its
//! job's submission (with the one template task) kept in the pipeline's row. What starts a
//! waiting stage is the stage driver beside the pool (`crate::stages`): the outputs it is made
//! from are in the store, not here, so the driver reads them and hands the tasks back in a
//! [`super::StartStage`] command. A stage whose source did not complete is given up with the
//! reason, and so in turn is every stage that reads it, so nothing waits for ever.
//!
//! Invariants:
//! - A stage is exactly one of: waiting (`waiting` set), started (its job is in `jobs`, or was
//!   purged after the pipeline ended), or not run (`not_run` set).
//! - `stage_of` maps the job id of every stage of every pipeline here, started or not; no
//!   other job has one of those ids.
//! - A pipeline has ended (`ended_at_ms` set) exactly when none of its stages waits and every
//!   started stage's job has ended.

use std::collections::HashMap;

use store::{PipelineRow, StageRow, WaitingStage};
use wire::{
    JobId, JobState, JobSubmission, PipelineId, PipelineStatus, PipelineSubmission,
    PipelineSubmitted, RequesterId, StageInput, StageJob, StageState, StageStatus, TaskCounts,
    TaskSpec,
};

use super::events::Event;
use super::{Found, Held, NewJob, Outbox, PoolError, PoolState, UnfinishedMax};
use crate::env::Entropy;

/// The low bits of a job id, drawn at random; the bits above are its submission's millisecond.
const JOB_ID_RANDOM_BITS: u32 = 22;

/// The pool's pipelines.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Pipelines {
    rows: HashMap<PipelineId, PipelineRow>,
    stage_of: HashMap<JobId, (PipelineId, usize)>,
}

impl Pipelines {
    /// The pipeline `job` is a stage of, and the stage's index.
    pub(super) fn stage_of_job(&self, job: JobId) -> Option<(&PipelineRow, usize)> {
        let (pipeline, index) = self.stage_of.get(&job)?;
        Some((self.rows.get(pipeline)?, *index))
    }
}

/// What a waiting stage needs, as [`PoolState::stage_work`] finds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StageWork {
    /// The stage it reads completed: make its tasks from `reads`' outputs.
    Start {
        pipeline: PipelineId,
        stage: usize,
        reads: JobId,
        input: StageInput,
        requester: RequesterId,
        /// Its job as the pool will keep it, with the one template task.
        job: Box<JobSubmission>,
    },
    /// It can never run, for `reason`.
    GiveUp {
        pipeline: PipelineId,
        stage: usize,
        reason: String,
    },
    /// Every stage ended.
    End { pipeline: PipelineId },
}

/// What the coordinator learnt of a stage's module when the pipeline came: what its job
/// needs of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StageModule {
    pub(crate) module_bytes: u64,
    pub(crate) component_imports: Option<Vec<String>>,
    pub(crate) wasm_features: Vec<String>,
}

impl PoolState {
    /// Takes a pipeline: every stage's job is checked against the pool now, as a job would be,
    /// so a stage that could never run is refused before anything runs; the stages with their
    /// own tasks start at once, within the unfinished bounds together.
    pub(crate) fn submit_pipeline(
        &mut self,
        requester: RequesterId,
        submission: PipelineSubmission,
        (modules, mut reusable): (Vec<StageModule>, Vec<Found>),
        max: UnfinishedMax,
        context: (u64, &dyn Entropy),
        out: &mut Outbox,
    ) -> Result<PipelineSubmitted, PoolError> {
        let (now_ms, entropy) = context;
        assert_eq!(
            modules.len(),
            submission.stages.len(),
            "one module per stage"
        );
        reusable.resize_with(submission.stages.len(), Vec::new);
        let unfinished = self.pipelines_unfinished(requester);
        if unfinished >= wire::limits::PIPELINES_UNFINISHED_PER_REQUESTER_MAX {
            return Err(PoolError::TooMuchUnfinished(format!(
                "you have {unfinished} pipelines running, the most a requester may; submit this one once some have ended"
            )));
        }
        let (locality, copies) = (submission.locality, submission.copies);
        let (stages, adding) = self.waiting_stages(submission.stages, modules, context)?;
        self.admit(requester, adding, max)?;
        self.check_credit(requester)?;
        let id = loop {
            let id = PipelineId(entropy.next_u64());
            if !self.has_pipeline(id) {
                break id;
            }
        };
        let pipeline = PipelineRow {
            id,
            requester_id: requester,
            name: submission.name,
            created_at_ms: now_ms,
            ended_at_ms: None,
            cancelled: false,
            stages,
            locality,
            copies,
        };
        let plain: Vec<usize> = (0..pipeline.stages.len())
            .filter(|index| pipeline.stages[*index].input.is_none())
            .collect();
        self.record(Event::PipelineSubmitted { pipeline }, out);
        for stage in plain {
            let (_, waiting) = self.waiting_stage(id, stage).expect("a new stage waits");
            let tasks = waiting.job.tasks.clone();
            let found = std::mem::take(&mut reusable[stage]);
            self.start_stage(id, stage, (tasks, found), (now_ms, entropy), out)
                .expect("a new stage starts");
        }
        Ok(self.pipeline_submitted(id))
    }

    /// The stages of a new pipeline, each waiting with its checked job and a new job id, and
    /// what the stages with their own tasks will hold once they start.
    fn waiting_stages(
        &self,
        submitted: Vec<wire::StageSubmission>,
        modules: Vec<StageModule>,
        context: (u64, &dyn Entropy),
    ) -> Result<(Vec<StageRow>, Held), PoolError> {
        let mut adding = Held::default();
        let mut stages: Vec<StageRow> = Vec::with_capacity(submitted.len());
        for (stage, module) in submitted.into_iter().zip(modules) {
            let imports = module.component_imports.as_deref();
            let job = self.checked_job(
                stage.job,
                module.module_bytes,
                imports,
                &module.wasm_features,
            )?;
            if stage.input.is_none() {
                adding = adding.plus(Held::of_submission(&job));
            }
            let waiting = WaitingStage {
                job,
                module_bytes: module.module_bytes,
                component_imports: module.component_imports,
                wasm_features: module.wasm_features,
            };
            let job_id = loop {
                let id = self.new_job_id(context);
                if stages.iter().all(|other| other.job_id != id) {
                    break id;
                }
            };
            stages.push(StageRow {
                name: stage.name,
                input: stage.input,
                job_id,
                waiting: Some(waiting),
                not_run: None,
            });
        }
        Ok((stages, adding))
    }

    /// An id no job, no stage and no deletion has: the millisecond of `context`'s time, above
    /// [`JOB_ID_RANDOM_BITS`] bits drawn from its entropy.
    ///
    /// The store indexes jobs, their tasks and the blobs they use by job id, so a random id put
    /// each submission on pages of those indexes of its own; ids that grow with time share
    /// their last pages (`bench dispatch`, six alternating runs of 3,000 round trips: p50 1.027
    /// → 0.970 ms, p99 1.853 → 1.800 ms). The random bits keep an id unguessable within its
    /// millisecond; ids from other milliseconds differ in their time. The pool holds every job
    /// the store holds, so the check here is the store's too.
    pub(super) fn new_job_id(&self, context: (u64, &dyn Entropy)) -> JobId {
        let (now_ms, entropy) = context;
        let random_mask = (1 << JOB_ID_RANDOM_BITS) - 1;
        loop {
            let id = JobId((now_ms << JOB_ID_RANDOM_BITS) | (entropy.next_u64() & random_mask));
            if !self.has_job(id) && !self.is_stage_job(id) && !self.is_deleted_job(id) {
                return id;
            }
        }
    }

    /// Starts a waiting stage as a job of `tasks`, under the id it was given. The caller has
    /// admitted the tasks.
    pub(crate) fn start_stage(
        &mut self,
        pipeline: PipelineId,
        stage: usize,
        tasks: (Vec<TaskSpec>, Found),
        context: (u64, &dyn Entropy),
        out: &mut Outbox,
    ) -> Result<JobId, PoolError> {
        let (row, waiting) = self.waiting_stage(pipeline, stage)?;
        let mut submission = waiting.job.clone();
        submission.tasks = tasks.0;
        let reused = super::reuse::matching(&submission, tasks.1);
        let new = NewJob {
            id: row.stages[stage].job_id,
            requester: row.requester_id,
            submission,
            module_bytes: waiting.module_bytes,
            component: waiting.component_imports.is_some(),
            wasm_features: waiting.wasm_features.clone(),
        };
        let job_id = new.id;
        self.add_job(new, context.0, out);
        self.record(Event::StageStarted { pipeline, stage }, out);
        self.reuse_results(job_id, reused, context.0, out);
        Ok(job_id)
    }

    /// Starts a waiting stage whose tasks the driver made, when the unfinished bounds and the
    /// requester's credit allow.
    pub(crate) fn start_derived_stage(
        &mut self,
        pipeline: PipelineId,
        stage: usize,
        tasks: (Vec<TaskSpec>, Found),
        max: UnfinishedMax,
        context: (u64, &dyn Entropy),
        out: &mut Outbox,
    ) -> Result<JobId, PoolError> {
        let (row, waiting) = self.waiting_stage(pipeline, stage)?;
        let requester = row.requester_id;
        let mut job = waiting.job.clone();
        job.tasks = tasks.0;
        self.admit(requester, Held::of_submission(&job), max)?;
        self.check_credit(requester)?;
        self.start_stage(pipeline, stage, (job.tasks, tasks.1), context, out)
    }

    pub(crate) fn has_pipeline(&self, id: PipelineId) -> bool {
        self.pipelines.rows.contains_key(&id)
    }

    /// Whether `job` is an id a pipeline gave one of its stages.
    pub(super) fn is_stage_job(&self, job: JobId) -> bool {
        self.pipelines.stage_of.contains_key(&job)
    }

    /// Pipelines of `requester` that have not ended.
    pub(crate) fn pipelines_unfinished(&self, requester: RequesterId) -> usize {
        let rows = self.pipelines.rows.values();
        rows.filter(|row| row.requester_id == requester && row.ended_at_ms.is_none())
            .count()
    }

    /// Changes the pool as a pipeline event says.
    pub(super) fn apply_pipeline_event(&mut self, event: &Event) {
        match event {
            Event::PipelineSubmitted { pipeline } => {
                for (index, stage) in pipeline.stages.iter().enumerate() {
                    self.pipelines
                        .stage_of
                        .insert(stage.job_id, (pipeline.id, index));
                }
                self.pipelines.rows.insert(pipeline.id, pipeline.clone());
            }
            Event::StageStarted { pipeline, stage } => {
                self.stage_mut(*pipeline, *stage).waiting = None;
            }
            Event::StageNotRun {
                pipeline,
                stage,
                reason,
            } => {
                let row = self.stage_mut(*pipeline, *stage);
                row.waiting = None;
                row.not_run = Some(reason.clone());
            }
            Event::PipelineCancelled { pipeline } => {
                let row = self.pipelines.rows.get_mut(pipeline);
                row.expect("a cancelled pipeline is in the pool").cancelled = true;
            }
            Event::PipelineEnded { pipeline, at_ms } => {
                let row = self.pipelines.rows.get_mut(pipeline);
                row.expect("an ended pipeline is in the pool").ended_at_ms = Some(*at_ms);
                self.forget_pipeline_blobs(*pipeline);
            }
            Event::PipelinesPurged { pipelines, .. } => {
                for id in pipelines {
                    if let Some(row) = self.pipelines.rows.remove(id) {
                        for stage in &row.stages {
                            self.pipelines.stage_of.remove(&stage.job_id);
                        }
                    }
                }
            }
            _ => unreachable!("apply_pipeline_event applies pipeline events only"),
        }
        self.changes.stages = true;
    }

    fn stage_mut(&mut self, pipeline: PipelineId, stage: usize) -> &mut StageRow {
        let row = self.pipelines.rows.get_mut(&pipeline);
        let row = row.expect("a stage event names a pipeline of the pool");
        &mut row.stages[stage]
    }

    /// A pipeline as the store kept it, after a start.
    pub(super) fn restore_pipeline(&mut self, row: PipelineRow) {
        for (index, stage) in row.stages.iter().enumerate() {
            self.pipelines
                .stage_of
                .insert(stage.job_id, (row.id, index));
        }
        if row.ended_at_ms.is_none() {
            self.changes.stages = true;
        }
        self.pipelines.rows.insert(row.id, row);
    }

    /// The rows a pipeline event implies, made once it is applied: the pipeline whole.
    pub(super) fn push_pipeline_writes(&self, event: Event, writes: &mut Vec<store::Write>) {
        match event {
            Event::PipelineSubmitted { pipeline } => {
                writes.push(store::Write::UpsertPipeline(pipeline));
            }
            Event::StageStarted { pipeline, .. }
            | Event::StageNotRun { pipeline, .. }
            | Event::PipelineCancelled { pipeline } => {
                let row = self.pipelines.rows[&pipeline].clone();
                writes.push(store::Write::UpsertPipeline(row));
            }
            Event::PipelineEnded { pipeline, .. } => {
                let row = self.pipelines.rows[&pipeline].clone();
                let kept = row.locality == wire::Locality::Nodes;
                writes.push(store::Write::UpsertPipeline(row));
                if kept {
                    writes.push(store::Write::ForgetKeptOfPipeline(pipeline));
                }
            }
            Event::PipelinesPurged {
                pipelines,
                unrun_jobs,
            } => {
                writes.push(store::Write::PurgePipelines(pipelines));
                writes.push(store::Write::PurgeJobs(unrun_jobs));
            }
            _ => unreachable!("push_pipeline_writes writes pipeline events only"),
        }
    }

    /// A job of a stage ended (or opened again): the driver looks at its pipeline.
    pub(super) fn stage_job_changed(&mut self, job: JobId) {
        if self.is_stage_job(job) {
            self.changes.stages = true;
        }
    }

    /// Whether the stage driver has something to look at.
    pub(crate) fn stages_wanted(&self) -> bool {
        self.changes.stages
    }

    /// The state of a stage, and why it waits or was not run.
    fn stage_state(&self, row: &PipelineRow, stage: &StageRow) -> (StageState, Option<String>) {
        if let Some(reason) = &stage.not_run {
            return (StageState::NotRun, Some(reason.clone()));
        }
        if stage.waiting.is_none() {
            let state = self.jobs.get(&stage.job_id).map_or(
                // Purged after the pipeline ended; only a completed pipeline's stages all are.
                JobState::Completed,
                |job| job.state,
            );
            return (StageState::of_job(state), None);
        }
        let reads = stage.input.as_ref().map(StageInput::stage).unwrap_or("");
        let source = row.stages.iter().find(|other| other.name == reads);
        let why = match source {
            Some(source) => format!("waits for stage {} to complete", source.name),
            None => "waits to start".to_owned(),
        };
        (StageState::Waiting, Some(why))
    }

    /// What the stage driver should do now, pipeline by pipeline.
    pub(crate) fn stage_work(&self) -> Vec<StageWork> {
        let mut work = Vec::new();
        for row in self.pipelines.rows.values() {
            if row.ended_at_ms.is_some() {
                continue;
            }
            let mut all_ended = true;
            for (index, stage) in row.stages.iter().enumerate() {
                let (state, _) = self.stage_state(row, stage);
                all_ended &= state.is_terminal();
                if state == StageState::Waiting {
                    work.extend(self.waiting_stage_work(row, index));
                }
            }
            if all_ended {
                work.push(StageWork::End { pipeline: row.id });
            }
        }
        work.sort_by_key(|work| match work {
            StageWork::Start { pipeline, .. }
            | StageWork::GiveUp { pipeline, .. }
            | StageWork::End { pipeline } => *pipeline,
        });
        work
    }

    fn waiting_stage_work(&self, row: &PipelineRow, index: usize) -> Option<StageWork> {
        let stage = &row.stages[index];
        let input = stage.input.clone()?;
        let waiting = stage.waiting.as_ref()?;
        let source = row
            .stages
            .iter()
            .find(|other| other.name == input.stage())?;
        let (source_state, _) = self.stage_state(row, source);
        let give_up = |reason: String| StageWork::GiveUp {
            pipeline: row.id,
            stage: index,
            reason,
        };
        match source_state {
            StageState::Completed => Some(StageWork::Start {
                pipeline: row.id,
                stage: index,
                reads: source.job_id,
                input,
                requester: row.requester_id,
                job: Box::new(waiting.job.clone()),
            }),
            StageState::Waiting | StageState::Running => None,
            StageState::NotRun => Some(give_up(format!(
                "not run, because stage {} was not run",
                source.name
            ))),
            state => Some(give_up(format!(
                "not run, because stage {} {}",
                source.name,
                state.as_str()
            ))),
        }
    }

    /// Records that a stage will never run.
    pub(crate) fn give_up_stage(
        &mut self,
        pipeline: PipelineId,
        stage: usize,
        reason: String,
        out: &mut Outbox,
    ) {
        if self.waiting_stage(pipeline, stage).is_ok() {
            let event = Event::StageNotRun {
                pipeline,
                stage,
                reason,
            };
            self.record(event, out);
        }
    }

    /// Ends a pipeline whose stages all ended.
    pub(crate) fn end_pipeline(&mut self, pipeline: PipelineId, now_ms: u64, out: &mut Outbox) {
        let ended = self.stage_work().contains(&StageWork::End { pipeline });
        if ended {
            let event = Event::PipelineEnded {
                pipeline,
                at_ms: now_ms,
            };
            self.record(event, out);
        }
    }

    /// The waiting stage's job, or why it does not wait.
    pub(crate) fn waiting_stage(
        &self,
        pipeline: PipelineId,
        stage: usize,
    ) -> Result<(&PipelineRow, &WaitingStage), PoolError> {
        let row = self
            .pipelines
            .rows
            .get(&pipeline)
            .ok_or_else(|| PoolError::NotFound(format!("no pipeline {pipeline}")))?;
        let waiting = row
            .stages
            .get(stage)
            .and_then(|stage| stage.waiting.as_ref());
        let waiting = waiting.ok_or_else(|| {
            PoolError::Conflict(format!("stage {stage} of {pipeline} does not wait"))
        })?;
        Ok((row, waiting))
    }

    fn owned_pipeline(
        &self,
        pipeline: PipelineId,
        requester: RequesterId,
    ) -> Result<&PipelineRow, PoolError> {
        match self.pipelines.rows.get(&pipeline) {
            Some(row) if row.requester_id == requester => Ok(row),
            // As for jobs: whether another requester's pipeline exists is not for others.
            _ => Err(PoolError::NotFound(format!(
                "no pipeline {pipeline}; submit one with `crowdcloud submit SPEC.toml`"
            ))),
        }
    }

    /// Cancels a pipeline: its running stages are cancelled as jobs are, its waiting stages
    /// will not run, and it ends.
    pub(crate) fn cancel_pipeline(
        &mut self,
        pipeline: PipelineId,
        requester: RequesterId,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<(), PoolError> {
        let row = self.owned_pipeline(pipeline, requester)?;
        if row.ended_at_ms.is_some() {
            let state = self.pipeline_status(pipeline, requester)?.state;
            return Err(PoolError::Conflict(format!(
                "pipeline {pipeline} already ended ({state}); nothing to cancel"
            )));
        }
        self.record(Event::PipelineCancelled { pipeline }, out);
        let reason = "not run: the pipeline was cancelled";
        self.stop_stages(pipeline, None, reason, now_ms, out);
        self.end_pipeline(pipeline, now_ms, out);
        Ok(())
    }

    /// One stage's task stopped its job by its exit code: the pipeline stops with it. Its other
    /// running stages are cancelled and its waiting stages will not run, each saying why.
    pub(super) fn abort_pipeline_of(
        &mut self,
        job_id: JobId,
        aborted: wire::Aborted,
        now_ms: u64,
        out: &mut Outbox,
    ) {
        let Some(&(pipeline, aborting)) = self.pipelines.stage_of.get(&job_id) else {
            return;
        };
        let row = &self.pipelines.rows[&pipeline];
        let reason = format!(
            "not run: task {} of stage {} exited with code {}, which stops the pipeline",
            aborted.task_index, row.stages[aborting].name, aborted.exit_code
        );
        self.stop_stages(pipeline, Some(aborting), &reason, now_ms, out);
    }

    /// Stops every stage of `pipeline` but `except`: a running one's job is cancelled, a
    /// waiting one will not run, for `reason`.
    fn stop_stages(
        &mut self,
        pipeline: PipelineId,
        except: Option<usize>,
        reason: &str,
        now_ms: u64,
        out: &mut Outbox,
    ) {
        let stages: Vec<(usize, JobId, bool)> = self.pipelines.rows[&pipeline]
            .stages
            .iter()
            .enumerate()
            .filter(|(index, stage)| Some(*index) != except && stage.not_run.is_none())
            .map(|(index, stage)| (index, stage.job_id, stage.waiting.is_some()))
            .collect();
        for (stage, job, waiting) in stages {
            if waiting {
                self.give_up_stage(pipeline, stage, reason.to_owned(), out);
            } else if self
                .jobs
                .get(&job)
                .is_some_and(|job| !job.state.is_terminal())
            {
                self.stop_job(job, None, now_ms, out);
            }
        }
    }

    /// A pipeline's stages as its requester sees them.
    pub(crate) fn pipeline_status(
        &self,
        pipeline: PipelineId,
        requester: RequesterId,
    ) -> Result<PipelineStatus, PoolError> {
        let row = self.owned_pipeline(pipeline, requester)?;
        let stages: Vec<StageStatus> = row
            .stages
            .iter()
            .map(|stage| {
                let (state, reason) = self.stage_state(row, stage);
                let counts = self
                    .jobs
                    .get(&stage.job_id)
                    .map_or(TaskCounts::default(), |job| job.counts);
                StageStatus {
                    name: stage.name.clone(),
                    input: stage.input.clone(),
                    job_id: stage.job_id,
                    state,
                    counts,
                    reason,
                }
            })
            .collect();
        Ok(PipelineStatus {
            pipeline_id: row.id,
            name: row.name.clone(),
            state: pipeline_state(row, &stages),
            created_at_ms: row.created_at_ms,
            stages,
        })
    }

    /// The answer to a submission: every stage's job id.
    pub(super) fn pipeline_submitted(&self, pipeline: PipelineId) -> PipelineSubmitted {
        let row = &self.pipelines.rows[&pipeline];
        PipelineSubmitted {
            pipeline_id: pipeline,
            stages: row
                .stages
                .iter()
                .map(|stage| StageJob {
                    name: stage.name.clone(),
                    job_id: stage.job_id,
                })
                .collect(),
        }
    }

    /// Forgets pipelines that ended before `ended_before_ms`, with the blob uses named under
    /// the ids of their stages that never ran; how many.
    pub(crate) fn purge_ended_pipelines(
        &mut self,
        ended_before_ms: u64,
        max: usize,
        out: &mut Outbox,
    ) -> usize {
        let mut expired: Vec<(u64, PipelineId)> = self
            .pipelines
            .rows
            .values()
            .filter_map(|row| Some((row.ended_at_ms?, row.id)))
            .filter(|(at_ms, _)| *at_ms < ended_before_ms)
            .collect();
        expired.sort_unstable();
        expired.truncate(max);
        let pipelines: Vec<PipelineId> = expired.into_iter().map(|(_, id)| id).collect();
        let unrun_jobs = pipelines
            .iter()
            .flat_map(|id| &self.pipelines.rows[id].stages)
            .filter(|stage| stage.not_run.is_some())
            .map(|stage| stage.job_id)
            .collect();
        let purged = pipelines.len();
        if purged > 0 {
            let event = Event::PipelinesPurged {
                pipelines,
                unrun_jobs,
            };
            self.record(event, out);
        }
        purged
    }
}

fn pipeline_state(row: &PipelineRow, stages: &[StageStatus]) -> JobState {
    if row.ended_at_ms.is_none() {
        return JobState::Running;
    }
    let states = || stages.iter().map(|stage| stage.state);
    // A stage that failed explains a pipeline better than the stages stopped because of it.
    if row.cancelled {
        JobState::Cancelled
    } else if states().all(|state| state == StageState::Completed) {
        JobState::Completed
    } else if states().any(|state| state == StageState::Failed) {
        JobState::Failed
    } else if states().any(|state| state == StageState::Cancelled) {
        JobState::Cancelled
    } else {
        JobState::Failed
    }
}
