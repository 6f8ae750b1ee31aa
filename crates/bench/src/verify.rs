//! `crowdcloud bench verify`: how well the verification policy of a public pool (the `verify`
//! crate) keeps cheaters' wrong results from requesters, and what it costs in executions.
//!
//! The model (this module): a seeded simulation of a pool of nodes, each its own owner, some of
//! them cheating, fed a million tasks, for rates too small to measure end to end. It calls the
//! verify crate's `first`, `tally`, `Record` and `Window` exactly where the pool does, so it
//! measures the pool's rules, not a copy of them. Each scenario runs under our policy (and one
//! with more audits), under fixed 2× replication and under BOINC's adaptive replication, from
//! the same seed; see [`Scheme`] for what each does and [`scenarios`] for the cheaters.
//!
//! A ban re-runs what the banned node's audit window released on its word alone, as the pool
//! does (it takes those results back and runs their tasks again), so "wrong before re-runs" is
//! what a requester may have read before the ban and "after re-runs" what stays. Where the
//! model goes beyond the pool, it says so in its output: once the stream ends, each node's
//! newest held result is audited, where the pool audits a job's tail when nothing else of it
//! runs.
//!
//! The end-to-end part ([`end_to_end`]): real honest and cheating agents through a real
//! coordinator of a public pool; its figures and checks are appended to [`Model::report`]'s,
//! and [`Model::to_table`] prints every figure the model did not make.

mod live;
mod run;
mod table;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use ::verify::{Policy, RESULTS_MAX};

use crate::report::{Better, Machine};
use crate::{BenchError, Check, Figure, Report};

pub use live::{LiveOptions, end_to_end};
pub use run::{BOINC_TRUSTED_AFTER, Cheaters, Outcome, Scheme};

#[derive(Debug, Clone, Serialize)]
pub struct VerifyOptions {
    /// Tasks each run of the model streams through.
    pub model_tasks: u64,
    /// Nodes in the model's pool.
    pub model_nodes: u32,
    pub seed: u64,
    /// The share of cheating nodes in every scenario with cheaters, instead of each one's own.
    pub cheaters_percent: Option<f64>,
    /// The audit rate of the policy compared with the public one.
    pub alt_audit_per_million: u32,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            model_tasks: 1_000_000,
            model_nodes: 1_000,
            seed: 1,
            cheaters_percent: None,
            alt_audit_per_million: 200_000,
        }
    }
}

/// Which scenario a row is, for the targets and checks that concern it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    NoCheaters,
    NoCheatersWarm,
    Colluding,
    AlwaysCheating,
    Intermittent,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub kind: Kind,
    /// Short, for the table's first column.
    pub label: &'static str,
    pub about: String,
    pub cheaters: Option<Cheaters>,
    /// Every node starts past probation, as in a pool that has been running.
    pub warm: bool,
}

/// The scenarios the issue asks for. Every cheater rejoins at once under a new identity when
/// banned, so a cheating share holds for the whole run rather than being banned away early.
pub fn scenarios(options: &VerifyOptions) -> Vec<Scenario> {
    let share = |own: f64| options.cheaters_percent.unwrap_or(own);
    let cheaters = |share_percent, once_trusted, rate, colluding| Cheaters {
        share_percent,
        once_trusted,
        rate,
        colluding,
        rejoin: true,
    };
    let none = |kind, label, about: &str, warm| Scenario {
        kind,
        label,
        about: about.to_owned(),
        cheaters: None,
        warm,
    };
    let with = |kind, label, about: String, cheaters| Scenario {
        kind,
        label,
        about,
        cheaters: Some(cheaters),
        warm: false,
    };
    vec![
        none(
            Kind::NoCheaters,
            "(a)",
            "no cheaters, every node new",
            false,
        ),
        none(
            Kind::NoCheatersWarm,
            "(a')",
            "no cheaters, every node past probation",
            true,
        ),
        with(
            Kind::Colluding,
            "(b)",
            format!(
                "{} % colluding (one wrong digest per task), honest until trusted",
                share(10.0)
            ),
            cheaters(share(10.0), true, 1.0, true),
        ),
        with(
            Kind::AlwaysCheating,
            "(c)",
            format!("{} % always cheating (random digests)", share(20.0)),
            cheaters(share(20.0), false, 1.0, false),
        ),
        with(
            Kind::Intermittent,
            "(d)",
            format!("{} % cheating on 10 % of results once trusted", share(10.0)),
            cheaters(share(10.0), true, 0.1, false),
        ),
    ]
}

/// The schemes each scenario runs under, with their names.
pub fn schemes(options: &VerifyOptions) -> Vec<(String, Scheme)> {
    let ours = |policy: Policy| {
        let percent = f64::from(policy.audit_per_million) / 10_000.0;
        (format!("ours, {percent} % audits"), Scheme::Ours(policy))
    };
    vec![
        ours(Policy::PUBLIC),
        ours(Policy {
            audit_per_million: options.alt_audit_per_million,
            ..Policy::PUBLIC
        }),
        ("fixed 2×".to_owned(), Scheme::FixedTwice),
        ("BOINC adaptive".to_owned(), Scheme::Boinc),
    ]
}

/// One scenario under one scheme.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub kind: Kind,
    pub scenario: &'static str,
    pub policy: String,
    pub scheme: Scheme,
    pub outcome: Outcome,
}

impl Row {
    fn per_10k_delivered(&self, count: u64) -> f64 {
        count as f64 * 10_000.0 / self.outcome.delivered.max(1) as f64
    }

    pub fn executions_per_task(&self) -> f64 {
        self.outcome.executions as f64 / self.outcome.tasks as f64
    }

    /// Mean and p99 of cheaters' results from first lie to ban, if any was banned.
    pub fn to_ban(&self) -> Option<(f64, f64)> {
        let mut results = self.outcome.results_to_ban.clone();
        if results.is_empty() {
            return None;
        }
        results.sort_unstable();
        let mean = results.iter().sum::<u64>() as f64 / results.len() as f64;
        let p99 = results[((results.len() as f64 * 0.99) as usize).min(results.len() - 1)];
        Some((mean, p99 as f64))
    }

    fn ours(&self) -> bool {
        matches!(self.scheme, Scheme::Ours(_))
    }
}

/// The model's runs: every scenario under every scheme.
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub options: VerifyOptions,
    pub scenarios: Vec<Scenario>,
    pub rows: Vec<Row>,
}

/// Runs the model: every scenario under every scheme, on as many threads as there are cores.
pub fn model(options: &VerifyOptions) -> Result<Model, BenchError> {
    check_options(options)?;
    let scenarios = scenarios(options);
    let schemes = schemes(options);
    let jobs: Vec<(usize, usize)> = (0..scenarios.len())
        .flat_map(|s| (0..schemes.len()).map(move |p| (s, p)))
        .collect();
    let outcomes = in_parallel(jobs.len(), |job| {
        let (s, p) = jobs[job];
        let scenario = &scenarios[s];
        // One seed per scenario: every scheme faces the same pool.
        let seed = options
            .seed
            .wrapping_add((s as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        run::Run::new(
            schemes[p].1,
            scenario.cheaters,
            scenario.warm,
            options.model_nodes as usize,
            options.model_tasks,
            seed,
        )
        .go()
    });
    let rows = jobs
        .iter()
        .zip(outcomes)
        .map(|(&(s, p), outcome)| Row {
            kind: scenarios[s].kind,
            scenario: scenarios[s].label,
            policy: schemes[p].0.clone(),
            scheme: schemes[p].1,
            outcome,
        })
        .collect();
    Ok(Model {
        options: options.clone(),
        scenarios,
        rows,
    })
}

fn check_options(options: &VerifyOptions) -> Result<(), BenchError> {
    let setup = |message: String| Err(BenchError::Setup(message));
    if options.model_tasks == 0 {
        return setup("the model needs at least one task".to_owned());
    }
    // A task may need results from RESULTS_MAX distinct owners, and some nodes are banned.
    let nodes_min = 2 * RESULTS_MAX;
    if options.model_nodes < nodes_min {
        return setup(format!("the model needs at least {nodes_min} nodes"));
    }
    if let Some(share) = options.cheaters_percent
        && !(share > 0.0 && share < 100.0)
    {
        return setup(format!(
            "the share of cheaters is {share} %; give more than 0 and less than 100"
        ));
    }
    let alt = Policy {
        audit_per_million: options.alt_audit_per_million,
        ..Policy::PUBLIC
    };
    alt.check().map_err(BenchError::Setup)
}

/// `job(0..jobs)` on worker threads, results in order.
fn in_parallel<T: Send>(jobs: usize, job: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs);
    let mut results: Vec<Option<T>> = (0..jobs).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= jobs {
                            return done;
                        }
                        done.push((index, job(index)));
                    }
                })
            })
            .collect();
        for handle in handles {
            let done = handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            for (index, result) in done {
                results[index] = Some(result);
            }
        }
    });
    results
        .into_iter()
        .map(|result| result.expect("every job ran"))
        .collect()
}

/// What the issue asks of our public policy.
const EXECUTIONS_PER_TASK_NO_CHEATERS_MAX: f64 = 1.15;
const EXECUTIONS_PER_TASK_COLLUDING_MAX: f64 = 1.5;
const WRONG_PER_10K_BEFORE_RERUNS_MAX: f64 = 1.0;

impl Model {
    /// The report: every row's figures (targets on our public policy's), and the checks.
    pub fn report(&self) -> Report {
        let mut figures = Vec::new();
        for row in &self.rows {
            figures.extend(self.figures(row));
        }
        Report {
            benchmark: "verify".to_owned(),
            machine: Machine::this(),
            parameters: serde_json::json!({
                "options": self.options,
                "scenarios": self.scenarios,
                "schemes": schemes(&self.options),
                "boinc_trusted_after": BOINC_TRUSTED_AFTER,
                "end_of_run": "each node's newest held result is audited once, until none is held",
            }),
            figures,
            checks: self.checks(),
        }
    }

    /// BOINC's row in the same scenario as `row`.
    fn boinc(&self, row: &Row) -> Option<&Row> {
        self.rows
            .iter()
            .find(|other| other.kind == row.kind && other.scheme == Scheme::Boinc)
    }

    fn figures(&self, row: &Row) -> Vec<Figure> {
        let name = |what: &str| format!("{} {}: {what}", row.scenario, row.policy);
        let public = row.scheme == Scheme::Ours(Policy::PUBLIC);
        let outcome = &row.outcome;
        let mut wrong_before = Figure::new(
            &name("wrong results delivered, before re-runs"),
            row.per_10k_delivered(outcome.wrong_before_reruns),
            "per 10k",
            Better::Lower,
        );
        let mut wrong_after = Figure::new(
            &name("wrong results delivered, after re-runs"),
            row.per_10k_delivered(outcome.wrong_after_reruns),
            "per 10k",
            Better::Lower,
        );
        let mut executions = Figure::new(
            &name("executions per task"),
            row.executions_per_task(),
            "executions",
            Better::Lower,
        );
        if row.ours() {
            let boinc = self.boinc(row).map(Row::executions_per_task);
            executions = executions.baseline("BOINC adaptive (model)", boinc);
        }
        match row.kind {
            Kind::NoCheatersWarm if public => {
                executions = executions.target(EXECUTIONS_PER_TASK_NO_CHEATERS_MAX);
            }
            Kind::Colluding if public => {
                wrong_before = wrong_before.target(WRONG_PER_10K_BEFORE_RERUNS_MAX);
                wrong_after = wrong_after.target(0.0);
                executions = executions.target(EXECUTIONS_PER_TASK_COLLUDING_MAX);
            }
            _ => {}
        }
        let mut figures = vec![wrong_before, wrong_after, executions];
        figures.extend(self.counts(row));
        figures
    }

    /// The row's figures that are counts, with no target.
    fn counts(&self, row: &Row) -> Vec<Figure> {
        let name = |what: &str| format!("{} {}: {what}", row.scenario, row.policy);
        let outcome = &row.outcome;
        let count = |what: &str, value: u64, unit: &str| {
            Figure::new(&name(what), value as f64, unit, Better::Lower)
        };
        let mut figures = vec![
            Figure::new(
                &name("wrong after re-runs that a banned node had vouched for"),
                row.per_10k_delivered(outcome.wrong_vouched_by_banned),
                "per 10k",
                Better::Lower,
            ),
            count("inconclusive tasks", outcome.inconclusive, "tasks"),
            count("bans", outcome.bans, "bans"),
            count(
                "bans of a node that was right",
                outcome.banned_while_right,
                "bans",
            ),
            count(
                "cheaters never banned",
                outcome.cheaters_unbanned,
                "identities",
            ),
        ];
        if row.ours() {
            figures.push(count(
                "audits of held results after the stream",
                outcome.end_audits,
                "audits",
            ));
        }
        if let Some((mean, p99)) = row.to_ban() {
            let results =
                |what: &str, value| Figure::new(&name(what), value, "results", Better::Lower);
            figures.push(results("first lie to ban, mean", mean));
            figures.push(results("first lie to ban, p99", p99));
        }
        figures
    }

    /// What a user of the model relies on, whatever the figures are.
    fn checks(&self) -> Vec<Check> {
        let rows = |kinds: &'static [Kind]| {
            self.rows
                .iter()
                .filter(move |row| kinds.contains(&row.kind))
        };
        let clean = &[Kind::NoCheaters, Kind::NoCheatersWarm];
        let random_lies = &[Kind::AlwaysCheating, Kind::Intermittent];
        vec![
            Check::new(
                "every task of every run ended delivered or inconclusive",
                self.rows.iter().all(|row| row.outcome.pending == 0),
            ),
            Check::new(
                "no cheaters: nothing wrong, inconclusive or banned, under every scheme",
                rows(clean).all(|row| {
                    let outcome = &row.outcome;
                    outcome.wrong_before_reruns == 0
                        && outcome.inconclusive == 0
                        && outcome.bans == 0
                }),
            ),
            Check::new(
                "no cheaters: fixed 2× ran every task exactly twice",
                rows(clean)
                    .filter(|row| row.scheme == Scheme::FixedTwice)
                    .all(|row| row.outcome.executions == 2 * row.outcome.tasks),
            ),
            Check::new(
                "random lies: every liar a verdict caught was banned (ours and fixed 2×)",
                rows(random_lies)
                    .filter(|row| row.scheme != Scheme::Boinc)
                    .all(|row| row.outcome.caught_unbanned == 0),
            ),
            Check::new(
                "always cheating: our policy delivered no wrong result",
                rows(&[Kind::AlwaysCheating])
                    .filter(|row| row.ours())
                    .all(|row| row.outcome.wrong_before_reruns == 0),
            ),
        ]
    }
}
