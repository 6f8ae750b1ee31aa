//! What this machine offers, as measured when the agent starts.

use std::path::Path;

use sysinfo::{Disks, System};

use wire::Capabilities;

use crate::owner::policy::OwnerPolicy;

/// What the machine offers, and `module_bytes_max`, the largest module this agent compiles.
pub(crate) fn capabilities(data_dir: &Path, module_bytes_max: u64) -> Capabilities {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let memory_bytes = System::new()
        .map(|mut system| {
            system.refresh_memory();
            system.total_memory()
        })
        .unwrap_or(0);
    Capabilities {
        cores,
        memory_bytes,
        disk_free_bytes: free_disk(data_dir),
        arch: std::env::consts::ARCH.to_owned(),
        os: std::env::consts::OS.to_owned(),
        module_bytes_max,
        wasi_interfaces: sandbox::WASI_INTERFACES
            .iter()
            .map(|&interface| interface.to_owned())
            .collect(),
        wasm_features: sandbox::WASM_FEATURES
            .iter()
            .map(|&feature| feature.to_owned())
            .collect(),
        runtime: wire::NodeRuntime::Native,
        encryption_key: None,
        peer_address: None,
    }
}

/// What the owner lends of `machine`: its cores, memory and disk within the policy's caps.
pub(crate) fn lent(machine: Capabilities, policy: &OwnerPolicy) -> Capabilities {
    Capabilities {
        cores: policy.cores_max.of(u64::from(machine.cores)) as u32,
        memory_bytes: policy.memory_max.of(machine.memory_bytes),
        disk_free_bytes: policy
            .disk_max_bytes
            .map_or(machine.disk_free_bytes, |disk| {
                disk.min(machine.disk_free_bytes)
            }),
        ..machine
    }
}

/// Free space on the filesystem holding `dir`: the disk with the longest mount point that
/// contains it.
fn free_disk(dir: &Path) -> u64 {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let Ok(disks) = Disks::new_with_refreshed_list() else {
        return 0;
    };
    disks
        .iter()
        .filter(|disk| dir.starts_with(disk.mount_point()))
        .max_by_key(|disk| disk.mount_point().as_os_str().len())
        .map(|disk| disk.available_space())
        .unwrap_or(0)
}

/// The host's name, for people reading the node list.
pub(crate) fn host_name() -> String {
    System::host_name().unwrap_or_else(|_| "node".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the engine compiles is named as the coordinator names what modules use, so a module
    /// that uses a proposal finds the nodes that compile it.
    #[test]
    fn the_reported_features_are_the_ones_the_coordinator_knows() {
        let reported = capabilities(Path::new("."), wire::limits::MODULE_BYTES_MAX).wasm_features;
        assert_eq!(reported, wire::wasm::FEATURES);
        assert_eq!(
            wire::wasm::feature_bits(&reported),
            (1 << wire::wasm::FEATURES.len()) - 1
        );
    }
}
