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

fn stage_job(tasks: usize) -> JobSubmission {
    JobSubmission::new(
        "stage",
        BlobHash::of(b"module"),
        (0..tasks)
            .map(|index| TaskSpec {
                args: vec![index.to_string()],
                ..TaskSpec::default()
            })
            .collect(),
    )
}

/// A pipeline of `map` (2 tasks) and `reduce`, which reads map's outputs node to node.
fn map_reduce(h: &mut Harness) -> (PipelineId, JobId) {
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
    let hash = BlobHash::of(bytes);
    let mut report = wire::AttemptReport {
        ran_on: None,
        attempt_id: attempt,
        outcome: Outcome::Succeeded,
        usage: Usage::default(),
        stdout: None,
        stderr: None,
        outputs: vec![OutputFile {
            path: "part-0".to_owned(),
            hash,
            size_bytes: bytes.len() as u64,
        }],
        sealed_digest: None,
    };
    report.usage.fuel_used = 10;
    assert!(h.send(node, report).accepted);
    hash
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
    let held_by = |h: &Harness, node| -> Vec<BlobHash> {
        let peers = h.pool.peers_for(node, &spec, h.now_ms);
        peers.iter().map(|peer| peer.hash).collect()
    };
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
