//! `crowdcloud credits`: the caller's balance and history, and the owner's grants.

use std::process::ExitCode;

use wire::credits::credits_text;
use wire::{Credits, Memo};

use crate::cli::{CreditsAction, CreditsArgs};
use crate::local;
use crate::output::{print_json, print_table};
use wire::auth::TokenKind;

pub(crate) async fn run(args: CreditsArgs) -> anyhow::Result<ExitCode> {
    let kind = if args.provider {
        TokenKind::Join
    } else {
        TokenKind::Requester
    };
    let client = local::connect_as(&args.connection, kind).await?;
    if let Some(CreditsAction::Grant { requester, credits }) = args.action {
        let grant = wire::CreditGrant { requester, credits };
        let granted = client.grant_credits(&grant).await?;
        if args.connection.json {
            print_json(&granted)?;
        } else {
            println!(
                "granted {credits} credits to {}: its balance is {} credits",
                grant.requester,
                credits_text(granted.balance.fuel)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let credits = client.credits().await?;
    if args.connection.json {
        print_json(&credits)?;
    } else {
        show(&credits);
    }
    Ok(ExitCode::SUCCESS)
}

fn show(credits: &Credits) {
    match &credits.pending {
        Some(pending) => println!(
            "earned: {} credits ({} fuel each); pending until their results are verified: {}",
            credits_text(credits.balance.fuel),
            credits.fuel_per_credit,
            credits_text(pending.fuel)
        ),
        None => println!(
            "balance: {} credits ({} fuel each){}",
            credits_text(credits.balance.fuel),
            credits.fuel_per_credit,
            if credits.required {
                "; this pool runs jobs only on credit"
            } else {
                "; counted, never required in this pool"
            }
        ),
    }
    if !credits.accounts.is_empty() {
        println!("\nthe pool's ledger (owner:… earned, pending:… waits for verification):");
        let rows: Vec<Vec<String>> = credits
            .accounts
            .iter()
            .map(|b| vec![b.account.to_string(), credits_text(b.fuel)])
            .collect();
        print_table(&["ACCOUNT", "CREDITS"], &rows);
    }
    if credits.history.is_empty() {
        return;
    }
    println!("\nhistory, newest first:");
    let mine = [
        Some(credits.balance.account),
        credits.pending.as_ref().map(|p| p.account),
    ];
    let rows: Vec<Vec<String>> = credits
        .history
        .iter()
        .map(|t| {
            let (sign, other) = if mine.contains(&Some(t.to)) {
                ("+", t.from)
            } else {
                ("-", t.to)
            };
            vec![
                t.seq.to_string(),
                format!("{sign}{}", credits_text(t.fuel as i64)),
                memo_text(t.memo).to_owned(),
                other.to_string(),
                t.job_id.map(|job| job.to_string()).unwrap_or_default(),
            ]
        })
        .collect();
    print_table(&["SEQ", "CREDITS", "WHY", "WITH", "JOB"], &rows);
}

fn memo_text(memo: Memo) -> &'static str {
    match memo {
        Memo::Grant => "grant",
        Memo::Execution => "execution",
        Memo::Verified => "verified",
        Memo::Refund => "refund",
        Memo::Clawback => "clawback",
    }
}
