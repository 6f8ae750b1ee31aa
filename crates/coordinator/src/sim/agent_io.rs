//! What a simulated agent does with the answers it gets, with the calls that failed (lost,
//! timed out, or refused because the coordinator was down), and the faults it makes.

use wire::{AttemptId, AttemptReport, JobId, LeaseResponse, Outcome, Usage};

use super::agent::{AgentTimer, CALL_TIMEOUT_MS, Call, Ending, Run};
use super::net::{Reply, Request};
use super::world::World;

/// Recent grants kept to forge reports with.
const GRANTS_SEEN_MAX: usize = 64;

impl World {
    /// An answer reaches `agent`.
    pub(super) fn agent_reply(&mut self, agent: usize, call_id: u64, reply: Reply) {
        let now_ms = self.now_ms();
        let state = &mut self.agents[agent];
        if state.down || now_ms < state.silent_until {
            self.trace
                .record(now_ms, || format!("agent {agent} does not hear #{call_id}"));
            return;
        }
        let Some(call) = state.calls.remove(&call_id) else {
            self.trace.record(now_ms, || {
                format!("agent {agent} waits no more on #{call_id}")
            });
            return;
        };
        match (call, reply) {
            (call, Reply::Unavailable) => self.call_failed(agent, call),
            (Call::Other, Reply::Released(released)) => {
                self.stats.released += released.len() as u64;
            }
            (Call::Other, _) => {}
            (Call::Challenge, Reply::Challenge { nonce }) => self.register(agent, nonce),
            (Call::Challenge | Call::Register, Reply::Gone) => self.agent_removed(agent),
            // Its join token was revoked (its owner was banned): it stays refused.
            (Call::Challenge, Reply::Unauthorized) => self.agent_removed(agent),
            (
                Call::Register,
                Reply::Registered {
                    token,
                    heartbeat_ms,
                },
            ) => self.registered(agent, token, heartbeat_ms),
            (call @ (Call::Challenge | Call::Register), _) => self.call_failed(agent, call),
            (_, Reply::Unauthorized) => self.reregister_after_401(agent),
            (Call::Lease, Reply::Lease(response)) => self.granted(agent, response),
            (Call::Heartbeat, Reply::Heartbeat(response)) => {
                self.heartbeat_answered(agent, response);
            }
            (Call::Runtime(job), Reply::Runtime(runtime)) => {
                self.runtime_arrived(agent, job, runtime.map(|runtime| *runtime))
            }
            (Call::Upload(attempt, hash), Reply::Uploaded(result)) => {
                self.stats.uploads_refused += u64::from(result.is_err());
                self.uploaded(agent, attempt, hash);
            }
            (Call::Report(attempts, asked), Reply::Reported(acks, lease)) => {
                self.reported(agent, &attempts, &acks);
                if asked {
                    let lease = lease.unwrap_or_default();
                    self.stats.grants_with_reports += lease.attempts.len() as u64;
                    self.granted(agent, lease);
                }
            }
            (call, reply) => panic!("agent {agent}: {reply:?} does not answer {call:?}"),
        }
    }

    /// The answer to a report: the endings it named are done with, and the accepted ones
    /// counted (a cheater `After` some results counts them).
    fn reported(&mut self, agent: usize, attempts: &[AttemptId], acks: &[wire::ReportAck]) {
        let state = &mut self.agents[agent];
        for ack in acks.iter().filter(|ack| ack.accepted) {
            state.accepted += 1;
            let lie = state.ending.get(&ack.attempt_id).is_some_and(|e| e.lie);
            self.stats.lies_accepted += u64::from(lie);
        }
        for attempt in attempts
            .iter()
            .chain(acks.iter().map(|ack| &ack.attempt_id))
        {
            state.ending.remove(attempt);
        }
    }

    /// The heartbeat's answer: the interval to keep, and the attempts to stop.
    fn heartbeat_answered(&mut self, agent: usize, response: wire::HeartbeatResponse) {
        let state = &mut self.agents[agent];
        state.heartbeat_ms = response.heartbeat_ms;
        for attempt in response.cancel {
            state.running.remove(&attempt);
            // An attempt stopped while it uploads is dropped, unreported.
            if state
                .ending
                .get(&attempt)
                .is_some_and(|e| !e.uploads.is_empty())
            {
                state.ending.remove(&attempt);
            }
        }
        // Stopped attempts free their slots.
        self.try_lease(agent);
    }

    fn registered(&mut self, agent: usize, token: String, heartbeat_ms: u64) {
        let state = &mut self.agents[agent];
        state.registering = false;
        state.token = Some(token);
        state.heartbeat_ms = heartbeat_ms;
        self.try_lease(agent);
    }

    fn register(&mut self, agent: usize, nonce: String) {
        let state = &self.agents[agent];
        let request = Request::Register {
            join_hash: state.join_hash.clone(),
            nonce,
            slots: state.slots,
            labels: state.labels.clone(),
        };
        self.agent_call(agent, Call::Register, request, CALL_TIMEOUT_MS);
    }

    fn reregister_after_401(&mut self, agent: usize) {
        self.stats.sessions_forgotten += 1;
        self.reregister(agent);
    }

    /// A call went unanswered: it is tried again as the real agent would.
    pub(super) fn call_failed(&mut self, agent: usize, call: Call) {
        match call {
            Call::Challenge | Call::Register => {
                self.agents[agent].registering = false;
                let delay_ms = self.dice.between(200, 2_000);
                self.agent_timer_at(agent, delay_ms, AgentTimer::Register);
            }
            Call::Lease => {
                self.agents[agent].leasing = false;
                let delay_ms = self.dice.between(100, 1_000);
                self.agent_timer_at(agent, delay_ms, AgentTimer::Lease);
            }
            Call::Heartbeat | Call::Other => {}
            Call::Runtime(job) => self.runtime_arrived(agent, job, None),
            Call::Upload(attempt, _) => self.retry_endings(agent, &[attempt]),
            Call::Report(attempts, asked) => {
                self.retry_endings(agent, &attempts);
                if asked {
                    self.call_failed(agent, Call::Lease);
                }
            }
        }
    }

    fn retry_endings(&mut self, agent: usize, attempts: &[AttemptId]) {
        for attempt in attempts {
            if let Some(ending) = self.agents[agent].ending.get_mut(attempt) {
                ending.in_flight = false;
            }
        }
        let delay_ms = self.dice.between(100, 2_000);
        self.agent_timer_at(agent, delay_ms, AgentTimer::Resend);
    }

    fn uploaded(&mut self, agent: usize, attempt: AttemptId, hash: wire::BlobHash) {
        let state = &mut self.agents[agent];
        let Some(ending) = state.ending.get_mut(&attempt) else {
            return;
        };
        ending.uploads.remove(&hash);
        let uploading = state
            .calls
            .values()
            .any(|call| matches!(call, Call::Upload(a, _) if *a == attempt));
        if !uploading {
            ending.in_flight = false;
            self.send_ending(agent, attempt);
            // The run is over once its outputs are up: its slot is free.
            self.try_lease(agent);
        }
    }

    /// Work arrived: each attempt starts, or goes back when the agent is paused or full.
    fn granted(&mut self, agent: usize, response: LeaseResponse) {
        let now_ms = self.now_ms();
        self.agents[agent].leasing = false;
        for runtime in &response.jobs {
            self.agents[agent]
                .runtimes
                .insert(runtime.job_id, runtime.limits);
        }
        let empty = response.attempts.is_empty();
        for grant in response.attempts {
            self.stats.grants_delivered += 1;
            let node = self.agents[agent].node;
            if self.grants_seen.len() == GRANTS_SEEN_MAX {
                self.grants_seen.pop_front();
            }
            self.grants_seen.push_back((grant.attempt_id, node));
            let state = &self.agents[agent];
            let stopped = now_ms < state.paused_until || state.draining_until.is_some();
            if stopped || state.slots_free() == 0 {
                let request = Request::Release {
                    token: state.token.clone().expect("granted in a session"),
                    attempts: vec![grant.attempt_id],
                };
                self.agent_call(agent, Call::Other, request, CALL_TIMEOUT_MS);
                continue;
            }
            let run = Run {
                job: grant.job_id,
                task: grant.task_index,
                done_at: None,
                past_deadline: false,
            };
            self.agents[agent].running.insert(grant.attempt_id, run);
            self.start_run(agent, grant.attempt_id);
        }
        if empty {
            let delay_ms = self.dice.between(50, 500);
            self.agent_timer_at(agent, delay_ms, AgentTimer::Lease);
        } else {
            self.try_lease(agent);
        }
    }

    /// Starts the clock of an attempt whose job's runtime is known, or fetches the runtime.
    fn start_run(&mut self, agent: usize, attempt: AttemptId) {
        let now_ms = self.now_ms();
        let state = &self.agents[agent];
        let job = state.running[&attempt].job;
        let Some(limits) = state.runtimes.get(&job).copied() else {
            let fetching = state
                .calls
                .values()
                .any(|call| matches!(call, Call::Runtime(j) if *j == job));
            if !fetching {
                let token = state.token.clone().expect("running in a session");
                let request = Request::Runtime { token, job };
                self.agent_call(agent, Call::Runtime(job), request, CALL_TIMEOUT_MS);
            }
            return;
        };
        let (done_at, past_deadline) = if self.dice.chance(0.02) {
            // It hangs: only its deadline in the pool ends it.
            (u64::MAX, false)
        } else if self.dice.chance(0.04) {
            (now_ms + limits.deadline_ms, true)
        } else {
            let run_ms = self
                .dice
                .between(20, limits.deadline_ms.clamp(21, 4_000) - 1);
            (now_ms + run_ms, false)
        };
        let run = self.agents[agent]
            .running
            .get_mut(&attempt)
            .expect("started above");
        run.done_at = Some(done_at);
        run.past_deadline = past_deadline;
        if done_at != u64::MAX {
            self.agent_timer_at(agent, done_at - now_ms, AgentTimer::Done(attempt));
        }
    }

    fn runtime_arrived(&mut self, agent: usize, job: JobId, runtime: Option<wire::JobRuntime>) {
        let waiting: Vec<AttemptId> = self.agents[agent]
            .running
            .iter()
            .filter(|(_, run)| run.job == job && run.done_at.is_none())
            .map(|(id, _)| *id)
            .collect();
        match runtime {
            Some(runtime) => {
                self.agents[agent].runtimes.insert(job, runtime.limits);
                for attempt in waiting {
                    self.start_run(agent, attempt);
                }
            }
            // As the real agent does: the attempt ends with a node error.
            None => {
                for attempt in waiting {
                    self.agents[agent].running.remove(&attempt);
                    let report = AttemptReport {
                        ran_on: None,
                        attempt_id: attempt,
                        outcome: Outcome::NodeError {
                            message: "cannot get the job's runtime".to_owned(),
                        },
                        usage: Usage::default(),
                        stdout: None,
                        stderr: None,
                        outputs: Vec::new(),
                        sealed_digest: None,
                    };
                    let ending = Ending {
                        report,
                        uploads: Default::default(),
                        in_flight: false,
                        since_ms: self.now_ms(),
                        lie: false,
                    };
                    self.agents[agent].ending.insert(attempt, ending);
                    self.send_ending(agent, attempt);
                }
                self.try_lease(agent);
            }
        }
    }
}
