//! Which blobs each requester was found able to read, so a requester who submits the same
//! module again and again is not asked the store every time.
//!
//! A requester's right to read a blob is taken away only when retention forgets the blob,
//! which it does holding the blob gate for writing; submissions check under the same gate for
//! reading. So the set is exact if retention empties it before it forgets anything, and a
//! found right stays true until then. Bounded: past [`ENTRIES_MAX`] it starts again empty,
//! which costs a store read, never a wrong answer.

use std::collections::HashSet;

use parking_lot::Mutex;
use wire::{BlobHash, RequesterId};

/// Rights remembered at most: a few megabytes.
const ENTRIES_MAX: usize = 65_536;

#[derive(Debug, Default)]
pub(crate) struct ReadableBlobs {
    found: Mutex<HashSet<(RequesterId, BlobHash)>>,
}

impl ReadableBlobs {
    /// Whether `requester` was found able to read every one of `hashes`.
    pub(crate) fn all(&self, requester: RequesterId, hashes: &[BlobHash]) -> bool {
        let found = self.found.lock();
        hashes
            .iter()
            .all(|hash| found.contains(&(requester, *hash)))
    }

    /// Remembers that `requester` may read `hashes`, as the store said; not when they are
    /// many, which one store read checks well anyway.
    pub(crate) fn found(&self, requester: RequesterId, hashes: &[BlobHash]) {
        if hashes.len() > ENTRIES_MAX / 16 {
            return;
        }
        let mut found = self.found.lock();
        if found.len() + hashes.len() > ENTRIES_MAX {
            found.clear();
        }
        found.extend(hashes.iter().map(|hash| (requester, *hash)));
    }

    /// Forgets every right found: retention is about to forget blobs.
    pub(crate) fn clear(&self) {
        self.found.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_right_is_remembered_per_requester_until_cleared_and_the_set_stays_bounded() {
        let readable = ReadableBlobs::default();
        let (alice, bob) = (RequesterId(1), RequesterId(2));
        let (module, input) = (BlobHash::of(b"module"), BlobHash::of(b"input"));
        assert!(!readable.all(alice, &[module]));
        readable.found(alice, &[module]);
        assert!(readable.all(alice, &[module]));
        assert!(
            !readable.all(alice, &[module, input]),
            "every hash must be known"
        );
        assert!(!readable.all(bob, &[module]), "a right is one requester's");
        readable.clear();
        assert!(!readable.all(alice, &[module]));

        for i in 0..=ENTRIES_MAX as u64 {
            readable.found(alice, &[BlobHash::of(&i.to_le_bytes())]);
        }
        assert!(readable.found.lock().len() <= ENTRIES_MAX);
        let many: Vec<BlobHash> = (0..=ENTRIES_MAX as u64 / 16)
            .map(|i| BlobHash::of(&i.to_be_bytes()))
            .collect();
        readable.clear();
        readable.found(bob, &many);
        assert!(
            readable.found.lock().is_empty(),
            "a long list is checked, not remembered"
        );
    }
}
