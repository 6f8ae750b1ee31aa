//! The faults a simulated agent makes or meets while faults are on: its process crashes (and
//! comes back later to register again), it is cut off from the coordinator for a while, its
//! owner pauses it, it gives an attempt back, it restarts gracefully (draining first, so it may
//! register again at once), or it reports or uploads for an attempt granted to another node.

use wire::{AttemptId, AttemptReport, HeartbeatRequest, NodeActivity, Outcome, Usage};

use super::agent::{AgentTimer, CALL_TIMEOUT_MS, Call};
use super::agent_endings::blob_hash;
use super::net::{Party, Request};
use super::world::World;

/// How long a draining agent waits for its attempts before it gives them back.
const DRAIN_MS: u64 = 5_000;

impl World {
    /// Now and then, while faults are on, the agent misbehaves or meets bad luck.
    pub(super) fn chaos(&mut self, agent: usize) {
        if !self.chaos_on {
            return;
        }
        let rate = self.setup.agent_fault_per_mille;
        let roll = self.dice.below(1_000) as u64;
        match roll / rate.max(1) {
            _ if roll >= 6 * rate => {}
            0 => self.crash_agent(agent),
            1 => self.silence(agent),
            2 => self.pause(agent),
            3 => self.release_one(agent),
            4 => self.drain(agent),
            _ => self.forge(agent),
        }
        let delay_ms = self.dice.between(1_000, 8_000);
        self.agent_timer_at(agent, delay_ms, AgentTimer::Chaos);
    }

    /// The agent's process dies with everything it held; it starts again later.
    fn crash_agent(&mut self, agent: usize) {
        self.stats.agent_crashes += 1;
        self.agent_process_ends(agent);
        let purge_ms = self.setup.silent_purge_ms;
        let down_ms = if self.dice.chance(0.2) {
            self.dice.between(purge_ms, purge_ms + 20_000)
        } else {
            self.dice.between(200, 20_000)
        };
        self.trace.record(self.now_ms(), || {
            format!("agent {agent} crashes for {down_ms} ms")
        });
        self.agent_timer_at(agent, down_ms, AgentTimer::Wake);
        self.connection_reset(agent);
    }

    /// The coordinator may see a crashed agent's parked request go: as its handler's drop does
    /// (the waiter leaves), or with only its receiver gone (the grant then finds no one).
    fn connection_reset(&mut self, agent: usize) {
        let parked: Vec<u64> = self
            .coord
            .leases
            .iter()
            .filter(|(_, lease)| lease.to == Party::Agent(agent))
            .map(|(request, _)| *request)
            .collect();
        for request in parked {
            if self.dice.chance(0.5) {
                let lease = self.coord.leases.remove(&request).expect("listed above");
                if self.dice.chance(0.7) {
                    self.coord.parked.unpark(lease.node, request);
                }
            }
        }
    }

    fn silence(&mut self, agent: usize) {
        let silent_ms = self.dice.between(500, 25_000);
        self.trace.record(self.now_ms(), || {
            format!("agent {agent} is cut off for {silent_ms} ms")
        });
        self.agents[agent].silent_until = self.now_ms() + silent_ms;
        self.agent_timer_at(agent, silent_ms, AgentTimer::Wake);
    }

    /// The owner's policy stops work: attempts stand still, the heartbeat says so at once.
    fn pause(&mut self, agent: usize) {
        let now_ms = self.now_ms();
        let paused_ms = self.dice.between(500, 15_000);
        self.trace.record(now_ms, || {
            format!("agent {agent} pauses for {paused_ms} ms")
        });
        let state = &mut self.agents[agent];
        state.paused_until = now_ms + paused_ms;
        for run in state.running.values_mut() {
            if let Some(done_at) = run.done_at.as_mut()
                && *done_at != u64::MAX
            {
                *done_at += paused_ms;
            }
        }
        self.send_heartbeat(agent);
        self.agent_timer_at(agent, paused_ms, AgentTimer::Wake);
    }

    fn release_one(&mut self, agent: usize) {
        let state = &mut self.agents[agent];
        let (Some(token), Some(attempt)) =
            (state.token.clone(), state.running.keys().next().copied())
        else {
            return;
        };
        state.running.remove(&attempt);
        let request = Request::Release {
            token,
            attempts: vec![attempt],
        };
        self.agent_call(agent, Call::Other, request, CALL_TIMEOUT_MS);
        self.try_lease(agent);
    }

    /// Reports (or uploads for) an attempt granted to another node: the pool must refuse it.
    fn forge(&mut self, agent: usize) {
        let node = self.agents[agent].node;
        let others: Vec<AttemptId> = self
            .grants_seen
            .iter()
            .filter(|(_, holder)| *holder != node)
            .map(|(attempt, _)| *attempt)
            .collect();
        let Some(token) = self.agents[agent].token.clone() else {
            return;
        };
        if others.is_empty() {
            return;
        }
        let attempt = others[self.dice.below(others.len())];
        self.stats.forged += 1;
        let request = match self.dice.below(4) {
            0 => Request::Report {
                token,
                reports: vec![AttemptReport {
                    ran_on: None,
                    attempt_id: attempt,
                    outcome: Outcome::Succeeded,
                    usage: Usage::default(),
                    stdout: None,
                    stderr: None,
                    outputs: Vec::new(),
                    sealed_digest: None,
                }],
                slots_free: 0,
            },
            1 => Request::Upload {
                token,
                attempt,
                hash: blob_hash(&mut self.dice),
                size_bytes: 1,
            },
            2 => Request::Release {
                token,
                attempts: vec![attempt],
            },
            // A heartbeat that claims it: it must neither extend nor end it.
            _ => {
                let state = &self.agents[agent];
                let mut running = state.listed();
                running.push(attempt);
                let request = HeartbeatRequest {
                    running,
                    slots_free: state.slots_free(),
                    activity: NodeActivity::Active,
                    capabilities: None,
                    forgotten: Vec::new(),
                    copied: Vec::new(),
                    kept: Vec::new(),
                    dropped: Vec::new(),
                };
                Request::Heartbeat {
                    token,
                    request: Box::new(request),
                }
            }
        };
        self.agent_call(agent, Call::Other, request, CALL_TIMEOUT_MS);
    }

    /// A graceful restart: the agent says it drains (which answers its parked lease request),
    /// takes no more work, and exits once its attempts are done, or gives them back when that
    /// takes too long. Its successor may register at once.
    fn drain(&mut self, agent: usize) {
        let now_ms = self.now_ms();
        let state = &mut self.agents[agent];
        if state.token.is_none() || state.draining_until.is_some() {
            return;
        }
        state.draining_until = Some(now_ms + DRAIN_MS);
        self.trace
            .record(now_ms, || format!("agent {agent} drains to restart"));
        self.send_heartbeat(agent);
        self.agent_timer_at(agent, 100, AgentTimer::Drain);
    }

    pub(super) fn drain_step(&mut self, agent: usize) {
        let now_ms = self.now_ms();
        let Some(until_ms) = self.agents[agent].draining_until else {
            return;
        };
        let listed = self.agents[agent].listed();
        if !listed.is_empty() && now_ms < until_ms {
            self.agent_timer_at(agent, 100, AgentTimer::Drain);
            return;
        }
        if let (false, Some(token)) = (listed.is_empty(), self.agents[agent].token.clone()) {
            let request = Request::Release {
                token,
                attempts: listed,
            };
            self.agent_call(agent, Call::Other, request, CALL_TIMEOUT_MS);
        }
        self.stats.agent_restarts += 1;
        self.agent_process_ends(agent);
        let delay_ms = self.dice.between(50, 1_000);
        self.agent_timer_at(agent, delay_ms, AgentTimer::Wake);
    }

    /// The agent's process is gone with all it held; timers of this life stop.
    fn agent_process_ends(&mut self, agent: usize) {
        let state = &mut self.agents[agent];
        state.life += 1;
        state.down = true;
        state.silent_until = 0;
        state.paused_until = 0;
        state.draining_until = None;
        state.forget_session();
        state.runtimes.clear();
    }

    /// The owner removed the agent's node: the agent stops for good, as the real one does.
    pub(super) fn agent_removed(&mut self, agent: usize) {
        self.trace.record(self.now_ms(), || {
            format!("agent {agent} was removed and stops")
        });
        self.agent_process_ends(agent);
        self.agents[agent].removed = true;
    }
}
