//! Applying the events of checking results, and the rows they leave in the store: claims,
//! holds in an audit window, verdicts, bans, and the records that outlive a node's sessions.
//! The decisions behind them are `verification`'s.

use verify::Window;
use wire::{JobId, NodeId, Outcome, VerifiedBy};

use super::PoolState;
use super::events::Event;
use super::verification::{Check, Claimed, NodeRecord};

impl PoolState {
    /// Applies the events of checking results.
    pub(super) fn apply_verification_event(&mut self, event: &Event) {
        match event {
            Event::ResultClaimed { .. } => self.add_claim_of(event),
            Event::ResultsCompared {
                job,
                task,
                attempt,
                with,
                equivalent,
            } => self.apply_compared((*job, *task, *attempt, *with), *equivalent),
            Event::ChecksWanted {
                job,
                task,
                wanted,
                by,
            } => {
                self.unhold(*job, *task);
                let job_state = self.jobs.get_mut(job).expect("events name live jobs");
                let check = job_state.tasks[*task as usize]
                    .check
                    .as_deref_mut()
                    .expect("checked tasks have results");
                check.wanted = *wanted;
                check.by.get_or_insert(*by);
                job_state.sync_short(*task);
                self.sync_ready(*job);
            }
            Event::ResultHeld { job, task } => self.hold(*job, *task),
            Event::TaskVerified {
                job,
                task,
                outcome,
                by,
                nodes,
                ..
            } => self.end_verified(*job, *task, outcome, *by, nodes),
            Event::TaskInconclusive { job, task, .. } => {
                self.unhold(*job, *task);
                let job_state = self.jobs.get_mut(job).expect("events name live jobs");
                job_state.set_slot(*task, super::Slot::Ended(wire::TaskState::Failed));
                job_state.bump(&mut self.changes);
                self.sync_ready(*job);
            }
            Event::NodeBanned { node, .. } => self.apply_ban(*node),
            _ => unreachable!("apply_event applies the others"),
        }
    }

    fn add_claim_of(&mut self, event: &Event) {
        let Event::ResultClaimed {
            attempt,
            digest,
            outcome,
            owner,
            makers,
            trusted,
            fuel,
            payee,
            files,
        } = event
        else {
            unreachable!("only claims are added");
        };
        let claim = Claimed {
            attempt: *attempt,
            node: self.attempts[attempt].node,
            owner: *owner,
            makers: makers.clone(),
            network: None,
            digest: *digest,
            // A result of a job with a validator waits for it to say what it is like.
            label: files.is_none().then_some(*digest),
            unlike: Vec::new(),
            files: files.clone(),
            outcome: outcome.clone(),
            seq: 0,
            trusted: *trusted,
            fuel: *fuel,
            payee: *payee,
        };
        self.add_claim(claim);
    }

    fn add_claim(&mut self, mut claim: Claimed) {
        let attempt = self.attempts[&claim.attempt];
        let owner = claim.owner;
        let node = &self.nodes[&attempt.node];
        let (network, join_token_hash) = (node.network, node.join_token_hash.clone());
        let record = self
            .verifying
            .records
            .entry(attempt.node)
            .or_insert_with(|| NodeRecord {
                owner,
                join_token_hash,
                network,
                record: verify::Record::default(),
                window: Window::default(),
                results: 0,
            });
        claim.seq = record.results;
        claim.network = network;
        record.results += 1;
        let job = self
            .jobs
            .get_mut(&attempt.job)
            .expect("attempts belong to jobs");
        let task = &mut job.tasks[attempt.task as usize];
        if task
            .check
            .as_ref()
            .is_none_or(|check| check.claims.is_empty())
        {
            job.checking += 1;
        }
        let check = task.check.get_or_insert_with(|| {
            Box::new(Check {
                claims: Vec::new(),
                wanted: 0,
                by: None,
                held: None,
            })
        });
        check.claims.push(claim);
        // Nothing more runs until the results are judged.
        check.wanted = 0;
        self.changes.comparisons |= super::comparison::label_results(check);
    }

    fn hold(&mut self, job_id: JobId, index: u32) {
        let job = self.jobs.get_mut(&job_id).expect("events name live jobs");
        let check = job.tasks[index as usize]
            .check
            .as_deref_mut()
            .expect("held tasks have results");
        let claim = &check.claims[0];
        check.held = Some((claim.node, claim.seq));
        check.wanted = 0;
        self.verifying
            .records
            .get_mut(&claim.node)
            .expect("claims have records")
            .window
            .hold(claim.seq, (job_id, index));
        job.held += 1;
        job.sync_short(index);
        self.sync_ready(job_id);
    }

    /// Takes a task's result out of its node's window, if it waits there.
    pub(super) fn unhold(&mut self, job_id: JobId, index: u32) {
        let job = self.jobs.get_mut(&job_id).expect("events name live jobs");
        let held = job.tasks[index as usize]
            .check
            .as_deref_mut()
            .and_then(|check| check.held.take());
        if let Some((node, seq)) = held {
            job.held -= 1;
            if let Some(record) = self.verifying.records.get_mut(&node) {
                record.window.remove(seq);
            }
        }
    }

    fn end_verified(
        &mut self,
        job_id: JobId,
        index: u32,
        outcome: &Outcome,
        by: VerifiedBy,
        nodes: &[NodeId],
    ) {
        self.unhold(job_id, index);
        for (i, node) in nodes.iter().enumerate() {
            if let Some(record) = self.verifying.records.get_mut(node) {
                record.record.verified += 1;
                if i == 0 && by == VerifiedBy::Audit {
                    record.record.audits_passed += 1;
                }
            }
        }
        let job = self.jobs.get_mut(&job_id).expect("events name live jobs");
        let node = nodes[0];
        let state = task_state_of(job, outcome);
        job.set_slot(index, super::Slot::Ended(state));
        if state == wire::TaskState::Succeeded {
            *job.node_shares.entry(node).or_default() += 1;
            if let Some(node) = self.nodes.get_mut(&node) {
                node.tasks_succeeded += 1;
            }
        }
        job.bump(&mut self.changes);
        self.sync_ready(job_id);
    }

    /// A banned node: out of the pool for good, its held results back in the queue, and its
    /// results still being checked no longer counted.
    fn apply_ban(&mut self, node_id: NodeId) {
        if self.nodes.contains_key(&node_id) {
            self.forget_node(node_id);
        }
        self.removed_nodes.insert(node_id);
        let record = self
            .verifying
            .records
            .entry(node_id)
            .or_insert_with(|| NodeRecord {
                owner: node_id.0,
                join_token_hash: String::new(),
                network: None,
                record: verify::Record::default(),
                window: Window::default(),
                results: 0,
            });
        record.record.banned = true;
        record.record.mismatches += 1;
        let witness = record.owner;
        let banned = std::collections::BTreeSet::from([node_id]);
        self.changes.recalls = true;
        record.window = Window::default();
        let mut jobs: Vec<JobId> = self.open_jobs.iter().copied().collect();
        jobs.sort_unstable();
        for job_id in jobs {
            let job = self.jobs.get_mut(&job_id).expect("open jobs are live");
            for index in 0..job.tasks.len() as u32 {
                let task = &mut job.tasks[index as usize];
                let Some(check) = task.check.as_deref_mut() else {
                    continue;
                };
                if check.held.is_some_and(|(node, _)| node == node_id) {
                    check.held = None;
                    job.held -= 1;
                }
                let claimed = check.claims.len();
                check
                    .claims
                    .retain(|claim| !claim.rests_on(&banned, witness));
                if claimed > 0 && check.claims.is_empty() {
                    job.checking -= 1;
                }
                // The results it was compared with may have gone: what waited on them takes
                // the next label, or one of its own.
                self.changes.comparisons |= super::comparison::label_results(check);
                // Results never count against a task's attempts, and those taken away do not
                // start to: else the task could want results it has no attempt left for.
                task.attempts -= (claimed - check.claims.len()) as u32;
                if check.claims.is_empty() && check.held.is_none() {
                    task.check = None;
                    job.settle_task(index, None);
                }
            }
            self.sync_ready(job_id);
        }
    }
}

impl PoolState {
    /// The rows of the events of checking results and moving credit.
    pub(super) fn push_verification_writes(&self, event: Event, writes: &mut Vec<store::Write>) {
        use store::Write;
        match event {
            Event::TaskVerified {
                job,
                task,
                attempt,
                outcome,
                by,
                nodes,
                at_ms,
            } => {
                writes.push(self.record_rows(&nodes));
                writes.push(Write::EndTasks(vec![store::TaskVerdict {
                    job_id: job,
                    index: task,
                    state: task_state_of(&self.jobs[&job], &outcome),
                    outcome,
                    result_attempt: Some(attempt),
                    verification: Some(wire::Verification { by, nodes }),
                    at_ms,
                }]));
            }
            Event::TaskInconclusive {
                job,
                task,
                results,
                validator_failed,
                at_ms,
            } => writes.push(Write::EndTasks(vec![store::TaskVerdict {
                job_id: job,
                index: task,
                state: wire::TaskState::Failed,
                outcome: wire::Outcome::Inconclusive {
                    results,
                    validator_failed,
                },
                result_attempt: None,
                verification: None,
                at_ms,
            }])),
            Event::CreditsMoved { transfers } => writes.push(Write::InsertTransfers(transfers)),
            Event::ResultsRecalled {
                job,
                tasks,
                reopened,
                at_ms,
            } => writes.push(Write::RecallTasks(store::TaskRecall {
                job_id: job,
                tasks: tasks.iter().map(|task| (task.index, task.node)).collect(),
                reopen: reopened.is_some(),
                at_ms,
            })),
            Event::NodeBanned { node, at_ms } => {
                writes.push(Write::SetMeta {
                    key: super::trust::removed_node_key(node),
                    value: at_ms.to_string(),
                });
                writes.push(Write::DeleteNode { node_id: node });
                writes.push(self.record_rows(&[node]));
            }
            _ => unreachable!("push_writes passes only these"),
        }
    }
}

/// How a task of `job` ends with a verified result: a result is a guest's success or failure,
/// by the job's exit codes.
pub(super) fn task_state_of(job: &super::Job, outcome: &Outcome) -> wire::TaskState {
    if job.succeeded(outcome) {
        wire::TaskState::Succeeded
    } else {
        wire::TaskState::Failed
    }
}

impl PoolState {
    /// The store's rows of these nodes' records, as they stand.
    pub(super) fn record_rows(&self, nodes: &[NodeId]) -> store::Write {
        let rows = nodes
            .iter()
            .filter_map(|node| {
                let record = self.verifying.records.get(node)?;
                Some(store::RecordRow {
                    node_id: *node,
                    owner: record.owner,
                    join_token_hash: record.join_token_hash.clone(),
                    verified: record.record.verified,
                    audits_passed: record.record.audits_passed,
                    mismatches: record.record.mismatches,
                    banned: record.record.banned,
                })
            })
            .collect();
        store::Write::SetRecords(rows)
    }

    /// Records loaded from the store after a start.
    pub(super) fn restore_records(&mut self, rows: Vec<store::RecordRow>) {
        for row in rows {
            let record = NodeRecord {
                owner: row.owner,
                join_token_hash: row.join_token_hash,
                network: None,
                record: verify::Record {
                    verified: row.verified,
                    audits_passed: row.audits_passed,
                    mismatches: row.mismatches,
                    banned: row.banned,
                },
                window: Window::default(),
                results: 0,
            };
            self.verifying.records.insert(row.node_id, record);
        }
    }
}
