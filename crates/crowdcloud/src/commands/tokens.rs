//! `tokens create|list|revoke`: the owner manages the pool's API, join and federation tokens.

use std::process::ExitCode;

use anyhow::bail;

use wire::tokens::{ManagedTokenKind, TokenCreateRequest, TokenInfo};

use crate::cli::TokensCommand;
use crate::local;
use crate::output::{print_json, print_table};

pub(crate) async fn run(command: TokensCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokensCommand::Create {
            connection,
            name,
            kind,
        } => {
            let kind = match kind.as_str() {
                "requester" | "api" => ManagedTokenKind::Requester,
                "join" => ManagedTokenKind::Join,
                "federation" => ManagedTokenKind::Federation,
                other => bail!("--kind {other:?}: give `requester`, `join` or `federation`"),
            };
            let client = local::connect(&connection).await?;
            let created = client
                .create_token(&TokenCreateRequest { name, kind })
                .await?;
            if connection.json {
                print_json(&created)?;
            } else {
                println!("{}", created.token);
                eprintln!(
                    "token {} ({}, {}); shown this once: keep it now",
                    created.info.id,
                    created.info.name,
                    created.info.kind.as_str()
                );
            }
        }
        TokensCommand::List { connection } => {
            let client = local::connect(&connection).await?;
            let list = client.tokens().await?;
            if connection.json {
                print_json(&list)?;
            } else {
                print_tokens(&list.tokens);
            }
        }
        TokensCommand::Revoke { connection, which } => {
            let client = local::connect(&connection).await?;
            let info = client.revoke_token(&which).await?;
            if connection.json {
                print_json(&info)?;
            } else {
                println!(
                    "revoked {} ({}, {}); it no longer works",
                    info.id,
                    info.name,
                    info.kind.as_str()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_tokens(tokens: &[TokenInfo]) {
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|token| {
            vec![
                token.id.clone(),
                token.name.clone(),
                format!(
                    "{}{}",
                    token.kind.as_str(),
                    if token.owner { " (owner)" } else { "" }
                ),
                format!("{} ago", age(token.created_at_ms)),
                token
                    .revoked_at_ms
                    .map(|at| format!("revoked {} ago", age(at)))
                    .unwrap_or_else(|| "live".to_owned()),
            ]
        })
        .collect();
    print_table(&["ID", "NAME", "KIND", "CREATED", "STATE"], &rows);
}

/// How long ago `at_ms` was, roughly, for people.
// An age shown to people is measured on their machine's clock.
#[allow(clippy::disallowed_methods)]
fn age(at_ms: u64) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0);
    let seconds = now_ms.saturating_sub(at_ms) / 1000;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86400 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86400),
    }
}
