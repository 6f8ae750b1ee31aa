//! Simulated agents: each registers (challenge, then a registration signing its nonce), asks for
//! work with a long poll, runs what it is granted for a while, uploads the outputs and reports
//! them, heartbeats the attempts it runs, and gives work back. As the real agent does, it lists
//! in its heartbeat only the attempts still running, registers again on a 401 and drops the
//! old session's attempts, and retries reports until they are answered.
//!
//! Faults (`chaos`): an agent crashes (loses everything, comes back later and registers again),
//! goes silent (a partition: nothing it sends arrives, nothing reaches it, its attempts run on),
//! pauses (its owner's policy stops work; its heartbeats say so), releases an attempt, or sends
//! a report or upload for an attempt granted to another node, which must be refused.
//!
//! In a public pool each agent registers with a join token of its own (so each is an owner of
//! its own), and some cheat (see `setup::Cheat`); a banned agent's join token is revoked, its
//! next challenge refused, and it stops for good.

use std::collections::BTreeMap;

use wire::{
    AttemptId, AttemptReport, BlobHash, Capabilities, HeartbeatRequest, JobId, Limits,
    NodeActivity, NodeId,
};

use super::net::{Party, Request};
use super::setup::Cheat;
use super::world::{Event, World};

/// How long an agent waits for a reply besides a lease's own wait.
pub(super) const CALL_TIMEOUT_MS: u64 = 3_000;

/// What a simulated node lends. In a family pool every fourth is a browser tab, which takes no
/// job whose fuel must be metered; a public pool's jobs all are, so its nodes are all agents.
/// Agents have encryption keys (private jobs' keys are wrapped to them); tabs have none.
pub(super) fn capabilities(agent: usize, public: bool) -> Capabilities {
    let runtime = match agent % 4 {
        3 if !public => wire::NodeRuntime::Browser,
        _ => wire::NodeRuntime::Native,
    };
    // The simulation routes registrations without their signatures, so none is made here.
    let encryption_key = runtime.is_native().then(|| wire::NodeEncryptionKey {
        key: format!("{agent:064x}"),
        signature: "0".repeat(128),
    });
    Capabilities {
        cores: 4,
        memory_bytes: 8 << 30,
        disk_free_bytes: 1 << 40,
        arch: "x86_64".to_owned(),
        os: "linux".to_owned(),
        module_bytes_max: wire::limits::MODULE_BYTES_MAX,
        wasi_interfaces: Vec::new(),
        wasm_features: Vec::new(),
        runtime,
        encryption_key,
        peer_address: None,
    }
}

/// A call the agent waits on an answer to.
#[derive(Debug, Clone)]
pub(super) enum Call {
    Challenge,
    Register,
    Lease,
    Heartbeat,
    Runtime(JobId),
    Upload(AttemptId, BlobHash),
    /// Reports of these attempts, and whether they asked for attempts too (as a lease does).
    Report(Vec<AttemptId>, bool),
    /// Releases and reports for others' attempts: nothing waits on their answer.
    Other,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum AgentTimer {
    /// The end of a crash, a silence or a pause, or the first start.
    Wake,
    Register,
    Heartbeat,
    Lease,
    Done(AttemptId),
    /// Reports and uploads that went unanswered are sent again.
    Resend,
    Chaos,
    /// A draining agent looks whether its attempts are done.
    Drain,
    CallTimeout(u64),
}

/// An attempt the agent runs.
pub(super) struct Run {
    pub(super) job: JobId,
    pub(super) task: u32,
    /// When it ends; `None` while the job's runtime is fetched, `u64::MAX` when it hangs.
    pub(super) done_at: Option<u64>,
    /// The sandbox stops it at its deadline.
    pub(super) past_deadline: bool,
}

/// An attempt that ended on the agent, its outputs on their way up and then its report.
pub(super) struct Ending {
    pub(super) report: AttemptReport,
    /// Blobs still to upload, with their sizes.
    pub(super) uploads: BTreeMap<BlobHash, u64>,
    /// Whether a call carrying it (an upload or the report) is unanswered.
    pub(super) in_flight: bool,
    pub(super) since_ms: u64,
    /// Whether its report carries a lie.
    pub(super) lie: bool,
}

pub(super) struct Agent {
    pub(super) node: NodeId,
    pub(super) slots: u32,
    pub(super) labels: BTreeMap<String, String>,
    /// The hash of the join token it registers with: its owner.
    pub(super) join_hash: String,
    /// The network it registers from, in a public pool.
    pub(super) network: Option<String>,
    pub(super) cheat: Option<Cheat>,
    /// Whether it lies now (a cheater `After` some results starts at some point).
    pub(super) lying: bool,
    /// Its reports the pool accepted, across its sessions.
    pub(super) accepted: u32,
    /// Bumped at each crash: timers of an earlier life are ignored.
    pub(super) life: u64,
    pub(super) down: bool,
    pub(super) silent_until: u64,
    pub(super) paused_until: u64,
    /// While it drains before a restart: when it gives up waiting for its attempts.
    pub(super) draining_until: Option<u64>,
    /// The owner removed its node: it stopped for good.
    pub(super) removed: bool,
    pub(super) token: Option<String>,
    pub(super) heartbeat_ms: u64,
    pub(super) registering: bool,
    pub(super) leasing: bool,
    pub(super) calls: BTreeMap<u64, Call>,
    pub(super) runtimes: BTreeMap<JobId, Limits>,
    pub(super) running: BTreeMap<AttemptId, Run>,
    pub(super) ending: BTreeMap<AttemptId, Ending>,
}

/// Who an agent is, beyond its node id: its owner's join token, its network, how it cheats.
pub(super) struct Identity {
    pub(super) join_hash: String,
    pub(super) network: Option<String>,
    pub(super) cheat: Option<Cheat>,
}

impl Agent {
    pub(super) fn new(node: NodeId, slots: u32, zone: &str, identity: Identity) -> Self {
        Self {
            node,
            slots,
            labels: [("zone".to_owned(), zone.to_owned())].into(),
            join_hash: identity.join_hash,
            network: identity.network,
            lying: matches!(identity.cheat, Some(Cheat::Always | Cheat::Ring)),
            cheat: identity.cheat,
            accepted: 0,
            life: 0,
            // Down until its first start.
            down: true,
            silent_until: 0,
            paused_until: 0,
            draining_until: None,
            removed: false,
            token: None,
            heartbeat_ms: 1_000,
            registering: false,
            leasing: false,
            calls: BTreeMap::new(),
            runtimes: BTreeMap::new(),
            running: BTreeMap::new(),
            ending: BTreeMap::new(),
        }
    }

    /// Forgets the session and everything of it: after a crash, or a 401.
    pub(super) fn forget_session(&mut self) {
        self.token = None;
        self.registering = false;
        self.leasing = false;
        self.calls.clear();
        self.running.clear();
        self.ending.clear();
    }

    /// The attempts the agent runs, as its heartbeat lists them: those running, and those
    /// whose outputs are still being uploaded (the real runner uploads before it returns).
    /// Attempts whose report is on its way are no longer listed.
    pub(super) fn listed(&self) -> Vec<AttemptId> {
        let mut listed: Vec<AttemptId> = self.running.keys().copied().collect();
        listed.extend(
            self.ending
                .iter()
                .filter(|(_, ending)| !ending.uploads.is_empty())
                .map(|(id, _)| *id),
        );
        listed.sort_unstable();
        listed
    }

    /// Slots not taken by a listed attempt.
    pub(super) fn slots_free(&self) -> u32 {
        self.slots.saturating_sub(self.listed().len() as u32)
    }

    fn activity(&self, now_ms: u64) -> NodeActivity {
        if self.draining_until.is_some() {
            NodeActivity::Draining
        } else if now_ms < self.paused_until {
            NodeActivity::Paused {
                reason: "the owner is using the machine".to_owned(),
            }
        } else {
            NodeActivity::Active
        }
    }
}

impl World {
    pub(super) fn agent_timer_at(&mut self, agent: usize, delay_ms: u64, timer: AgentTimer) {
        let life = self.agents[agent].life;
        self.schedule(delay_ms, Event::Agent { agent, life, timer });
    }

    /// Sends a call of `agent`, unless it is silent; its answer is waited on for a while.
    pub(super) fn agent_call(
        &mut self,
        agent: usize,
        call: Call,
        request: Request,
        timeout_ms: u64,
    ) {
        let id = self.next_call();
        self.agents[agent].calls.insert(id, call);
        self.agent_timer_at(agent, timeout_ms, AgentTimer::CallTimeout(id));
        if self.now_ms() < self.agents[agent].silent_until {
            self.trace.record(self.now_ms(), || {
                format!("agent {agent} is cut off: #{id} is not sent")
            });
            return;
        }
        self.send_request(Party::Agent(agent), id, request);
    }

    pub(super) fn agent_timer(&mut self, agent: usize, timer: AgentTimer) {
        let now_ms = self.now_ms();
        if self.agents[agent].down && !matches!(timer, AgentTimer::Wake) {
            return;
        }
        match timer {
            AgentTimer::Wake => self.agent_wake(agent),
            AgentTimer::Register => self.start_registration(agent),
            AgentTimer::Heartbeat => {
                self.send_heartbeat(agent);
                let every = self.agents[agent].heartbeat_ms.max(50);
                self.agent_timer_at(agent, every, AgentTimer::Heartbeat);
            }
            AgentTimer::Lease => self.try_lease(agent),
            AgentTimer::Done(attempt) => {
                let done_at = self.agents[agent]
                    .running
                    .get(&attempt)
                    .and_then(|r| r.done_at);
                match done_at {
                    Some(at) if at == u64::MAX => {}
                    Some(at) if at > now_ms => {
                        self.agent_timer_at(agent, at - now_ms, AgentTimer::Done(attempt));
                    }
                    Some(_) => self.attempt_ended(agent, attempt),
                    None => {}
                }
            }
            AgentTimer::Resend => self.resend(agent),
            AgentTimer::Chaos => self.chaos(agent),
            AgentTimer::Drain => self.drain_step(agent),
            AgentTimer::CallTimeout(call) => {
                if let Some(call) = self.agents[agent].calls.remove(&call) {
                    self.call_failed(agent, call);
                }
            }
        }
    }

    /// A crash ends, or a silence or pause does: the agent picks up where it is.
    fn agent_wake(&mut self, agent: usize) {
        let now_ms = self.now_ms();
        let state = &mut self.agents[agent];
        if state.down {
            state.down = false;
            self.trace
                .record(now_ms, || format!("agent {agent} starts"));
            let every = self.agents[agent].heartbeat_ms;
            self.agent_timer_at(agent, every, AgentTimer::Heartbeat);
            if self.chaos_on {
                let delay_ms = self.dice.between(1_000, 8_000);
                self.agent_timer_at(agent, delay_ms, AgentTimer::Chaos);
            }
        }
        if self.agents[agent].token.is_none() {
            self.start_registration(agent);
            return;
        }
        self.send_heartbeat(agent);
        self.try_lease(agent);
        self.resend(agent);
    }

    fn start_registration(&mut self, agent: usize) {
        let state = &mut self.agents[agent];
        if state.registering || state.token.is_some() || state.down {
            return;
        }
        state.registering = true;
        let request = Request::Challenge {
            join_hash: state.join_hash.clone(),
        };
        self.agent_call(agent, Call::Challenge, request, CALL_TIMEOUT_MS);
    }

    /// Registers again after a 401: the old session's attempts are dropped.
    pub(super) fn reregister(&mut self, agent: usize) {
        self.trace.record(self.now_ms(), || {
            format!("agent {agent} registers again after a 401")
        });
        self.agents[agent].forget_session();
        self.start_registration(agent);
    }

    pub(super) fn send_heartbeat(&mut self, agent: usize) {
        let now_ms = self.now_ms();
        let state = &self.agents[agent];
        let Some(token) = state.token.clone() else {
            return;
        };
        let request = HeartbeatRequest {
            running: state.listed(),
            slots_free: state.slots_free(),
            activity: state.activity(now_ms),
            capabilities: None,
            forgotten: Vec::new(),
            copied: Vec::new(),
            kept: Vec::new(),
            dropped: Vec::new(),
        };
        let request = Request::Heartbeat {
            token,
            request: Box::new(request),
        };
        self.agent_call(agent, Call::Heartbeat, request, CALL_TIMEOUT_MS);
    }

    pub(super) fn try_lease(&mut self, agent: usize) {
        let now_ms = self.now_ms();
        let state = &self.agents[agent];
        let free = state.slots_free();
        let stopped = now_ms < state.paused_until || state.draining_until.is_some();
        if state.leasing || free == 0 || stopped {
            return;
        }
        let Some(token) = state.token.clone() else {
            return;
        };
        let wait_ms = self.dice.between(0, 2 * self.agents[agent].heartbeat_ms) as u32;
        self.agents[agent].leasing = true;
        let request = Request::Lease {
            token,
            slots_free: free,
            wait_ms,
        };
        let timeout_ms = u64::from(wait_ms) + CALL_TIMEOUT_MS;
        self.agent_call(agent, Call::Lease, request, timeout_ms);
    }
}
