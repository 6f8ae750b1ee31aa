//! Whether a node can run a job at all, judged on its fixed capabilities (memory, cores, the
//! modules it compiles, the WebAssembly proposals it compiles and whether it runs components,
//! arch, os and owner labels) and on the nodes the demand must keep away
//! from. Availability (lease, free slots) is not part of fitting.

use crate::snapshot::{NodeOffer, Requirements};

/// True when `node` meets every requirement in `req`: at least the memory and cores asked for,
/// a module cap no smaller than the module, components run if the module is one, the same arch and os when one is named, every
/// required label with the same value, and none of the exclusions.
pub fn fits(node: &NodeOffer<'_>, req: &Requirements<'_>) -> bool {
    // Cheapest and most selective checks first: this runs nodes × requirement sets times.
    node.memory_bytes >= req.memory_bytes_min
        && node.cores >= req.cores_min
        && node.module_bytes_max >= req.module_bytes
        && (node.takes_components || !req.component)
        && req.browser.is_none_or(|browser| browser == node.browser)
        && compiles_all(node, req.wasm_features)
        && req.arch.is_none_or(|arch| arch == node.arch)
        && req.os.is_none_or(|os| os == node.os)
        && has_labels(node.labels, req.labels)
        && holds_key(node, req.key_holders)
        && !req.excluded.excludes(node)
}

/// True when the demand is not private, or `node` is one its key was wrapped to.
pub(crate) fn holds_key(node: &NodeOffer<'_>, key_holders: Option<&[u64]>) -> bool {
    key_holders.is_none_or(|holders| {
        debug_assert!(
            holders.windows(2).all(|pair| pair[0] < pair[1]),
            "key holders must be sorted and unique"
        );
        holders.binary_search(&node.node).is_ok()
    })
}

/// True when `node` compiles every proposal of `features`.
pub(crate) fn compiles_all(node: &NodeOffer<'_>, features: &[String]) -> bool {
    node.wasm_features
        .is_none_or(|compiled| features.iter().all(|feature| compiled.contains(feature)))
}

/// True when every `(key, value)` of `wanted` is in `labels` with the same value.
///
/// `labels` must be sorted by key with unique keys; `wanted` may come in any order.
pub(crate) fn has_labels(labels: &[(String, String)], wanted: &[(String, String)]) -> bool {
    debug_assert!(
        labels.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "node labels must be sorted by key with unique keys"
    );
    wanted
        .iter()
        .all(|(key, value)| label_value(labels, key) == Some(value.as_str()))
}

/// The value of `key` in `labels` (sorted by key), if present.
pub(crate) fn label_value<'a>(labels: &'a [(String, String)], key: &str) -> Option<&'a str> {
    labels
        .binary_search_by(|(label_key, _)| label_key.as_str().cmp(key))
        .ok()
        .map(|index| labels[index].1.as_str())
}

#[cfg(test)]
mod tests {
    //! Each requirement on its own, at its boundary.

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    fn node(labels: &[(String, String)]) -> NodeOffer<'_> {
        NodeOffer {
            node: 1,
            slots_free: 1,
            slots_total: 1,
            running: 0,
            cores: 4,
            memory_bytes: 8 << 30,
            module_bytes_max: 64 << 20,
            takes_components: false,
            browser: false,
            wasm_features: None,
            arch: "x86_64",
            os: "linux",
            labels,
            lease_until_ms: 100,
            owner: Some(10),
            network: Some(20),
        }
    }

    #[test]
    fn empty_requirements_fit_any_node() {
        assert!(fits(&node(&[]), &Requirements::default()));
    }

    #[test]
    fn memory_minimum_is_inclusive() {
        let node = node(&[]);
        let mut req = Requirements {
            memory_bytes_min: 8 << 30,
            ..Requirements::default()
        };
        assert!(fits(&node, &req));
        req.memory_bytes_min += 1;
        assert!(!fits(&node, &req));
    }

    #[test]
    fn a_module_fits_only_nodes_that_compile_every_proposal_it_uses() {
        let features = ["exceptions".to_owned(), "simd".to_owned()];
        let module = Requirements {
            wasm_features: &features,
            ..Requirements::default()
        };
        assert!(
            fits(&node(&[]), &module),
            "a node that did not say compiles all"
        );
        let some = ["simd".to_owned()];
        let partial = NodeOffer {
            wasm_features: Some(&some),
            ..node(&[])
        };
        assert!(!fits(&partial, &module));
        assert!(fits(&partial, &Requirements::default()));
        let all = [
            "exceptions".to_owned(),
            "simd".to_owned(),
            "tail-call".to_owned(),
        ];
        let full = NodeOffer {
            wasm_features: Some(&all),
            ..node(&[])
        };
        assert!(fits(&full, &module));
    }

    #[test]
    fn a_job_that_needs_fuel_metered_never_fits_a_browser_and_one_can_ask_for_them() {
        let tab = NodeOffer {
            browser: true,
            ..node(&[])
        };
        let agent = node(&[]);
        let metered = Requirements {
            browser: Some(false),
            ..Requirements::default()
        };
        let browsers_only = Requirements {
            browser: Some(true),
            ..Requirements::default()
        };
        assert!(!fits(&tab, &metered) && fits(&agent, &metered));
        assert!(fits(&tab, &browsers_only) && !fits(&agent, &browsers_only));
        assert!(fits(&tab, &Requirements::default()) && fits(&agent, &Requirements::default()));
    }

    #[test]
    fn a_component_fits_only_nodes_that_run_components() {
        let older = node(&[]);
        let component = Requirements {
            component: true,
            ..Requirements::default()
        };
        assert!(!fits(&older, &component));
        assert!(
            fits(&older, &Requirements::default()),
            "core modules run anywhere"
        );
        let newer = NodeOffer {
            takes_components: true,
            ..older
        };
        assert!(fits(&newer, &component));
    }

    #[test]
    fn a_module_as_large_as_the_node_compiles_fits_and_a_byte_more_does_not() {
        let node = node(&[]);
        let mut req = Requirements {
            module_bytes: 64 << 20,
            ..Requirements::default()
        };
        assert!(fits(&node, &req));
        req.module_bytes += 1;
        assert!(!fits(&node, &req));
    }

    #[test]
    fn cores_minimum_is_inclusive() {
        let node = node(&[]);
        let mut req = Requirements {
            cores_min: 4,
            ..Requirements::default()
        };
        assert!(fits(&node, &req));
        req.cores_min = 5;
        assert!(!fits(&node, &req));
    }

    #[test]
    fn arch_and_os_must_match_exactly_when_named() {
        let node = node(&[]);
        let arch = |arch| Requirements {
            arch: Some(arch),
            ..Requirements::default()
        };
        let os = |os| Requirements {
            os: Some(os),
            ..Requirements::default()
        };
        assert!(fits(&node, &arch("x86_64")));
        assert!(!fits(&node, &arch("aarch64")));
        assert!(fits(&node, &os("linux")));
        assert!(!fits(&node, &os("windows")));
    }

    #[test]
    fn a_node_is_kept_away_by_its_key_its_owner_or_its_network() {
        use crate::snapshot::Excluded;
        let node = node(&[]);
        let away = |nodes: &[u64], owners: &[u64], networks: &[u64]| {
            let req = Requirements {
                excluded: Excluded {
                    nodes,
                    owners,
                    networks,
                },
                ..Requirements::default()
            };
            !fits(&node, &req)
        };
        assert!(!away(&[2], &[11], &[21]), "others' keys keep nothing away");
        assert!(away(&[1], &[], &[]));
        assert!(away(&[], &[10], &[]));
        assert!(away(&[], &[], &[20]));
        let unknown = NodeOffer {
            owner: None,
            network: None,
            ..node
        };
        let req = Requirements {
            excluded: Excluded {
                nodes: &[],
                owners: &[10],
                networks: &[20],
            },
            ..Requirements::default()
        };
        assert!(
            fits(&unknown, &req),
            "an unknown owner or network matches nothing"
        );
    }

    #[test]
    fn every_required_label_must_match_in_value() {
        let have = labels(&[("gpu", "yes"), ("region", "eu"), ("tier", "gold")]);
        let node = node(&have);
        let want = |pairs: &[(&str, &str)]| labels(pairs);
        let check = |wanted: Vec<(String, String)>| {
            fits(
                &node,
                &Requirements {
                    labels: &wanted,
                    ..Requirements::default()
                },
            )
        };
        assert!(check(want(&[("region", "eu")])));
        assert!(check(want(&[("tier", "gold"), ("gpu", "yes")])));
        assert!(!check(want(&[("region", "us")])));
        assert!(!check(want(&[("zone", "a")])));
        assert!(!check(want(&[("gpu", "yes"), ("zone", "a")])));
    }
}
