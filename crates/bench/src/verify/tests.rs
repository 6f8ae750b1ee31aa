//! The model's properties a reader of its table relies on, on a short run of each scenario.

use std::sync::OnceLock;

use super::*;

/// One short model that the tests share: every scenario under every scheme, 20,000 tasks each.
fn short() -> &'static Model {
    static SHORT: OnceLock<Model> = OnceLock::new();
    SHORT.get_or_init(|| {
        model(&VerifyOptions {
            model_tasks: 20_000,
            model_nodes: 200,
            ..VerifyOptions::default()
        })
        .expect("the options are valid")
    })
}

fn row(model: &Model, kind: Kind, scheme: Scheme) -> &Row {
    model
        .rows
        .iter()
        .find(|row| row.kind == kind && row.scheme == scheme)
        .expect("every scenario runs under every scheme")
}

const PUBLIC: Scheme = Scheme::Ours(Policy::PUBLIC);

#[test]
fn every_check_passes_and_every_task_is_settled() {
    let model = short();
    let report = model.report();
    for check in &report.checks {
        assert!(check.ok, "{}", check.what);
    }
    for row in &model.rows {
        let outcome = &row.outcome;
        assert_eq!(
            outcome.delivered + outcome.inconclusive,
            outcome.tasks,
            "{} {}",
            row.scenario,
            row.policy
        );
        assert!(outcome.executions >= outcome.tasks);
    }
    let table = model.to_table(&report);
    assert!(
        table.contains("BOINC adaptive") && table.contains("[ok]"),
        "{table}"
    );
    // The rows show the model's figures; only those with a target are listed again.
    assert!(
        table.contains("(a') ours, 5 % audits: executions per task"),
        "{table}"
    );
    assert!(!table.contains("(c) fixed 2×: bans"), "{table}");
}

#[test]
fn with_no_cheaters_nothing_is_wrong_or_inconclusive_and_fixed_replication_runs_twice() {
    let model = short();
    for kind in [Kind::NoCheaters, Kind::NoCheatersWarm] {
        for (_, scheme) in schemes(&model.options) {
            let outcome = &row(model, kind, scheme).outcome;
            assert_eq!(outcome.wrong_before_reruns, 0, "{scheme:?}");
            assert_eq!(outcome.inconclusive, 0, "{scheme:?}");
            assert_eq!(outcome.bans, 0, "{scheme:?}");
        }
        let fixed = &row(model, kind, Scheme::FixedTwice).outcome;
        assert_eq!(fixed.executions, 2 * fixed.tasks);
    }
    // Past probation, most results are held rather than run again.
    let warm = row(model, Kind::NoCheatersWarm, PUBLIC);
    assert!(
        warm.executions_per_task() < 1.5,
        "{}",
        warm.executions_per_task()
    );
    assert!(
        warm.outcome.end_audits > 0,
        "held results were audited at the end"
    );
}

#[test]
fn always_cheating_nodes_are_banned_once_caught_and_deliver_nothing_under_our_policy() {
    let model = short();
    for (_, scheme) in schemes(&model.options) {
        let outcome = &row(model, Kind::AlwaysCheating, scheme).outcome;
        if scheme == Scheme::Boinc {
            assert_eq!(outcome.bans, 0, "BOINC bans nobody");
            continue;
        }
        assert!(outcome.bans > 0, "{scheme:?}");
        assert_eq!(outcome.caught_unbanned, 0, "{scheme:?}");
        assert_eq!(
            outcome.results_to_ban.len() as u64,
            outcome.bans - outcome.banned_while_right
        );
        if let Scheme::Ours(_) = scheme {
            assert_eq!(outcome.wrong_before_reruns, 0, "{scheme:?}");
            assert_eq!(outcome.wrong_after_reruns, 0, "{scheme:?}");
        }
    }
}

#[test]
fn reruns_never_leave_more_wrong_than_was_delivered_and_colluders_get_caught() {
    let model = short();
    for row in &model.rows {
        let outcome = &row.outcome;
        assert!(outcome.wrong_after_reruns <= outcome.wrong_before_reruns);
        assert!(outcome.wrong_vouched_by_banned <= outcome.wrong_after_reruns);
    }
    let colluding = row(model, Kind::Colluding, PUBLIC);
    assert!(
        colluding.outcome.bans > 0,
        "colluders that lie once trusted get banned"
    );
    let boinc = row(model, Kind::Colluding, Scheme::Boinc);
    assert_eq!(
        boinc.outcome.wrong_after_reruns,
        boinc.outcome.wrong_before_reruns
    );
}

#[test]
fn the_same_seed_gives_the_same_model() {
    let options = VerifyOptions {
        model_tasks: 3_000,
        model_nodes: 100,
        ..VerifyOptions::default()
    };
    let once = model(&options).expect("valid");
    let again = model(&options).expect("valid");
    let outcomes = |model: &Model| -> Vec<Outcome> {
        model.rows.iter().map(|row| row.outcome.clone()).collect()
    };
    assert_eq!(outcomes(&once), outcomes(&again));
}

#[test]
fn the_baselines_are_policies_the_verify_crate_accepts_and_bad_options_are_refused() {
    for scheme in [Scheme::FixedTwice, Scheme::Boinc] {
        assert_eq!(scheme.tally_policy().check(), Ok(()));
    }
    let bad = [
        VerifyOptions {
            model_tasks: 0,
            ..VerifyOptions::default()
        },
        VerifyOptions {
            model_nodes: 3,
            ..VerifyOptions::default()
        },
        VerifyOptions {
            cheaters_percent: Some(100.0),
            ..VerifyOptions::default()
        },
        VerifyOptions {
            alt_audit_per_million: 2_000_000,
            ..VerifyOptions::default()
        },
    ];
    for options in bad {
        assert!(model(&options).is_err(), "{options:?}");
    }
}
