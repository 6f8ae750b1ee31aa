//! The available nodes of one `assign` call, grouped into classes of nodes that fit exactly the
//! same requirement sets, and the placement of one job's turn onto them.
//!
//! Invariants: each class's range of `order` is a heap (by [`NodeState::priority_cmp`]) holding
//! exactly the class's nodes that still have a free slot; `slots_free_left` is the sum of their
//! free slots. A node's key only grows as it is given work, so the heaps are repaired by
//! sifting down.

use std::cmp::Ordering;

use crate::assign::{Placer, is_available, record};
use crate::fit::fits;
use crate::heap;
use crate::job_queue::QueuedJob;
use crate::snapshot::{Assignment, NodeOffer, Requirements};

/// A node's standing within one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeState {
    pub node: u64,
    /// Running plus assigned in this call: the numerator of the node's load.
    pub load_slots: u64,
    /// `slots_total`, at least 1 so that a load is always defined: its denominator.
    pub capacity_slots: u64,
    /// Free slots left.
    pub slots_free: u32,
}

impl NodeState {
    pub(crate) fn new(offer: &NodeOffer<'_>) -> Self {
        Self {
            node: offer.node,
            load_slots: u64::from(offer.running),
            capacity_slots: u64::from(offer.slots_total.max(1)),
            slots_free: offer.slots_free,
        }
    }

    /// Which node gets the next slot first: lower load, then more free slots, then lower key.
    pub(crate) fn priority_cmp(&self, other: &Self) -> Ordering {
        // Loads are fractions; cross-multiplying keeps the comparison exact.
        let own_load = u128::from(self.load_slots) * u128::from(other.capacity_slots);
        let other_load = u128::from(other.load_slots) * u128::from(self.capacity_slots);
        own_load
            .cmp(&other_load)
            .then(other.slots_free.cmp(&self.slots_free))
            .then(self.node.cmp(&other.node))
    }

    pub(crate) fn precedes(&self, other: &Self) -> bool {
        self.priority_cmp(other) == Ordering::Less
    }

    pub(crate) fn take(&mut self, count: u32) {
        assert!(count <= self.slots_free, "node {} overbooked", self.node);
        self.slots_free -= count;
        self.load_slots += u64::from(count);
    }

    /// How many of its free slots would be handed out at a load strictly below
    /// `level / scale`. Its k-th free slot (from 0) goes at load `(load_slots + k) / capacity`.
    fn slots_below(&self, level: u128, scale: u128) -> u64 {
        // (load + k) × scale < level × capacity  ⟺  load + k < ⌈level × capacity / scale⌉,
        // because load + k is an integer.
        let bound = (level * u128::from(self.capacity_slots)).div_ceil(scale);
        let below = bound.saturating_sub(u128::from(self.load_slots));
        u64::try_from(below.min(u128::from(self.slots_free))).expect("at most slots_free")
    }

    /// The lowest level (over `scale`) at which none of its free slots is below it.
    fn level_floor(&self, scale: u128) -> u128 {
        u128::from(self.load_slots) * scale / u128::from(self.capacity_slots)
    }

    /// A level (over `scale`) at which all of its free slots are below it.
    fn level_above_all(&self, scale: u128) -> u128 {
        debug_assert!(self.slots_free > 0);
        let last_slot = u128::from(self.load_slots) + u128::from(self.slots_free) - 1;
        last_slot * scale / u128::from(self.capacity_slots) + 1
    }
}

/// Nodes that fit exactly the same requirement sets.
#[derive(Debug, Clone, Copy)]
struct Class {
    /// Where its heap starts in `Pool::order`.
    start: usize,
    /// How many of its nodes still have free slots: the heap's length.
    len: usize,
    /// One of its nodes; the class's fit bits are that node's.
    member: usize,
}

/// When a turn is water-filled in one pass rather than placed slot by slot. Slot by slot costs
/// O(classes + log nodes) a slot; water-filling O(candidates × log levels) a turn plus a heap
/// rebuild, so it pays off only for turns long compared with the candidate nodes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaterFill {
    pub budget_min: u32,
    pub budget_per_candidate_min: u64,
}

impl WaterFill {
    pub(crate) const DEFAULT: Self = Self {
        budget_min: 32,
        budget_per_candidate_min: 2,
    };
    #[cfg(test)]
    pub(crate) const ALWAYS: Self = Self {
        budget_min: 0,
        budget_per_candidate_min: 0,
    };
    #[cfg(test)]
    pub(crate) const NEVER: Self = Self {
        budget_min: u32::MAX,
        budget_per_candidate_min: u64::MAX,
    };

    fn applies(self, budget: u32, candidates: u64) -> bool {
        budget >= self.budget_min
            && u64::from(budget) >= candidates.saturating_mul(self.budget_per_candidate_min)
    }
}

pub(crate) struct Pool {
    nodes: Vec<NodeState>,
    /// Node indices, class after class, each class's live part a heap.
    order: Vec<u32>,
    classes: Vec<Class>,
    /// Per node, `words_per_node` words: bit g is set when the node fits requirement group g.
    fit_bits: Vec<u64>,
    words_per_node: usize,
    /// Bit g is set when some node fits requirement group g.
    groups_with_nodes: Vec<u64>,
    slots_free_left: u64,
    water_fill: WaterFill,
    /// Scratch: the classes that fit the job whose turn it is and have free slots.
    turn_classes: Vec<usize>,
    /// Scratch: node indices during a water-filling pass.
    candidates: Vec<u32>,
}

impl Pool {
    /// Groups the nodes available at `now_ms` by which of the requirement `groups` they fit.
    pub(crate) fn new(
        offers: &[NodeOffer<'_>],
        now_ms: u64,
        groups: &[&Requirements<'_>],
        water_fill: WaterFill,
    ) -> Self {
        assert!(!groups.is_empty(), "a pool is built for pending jobs");
        let words_per_node = groups.len().div_ceil(64);
        let mut nodes = Vec::with_capacity(offers.len());
        let mut fit_bits = Vec::with_capacity(offers.len() * words_per_node);
        for offer in offers.iter().filter(|offer| is_available(offer, now_ms)) {
            nodes.push(NodeState::new(offer));
            push_fit_bits(&mut fit_bits, offer, groups, words_per_node);
        }
        assert!(u32::try_from(nodes.len()).is_ok(), "node indices are u32");
        debug_assert_unique_nodes(&nodes);
        let mut pool = Self {
            nodes,
            order: Vec::new(),
            classes: Vec::new(),
            fit_bits,
            words_per_node,
            groups_with_nodes: vec![0; words_per_node],
            slots_free_left: 0,
            water_fill,
            turn_classes: Vec::new(),
            candidates: Vec::new(),
        };
        pool.form_classes();
        pool
    }

    pub(crate) fn slots_free_left(&self) -> u64 {
        self.slots_free_left
    }

    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn bits_of(&self, node_index: usize) -> &[u64] {
        node_bits(&self.fit_bits, self.words_per_node, node_index)
    }

    /// Sorts the nodes that fit anything by their fit bits, so each class is one run, and
    /// makes every run a heap.
    fn form_classes(&mut self) {
        let node_count = u32::try_from(self.nodes.len()).expect("checked in new");
        let bits_of = |index: u32| node_bits(&self.fit_bits, self.words_per_node, index as usize);
        let mut order: Vec<u32> = Vec::with_capacity(self.nodes.len());
        order.extend((0..node_count).filter(|&index| bits_of(index).iter().any(|&word| word != 0)));
        order.sort_unstable_by(|&a, &b| bits_of(a).cmp(bits_of(b)));
        let mut start = 0;
        while start < order.len() {
            let member = order[start];
            let len = order[start..]
                .iter()
                .take_while(|&&index| bits_of(index) == bits_of(member))
                .count();
            for (word, &bits) in self.groups_with_nodes.iter_mut().zip(bits_of(member)) {
                *word |= bits;
            }
            let member = member as usize;
            self.classes.push(Class { start, len, member });
            start += len;
        }
        let nodes = &self.nodes;
        for class in &self.classes {
            heap::heapify(&mut order[class.start..][..class.len], |a, b| {
                nodes[a as usize].precedes(&nodes[b as usize])
            });
        }
        self.slots_free_left = order
            .iter()
            .map(|&index| u64::from(nodes[index as usize].slots_free))
            .sum();
        self.order = order;
        self.turn_classes.reserve(self.classes.len());
    }

    pub(crate) fn group_fits_some_node(&self, group: u32) -> bool {
        has_bit(&self.groups_with_nodes, group)
    }

    /// Fills `turn_classes` for `group` and returns how many nodes they hold.
    fn collect_turn_classes(&mut self, group: u32) -> u64 {
        self.turn_classes.clear();
        let mut candidates = 0;
        for (index, class) in self.classes.iter().enumerate() {
            if class.len > 0 && has_bit(self.bits_of(class.member), group) {
                self.turn_classes.push(index);
                candidates += class.len as u64;
            }
        }
        candidates
    }

    /// The node heading a class's heap.
    fn head(&self, class: usize) -> &NodeState {
        &self.nodes[self.order[self.classes[class].start] as usize]
    }

    /// Places a turn one slot at a time: each slot to the first node of the classes that fit.
    fn place_one_by_one(&mut self, job: u64, budget: u32, out: &mut Vec<Assignment>) -> u32 {
        let mut placed = 0;
        while placed < budget {
            let first_class = self
                .turn_classes
                .iter()
                .copied()
                .filter(|&class| self.classes[class].len > 0)
                .min_by(|&a, &b| self.head(a).priority_cmp(self.head(b)));
            let Some(class) = first_class else { break };
            self.give_head_one_slot(class, job, out);
            placed += 1;
        }
        placed
    }

    fn give_head_one_slot(&mut self, class: usize, job: u64, out: &mut Vec<Assignment>) {
        let Self {
            nodes,
            order,
            classes,
            ..
        } = self;
        let class = &mut classes[class];
        let heap = &mut order[class.start..][..class.len];
        let node = &mut nodes[heap[0] as usize];
        node.take(1);
        record(out, node.node, job, 1);
        let node_is_full = node.slots_free == 0;
        let precedes = |a: u32, b: u32| nodes[a as usize].precedes(&nodes[b as usize]);
        if node_is_full {
            heap::pop_to_end(heap, precedes);
            class.len -= 1;
        } else {
            heap::sift_down(heap, 0, precedes);
        }
    }

    /// Places a whole turn in one pass. Slot by slot, a turn of B slots for one job goes to the
    /// B lowest (load, more free, key) slots of the fitting nodes, since each node's successive
    /// slots come at rising loads. So find the highest level L (over a scale no smaller than
    /// any capacity) with at most B slots below it, give every node its slots below L, and
    /// hand the few left over to the first nodes in priority order: between L and L + 1 each
    /// node has at most one slot, so those are one per node.
    fn place_water_filling(&mut self, job: u64, budget: u32, out: &mut Vec<Assignment>) -> u32 {
        let Self {
            nodes,
            order,
            classes,
            turn_classes,
            candidates,
            ..
        } = self;
        candidates.clear();
        for &class in turn_classes.iter() {
            candidates.extend_from_slice(&order[classes[class].start..][..classes[class].len]);
        }
        let slots_free: u64 = candidates
            .iter()
            .map(|&index| u64::from(nodes[index as usize].slots_free))
            .sum();
        let placed = if slots_free <= u64::from(budget) {
            fill_completely(nodes, candidates, job, out);
            slots_free
        } else {
            fill_to_budget(nodes, candidates, job, u64::from(budget), out)
        };
        for &class in turn_classes.iter() {
            rebuild_class_heap(nodes, order, &mut classes[class]);
        }
        u32::try_from(placed).expect("at most the budget")
    }
}

impl Placer for Pool {
    fn place(&mut self, job: &QueuedJob, budget: u32, out: &mut Vec<Assignment>) -> u32 {
        let candidates = self.collect_turn_classes(job.requirement_group);
        if candidates == 0 {
            return 0;
        }
        let placed = if self.water_fill.applies(budget, candidates) {
            self.place_water_filling(job.job, budget, out)
        } else {
            self.place_one_by_one(job.job, budget, out)
        };
        self.slots_free_left -= u64::from(placed);
        placed
    }

    fn is_full(&self) -> bool {
        self.slots_free_left == 0
    }
}

fn node_bits(fit_bits: &[u64], words_per_node: usize, node_index: usize) -> &[u64] {
    &fit_bits[node_index * words_per_node..][..words_per_node]
}

fn has_bit(words: &[u64], bit: u32) -> bool {
    let bit = bit as usize;
    words[bit / 64] & (1 << (bit % 64)) != 0
}

/// Appends which requirement groups `offer` fits: the one place where fit checks run in a pool.
fn push_fit_bits(
    fit_bits: &mut Vec<u64>,
    offer: &NodeOffer<'_>,
    groups: &[&Requirements<'_>],
    words_per_node: usize,
) {
    let start = fit_bits.len();
    fit_bits.resize(start + words_per_node, 0);
    for (group, requirements) in groups.iter().enumerate() {
        if fits(offer, requirements) {
            fit_bits[start + group / 64] |= 1 << (group % 64);
        }
    }
}

/// Duplicate keys are a caller bug: two nodes would merge into one output entry.
fn debug_assert_unique_nodes(nodes: &[NodeState]) {
    if cfg!(debug_assertions) {
        let mut keys: Vec<u64> = nodes.iter().map(|node| node.node).collect();
        keys.sort_unstable();
        assert!(
            keys.windows(2).all(|pair| pair[0] != pair[1]),
            "node keys in a snapshot must be unique"
        );
    }
}

fn fill_completely(
    nodes: &mut [NodeState],
    candidates: &[u32],
    job: u64,
    out: &mut Vec<Assignment>,
) {
    for &index in candidates {
        let node = &mut nodes[index as usize];
        let count = node.slots_free;
        node.take(count);
        record(out, node.node, job, count);
    }
}

/// Gives out exactly `budget` slots (fewer than the candidates' free slots) the way slot by slot
/// placement would; returns `budget`.
fn fill_to_budget(
    nodes: &mut [NodeState],
    candidates: &mut Vec<u32>,
    job: u64,
    budget: u64,
    out: &mut Vec<Assignment>,
) -> u64 {
    let scale = candidates
        .iter()
        .map(|&index| u128::from(nodes[index as usize].capacity_slots))
        .max()
        .expect("a turn has candidates");
    let level = highest_level_within(nodes, candidates, scale, budget);
    let mut placed = 0;
    for &index in candidates.iter() {
        let node = &mut nodes[index as usize];
        let count = u32::try_from(node.slots_below(level, scale)).expect("at most slots_free");
        if count > 0 {
            node.take(count);
            record(out, node.node, job, count);
            placed += u64::from(count);
        }
    }
    let rest = usize::try_from(budget - placed).expect("fewer than the candidates");
    if rest > 0 {
        candidates.retain(|&index| nodes[index as usize].slots_free > 0);
        debug_assert!(
            rest < candidates.len(),
            "at most one slot per node in the band"
        );
        candidates.select_nth_unstable_by(rest - 1, |&a, &b| {
            nodes[a as usize].priority_cmp(&nodes[b as usize])
        });
        for &index in &candidates[..rest] {
            let node = &mut nodes[index as usize];
            node.take(1);
            record(out, node.node, job, 1);
        }
    }
    budget
}

/// The highest level L with at most `budget` slots below `L / scale`, given that the
/// candidates' free slots are more than `budget`. Then more than `budget` slots lie below
/// `(L + 1) / scale`.
fn highest_level_within(nodes: &[NodeState], candidates: &[u32], scale: u128, budget: u64) -> u128 {
    let candidate_nodes = || candidates.iter().map(|&index| &nodes[index as usize]);
    let slots_below_at_most_budget = |level: u128| {
        let mut total = 0u64;
        for node in candidate_nodes() {
            total += node.slots_below(level, scale);
            if total > budget {
                return false;
            }
        }
        true
    };
    // Nothing lies below `low`; everything lies below `high`, and that is more than `budget`.
    let mut low = candidate_nodes()
        .map(|node| node.level_floor(scale))
        .min()
        .expect("a turn has candidates");
    let mut high = candidate_nodes()
        .map(|node| node.level_above_all(scale))
        .max()
        .expect("a turn has candidates");
    debug_assert!(slots_below_at_most_budget(low) && !slots_below_at_most_budget(high));
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if slots_below_at_most_budget(middle) {
            low = middle;
        } else {
            high = middle;
        }
    }
    low
}

/// Drops the class's full nodes from its heap and restores the heap order.
fn rebuild_class_heap(nodes: &[NodeState], order: &mut [u32], class: &mut Class) {
    let members = &mut order[class.start..][..class.len];
    let mut kept = 0;
    for position in 0..members.len() {
        if nodes[members[position] as usize].slots_free > 0 {
            members.swap(kept, position);
            kept += 1;
        }
    }
    class.len = kept;
    heap::heapify(&mut members[..kept], |a, b| {
        nodes[a as usize].precedes(&nodes[b as usize])
    });
}

#[cfg(test)]
mod tests {
    //! Node priority and the level arithmetic behind water-filling.

    use super::*;

    fn state(node: u64, load_slots: u64, capacity_slots: u64, slots_free: u32) -> NodeState {
        NodeState {
            node,
            load_slots,
            capacity_slots,
            slots_free,
        }
    }

    #[test]
    fn lower_load_comes_first_compared_exactly() {
        // 1/3 < 2/5 although both round to similar floats; 2/4 == 1/2.
        let third = state(1, 1, 3, 1);
        let two_fifths = state(2, 2, 5, 1);
        assert_eq!(third.priority_cmp(&two_fifths), Ordering::Less);
        let half_a = state(3, 2, 4, 1);
        let half_b = state(4, 1, 2, 1);
        assert_eq!(
            half_a.priority_cmp(&half_b),
            Ordering::Less,
            "tie to lower key"
        );
    }

    #[test]
    fn equal_load_prefers_more_free_slots_then_lower_key() {
        let few_free = state(1, 0, 4, 1);
        let many_free = state(2, 0, 4, 3);
        assert_eq!(many_free.priority_cmp(&few_free), Ordering::Less);
        assert_eq!(
            state(5, 0, 4, 2).priority_cmp(&state(6, 0, 4, 2)),
            Ordering::Less
        );
    }

    #[test]
    fn slots_below_counts_free_slots_under_a_level() {
        // Load 1 of 4 with 5 free: slots at 1/4, 2/4, 3/4, 4/4, 5/4.
        let node = state(1, 1, 4, 5);
        let scale = 4;
        assert_eq!(node.slots_below(1, scale), 0);
        assert_eq!(node.slots_below(2, scale), 1);
        assert_eq!(node.slots_below(4, scale), 3);
        assert_eq!(node.slots_below(100, scale), 5);
        // Over a scale of 8, level 5 means 5/8: the slots at 1/4 and 2/4 lie below.
        assert_eq!(node.slots_below(5, 8), 2);
    }
}
