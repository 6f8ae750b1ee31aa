//! What this machine offers, as measured when the agent starts.

use std::path::Path;

use sysinfo::{Disks, System};

use wire::Capabilities;

pub(crate) fn capabilities(data_dir: &Path) -> Capabilities {
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
