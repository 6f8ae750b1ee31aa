//! The messages between the simulated parties and the coordinator, and the network that carries
//! them. Every request and every reply is a message of its own: while faults are on, each may be
//! lost, sent twice, or delayed at random, so messages overtake one another. A reply that
//! arrives for a call its client no longer waits on is dropped, as an HTTP client would.

use std::collections::BTreeMap;

use wire::{
    AttemptId, AttemptReport, BlobHash, HeartbeatRequest, HeartbeatResponse, JobId, JobRuntime,
    JobSubmission, JobSubmitted, LeaseResponse, ReportAck,
};

use super::world::{Event, World};

/// Who sends requests: the coordinator knows an agent's identity (its key) from the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Party {
    Agent(usize),
    Requester(usize),
}

/// A request as a route receives it, after its body was parsed. Session tokens stand in for
/// bearer tokens; the coordinator looks them up in the pool.
#[derive(Debug, Clone)]
pub(super) enum Request {
    Challenge {
        join_hash: String,
    },
    Register {
        join_hash: String,
        nonce: String,
        slots: u32,
        labels: BTreeMap<String, String>,
    },
    Lease {
        token: String,
        slots_free: u32,
        wait_ms: u32,
    },
    Heartbeat {
        token: String,
        request: Box<HeartbeatRequest>,
    },
    Runtime {
        token: String,
        job: JobId,
    },
    Upload {
        token: String,
        attempt: AttemptId,
        hash: BlobHash,
        size_bytes: u64,
    },
    Report {
        token: String,
        reports: Vec<AttemptReport>,
        /// Slots asked for with the reports (`?slots_free=`), granted with the answer.
        slots_free: u32,
    },
    Release {
        token: String,
        attempts: Vec<AttemptId>,
    },
    Submit {
        token: String,
        submission: Box<JobSubmission>,
    },
    Cancel {
        token: String,
        job: JobId,
    },
    /// A requester wraps a private job's key to one more node.
    GrantKeys {
        token: String,
        job: JobId,
        node: wire::NodeId,
    },
    /// The owner removes a node from the pool.
    RemoveNode {
        token: String,
        node: wire::NodeId,
    },
    /// The owner gives a requester credit.
    GrantCredits {
        token: String,
        requester: wire::RequesterId,
        credits: u64,
    },
}

/// A reply, as the client reads it.
#[derive(Debug, Clone)]
pub(super) enum Reply {
    /// The coordinator is down: the connection was refused.
    Unavailable,
    /// 401: the token (or the nonce) is not known.
    Unauthorized,
    /// 409 for a registration: the identity is online from another process.
    Conflict,
    /// 403 for a registration: the owner removed this node.
    Gone,
    /// Any other refusal, with its reason.
    Refused(String),
    Challenge {
        nonce: String,
    },
    Registered {
        token: String,
        heartbeat_ms: u64,
    },
    Lease(LeaseResponse),
    Heartbeat(HeartbeatResponse),
    Runtime(Option<Box<JobRuntime>>),
    Uploaded(Result<(), String>),
    /// The acks, and the attempts granted for the slots the report asked for.
    Reported(Vec<ReportAck>, Option<LeaseResponse>),
    Released(Vec<AttemptId>),
    Submitted(JobSubmitted),
    Cancelled(JobId),
    /// A private job's key is wrapped to this many nodes now.
    KeysGranted(usize),
    /// A node was removed, with how many of its attempts went back to the queue.
    Removed(usize),
    /// Credit was granted: the requester's balance now.
    Granted(wire::Balance),
}

/// How the network treats messages now.
#[derive(Debug, Clone, Copy)]
pub(super) struct Faults {
    pub(super) drop: f64,
    pub(super) duplicate: f64,
    pub(super) delay_max_ms: u64,
}

impl Faults {
    /// A calm network: every message arrives once, soon.
    pub(super) fn none() -> Self {
        Self {
            drop: 0.0,
            duplicate: 0.0,
            delay_max_ms: 5,
        }
    }
}

impl World {
    pub(super) fn send_request(&mut self, from: Party, call: u64, request: Request) {
        self.stats.requests += 1;
        self.trace.record(self.now_ms(), || {
            format!("{from:?} #{call} sends {request:?}")
        });
        self.transmit(Event::AtCoordinator {
            from,
            call,
            request,
        });
    }

    pub(super) fn send_reply(&mut self, to: Party, call: u64, reply: Reply) {
        self.trace.record(self.now_ms(), || {
            format!("coordinator answers {to:?} #{call}: {reply:?}")
        });
        self.transmit(Event::AtParty { to, call, reply });
    }

    /// Puts a message on the wire: lost, once, or twice, each copy with its own delay.
    fn transmit(&mut self, message: Event) {
        let faults = self.faults;
        if self.dice.chance(faults.drop) {
            self.stats.messages_lost += 1;
            self.trace
                .record(self.now_ms(), || "the network loses it".to_owned());
            return;
        }
        let copies = if self.dice.chance(faults.duplicate) {
            self.stats.messages_doubled += 1;
            self.trace
                .record(self.now_ms(), || "the network sends it twice".to_owned());
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay_ms = self.dice.between(0, faults.delay_max_ms);
            self.schedule(delay_ms, message.clone());
        }
    }
}
