//! Results taken back after a ban: a result that only its node's later audit vouched for runs
//! again once that node is banned, opening its job again if it had ended, and the requester is
//! paid back from the pool's account. Stale or foreign input changes nothing.

use store::{EndedJob, JobRow, Recallable};
use wire::{Account, TaskState, VerifiedBy};

use super::verification::{held_then_audited, owned, result, verdicts};
use super::*;

/// The job's row and task specs as submitted.
fn submitted(h: &Harness, job: JobId) -> (JobRow, Vec<TaskSpec>) {
    h.out
        .writes
        .iter()
        .find_map(|write| match write {
            Write::InsertJob { job: row, tasks } if row.id == job => {
                Some(((**row).clone(), tasks.clone()))
            }
            _ => None,
        })
        .expect("the job was submitted")
}

/// What the store hands in: the tasks of `job` whose result `node` alone vouched for, each
/// paid 7.
fn vouched(h: &Harness, job: JobId, node: NodeId) -> Vec<Recallable> {
    let specs = submitted(h, job).1;
    let alone = |v: &Option<wire::Verification>| {
        v.as_ref()
            .is_some_and(|v| v.by == VerifiedBy::LaterAudit && v.nodes == [node])
    };
    verdicts(h)
        .into_iter()
        .filter(|(j, _, _, v)| *j == job && alone(v))
        .map(|(_, index, _, _)| Recallable {
            job_id: job,
            index,
            spec: specs[index as usize].clone(),
            node,
            fuel: 7,
        })
        .collect()
}

/// The ended job as the store has it, every task succeeded, with the version it ended at.
pub(super) fn stored_end(h: &Harness, job: JobId) -> (EndedJob, u64) {
    let (mut row, tasks) = submitted(h, job);
    let status = h.status(job);
    row.state = status.state;
    row.finished_at_ms = status.finished_at_ms;
    let version = h.pool.recall_view(job).unwrap().expect("the job ended");
    let task_states = vec![TaskState::Succeeded; tasks.len()];
    (EndedJob { row, task_states }, version)
}

fn ban(h: &mut Harness, node: NodeId) {
    h.pool.ban(node, h.now_ms, &h.entropy, &mut h.out);
    h.pool.check_invariants();
}

fn recalls_written(h: &Harness) -> Vec<(Vec<(u32, NodeId)>, bool)> {
    let recalls = h.out.writes.iter().filter_map(|write| match write {
        Write::RecallTasks(recall) => Some((recall.tasks.clone(), recall.reopen)),
        _ => None,
    });
    recalls.collect()
}

/// Runs what the pool asks of `nodes` until the job ends, each result `fuel`.
fn run_to_the_end(h: &mut Harness, job: JobId, nodes: &[NodeId], fuel: u64) {
    for _ in 0..20 {
        if h.status(job).state != JobState::Running {
            return;
        }
        for node in nodes {
            for grant in h.take(*node, 3) {
                result(h, *node, grant.attempt_id, fuel);
            }
        }
    }
    panic!("job {job} did not end: {:?}", h.status(job));
}

/// A trusted node's results released by a later audit, its ban, and the first of them taken
/// back: what every kind of event needs of recalls.
pub(super) fn taken_back_after_a_ban(h: &mut Harness) -> Recalled {
    let ([liar, ..], job) = held_then_audited(h, 7);
    let recallable = vouched(h, job, liar);
    ban(h, liar);
    let ended = Some(stored_end(h, job));
    let first = vec![recallable[0].clone()];
    h.run(Recall {
        job,
        tasks: first,
        ended,
    })
    .0
}

#[test]
fn results_that_rested_on_a_banned_node_s_word_run_again_and_their_ended_job_with_them() {
    let mut h = Harness::new();
    let ([liar, b, c], job) = held_then_audited(&mut h, 7);
    let d = owned(&mut h, 14, 14, 3, None);
    assert_eq!(h.status(job).state, JobState::Completed);
    let recallable = vouched(&h, job, liar);
    assert_eq!(recallable.len(), 2, "two results rested on its word alone");
    ban(&mut h, liar);
    let requester = Account::Requester(OWNER);
    let paid_before = h.pool.balance(requester);

    let ended = Some(stored_end(&h, job));
    let first = vec![recallable[0].clone()];
    let (recalled, kinds) = h.run(Recall {
        job,
        tasks: first,
        ended,
    });
    assert_eq!(recalled, Recalled::Tasks(1));
    assert_eq!(kinds, ["ResultsRecalled", "CreditsMoved"]);
    let status = h.status(job);
    assert_eq!(status.state, JobState::Running, "the job runs again");
    assert_eq!((status.tasks.pending, status.tasks.succeeded), (1, 2));
    // The job runs now: the other task is taken back without reading it from the store.
    let second = vec![recallable[1].clone()];
    let (recalled, _) = h.run(Recall {
        job,
        tasks: second,
        ended: None,
    });
    assert_eq!(recalled, Recalled::Tasks(1));
    let status = h.status(job);
    assert_eq!((status.tasks.pending, status.recalled), (2, 2));
    assert_eq!(h.pool.balance(requester), paid_before + 14, "paid back");
    let indexes: Vec<_> = recallable.iter().map(|r| (r.index, liar)).collect();
    assert_eq!(
        recalls_written(&h),
        [(vec![indexes[0]], true), (vec![indexes[1]], false)]
    );

    let (again, kinds) = h.run(Recall {
        job,
        tasks: recallable.clone(),
        ended: None,
    });
    assert_eq!(again, Recalled::Stale, "a result is taken back once");
    assert!(kinds.is_empty());

    run_to_the_end(&mut h, job, &[b, c, d], 7);
    assert_eq!(h.status(job).state, JobState::Completed);
    let last: Vec<_> = verdicts(&h)
        .into_iter()
        .filter(|(j, index, ..)| *j == job && recallable.iter().any(|r| r.index == *index))
        .skip(2)
        .collect();
    assert_eq!(last.len(), 2, "both ended again: {last:?}");
    for (.., verification) in last {
        assert!(!verification.unwrap().nodes.contains(&liar));
    }
    assert_eq!(h.status(job).recalled, 2);
}

#[test]
fn a_recall_that_is_stale_or_names_what_it_may_not_changes_nothing() {
    let mut h = Harness::new();
    let ([liar, ..], job) = held_then_audited(&mut h, 7);
    let recallable = vouched(&h, job, liar);
    let attempt = |h: &mut Harness, ended, tasks: &[Recallable]| {
        let tasks = tasks.to_vec();
        let before = h.pool.balance(Account::Pool);
        let (reply, kinds) = h.run(Recall { job, tasks, ended });
        assert!(kinds.is_empty(), "{kinds:?}");
        assert_eq!(h.pool.balance(Account::Pool), before);
        assert_eq!(h.status(job).state, JobState::Completed);
        reply
    };
    let ended = stored_end(&h, job);
    let not_banned = attempt(&mut h, Some(ended.clone()), &recallable);
    assert_eq!(not_banned, Recalled::Stale, "its node is not banned");
    ban(&mut h, liar);
    let ended = stored_end(&h, job);
    let moved_on = Some((ended.0.clone(), ended.1 - 1));
    assert_eq!(attempt(&mut h, moved_on, &recallable), Recalled::Stale);
    assert_eq!(
        attempt(&mut h, None, &recallable),
        Recalled::Stale,
        "it ended"
    );
    let mut short = ended.clone();
    short.0.task_states.pop();
    assert_eq!(attempt(&mut h, Some(short), &recallable), Recalled::Stale);
    let mut unlike = ended.clone();
    unlike.0.task_states[0] = TaskState::Failed;
    assert_eq!(attempt(&mut h, Some(unlike), &recallable), Recalled::Stale);
    let mut out_of_range = recallable.clone();
    out_of_range[0].index = 99;
    out_of_range.truncate(1);
    let ended = Some(ended);
    assert_eq!(attempt(&mut h, ended, &out_of_range), Recalled::Stale);

    let other = h.job(1, 3);
    h.pool
        .cancel_job(other, OWNER, h.now_ms, &mut h.out)
        .unwrap();
    let (gone, _) = h.run(Recall {
        job: other,
        tasks: recallable.clone(),
        ended: None,
    });
    assert_eq!(gone, Recalled::Gone, "a cancelled job stays cancelled");
    let (gone, _) = h.run(Recall {
        job: JobId(12345),
        tasks: recallable,
        ended: None,
    });
    assert_eq!(gone, Recalled::Gone);
}
