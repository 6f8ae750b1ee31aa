//! Attempt ids, issued in order from the span the store gave this lead.
//!
//! The store indexes attempts by id, and an id drawn at random dirtied a page of that index of
//! its own in every commit; ids in order share its last page. The span is the lead's alone
//! (see `store::PoolImage::attempt_ids`), so ids stay unique across restarts and take-overs
//! without asking the store again.

use std::ops::Range;

use wire::AttemptId;

/// The ids not issued yet. Only applying an event that names ids takes them (see
/// [`AttemptIds::taken`]), so a replica that follows the events issues the same ids next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttemptIds {
    left: Range<u64>,
}

impl Default for AttemptIds {
    /// A pool that no store loaded, as in unit tests: the span of epoch 0.
    fn default() -> Self {
        AttemptIds::new(0..1 << 40)
    }
}

impl AttemptIds {
    pub(crate) fn new(left: Range<u64>) -> Self {
        Self { left }
    }

    /// The next `count` ids, not yet taken.
    pub(crate) fn next(&self, count: usize) -> impl Iterator<Item = AttemptId> + use<> {
        assert!(
            self.left.end - self.left.start >= count as u64,
            "a lead issues at most 2^40 attempt ids; {} are left and {count} were asked for",
            self.left.end - self.left.start
        );
        (self.left.start..self.left.start + count as u64).map(AttemptId)
    }

    /// `id` was issued: no later id is at or below it. Ids outside the span (a lead's before
    /// this one) change nothing.
    pub(crate) fn taken(&mut self, id: AttemptId) {
        if self.left.contains(&id.0) {
            self.left.start = id.0 + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_in_order_once_each_and_only_from_the_span() {
        let mut ids = AttemptIds::new(10..20);
        let first: Vec<AttemptId> = ids.next(3).collect();
        assert_eq!(first, [AttemptId(10), AttemptId(11), AttemptId(12)]);
        assert_eq!(
            ids.next(1).next(),
            Some(AttemptId(10)),
            "looking takes nothing"
        );
        for id in first {
            ids.taken(id);
        }
        assert_eq!(ids.next(1).next(), Some(AttemptId(13)));
        ids.taken(AttemptId(5));
        ids.taken(AttemptId(u64::MAX));
        assert_eq!(
            ids.next(1).next(),
            Some(AttemptId(13)),
            "ids of another span change nothing"
        );
        ids.taken(AttemptId(19));
        assert_eq!(ids.next(0).count(), 0);
    }

    #[test]
    #[should_panic(expected = "at most 2^40 attempt ids")]
    fn a_spent_span_is_a_bug_not_a_reused_id() {
        let mut ids = AttemptIds::new(10..12);
        ids.taken(AttemptId(11));
        let _ = ids.next(1);
    }
}
