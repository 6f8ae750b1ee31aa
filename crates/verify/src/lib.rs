//! The rules that let a pool believe strangers' machines: what a result is, when results agree,
//! which results must be run again elsewhere, and when a node has earned trust.
//!
//! Pure computation: no clock, no randomness of its own, no I/O. The coordinator's pool applies
//! these rules to the reports it takes, and `crowdcloud bench verify` runs the same functions in
//! a model of millions of tasks, so what the benchmark measures is what the pool does.
//!
//! The policy, in short (BOINC's adaptive replication, hardened against cheaters who behave
//! until they are trusted):
//! - A result is its [`Digest`]: the outcome, exit code, stdout, stderr, every `/output` file
//!   and the fuel used. In deterministic mode an honest node gives the same digest anywhere.
//! - A node on probation (fewer than [`Policy::probation_results`] verified results) has every
//!   result run again on a node of another owner ([`First::Replicate`]).
//! - A trusted node's result is audited at [`Policy::audit_per_million`] ([`First::Audit`]);
//!   otherwise it is held ([`First::Hold`]) and delivered only once a later audit of the same
//!   node passes ([`Window`]). So no result is delivered that no check covers, and a node that
//!   cheats on every result once trusted never gets one delivered.
//! - Results of one task agree once a quorum of distinct owners report one digest
//!   ([`tally`]): two, one of them a trusted node other than the one checked; otherwise, after
//!   a disagreement, and for audits, three. So two colluders cannot outvote an honest node, two
//!   new identities of one ring cannot vouch for each other, and an audit cannot be passed by
//!   one trusted accomplice. A task that stays split past [`Policy::results_max`] is
//!   inconclusive, never accepted. A node whose result disagrees with a quorum is banned.
//! - A result built on checkpoints other owners' nodes saved ([`Claim::makers`]) is theirs as
//!   much as its node's: it counts as one witness for all of them, vouches for nothing, and is
//!   always run again from the start elsewhere. When it disagrees, no one can tell which of
//!   them lied, so it is refused and none of them is banned for it.

mod digest;
mod window;

pub use digest::{Digest, digest_of, is_claim, sealed_digest_of};
pub use window::Window;

use serde::{Deserialize, Serialize};

/// The knobs of verification, with the defaults of a public pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Verified results a new identity needs before its results are taken on trust.
    pub probation_results: u32,
    /// Of a trusted node's results, how many in a million are audited.
    pub audit_per_million: u32,
    /// Agreeing results from distinct owners that verify a task.
    pub quorum: u32,
    /// Agreeing results needed once a task's results disagreed.
    pub quorum_disputed: u32,
    /// Results one task may collect; a task still split then is inconclusive.
    pub results_max: u32,
    /// Results of one node held unaudited; the next one is audited for certain.
    pub held_max: u32,
}

impl Policy {
    /// A public pool's policy: 100 results of probation, 5 % audits.
    pub const PUBLIC: Policy = Policy {
        probation_results: 100,
        audit_per_million: 50_000,
        quorum: 2,
        quorum_disputed: 3,
        results_max: 6,
        held_max: 40,
    };

    /// Checks the knobs make sense together; the message says which to change.
    pub fn check(&self) -> Result<(), String> {
        if self.audit_per_million > MILLION {
            return Err(format!(
                "the audit rate is {} per million; give at most 1000000 (every result)",
                self.audit_per_million
            ));
        }
        if self.quorum < 2 || self.quorum_disputed < self.quorum {
            return Err(
                "a quorum needs at least 2 results, and a disputed one at least as \
                        many as an undisputed one"
                    .to_owned(),
            );
        }
        if self.results_max < self.quorum_disputed || self.results_max > RESULTS_MAX {
            return Err(format!(
                "results per task must lie between the disputed quorum ({}) and {RESULTS_MAX}",
                self.quorum_disputed
            ));
        }
        if self.held_max == 0 {
            return Err("a node must be able to hold at least one result".to_owned());
        }
        Ok(())
    }
}

const MILLION: u32 = 1_000_000;

/// The most results any policy lets one task collect: the bound on replicas per task.
pub const RESULTS_MAX: u32 = 8;

/// What the pool knows of one node identity's honesty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Its results that a check covered and found right.
    pub verified: u64,
    /// Audits of its results that passed.
    pub audits_passed: u64,
    /// Its results that disagreed with a quorum.
    pub mismatches: u64,
    pub banned: bool,
}

/// Where a node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    Probation,
    Trusted,
    Banned,
}

impl Record {
    pub fn standing(&self, policy: &Policy) -> Standing {
        if self.banned {
            Standing::Banned
        } else if self.verified < u64::from(policy.probation_results) {
            Standing::Probation
        } else {
            Standing::Trusted
        }
    }
}

/// What becomes of a task's first result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum First {
    /// Run it again on another owner's node: its node is on probation, or the job asks.
    Replicate,
    /// Run it again elsewhere to check its trusted node; the node cannot tell.
    Audit,
    /// Keep it until a later audit of its node passes.
    Hold,
}

/// What to do with the first result of a task from a node of `record`, holding `held` results
/// already. `roll` is a uniformly random number the caller draws (so a seeded run repeats).
pub fn first(record: &Record, held: usize, roll: u64, policy: &Policy) -> First {
    match record.standing(policy) {
        Standing::Probation | Standing::Banned => First::Replicate,
        Standing::Trusted => {
            let audited = roll % u64::from(MILLION) < u64::from(policy.audit_per_million);
            if audited || held >= policy.held_max as usize {
                First::Audit
            } else {
                First::Hold
            }
        }
    }
}

/// One result of a task, as the tally sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Who brought the node that reported it.
    pub owner: u64,
    /// Who else brought nodes whose checkpoints it resumed from, if it resumed: they are
    /// witnesses of this result as much as its owner is.
    pub makers: Vec<u64>,
    pub digest: Digest,
    /// Whether its node was trusted when it reported it.
    pub trusted: bool,
}

/// Where a task's results stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tally {
    /// A quorum of distinct owners agrees on `digest`: the indices of the claims that agree,
    /// and of those that disagree (their nodes lied).
    Agreed {
        digest: Digest,
        agreeing: Vec<usize>,
        dissenting: Vec<usize>,
    },
    /// No quorum yet: run this many more at once.
    Wanting { more: u32 },
    /// Split past the bound: no result is accepted.
    Inconclusive,
}

/// Counts a task's results; the first claim is the one being checked, and `audit` says it is
/// a trusted node's result under audit. Claims of one owner count once: one owner's nodes are
/// not independent witnesses. A claim built on others' checkpoints counts only when none of its
/// owners has counted yet, and then as one.
///
/// [`Policy::quorum`] agreeing owners verify a result only when one of them, other than the
/// node being checked, is trusted: otherwise two new identities of one ring could vouch for
/// each other's lie. Without such a witness, after a disagreement, and for an audit (whose
/// subject is itself trusted, so a trusted accomplice could pass it), [`Policy::quorum_disputed`]
/// owners must agree.
pub fn tally(claims: &[Claim], audit: bool, policy: &Policy) -> Tally {
    let mut groups: Vec<Group> = Vec::new();
    for (index, claim) in claims.iter().enumerate() {
        let at = match groups.iter().position(|g| g.digest == claim.digest) {
            Some(at) => at,
            None => {
                groups.push(Group::new(claim.digest));
                groups.len() - 1
            }
        };
        groups[at].add(index, claim);
    }
    let strict = groups.len() > 1 || audit;
    let needed = |group: &Group| {
        if strict || !group.vouched {
            policy.quorum_disputed
        } else {
            policy.quorum
        }
    };
    let best = groups.iter().max_by_key(|g| g.witnesses);
    if let Some(group) = best
        && group.witnesses >= needed(group) as usize
    {
        let digest = group.digest;
        let (agreeing, dissenting) = (0..claims.len()).partition(|i| claims[*i].digest == digest);
        return Tally::Agreed {
            digest,
            agreeing,
            dissenting,
        };
    }
    // One step at a time: a witness that turns out trusted may be enough.
    let step = if strict {
        policy.quorum_disputed
    } else {
        policy.quorum
    } as usize;
    let have = best.map_or(0, |g| g.witnesses);
    let more = step.saturating_sub(have).max(1);
    if claims.len() + more > policy.results_max as usize {
        return Tally::Inconclusive;
    }
    Tally::Wanting { more: more as u32 }
}

/// Claims that agree on one digest.
struct Group {
    digest: Digest,
    /// Everyone behind its claims so far.
    owners: Vec<u64>,
    /// Its claims that share no owner with one counted before: independent witnesses.
    witnesses: usize,
    /// Whether a trusted node other than the one being checked (the first claim) is among
    /// them.
    vouched: bool,
}

impl Group {
    fn new(digest: Digest) -> Self {
        Self {
            digest,
            owners: Vec::new(),
            witnesses: 0,
            vouched: false,
        }
    }

    fn add(&mut self, index: usize, claim: &Claim) {
        let behind = || std::iter::once(&claim.owner).chain(&claim.makers);
        if !behind().any(|owner| self.owners.contains(owner)) {
            self.witnesses += 1;
        }
        for owner in behind() {
            if !self.owners.contains(owner) {
                self.owners.push(*owner);
            }
        }
        // Its node vouches for the work of the nodes it resumed from no more than they do.
        self.vouched |= index > 0 && claim.trusted && claim.makers.is_empty();
    }
}

#[cfg(test)]
mod tests;
