//! Tests of `assign`: one per rule of the crate docs, then property tests that compare it with
//! the literal slot-at-a-time reference over many generated pools (through every internal
//! path), then large pools checked for correctness only (never timing).

use crate::assign::{Tuning, assign_tuned};
use crate::pool::WaterFill;
use crate::testing::{
    NOW_MS, OwnedJob, OwnedNode, Shape, XorShift, check_promises, labels, random_jobs,
    random_nodes, reference_assign, with_snapshot,
};
use crate::{Assignment, assign};

/// Every internal path; each must give the reference's answer.
const TUNINGS: [Tuning; 4] = [
    Tuning::DEFAULT,
    Tuning {
        water_fill: WaterFill::ALWAYS,
        lone_node_shortcut: true,
    },
    Tuning {
        water_fill: WaterFill::NEVER,
        lone_node_shortcut: false,
    },
    Tuning {
        water_fill: WaterFill::ALWAYS,
        lone_node_shortcut: false,
    },
];

/// The paths that stay fast on large pools.
const LARGE_POOL_TUNINGS: [Tuning; 2] = [TUNINGS[0], TUNINGS[2]];

/// `assign` at `NOW_MS`, after checking it against the reference on every path and against
/// every promise.
fn run(nodes: &[OwnedNode], jobs: &[OwnedJob]) -> Vec<(u64, u64, u32)> {
    run_at(nodes, jobs, NOW_MS)
}

fn run_at(nodes: &[OwnedNode], jobs: &[OwnedJob], now_ms: u64) -> Vec<(u64, u64, u32)> {
    let result = checked_assign(nodes, jobs, now_ms);
    result
        .iter()
        .map(|assignment| (assignment.node, assignment.job, assignment.count))
        .collect()
}

fn checked_assign(nodes: &[OwnedNode], jobs: &[OwnedJob], now_ms: u64) -> Vec<Assignment> {
    with_snapshot(nodes, jobs, |snapshot| {
        let expected = reference_assign(snapshot, now_ms);
        for tuning in TUNINGS {
            let result = assign_tuned(snapshot, now_ms, tuning);
            assert_eq!(result, expected, "{tuning:?} differs from the reference");
        }
        check_promises(snapshot, now_ms, &expected);
        assign(snapshot, now_ms)
    })
}

/// Slots given to each job, in the order of `job_keys`.
fn per_job(result: &[(u64, u64, u32)], job_keys: &[u64]) -> Vec<u32> {
    job_keys
        .iter()
        .map(|&job| {
            result
                .iter()
                .filter(|(_, assigned_job, _)| *assigned_job == job)
                .map(|(_, _, count)| count)
                .sum()
        })
        .collect()
}

/// Slots given to each node, in the order of `node_keys`.
fn per_node(result: &[(u64, u64, u32)], node_keys: &[u64]) -> Vec<u32> {
    node_keys
        .iter()
        .map(|&node| {
            result
                .iter()
                .filter(|(assigned_node, _, _)| *assigned_node == node)
                .map(|(_, _, count)| count)
                .sum()
        })
        .collect()
}

// ---- One test per rule ----

#[test]
fn nothing_to_do_gives_nothing() {
    let node = [OwnedNode::idle(1, 4)];
    let job = [OwnedJob::new(1, 5, 0, 1)];
    assert!(run(&[], &job).is_empty());
    assert!(run(&node, &[]).is_empty());
    assert!(run(&node, &[OwnedJob::new(1, 0, 0, 1)]).is_empty());
    assert!(run(&[OwnedNode::busy(1, 0, 4, 4)], &job).is_empty());
}

#[test]
fn never_more_than_a_nodes_free_slots() {
    let nodes = [OwnedNode::busy(1, 2, 8, 3), OwnedNode::busy(2, 1, 8, 0)];
    let jobs = [OwnedJob::new(10, 100, 0, 1), OwnedJob::new(11, 100, 0, 2)];
    let result = run(&nodes, &jobs);
    assert_eq!(per_node(&result, &[1, 2]), [2, 1]);
}

#[test]
fn never_more_than_a_jobs_pending_tasks() {
    let nodes = [OwnedNode::idle(1, 8), OwnedNode::idle(2, 8)];
    let jobs = [OwnedJob::new(10, 3, 0, 1), OwnedJob::new(11, 1, 0, 2)];
    let result = run(&nodes, &jobs);
    assert_eq!(per_job(&result, &[10, 11]), [3, 1]);
}

#[test]
fn never_to_a_node_that_does_not_fit() {
    let mut small = OwnedNode::idle(1, 4);
    small.cores = 2;
    small.memory_bytes = 2 << 30;
    let mut arm_mac = OwnedNode::idle(2, 4);
    arm_mac.arch = "aarch64";
    arm_mac.os = "macos";
    small.module_bytes_max = 16 << 20;
    let mut eu_gpu = OwnedNode::idle(3, 4);
    eu_gpu.labels = labels(&[("gpu", "yes"), ("region", "eu")]);
    let nodes = [small, arm_mac, eu_gpu];

    let mut needs_memory = OwnedJob::new(10, 20, 0, 1);
    needs_memory.memory_bytes_min = 4 << 30;
    let mut needs_cores = OwnedJob::new(11, 20, 0, 2);
    needs_cores.cores_min = 4;
    let mut needs_arm = OwnedJob::new(12, 20, 0, 3);
    needs_arm.arch = Some("aarch64");
    let mut needs_mac = OwnedJob::new(13, 20, 0, 4);
    needs_mac.os = Some("macos");
    let mut needs_eu_gpu = OwnedJob::new(14, 20, 0, 5);
    needs_eu_gpu.labels = labels(&[("gpu", "yes"), ("region", "eu")]);
    let mut needs_us = OwnedJob::new(15, 20, 0, 6);
    needs_us.labels = labels(&[("region", "us")]);
    let mut large_module = OwnedJob::new(16, 20, 0, 7);
    large_module.module_bytes = (16 << 20) + 1;

    for (job, allowed_nodes) in [
        (needs_memory, vec![2, 3]),
        (needs_cores, vec![2, 3]),
        (needs_arm, vec![2]),
        (needs_mac, vec![2]),
        (needs_eu_gpu, vec![3]),
        (needs_us, vec![]),
        (large_module, vec![2, 3]),
    ] {
        let result = run(&nodes, std::slice::from_ref(&job));
        let used: Vec<u64> = result.iter().map(|(node, _, _)| *node).collect();
        assert_eq!(used, allowed_nodes, "job {}", job.job);
    }
}

#[test]
fn never_to_a_node_whose_lease_has_run_out() {
    let mut expiring_now = OwnedNode::idle(1, 4);
    expiring_now.lease_until_ms = NOW_MS;
    let mut expired = OwnedNode::idle(2, 4);
    expired.lease_until_ms = NOW_MS - 1;
    let mut just_alive = OwnedNode::idle(3, 4);
    just_alive.lease_until_ms = NOW_MS + 1;
    let result = run(
        &[expiring_now, expired, just_alive],
        &[OwnedJob::new(10, 12, 0, 1)],
    );
    assert_eq!(result, [(3, 10, 4)]);
}

#[test]
fn now_matters_only_through_leases() {
    let mut nodes = vec![OwnedNode::idle(1, 3), OwnedNode::busy(2, 2, 4, 2)];
    nodes[1].lease_until_ms = NOW_MS + 500;
    let jobs = [OwnedJob::new(10, 4, 1, 1), OwnedJob::new(11, 4, 0, 2)];
    let early = run_at(&nodes, &jobs, 0);
    assert_eq!(early, run_at(&nodes, &jobs, NOW_MS + 499));
    let late = run_at(&nodes, &jobs, NOW_MS + 500);
    assert!(late.iter().all(|(node, _, _)| *node == 1));
}

#[test]
fn one_entry_per_pair_sorted_by_node_then_job() {
    let nodes = [OwnedNode::idle(9, 6), OwnedNode::idle(3, 6)];
    let jobs = [OwnedJob::new(20, 5, 0, 1), OwnedJob::new(7, 6, 0, 2)];
    let result = run(&nodes, &jobs);
    // Job 20 goes first and takes node 3 on the key tie; they alternate, node by node, until
    // job 7's sixth task finds both nodes at 5/6 and takes node 3 on the key tie.
    assert_eq!(result, [(3, 7, 1), (3, 20, 5), (9, 7, 5)]);
}

#[test]
fn two_jobs_share_a_pool_evenly() {
    let nodes = [OwnedNode::idle(1, 4), OwnedNode::idle(2, 4)];
    let jobs = [OwnedJob::new(10, 100, 0, 1), OwnedJob::new(11, 100, 0, 2)];
    let result = run(&nodes, &jobs);
    assert_eq!(per_job(&result, &[10, 11]), [4, 4]);
}

#[test]
fn fewest_running_goes_first_until_they_even_out() {
    let nodes = [OwnedNode::idle(1, 10)];
    // Job 10 already runs 6 elsewhere; job 11 catches up first, then they alternate.
    let jobs = [OwnedJob::new(10, 100, 6, 1), OwnedJob::new(11, 100, 0, 2)];
    let result = run(&nodes, &jobs);
    assert_eq!(per_job(&result, &[10, 11]), [2, 8]);
}

#[test]
fn ties_go_to_the_earlier_submission_not_the_lower_key() {
    let nodes = [OwnedNode::idle(1, 3)];
    let jobs = [
        OwnedJob::new(1, 10, 0, 30),
        OwnedJob::new(2, 10, 0, 10),
        OwnedJob::new(3, 10, 0, 20),
    ];
    assert_eq!(run(&nodes, &jobs[..]), [(1, 1, 1), (1, 2, 1), (1, 3, 1)]);
    let two_slots = [OwnedNode::idle(1, 2)];
    assert_eq!(run(&two_slots, &jobs[..]), [(1, 2, 1), (1, 3, 1)]);
}

#[test]
fn an_early_job_is_not_starved_by_a_flood_of_later_ones() {
    let nodes = [OwnedNode::idle(1, 8), OwnedNode::idle(2, 8)];
    let mut jobs = vec![OwnedJob::new(0, 1000, 0, 0)];
    jobs.extend((1..=50).map(|job| OwnedJob::new(job, 1, 0, job)));
    let result = run(&nodes, &jobs);
    // 16 slots, 51 jobs at 0 running: the earliest 16 submissions get one each.
    let given = per_job(&result, &(0..=50).collect::<Vec<_>>());
    assert_eq!(given[0], 1);
    assert_eq!(given.iter().sum::<u32>(), 16);
    assert!(given[..16].iter().all(|&count| count == 1));
}

#[test]
fn a_flood_of_later_jobs_is_not_starved_by_an_early_one() {
    let nodes = [OwnedNode::idle(1, 16), OwnedNode::idle(2, 16)];
    let mut jobs = vec![OwnedJob::new(0, 1000, 0, 0)];
    jobs.extend((1..=4).map(|job| OwnedJob::new(job, 100, 0, job)));
    let result = run(&nodes, &jobs);
    // 32 slots over 5 equal jobs: 7 each, and the two earliest get the 2 left over.
    assert_eq!(per_job(&result, &[0, 1, 2, 3, 4]), [7, 7, 6, 6, 6]);
}

#[test]
fn a_job_that_fits_no_free_node_is_skipped() {
    let mut gpu = OwnedNode::busy(1, 1, 4, 3);
    gpu.labels = labels(&[("gpu", "yes")]);
    let plain = OwnedNode::idle(2, 4);
    let mut needs_gpu = OwnedJob::new(10, 50, 0, 1);
    needs_gpu.labels = labels(&[("gpu", "yes")]);
    let any = OwnedJob::new(11, 50, 0, 2);
    let result = run(&[gpu, plain], &[needs_gpu, any]);
    // The gpu job is first in line but fits only node 1, which has one slot; the rest of the
    // pool goes to the later job rather than idling.
    assert_eq!(result, [(1, 10, 1), (2, 11, 4)]);
}

#[test]
fn a_few_tasks_spread_across_an_idle_pool() {
    let nodes: Vec<OwnedNode> = (1..=4).map(|node| OwnedNode::idle(node, 8)).collect();
    let result = run(&nodes, &[OwnedJob::new(10, 4, 0, 1)]);
    assert_eq!(per_node(&result, &[1, 2, 3, 4]), [1, 1, 1, 1]);
}

#[test]
fn lower_load_goes_first_compared_as_fractions() {
    // Node 1 is 1/2 loaded, node 2 is 1/4: node 2 takes slots until it reaches 2/4.
    let nodes = [OwnedNode::busy(1, 1, 2, 1), OwnedNode::busy(2, 3, 4, 1)];
    assert_eq!(run(&nodes, &[OwnedJob::new(10, 1, 0, 1)]), [(2, 10, 1)]);
    // At 2/4 and 1/2 the loads tie; node 2 has more free slots left.
    assert_eq!(run(&nodes, &[OwnedJob::new(10, 2, 0, 1)]), [(2, 10, 2)]);
    assert_eq!(
        run(&nodes, &[OwnedJob::new(10, 3, 0, 1)]),
        [(1, 10, 1), (2, 10, 2)]
    );
}

#[test]
fn equal_load_prefers_more_free_slots_then_lower_key() {
    let nodes = [
        OwnedNode::busy(5, 2, 4, 0),
        OwnedNode::busy(6, 3, 4, 0),
        OwnedNode::busy(4, 2, 4, 0),
    ];
    assert_eq!(run(&nodes, &[OwnedJob::new(10, 1, 0, 1)]), [(6, 10, 1)]);
    // Then node 6 is at 1/4; nodes 4 and 5 at 0/4 with 2 free each: the lower key goes first.
    assert_eq!(
        run(&nodes, &[OwnedJob::new(10, 2, 0, 1)]),
        [(4, 10, 1), (6, 10, 1)]
    );
}

#[test]
fn zero_slots_total_counts_as_a_capacity_of_one() {
    let nodes = [OwnedNode::busy(1, 2, 0, 0), OwnedNode::busy(2, 2, 4, 1)];
    // Node 1 is at 0/1, node 2 at 1/4: node 1 first, then 1/1 against 1/4.
    assert_eq!(
        run(&nodes, &[OwnedJob::new(10, 3, 0, 1)]),
        [(1, 10, 1), (2, 10, 2)]
    );
}

#[test]
fn result_ignores_input_order() {
    let mut rng = XorShift::new(7);
    let mut nodes: Vec<OwnedNode> = (1..=5)
        .map(|node| OwnedNode::busy(node, 3, 4, u32::try_from(node % 2).unwrap()))
        .collect();
    let mut jobs: Vec<OwnedJob> = (1..=4)
        .map(|job| OwnedJob::new(job * 10, 4, u32::try_from(job % 3).unwrap(), 5 - job))
        .collect();
    let first = run(&nodes, &jobs);
    for _ in 0..20 {
        rng.shuffle(&mut nodes);
        rng.shuffle(&mut jobs);
        assert_eq!(run(&nodes, &jobs), first);
    }
}

// ---- Properties over generated pools ----

/// Compares every path with the reference on `cases` pools of `shape`, checks every promise,
/// and checks that shuffling the input changes nothing.
fn compare_with_reference(seed: u64, cases: u64, shape: &Shape) {
    let mut rng = XorShift::new(seed);
    for case in 0..cases {
        let mut nodes = random_nodes(&mut rng, shape);
        let mut jobs = random_jobs(&mut rng, shape);
        let now_ms = NOW_MS;
        let result = checked_assign(&nodes, &jobs, now_ms);
        rng.shuffle(&mut nodes);
        rng.shuffle(&mut jobs);
        let shuffled = with_snapshot(&nodes, &jobs, |snapshot| assign(snapshot, now_ms));
        assert_eq!(
            shuffled, result,
            "seed {seed} case {case}: input order changed the result"
        );
    }
}

#[test]
fn matches_reference_on_small_pools() {
    compare_with_reference(1, 3000, &Shape::SMALL);
}

#[test]
fn matches_reference_on_lone_nodes() {
    let shape = Shape {
        nodes_max: 1,
        jobs_max: 12,
        slots_free_max: 40,
        ..Shape::SMALL
    };
    compare_with_reference(2, 1500, &shape);
}

#[test]
fn matches_reference_under_heavy_demand() {
    // Long turns over uneven capacities: the water-filling path with its leftovers.
    let shape = Shape {
        nodes_max: 8,
        jobs_max: 3,
        slots_total_max: 9,
        slots_free_max: 25,
        node_running_max: 20,
        pending_max: 120,
        job_running_max: 40,
        requirements_one_in: 3,
    };
    compare_with_reference(3, 800, &shape);
}

#[test]
fn matches_reference_on_medium_pools() {
    let shape = Shape {
        nodes_max: 30,
        jobs_max: 10,
        slots_total_max: 8,
        slots_free_max: 8,
        node_running_max: 10,
        pending_max: 30,
        job_running_max: 10,
        requirements_one_in: 2,
    };
    compare_with_reference(4, 120, &shape);
}

#[test]
fn matches_reference_with_one_node_and_a_thousand_jobs() {
    let node = OwnedNode::busy(1, 64, 64, 0);
    let jobs: Vec<OwnedJob> = (0..1000)
        .map(|job| OwnedJob::new(job, 1 + u32::try_from(job % 5).unwrap(), 0, 1000 - job))
        .collect();
    let result = checked_assign(&[node], &jobs, NOW_MS);
    assert_eq!(result.len(), 64, "64 jobs get one slot each");
    // Equal running counts: the 64 latest keys are the earliest submissions.
    assert!(
        result
            .iter()
            .all(|assignment| assignment.job >= 936 && assignment.count == 1)
    );
}

// ---- Large pools: correctness only ----

fn ten_thousand_nodes() -> Vec<OwnedNode> {
    let mut rng = XorShift::new(5);
    (0..10_000)
        .map(|node| {
            let slots_total = rng.pick(&[1, 2, 4, 8, 16]);
            let running = rng.below_u32(slots_total + 1);
            let mut offer = OwnedNode::busy(node, slots_total - running, slots_total, running);
            offer.cores = rng.pick(&[2, 4, 8]);
            if rng.one_in(2) {
                offer.labels = labels(&[("region", rng.pick(&["eu", "us"]))]);
            }
            if rng.one_in(50) {
                offer.lease_until_ms = NOW_MS;
            }
            offer
        })
        .collect()
}

#[test]
fn ten_thousand_nodes_and_three_jobs() {
    let nodes = ten_thousand_nodes();
    let mut eu = OwnedJob::new(1, 20_000, 100, 1);
    eu.labels = labels(&[("region", "eu")]);
    let mut big = OwnedJob::new(2, 15_000, 0, 2);
    big.cores_min = 8;
    let any = OwnedJob::new(3, 12_000, 50, 3);
    let jobs = [eu, big, any];
    // Water-filling every one-slot turn over 10,000 nodes would be slow by design; the small
    // pools show that path agrees.
    for tuning in LARGE_POOL_TUNINGS {
        let result = with_snapshot(&nodes, &jobs, |snapshot| {
            let result = assign_tuned(snapshot, NOW_MS, tuning);
            check_promises(snapshot, NOW_MS, &result);
            result
        });
        assert!(!result.is_empty());
        assert_eq!(
            result,
            with_snapshot(&nodes, &jobs, |snapshot| assign(snapshot, NOW_MS)),
            "{tuning:?}"
        );
    }
}

#[test]
fn ten_thousand_nodes_and_one_job_with_a_million_pending() {
    let nodes = ten_thousand_nodes();
    let jobs = [OwnedJob::new(1, 1_000_000, 0, 1)];
    let result = with_snapshot(&nodes, &jobs, |snapshot| {
        let result = assign(snapshot, NOW_MS);
        check_promises(snapshot, NOW_MS, &result);
        result
    });
    // More pending than free slots: every live node is filled exactly.
    let live = nodes
        .iter()
        .filter(|node| node.lease_until_ms > NOW_MS && node.slots_free > 0);
    assert_eq!(result.len(), live.clone().count());
    for (assignment, node) in result.iter().zip(live) {
        assert_eq!(
            (assignment.node, assignment.count),
            (node.node, node.slots_free)
        );
    }
}

#[test]
fn ten_thousand_nodes_and_one_job_with_fewer_tasks_than_slots() {
    let nodes = ten_thousand_nodes();
    let jobs = [OwnedJob::new(1, 12_345, 0, 1)];
    // One job means one turn, so even forced water-filling is a single pass.
    for tuning in TUNINGS {
        let result = with_snapshot(&nodes, &jobs, |snapshot| {
            let result = assign_tuned(snapshot, NOW_MS, tuning);
            check_promises(snapshot, NOW_MS, &result);
            result
        });
        let placed: u32 = result.iter().map(|assignment| assignment.count).sum();
        assert_eq!(placed, 12_345, "{tuning:?}");
    }
}

/// Replicas kept apart, over every pool of a small universe: three nodes, each of owner 0 or 1,
/// network 0 or 1, and none or one free slot; a job with none or one task pending; and a
/// replica kept away from every subset of the nodes, the owners and the networks. Every path
/// agrees with the reference and keeps every promise (work conserving included), and no replica
/// goes to a node it must keep away from.
#[test]
fn replicas_keep_apart_in_every_small_pool() {
    let mut pools = 0;
    for layout in 0..(1u32 << 9) {
        let bit = |at: u32| u64::from((layout >> at) & 1);
        let nodes: Vec<OwnedNode> = (0..3)
            .map(|i| OwnedNode {
                owner: Some(bit(3 * i)),
                network: Some(bit(3 * i + 1)),
                slots_free: bit(3 * i + 2) as u32,
                ..OwnedNode::idle(u64::from(i), 1)
            })
            .collect();
        for apart in 0..(1u64 << 7) {
            let kept = |from: u64, count: u64| -> Vec<u64> {
                (0..count)
                    .filter(|i| (apart >> (from + i)) & 1 == 1)
                    .collect()
            };
            let mut replica = OwnedJob::new(10, 1, 1, 2);
            replica.excluded_nodes = kept(0, 3);
            replica.excluded_owners = kept(3, 2);
            replica.excluded_networks = kept(5, 2);
            for pending in 0..2 {
                let jobs = [OwnedJob::new(20, pending, 0, 1), replica.clone()];
                for assignment in checked_assign(&nodes, &jobs, NOW_MS) {
                    let node = &nodes[assignment.node as usize];
                    let near = replica.excluded_nodes.contains(&node.node)
                        || replica.excluded_owners.contains(&node.owner.unwrap())
                        || replica.excluded_networks.contains(&node.network.unwrap());
                    assert!(assignment.job != 10 || !near, "{assignment:?} in {nodes:?}");
                }
                pools += 1;
            }
        }
    }
    assert_eq!(pools, 512 * 128 * 2);
}
