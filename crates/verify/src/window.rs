//! The results of one trusted node that wait for an audit of it.

use std::collections::BTreeMap;

/// A node's held results, in the order it reported them. An audit of one of its later results
/// that passes releases every result before it: a node that cheats from some point on fails
/// the first audit after that point, so nothing it reported since is ever released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window<T> {
    held: BTreeMap<u64, T>,
}

impl<T> Default for Window<T> {
    fn default() -> Self {
        Self {
            held: BTreeMap::new(),
        }
    }
}

impl<T> Window<T> {
    /// Holds `item`, reported as the node's `seq`th result.
    pub fn hold(&mut self, seq: u64, item: T) {
        let previous = self.held.insert(seq, item);
        assert!(previous.is_none(), "a result is held once");
    }

    /// Releases what was held before the audited result `seq`, oldest first.
    pub fn release_before(&mut self, seq: u64) -> Vec<T> {
        let kept = self.held.split_off(&seq);
        std::mem::replace(&mut self.held, kept)
            .into_values()
            .collect()
    }

    /// Takes out everything: the node was banned, or its held results are checked one by one.
    pub fn drain(&mut self) -> Vec<T> {
        std::mem::take(&mut self.held).into_values().collect()
    }

    /// Takes out one held result, if it is still held.
    pub fn remove(&mut self, seq: u64) -> Option<T> {
        self.held.remove(&seq)
    }

    /// The newest held result.
    pub fn newest(&self) -> Option<(u64, &T)> {
        self.held.last_key_value().map(|(seq, item)| (*seq, item))
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        self.held.iter().map(|(seq, item)| (*seq, item))
    }
}
