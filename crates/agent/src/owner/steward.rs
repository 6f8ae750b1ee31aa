//! The agent's governor loop: applies the owner's policy to the running agent.
//!
//! Every [`GOVERNOR_TICK`] it reads the signals and asks the governor. On a stop it pauses
//! every running attempt, opens no new work and tells the coordinator at once that the node is
//! paused and why; on a go it resumes them. A pause longer than the policy's `release_after`
//! cancels the held attempts and releases their leases, so they run elsewhere without counting
//! as failed attempts. The policy file is reloaded when it changes or on SIGHUP; a file that
//! does not parse leaves the policy in force as it was.
//!
//! Invariants:
//! - The gate is changed before the running attempts are paused or resumed, and `start` checks
//!   the gate under the same lock as it registers an attempt, so no attempt runs while the
//!   gate says paused.
//! - `status.json` is rewritten on every change of the gate and at least every second.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::GOVERNOR_TICK;
use super::governor::{self, Decision, GovernorState, Now};
use super::policy::{OwnerPolicy, human_duration};
use super::status::{AgentState, AgentStatus, RunningAttempt, now_ms, write_status};
use crate::{Agent, Disposition};

/// What the governor lets the agent do now; the lease loop and heartbeats follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gate {
    pub(crate) run: bool,
    pub(crate) reason: String,
    pub(crate) slots: u32,
}

impl Gate {
    /// Until the governor first decides, nothing runs.
    pub(crate) fn closed() -> Self {
        Self {
            run: false,
            reason: "starting".to_owned(),
            slots: 0,
        }
    }
}

pub(crate) struct OwnerState {
    pub(crate) policy: OwnerPolicy,
    governor: GovernorState,
    /// Since when work has been paused, while it is.
    paused_since: Option<Instant>,
    /// The policy file as last read: its modification time and size.
    file_seen: Option<(SystemTime, u64)>,
    /// Whether the governor has decided once: the first decision is announced like a change,
    /// since the coordinator takes a newly registered node as taking work.
    decided: bool,
}

impl OwnerState {
    pub(crate) fn new(policy: OwnerPolicy) -> Self {
        Self {
            policy,
            governor: GovernorState::default(),
            paused_since: None,
            file_seen: None,
            decided: false,
        }
    }
}

/// How often the policy file's modification time is looked at.
const POLICY_FILE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// The status is rewritten at least this often.
const STATUS_EVERY: Duration = Duration::from_secs(1);

impl Agent {
    /// Runs until aborted; `run` stops it after the drain.
    pub(crate) async fn govern_loop(self: Arc<Self>) {
        let started = Instant::now();
        let mut hangup = self.hangup_signal();
        let mut tick = tokio::time::interval(GOVERNOR_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut file_checked = Instant::now();
        let mut status_written: Option<Instant> = None;
        self.note_policy_file();
        loop {
            let reload = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                } => true,
            };
            if reload {
                tracing::info!("SIGHUP: reloading the owner's policy");
                self.reload_policy();
            } else if file_checked.elapsed() >= POLICY_FILE_CHECK_EVERY {
                file_checked = Instant::now();
                if self.policy_file_changed() {
                    self.reload_policy();
                }
            }
            let changed = self.govern_once(started);
            if changed || status_written.is_none_or(|at| at.elapsed() >= STATUS_EVERY) {
                self.write_status_file();
                status_written = Some(Instant::now());
            }
        }
    }

    fn hangup_signal(&self) -> Option<tokio::signal::unix::Signal> {
        self.config.policy_file.as_ref()?;
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; the policy file is still reloaded when it changes");
                None
            }
        }
    }

    /// One look at the signals; true when the gate opened or closed.
    pub(crate) fn govern_once(self: &Arc<Self>, started: Instant) -> bool {
        let readings = self.config.signals.read();
        let now = Now {
            monotonic_ms: started.elapsed().as_millis() as u64,
            minute_of_day: self.config.signals.minute_of_day(),
        };
        let mut guard = self.owner.lock();
        let owner = &mut *guard;
        let mut decision = governor::decide(&owner.policy, &readings, now, &mut owner.governor);
        if let Some(pool_name) = self.pool_name.lock().as_deref()
            && !owner
                .policy
                .allows_pool(&self.config.coordinator_url, Some(pool_name))
        {
            decision = Decision {
                run: false,
                reason: format!(
                    "the pool {pool_name:?} at {} is not in the policy's pools",
                    self.config.coordinator_url
                ),
                slots: decision.slots,
            };
        }
        let gate = Gate {
            run: decision.run,
            reason: decision.reason,
            slots: decision.slots.min(self.config.slots),
        };
        let was_running = self.gate.borrow().run;
        let first = !std::mem::replace(&mut owner.decided, true);
        if gate == *self.gate.borrow() && !first {
            return self.release_if_paused_too_long(owner);
        }
        let flipped = gate.run != was_running || first;
        let run = gate.run;
        if flipped {
            if run {
                tracing::info!(reason = %gate.reason, "the owner's policy lets work run");
                owner.paused_since = None;
            } else {
                tracing::info!(reason = %gate.reason, "the owner's policy stops work: pausing");
                owner.paused_since = Some(Instant::now());
            }
        }
        self.gate.send_replace(gate);
        if flipped {
            for attempt in self.running.lock().values() {
                if run {
                    attempt.control.resume();
                } else {
                    attempt.control.pause();
                }
            }
            // The coordinator learns at once, so it sees a paused node rather than a silent one
            // and answers a parked lease request.
            let agent = Arc::clone(self);
            tokio::spawn(async move { agent.send_heartbeat().await });
        }
        self.release_if_paused_too_long(owner);
        flipped
    }

    fn release_if_paused_too_long(&self, owner: &mut OwnerState) -> bool {
        let Some(since) = owner.paused_since else {
            return false;
        };
        if since.elapsed() < Duration::from_millis(owner.policy.release_after_ms) {
            return false;
        }
        let mut running = self.running.lock();
        let mut released = 0;
        for attempt in running.values_mut() {
            if matches!(attempt.disposition, Disposition::Report) {
                attempt.disposition = Disposition::Release;
                attempt.control.cancel();
                released += 1;
            }
        }
        if released > 0 {
            tracing::info!(
                released,
                paused_for = %human_duration(since.elapsed().as_millis() as u64),
                release_after = %human_duration(owner.policy.release_after_ms),
                "paused longer than release_after: giving the held attempts back to the pool"
            );
        }
        released > 0
    }

    fn policy_file_stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
        let metadata = std::fs::metadata(path).ok()?;
        Some((metadata.modified().ok()?, metadata.len()))
    }

    fn note_policy_file(&self) {
        if let Some(path) = &self.config.policy_file {
            self.owner.lock().file_seen = Self::policy_file_stamp(path);
        }
    }

    fn policy_file_changed(&self) -> bool {
        let Some(path) = &self.config.policy_file else {
            return false;
        };
        let stamp = Self::policy_file_stamp(path);
        let mut owner = self.owner.lock();
        if stamp == owner.file_seen {
            return false;
        }
        owner.file_seen = stamp;
        stamp.is_some()
    }

    /// Reads the policy file again; keeps the policy in force when the new one is invalid.
    pub(crate) fn reload_policy(&self) {
        let Some(path) = &self.config.policy_file else {
            return;
        };
        match OwnerPolicy::load(Some(path), &self.config.policy_overrides) {
            Ok(policy) => {
                let mut owner = self.owner.lock();
                if policy == owner.policy {
                    return;
                }
                tracing::info!(policy = %policy.summary(), file = %path.display(), "owner's policy reloaded");
                self.runner
                    .cache
                    .set_bytes_max(crate::cache_bytes_max(&self.config, &policy));
                owner.policy = policy;
            }
            Err(error) => {
                tracing::warn!(%error, "the changed policy file is not valid; keeping the policy in force");
            }
        }
    }

    pub(crate) fn status(&self, state: Option<AgentState>) -> AgentStatus {
        let gate = self.gate.borrow().clone();
        let running = {
            let running = self.running.lock();
            let mut attempts: Vec<RunningAttempt> = running
                .iter()
                .map(|(attempt_id, attempt)| RunningAttempt {
                    attempt_id: *attempt_id,
                    job_id: attempt.job_id,
                    task_index: attempt.task_index,
                    paused: attempt.control.is_paused(),
                    fuel_used: attempt.control.fuel_used(),
                })
                .collect();
            attempts.sort_by_key(|attempt| attempt.attempt_id);
            attempts
        };
        let state = state.unwrap_or(if self.is_stopping() {
            AgentState::Draining
        } else if gate.run {
            AgentState::Working
        } else {
            AgentState::Paused
        });
        let registered = self.session.read().generation > 0;
        AgentStatus {
            state,
            reason: gate.reason,
            slots: gate.slots,
            running,
            policy: self.owner.lock().policy.summary(),
            coordinator: self.config.coordinator_url.clone(),
            pool_name: self.pool_name.lock().clone(),
            node_id: registered.then(|| self.session.read().node_id.to_string()),
            pid: std::process::id(),
            updated_at_ms: now_ms(),
        }
    }

    pub(crate) fn write_status_file_as(&self, state: Option<AgentState>) {
        if let Err(error) = write_status(&self.config.data_dir, &self.status(state)) {
            tracing::warn!(%error, "cannot write status.json");
        }
    }

    fn write_status_file(&self) {
        self.write_status_file_as(None);
    }
}
