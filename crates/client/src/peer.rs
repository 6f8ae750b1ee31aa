//! Fetching a blob from another node that holds it (`locality = "nodes"`), with the ticket the
//! coordinator gave for it. The bytes are kept only if they hash to the blob's hash and are no
//! larger than the coordinator said, so a holder can serve nothing but the blob asked for.

use std::path::Path;
use std::time::Duration;

use wire::{BlobHash, PeerBlob, PeerHolder};

use crate::{ClientError, Result, error_chain};

/// How long a peer may take to connect; a holder that is gone is passed over quickly.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one fetch from a peer may take in all.
const FETCH_TIMEOUT: Duration = Duration::from_secs(600);

/// A client of other nodes' peer listeners.
#[derive(Debug, Clone)]
pub struct PeerClient {
    http: reqwest::Client,
}

impl PeerClient {
    pub fn new() -> Result<Self> {
        // reqwest needs a TLS provider to build even a plain-HTTP client, and a node that
        // pins its coordinator's certificate has installed none; the ring one, once per process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(FETCH_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .map_err(|error| ClientError::BadUrl(error_chain(&error)))?;
        Ok(Self { http })
    }

    /// Fetches `blob` into `path` from the first of its holders that serves it; the errors of
    /// each holder tried when none does.
    pub async fn fetch(&self, blob: &PeerBlob, path: &Path) -> std::result::Result<u64, String> {
        let mut errors = Vec::new();
        for holder in &blob.holders {
            match self
                .fetch_from(holder, &blob.hash, blob.size_bytes, path)
                .await
            {
                Ok(size) => return Ok(size),
                Err(error) => errors.push(format!("{}: {error}", holder.address)),
            }
        }
        Err(errors.join("; "))
    }

    async fn fetch_from(
        &self,
        holder: &PeerHolder,
        hash: &BlobHash,
        size_bytes: u64,
        path: &Path,
    ) -> Result<u64> {
        // The ticket is 64 hex digits and the expiry a number: nothing to escape.
        let url = format!(
            "http://{}/v1/peer/blobs/{hash}?expires_at_ms={}&ticket={}",
            holder.address, holder.expires_at_ms, holder.ticket
        );
        let unreachable = |error: reqwest::Error| ClientError::Unreachable {
            url: url.clone(),
            message: error_chain(&error),
        };
        let response = self.http.get(&url).send().await.map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(ClientError::Unreachable {
                url: url.clone(),
                message: format!("the holder answered {}", response.status()),
            });
        }
        crate::write_verified(response, hash, path, size_bytes, &url).await
    }
}
