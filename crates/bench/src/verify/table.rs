//! The model's report for people: one line per scenario and scheme, what the columns mean, then
//! the targets and the checks.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::{Model, Row};
use crate::Report;

const HEADER: [&str; 13] = [
    "scenario",
    "scheme",
    "wrong/10k",
    "after re-runs",
    "vouched",
    "exec/task",
    "inconclusive",
    "bans",
    "right banned",
    "to ban mean",
    "to ban p99",
    "liars unbanned",
    "end audits",
];

/// What the columns mean, a line each, printed under the rows.
const LEGEND: [&str; 9] = [
    "wrong/10k: tasks ever delivered wrong, per 10,000 delivered; after re-runs: still wrong once",
    "  a banned node's held and window-released results ran again, as the pool re-runs them;",
    "  vouched: of those, ones a node banned later had agreed to (a quorum's verdict is never",
    "  re-run)",
    "exec/task: every result computed (firsts, replicas, audits, disputes, re-runs) per task",
    "to ban: a cheater's results from its first lie to its ban, both included",
    "end audits: once the stream ended, each node's newest held result was audited, once per",
    "  pass until nothing was held (an audit that passes releases everything older)",
    "every banned cheater rejoins at once as a new identity, on probation again; BOINC bans nobody",
];

impl Model {
    /// The table of rows and the legend, then `report` (the model's, perhaps with more figures
    /// and checks) without the model's figures that the rows already show: its targets, any
    /// other figures, and the checks.
    pub fn to_table(&self, report: &Report) -> String {
        let rows: Vec<[String; 13]> = self.rows.iter().map(cells).collect();
        let mut widths = HEADER.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut text = format!(
            "verify model: {} tasks on {} nodes, seed {}\n",
            self.options.model_tasks, self.options.model_nodes, self.options.seed
        );
        let mut line = |cells: [&str; 13]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .enumerate()
                .map(|(index, (cell, width))| {
                    // Names to the left, numbers to the right.
                    if index < 2 {
                        format!("{cell:<width$}")
                    } else {
                        format!("{cell:>width$}")
                    }
                })
                .collect();
            let _ = writeln!(text, "  {}", padded.join("  ").trim_end());
        };
        line(HEADER);
        for row in &rows {
            line(row.each_ref().map(String::as_str));
        }
        for scenario in &self.scenarios {
            let _ = writeln!(text, "  {:<5} {}", scenario.label, scenario.about);
        }
        for line in LEGEND {
            let _ = writeln!(text, "  {line}");
        }
        let shown: HashSet<String> = self
            .rows
            .iter()
            .flat_map(|row| self.figures(row))
            .filter(|figure| figure.target.is_none())
            .map(|figure| figure.name)
            .collect();
        let rest = Report {
            figures: report
                .figures
                .iter()
                .filter(|figure| !shown.contains(&figure.name))
                .cloned()
                .collect(),
            ..report.clone()
        };
        text.push_str(&rest.to_table());
        text
    }
}

fn cells(row: &Row) -> [String; 13] {
    let outcome = &row.outcome;
    let (mean, p99) = row
        .to_ban()
        .map_or(("—".to_owned(), "—".to_owned()), |(mean, p99)| {
            (format!("{mean:.1}"), format!("{p99:.0}"))
        });
    let ours_only = |text: String| if row.ours() { text } else { "—".to_owned() };
    let bans = |text: String| {
        if row.scheme == super::Scheme::Boinc {
            "—".to_owned()
        } else {
            text
        }
    };
    [
        row.scenario.to_owned(),
        row.policy.clone(),
        format!("{:.3}", row.per_10k_delivered(outcome.wrong_before_reruns)),
        format!("{:.3}", row.per_10k_delivered(outcome.wrong_after_reruns)),
        format!(
            "{:.3}",
            row.per_10k_delivered(outcome.wrong_vouched_by_banned)
        ),
        format!("{:.3}", row.executions_per_task()),
        outcome.inconclusive.to_string(),
        bans(outcome.bans.to_string()),
        bans(outcome.banned_while_right.to_string()),
        mean,
        p99,
        outcome.cheaters_unbanned.to_string(),
        ours_only(outcome.end_audits.to_string()),
    ]
}
