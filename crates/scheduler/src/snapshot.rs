//! The scheduler's view of the pool: plain borrowed data the coordinator assembles per call, and
//! the assignments it gets back.
//!
//! Invariants the caller upholds (checked with `debug_assert!` where it is cheap): node keys are
//! unique, job keys are unique, `submitted_seq` is unique per job, and every label list is sorted
//! by key with unique keys.

/// A node that can take work now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeOffer<'a> {
    /// Opaque node key.
    pub node: u64,
    /// How many more attempts it will accept now.
    pub slots_free: u32,
    pub slots_total: u32,
    /// Attempts it runs now.
    pub running: u32,
    pub cores: u32,
    pub memory_bytes: u64,
    /// The largest module it compiles.
    pub module_bytes_max: u64,
    /// Whether it runs WASI 0.2 components.
    pub takes_components: bool,
    /// Whether it is a browser tab, which cannot meter fuel, rather than a native agent.
    pub browser: bool,
    /// The WebAssembly proposals it compiles; `None` when it did not say, taken as all.
    pub wasm_features: Option<&'a [String]>,
    /// For example "x86_64" or "aarch64"; compared exactly, so the caller normalises spelling.
    pub arch: &'a str,
    /// For example "linux", "macos" or "windows"; compared exactly.
    pub os: &'a str,
    /// Owner labels, sorted by key, unique keys.
    pub labels: &'a [(String, String)],
    /// Its lease runs out then unless it heartbeats again.
    pub lease_until_ms: u64,
    /// Opaque key of whoever brought the node; `None` when not known, which no exclusion
    /// matches.
    pub owner: Option<u64>,
    /// Opaque key of the network the node is seen from; `None` when not known, which no
    /// exclusion matches.
    pub network: Option<u64>,
}

/// What a job needs of a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Requirements<'a> {
    pub memory_bytes_min: u64,
    pub cores_min: u32,
    /// The size of the job's module: a node must compile modules this large.
    pub module_bytes: u64,
    /// The job's module is a WASI 0.2 component: a node must run components.
    pub component: bool,
    /// `Some(true)`: only browser nodes; `Some(false)`: only native agents (a job whose fuel
    /// must be metered, or that asks for them); `None`: either.
    pub browser: Option<bool>,
    /// The WebAssembly proposals the job's module uses: a node must compile each.
    pub wasm_features: &'a [String],
    pub arch: Option<&'a str>,
    pub os: Option<&'a str>,
    /// Every one must be present with the same value on the node.
    pub labels: &'a [(String, String)],
    /// Only these nodes, sorted: those a private job's key is wrapped to. `None`: any node.
    pub key_holders: Option<&'a [u64]>,
    /// Nodes the demand must not go to.
    pub excluded: Excluded<'a>,
}

/// Nodes a demand must keep away from: typically those running another replica of its task,
/// and, when the replicas must be independent, every node of their owners and networks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Excluded<'a> {
    pub nodes: &'a [u64],
    pub owners: &'a [u64],
    pub networks: &'a [u64],
}

impl Excluded<'_> {
    /// Whether `node` is one of the excluded nodes, or of an excluded owner or network.
    pub fn excludes(&self, node: &NodeOffer<'_>) -> bool {
        self.nodes.contains(&node.node)
            || node.owner.is_some_and(|owner| self.owners.contains(&owner))
            || node
                .network
                .is_some_and(|network| self.networks.contains(&network))
    }
}

/// A job with tasks waiting to be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobDemand<'a> {
    /// Opaque job key.
    pub job: u64,
    /// Tasks waiting for a node.
    pub pending: u32,
    /// Attempts of this job running now, anywhere.
    pub running: u32,
    /// Lower means submitted earlier; unique per job.
    pub submitted_seq: u64,
    pub requirements: Requirements<'a>,
}

/// The pool as one call of [`assign`](crate::assign()) sees it.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    pub nodes: &'a [NodeOffer<'a>],
    pub jobs: &'a [JobDemand<'a>],
}

/// Start `count` tasks of `job` on `node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Assignment {
    pub node: u64,
    pub job: u64,
    pub count: u32,
}
