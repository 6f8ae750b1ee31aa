//! `federation add|list|remove`: the owner lends the pool's idle slots to other pools.

use std::process::ExitCode;

use anyhow::Context;

use wire::federation::{BridgeState, Peer, PeerRequest};

use crate::cli::FederationCommand;
use crate::local;
use crate::output::{print_json, print_table, visible};

pub(crate) async fn run(command: FederationCommand) -> anyhow::Result<ExitCode> {
    match command {
        FederationCommand::Add {
            connection,
            url,
            peer_fingerprint,
            peer_token,
        } => {
            let request = PeerRequest {
                url,
                fingerprint: peer_fingerprint.parse().context(
                    "--peer-fingerprint: give the other pool's certificate fingerprint, sha256:…",
                )?,
                token: peer_token,
            };
            request.check()?;
            let client = local::connect(&connection).await?;
            let peer = client.add_peer(&request).await?;
            if connection.json {
                print_json(&peer)?;
            } else {
                println!(
                    "lending this pool's idle slots to {} as {}; its tasks run here after every job of this pool",
                    peer.url, peer.id
                );
            }
        }
        FederationCommand::List { connection } => {
            let client = local::connect(&connection).await?;
            let list = client.peers().await?;
            if connection.json {
                print_json(&list)?;
            } else {
                print_peers(&list.peers);
            }
        }
        FederationCommand::Remove { connection, peer } => {
            let peer: wire::PeerId = peer.parse()?;
            let client = local::connect(&connection).await?;
            let removed = client.remove_peer(peer).await?;
            if connection.json {
                print_json(&removed)?;
            } else {
                println!("no longer lending to {} ({})", removed.url, removed.id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_peers(peers: &[Peer]) {
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|peer| {
            vec![
                peer.id.to_string(),
                peer.url.clone(),
                peer.fingerprint.short(),
                peer.account.to_string(),
                peer.bridge.as_ref().map(bridge_text).unwrap_or_default(),
            ]
        })
        .collect();
    print_table(&["ID", "URL", "CERTIFICATE", "ACCOUNT", "BRIDGE"], &rows);
}

fn bridge_text(state: &BridgeState) -> String {
    match state {
        BridgeState::Starting => "starting".to_owned(),
        BridgeState::Lending { node_id, borrowed } => {
            format!("lending as {node_id}, {borrowed} of its tasks here")
        }
        BridgeState::Stopped { reason } => format!("stopped: {}", visible(reason)),
    }
}
