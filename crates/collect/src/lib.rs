//! Collectors: read a machine's hardware and software inventory from files under a root
//! directory (`--root`, default `/`), so tests run on fixture trees. (Interface stub: the
//! collect helper replaces the bodies.)

use std::path::Path;

use invsync_proto::{Class, Items};

/// What a collector could read, plus a warning for each thing it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    pub items: Items,
    pub warnings: Vec<String>,
}

/// Collects one class under `root`.
pub fn collect(class: Class, root: &Path) -> Collected {
    let _ = (class, root);
    Collected::default()
}

/// The machine id (`etc/machine-id` under `root`, trimmed), if readable.
pub fn machine_id(root: &Path) -> Option<String> {
    std::fs::read_to_string(root.join("etc/machine-id")).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The host name (`proc/sys/kernel/hostname`, else `etc/hostname`, under `root`), if readable.
pub fn hostname(root: &Path) -> Option<String> {
    ["proc/sys/kernel/hostname", "etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(root.join(p)).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
