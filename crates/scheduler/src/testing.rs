//! Test support: a tiny deterministic PRNG, owned pools that lend out snapshots, random pool
//! generators, a literal slot-at-a-time reference `assign`, and a checker of every promise the
//! crate docs make about `assign`'s output.
//!
//! Invariant: nothing here shares code with the fast path except `fits`, so agreement between
//! the two is evidence, not tautology.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::fit::fits;
use crate::snapshot::{Assignment, Excluded, JobDemand, NodeOffer, Requirements, Snapshot};

/// The `now_ms` every test uses.
pub(crate) const NOW_MS: u64 = 1_000_000;

/// xorshift64*: deterministic, tiny, good enough to generate test cases.
pub(crate) struct XorShift(u64);

impl XorShift {
    pub(crate) fn new(seed: u64) -> Self {
        // Any non-zero state works; mixing keeps nearby seeds apart.
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..bound`.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        self.next_u64() % bound
    }

    pub(crate) fn below_u32(&mut self, bound: u32) -> u32 {
        u32::try_from(self.below(u64::from(bound))).expect("below a u32")
    }

    pub(crate) fn one_in(&mut self, chances: u64) -> bool {
        self.below(chances) == 0
    }

    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[usize::try_from(self.below(items.len() as u64)).expect("an index")]
    }

    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for last in (1..items.len()).rev() {
            let other = usize::try_from(self.below(last as u64 + 1)).expect("an index");
            items.swap(last, other);
        }
    }
}

pub(crate) fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    labels.sort();
    labels
}

/// A node that owns its labels.
#[derive(Debug, Clone)]
pub(crate) struct OwnedNode {
    pub node: u64,
    pub slots_free: u32,
    pub slots_total: u32,
    pub running: u32,
    pub cores: u32,
    pub memory_bytes: u64,
    pub module_bytes_max: u64,
    pub takes_components: bool,
    pub browser: bool,
    pub wasm_features: Option<Vec<String>>,
    pub arch: &'static str,
    pub os: &'static str,
    pub labels: Vec<(String, String)>,
    pub lease_until_ms: u64,
    pub owner: Option<u64>,
    pub network: Option<u64>,
}

impl OwnedNode {
    /// An idle 4-core 8 GiB x86_64 linux node with a live lease.
    pub(crate) fn idle(node: u64, slots_total: u32) -> Self {
        Self {
            node,
            slots_free: slots_total,
            slots_total,
            running: 0,
            cores: 4,
            memory_bytes: 8 << 30,
            module_bytes_max: 256 << 20,
            takes_components: true,
            browser: false,
            wasm_features: None,
            arch: "x86_64",
            os: "linux",
            labels: Vec::new(),
            lease_until_ms: NOW_MS + 30_000,
            owner: Some(node),
            network: Some(node),
        }
    }

    /// A live node with `running` of `slots_total` busy and `slots_free` offered.
    pub(crate) fn busy(node: u64, slots_free: u32, slots_total: u32, running: u32) -> Self {
        Self {
            slots_free,
            running,
            ..Self::idle(node, slots_total)
        }
    }

    pub(crate) fn offer(&self) -> NodeOffer<'_> {
        NodeOffer {
            node: self.node,
            slots_free: self.slots_free,
            slots_total: self.slots_total,
            running: self.running,
            cores: self.cores,
            memory_bytes: self.memory_bytes,
            module_bytes_max: self.module_bytes_max,
            takes_components: self.takes_components,
            browser: self.browser,
            wasm_features: self.wasm_features.as_deref(),
            arch: self.arch,
            os: self.os,
            labels: &self.labels,
            lease_until_ms: self.lease_until_ms,
            owner: self.owner,
            network: self.network,
        }
    }
}

/// A job that owns its required labels.
#[derive(Debug, Clone)]
pub(crate) struct OwnedJob {
    pub job: u64,
    pub pending: u32,
    pub running: u32,
    pub submitted_seq: u64,
    pub memory_bytes_min: u64,
    pub cores_min: u32,
    pub module_bytes: u64,
    pub component: bool,
    pub browser: Option<bool>,
    pub wasm_features: Vec<String>,
    pub arch: Option<&'static str>,
    pub os: Option<&'static str>,
    pub labels: Vec<(String, String)>,
    pub excluded_nodes: Vec<u64>,
    pub excluded_owners: Vec<u64>,
    pub excluded_networks: Vec<u64>,
}

impl OwnedJob {
    /// A job with no requirements.
    pub(crate) fn new(job: u64, pending: u32, running: u32, submitted_seq: u64) -> Self {
        Self {
            job,
            pending,
            running,
            submitted_seq,
            memory_bytes_min: 0,
            cores_min: 0,
            module_bytes: 0,
            component: false,
            browser: None,
            wasm_features: Vec::new(),
            arch: None,
            os: None,
            labels: Vec::new(),
            excluded_nodes: Vec::new(),
            excluded_owners: Vec::new(),
            excluded_networks: Vec::new(),
        }
    }

    pub(crate) fn demand(&self) -> JobDemand<'_> {
        JobDemand {
            job: self.job,
            pending: self.pending,
            running: self.running,
            submitted_seq: self.submitted_seq,
            requirements: Requirements {
                memory_bytes_min: self.memory_bytes_min,
                cores_min: self.cores_min,
                module_bytes: self.module_bytes,
                component: self.component,
                browser: self.browser,
                wasm_features: &self.wasm_features,
                arch: self.arch,
                os: self.os,
                labels: &self.labels,
                excluded: Excluded {
                    nodes: &self.excluded_nodes,
                    owners: &self.excluded_owners,
                    networks: &self.excluded_networks,
                },
                key_holders: None,
            },
        }
    }
}

/// Bounds for a random pool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub nodes_max: u64,
    pub jobs_max: u64,
    pub slots_total_max: u32,
    pub slots_free_max: u32,
    pub node_running_max: u32,
    pub pending_max: u32,
    pub job_running_max: u32,
    /// One in this many jobs asks for something beyond the defaults.
    pub requirements_one_in: u64,
}

impl Shape {
    pub(crate) const SMALL: Self = Self {
        nodes_max: 6,
        jobs_max: 6,
        slots_total_max: 6,
        slots_free_max: 6,
        node_running_max: 8,
        pending_max: 12,
        job_running_max: 6,
        requirements_one_in: 2,
    };
}

/// Keys drawn without repeats from a small range, so order by key and by input differ.
fn distinct_keys(rng: &mut XorShift, count: u64) -> Vec<u64> {
    let mut keys: Vec<u64> = (0..count * 3 + 1).collect();
    rng.shuffle(&mut keys);
    keys.truncate(usize::try_from(count).expect("small"));
    keys
}

pub(crate) fn random_nodes(rng: &mut XorShift, shape: &Shape) -> Vec<OwnedNode> {
    let count = rng.below(shape.nodes_max + 1);
    distinct_keys(rng, count)
        .into_iter()
        .map(|node| {
            // slots_total may be 0 and need not equal running + free: callers get it wrong too.
            let slots_total = rng.below_u32(shape.slots_total_max + 1);
            let mut node_labels = Vec::new();
            if rng.one_in(3) {
                node_labels.push(("gpu", "yes"));
            }
            if !rng.one_in(3) {
                node_labels.push(("region", rng.pick(&["eu", "us"])));
            }
            let lease_until_ms = match rng.below(6) {
                0 => NOW_MS,
                1 => NOW_MS - rng.below(1000),
                _ => NOW_MS + 1 + rng.below(1000),
            };
            OwnedNode {
                node,
                slots_free: rng.below_u32(shape.slots_free_max + 1),
                slots_total,
                running: rng.below_u32(shape.node_running_max + 1),
                cores: rng.pick(&[1, 2, 4, 8]),
                memory_bytes: rng.pick(&[1u64, 4, 8, 16]) << 30,
                module_bytes_max: rng.pick(&[16u64, 64, 256]) << 20,
                takes_components: !rng.one_in(4),
                browser: rng.one_in(5),
                wasm_features: (!rng.one_in(3)).then(|| random_features(rng)),
                arch: rng.pick(&["x86_64", "aarch64"]),
                os: rng.pick(&["linux", "macos"]),
                labels: labels(&node_labels),
                lease_until_ms,
                // Few owners and networks, some unknown, so exclusions bite and miss.
                owner: (!rng.one_in(5)).then(|| rng.below(3)),
                network: (!rng.one_in(5)).then(|| rng.below(3)),
            }
        })
        .collect()
}

pub(crate) fn random_jobs(rng: &mut XorShift, shape: &Shape) -> Vec<OwnedJob> {
    let count = rng.below(shape.jobs_max + 1);
    let mut seqs = distinct_keys(rng, count);
    rng.shuffle(&mut seqs);
    distinct_keys(rng, count)
        .into_iter()
        .zip(seqs)
        .map(|(job, submitted_seq)| {
            let mut demand = OwnedJob::new(
                job,
                rng.below_u32(shape.pending_max + 1),
                rng.below_u32(shape.job_running_max + 1),
                submitted_seq,
            );
            if rng.one_in(shape.requirements_one_in) {
                add_random_requirement(rng, &mut demand);
            }
            demand
        })
        .collect()
}

/// A few proposal names from a small vocabulary, so that nodes and jobs meet and miss.
fn random_features(rng: &mut XorShift) -> Vec<String> {
    ["simd", "exceptions", "memory64"]
        .into_iter()
        .filter(|_| rng.one_in(2))
        .map(str::to_owned)
        .collect()
}

fn add_random_requirement(rng: &mut XorShift, demand: &mut OwnedJob) {
    match rng.below(13) {
        12 => demand.browser = Some(rng.one_in(2)),
        11 => demand.wasm_features = random_features(rng),
        10 => demand.component = true,
        9 => demand.module_bytes = rng.pick(&[8u64, 32, 100]) << 20,
        6 => demand.excluded_nodes = (0..rng.below(4)).map(|_| rng.below(20)).collect(),
        7 => demand.excluded_owners = vec![rng.below(3)],
        8 => demand.excluded_networks = vec![rng.below(3)],
        0 => demand.memory_bytes_min = rng.pick(&[2u64, 8, 12]) << 30,
        1 => demand.cores_min = rng.pick(&[2, 4, 8]),
        2 => demand.arch = Some(rng.pick(&["x86_64", "aarch64"])),
        3 => demand.os = Some(rng.pick(&["linux", "macos", "windows"])),
        4 => demand.labels = labels(&[("region", rng.pick(&["eu", "us", "ap"]))]),
        _ => demand.labels = labels(&[("gpu", "yes")]),
    }
}

/// Runs `check` on the snapshot the owned pool lends out.
pub(crate) fn with_snapshot<R>(
    nodes: &[OwnedNode],
    jobs: &[OwnedJob],
    check: impl FnOnce(&Snapshot<'_>) -> R,
) -> R {
    let offers: Vec<NodeOffer<'_>> = nodes.iter().map(OwnedNode::offer).collect();
    let demands: Vec<JobDemand<'_>> = jobs.iter().map(OwnedJob::demand).collect();
    check(&Snapshot {
        nodes: &offers,
        jobs: &demands,
    })
}

/// Load, free slots and key of a node at some moment: which node is first for the next slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeStanding {
    load_slots: u64,
    capacity_slots: u64,
    slots_free: u64,
    node: u64,
}

impl NodeStanding {
    fn new(node: &NodeOffer<'_>, load_slots: u64, slots_free: u64) -> Self {
        Self {
            load_slots,
            capacity_slots: u64::from(node.slots_total.max(1)),
            slots_free,
            node: node.node,
        }
    }
}

impl Ord for NodeStanding {
    fn cmp(&self, other: &Self) -> Ordering {
        let own = u128::from(self.load_slots) * u128::from(other.capacity_slots);
        let theirs = u128::from(other.load_slots) * u128::from(self.capacity_slots);
        own.cmp(&theirs)
            .then(other.slots_free.cmp(&self.slots_free))
            .then(self.node.cmp(&other.node))
    }
}

impl PartialOrd for NodeStanding {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn available_slots(node: &NodeOffer<'_>, now_ms: u64) -> u64 {
    if node.lease_until_ms > now_ms {
        u64::from(node.slots_free)
    } else {
        0
    }
}

/// The crate docs' definition, literally: one slot at a time, every choice a full scan.
pub(crate) fn reference_assign(snapshot: &Snapshot<'_>, now_ms: u64) -> Vec<Assignment> {
    let nodes = snapshot.nodes;
    let jobs = snapshot.jobs;
    let mut node_load: Vec<u64> = nodes.iter().map(|node| u64::from(node.running)).collect();
    let mut node_free: Vec<u64> = nodes
        .iter()
        .map(|node| available_slots(node, now_ms))
        .collect();
    let mut job_count: Vec<u64> = jobs.iter().map(|job| u64::from(job.running)).collect();
    let mut job_left: Vec<u32> = jobs.iter().map(|job| job.pending).collect();
    let mut given: BTreeMap<(u64, u64), u32> = BTreeMap::new();
    loop {
        let placeable = |job: usize, node_free: &[u64]| {
            job_left[job] > 0
                && (0..nodes.len())
                    .any(|node| node_free[node] > 0 && fits(&nodes[node], &jobs[job].requirements))
        };
        let Some(job) = (0..jobs.len())
            .filter(|&job| placeable(job, &node_free))
            .min_by_key(|&job| (job_count[job], jobs[job].submitted_seq, jobs[job].job))
        else {
            break;
        };
        let node = (0..nodes.len())
            .filter(|&node| node_free[node] > 0 && fits(&nodes[node], &jobs[job].requirements))
            .min_by_key(|&node| NodeStanding::new(&nodes[node], node_load[node], node_free[node]))
            .expect("the job is placeable");
        node_load[node] += 1;
        node_free[node] -= 1;
        job_count[job] += 1;
        job_left[job] -= 1;
        *given.entry((nodes[node].node, jobs[job].job)).or_default() += 1;
    }
    given
        .into_iter()
        .map(|((node, job), count)| Assignment { node, job, count })
        .collect()
}

/// Asserts every promise of the crate docs about `result`, in time about
/// O(assignments × jobs + nodes × jobs), so it also serves large pools.
pub(crate) fn check_promises(snapshot: &Snapshot<'_>, now_ms: u64, result: &[Assignment]) {
    let ledger = Ledger::new(snapshot, now_ms, result);
    ledger.check_work_conserving();
    ledger.check_fairness();
    ledger.check_spread();
}

/// What one result did to the pool: the capacity checks happen while it is built.
struct Ledger<'s, 'a> {
    nodes: &'s [NodeOffer<'a>],
    jobs: &'s [JobDemand<'a>],
    result: &'s [Assignment],
    node_index: BTreeMap<u64, usize>,
    job_index: BTreeMap<u64, usize>,
    node_given: Vec<u64>,
    node_free_left: Vec<u64>,
    job_given: Vec<u64>,
}

impl<'s, 'a> Ledger<'s, 'a> {
    fn new(snapshot: &'s Snapshot<'a>, now_ms: u64, result: &'s [Assignment]) -> Self {
        let nodes = snapshot.nodes;
        let jobs = snapshot.jobs;
        assert!(
            result
                .windows(2)
                .all(|pair| (pair[0].node, pair[0].job) < (pair[1].node, pair[1].job)),
            "sorted by (node, job), one entry per pair: {result:?}"
        );
        let node_index: BTreeMap<u64, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (node.node, i))
            .collect();
        let job_index: BTreeMap<u64, usize> = jobs
            .iter()
            .enumerate()
            .map(|(i, job)| (job.job, i))
            .collect();
        let mut node_given = vec![0u64; nodes.len()];
        let mut job_given = vec![0u64; jobs.len()];
        for assignment in result {
            assert!(assignment.count > 0, "zero-count {assignment:?}");
            let node = node_index[&assignment.node];
            let job = job_index[&assignment.job];
            assert!(
                nodes[node].lease_until_ms > now_ms,
                "{assignment:?} on a node whose lease ran out"
            );
            assert!(
                fits(&nodes[node], &jobs[job].requirements),
                "{assignment:?} on a node that does not fit"
            );
            node_given[node] += u64::from(assignment.count);
            job_given[job] += u64::from(assignment.count);
        }
        for (node, given) in nodes.iter().zip(&node_given) {
            assert!(
                *given <= u64::from(node.slots_free),
                "node {} overbooked",
                node.node
            );
        }
        for (job, given) in jobs.iter().zip(&job_given) {
            assert!(
                *given <= u64::from(job.pending),
                "job {} overplaced",
                job.job
            );
        }
        let node_free_left = nodes
            .iter()
            .zip(&node_given)
            .map(|(node, given)| available_slots(node, now_ms).saturating_sub(*given))
            .collect();
        Self {
            nodes,
            jobs,
            result,
            node_index,
            job_index,
            node_given,
            node_free_left,
            job_given,
        }
    }

    fn pending_left(&self, job: usize) -> u64 {
        u64::from(self.jobs[job].pending) - self.job_given[job]
    }

    fn running_and_assigned(&self, job: usize) -> u64 {
        u64::from(self.jobs[job].running) + self.job_given[job]
    }

    fn check_work_conserving(&self) {
        for job in (0..self.jobs.len()).filter(|&job| self.pending_left(job) > 0) {
            for node in (0..self.nodes.len()).filter(|&node| self.node_free_left[node] > 0) {
                assert!(
                    !fits(&self.nodes[node], &self.jobs[job].requirements),
                    "job {} left waiting while node {} fits it and has a free slot",
                    self.jobs[job].job,
                    self.nodes[node].node
                );
            }
        }
    }

    /// If job i still waits and job j got k > 0 slots on nodes i fits, then
    /// (running(j) + k - 1, seq(j)) < (running(i) + assigned(i), seq(i)).
    fn check_fairness(&self) {
        for waiting in (0..self.jobs.len()).filter(|&job| self.pending_left(job) > 0) {
            let waiting_job = &self.jobs[waiting];
            let mut given_on_its_nodes = vec![0u64; self.jobs.len()];
            for assignment in self.result {
                let node = &self.nodes[self.node_index[&assignment.node]];
                if fits(node, &waiting_job.requirements) {
                    given_on_its_nodes[self.job_index[&assignment.job]] +=
                        u64::from(assignment.count);
                }
            }
            for (other, &given) in given_on_its_nodes.iter().enumerate() {
                if other == waiting || given == 0 {
                    continue;
                }
                let other_job = &self.jobs[other];
                let before_its_last = (
                    u64::from(other_job.running) + given - 1,
                    other_job.submitted_seq,
                );
                let waiting_ends_at = (
                    self.running_and_assigned(waiting),
                    waiting_job.submitted_seq,
                );
                assert!(
                    before_its_last < waiting_ends_at,
                    "job {} took a slot of waiting job {} while ahead of it: {before_its_last:?} \
                     >= {waiting_ends_at:?}",
                    other_job.job,
                    waiting_job.job
                );
            }
        }
    }

    /// If node n got work and node m fits every pending job n fits and has a free slot left,
    /// n's standing before its last slot was ahead of m's standing now.
    fn check_spread(&self) {
        let pending_jobs: Vec<usize> = (0..self.jobs.len())
            .filter(|&job| self.jobs[job].pending > 0)
            .collect();
        // Nodes that fit the same pending jobs, by fit set: the worst standing before a last
        // slot among those given work, and the best standing among those with room left.
        let mut by_fit_set: BTreeMap<Vec<bool>, (Option<NodeStanding>, Option<NodeStanding>)> =
            BTreeMap::new();
        for (index, node) in self.nodes.iter().enumerate() {
            let given = self.node_given[index];
            let free_left = self.node_free_left[index];
            if given == 0 && free_left == 0 {
                continue;
            }
            let fit_set: Vec<bool> = pending_jobs
                .iter()
                .map(|&job| fits(node, &self.jobs[job].requirements))
                .collect();
            let (worst_given, best_free) = by_fit_set.entry(fit_set).or_default();
            let load_slots = u64::from(node.running) + given;
            if given > 0 {
                let before_last = NodeStanding::new(node, load_slots - 1, free_left + 1);
                *worst_given = (*worst_given).max(Some(before_last));
            }
            if free_left > 0 {
                let now = NodeStanding::new(node, load_slots, free_left);
                *best_free = Some(best_free.map_or(now, |best| best.min(now)));
            }
        }
        for (given_set, (worst_given, _)) in &by_fit_set {
            let Some(worst_given) = worst_given else {
                continue;
            };
            for (free_set, (_, best_free)) in &by_fit_set {
                let Some(best_free) = best_free else { continue };
                let covers = given_set.iter().zip(free_set).all(|(&n, &m)| !n || m);
                assert!(
                    !covers || worst_given < best_free,
                    "node {} got work while node {} stood ahead with room: {worst_given:?} vs \
                     {best_free:?}",
                    worst_given.node,
                    best_free.node
                );
            }
        }
    }
}

mod checker_tests {
    //! The checker must itself reject broken results, or agreement with it proves nothing.

    use super::*;

    fn check(nodes: &[OwnedNode], jobs: &[OwnedJob], result: &[(u64, u64, u32)]) {
        let result: Vec<Assignment> = result
            .iter()
            .map(|&(node, job, count)| Assignment { node, job, count })
            .collect();
        with_snapshot(nodes, jobs, |snapshot| {
            check_promises(snapshot, NOW_MS, &result)
        });
    }

    fn two_jobs() -> [OwnedJob; 2] {
        [OwnedJob::new(10, 5, 0, 1), OwnedJob::new(11, 5, 0, 2)]
    }

    #[test]
    fn accepts_the_fair_spread_result() {
        let nodes = [OwnedNode::idle(1, 2), OwnedNode::idle(2, 2)];
        check(
            &nodes,
            &two_jobs(),
            &[(1, 10, 1), (1, 11, 1), (2, 10, 1), (2, 11, 1)],
        );
    }

    #[test]
    #[should_panic(expected = "overbooked")]
    fn rejects_overbooking() {
        check(
            &[OwnedNode::idle(1, 2)],
            &two_jobs(),
            &[(1, 10, 2), (1, 11, 1)],
        );
    }

    #[test]
    #[should_panic(expected = "left waiting")]
    fn rejects_idle_slots_while_jobs_wait() {
        check(&[OwnedNode::idle(1, 2)], &two_jobs(), &[(1, 10, 1)]);
    }

    #[test]
    #[should_panic(expected = "while ahead of it")]
    fn rejects_an_unfair_split() {
        check(
            &[OwnedNode::idle(1, 4)],
            &two_jobs(),
            &[(1, 10, 3), (1, 11, 1)],
        );
    }

    #[test]
    #[should_panic(expected = "stood ahead with room")]
    fn rejects_piling_onto_one_node() {
        let nodes = [OwnedNode::idle(1, 4), OwnedNode::idle(2, 4)];
        check(&nodes, &[OwnedJob::new(10, 2, 0, 1)], &[(1, 10, 2)]);
    }

    #[test]
    #[should_panic(expected = "lease ran out")]
    fn rejects_a_node_whose_lease_ran_out() {
        let mut node = OwnedNode::idle(1, 4);
        node.lease_until_ms = NOW_MS;
        check(&[node], &two_jobs(), &[(1, 10, 1)]);
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn rejects_a_node_that_does_not_fit() {
        let mut job = OwnedJob::new(10, 1, 0, 1);
        job.cores_min = 64;
        check(&[OwnedNode::idle(1, 4)], &[job], &[(1, 10, 1)]);
    }
}
