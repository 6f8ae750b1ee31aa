//! Pure matching of pending tasks to provider nodes (design decision 8, "pure scheduling").
//!
//! This crate owns the decision of *which node runs how many tasks of which job*. It has no I/O,
//! no clock, no randomness and no threads: every answer is a function of a [`Snapshot`] of the
//! pool and `now_ms` alone, so the same input always gives the same output, whatever order the
//! nodes and jobs come in. The coordinator calls [`assign`](assign()) when a node long-polls
//! for work (a snapshot of that node and the jobs with pending tasks) and when tasks join the
//! queue (all waiting nodes and the jobs with pending tasks), and [`explain`](explain()) for
//! `crowdcloud status JOB --why`.
//!
//! # What `assign` promises
//!
//! A node is *available* when `lease_until_ms > now_ms` (otherwise it may be dead) and it has
//! `slots_free > 0`. `now_ms` matters only through that comparison.
//!
//! * **Capacity.** No node is given more than its `slots_free` in total, no job more than its
//!   `pending`, no node a job it does not [`fits`], no unavailable node anything. Every
//!   [`Assignment`] has `count > 0`, there is at most one per (node, job) pair, and the result
//!   is sorted by `(node, job)`.
//! * **Definition.** The result is exactly what this slot-at-a-time procedure gives:
//!   1. Among jobs with tasks left that fit an available node with a free slot left, pick the
//!      one with the fewest `running + assigned so far in this call`, ties to the lower
//!      `submitted_seq` (then the lower job key). If there is none, stop.
//!   2. Among the available nodes with a free slot left that fit that job, pick the one with the
//!      lowest load `(running + assigned so far in this call) / slots_total` (compared as
//!      cross-multiplied integers; a `slots_total` of 0 counts as 1), ties to more free slots
//!      left, then to the lower node key.
//!   3. Give that node one task of that job and go back to 1.
//! * **Work conserving.** Afterwards, no job with tasks left fits an available node with a free
//!   slot left.
//! * **Fairness (max-min by running count).** Write `C(x) = running(x) + assigned(x)` after the
//!   call. If job `i` still has tasks left and another job `j` was given `k > 0` slots on nodes
//!   that `i` fits, then `(running(j) + k - 1, submitted_seq(j)) < (C(i), submitted_seq(i))`
//!   lexicographically: `j` never took one of `i`'s slots while already ahead of where `i` ends
//!   up. For jobs that fit the same nodes this means a job left waiting has at most one fewer
//!   running + assigned than any job that got slots, and only if that job was submitted earlier.
//!   So two jobs share a pool evenly, and neither an early job nor a flood of later ones starves
//!   the other.
//! * **Spread.** Write `A(x)` for a node's running + assigned and `F(x)` for its free slots left
//!   after the call. If node `n` was given work and an available node `m` fits every pending job
//!   that `n` fits and still has a free slot, then `(A(n) - 1) / total(n)` is below
//!   `A(m) / total(m)`, or equal with `F(n) + 1 > F(m)`, or equal on both with `n < m`. A few
//!   tasks on an idle pool spread out rather than pile onto one node.
//!
//! # Cost
//!
//! A lone available node (the long-poll case) needs no node choice: only the jobs that fit it
//! and could get one of its slots are queued, so the call costs O(jobs + slots log slots).
//! Otherwise fit checks cost O(nodes × distinct requirement sets) once per call. Nodes are then
//! grouped into classes that fit the same jobs, each class a heap ordered by load, and jobs sit
//! in a heap ordered by fairness. A job keeps the turn for as many slots as the definition gives
//! it in a row, and a long turn is placed across nodes in one water-filling pass instead of slot
//! by slot, so S slots cost about O(S × (classes + log nodes + log jobs)) and often much less.
//! The result is the same as the definition above; the tests compare it with a literal
//! implementation on many generated pools.
//!
//! # Example
//!
//! ```
//! use scheduler::{Assignment, JobDemand, NodeOffer, Requirements, Snapshot, assign};
//!
//! let idle = |node| NodeOffer {
//!     node,
//!     slots_free: 4,
//!     slots_total: 4,
//!     running: 0,
//!     cores: 8,
//!     memory_bytes: 16 << 30,
//!     arch: "x86_64",
//!     os: "linux",
//!     labels: &[],
//!     lease_until_ms: 60_000,
//!     owner: None,
//!     network: None,
//! };
//! let nodes = [idle(1), idle(2)];
//! let jobs = [JobDemand {
//!     job: 7,
//!     pending: 3,
//!     running: 0,
//!     submitted_seq: 1,
//!     requirements: Requirements { cores_min: 2, ..Requirements::default() },
//! }];
//! let assignments = assign(&Snapshot { nodes: &nodes, jobs: &jobs }, 30_000);
//! // Three tasks on an idle pool spread out: two on node 1 (the lower key), one on node 2.
//! assert_eq!(
//!     assignments,
//!     [
//!         Assignment { node: 1, job: 7, count: 2 },
//!         Assignment { node: 2, job: 7, count: 1 },
//!     ]
//! );
//! ```

mod assign;
mod explain;
mod fit;
mod format;
mod heap;
mod job_queue;
mod pool;
mod snapshot;

#[cfg(test)]
mod assign_tests;
#[cfg(test)]
mod testing;

pub use assign::assign;
pub use explain::{Reason, explain};
pub use fit::fits;
pub use snapshot::{Assignment, Excluded, JobDemand, NodeOffer, Requirements, Snapshot};
