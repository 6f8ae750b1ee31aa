//! How a pool checks results: the trust it starts with, what a job may ask for beyond it, how
//! each task's result was verified and by whom, and where each node and owner stands.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::NodeId;

/// How far a pool believes its nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    /// The nodes are the owner's own: one attempt per task, results taken as reported.
    #[default]
    Family,
    /// Anyone may lend a machine: results are delivered only once verified.
    Public,
}

impl Trust {
    pub fn as_str(&self) -> &'static str {
        match self {
            Trust::Family => "family",
            Trust::Public => "public",
        }
    }
}

/// How a job's results are checked. A public pool checks every job at least `adaptive`; a job
/// may ask for more than its pool's default, never for less.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerifyMode {
    /// Results of nodes on probation run again elsewhere; a trusted node's are audited at the
    /// pool's rate and otherwise held until a later audit of that node passes.
    Adaptive,
    /// Every result runs on nodes of distinct owners until a quorum agrees.
    Replicate,
}

/// What check a task's result passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerifiedBy {
    /// Replicas on nodes of distinct owners agreed.
    Replicas,
    /// Its node was on probation, and a node of another owner got the same result.
    Probation,
    /// Its trusted node was audited on this task: another owner's node got the same result.
    Audit,
    /// Its trusted node passed an audit on a later task.
    LaterAudit,
}

impl VerifiedBy {
    pub fn as_str(&self) -> &'static str {
        match self {
            VerifiedBy::Replicas => "replicas",
            VerifiedBy::Probation => "probation",
            VerifiedBy::Audit => "audit",
            VerifiedBy::LaterAudit => "later audit",
        }
    }
}

/// How an ended task's result was verified, and by whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Verification {
    pub by: VerifiedBy,
    /// The nodes whose results agreed, the one that gave the delivered result first.
    pub nodes: Vec<NodeId>,
}

/// Where a node identity stands in a pool that verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// New: every result it gives runs again on another owner's node.
    Probation,
    Trusted,
    /// Caught disagreeing with a quorum: out of the pool, with its join token.
    Banned,
}

impl Standing {
    pub fn as_str(&self) -> &'static str {
        match self {
            Standing::Probation => "probation",
            Standing::Trusted => "trusted",
            Standing::Banned => "banned",
        }
    }
}

/// A node's or an owner's record of verified work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct Record {
    /// Results a check covered and found right.
    pub verified: u64,
    pub audits_passed: u64,
    /// Results that disagreed with a quorum.
    pub mismatches: u64,
    /// Results held until a later audit of the node passes.
    pub held: u32,
}

/// The standing of a node in a pool that verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeStanding {
    pub standing: Standing,
    pub record: Record,
}

/// Everyone who brought nodes, as a pool that verifies sees them: one per join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OwnerView {
    /// The first hex digits of the owner's key (its join token's hash).
    pub owner: String,
    /// Its node identities the pool has a record of, banned ones included.
    pub nodes: u32,
    pub standing: Standing,
    pub record: Record,
}

/// What a pool does to check results, for `status` and the web app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolTrust {
    pub trust: Trust,
    /// Whether replicas of one task are kept off nodes that share an IPv4 /24 or IPv6 /48. A
    /// pool on one machine or one LAN turns this off at start.
    pub networks_apart: bool,
    pub probation_results: u32,
    /// Of a trusted node's results, how many in a million are audited.
    pub audit_per_million: u32,
}
