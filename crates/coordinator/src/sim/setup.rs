//! What one seed's pool looks like (its size, timings and how hard faults hit it, all drawn
//! from the seed, and whether it is a public pool: its verification policy and which agents
//! cheat, and how), and what a run reports when it ends.

use super::dice::Dice;
use super::net::Faults;
use crate::pool::UnfinishedMax;

/// What one seed's pool looks like and how hard it is treated.
#[derive(Debug, Clone)]
pub(super) struct Setup {
    pub(super) agents: usize,
    pub(super) requesters: usize,
    pub(super) lease_ms: u64,
    pub(super) keep_results_ms: u64,
    pub(super) silent_purge_ms: u64,
    /// How long faults go on.
    pub(super) chaos_ms: u64,
    pub(super) crashes: u64,
    pub(super) faults: Faults,
    pub(super) commit_delay_max_ms: u64,
    pub(super) nodes_per_join_token_max: u32,
    pub(super) unfinished_tasks_max: u64,
    pub(super) unfinished_tasks_per_requester_max: u64,
    /// Chances in a thousand, per fault and per agent tick, of each agent fault.
    pub(super) agent_fault_per_mille: u64,
    /// Whether jobs may require a zone label (only when every agent can join).
    pub(super) labels_required: bool,
    /// A public pool's settings, in about a third of the seeds; a family pool otherwise.
    pub(super) public: Option<Public>,
}

/// A public pool: every job verifies, every agent has an owner of its own, and some cheat.
#[derive(Debug, Clone)]
pub(super) struct Public {
    pub(super) policy: verify::Policy,
    pub(super) networks_apart: bool,
    /// How each agent cheats, by its index; `None` for an honest one.
    pub(super) cheats: Vec<Option<Cheat>>,
    /// Whole credits the owner grants a requester at a time.
    pub(super) grant_credits: u64,
}

/// How a cheating agent lies: with a result of the task that is not the honest one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cheat {
    /// Every result it reports.
    Always,
    /// Honest until this many of its reports were accepted, then every result (once nothing
    /// honest of it is still on its way, so its lies all reach the pool after its truths).
    After(u32),
    /// Every result, and the same lie as the ring's other member: two identities of two
    /// owners that vouch for each other (the most the rules guard against).
    Ring,
    /// About one result in four, honest otherwise: once trusted, a lie of its may be released
    /// by a passed audit of a later, honest result, and is taken back when it is caught.
    Sometimes,
}

/// Members a ring may have: three owners agreeing are a quorum, whatever the truth.
const RING_MAX: usize = 2;

/// Agents a public pool has at least: three honest owners must be left to agree.
const PUBLIC_AGENTS_MIN: usize = 5;

impl Setup {
    pub(super) fn draw(dice: &mut Dice) -> Self {
        let public = dice.chance(1.0 / 3.0);
        let mut agents = dice.between(2, 20) as usize;
        if public {
            agents = agents.max(PUBLIC_AGENTS_MIN);
        }
        let nodes_per_join_token_max =
            dice.pick(&[1_000, agents as u32 + 1, (agents as u32 / 2).max(1)]);
        Self {
            agents,
            requesters: dice.between(1, 3) as usize,
            lease_ms: dice.between(1_500, 6_000),
            keep_results_ms: dice.between(10_000, 120_000),
            silent_purge_ms: dice.between(20_000, 120_000),
            chaos_ms: dice.between(20_000, 60_000),
            crashes: dice.between(0, 3),
            faults: Faults {
                drop: dice.pick(&[0.0, 0.01, 0.05, 0.1]),
                duplicate: dice.pick(&[0.0, 0.02, 0.08]),
                delay_max_ms: dice.between(1, 300),
            },
            commit_delay_max_ms: dice.between(0, 40),
            nodes_per_join_token_max,
            unfinished_tasks_max: dice.between(10, 80),
            unfinished_tasks_per_requester_max: dice.between(5, 40),
            agent_fault_per_mille: dice.between(0, 60),
            // Zones would halve the honest owners a task may be checked by.
            labels_required: !public && nodes_per_join_token_max as usize >= agents,
            public: public.then(|| Public::draw(dice, agents)),
        }
    }

    /// How agent `agent` cheats, if it does.
    pub(super) fn cheat(&self, agent: usize) -> Option<Cheat> {
        self.public.as_ref().and_then(|public| public.cheats[agent])
    }

    pub(super) fn unfinished_max(&self) -> UnfinishedMax {
        UnfinishedMax {
            pool: self.unfinished_tasks_max,
            per_requester: self.unfinished_tasks_per_requester_max,
            pool_bytes: crate::UNFINISHED_BYTES_MAX_DEFAULT,
            per_requester_bytes: crate::UNFINISHED_BYTES_PER_REQUESTER_MAX_DEFAULT,
        }
    }
}

impl Public {
    /// A small probation, so nodes earn trust within a run; an audit rate from none (held
    /// results wait for a forced audit) to every result; up to 30 % of the agents cheating.
    fn draw(dice: &mut Dice, agents: usize) -> Self {
        let policy = verify::Policy {
            probation_results: dice.between(2, 5) as u32,
            audit_per_million: dice.pick(&[0, 50_000, 250_000, 1_000_000]),
            held_max: dice.pick(&[1, 4, 40]),
            ..verify::Policy::PUBLIC
        };
        let mut cheats = vec![None; agents];
        let cheaters = agents * dice.between(0, 30) as usize / 100;
        let mut ring = 0;
        for _ in 0..cheaters {
            let honest: Vec<usize> = (0..agents).filter(|a| cheats[*a].is_none()).collect();
            let agent = honest[dice.below(honest.len())];
            let cheat = match dice.below(4) {
                0 => Cheat::After(dice.between(1, 8) as u32),
                1 if ring < RING_MAX => {
                    ring += 1;
                    Cheat::Ring
                }
                2 => Cheat::Sometimes,
                _ => Cheat::Always,
            };
            cheats[agent] = Some(cheat);
        }
        Self {
            policy,
            networks_apart: dice.chance(0.5),
            cheats,
            grant_credits: dice.between(1, 3),
        }
    }
}

macro_rules! stats {
    ($($field:ident),* $(,)?) => {
        /// What happened in a run, for the summary the tests print.
        #[derive(Debug, Default, Clone)]
        pub(super) struct Stats {
            $(pub(super) $field: u64,)*
        }

        impl Stats {
            pub(super) fn add(&mut self, other: &Stats) {
                $(self.$field += other.$field;)*
            }
        }
    };
}

stats!(
    events,
    requests,
    messages_lost,
    messages_doubled,
    writes,
    commits,
    crashes,
    writes_lost,
    replays_checked,
    reports_of_restored,
    agent_crashes,
    sessions_forgotten,
    grants_delivered,
    grants_with_reports,
    reports_accepted,
    reports_refused,
    refused_not_current,
    refused_not_held,
    refused_blob,
    refused_fuel,
    forgotten_while_reporting,
    uploads_refused,
    released,
    refusals,
    forged,
    agent_restarts,
    nodes_removed,
    requeued_by_removal,
    submissions,
    cancels,
    keys_granted,
    expired,
    jobs,
    tasks,
    tasks_succeeded,
    tasks_failed,
    tasks_cancelled,
    replicas_stopped,
    public_seeds,
    cheaters,
    lies_accepted,
    grants,
    tasks_verified,
    tasks_inconclusive,
    bans,
    results_vouched_alone,
    results_vouched_wrong,
    results_recalled,
    liars_weighed_unbanned,
    cheaters_turned,
    simulated_ms,
);

/// A run's outcome: the digest of its trace, and what happened.
#[derive(Debug, Clone)]
pub(super) struct Summary {
    pub(super) digest: u64,
    pub(super) lines: u64,
    pub(super) stats: Stats,
}
