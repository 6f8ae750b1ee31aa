//! Why a job's pending tasks are not placed, for `crowdcloud status JOB --why`.
//!
//! Invariants: nodes are judged exactly as `assign` judges them (online means
//! `lease_until_ms > now_ms`; fitting means [`fits`]), and reasons come in a fixed order, so the
//! same input always gives the same sentences. A requirement no online node meets is reported
//! on its own; the combination is blamed only when each requirement alone is met somewhere.

use std::collections::BTreeSet;
use std::fmt;

use crate::fit::{fits, label_value};
use crate::format;
use crate::snapshot::{JobDemand, NodeOffer, Requirements};

/// One reason a job's tasks wait. [`Display`](fmt::Display) gives a lowercase sentence.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The job has no tasks waiting for a node.
    NothingPending,
    /// No node's lease is current.
    NoNodesOnline,
    /// No online node has the cores the job needs.
    TooFewCores { cores_min: u32, cores_most: u32 },
    /// No online node has the memory the job needs.
    TooLittleMemory {
        memory_bytes_min: u64,
        memory_bytes_most: u64,
    },
    /// No online node compiles a module as large as the job's.
    ModuleTooLarge {
        module_bytes: u64,
        module_bytes_most: u64,
    },
    /// No online node runs WASI 0.2 components, and the job's module is one.
    ComponentsNotRun,
    /// No online node is of the kind the job needs: a browser tab, or (for a job whose fuel
    /// must be metered, or that asks for one) a native agent.
    RuntimeUnavailable { browser: bool },
    /// The job is private and none of the nodes its key is wrapped to is online.
    NoKeyHolderOnline { holders: usize },
    /// No online node compiles every WebAssembly proposal the job's module uses; `missing` are
    /// those the node that compiles most of them lacks.
    FeaturesNotCompiled { missing: Vec<String> },
    /// No online node runs the arch the job needs; `archs_online` is sorted and unique.
    ArchUnavailable {
        arch: String,
        archs_online: Vec<String>,
    },
    /// No online node runs the os the job needs; `oses_online` is sorted and unique.
    OsUnavailable {
        os: String,
        oses_online: Vec<String>,
    },
    /// No online node has the label with that value; `values_online` are the values online
    /// nodes give that key, sorted and unique.
    LabelUnavailable {
        key: String,
        value: String,
        values_online: Vec<String>,
    },
    /// Each requirement is met by some online node, but none meets them all.
    NoNodeMeetsAll { nodes_online: usize },
    /// Some online nodes would fit, but each runs another replica of the task or shares an
    /// owner or a network with one.
    KeptApart { nodes_kept_apart: usize },
    /// Some online nodes fit, but none has a free slot.
    FittingNodesBusy { nodes_fitting: usize },
    /// Some online nodes fit and have free slots: the job is only waiting for the next round.
    FittingNodesFree { nodes_fitting_free: usize },
}

/// Why `job`'s pending tasks are not placed on `nodes` at `now_ms`: every requirement no
/// online node meets, or else how the nodes that fit stand. Never empty.
pub fn explain(job: &JobDemand<'_>, nodes: &[NodeOffer<'_>], now_ms: u64) -> Vec<Reason> {
    if job.pending == 0 {
        return vec![Reason::NothingPending];
    }
    let online: Vec<&NodeOffer<'_>> = nodes
        .iter()
        .filter(|node| node.lease_until_ms > now_ms)
        .collect();
    if online.is_empty() {
        return vec![Reason::NoNodesOnline];
    }
    let unmet = unmet_requirements(&job.requirements, &online);
    if !unmet.is_empty() {
        return unmet;
    }
    vec![standing_of_fitting_nodes(&job.requirements, &online)]
}

/// The proposals of `features` that the online node compiling most of them lacks, unless one
/// compiles them all.
fn features_missing(features: &[String], online: &[&NodeOffer<'_>]) -> Option<Vec<String>> {
    let missing_on = |node: &NodeOffer<'_>| -> Vec<String> {
        features
            .iter()
            .filter(|feature| !crate::fit::compiles_all(node, std::slice::from_ref(feature)))
            .cloned()
            .collect()
    };
    let fewest = online
        .iter()
        .map(|node| missing_on(node))
        .min_by_key(Vec::len)?;
    (!fewest.is_empty()).then_some(fewest)
}

/// What the job's module needs of the engine that no online node has: components, proposals.
fn unmet_program_needs(
    requirements: &Requirements<'_>,
    online: &[&NodeOffer<'_>],
    reasons: &mut Vec<Reason>,
) {
    if requirements.component && !online.iter().any(|node| node.takes_components) {
        reasons.push(Reason::ComponentsNotRun);
    }
    if let Some(browser) = requirements.browser
        && !online.iter().any(|node| node.browser == browser)
    {
        reasons.push(Reason::RuntimeUnavailable { browser });
    }
    if let Some(missing) = features_missing(requirements.wasm_features, online) {
        reasons.push(Reason::FeaturesNotCompiled { missing });
    }
    if let Some(holders) = requirements.key_holders
        && !online
            .iter()
            .any(|node| crate::fit::holds_key(node, Some(holders)))
    {
        reasons.push(Reason::NoKeyHolderOnline {
            holders: holders.len(),
        });
    }
}

/// Each requirement that no online node meets, on its own.
fn unmet_requirements(requirements: &Requirements<'_>, online: &[&NodeOffer<'_>]) -> Vec<Reason> {
    let mut reasons = Vec::new();
    let cores_most = online.iter().map(|node| node.cores).max().unwrap_or(0);
    if cores_most < requirements.cores_min {
        reasons.push(Reason::TooFewCores {
            cores_min: requirements.cores_min,
            cores_most,
        });
    }
    let memory_bytes_most = online
        .iter()
        .map(|node| node.memory_bytes)
        .max()
        .unwrap_or(0);
    if memory_bytes_most < requirements.memory_bytes_min {
        reasons.push(Reason::TooLittleMemory {
            memory_bytes_min: requirements.memory_bytes_min,
            memory_bytes_most,
        });
    }
    let module_bytes_most = online
        .iter()
        .map(|node| node.module_bytes_max)
        .max()
        .unwrap_or(0);
    if module_bytes_most < requirements.module_bytes {
        reasons.push(Reason::ModuleTooLarge {
            module_bytes: requirements.module_bytes,
            module_bytes_most,
        });
    }
    unmet_program_needs(requirements, online, &mut reasons);
    if let Some(arch) = requirements.arch
        && !online.iter().any(|node| node.arch == arch)
    {
        reasons.push(Reason::ArchUnavailable {
            arch: arch.to_string(),
            archs_online: sorted_unique(online.iter().map(|node| node.arch)),
        });
    }
    if let Some(os) = requirements.os
        && !online.iter().any(|node| node.os == os)
    {
        reasons.push(Reason::OsUnavailable {
            os: os.to_string(),
            oses_online: sorted_unique(online.iter().map(|node| node.os)),
        });
    }
    for (key, value) in requirements.labels {
        if !online
            .iter()
            .any(|node| label_value(node.labels, key) == Some(value.as_str()))
        {
            reasons.push(Reason::LabelUnavailable {
                key: key.clone(),
                value: value.clone(),
                values_online: sorted_unique(
                    online
                        .iter()
                        .filter_map(|node| label_value(node.labels, key)),
                ),
            });
        }
    }
    reasons
}

/// Every requirement is met somewhere: say whether nodes meet them all, and if so whether
/// they have room.
fn standing_of_fitting_nodes(requirements: &Requirements<'_>, online: &[&NodeOffer<'_>]) -> Reason {
    let fitting = || online.iter().filter(|node| fits(node, requirements));
    let nodes_fitting = fitting().count();
    let nodes_fitting_free = fitting().filter(|node| node.slots_free > 0).count();
    let unexcluded = Requirements {
        excluded: Default::default(),
        ..*requirements
    };
    let nodes_kept_apart = online
        .iter()
        .filter(|node| fits(node, &unexcluded) && !fits(node, requirements))
        .count();
    if nodes_fitting == 0 && nodes_kept_apart > 0 {
        Reason::KeptApart { nodes_kept_apart }
    } else if nodes_fitting == 0 {
        Reason::NoNodeMeetsAll {
            nodes_online: online.len(),
        }
    } else if nodes_fitting_free == 0 {
        Reason::FittingNodesBusy { nodes_fitting }
    } else {
        Reason::FittingNodesFree { nodes_fitting_free }
    }
}

fn sorted_unique<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    let unique: BTreeSet<&str> = values.collect();
    unique.into_iter().map(str::to_string).collect()
}

fn label_unavailable(
    out: &mut fmt::Formatter<'_>,
    key: &str,
    value: &str,
    values_online: &[String],
) -> fmt::Result {
    write!(out, "no node has label {key}={value}")?;
    if !values_online.is_empty() {
        let pairs: Vec<String> = values_online
            .iter()
            .map(|other| format!("{key}={other}"))
            .collect();
        out.write_str(" (nodes have ")?;
        format::list(out, &pairs)?;
        out.write_str(")")?;
    }
    Ok(())
}

fn module_too_large(out: &mut fmt::Formatter<'_>, module_bytes: u64, most: u64) -> fmt::Result {
    let (module, most) = format::distinct_sizes(module_bytes, most);
    write!(
        out,
        "the module is {module} and no online node compiles modules that large (the most is {most})"
    )
}

const COMPONENTS_NOT_RUN: &str = "the module is a WASI 0.2 component and no online node runs \
     components (their agents are older than components)";

fn runtime_unavailable(browser: bool) -> &'static str {
    if browser {
        "the job runs only in browsers and no browser tab lends its device now"
    } else {
        "the job needs a native agent (its fuel must be metered, or it asks for one) and only \
         browser tabs are online"
    }
}

fn no_key_holder_online(out: &mut fmt::Formatter<'_>, holders: usize) -> fmt::Result {
    write!(
        out,
        "the job is private and none of the {} its key is wrapped to is online; grant the key \
         to more nodes with `crowdcloud keys grant`",
        format::count_of(holders as u64, "node", "nodes")
    )
}

fn features_not_compiled(out: &mut fmt::Formatter<'_>, missing: &[String]) -> fmt::Result {
    out.write_str(
        "no online node compiles every WebAssembly proposal the module uses (the closest lacks ",
    )?;
    format::list(out, missing)?;
    out.write_str(")")
}

impl fmt::Display for Reason {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NothingPending => out.write_str("the job has no tasks waiting for a node"),
            Self::NoNodesOnline => out.write_str("no nodes are online"),
            Self::TooFewCores {
                cores_min,
                cores_most,
            } => write!(
                out,
                "no node has {} (the most any node has is {cores_most})",
                format::count_of(u64::from(*cores_min), "core", "cores")
            ),
            Self::TooLittleMemory {
                memory_bytes_min,
                memory_bytes_most,
            } => {
                let (needed, most) = format::distinct_sizes(*memory_bytes_min, *memory_bytes_most);
                write!(out, "no node has {needed} of memory (the most is {most})")
            }
            Self::ModuleTooLarge {
                module_bytes,
                module_bytes_most,
            } => module_too_large(out, *module_bytes, *module_bytes_most),
            Self::FeaturesNotCompiled { missing } => features_not_compiled(out, missing),
            Self::ComponentsNotRun => out.write_str(COMPONENTS_NOT_RUN),
            Self::RuntimeUnavailable { browser } => out.write_str(runtime_unavailable(*browser)),
            Self::NoKeyHolderOnline { holders } => no_key_holder_online(out, *holders),
            Self::ArchUnavailable { arch, archs_online } => {
                write!(out, "no node runs arch {arch} (nodes run: ")?;
                format::list(out, archs_online)?;
                out.write_str(")")
            }
            Self::OsUnavailable { os, oses_online } => {
                write!(out, "no node runs os {os} (nodes run: ")?;
                format::list(out, oses_online)?;
                out.write_str(")")
            }
            Self::LabelUnavailable {
                key,
                value,
                values_online,
            } => label_unavailable(out, key, value, values_online),
            Self::NoNodeMeetsAll { nodes_online } => write!(
                out,
                "no online node meets all the requirements at once, though each is met by \
                 some of the {nodes_online} online nodes"
            ),
            Self::KeptApart { nodes_kept_apart } => write!(
                out,
                "the {nodes_kept_apart} online nodes that fit run another replica of the task, \
                 or share its owner or network; it waits for a node apart from them"
            ),
            Self::FittingNodesBusy { nodes_fitting: 1 } => out.write_str(
                "the only node that fits is busy (0 free slots); tasks start as slots free up",
            ),
            Self::FittingNodesBusy { nodes_fitting } => write!(
                out,
                "all {nodes_fitting} nodes that fit are busy (0 free slots); \
                 tasks start as slots free up"
            ),
            Self::FittingNodesFree {
                nodes_fitting_free: 1,
            } => out.write_str("1 node fits and has free slots; tasks should start within moments"),
            Self::FittingNodesFree { nodes_fitting_free } => write!(
                out,
                "{nodes_fitting_free} nodes fit and have free slots; \
                 tasks should start within moments"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    //! One test per `Reason`: when it is given, and the exact sentence it prints.

    use super::*;

    fn node(key: u64, slots_free: u32, cores: u32, memory_bytes: u64) -> NodeOffer<'static> {
        NodeOffer {
            node: key,
            slots_free,
            slots_total: 4,
            running: 4 - slots_free.min(4),
            cores,
            memory_bytes,
            module_bytes_max: 64 << 20,
            takes_components: false,
            browser: false,
            wasm_features: None,
            arch: "x86_64",
            os: "linux",
            labels: &[],
            lease_until_ms: 1_000,
            owner: None,
            network: None,
        }
    }

    fn job(requirements: Requirements<'_>) -> JobDemand<'_> {
        JobDemand {
            job: 7,
            pending: 3,
            running: 0,
            submitted_seq: 1,
            requirements,
        }
    }

    fn sentences(reasons: &[Reason]) -> Vec<String> {
        reasons.iter().map(ToString::to_string).collect()
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn nothing_pending() {
        let mut waiting = job(Requirements::default());
        waiting.pending = 0;
        let reasons = explain(&waiting, &[node(1, 1, 4, 1 << 30)], 0);
        assert_eq!(reasons, vec![Reason::NothingPending]);
        assert_eq!(
            sentences(&reasons),
            ["the job has no tasks waiting for a node"]
        );
    }

    #[test]
    fn no_nodes_online_when_none_or_all_leases_ran_out() {
        let waiting = job(Requirements::default());
        assert_eq!(explain(&waiting, &[], 0), vec![Reason::NoNodesOnline]);
        let expired = node(1, 4, 4, 1 << 30);
        let reasons = explain(&waiting, &[expired], expired.lease_until_ms);
        assert_eq!(sentences(&reasons), ["no nodes are online"]);
    }

    #[test]
    fn too_few_cores() {
        let waiting = job(Requirements {
            cores_min: 8,
            ..Requirements::default()
        });
        let reasons = explain(
            &waiting,
            &[node(1, 1, 4, 1 << 30), node(2, 1, 2, 1 << 30)],
            0,
        );
        assert_eq!(
            reasons,
            vec![Reason::TooFewCores {
                cores_min: 8,
                cores_most: 4
            }]
        );
        assert_eq!(
            sentences(&reasons),
            ["no node has 8 cores (the most any node has is 4)"]
        );
    }

    #[test]
    fn too_little_memory() {
        let waiting = job(Requirements {
            memory_bytes_min: 16 << 30,
            ..Requirements::default()
        });
        let reasons = explain(&waiting, &[node(1, 1, 4, 8_375_186_227)], 0);
        assert_eq!(
            sentences(&reasons),
            ["no node has 16.0 GiB of memory (the most is 7.8 GiB)"]
        );
    }

    #[test]
    fn arch_unavailable_lists_what_nodes_run() {
        let waiting = job(Requirements {
            arch: Some("aarch64"),
            ..Requirements::default()
        });
        let reasons = explain(
            &waiting,
            &[node(1, 1, 4, 1 << 30), node(2, 1, 4, 1 << 30)],
            0,
        );
        assert_eq!(
            reasons,
            vec![Reason::ArchUnavailable {
                arch: "aarch64".to_string(),
                archs_online: vec!["x86_64".to_string()]
            }]
        );
        assert_eq!(
            sentences(&reasons),
            ["no node runs arch aarch64 (nodes run: x86_64)"]
        );
    }

    #[test]
    fn os_unavailable_lists_what_nodes_run() {
        let waiting = job(Requirements {
            os: Some("windows"),
            ..Requirements::default()
        });
        let mac = NodeOffer {
            os: "macos",
            ..node(2, 1, 4, 1 << 30)
        };
        let reasons = explain(&waiting, &[node(1, 1, 4, 1 << 30), mac], 0);
        assert_eq!(
            sentences(&reasons),
            ["no node runs os windows (nodes run: linux, macos)"]
        );
    }

    #[test]
    fn label_unavailable_with_and_without_other_values() {
        let wanted = labels(&[("gpu", "yes"), ("region", "eu")]);
        let us = labels(&[("region", "us")]);
        let ap = labels(&[("region", "ap")]);
        let waiting = job(Requirements {
            labels: &wanted,
            ..Requirements::default()
        });
        let nodes = [
            NodeOffer {
                labels: &us,
                ..node(1, 1, 4, 1 << 30)
            },
            NodeOffer {
                labels: &ap,
                ..node(2, 1, 4, 1 << 30)
            },
        ];
        let reasons = explain(&waiting, &nodes, 0);
        assert_eq!(
            sentences(&reasons),
            [
                "no node has label gpu=yes",
                "no node has label region=eu (nodes have region=ap, region=us)"
            ]
        );
    }

    #[test]
    fn a_replica_that_only_excluded_nodes_fit_is_kept_apart() {
        let waiting = job(Requirements {
            excluded: crate::Excluded {
                nodes: &[1],
                owners: &[],
                networks: &[],
            },
            ..Requirements::default()
        });
        let reasons = explain(&waiting, &[node(1, 1, 4, 8 << 30)], 0);
        assert_eq!(
            reasons,
            vec![Reason::KeptApart {
                nodes_kept_apart: 1
            }]
        );
        assert!(sentences(&reasons)[0].contains("another replica"));
    }

    #[test]
    fn every_unmet_requirement_is_reported_in_order() {
        let wanted = labels(&[("region", "eu")]);
        let features = ["simd".to_owned()];
        let waiting = job(Requirements {
            memory_bytes_min: 64 << 30,
            cores_min: 64,
            module_bytes: 100 << 20,
            component: true,
            browser: Some(true),
            wasm_features: &features,
            arch: Some("riscv64"),
            os: Some("windows"),
            labels: &wanted,
            excluded: Default::default(),
            key_holders: None,
        });
        let plain = NodeOffer {
            wasm_features: Some(&[]),
            ..node(1, 1, 4, 1 << 30)
        };
        let reasons = explain(&waiting, &[plain], 0);
        let kinds: Vec<std::mem::Discriminant<Reason>> =
            reasons.iter().map(std::mem::discriminant).collect();
        let expected = [
            Reason::TooFewCores {
                cores_min: 0,
                cores_most: 0,
            },
            Reason::TooLittleMemory {
                memory_bytes_min: 0,
                memory_bytes_most: 0,
            },
            Reason::ModuleTooLarge {
                module_bytes: 0,
                module_bytes_most: 0,
            },
            Reason::ComponentsNotRun,
            Reason::RuntimeUnavailable { browser: true },
            Reason::FeaturesNotCompiled {
                missing: Vec::new(),
            },
            Reason::ArchUnavailable {
                arch: String::new(),
                archs_online: Vec::new(),
            },
            Reason::OsUnavailable {
                os: String::new(),
                oses_online: Vec::new(),
            },
            Reason::LabelUnavailable {
                key: String::new(),
                value: String::new(),
                values_online: Vec::new(),
            },
        ];
        assert_eq!(
            kinds,
            expected
                .iter()
                .map(std::mem::discriminant)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_module_whose_proposals_no_online_node_compiles_names_what_the_closest_lacks() {
        let features = [
            "exceptions".to_owned(),
            "memory64".to_owned(),
            "simd".to_owned(),
        ];
        let waiting = job(Requirements {
            wasm_features: &features,
            ..Requirements::default()
        });
        let few = ["simd".to_owned()];
        let more = ["exceptions".to_owned(), "simd".to_owned()];
        let nodes = [
            NodeOffer {
                wasm_features: Some(&few),
                ..node(1, 1, 4, 1 << 30)
            },
            NodeOffer {
                wasm_features: Some(&more),
                ..node(2, 1, 4, 1 << 30)
            },
        ];
        assert_eq!(
            sentences(&explain(&waiting, &nodes, 0)),
            [
                "no online node compiles every WebAssembly proposal the module uses (the closest \
              lacks memory64)"
            ]
        );
        let unsaid = [node(3, 1, 4, 1 << 30)];
        assert!(
            explain(&waiting, &unsaid, 0)
                .iter()
                .all(|reason| !matches!(reason, Reason::FeaturesNotCompiled { .. })),
            "a node that did not say compiles all"
        );
    }

    #[test]
    fn a_component_with_no_online_node_that_runs_components_says_so() {
        let waiting = job(Requirements {
            component: true,
            ..Requirements::default()
        });
        let older = [node(1, 1, 4, 1 << 30)];
        assert_eq!(
            sentences(&explain(&waiting, &older, 0)),
            [
                "the module is a WASI 0.2 component and no online node runs components (their \
              agents are older than components)"
            ]
        );
        let newer = [NodeOffer {
            takes_components: true,
            ..node(1, 1, 4, 1 << 30)
        }];
        assert!(
            !explain(&waiting, &newer, 0).contains(&Reason::ComponentsNotRun),
            "a node that runs components fits"
        );
    }

    #[test]
    fn a_module_larger_than_any_online_node_compiles_says_both_sizes() {
        let waiting = job(Requirements {
            module_bytes: 100 << 20,
            ..Requirements::default()
        });
        let reasons = explain(&waiting, &[node(1, 1, 4, 1 << 30)], 0);
        assert_eq!(
            sentences(&reasons),
            [
                "the module is 100.0 MiB and no online node compiles modules that large (the most is 64.0 MiB)"
            ]
        );
        let fits_exactly = job(Requirements {
            module_bytes: 64 << 20,
            ..Requirements::default()
        });
        let reasons = explain(&fits_exactly, &[node(1, 1, 4, 1 << 30)], 0);
        assert_eq!(
            reasons,
            vec![Reason::FittingNodesFree {
                nodes_fitting_free: 1
            }]
        );
    }

    #[test]
    fn no_node_meets_all_requirements_at_once() {
        let waiting = job(Requirements {
            cores_min: 8,
            memory_bytes_min: 16 << 30,
            ..Requirements::default()
        });
        let many_cores = node(1, 1, 8, 1 << 30);
        let much_memory = node(2, 1, 2, 32 << 30);
        let reasons = explain(&waiting, &[many_cores, much_memory], 0);
        assert_eq!(reasons, vec![Reason::NoNodeMeetsAll { nodes_online: 2 }]);
        assert_eq!(
            sentences(&reasons),
            [
                "no online node meets all the requirements at once, though each is met by some \
                 of the 2 online nodes"
            ]
        );
    }

    #[test]
    fn fitting_nodes_busy() {
        let waiting = job(Requirements::default());
        let busy = [
            node(1, 0, 4, 1 << 30),
            node(2, 0, 4, 1 << 30),
            node(3, 0, 4, 1 << 30),
        ];
        let reasons = explain(&waiting, &busy, 0);
        assert_eq!(reasons, vec![Reason::FittingNodesBusy { nodes_fitting: 3 }]);
        assert_eq!(
            sentences(&reasons),
            ["all 3 nodes that fit are busy (0 free slots); tasks start as slots free up"]
        );
        assert_eq!(
            sentences(&explain(&waiting, &busy[..1], 0)),
            ["the only node that fits is busy (0 free slots); tasks start as slots free up"]
        );
    }

    #[test]
    fn fitting_nodes_free() {
        let waiting = job(Requirements {
            cores_min: 4,
            ..Requirements::default()
        });
        let nodes = [
            node(1, 2, 4, 1 << 30),
            node(2, 1, 8, 1 << 30),
            node(3, 0, 4, 1 << 30),
            node(4, 3, 2, 1 << 30),
        ];
        let reasons = explain(&waiting, &nodes, 0);
        assert_eq!(
            reasons,
            vec![Reason::FittingNodesFree {
                nodes_fitting_free: 2
            }]
        );
        assert_eq!(
            sentences(&reasons),
            ["2 nodes fit and have free slots; tasks should start within moments"]
        );
        assert_eq!(
            sentences(&explain(&waiting, &nodes[1..], 0)),
            ["1 node fits and has free slots; tasks should start within moments"]
        );
    }

    #[test]
    fn expired_nodes_count_as_offline() {
        let waiting = job(Requirements {
            cores_min: 8,
            ..Requirements::default()
        });
        let expired_big = NodeOffer {
            lease_until_ms: 10,
            owner: None,
            network: None,
            ..node(1, 1, 16, 1 << 30)
        };
        let live_small = node(2, 1, 4, 1 << 30);
        assert_eq!(
            explain(&waiting, &[expired_big, live_small], 10),
            vec![Reason::TooFewCores {
                cores_min: 8,
                cores_most: 4
            }]
        );
    }

    #[test]
    fn long_lists_are_shortened() {
        let reason = Reason::ArchUnavailable {
            arch: "s390x".to_string(),
            archs_online: (1..=9).map(|n| format!("arch{n}")).collect(),
        };
        assert_eq!(
            reason.to_string(),
            "no node runs arch s390x (nodes run: arch1, arch2, arch3, arch4, arch5, arch6 and 3 \
             more)"
        );
    }
}
