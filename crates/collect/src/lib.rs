//! Collectors: read a machine's hardware and software inventory from files under a root
//! directory (`--root`, default `/`), so that tests run on fixture trees (SPEC 4).
//!
//! [`collect`] never fails: whatever cannot be read becomes a warning in
//! [`Collected::warnings`] and the rest of the inventory is still reported. The parsers are
//! public, pure functions over `&str` (or bytes) so that they can be tested and fuzzed without
//! a file system; the [`hw`] and [`sw`] modules hold one module per source. Only rpm's
//! older databases (Berkeley DB, NDB) are read by running a program (`rpm`); its SQLite
//! database (rpm >= 4.16) and every other source are read as files.

pub mod hw;
mod read;
pub mod sw;

use std::path::Path;

use invsync_proto::{Class, Items};

use crate::read::{Reader, value};

/// What a collector could read, plus a warning for each thing it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    pub items: Items,
    pub warnings: Vec<String>,
}

/// Collects one class under `root`.
pub fn collect(class: Class, root: &Path) -> Collected {
    let mut reader = Reader::new(root, class.as_str());
    let mut items = Items::new();
    match class {
        Class::Hw => hw::collect(&mut reader, &mut items),
        Class::Sw => sw::collect(&mut reader, &mut items),
    }
    Collected {
        items,
        warnings: reader.into_warnings(),
    }
}

/// The machine id (`etc/machine-id` under `root`, trimmed), if readable.
pub fn machine_id(root: &Path) -> Option<String> {
    Reader::new(root, "id")
        .read_quiet("etc/machine-id")
        .as_deref()
        .and_then(value)
        .map(str::to_string)
}

/// The host name (`proc/sys/kernel/hostname`, else `etc/hostname`, under `root`), if readable.
pub fn hostname(root: &Path) -> Option<String> {
    let r = Reader::new(root, "id");
    ["proc/sys/kernel/hostname", "etc/hostname"]
        .iter()
        .find_map(|p| {
            r.read_quiet(p)
                .as_deref()
                .and_then(value)
                .map(str::to_string)
        })
}
