//! Binary min-heaps of node indices whose order lives outside the heap (node load changes as
//! slots are handed out), so the caller passes the ordering with every operation.
//!
//! Invariant: for a heap slice `h` and ordering `precedes`, no child precedes its parent; so
//! `h[0]` is the first of the slice in that order.

/// Restores the heap order of the whole slice.
pub(crate) fn heapify(heap: &mut [u32], precedes: impl Fn(u32, u32) -> bool) {
    for position in (0..heap.len() / 2).rev() {
        sift_down(heap, position, &precedes);
    }
}

/// Moves `heap[position]` down until no child precedes it, after its key has grown.
pub(crate) fn sift_down(
    heap: &mut [u32],
    mut position: usize,
    precedes: impl Fn(u32, u32) -> bool,
) {
    loop {
        let left = 2 * position + 1;
        if left >= heap.len() {
            return;
        }
        let right = left + 1;
        let first_child = if right < heap.len() && precedes(heap[right], heap[left]) {
            right
        } else {
            left
        };
        if !precedes(heap[first_child], heap[position]) {
            return;
        }
        heap.swap(position, first_child);
        position = first_child;
    }
}

/// Removes the top: moves it to the last position and restores the order of the rest. The
/// caller shrinks its slice by one afterwards.
pub(crate) fn pop_to_end(heap: &mut [u32], precedes: impl Fn(u32, u32) -> bool) {
    assert!(!heap.is_empty(), "pop from an empty heap");
    let last = heap.len() - 1;
    heap.swap(0, last);
    sift_down(&mut heap[..last], 0, precedes);
}

#[cfg(test)]
mod tests {
    //! The heap order against a plain sort.

    use super::*;

    #[test]
    fn pops_in_order() {
        let mut heap = vec![5, 3, 9, 1, 7, 2, 8, 0, 6, 4];
        heapify(&mut heap, |a, b| a < b);
        let mut popped = Vec::new();
        let mut len = heap.len();
        while len > 0 {
            popped.push(heap[0]);
            pop_to_end(&mut heap[..len], |a, b| a < b);
            len -= 1;
        }
        assert_eq!(popped, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn sift_down_after_key_grows() {
        let mut keys = [0u32, 1, 2, 3, 4];
        let mut heap = vec![0, 1, 2, 3, 4];
        heapify(&mut heap, |a, b| keys[a as usize] < keys[b as usize]);
        keys[0] = 10;
        sift_down(&mut heap, 0, |a, b| keys[a as usize] < keys[b as usize]);
        assert_eq!(heap[0], 1);
    }
}
