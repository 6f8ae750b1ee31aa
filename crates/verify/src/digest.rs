//! A result as one hash: two results agree exactly when their digests are equal.

use serde::{Deserialize, Serialize};
use wire::{BlobRef, Outcome, OutputFile};

/// BLAKE3 over a result's canonical form (see [`digest_of`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Digest(pub [u8; 32]);

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest({})", &hex::encode(self.0)[..12])
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl From<Digest> for String {
    fn from(digest: Digest) -> String {
        digest.to_string()
    }
}

impl TryFrom<String> for Digest {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&text, &mut bytes)
            .map_err(|_| format!("a result digest is 64 hex digits, not {text:?}"))?;
        Ok(Digest(bytes))
    }
}

/// Whether an attempt that ended so is a result of its task: the same module and inputs end
/// the same way on any node. A missed wall-clock deadline, a module this node would not
/// compile, a node's own failure or a cancellation say something of the node, not the task.
pub fn is_claim(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Succeeded
        | Outcome::ExitCode { .. }
        | Outcome::Trap { .. }
        | Outcome::OutOfFuel
        | Outcome::MemoryLimit
        | Outcome::OutputTooLarge { .. }
        | Outcome::InvalidOutput { .. } => true,
        Outcome::DeadlineExceeded
        | Outcome::ModuleRejected { .. }
        | Outcome::NodeError { .. }
        | Outcome::NoKey
        | Outcome::SealBroken { .. }
        | Outcome::Cancelled
        | Outcome::Lost { .. }
        | Outcome::Inconclusive { .. } => false,
    }
}

/// The digest of one result. It covers the outcome and exit code (not the text of a trap or
/// an output error, which another engine version may word differently), stdout, stderr, each
/// `/output` file by path and content, and the fuel used. Outputs count in path order, so the
/// order a node listed them in does not matter. Every field is length-prefixed or fixed-size,
/// so two different results never encode to the same bytes.
pub fn digest_of(
    outcome: &Outcome,
    stdout: Option<&BlobRef>,
    stderr: Option<&BlobRef>,
    outputs: &[OutputFile],
    fuel_used: u64,
) -> Digest {
    let mut hasher = blake3::Hasher::new_derive_key("crowdcloud 2026-12 result digest v1");
    hash_outcome(&mut hasher, outcome);
    for stream in [stdout, stderr] {
        match stream {
            Some(blob) => hasher.update(&[1]).update(&blob.hash.0),
            None => hasher.update(&[0]),
        };
    }
    let mut sorted: Vec<&OutputFile> = outputs.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    hasher.update(&(sorted.len() as u64).to_le_bytes());
    for file in sorted {
        hasher.update(&(file.path.len() as u64).to_le_bytes());
        hasher.update(file.path.as_bytes());
        hasher.update(&file.hash.0);
    }
    hasher.update(&fuel_used.to_le_bytes());
    Digest(*hasher.finalize().as_bytes())
}

/// The digest of one result of a private job, whose blobs are sealed with keys of the node's
/// own: the outcome and exit code as in [`digest_of`], the node's digest of the plaintext of
/// stdout, stderr and every output, keyed by the job's key (so only holders of the key could
/// compute or test it), and the fuel used. Replicas that agree give equal digests.
pub fn sealed_digest_of(outcome: &Outcome, plain_digest: &[u8; 32], fuel_used: u64) -> Digest {
    let mut hasher = blake3::Hasher::new_derive_key("crowdcloud 2026-12 sealed result digest v1");
    hash_outcome(&mut hasher, outcome);
    hasher.update(plain_digest);
    hasher.update(&fuel_used.to_le_bytes());
    Digest(*hasher.finalize().as_bytes())
}

/// The outcome's kind and exit code, which every digest starts with.
fn hash_outcome(hasher: &mut blake3::Hasher, outcome: &Outcome) {
    let (kind, code): (u8, i32) = match outcome {
        Outcome::Succeeded => (0, 0),
        Outcome::ExitCode { code } => (1, *code),
        Outcome::Trap { .. } => (2, 0),
        Outcome::OutOfFuel => (3, 0),
        Outcome::MemoryLimit => (4, 0),
        Outcome::OutputTooLarge { .. } => (5, 0),
        Outcome::InvalidOutput { .. } => (6, 0),
        _ => (255, 0),
    };
    hasher.update(&[kind]);
    hasher.update(&code.to_le_bytes());
}
