//! Simulated requesters: while faults are on, each now and then submits a job (checked as the
//! route checks it, then admitted by the pool or refused for its bounds) or cancels one it was
//! told about. A reply lost on the way leaves the job running unknown to its requester, which
//! is fine: the simulation follows every job through the pool's writes.
//!
//! In a public pool a requester needs credit first: it asks the pool's owner, who grants it
//! (again whenever a submission is refused for want of credit, as when a crash lost the
//! grant), and its jobs run in deterministic mode, so their results can be checked.

use std::collections::BTreeMap;

use wire::{JobId, JobSubmission, Limits, NodeId, RequesterId, TaskSpec, VerifyMode};

use super::agent::CALL_TIMEOUT_MS;
use super::net::{Party, Reply, Request};
use super::world::{Event, World};

pub(super) struct Requester {
    pub(super) id: RequesterId,
    pub(super) token: String,
    /// Jobs it was told it submitted.
    pub(super) jobs: Vec<JobId>,
    /// Calls it waits on.
    pub(super) calls: BTreeMap<u64, Asked>,
    /// Whether it believes it has credit (a public pool asks for it).
    pub(super) credited: bool,
}

/// What a requester's call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Asked {
    Submission,
    Cancel(JobId),
    Grant(JobId),
    Removal,
    Credit,
}

impl World {
    pub(super) fn requester_timer(&mut self, requester: usize) {
        if !self.chaos_on {
            return;
        }
        if self.setup.public.is_some() && !self.requesters[requester].credited {
            self.ask_credit(requester);
            let delay_ms = self.dice.between(300, 4_000);
            self.schedule(delay_ms, Event::Requester { requester });
            return;
        }
        match self.dice.below(1_000) {
            0..600 => self.submit(requester),
            600..750 => self.cancel(requester),
            750..765 if requester == 0 => self.remove_node(requester),
            765..800 => self.grant(requester),
            _ => {}
        }
        let delay_ms = self.dice.between(300, 4_000);
        self.schedule(delay_ms, Event::Requester { requester });
    }

    fn requester_call(&mut self, requester: usize, asked: Asked, request: Request) {
        let call = self.next_call();
        self.requesters[requester].calls.insert(call, asked);
        let event = Event::RequesterTimeout { requester, call };
        self.schedule(CALL_TIMEOUT_MS, event);
        self.send_request(Party::Requester(requester), call, request);
    }

    /// Some jobs retry their failed programs, and some stop at the first exit code 1: a checked
    /// job, as every job of a public pool is, takes no failure policy.
    fn failure_policy(&mut self, public: bool) -> Option<Box<wire::OnFailure>> {
        if public || !self.dice.chance(0.3) {
            return None;
        }
        let abort_on = if self.dice.chance(0.3) {
            vec![1]
        } else {
            Vec::new()
        };
        Some(Box::new(wire::OnFailure {
            retries: self.dice.between(1, 3) as u32,
            abort_on,
            ..wire::OnFailure::default()
        }))
    }

    fn submit(&mut self, requester: usize) {
        let tasks = self.dice.between(1, 6);
        let max_attempts = self.dice.between(1, 3) as u32;
        let public = self.setup.public.is_some();
        // Some jobs run two replicas of each task at once, where their attempts allow; a job
        // that verifies runs the replicas its checks need instead.
        let replicas = if self.dice.chance(0.3) && !public {
            max_attempts.min(2)
        } else {
            1
        };
        let mut submission = JobSubmission {
            name: format!("job-{}", self.stats.submissions),
            module: wire::BlobHash::of(b"the simulated module"),
            env: BTreeMap::new(),
            mounts: Vec::new(),
            requirements: Default::default(),
            limits: Limits {
                fuel_max: 1_000_000,
                deadline_ms: self.dice.between(1_000, 20_000),
                output_bytes_max: 4_096,
                output_files_max: 2,
                stdout_bytes_max: 4_096,
                stderr_bytes_max: 1_024,
                ..Limits::default()
            },
            max_attempts,
            replicas,
            // A public pool checks every job, which takes deterministic mode; some ask for
            // every result to be replicated. In a family pool some are deterministic too, which
            // keeps them off the browser tabs among its nodes.
            deterministic: (public || self.dice.chance(0.25))
                .then_some(wire::Deterministic { seed: 1 }),
            verify: (public && self.dice.chance(0.2)).then_some(VerifyMode::Replicate),
            validator: None,
            success_exit_codes: Vec::new(),
            tasks: (0..tasks)
                .map(|index| TaskSpec {
                    args: vec![index.to_string()],
                    ..TaskSpec::default()
                })
                .collect(),
            checkpoint: None,
            on_failure: self.failure_policy(public),
            private: None,
        };
        if self.setup.labels_required && self.dice.chance(0.2) {
            let zone = if self.dice.chance(0.5) { "a" } else { "b" };
            submission
                .requirements
                .labels
                .insert("zone".to_owned(), zone.to_owned());
        }
        // Some family jobs are private: only the agents their key is wrapped to run them, and
        // some of those come and go. (A public pool's checked results would need digests of
        // their plaintext, which simulated nodes have none of.)
        if !public && self.dice.chance(0.15) {
            submission.private = Some(Box::new(self.private_part(&submission.requirements)));
        }
        self.stats.submissions += 1;
        let token = self.requesters[requester].token.clone();
        self.requester_call(
            requester,
            Asked::Submission,
            Request::Submit {
                token,
                submission: Box::new(submission),
            },
        );
    }

    /// A private job's part with the key wrapped to one or two of the agents (never a tab) in
    /// the job's `zone`, if it asks for one; any agent when none is left there.
    fn private_part(&mut self, requirements: &wire::Requirements) -> wire::PrivateJob {
        let zone = requirements.labels.get("zone");
        let wrap = |byte: char| wire::WrappedKey(byte.to_string().repeat(160));
        let native = |agent: &usize| agent % 4 != 3 && !self.agents[*agent].removed;
        let in_zone =
            |agent: &usize| zone.is_none_or(|zone| agent.is_multiple_of(2) == (zone == "a"));
        let mut agents: Vec<usize> = (0..self.agents.len())
            .filter(native)
            .filter(in_zone)
            .collect();
        if agents.is_empty() {
            agents = (0..self.agents.len()).collect();
        }
        let mut keys = BTreeMap::new();
        for _ in 0..self.dice.between(1, 2) {
            let agent = agents[self.dice.below(agents.len())];
            keys.insert(self.agents[agent].node, wrap('c'));
        }
        wire::PrivateJob {
            requester_key: "a".repeat(64),
            requester_wrap: wrap('b'),
            manifest: wire::private::ManifestRef::Blob(wire::BlobHash::of(b"the manifest")),
            keys,
            module_sealed: false,
        }
    }

    /// Once the faults stop, the requesters of private jobs that wait wrap their keys to every
    /// agent, as requesters whose trusted nodes are gone would (`status --why` says so): so the
    /// pool drains even when the owner removed those nodes. Whether every such job was granted
    /// (not while the coordinator is down).
    pub(super) fn grant_to_all(&mut self) -> bool {
        if !self.coord.up {
            return false;
        }
        let agents: Vec<NodeId> = (0..self.agents.len())
            .filter(|agent| agent % 4 != 3)
            .map(|agent| self.agents[agent].node)
            .collect();
        let wrap = wire::WrappedKey("c".repeat(wire::private::WRAPPED_KEY_HEX_DIGITS));
        for (job, requester) in self.coord.pool.open_private_jobs() {
            let grant = wire::KeyGrant {
                keys: agents.iter().map(|node| (*node, wrap.clone())).collect(),
            };
            let (granted, _) = self.apply(crate::pool::GrantKeys {
                job,
                requester,
                grant,
            });
            granted.expect("an open private job takes its requester's grant");
        }
        true
    }

    /// Wraps a job's key to one more agent; a job in the clear is refused, as it should be.
    fn grant(&mut self, requester: usize) {
        let jobs = &self.requesters[requester].jobs;
        if jobs.is_empty() {
            return;
        }
        let job = jobs[self.dice.below(jobs.len())];
        let node = self.agents[self.dice.below(self.agents.len())].node;
        let token = self.requesters[requester].token.clone();
        self.requester_call(
            requester,
            Asked::Grant(job),
            Request::GrantKeys { token, job, node },
        );
    }

    fn cancel(&mut self, requester: usize) {
        let jobs = &self.requesters[requester].jobs;
        if jobs.is_empty() {
            return;
        }
        let job = jobs[self.dice.below(jobs.len())];
        let token = self.requesters[requester].token.clone();
        self.requester_call(
            requester,
            Asked::Cancel(job),
            Request::Cancel { token, job },
        );
    }

    /// Asks the pool's owner for credit (the owner's token is the first requester's), unless
    /// it asked already.
    fn ask_credit(&mut self, requester: usize) {
        let asked = &self.requesters[requester].calls;
        if asked.values().any(|asked| *asked == Asked::Credit) {
            return;
        }
        let credits = self.setup.public.as_ref().map_or(1, |p| p.grant_credits);
        let request = Request::GrantCredits {
            token: self.requesters[0].token.clone(),
            requester: self.requesters[requester].id,
            credits,
        };
        self.requester_call(requester, Asked::Credit, request);
    }

    /// The owner removes a node, while enough others remain for the work to finish: in a
    /// public pool, three honest owners to agree on every result.
    fn remove_node(&mut self, requester: usize) {
        let staying: Vec<usize> = (0..self.agents.len())
            .filter(|agent| !self.agents[*agent].removed)
            .collect();
        let honest = staying
            .iter()
            .filter(|agent| self.setup.cheat(**agent).is_none())
            .count();
        let public = self.setup.public.is_some();
        if self.setup.labels_required || staying.len() <= 2 || (public && honest <= 3) {
            return;
        }
        let agent = staying[self.dice.below(staying.len())];
        self.agents[agent].removed = true;
        let node = self.agents[agent].node;
        let token = self.requesters[requester].token.clone();
        self.requester_call(
            requester,
            Asked::Removal,
            Request::RemoveNode { token, node },
        );
    }

    pub(super) fn requester_reply(&mut self, requester: usize, call: u64, reply: Reply) {
        let Some(asked) = self.requesters[requester].calls.remove(&call) else {
            return;
        };
        match reply {
            Reply::Submitted(submitted) => self.requesters[requester].jobs.push(submitted.job_id),
            Reply::Cancelled(job) => {
                assert_eq!(
                    Asked::Cancel(job),
                    asked,
                    "a cancellation answers for its job"
                );
                self.stats.cancels += 1;
            }
            Reply::KeysGranted(holders) => {
                assert!(matches!(asked, Asked::Grant(_)), "a grant answers a grant");
                assert!(holders >= 1);
                self.stats.keys_granted += 1;
            }
            Reply::Granted(balance) => {
                assert_eq!(asked, Asked::Credit);
                self.stats.grants += 1;
                self.requesters[requester].credited = balance.fuel > 0;
            }
            Reply::Refused(reason) => {
                self.stats.refusals += 1;
                if asked == Asked::Submission && reason.contains("credits") {
                    // A crash lost the grant: it asks again.
                    assert!(self.setup.public.is_some(), "{reason}");
                    self.requesters[requester].credited = false;
                }
                self.trace.record(self.now_ms(), || {
                    format!("requester {requester} refused: {reason}")
                });
            }
            Reply::Removed(requeued) => {
                self.stats.nodes_removed += 1;
                self.stats.requeued_by_removal += requeued as u64;
            }
            Reply::Unavailable => {}
            other => panic!("requester {requester}: unexpected {other:?}"),
        }
    }

    pub(super) fn requester_timeout(&mut self, requester: usize, call: u64) {
        self.requesters[requester].calls.remove(&call);
    }
}
