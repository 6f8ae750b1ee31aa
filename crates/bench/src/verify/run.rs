//! One seeded run of the model: a pool of node identities, some of them cheating, fed a stream
//! of tasks under one scheme of verification, with what reached the requester counted per task.
//!
//! The run is sequential: each task (and every re-run it causes) is settled before the next one
//! starts. The pool is concurrent, but verification depends only on the order of each node's
//! results and on who checks whom, not on time, so the counts are those of the pool's rules.

use std::collections::VecDeque;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use ::verify::{Claim, Digest, First, Policy, Record, Standing, Tally, Window};

/// How a run checks results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// The verify crate's rules with this policy, applied as the coordinator's pool does.
    Ours(Policy),
    /// Every task on two owners; a disagreement is settled by a third, and the minority banned.
    FixedTwice,
    /// BOINC's adaptive replication: a host is trusted after [`BOINC_TRUSTED_AFTER`] valid
    /// results in a row, and a trusted host's result is replicated with probability 1/count.
    /// An invalid result resets the count; nobody is banned.
    Boinc,
}

/// Valid results in a row after which BOINC's adaptive replication trusts a host.
pub const BOINC_TRUSTED_AFTER: u64 = 10;

/// Fixed replication as the verify crate's tally sees it: every node stays on probation (so
/// every result is replicated), two agreeing owners verify, and a split pair gets one more
/// result: a majority of three, or nothing.
const FIXED_TWICE: Policy = Policy {
    probation_results: u32::MAX,
    audit_per_million: 0,
    quorum: 2,
    quorum_disputed: 2,
    results_max: 3,
    held_max: 1,
};

/// BOINC's validation of a replicated job: two matching results from distinct hosts, with more
/// issued one by one after a mismatch, up to as many results as our policy allows.
const BOINC_QUORUM: Policy = Policy {
    probation_results: 0,
    audit_per_million: 0,
    quorum: 2,
    quorum_disputed: 2,
    results_max: Policy::PUBLIC.results_max,
    held_max: 1,
};

impl Scheme {
    pub(super) fn tally_policy(&self) -> Policy {
        match self {
            Scheme::Ours(policy) => *policy,
            Scheme::FixedTwice => FIXED_TWICE,
            Scheme::Boinc => BOINC_QUORUM,
        }
    }
}

/// The cheating nodes of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cheaters {
    /// Their share of the pool's nodes.
    pub share_percent: f64,
    /// They behave until the pool trusts them (under fixed replication, which trusts nobody,
    /// until they have as many verified results as our probation asks).
    pub once_trusted: bool,
    /// Of the results they may cheat on, the share they do cheat on (1 = every one).
    pub rate: f64,
    /// They all report the same wrong digest for a task, so they can outvote or cover each
    /// other; otherwise each lie is a random digest.
    pub colluding: bool,
    /// A banned one comes back at once as a new identity, on probation again.
    pub rejoin: bool,
}

/// What one run counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Outcome {
    pub tasks: u64,
    /// Tasks whose final result reached the requester.
    pub delivered: u64,
    /// Tasks the requester was ever given a wrong result for, even if a re-run replaced it.
    pub wrong_before_reruns: u64,
    /// Tasks whose final result is wrong.
    pub wrong_after_reruns: u64,
    /// Of those, tasks a node banned later had vouched for: a quorum including it agreed.
    pub wrong_vouched_by_banned: u64,
    /// Every result computed: first ones, replicas, audits, disputes and re-runs.
    pub executions: u64,
    pub inconclusive: u64,
    /// Tasks never settled; the run drains everything, so this is 0 unless the model is wrong.
    pub pending: u64,
    pub bans: u64,
    /// Bans of a node whose result was right and outvoted.
    pub banned_while_right: u64,
    /// For each banned cheater, its results from its first lie to its ban, both included.
    pub results_to_ban: Vec<u64>,
    /// Cheating identities never banned by the end of the run.
    pub cheaters_unbanned: u64,
    /// Cheating identities with a lie in a task that reached a verdict, yet not banned.
    pub caught_unbanned: u64,
    /// Audits of each node's newest held result, once the stream had ended.
    pub end_audits: u64,
}

/// One node identity: what the pool knows of it and what the model knows of its behaviour.
#[derive(Debug, Default)]
struct Identity {
    cheater: bool,
    slot: usize,
    record: Record,
    /// Held results: (task, digest), by the node's result sequence.
    window: Window<(u64, Digest)>,
    /// Results computed: the sequence number of its latest.
    results: u64,
    /// The sequence number of its first lie.
    lied_at: Option<u64>,
    /// Tasks delivered with its digest alone, from its window, which a ban sends to be re-run.
    released: Vec<u64>,
    /// BOINC's count of valid results in a row.
    valid_in_a_row: u64,
    /// One of its lies was in a task that reached a verdict.
    caught: bool,
}

/// A task's state, one byte per task so a million tasks take a megabyte.
const PENDING: u8 = 0;
const RIGHT: u8 = 1;
const WRONG: u8 = 2;
const INCONCLUSIVE: u8 = 3;
const STATE: u8 = 0b11;
/// The requester was once given a wrong result for it.
const EVER_WRONG: u8 = 0b100;

/// One result of the task being settled.
#[derive(Debug, Clone, Copy)]
struct Said {
    node: usize,
    digest: Digest,
    /// Whether the pool trusted its node when it reported it.
    trusted: bool,
}

type Claims = Vec<Said>;

pub(super) struct Run {
    scheme: Scheme,
    cheaters: Option<Cheaters>,
    /// A named algorithm rather than `StdRng`, whose may change: a seed repeats across builds.
    rng: Xoshiro256PlusPlus,
    /// Each slot is one participant; it holds one identity at a time.
    slots: Vec<usize>,
    /// Slots whose identity may be given work.
    active: Vec<usize>,
    ids: Vec<Identity>,
    tasks: Vec<u8>,
    /// Wrong tasks' agreeing identities, to tell later whether a banned node vouched.
    vouchers: Vec<(u64, Vec<usize>)>,
    reruns: VecDeque<u64>,
    outcome: Outcome,
}

/// The digests of the model: the truth of a task, the colluders' shared lie about it, and a
/// random lie. The first byte keeps the three kinds apart.
fn digest(kind: u8, value: u64) -> Digest {
    let mut bytes = [0u8; 32];
    bytes[0] = kind;
    bytes[1..9].copy_from_slice(&value.to_le_bytes());
    Digest(bytes)
}

fn truth(task: u64) -> Digest {
    digest(0, task)
}

impl Run {
    /// A pool of `nodes`, the first of them cheaters, each a fresh identity (or, when `warm`,
    /// one that has done its probation, as in a pool that has been running).
    pub(super) fn new(
        scheme: Scheme,
        cheaters: Option<Cheaters>,
        warm: bool,
        nodes: usize,
        tasks: u64,
        seed: u64,
    ) -> Run {
        let cheating = cheaters.map_or(0, |c| {
            (nodes as f64 * c.share_percent / 100.0).round() as usize
        });
        let ids: Vec<Identity> = (0..nodes)
            .map(|slot| {
                let mut identity = Identity {
                    cheater: slot < cheating,
                    slot,
                    ..Identity::default()
                };
                if warm {
                    identity.record.verified = u64::from(Policy::PUBLIC.probation_results);
                    identity.valid_in_a_row = BOINC_TRUSTED_AFTER;
                }
                identity
            })
            .collect();
        Run {
            scheme,
            cheaters,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            slots: (0..nodes).collect(),
            active: (0..nodes).collect(),
            ids,
            tasks: vec![PENDING; tasks as usize],
            vouchers: Vec::new(),
            reruns: VecDeque::new(),
            outcome: Outcome {
                tasks,
                ..Outcome::default()
            },
        }
    }

    /// Streams every task through, then audits what is still held, and counts.
    pub(super) fn go(mut self) -> Outcome {
        for task in 0..self.outcome.tasks {
            self.submit(task);
            self.rerun();
        }
        self.drain();
        self.count()
    }

    fn rerun(&mut self) {
        while let Some(task) = self.reruns.pop_front() {
            self.submit(task);
        }
    }

    /// A task's first attempt, and what its result calls for.
    fn submit(&mut self, task: u64) {
        let Some(node) = self.pick(&[]) else {
            self.settle(task, INCONCLUSIVE);
            return;
        };
        let (seq, said) = self.compute(node, task);
        let digest = said.digest;
        let claims = vec![said];
        match self.scheme {
            Scheme::Ours(_) | Scheme::FixedTwice => {
                let roll = self.rng.random();
                let identity = &self.ids[node];
                let policy = self.scheme.tally_policy();
                match ::verify::first(&identity.record, identity.window.len(), roll, &policy) {
                    First::Hold => self.ids[node].window.hold(seq, (task, digest)),
                    First::Replicate => self.check(task, claims, None),
                    First::Audit => self.check(task, claims, Some(seq)),
                }
            }
            Scheme::Boinc => {
                let valid = self.ids[node].valid_in_a_row;
                if valid >= BOINC_TRUSTED_AFTER && self.rng.random_range(0..valid) != 0 {
                    // Accepted alone; BOINC's validator has nothing to compare, so it counts.
                    self.deliver(task, digest);
                    self.ids[node].valid_in_a_row += 1;
                } else {
                    self.check(task, claims, None);
                }
            }
        }
    }

    /// Gathers results of `task` on other owners' nodes until they agree or stay split.
    /// `audited` is the sequence number of the first claim's result when it is an audit.
    fn check(&mut self, task: u64, mut claims: Claims, audited: Option<u64>) {
        let policy = self.scheme.tally_policy();
        loop {
            let tallied: Vec<Claim> = claims
                .iter()
                .map(|said| Claim {
                    owner: said.node as u64,
                    makers: Vec::new(),
                    digest: said.digest,
                    trusted: said.trusted,
                })
                .collect();
            match ::verify::tally(&tallied, audited.is_some(), &policy) {
                Tally::Wanting { more } => {
                    for _ in 0..more {
                        let Some(node) = self.pick(&claims) else {
                            self.settle(task, INCONCLUSIVE);
                            return;
                        };
                        let (_, said) = self.compute(node, task);
                        claims.push(said);
                    }
                }
                Tally::Inconclusive => {
                    self.settle(task, INCONCLUSIVE);
                    return;
                }
                Tally::Agreed {
                    digest,
                    agreeing,
                    dissenting,
                } => {
                    self.agreed(task, digest, &claims, &agreeing, audited);
                    self.dissented(task, &claims, &dissenting);
                    return;
                }
            }
        }
    }

    /// A quorum agreed on `digest`: the task is delivered, and the agreeing nodes earn it.
    fn agreed(
        &mut self,
        task: u64,
        digest: Digest,
        claims: &Claims,
        agreeing: &[usize],
        audited: Option<u64>,
    ) {
        self.deliver(task, digest);
        if digest != truth(task) {
            let vouchers = agreeing.iter().map(|&i| claims[i].node).collect();
            self.vouchers.push((task, vouchers));
        }
        for said in claims {
            if said.digest != truth(task) {
                self.ids[said.node].caught = true;
            }
        }
        for &i in agreeing {
            let node = claims[i].node;
            match self.scheme {
                Scheme::Boinc => self.ids[node].valid_in_a_row += 1,
                _ => self.ids[node].record.verified += 1,
            }
        }
        if let Some(seq) = audited
            && agreeing.contains(&0)
        {
            let node = claims[0].node;
            self.ids[node].record.audits_passed += 1;
            self.release(node, seq);
        }
    }

    /// The nodes whose results disagreed with the quorum: banned (BOINC only resets its count).
    fn dissented(&mut self, task: u64, claims: &Claims, dissenting: &[usize]) {
        for &i in dissenting {
            let Said { node, digest, .. } = claims[i];
            match self.scheme {
                Scheme::Boinc => self.ids[node].valid_in_a_row = 0,
                _ => self.ban(node, digest == truth(task)),
            }
        }
    }

    /// An audit of `node`'s result `seq` passed: what it held before is delivered on its word.
    fn release(&mut self, node: usize, seq: u64) {
        for (task, digest) in self.ids[node].window.release_before(seq) {
            self.deliver(task, digest);
            let identity = &mut self.ids[node];
            identity.record.verified += 1;
            identity.released.push(task);
        }
    }

    /// Bans `node`: what it holds and what it alone vouched for run again from scratch, and
    /// its slot comes back as a new identity if it rejoins.
    fn ban(&mut self, node: usize, was_right: bool) {
        let identity = &mut self.ids[node];
        identity.record.banned = true;
        identity.record.mismatches += 1;
        self.outcome.bans += 1;
        if was_right {
            self.outcome.banned_while_right += 1;
        }
        if let Some(lied_at) = identity.lied_at {
            self.outcome
                .results_to_ban
                .push(identity.results - lied_at + 1);
        }
        let held = identity.window.drain();
        let released = std::mem::take(&mut identity.released);
        let (slot, cheater) = (identity.slot, identity.cheater);
        for (task, _) in held {
            self.reruns.push_back(task);
        }
        for task in released {
            // Withdrawn until its re-run settles it again.
            self.tasks[task as usize] &= !STATE;
            self.reruns.push_back(task);
        }
        // An honest owner banned by mistake registers again too.
        let rejoins = !cheater || self.cheaters.is_some_and(|c| c.rejoin);
        if rejoins {
            self.slots[slot] = self.ids.len();
            self.ids.push(Identity {
                cheater,
                slot,
                ..Identity::default()
            });
        } else if let Some(at) = self.active.iter().position(|&s| s == slot) {
            self.active.swap_remove(at);
        }
    }

    /// A node for the next result of a task, uniformly among those that may work, never one
    /// that already gave a result of it (each identity is its own owner). None when too few are
    /// left.
    fn pick(&mut self, taken: &[Said]) -> Option<usize> {
        if self.active.len() <= taken.len() {
            return None;
        }
        loop {
            let slot = self.active[self.rng.random_range(0..self.active.len())];
            let node = self.slots[slot];
            if !taken.iter().any(|said| said.node == node) {
                return Some(node);
            }
        }
    }

    /// `node` computes `task`: its result's sequence number, and the result.
    fn compute(&mut self, node: usize, task: u64) -> (u64, Said) {
        self.outcome.executions += 1;
        let lies = self.lies(node);
        let policy = self.scheme.tally_policy();
        let identity = &mut self.ids[node];
        identity.results += 1;
        let seq = identity.results;
        let trusted = identity.record.standing(&policy) == Standing::Trusted;
        let digest = if !lies {
            truth(task)
        } else {
            identity.lied_at.get_or_insert(seq);
            if self.cheaters.is_some_and(|c| c.colluding) {
                digest(1, task)
            } else {
                digest(2, self.rng.random())
            }
        };
        let said = Said {
            node,
            digest,
            trusted,
        };
        (seq, said)
    }

    /// Whether `node` lies on the result it computes now.
    fn lies(&mut self, node: usize) -> bool {
        let Some(cheaters) = self.cheaters else {
            return false;
        };
        let identity = &self.ids[node];
        if !identity.cheater || (cheaters.once_trusted && !self.trusted(identity)) {
            return false;
        }
        cheaters.rate >= 1.0 || self.rng.random_bool(cheaters.rate.max(0.0))
    }

    /// Whether the pool trusts `identity`, as far as the identity can tell.
    fn trusted(&self, identity: &Identity) -> bool {
        match self.scheme {
            Scheme::Ours(policy) => identity.record.standing(&policy) == Standing::Trusted,
            Scheme::FixedTwice => identity.record.standing(&Policy::PUBLIC) == Standing::Trusted,
            Scheme::Boinc => identity.valid_in_a_row >= BOINC_TRUSTED_AFTER,
        }
    }

    fn deliver(&mut self, task: u64, digest: Digest) {
        if digest == truth(task) {
            self.settle(task, RIGHT);
        } else {
            self.settle(task, WRONG | EVER_WRONG);
        }
    }

    fn settle(&mut self, task: u64, state: u8) {
        let byte = &mut self.tasks[task as usize];
        *byte = (*byte & EVER_WRONG) | state;
    }

    /// The stream has ended: each node's newest held result is audited, which releases or
    /// re-runs everything it holds, until nothing is held (re-runs may be held again).
    fn drain(&mut self) {
        loop {
            let holders: Vec<usize> = self
                .active
                .iter()
                .map(|&slot| self.slots[slot])
                .filter(|&node| !self.ids[node].window.is_empty())
                .collect();
            if holders.is_empty() {
                return;
            }
            for node in holders {
                let Some((seq, &(task, digest))) = self.ids[node].window.newest() else {
                    continue; // banned in this pass, its window re-run
                };
                self.ids[node].window.remove(seq);
                self.outcome.end_audits += 1;
                let said = Said {
                    node,
                    digest,
                    trusted: true,
                };
                self.check(task, vec![said], Some(seq));
                self.rerun();
            }
        }
    }

    fn count(mut self) -> Outcome {
        let mut outcome = std::mem::take(&mut self.outcome);
        for &byte in &self.tasks {
            match byte & STATE {
                RIGHT => outcome.delivered += 1,
                WRONG => {
                    outcome.delivered += 1;
                    outcome.wrong_after_reruns += 1;
                }
                INCONCLUSIVE => outcome.inconclusive += 1,
                _ => outcome.pending += 1,
            }
            if byte & EVER_WRONG != 0 {
                outcome.wrong_before_reruns += 1;
            }
        }
        outcome.wrong_vouched_by_banned = self
            .vouchers
            .iter()
            .filter(|(task, _)| self.tasks[*task as usize] & STATE == WRONG)
            .filter(|(_, nodes)| nodes.iter().any(|&node| self.ids[node].record.banned))
            .count() as u64;
        let lied = self.ids.iter().filter(|id| id.lied_at.is_some());
        outcome.cheaters_unbanned = lied.clone().filter(|id| !id.record.banned).count() as u64;
        outcome.caught_unbanned = self
            .ids
            .iter()
            .filter(|id| id.caught && !id.record.banned)
            .count() as u64;
        outcome
    }
}
