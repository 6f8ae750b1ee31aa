//! `keys`: the requester's X25519 key for private jobs, kept in the data dir beside the
//! tokens (owner-only), exported and imported for a second device, and `keys grant`.
//!
//! The key is made on first use. Whoever holds it can open every private job's results it
//! submitted, and wrap those jobs' keys to more nodes: it is kept like the agent's identity.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use rand::RngExt;

use seal::EncryptionSecret;

use crate::cli::{Connection, KeysCommand};
use crate::commands::jobs::parse_job;
use crate::local;
use crate::output::print_json;

const KEY_FILE: &str = "requester-encryption.key";
/// The first line of an exported key, so a file of another kind is not taken for one.
const EXPORT_HEADER: &str = "crowdcloud requester key v1";

pub(crate) async fn run(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Show { connection } => {
            let (path, secret) = requester_key(&connection)?;
            let public = secret.public().to_hex();
            if connection.json {
                print_json(&serde_json::json!({ "public_key": public, "path": path }))?;
            } else {
                println!("public key {public}\nkept in {}", path.display());
            }
        }
        KeysCommand::Export { connection, file } => {
            let (_, secret) = requester_key(&connection)?;
            let text = format!("{EXPORT_HEADER}\n{}\n", hex::encode(secret.to_bytes()));
            local::write_private(&file, text.as_bytes())?;
            eprintln!(
                "wrote your key to {}: anyone who has it can read your private jobs' results; \
                 import it on your other device and delete this file",
                file.display()
            );
        }
        KeysCommand::Import {
            connection,
            file,
            force,
        } => import(&connection, &file, force)?,
        KeysCommand::Grant {
            connection,
            job,
            nodes,
            labels,
        } => grant(&connection, &job, nodes, labels).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The requester's key on this device, made and kept on first use; and where it is kept.
pub(crate) fn requester_key(
    connection: &Connection,
) -> anyhow::Result<(PathBuf, EncryptionSecret)> {
    let dir = local::data_dir_or_default(&connection.data_dir);
    let path = dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((path.clone(), parse_secret(text.trim(), &path)?)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            local::private_dir(&dir)?;
            let secret = EncryptionSecret::from_bytes(rand::rng().random());
            local::write_private(&path, hex::encode(secret.to_bytes()).as_bytes())?;
            Ok((path, secret))
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn parse_secret(text: &str, path: &Path) -> anyhow::Result<EncryptionSecret> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).map_err(|_| {
        anyhow::anyhow!(
            "{} does not hold a requester key (64 hex digits); restore it from your export",
            path.display()
        )
    })?;
    Ok(EncryptionSecret::from_bytes(bytes))
}

fn import(connection: &Connection, file: &Path, force: bool) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut lines = text.lines();
    if lines.next() != Some(EXPORT_HEADER) {
        bail!(
            "{} is not a key from `crowdcloud keys export`",
            file.display()
        );
    }
    let secret = parse_secret(lines.next().unwrap_or("").trim(), file)?;
    let dir = local::data_dir_or_default(&connection.data_dir);
    let path = dir.join(KEY_FILE);
    if let Ok(existing) = std::fs::read_to_string(&path)
        && parse_secret(existing.trim(), &path)?.public() != secret.public()
        && !force
    {
        bail!(
            "this device already has another key ({}); the results of private jobs submitted \
             with it can only be opened with it: pass --force to replace it anyway",
            path.display()
        );
    }
    local::private_dir(&dir)?;
    local::write_private(&path, hex::encode(secret.to_bytes()).as_bytes())?;
    println!("public key {}", secret.public().to_hex());
    Ok(())
}

async fn grant(
    connection: &Connection,
    job: &str,
    nodes: Vec<wire::NodeId>,
    labels: Vec<(String, String)>,
) -> anyhow::Result<()> {
    if nodes.is_empty() && labels.is_empty() {
        bail!("name the nodes to trust with --node n-… or --label key=value");
    }
    let job = parse_job(job)?;
    let (_, secret) = requester_key(connection)?;
    let client = local::connect(connection).await?;
    let trust = jobspec::PrivatePlan {
        nodes,
        labels: labels.into_iter().collect(),
        module: false,
    };
    let pool = client.nodes().await?;
    let holders = client::private::pick_key_holders(&pool.nodes, &trust, &Default::default())?;
    let granted = client.grant_keys(job, &secret, &holders).await?;
    if connection.json {
        print_json(&granted)?;
    } else {
        println!(
            "job {job}: its key is wrapped to {} nodes now",
            granted.holders.len()
        );
    }
    Ok(())
}
