//! What one seed's pool looks like (its size, timings and how hard faults hit it, all drawn
//! from the seed), and what a run reports when it ends.

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
}

impl Setup {
    pub(super) fn draw(dice: &mut Dice) -> Self {
        let agents = dice.between(2, 20) as usize;
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
            labels_required: nodes_per_join_token_max as usize >= agents,
        }
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
    expired,
    jobs,
    tasks,
    tasks_succeeded,
    tasks_failed,
    tasks_cancelled,
    replicas_stopped,
    simulated_ms,
);

/// A run's outcome: the digest of its trace, and what happened.
#[derive(Debug, Clone)]
pub(super) struct Summary {
    pub(super) digest: u64,
    pub(super) lines: u64,
    pub(super) stats: Stats,
}
