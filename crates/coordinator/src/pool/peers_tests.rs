//! Intermediates fetched node to node: in a pipeline with `locality = "nodes"`, the maps'
//! nodes are told to keep their outputs, a reduce's grant names the nodes that hold its inputs
//! with tickets only they accept, a node takes first the tasks whose inputs it holds, and a
//! holder is forgotten when its node or its pipeline goes.

use wire::peer::{ticket_holds, ticket_key};
use wire::{InputFile, OutputFile, PipelineId, PipelineSubmission, StageInput, StageSubmission};

use super::*;

const UNBOUNDED: UnfinishedMax = UnfinishedMax {
    pool: u64::MAX / 4,
    per_requester: u64::MAX / 4,
    pool_bytes: u64::MAX / 4,
    per_requester_bytes: u64::MAX / 4,
};

fn serving_node(h: &mut Harness, id: u64) -> NodeId {
    let mut node = new_node(id, 4, &[], "join");
    node.capabilities.peer_address = Some(format!("127.0.0.1:{}", 7000 + id));
    h.pool.register(node, h.now_ms, &mut h.out);
    NodeId(id)
}

/// A stage's job of `tasks` tasks; deterministic, as a public pool verifies by running again.
fn stage_job(tasks: usize) -> JobSubmission {
    let mut job = super::pipelines::submission(tasks);
    job.deterministic = Some(wire::Deterministic { seed: 1 });
    job
}

/// A pipeline of `map` (2 tasks) and `reduce`, which reads map's outputs node to node.
fn map_reduce(h: &mut Harness) -> (PipelineId, JobId) {
    map_reduce_with(h, 0)
}

/// [`map_reduce`], with `copies` of each kept output wanted.
fn map_reduce_with(h: &mut Harness, copies: u32) -> (PipelineId, JobId) {
    let stage = |name: &str, input, tasks| StageSubmission {
        name: name.to_owned(),
        input,
        job: stage_job(tasks),
    };
    let pipeline = PipelineSubmission {
        name: "count".to_owned(),
        stages: vec![
            stage("map", None, 2),
            stage("reduce", Some(StageInput::All("map".to_owned())), 1),
        ],
        locality: wire::Locality::Nodes,
        copies,
    };
    let module = StageModule {
        module_bytes: 1 << 10,
        component_imports: None,
        wasm_features: Vec::new(),
    };
    let (submitted, _) = h.run(SubmitPipeline {
        requester: OWNER,
        submission: pipeline,
        modules: vec![module.clone(), module],
        reusable: Vec::new(),
        unfinished_max: UNBOUNDED,
    });
    let submitted = submitted.unwrap();
    (submitted.pipeline_id, submitted.stages[0].job_id)
}

/// `node` runs one map task, which writes `bytes` as `part-0`.
fn map_on(h: &mut Harness, node: NodeId, bytes: &[u8]) -> BlobHash {
    let lease = h.pool.take_work(node, 1, h.now_ms, &mut h.out);
    assert!(
        lease.jobs[0].hold_outputs,
        "a map a later stage reads keeps its outputs"
    );
    let attempt = lease.attempts[0].attempt_id;
    h.upload(node, attempt, bytes).unwrap();
    assert!(h.send(node, part_report(attempt, bytes)).accepted);
    BlobHash::of(bytes)
}

/// The report of a succeeded `attempt` that wrote `bytes` as `part-0`.
fn part_report(attempt: AttemptId, bytes: &[u8]) -> wire::AttemptReport {
    wire::AttemptReport {
        ran_on: None,
        attempt_id: attempt,
        outcome: Outcome::Succeeded,
        usage: Usage {
            fuel_used: 10,
            ..Usage::default()
        },
        stdout: None,
        stderr: None,
        outputs: vec![OutputFile {
            path: "part-0".to_owned(),
            hash: BlobHash::of(bytes),
            size_bytes: bytes.len() as u64,
        }],
        sealed_digest: None,
    }
}

/// `node` runs one map task, which writes `bytes` as `part-0` and keeps it: no upload.
fn map_kept(h: &mut Harness, node: NodeId, bytes: &[u8]) -> BlobHash {
    let grant = h.take(node, 1).remove(0);
    let report = part_report(grant.attempt_id, bytes);
    assert!(
        h.send(node, report).accepted,
        "a kept output needs no upload"
    );
    BlobHash::of(bytes)
}

/// Nodes one and two serve peers, and each runs one map of [`map_reduce`] and keeps its part.
struct KeptOnTwo {
    one: NodeId,
    two: NodeId,
    pipeline: PipelineId,
    map: JobId,
    first: BlobHash,
    second: BlobHash,
}

fn kept_on_two(h: &mut Harness) -> KeptOnTwo {
    let (one, two) = (serving_node(h, 1), serving_node(h, 2));
    let (pipeline, map) = map_reduce(h);
    let first = map_kept(h, one, b"first part");
    let second = map_kept(h, two, b"second part");
    KeptOnTwo {
        one,
        two,
        pipeline,
        map,
        first,
        second,
    }
}

fn copied(h: &mut Harness, node: NodeId, copied: Vec<BlobHash>) -> wire::HeartbeatResponse {
    let request = HeartbeatRequest {
        copied,
        ..HeartbeatRequest::default()
    };
    h.pool.heartbeat(node, &request, h.now_ms, &mut h.out)
}

/// The inputs of `spec` that a grant to `node` names holders of, now.
fn named_for(h: &Harness, node: NodeId, spec: &TaskSpec) -> Vec<BlobHash> {
    let peers = h.pool.peers_for(node, spec, h.now_ms);
    peers.iter().map(|peer| peer.hash).collect()
}

fn reading(blobs: &[BlobHash]) -> TaskSpec {
    TaskSpec {
        inputs: blobs
            .iter()
            .enumerate()
            .map(|(index, blob)| InputFile {
                name: format!("part-{index}"),
                blob: *blob,
            })
            .collect(),
        ..TaskSpec::default()
    }
}

#[test]
fn a_reduce_is_told_where_its_inputs_are_and_goes_where_they_are() {
    let mut h = Harness::new();
    let (one, two, three) = (
        serving_node(&mut h, 1),
        serving_node(&mut h, 2),
        serving_node(&mut h, 3),
    );
    let (pipeline, _) = map_reduce(&mut h);
    let small = map_on(&mut h, one, b"w1\t1\n");
    let large = map_on(&mut h, two, b"w2\t2\nw3\t3\nw4\t4\n");
    assert!(h.settle().contains(&"BlobsHeld"));

    // The driver makes the reduces from map's outputs; here, one reads each part.
    let (started, _) = h.run(StartStage {
        pipeline,
        stage: 1,
        tasks: vec![reading(&[small]), reading(&[large])],
        reusable: Vec::new(),
        unfinished_max: UNBOUNDED,
    });
    let reduce = started.unwrap();

    // Node two holds the second task's input: it gets that one, not the first in the queue.
    let lease = h.pool.take_work(two, 1, h.now_ms, &mut h.out);
    assert!(!lease.jobs[0].hold_outputs, "nothing reads the last stage");
    let grant = &lease.attempts[0];
    assert_eq!((grant.job_id, grant.task_index), (reduce, 1));
    assert!(grant.peers.is_empty(), "it holds its input itself");

    // Node three holds nothing: it is told where its input is, with a ticket node one takes.
    let grant = h.take(three, 1).remove(0);
    assert_eq!(grant.task_index, 0);
    let [peer] = grant.peers.as_slice() else {
        panic!("one input held elsewhere: {:?}", grant.peers);
    };
    assert_eq!((peer.hash, peer.size_bytes), (small, 5));
    let [holder] = peer.holders.as_slice() else {
        panic!("held by node one alone: {:?}", peer.holders);
    };
    assert_eq!(holder.address, "127.0.0.1:7001");
    let key = ticket_key("token1");
    assert!(ticket_holds(
        &key,
        &small,
        holder.expires_at_ms,
        &holder.ticket,
        h.now_ms
    ));
    let stranger = ticket_key("token3");
    assert!(!ticket_holds(
        &stranger,
        &small,
        holder.expires_at_ms,
        &holder.ticket,
        h.now_ms
    ));
    h.settle();
}

#[test]
fn holders_go_with_their_node_and_their_pipeline() {
    let mut h = Harness::new();
    held_and_forgotten(&mut h);
}

/// Two maps' outputs held, one holder registering again, the pipeline ending.
pub(super) fn held_and_forgotten(h: &mut Harness) {
    let (one, two) = (serving_node(h, 1), serving_node(h, 2));
    let (pipeline, _) = map_reduce(h);
    let first = map_on(h, one, b"first part");
    let second = map_on(h, two, b"second part");
    let spec = reading(&[first, second]);
    let held_by = |h: &Harness, node| named_for(h, node, &spec);
    assert_eq!(held_by(h, NodeId(9)), [first, second]);

    // Node one registers again: what it held may be gone with its old session.
    serving_node(h, 1);
    assert_eq!(held_by(h, NodeId(9)), [second]);
    h.settle();

    // Once the pipeline ends, its intermediates are read no more.
    let (_, kinds) = h.run(StartStage {
        pipeline,
        stage: 1,
        tasks: vec![spec.clone()],
        reusable: Vec::new(),
        unfinished_max: UNBOUNDED,
    });
    assert_eq!(kinds, ["JobSubmitted", "StageStarted"]);
    for grant in h.take(two, 4) {
        h.report(two, grant.attempt_id, Outcome::Succeeded);
    }
    let (_, kinds) = h.run(EndPipeline { pipeline });
    assert_eq!(kinds, ["PipelineEnded"]);
    assert!(held_by(h, NodeId(9)).is_empty());
}

#[test]
fn kept_outputs_are_copied_and_made_again_when_every_copy_is_gone() {
    let mut h = Harness::new();
    kept_lost_and_made_again(&mut h);
}

/// Maps keep their outputs; one is copied; the node that alone held the other goes silent past
/// its lease, and its map runs again before the reduce may start.
pub(super) fn kept_lost_and_made_again(h: &mut Harness) {
    let (one, two, three) = (serving_node(h, 1), serving_node(h, 2), serving_node(h, 3));
    let (pipeline, map) = map_reduce_with(h, 1);
    let first = map_kept(h, one, b"first part");
    assert!(h.settle().contains(&"OutputsKept"));

    // One copy is wanted: node three is asked to make it from node one, and no other node
    // while that order stands.
    let answer = copied(h, three, Vec::new());
    let [order] = answer.copy.as_slice() else {
        panic!("one copy to make: {:?}", answer.copy);
    };
    assert_eq!(
        (order.hash, order.holders[0].address.as_str()),
        (first, "127.0.0.1:7001")
    );
    assert!(copied(h, two, Vec::new()).copy.is_empty());
    copied(h, three, vec![first]);
    assert!(
        copied(h, two, Vec::new()).copy.is_empty(),
        "it has its copy"
    );
    let second = map_kept(h, two, b"second part");
    let (reduce, _) = h.run(StartStage {
        pipeline,
        stage: 1,
        tasks: vec![reading(&[first, second])],
        reusable: Vec::new(),
        unfinished_max: UNBOUNDED,
    });
    let reduce = reduce.unwrap();

    lost_and_made_again(h, map, (one, two, three), second);

    // Now the reduce runs, told where both parts are.
    let grant = h.take(three, 1).remove(0);
    assert_eq!(grant.job_id, reduce);
    let held: Vec<BlobHash> = grant.peers.iter().map(|peer| peer.hash).collect();
    assert_eq!(held, [second], "node three has its copy of the first part");
    h.report(three, grant.attempt_id, Outcome::Succeeded);
    released_at_the_end(h, pipeline, (one, three), [first, second]);
}

/// Node two goes quiet past its lease, before its part `second` was copied: that part is
/// lost, the reduce that reads it waits for it, and the map that made it runs again on node
/// one and makes it again.
fn lost_and_made_again(
    h: &mut Harness,
    map: JobId,
    nodes: (NodeId, NodeId, NodeId),
    second: BlobHash,
) {
    let (one, two, three) = nodes;
    h.now_ms += LEASE_MS * 2;
    copied(h, one, Vec::new());
    copied(h, three, Vec::new());
    let (_, kinds) = h.run(Expire {});
    assert!(kinds.contains(&"HoldersLost"), "{kinds:?}");
    assert_eq!(h.pool.lost_to_remake(8, h.now_ms), [(map, 1)]);
    assert!(
        h.take(one, 1).is_empty(),
        "the reduce waits for its lost input"
    );

    // The map that made it runs again, and makes it again.
    take_back_second_map(h, map, two);
    assert!(h.pool.lost_to_remake(8, h.now_ms).is_empty());
    assert_eq!(map_kept(h, one, b"second part"), second);
}

/// Takes back task 1 of `map`, whose part was lost with `node`, as the recall loop does.
fn take_back_second_map(h: &mut Harness, map: JobId, node: NodeId) {
    let again = store::Recallable {
        job_id: map,
        index: 1,
        spec: TaskSpec {
            args: vec!["1".to_owned()],
            ..TaskSpec::default()
        },
        node,
        fuel: 0,
    };
    let ended = Some(super::recall::stored_end(h, map));
    let (recalled, _) = h.run(Recall {
        job: map,
        tasks: vec![again],
        ended,
    });
    assert_eq!(recalled, Recalled::Tasks(1));
}

/// Once the pipeline ends, its holders may drop what they kept: node three as well the part
/// it fetched for the reduce.
fn released_at_the_end(
    h: &mut Harness,
    pipeline: PipelineId,
    nodes: (NodeId, NodeId),
    parts: [BlobHash; 2],
) {
    let (one, three) = nodes;
    let (_, kinds) = h.run(EndPipeline { pipeline });
    assert_eq!(kinds, ["PipelineEnded"]);
    let mut both = parts.to_vec();
    both.sort_unstable();
    for node in [one, three] {
        let mut released = copied(h, node, Vec::new()).release;
        released.sort_unstable();
        assert_eq!(released, both, "{node}");
    }
    assert!(copied(h, one, Vec::new()).release.is_empty(), "told once");
    h.settle();
}

#[test]
fn a_node_that_lost_what_it_kept_says_so_and_the_maker_runs_again() {
    let mut h = Harness::new();
    dropped_and_made_again(&mut h);
}

/// Node two's disk lost the part it kept, and it says so at its heartbeat: the part is lost,
/// and the map that made it runs again. Node one cannot drop what it does not hold.
pub(super) fn dropped_and_made_again(h: &mut Harness) {
    let KeptOnTwo {
        one,
        two,
        map,
        first,
        second,
        ..
    } = kept_on_two(h);
    h.settle();
    let dropping = |h: &mut Harness, node, dropped: Vec<BlobHash>| {
        let request = HeartbeatRequest {
            dropped,
            ..HeartbeatRequest::default()
        };
        h.pool.heartbeat(node, &request, h.now_ms, &mut h.out);
        h.settle()
    };
    let kinds = dropping(h, one, vec![second, BlobHash::of(b"never made")]);
    assert!(!kinds.contains(&"BlobsDropped"), "{kinds:?}");
    assert!(h.pool.lost_to_remake(8, h.now_ms).is_empty());

    let kinds = dropping(h, two, vec![second]);
    assert!(kinds.contains(&"BlobsDropped"), "{kinds:?}");
    assert_eq!(h.pool.lost_to_remake(8, h.now_ms), [(map, 1)]);
    let named = named_for(h, NodeId(9), &reading(&[first, second]));
    assert_eq!(named, [first], "node two is named for its part no more");
}

#[test]
fn a_lost_part_made_again_by_a_node_that_keeps_nothing_is_read_from_the_coordinator() {
    let mut h = Harness::new();
    made_again_and_uploaded(&mut h);
}

/// Node two, which alone kept the second part, goes quiet past its lease; its map is taken
/// back and node three, which serves no peers, runs it and uploads the part. The part is kept
/// no more: the reduce goes, told to fetch only the first part from a peer.
pub(super) fn made_again_and_uploaded(h: &mut Harness) {
    let KeptOnTwo {
        one,
        two,
        pipeline,
        map,
        first,
        second,
    } = kept_on_two(h);
    let three = NodeId(3);
    h.pool
        .register(new_node(3, 4, &[], "join"), h.now_ms, &mut h.out);
    let (reduce, _) = h.run(StartStage {
        pipeline,
        stage: 1,
        tasks: vec![reading(&[first, second])],
        reusable: Vec::new(),
        unfinished_max: UNBOUNDED,
    });
    let reduce = reduce.unwrap();
    h.now_ms += LEASE_MS * 2;
    for node in [one, three] {
        copied(h, node, Vec::new());
    }
    h.run(Expire {});
    assert_eq!(h.pool.lost_to_remake(8, h.now_ms), [(map, 1)]);
    take_back_second_map(h, map, two);

    let grant = h.take(three, 1).remove(0);
    assert_eq!(grant.job_id, map, "the map made again");
    h.upload(three, grant.attempt_id, b"second part").unwrap();
    h.pool.take_changes();
    assert!(
        h.send(three, part_report(grant.attempt_id, b"second part"))
            .accepted
    );
    let kinds = h.settle();
    assert!(kinds.contains(&"KeptUploaded"), "{kinds:?}");
    assert!(h.pool.take_changes().tasks_queued, "the reduce may go now");
    let grant = h.take(three, 1).remove(0);
    assert_eq!(grant.job_id, reduce);
    let named: Vec<BlobHash> = grant.peers.iter().map(|peer| peer.hash).collect();
    assert_eq!(named, [first], "the second part comes from the coordinator");
}

/// A coordinator that starts again knows what only nodes had, not who has it. For a while it
/// asks the nodes that serve peers to name what they keep: what they name is held again, and
/// only what none named is made again, once the asking is over.
#[test]
fn after_a_start_nodes_name_what_they_keep_and_only_the_unnamed_is_made_again() {
    let mut h = Harness::new();
    let KeptOnTwo {
        one,
        two,
        pipeline,
        map,
        first,
        second,
    } = kept_on_two(&mut h);
    let spec = reading(&[first, second]);
    let (reduce, _) = h.run(StartStage {
        pipeline,
        stage: 1,
        tasks: vec![spec.clone()],
        reusable: Vec::new(),
        unfinished_max: UNBOUNDED,
    });
    reduce.unwrap();
    let row = |hash: BlobHash, task_index: u32, size_bytes: usize| store::KeptRow {
        hash,
        pipeline_id: pipeline,
        job_id: map,
        task_index,
        size_bytes: size_bytes as u64,
        copies: 0,
    };
    let rows = [row(first, 0, 10), row(second, 1, 11)];
    let lease_term_ms = h.pool.lease_term_ms();
    let census_until_ms = h.now_ms + 2 * lease_term_ms;
    h.pool.peers = crate::pool::peers::PeerHolders::load(&rows, h.now_ms, lease_term_ms);
    h.follower.peers = h.pool.peers.clone();
    assert!(h.pool.lost_to_remake(8, h.now_ms).is_empty(), "not yet");
    assert!(
        h.take(one, 1).is_empty(),
        "nothing is placed that reads a part with no holder known"
    );

    let named = |h: &mut Harness, node, kept: Vec<BlobHash>| {
        let request = HeartbeatRequest {
            kept,
            ..HeartbeatRequest::default()
        };
        h.pool.heartbeat(node, &request, h.now_ms, &mut h.out)
    };
    assert!(named(&mut h, one, Vec::new()).name_kept);
    h.pool.take_changes();
    let answer = named(&mut h, one, vec![first, BlobHash::of(b"never made")]);
    assert!(answer.name_kept, "asked while a part has no holder known");
    assert!(
        h.pool.take_changes().tasks_queued,
        "waiting nodes are offered what reads it again"
    );
    h.settle();
    assert_eq!(named_for(&h, NodeId(9), &spec), [first]);

    // Node two says nothing before the asking is over: its part is made again.
    h.now_ms = census_until_ms;
    assert!(!named(&mut h, two, vec![second]).name_kept);
    h.settle();
    assert_eq!(h.pool.lost_to_remake(8, h.now_ms), [(map, 1)]);
}

#[test]
fn in_a_public_pool_outputs_go_to_the_coordinator_and_a_browser_is_not_given_a_kept_input() {
    // A stranger's node could say it keeps what it does not serve.
    let mut public = super::checkpoints::trusting_public();
    let node = serving_node(&mut public, 1);
    let (granted, _) = public.run(GrantCredits {
        requester: OWNER,
        credits: 1_000,
    });
    granted.unwrap();
    map_reduce(&mut public);
    let grant = public.take(node, 1).remove(0);
    let report = part_report(grant.attempt_id, b"never uploaded");
    let ack = public.send(node, report);
    assert!(!ack.accepted);
    assert!(ack.message.unwrap().contains("was not uploaded"));

    // A browser tab cannot reach other nodes: it is not given a task whose input only they
    // have, and a node that can is.
    let mut h = Harness::new();
    let (one, two) = (serving_node(&mut h, 1), serving_node(&mut h, 2));
    let mut tab = new_node(3, 4, &[], "join");
    tab.capabilities.runtime = wire::NodeRuntime::Browser;
    h.pool.register(tab, h.now_ms, &mut h.out);
    let (pipeline, _) = map_reduce(&mut h);
    let first = map_kept(&mut h, one, b"first part");
    let second = map_kept(&mut h, one, b"second part");
    let (reduce, _) = h.run(StartStage {
        pipeline,
        stage: 1,
        tasks: vec![reading(&[first, second])],
        reusable: Vec::new(),
        unfinished_max: UNBOUNDED,
    });
    assert!(h.take(NodeId(3), 1).is_empty(), "the tab waits");
    let grant = h.take(two, 1).remove(0);
    assert_eq!(grant.job_id, reduce.unwrap());
    assert_eq!(grant.peers.len(), 2);
    h.settle();
}
