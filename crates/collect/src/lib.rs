//! Collectors: read a machine's hardware and software inventory from files under a root
//! directory (`--root`, default `/`), so that tests run on fixture trees (SPEC 4).
//!
//! [`collect`] never fails: whatever cannot be read becomes a warning in
//! [`Collected::warnings`] and the rest of the inventory is still reported. The parsers are
//! public, pure functions over `&str` (or bytes) so that they can be tested and fuzzed without
//! a file system; the [`hw`] and [`sw`] modules hold one module per source. Only rpm's
//! older databases (Berkeley DB, NDB) are read by running a program (`rpm`), and the
//! administrator's custom inventory scripts are run ([`hw::custom`]); rpm's SQLite database
//! (rpm >= 4.16) and every other source are read as files.

pub mod hw;
mod read;
pub mod sw;

use std::path::Path;
use std::time::Duration;

use invsync_proto::{Class, Items};

use crate::read::{Reader, value};

/// What a collector could read, plus a warning for each thing it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    pub items: Items,
    pub warnings: Vec<String>,
    /// Keys of items that could not be refreshed this time and must not be reported as
    /// removed: the caller keeps its previous item under each key (the agent copies them from
    /// its acknowledged snapshot). Today these are `custom/<name>` items whose script failed,
    /// timed out or printed something unreadable ([`hw::custom`]). Sorted.
    pub keep_previous: Vec<String>,
}

/// How long a custom inventory script may run by default before it is killed.
pub const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a collection runs, beyond its class and root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectOptions {
    /// How long each custom inventory script ([`hw::custom`]) may run before it is killed and
    /// its previous item kept. Scripts are outside the inventory's time budget of 20 ms: the
    /// files are read in milliseconds, a script takes what it takes up to this bound.
    pub script_timeout: Duration,
}

impl Default for CollectOptions {
    fn default() -> CollectOptions {
        CollectOptions {
            script_timeout: DEFAULT_SCRIPT_TIMEOUT,
        }
    }
}

/// Collects one class under `root` with the default options.
pub fn collect(class: Class, root: &Path) -> Collected {
    collect_with(class, root, &CollectOptions::default())
}

/// Collects one class under `root`.
pub fn collect_with(class: Class, root: &Path, options: &CollectOptions) -> Collected {
    let mut reader = Reader::with_options(root, class.as_str(), *options);
    let mut items = Items::new();
    match class {
        Class::Hw => hw::collect(&mut reader, &mut items),
        Class::Sw => sw::collect(&mut reader, &mut items),
    }
    let mut keep_previous = reader.take_keep();
    keep_previous.sort_unstable();
    keep_previous.dedup();
    Collected {
        items,
        warnings: reader.into_warnings(),
        keep_previous,
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

/// The DMI serial number and product UUID (`sys/class/dmi/id/product_serial`, `product_uuid`
/// under `root`, read as the `system` item reads them), when both are readable: what
/// enrollment sends so the site can recognise a reimaged machine. Firmware placeholders are
/// left for the site to judge (`invsync_proto::wire::HardwareId::checked`).
pub fn dmi_identity(root: &Path) -> Option<(String, String)> {
    let r = Reader::new(root, "id");
    let read = |file: &str| {
        r.read_quiet(&format!("{}/{file}", hw::dmi::DIR))
            .as_deref()
            .and_then(value)
            .map(str::to_string)
    };
    Some((read("product_serial")?, read("product_uuid")?))
}

/// The host name (`proc/sys/kernel/hostname`, else `etc/hostname`, under `root`), if readable.
pub fn hostname(root: &Path) -> Option<String> {
    read_hostname(&Reader::new(root, "id"))
}

/// [`hostname`] through a reader already open on the root (the `net` item reads it too).
pub(crate) fn read_hostname(r: &Reader<'_>) -> Option<String> {
    ["proc/sys/kernel/hostname", "etc/hostname"]
        .iter()
        .find_map(|p| {
            r.read_quiet(p)
                .as_deref()
                .and_then(value)
                .map(str::to_string)
        })
}
