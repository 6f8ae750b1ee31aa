//! The event loop of one seed: a queue of timed events (messages arriving, timers of agents and
//! requesters, the lease reaper, the retention sweep, commits, crashes and restarts) taken in
//! time order on a manual clock, the checks run after each. A run has a phase with faults
//! (`chaos`), then a calm one in which every agent comes back and the pool must drain, then a
//! last restart that lost no write and a retention sweep past every job's time.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use store::{RequesterRow, TokenRole, TokenRow, Write};
use wire::{AttemptId, JobId, NodeId, RequesterId};

use super::agent::{Agent, AgentTimer, Identity};
use super::checks::{Due, Replayed};
use super::coord::Coord;
use super::dice::Dice;
use super::net::{Faults, Party, Reply, Request};
use super::requester::Requester;
use super::routes::JOIN_HASH;
use super::setup::{Setup, Stats, Summary};
use super::shadow::Shadow;
use super::trace::{Trace, TraceMode};
use crate::env::{Clock, Entropy, ManualClock, SeededEntropy};
use crate::pool::{Expire, PurgeEnded, PurgeSilentNodes};

/// When the simulated clock starts.
const START_MS: u64 = 1_700_000_000_000;
/// How long the pool may take to drain once the faults stop.
const DRAIN_MS_MAX: u64 = 30 * 60_000;
/// Jobs and nodes the retention sweep forgets per round (as `retention` does).
const JOBS_PER_ROUND_MAX: usize = 1_000;
const NODES_PER_ROUND_MAX: usize = 10_000;

#[derive(Debug, Clone)]
pub(super) enum Event {
    AtCoordinator {
        from: Party,
        call: u64,
        request: Request,
    },
    AtParty {
        to: Party,
        call: u64,
        reply: Reply,
    },
    Agent {
        agent: usize,
        life: u64,
        timer: AgentTimer,
    },
    Requester {
        requester: usize,
    },
    RequesterTimeout {
        requester: usize,
        call: u64,
    },
    ParkTimeout {
        generation: u64,
        request: u64,
    },
    Reaper {
        generation: u64,
    },
    Sweep {
        generation: u64,
    },
    /// A round of the recall loop: results whose one witness was banned are taken back.
    Recall {
        generation: u64,
    },
    Commit {
        generation: u64,
    },
    Crash,
    Restart,
    EndChaos,
    /// Requesters whose private jobs wait wrap their keys to every agent.
    GrantPrivate,
}

pub(super) struct World {
    pub(super) setup: Setup,
    pub(super) dice: Dice,
    clock: ManualClock,
    pub(super) entropy: SeededEntropy,
    pub(super) trace: Trace,
    events: BTreeMap<(u64, u64), Event>,
    next_event: u64,
    next_call: u64,
    pub(super) faults: Faults,
    pub(super) chaos_on: bool,
    pub(super) coord: Coord,
    /// The pool as the writes queued so far tell it.
    pub(super) memory: Shadow,
    /// The pool as the committed writes tell it.
    pub(super) durable: Shadow,
    pub(super) agents: Vec<Agent>,
    pub(super) requesters: Vec<Requester>,
    /// Recent grants delivered and the nodes they went to.
    pub(super) grants_seen: VecDeque<(AttemptId, NodeId)>,
    pub(super) stats: Stats,
    /// Job statuses before a crash that lost no write: the restored pool must show them.
    replay: Option<BTreeMap<JobId, Replayed>>,
    pub(super) checks: Due,
    /// A crash waits for writes to be queued, so that it may lose some.
    pub(super) crash_armed: bool,
}

/// Runs one seed to its end; panics on the first broken rule.
pub(super) async fn run_seed(seed: u64, dir: &Path, mode: TraceMode) -> Summary {
    let mut world = World::new(seed, dir, mode).await;
    world.start().await;
    world.run().await;
    world.finish().await;
    world.stats.simulated_ms = world.now_ms() - START_MS;
    Summary {
        digest: world.trace.digest(),
        lines: world.trace.lines(),
        stats: world.stats.clone(),
    }
}

impl World {
    async fn new(seed: u64, dir: &Path, mode: TraceMode) -> Self {
        let mut dice = Dice::new(seed);
        let setup = Setup::draw(&mut dice);
        let url = format!("sqlite://{}", dir.join("state.db").display());
        let coord = Coord::new(url, setup.lease_ms).await;
        let agents = (0..setup.agents)
            .map(|index| {
                let zone = if index % 2 == 0 { "a" } else { "b" };
                let identity = identity(&setup, index, &mut dice);
                Agent::new(
                    NodeId(dice.bits()),
                    dice.between(1, 4) as u32,
                    zone,
                    identity,
                )
            })
            .collect();
        let entropy = SeededEntropy::from_seed(seed ^ 0x5eed_0f1d);
        let requesters = (0..setup.requesters)
            .map(|index| Requester {
                id: RequesterId(entropy.next_u64()),
                token: format!("sim-requester-{index}"),
                jobs: Vec::new(),
                calls: BTreeMap::new(),
                credited: false,
            })
            .collect();
        let public = setup.public.is_some();
        let mut trace = Trace::new(mode);
        trace.record(START_MS, || format!("seed {seed}: {setup:?}"));
        Self {
            faults: setup.faults,
            setup,
            dice,
            clock: ManualClock::new(START_MS),
            entropy,
            trace,
            events: BTreeMap::new(),
            next_event: 0,
            next_call: 0,
            chaos_on: true,
            coord,
            memory: Shadow::new(public),
            durable: Shadow::new(public),
            agents,
            requesters,
            grants_seen: VecDeque::new(),
            stats: Stats::default(),
            replay: None,
            checks: Due::default(),
            crash_armed: false,
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub(super) fn next_call(&mut self) -> u64 {
        self.next_call += 1;
        self.next_call
    }

    pub(super) fn schedule(&mut self, delay_ms: u64, event: Event) {
        let at_ms = self.now_ms() + delay_ms;
        self.events.insert((at_ms, self.next_event), event);
        self.next_event += 1;
    }

    /// The pool's tokens (as `crowdcloud up` makes them), then the coordinator's first start,
    /// and every party's first step.
    async fn start(&mut self) {
        let now_ms = self.now_ms();
        let join_hashes: std::collections::BTreeSet<&str> =
            self.agents.iter().map(|a| a.join_hash.as_str()).collect();
        let mut writes: Vec<Write> = join_hashes
            .into_iter()
            .map(|hash| Write::InsertToken(token_row(hash, TokenRole::Join, now_ms)))
            .collect();
        for requester in &self.requesters {
            writes.push(Write::InsertRequester(RequesterRow {
                id: requester.id,
                name: requester.token.clone(),
                created_at_ms: now_ms,
            }));
            let role = TokenRole::Requester(requester.id);
            writes.push(Write::InsertToken(token_row(
                &requester.token,
                role,
                now_ms,
            )));
        }
        self.coord
            .store()
            .write(writes)
            .await
            .expect("the tokens are written");
        self.start_coordinator().await;
        for agent in 0..self.agents.len() {
            let delay_ms = self.dice.between(0, 3_000);
            self.agent_timer_at(agent, delay_ms, AgentTimer::Wake);
        }
        for requester in 0..self.requesters.len() {
            let delay_ms = self.dice.between(0, 2_000);
            self.schedule(delay_ms, Event::Requester { requester });
        }
        for _ in 0..self.setup.crashes {
            let delay_ms = self.dice.between(1_000, self.setup.chaos_ms);
            self.schedule(delay_ms, Event::Crash);
        }
        self.schedule(self.setup.chaos_ms, Event::EndChaos);
    }

    /// Takes events in time order until the faults are over and the pool has drained.
    async fn run(&mut self) {
        let deadline_ms = START_MS + self.setup.chaos_ms + DRAIN_MS_MAX;
        while self.chaos_on || !self.drained() {
            let ((at_ms, _), event) = self.events.pop_first().expect("agents always have timers");
            assert!(
                at_ms <= deadline_ms,
                "the pool did not drain in {DRAIN_MS_MAX} ms after the faults stopped; open jobs: {:?}",
                self.open_job_statuses()
            );
            self.clock.advance(at_ms - self.now_ms());
            self.stats.events += 1;
            if !matches!(event, Event::AtCoordinator { .. } | Event::AtParty { .. }) {
                self.trace.record(at_ms, || format!("{event:?}"));
            }
            self.handle(event).await;
            if self.coord.up {
                self.deliver_parked();
                self.check_step();
            }
        }
    }

    async fn handle(&mut self, event: Event) {
        // The reaper, sweep, commit and parked requests of a process that crashed are gone.
        let (generation, up) = (self.coord.generation, self.coord.up);
        let live = |of: u64| up && of == generation;
        match event {
            Event::AtCoordinator {
                from,
                call,
                request,
            } => self.at_coordinator(from, call, request),
            Event::AtParty {
                to: Party::Agent(agent),
                call,
                reply,
            } => self.agent_reply(agent, call, reply),
            Event::AtParty {
                to: Party::Requester(requester),
                call,
                reply,
            } => self.requester_reply(requester, call, reply),
            // Timers of an agent's earlier life died with it.
            Event::Agent { agent, life, timer } if life == self.agents[agent].life => {
                self.agent_timer(agent, timer);
            }
            Event::Requester { requester } => self.requester_timer(requester),
            Event::RequesterTimeout { requester, call } => self.requester_timeout(requester, call),
            Event::ParkTimeout {
                generation,
                request,
            } if live(generation) => {
                self.park_timeout(request);
            }
            Event::Reaper { generation } if live(generation) => self.reap(),
            Event::Sweep { generation } if live(generation) => self.sweep(),
            Event::Recall { generation } if live(generation) => self.recall_round().await,
            Event::Commit { generation } if live(generation) => self.commit().await,
            Event::Crash => self.crash().await,
            Event::Restart => self.restart().await,
            Event::GrantPrivate if !self.grant_to_all() => {
                self.schedule(30_000, Event::GrantPrivate);
            }
            Event::EndChaos => {
                self.trace
                    .record(self.now_ms(), || "the faults stop".to_owned());
                self.chaos_on = false;
                self.crash_armed = false;
                self.faults = Faults::none();
                self.schedule(1_000, Event::GrantPrivate);
            }
            _ => {}
        }
    }

    /// The lease reaper's round.
    fn reap(&mut self) {
        let (expired, _) = self.apply(Expire {});
        self.stats.expired += expired as u64;
        let generation = self.coord.generation;
        self.schedule(self.reaper_period_ms(), Event::Reaper { generation });
    }

    /// The retention sweep's round, its blobs aside: ended jobs past their time, then nodes
    /// silent too long.
    fn sweep(&mut self) {
        let keep_ms = self.setup.keep_results_ms;
        self.apply(PurgeEnded {
            keep_ms,
            jobs_max: JOBS_PER_ROUND_MAX,
        });
        let silent_ms = self.setup.silent_purge_ms;
        self.apply(PurgeSilentNodes {
            silent_ms,
            store_every_ms: silent_ms / 8,
            nodes_max: NODES_PER_ROUND_MAX,
        });
        let generation = self.coord.generation;
        self.schedule(
            (keep_ms / 4).clamp(100, 600_000),
            Event::Sweep { generation },
        );
    }

    async fn crash(&mut self) {
        if !self.coord.up {
            return;
        }
        if self.coord.queued_seq == self.coord.committed_seq && self.dice.chance(0.7) {
            // A crash with nothing queued loses nothing: wait for the next writes instead.
            self.crash_armed = true;
            return;
        }
        let before = self.statuses();
        let nothing_lost = self.crash_coordinator().await;
        self.replay = nothing_lost.then_some(before);
        let down_ms = self.dice.between(0, 3_000);
        self.schedule(down_ms, Event::Restart);
    }

    async fn restart(&mut self) {
        self.start_coordinator().await;
        if let Some(before) = self.replay.take() {
            self.check_replay(&before);
        }
    }

    /// Whether the pool is done: every job ended, no attempt held, no submission on its way,
    /// and every agent back.
    fn drained(&self) -> bool {
        self.coord.up
            && self.memory.open_jobs() == 0
            && self.memory.recalls_left() == 0
            && self.coord.pool.attempts_live() == 0
            && self.requesters.iter().all(|r| r.calls.is_empty())
            && self.agents.iter().all(|a| a.removed || !a.down)
    }

    /// The drained pool checked, then restarted with nothing lost, then swept past every job's
    /// retention.
    async fn finish(&mut self) {
        self.check_drained();
        self.commit().await;
        let before = self.statuses();
        assert!(self.crash_coordinator().await, "nothing was queued");
        self.start_coordinator().await;
        self.check_replay(&before);
        self.clock.advance(self.setup.keep_results_ms + 1);
        self.sweep();
        self.commit().await;
        self.check_step();
        assert!(
            self.memory.jobs.is_empty(),
            "every ended job is purged once its results' time is up"
        );
    }
}

/// Who agent `index` is: in a family pool, one of the owner's machines on the pool's join
/// token; in a public pool, an owner of its own (the first 16 hex digits of its join token's
/// hash, distinct for each agent) on a network of its own, but for a ring, whose members share
/// one.
fn identity(setup: &Setup, index: usize, dice: &mut Dice) -> Identity {
    let cheat = setup.cheat(index);
    if setup.public.is_none() {
        return Identity {
            join_hash: JOIN_HASH.to_owned(),
            network: None,
            cheat,
        };
    }
    let owner = ((index as u64 + 1) << 40) | (dice.bits() >> 24);
    let network = match cheat {
        Some(super::setup::Cheat::Ring) => "192.0.2.0/24".to_owned(),
        _ => format!("10.0.{index}.0/24"),
    };
    Identity {
        join_hash: format!("{owner:016x}{:048x}", dice.bits()),
        network: Some(network),
        cheat,
    }
}

fn token_row(hash: &str, role: TokenRole, now_ms: u64) -> TokenRow {
    TokenRow {
        hash: hash.to_owned(),
        role,
        name: hash.to_owned(),
        created_at_ms: now_ms,
        revoked_at_ms: None,
    }
}
