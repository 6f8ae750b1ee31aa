//! Jobs in the pool: submission, cancellation, completion and what requesters read of them.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use store::{JobRow, TaskRow};
use wire::failure::Step;
use wire::{
    JobId, JobRuntime, JobState, JobStatus, JobSubmission, JobSubmitted, NodeShare, RequesterId,
    TaskCounts, TaskState, WhyResponse,
};

use super::events::Event;
use super::held::{Charge, Held, human_bytes, job_bytes, task_bytes};
use super::{
    Changes, Job, Node, Outbox, PoolError, PoolState, Slot, Task, UnfinishedMax, count_of,
};

/// A job accepted by the API layer: validated, its blobs checked.
pub(crate) struct NewJob {
    pub(crate) id: JobId,
    pub(crate) requester: RequesterId,
    pub(crate) submission: JobSubmission,
    /// The size of its module, as stored.
    pub(crate) module_bytes: u64,
    /// Whether its module is a WASI 0.2 component.
    pub(crate) component: bool,
    /// The WebAssembly proposals its module uses.
    pub(crate) wasm_features: Vec<String>,
}

fn sorted_labels(labels: &std::collections::BTreeMap<String, String>) -> Vec<(String, String)> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The job of `row`, with its unfinished tasks and (while it runs) its runtime charged to
/// `charge`.
fn new_job(row: &JobRow, tasks: Vec<Task>, counts: TaskCounts, charge: Charge) -> Job {
    let spec = &row.spec;
    let runtime_bytes = if row.state == JobState::Running {
        job_bytes(spec)
    } else {
        0
    };
    charge.add(Held {
        tasks: 0,
        bytes: runtime_bytes,
    });
    for spec in tasks.iter().filter_map(|task| task.spec.as_ref()) {
        charge.add(Held {
            tasks: 1,
            bytes: task_bytes(spec),
        });
    }
    Job {
        id: row.id,
        requester: row.requester_id,
        runtime: runtime_of(row),
        shared_blobs: shared_blobs_of(spec),
        requirements: spec.requirements.clone(),
        labels_sorted: sorted_labels(&spec.requirements.labels),
        max_attempts: spec.max_attempts,
        replicas: spec.replicas,
        verify: spec.verify,
        validator: spec.validator.clone().map(Arc::new),
        success_exit_codes: spec.success_exit_codes.clone(),
        on_failure: spec.on_failure.clone(),
        aborted: row.aborted,
        keys: super::private::JobKeys::of(row),
        module_bytes: row.module_bytes,
        component: row.component,
        wasm_features: row.wasm_features.clone(),
        held: 0,
        checking: 0,
        state: row.state,
        tasks,
        pending: VecDeque::new(),
        short: BTreeSet::new(),
        counts,
        attempts_total: 0,
        fuel_total: 0,
        node_shares: HashMap::new(),
        submitted_seq: row.submitted_seq,
        created_at_ms: row.created_at_ms,
        finished_at_ms: row.finished_at_ms,
        version: 1,
        queued: true,
        charge,
        runtime_bytes,
        refused_by: HashMap::new(),
        recalled: 0,
        recalled_unfinished: 0,
    }
}

/// What nodes running the job's tasks are sent once.
pub(super) fn runtime_of(row: &JobRow) -> Arc<JobRuntime> {
    let spec = &row.spec;
    Arc::new(JobRuntime {
        requirements: None,
        job_id: row.id,
        name: spec.name.clone(),
        module: spec.module,
        env: spec.env.clone(),
        mounts: spec.mounts.clone(),
        limits: spec.limits,
        deterministic: spec.deterministic,
        checkpoint: spec.checkpoint,
        private: None,
        hold_outputs: false,
    })
}

/// The module and every mount file: what any node running the job may read.
pub(super) fn shared_blobs_of(spec: &JobSubmission) -> HashSet<wire::BlobHash> {
    let mut shared_blobs: HashSet<_> = spec
        .mounts
        .iter()
        .flat_map(|mount| mount.files.iter().map(|file| file.blob))
        .collect();
    shared_blobs.insert(spec.module);
    if let Some(manifest) = spec.private.as_ref().and_then(|p| p.manifest.blob()) {
        shared_blobs.insert(manifest);
    }
    shared_blobs
}

impl Job {
    /// Whether an attempt that ended with `outcome` succeeded, by the job's exit codes.
    pub(crate) fn succeeded(&self, outcome: &wire::Outcome) -> bool {
        wire::JobSubmission::succeeded(outcome, &self.success_exit_codes)
    }

    /// Moves task `index` to `slot`, keeping counts and the pending queue true; a task moved
    /// back to pending is queued first. The caller keeps `ready` true (see
    /// [`PoolState::sync_ready`]).
    pub(crate) fn set_slot(&mut self, index: u32, slot: Slot) {
        let task = &mut self.tasks[index as usize];
        debug_assert!(
            !matches!(task.slot, Slot::Ended(_)),
            "an ended task never changes again"
        );
        *count_of(&mut self.counts, task.slot.state()) -= 1;
        *count_of(&mut self.counts, slot.state()) += 1;
        task.slot = slot;
        if slot != Slot::Running {
            debug_assert!(
                task.check.as_ref().is_none_or(|check| check.held.is_none()),
                "a held result leaves its node's window first"
            );
            if task
                .check
                .take()
                .is_some_and(|check| !check.claims.is_empty())
            {
                self.checking -= 1;
            }
        }
        match slot {
            // A task back in the queue already waited its turn (and may hold up the end of
            // the job): it goes first.
            Slot::Pending => {
                self.pending.push_front(index);
                self.queued = true;
            }
            Slot::Ended(_) => {
                self.refused_by.remove(&index);
                if std::mem::take(&mut task.recalled) {
                    self.recalled_unfinished -= 1;
                }
                if let Some(spec) = task.spec.take() {
                    self.charge.release(Held {
                        tasks: 1,
                        bytes: task_bytes(&spec),
                    });
                }
            }
            // The caller adds the live attempt, then keeps `short` true.
            Slot::Running => return,
        }
        self.short.remove(&index);
    }

    /// Task `index` lost a live attempt: it ends as `ended` says, or else goes back to the queue
    /// when no replica of it runs any more.
    pub(crate) fn settle_task(&mut self, index: u32, ended: Option<TaskState>) {
        let task = &self.tasks[index as usize];
        match ended {
            Some(state) => {
                debug_assert!(task.live.is_empty(), "a task ends once its replicas have");
                self.set_slot(index, Slot::Ended(state));
            }
            // Results waiting for a check keep the task running.
            None if task.live.is_empty() && task.check.is_none() => {
                self.set_slot(index, Slot::Pending);
            }
            None => self.sync_short(index),
        }
    }

    /// Whether task `index` wants another replica: it runs, on fewer nodes than the job's
    /// replicas (or than its check wants results at once), and may be tried again. Attempts
    /// that gave a result do not count against the job's max attempts: a check's replicas are
    /// bounded by the verification policy instead.
    pub(crate) fn wants_replica(&self, index: u32) -> bool {
        let task = &self.tasks[index as usize];
        let wanted = task
            .check
            .as_ref()
            .map_or(self.replicas, |check| check.wanted);
        // Replicas on silent nodes may be gone: each gets a stand-in while attempts allow.
        let counted = task.live.len() as u32 - u32::from(task.silent_live);
        task.slot == Slot::Running && counted < wanted && self.attempts_left(index)
    }

    /// Tasks with results that wait for a check, counted again: what `checking` must equal.
    #[cfg(any(test, debug_assertions))]
    pub(crate) fn recount_checking(&self) -> u32 {
        let checking = self.tasks.iter().filter(|task| {
            task.check
                .as_deref()
                .is_some_and(|check| !check.claims.is_empty())
        });
        checking.count() as u32
    }

    /// Whether task `index` may be tried again: attempts that gave a result, and those whose
    /// failure the failure policy retried, do not count.
    pub(crate) fn attempts_left(&self, index: u32) -> bool {
        let task = &self.tasks[index as usize];
        let results = task.check.as_ref().map_or(0, |check| check.claims.len()) as u32;
        let uncounted = results + u32::from(task.failures);
        task.attempts < self.max_attempts.saturating_add(uncounted)
    }

    /// What the job's failure policy makes of an attempt of task `index` that ended with
    /// `outcome`; `None` when the outcome is no failure of the program, or the job has no
    /// policy.
    pub(crate) fn failure_step(&self, index: u32, outcome: &wire::Outcome) -> Option<Step> {
        let policy = self.on_failure.as_ref()?;
        if !wire::failure::is_program_failure(outcome, &self.success_exit_codes) {
            return None;
        }
        let failures = u32::from(self.tasks[index as usize].failures);
        Some(policy.step(outcome, failures))
    }

    /// The memory the next attempt of task `index` gets on a node that lends `lent_bytes`:
    /// more than the job's limit after it ran out, within what the node lends.
    pub(crate) fn attempt_memory_bytes(&self, index: u32, lent_bytes: u64) -> Option<u64> {
        let policy = self.on_failure.as_ref()?;
        let memory_failures = u32::from(self.tasks[index as usize].memory_failures);
        if memory_failures == 0 {
            return None;
        }
        let base = self.runtime.limits.memory_bytes_max;
        let escalated = policy.memory_bytes(base, memory_failures);
        Some(escalated.min(lent_bytes).max(base))
    }

    /// Counts a failure of task `index`'s program that did not end it: the failure policy
    /// retried it (in a job without one, such an end is no failure of the program).
    pub(crate) fn count_retried_failure(&mut self, index: u32, outcome: Option<&wire::Outcome>) {
        let Some(outcome) = outcome else {
            return;
        };
        if self.on_failure.is_none()
            || !wire::failure::is_program_failure(outcome, &self.success_exit_codes)
        {
            return;
        }
        let task = &mut self.tasks[index as usize];
        task.failures = task.failures.saturating_add(1);
        if *outcome == wire::Outcome::MemoryLimit {
            task.memory_failures = task.memory_failures.saturating_add(1);
        }
    }

    /// The failures of task `index` its failure policy retried, counted again after a restart
    /// from the outcomes of its failed attempts. Only a task not yet ended needs them.
    fn restore_failures(&mut self, index: u32, outcomes: &[wire::Outcome]) {
        if self.tasks[index as usize].slot != Slot::Pending {
            return;
        }
        for outcome in outcomes {
            self.count_retried_failure(index, Some(outcome));
        }
    }

    /// Whether any task waits for a node: a pending one, or one short of its replicas.
    pub(crate) fn wants_placement(&self) -> bool {
        !self.pending.is_empty() || !self.short.is_empty()
    }

    /// Keeps `short` true for task `index`; a task newly short is queued work.
    pub(crate) fn sync_short(&mut self, index: u32) {
        if self.wants_replica(index) {
            self.queued |= self.short.insert(index);
        } else {
            self.short.remove(&index);
        }
    }

    /// Marks a change a requester can see, for those who wait on the job.
    pub(crate) fn bump(&mut self, changes: &mut Changes) {
        self.version += 1;
        changes.jobs.push(self.id);
    }

    /// Frees what only a running job needs once it has ended: the per-task table and the blob
    /// list nodes fetch under. Results are read from the store, and the counts stay, so an
    /// ended job costs the same few hundred bytes however many tasks it had, as it does when
    /// loaded after a restart.
    pub(super) fn release_ended(&mut self) {
        debug_assert!(
            self.state.is_terminal(),
            "only an ended job lets go of its tasks"
        );
        self.tasks = Vec::new();
        self.refused_by = HashMap::new();
        self.pending = VecDeque::new();
        self.short = BTreeSet::new();
        self.shared_blobs = HashSet::new();
        // Status shows only the name; env and mounts were for nodes running its tasks.
        self.runtime = Arc::new(JobRuntime {
            env: Default::default(),
            mounts: Vec::new(),
            ..(*self.runtime).clone()
        });
        self.charge.release(Held {
            tasks: 0,
            bytes: std::mem::take(&mut self.runtime_bytes),
        });
    }
}

impl PoolState {
    /// The tasks of open jobs that `keep` picks, by job id then index: a fixed order, so what
    /// follows from them comes out the same in every run.
    pub(super) fn open_tasks_where(&self, keep: impl Fn(&Task) -> bool) -> Vec<(JobId, u32)> {
        let mut jobs: Vec<JobId> = self.open_jobs.iter().copied().collect();
        jobs.sort_unstable();
        let mut picked = Vec::new();
        for job_id in jobs {
            for (index, task) in self.jobs[&job_id].tasks.iter().enumerate() {
                if keep(task) {
                    picked.push((job_id, index as u32));
                }
            }
        }
        picked
    }

    /// Adds a submitted job; its tasks are pending at once.
    pub(crate) fn add_job(&mut self, new: NewJob, now_ms: u64, out: &mut Outbox) -> JobSubmitted {
        let NewJob {
            id,
            requester,
            mut submission,
            module_bytes,
            component,
            wasm_features,
        } = new;
        let tasks = std::mem::take(&mut submission.tasks);
        let task_count = tasks.len() as u32;
        let job = JobRow {
            id,
            requester_id: requester,
            spec: submission,
            task_count,
            state: JobState::Running,
            submitted_seq: self.next_submitted_seq,
            created_at_ms: now_ms,
            finished_at_ms: None,
            module_bytes,
            component,
            wasm_features,
            aborted: None,
            keys_granted: None,
        };
        let job = Box::new(job);
        self.record(Event::JobSubmitted { job, tasks }, out);
        JobSubmitted {
            job_id: id,
            tasks: task_count,
            status: None,
        }
    }

    /// A submitted job joins the pool, its tasks pending.
    pub(super) fn insert_job(&mut self, row: &JobRow, task_specs: &[wire::TaskSpec]) {
        self.next_submitted_seq = self.next_submitted_seq.max(row.submitted_seq + 1);
        let tasks: Vec<Task> = task_specs
            .iter()
            .map(|spec| Task {
                spec: Some(spec.clone()),
                slot: Slot::Pending,
                attempts: 0,
                live: Vec::new(),
                check: None,
                recalled: false,
                checkpoints: None,
                failures: 0,
                memory_failures: 0,
                silent_live: 0,
            })
            .collect();
        let counts = TaskCounts {
            total: row.task_count,
            pending: row.task_count,
            ..TaskCounts::default()
        };
        let charge = self.held.charge_for(row.requester_id);
        let job = new_job(row, tasks, counts, charge);
        self.jobs.insert(row.id, job);
        self.open_jobs.insert(row.id);
        self.requeue_pending_of(row.id);
    }

    pub(crate) fn restore_jobs(
        &mut self,
        rows: Vec<JobRow>,
        task_counts: Vec<(JobId, TaskState, u32)>,
        open_tasks: Vec<TaskRow>,
        _now_ms: u64,
    ) {
        let mut counts: HashMap<JobId, TaskCounts> = HashMap::new();
        for (job_id, state, count) in task_counts {
            let entry = counts.entry(job_id).or_default();
            *count_of(entry, state) += count;
            entry.total += count;
        }
        let mut tasks_of: HashMap<JobId, Vec<Task>> = HashMap::new();
        let mut failed = Vec::new();
        for task in open_tasks {
            let slot = match task.state {
                TaskState::Pending | TaskState::Running => Slot::Pending,
                ended => Slot::Ended(ended),
            };
            tasks_of.entry(task.job_id).or_default().push(Task {
                // An ended task needs its spec no more, here as in a running pool.
                spec: task.spec.filter(|_| slot == Slot::Pending),
                slot,
                attempts: task.attempts,
                live: Vec::new(),
                check: None,
                recalled: slot == Slot::Pending && task.recalled_from.is_some(),
                checkpoints: (task.checkpoint.is_some() || task.checkpoints_lost_ms > 0).then(
                    || {
                        Box::new(super::Checkpoints {
                            latest: task.checkpoint,
                            lost_ms: task.checkpoints_lost_ms,
                            makers: task.checkpoint_makers,
                        })
                    },
                ),
                failures: 0,
                memory_failures: 0,
                silent_live: 0,
            });
            if !task.failed.is_empty() {
                failed.push((task.job_id, task.index, task.failed));
            }
        }
        for row in rows {
            let tasks = tasks_of.remove(&row.id).unwrap_or_default();
            let job_counts = counts.get(&row.id).copied().unwrap_or_default();
            self.next_submitted_seq = self.next_submitted_seq.max(row.submitted_seq + 1);
            if row.state == JobState::Running {
                self.open_jobs.insert(row.id);
            }
            let charge = self.held.charge_for(row.requester_id);
            let mut job = new_job(&row, tasks, job_counts, charge);
            job.recalled_unfinished = job.tasks.iter().filter(|task| task.recalled).count() as u32;
            if job.state.is_terminal() {
                // As when it ended in this process: only its counts and name stay.
                job.release_ended();
            }
            self.jobs.insert(row.id, job);
        }
        for (job_id, index, outcomes) in failed {
            if let Some(job) = self.jobs.get_mut(&job_id) {
                job.restore_failures(index, &outcomes);
            }
        }
    }

    /// Rebuilds the pending queue of a restored job from its tasks.
    pub(crate) fn requeue_pending_of(&mut self, job_id: JobId) {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        job.pending = job
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, task)| task.slot == Slot::Pending)
            .map(|(index, _)| index as u32)
            .collect();
        for index in 0..job.tasks.len() as u32 {
            job.sync_short(index);
        }
        self.sync_ready(job_id);
    }

    /// Puts the job in `ready` exactly when it runs and has tasks waiting for a node (pending,
    /// or short of replicas), and says when tasks joined its queue.
    pub(crate) fn sync_ready(&mut self, job_id: JobId) {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        if job.state == JobState::Running && job.wants_placement() {
            self.changes.tasks_queued |= std::mem::take(&mut job.queued);
            self.ready.insert(job.submitted_seq, job_id);
        } else {
            self.ready.remove(&job.submitted_seq);
        }
    }

    /// Ends the job once every task has ended.
    pub(crate) fn finish_job_if_done(&mut self, job_id: JobId, now_ms: u64, out: &mut Outbox) {
        self.audit_tail(job_id, now_ms, out);
        let Some(job) = self.jobs.get(&job_id) else {
            return;
        };
        if job.state != JobState::Running || job.counts.ended() < job.counts.total {
            return;
        }
        let state = if job.counts.succeeded == job.counts.total {
            JobState::Completed
        } else {
            JobState::Failed
        };
        let event = Event::JobFinished {
            job: job_id,
            state,
            at_ms: now_ms,
        };
        self.record(event, out);
    }

    /// A job as the pool takes it: its module fits the pool's nodes (`module_bytes`, the
    /// component's imports, the proposals it uses), and it asks for the checks the pool holds
    /// it to.
    pub(crate) fn checked_job(
        &self,
        mut job: JobSubmission,
        module_bytes: u64,
        component_imports: Option<&[String]>,
        wasm_features: &[String],
    ) -> Result<JobSubmission, PoolError> {
        self.check_module_fits(module_bytes)?;
        if let Some(imports) = component_imports {
            self.check_component_runs(imports)?;
        }
        self.check_features_compiled(wasm_features)?;
        self.check_private(&job)?;
        job.verify = self.checked_verify(&job)?;
        Ok(job)
    }

    /// The verification mode the pool holds `job` to: what it asks for, or the pool's floor.
    pub(crate) fn checked_verify(
        &self,
        job: &JobSubmission,
    ) -> Result<Option<wire::VerifyMode>, PoolError> {
        let mode = self.checked_mode(
            job.verify,
            job.deterministic.is_some(),
            job.replicas,
            job.validator.is_some(),
        )?;
        let metered = needs_metering(
            job.deterministic.is_some(),
            mode.is_some(),
            job.checkpoint.is_some(),
        );
        if metered && job.requirements.runtime == Some(wire::NodeRuntime::Browser) {
            return Err(PoolError::Invalid(
                "a job that is deterministic, checked or checkpointing needs its fuel metered, \
                 which a browser cannot do: remove `runtime = \"browser\"` from its requirements"
                    .to_owned(),
            ));
        }
        if mode.is_some() && job.on_failure.is_some() {
            return Err(PoolError::Invalid(
                "this pool checks every job's results, and a checked job takes no failure \
                 policy (one node's failure is no evidence to retry or stop on): remove \
                 retries, unless_exit, abort_on and memory_escalate"
                    .to_owned(),
            ));
        }
        Ok(mode)
    }

    /// Refuses a module of `module_bytes` that no node of the pool compiles, online or not: the
    /// job would wait for ever. A pool no node has joined yet takes it.
    pub(crate) fn check_module_fits(&self, module_bytes: u64) -> Result<(), PoolError> {
        let largest = self
            .nodes
            .values()
            .max_by_key(|node| node.capabilities.module_bytes_max);
        match largest {
            Some(node) if node.capabilities.module_bytes_max < module_bytes => {
                Err(PoolError::Invalid(format!(
                    "the module is {} and the largest module any node of this pool compiles is {} \
                     ({}); make the module smaller, or have a node that takes larger modules join \
                     (`crowdcloud agent --module-bytes-max`)",
                    human_bytes(module_bytes),
                    human_bytes(node.capabilities.module_bytes_max),
                    node.name
                )))
            }
            _ => Ok(()),
        }
    }

    /// Refuses a module that uses WebAssembly proposals no node of the pool compiles all of,
    /// online or not, naming those the closest node lacks: the job would wait for ever.
    pub(crate) fn check_features_compiled(&self, features: &[String]) -> Result<(), PoolError> {
        let lacking = |node: &Node| -> Vec<String> {
            let compiled = super::nodes::said_features(&node.capabilities);
            features
                .iter()
                .filter(|feature| compiled.is_some_and(|compiled| !compiled.contains(feature)))
                .cloned()
                .collect()
        };
        match self
            .nodes
            .values()
            .map(|node| (lacking(node), node))
            .min_by_key(|(l, _)| l.len())
        {
            Some((lacking, closest)) if !lacking.is_empty() => Err(PoolError::Invalid(format!(
                "the module uses the WebAssembly proposals {} and no node of this pool compiles \
                 {} ({} is the closest); build it without them, or have a node that compiles \
                 them join",
                features.join(", "),
                lacking.join(", "),
                closest.name
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses a component that imports an interface no node of the pool gives, online or
    /// not, naming the import: the job would wait for ever. A pool no node has joined yet
    /// takes it, as it takes any module.
    pub(crate) fn check_component_runs(&self, imports: &[String]) -> Result<(), PoolError> {
        if self.nodes.is_empty() {
            return Ok(());
        }
        let mut given: Vec<String> = self
            .nodes
            .values()
            .flat_map(|node| node.capabilities.wasi_interfaces.iter().cloned())
            .collect();
        if given.is_empty() {
            return Err(PoolError::Invalid(
                "the module is a WASI 0.2 component and no node of this pool runs components; \
                 update the agents, or build the program for wasm32-wasip1"
                    .to_owned(),
            ));
        }
        given.sort_unstable();
        given.dedup();
        match imports
            .iter()
            .find_map(|import| wire::wasi::component_import_refusal(import, &given))
        {
            Some(refusal) => Err(PoolError::Invalid(format!("the module is {refusal}"))),
            None => Ok(()),
        }
    }

    /// Refuses a job holding `adding` from `requester` when it would take the unfinished
    /// tasks of the pool or of the requester, or the bytes they hold, past their bound.
    pub(crate) fn admit(
        &self,
        requester: RequesterId,
        adding: Held,
        max: UnfinishedMax,
    ) -> Result<(), PoolError> {
        let mine = self.held.of_requester(requester);
        let pool = self.held.of_pool();
        let tasks = adding.tasks;
        if mine.tasks + tasks > max.per_requester {
            return Err(PoolError::TooMuchUnfinished(format!(
                "you have {} tasks unfinished and a requester may have {}; submit these {tasks} once some have ended, or cancel a job",
                mine.tasks, max.per_requester
            )));
        }
        if pool.tasks + tasks > max.pool {
            return Err(PoolError::TooMuchUnfinished(format!(
                "the pool has {} tasks unfinished and takes at most {}; submit these {tasks} once some have ended",
                pool.tasks, max.pool
            )));
        }
        if mine.bytes + adding.bytes > max.per_requester_bytes {
            return Err(PoolError::TooMuchUnfinished(format!(
                "your unfinished jobs hold {} of the coordinator's memory and a requester may hold {}; this job needs {} more: submit it once some tasks have ended, cancel a job, or make its args smaller",
                human_bytes(mine.bytes),
                human_bytes(max.per_requester_bytes),
                human_bytes(adding.bytes)
            )));
        }
        if pool.bytes + adding.bytes > max.pool_bytes {
            return Err(PoolError::TooMuchUnfinished(format!(
                "the pool's unfinished jobs hold {} of the coordinator's memory and it takes at most {}; this job needs {} more: submit it once some tasks have ended",
                human_bytes(pool.bytes),
                human_bytes(max.pool_bytes),
                human_bytes(adding.bytes)
            )));
        }
        Ok(())
    }

    /// Forgets up to `max` jobs that ended before `ended_before_ms`, oldest first, here and
    /// (through `out`) in the store; returns how many.
    pub(crate) fn purge_ended(
        &mut self,
        ended_before_ms: u64,
        max: usize,
        out: &mut Outbox,
    ) -> usize {
        let mut expired: Vec<(u64, JobId)> = self
            .jobs
            .values()
            .filter(|job| job.state.is_terminal())
            .filter_map(|job| job.finished_at_ms.map(|at_ms| (at_ms, job.id)))
            .filter(|(at_ms, _)| *at_ms < ended_before_ms)
            .collect();
        expired.sort_unstable();
        expired.truncate(max);
        let jobs: Vec<JobId> = expired.into_iter().map(|(_, job_id)| job_id).collect();
        let purged = jobs.len();
        if purged > 0 {
            self.record(Event::JobsPurged { jobs }, out);
        }
        purged
    }

    pub(super) fn owned_job(
        &self,
        job_id: JobId,
        requester: RequesterId,
    ) -> Result<&Job, PoolError> {
        match self.jobs.get(&job_id) {
            Some(job) if job.requester == requester => Ok(job),
            // Another requester's job is reported as missing: ids are not secrets, but
            // whether a job exists is not for others to learn.
            _ => Err(PoolError::NotFound(format!(
                "no job {job_id}; list your jobs with `crowdcloud status`"
            ))),
        }
    }

    pub(crate) fn cancel_job(
        &mut self,
        job_id: JobId,
        requester: RequesterId,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<(), PoolError> {
        let state = self.owned_job(job_id, requester)?.state;
        if state.is_terminal() {
            return Err(PoolError::Conflict(format!(
                "job {job_id} already ended ({state}); nothing to cancel"
            )));
        }
        self.stop_job(job_id, None, now_ms, out);
        Ok(())
    }

    /// Stops a job one of its tasks asked to stop by an exit code its `abort_on` names: the
    /// tasks not yet ended are cancelled and the job fails. A stage's stop stops its pipeline.
    pub(crate) fn abort_job(
        &mut self,
        job_id: JobId,
        aborted: wire::Aborted,
        now_ms: u64,
        out: &mut Outbox,
    ) {
        if self.jobs[&job_id].state.is_terminal() {
            return;
        }
        self.stop_job(job_id, Some(aborted), now_ms, out);
        self.abort_pipeline_of(job_id, aborted, now_ms, out);
    }

    /// Cancels what of a running job has not ended; `aborted` says which task stopped it,
    /// when one did rather than its requester.
    pub(super) fn stop_job(
        &mut self,
        job_id: JobId,
        aborted: Option<wire::Aborted>,
        now_ms: u64,
        out: &mut Outbox,
    ) {
        // Results that wait for a check are never verified now: their payment goes back.
        for index in 0..self.jobs[&job_id].tasks.len() as u32 {
            self.refund(job_id, index, None, now_ms, out);
        }
        let event = Event::JobCancelled {
            job: job_id,
            at_ms: now_ms,
            aborted,
        };
        self.record(event, out);
    }

    pub(crate) fn job_status(
        &self,
        job_id: JobId,
        requester: RequesterId,
    ) -> Result<JobStatus, PoolError> {
        Ok(self.status_of(self.owned_job(job_id, requester)?))
    }

    fn status_of(&self, job: &Job) -> JobStatus {
        let mut nodes: Vec<NodeShare> = job
            .node_shares
            .iter()
            .map(|(node_id, count)| {
                let node = self.nodes.get(node_id);
                NodeShare {
                    node_id: *node_id,
                    node_name: node.map(|node| node.name.clone()).unwrap_or_default(),
                    tasks_succeeded: *count,
                    browser: node.is_some_and(|node| {
                        node.capabilities.runtime == wire::NodeRuntime::Browser
                    }),
                }
            })
            .collect();
        nodes.sort_by(|a, b| {
            b.tasks_succeeded
                .cmp(&a.tasks_succeeded)
                .then(a.node_id.cmp(&b.node_id))
        });
        JobStatus {
            job_id: job.id,
            name: job.runtime.name.clone(),
            state: job.state,
            tasks: job.counts,
            attempts: job.attempts_total,
            fuel_used: job.fuel_total,
            created_at_ms: job.created_at_ms,
            finished_at_ms: job.finished_at_ms,
            version: job.version,
            nodes,
            verifying: job.checking,
            recalled: job.recalled,
            aborted: job.aborted,
            private: job.keys.is_some(),
            stage_of: self
                .pipelines
                .stage_of_job(job.id)
                .map(|(row, index)| wire::StageOf {
                    pipeline_id: row.id,
                    pipeline: row.name.clone(),
                    stage: row.stages[index].name.clone(),
                }),
        }
    }

    /// The requester's jobs, newest first.
    pub(crate) fn list_jobs(&self, requester: RequesterId, limit: usize) -> Vec<JobStatus> {
        let mut jobs: Vec<&Job> = self
            .jobs
            .values()
            .filter(|job| job.requester == requester)
            .collect();
        jobs.sort_by_key(|job| std::cmp::Reverse(job.submitted_seq));
        jobs.into_iter()
            .take(limit)
            .map(|job| self.status_of(job))
            .collect()
    }

    /// The job's version, whoever asks; `None` once it is gone from memory.
    pub(crate) fn job_version_now(&self, job_id: JobId) -> Option<u64> {
        self.jobs.get(&job_id).map(|job| job.version)
    }

    /// The job's version now, for a requester who waits on it to change.
    pub(crate) fn job_version(
        &self,
        job_id: JobId,
        requester: RequesterId,
    ) -> Result<u64, PoolError> {
        Ok(self.owned_job(job_id, requester)?.version)
    }

    /// Checks the requester owns the job; for reads served from the store.
    pub(crate) fn check_owner(
        &self,
        job_id: JobId,
        requester: RequesterId,
    ) -> Result<(), PoolError> {
        self.owned_job(job_id, requester).map(|_| ())
    }

    pub(crate) fn why(
        &self,
        job_id: JobId,
        requester: RequesterId,
        now_ms: u64,
    ) -> Result<WhyResponse, PoolError> {
        let job = self.owned_job(job_id, requester)?;
        let offers = self.all_node_offers();
        let demand = job_demand(job);
        let mut reasons: Vec<String> = scheduler::explain(&demand, &offers, now_ms)
            .into_iter()
            .map(|reason| reason.to_string())
            .collect();
        reasons.extend(refusals_reason(job, now_ms));
        Ok(WhyResponse {
            job_id,
            pending: job.counts.pending,
            reasons,
        })
    }
}

/// Why pending tasks may skip nodes that fit: owners that said they could not run them are
/// held from them for a while (see `super::Refusal`).
fn refusals_reason(job: &Job, now_ms: u64) -> Option<String> {
    let held_until_ms = job
        .pending
        .iter()
        .filter_map(|index| job.refused_by.get(index))
        .flatten()
        .map(super::Refusal::until_ms)
        .filter(|until_ms| *until_ms > now_ms);
    let (count, last_ms) =
        held_until_ms.fold((0u32, 0u64), |(n, last), until| (n + 1, last.max(until)));
    let tasks = match count {
        0 => return None,
        1 => "1 waiting task is".to_owned(),
        _ => format!("{count} waiting tasks are"),
    };
    Some(format!(
        "{tasks} held for up to {} s from the nodes of owners that said they could not run them",
        (last_ms - now_ms).div_ceil(1000)
    ))
}

/// Whether `node` is of a runtime `job` may use.
#[cfg(any(test, debug_assertions))]
pub(crate) fn runs_on(job: &Job, node: &Node) -> bool {
    let browser = node.capabilities.runtime == wire::NodeRuntime::Browser;
    runtime_needed(job).is_none_or(|needed| needed == browser)
}

/// Whether a job's fuel must be metered, which only a native agent does: a deterministic job's
/// fuel is part of its result, a checked job's results are compared by it, and a checkpoint
/// is saved at a count of it.
fn needs_metering(deterministic: bool, checked: bool, checkpointing: bool) -> bool {
    deterministic || checked || checkpointing
}

/// Whether the job's tasks must run in browsers, must not, or may run in either: one whose
/// fuel must be metered needs a native agent.
fn runtime_needed(job: &Job) -> Option<bool> {
    let metered = needs_metering(
        job.runtime.deterministic.is_some(),
        job.verify.is_some(),
        job.runtime.checkpoint.is_some(),
    );
    match job.requirements.runtime {
        Some(runtime) => Some(runtime == wire::NodeRuntime::Browser),
        None => metered.then_some(false),
    }
}

pub(crate) fn job_demand(job: &Job) -> scheduler::JobDemand<'_> {
    scheduler::JobDemand {
        job: job.id.0,
        pending: job.pending.len() as u32,
        running: job.counts.running,
        submitted_seq: job.submitted_seq,
        requirements: scheduler::Requirements {
            memory_bytes_min: job.requirements.memory_bytes_min,
            cores_min: job.requirements.cores_min,
            module_bytes: job.module_bytes,
            component: job.component,
            browser: runtime_needed(job),
            wasm_features: &job.wasm_features,
            arch: job.requirements.arch.as_deref(),
            os: job.requirements.os.as_deref(),
            labels: &job.labels_sorted,
            key_holders: job.keys.as_ref().map(|keys| keys.holders_sorted.as_slice()),
            excluded: scheduler::Excluded::default(),
        },
    }
}

impl PoolState {
    /// The job of a live attempt.
    #[cfg(test)]
    pub(crate) fn job_of_attempt(&self, attempt: wire::AttemptId) -> Option<JobId> {
        self.attempts.get(&attempt).map(|attempt| attempt.job)
    }

    /// Whether an `abort_on` exit code stopped the job.
    #[cfg(test)]
    pub(crate) fn job_aborted(&self, job_id: JobId) -> bool {
        self.jobs
            .get(&job_id)
            .is_some_and(|job| job.aborted.is_some())
    }

    pub(crate) fn has_job(&self, job_id: JobId) -> bool {
        self.jobs.contains_key(&job_id)
    }
}
