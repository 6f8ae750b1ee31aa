//! Keyed digests of private results: replicas holding a job's key compare them; nobody without
//! the key can compute one, or test a guessed plaintext against one.

use std::io;

use zeroize::Zeroizing;

use crate::DataKey;

/// The `blake3::derive_key` context that turns a job key into its digest key.
const DIGEST_KEY_CONTEXT: &str = "crowdcloud private result digest v1";

/// BLAKE3 keyed with `derive_key("crowdcloud private result digest v1", job key)`, over a
/// result's plaintext. Also an [`io::Write`], so `io::copy` can feed it.
#[derive(Clone)]
pub struct ResultDigester(blake3::Hasher);

impl ResultDigester {
    pub fn new(job_key: &DataKey) -> Self {
        let digest_key = Zeroizing::new(blake3::derive_key(DIGEST_KEY_CONTEXT, job_key.as_bytes()));
        Self(blake3::Hasher::new_keyed(&digest_key))
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finalize(self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

impl io::Write for ResultDigester {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
