//! The software inventory (class `sw`): installed packages of every package manager whose
//! database is under the root, as items `<source>/<name>/<arch>` with `name`, `version`,
//! `arch`, `source` and `size_bytes`.
//!
//! Several databases may be present (a Debian host with an rpm database for alien packages);
//! each is read. When none is, there is one warning naming what was looked for, so an empty
//! software inventory is never silent.

mod apk;
mod dpkg;
mod rpm;

pub use apk::{ApkRecord, parse_installed};
pub use dpkg::{DpkgRecord, parse_status};
pub use rpm::{RpmRecord, parse_query};

use invsync_proto::{Attrs, Items};

use crate::read::Reader;

/// The architecture of a package whose database entry names none (very old dpkg entries).
const UNKNOWN_ARCH: &str = "unknown";

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    let dpkg = dpkg::collect(r, items);
    let apk = apk::collect(r, items);
    let rpm = rpm::collect(r, items);
    if !(dpkg || apk || rpm) {
        r.warn(&format!(
            "no package database found (looked for {}, {}, {} and {})",
            dpkg::STATUS,
            apk::INSTALLED,
            rpm::DB_DIRS[0],
            rpm::DB_DIRS[1]
        ));
    }
}

/// Adds one installed package. A package manager that keeps several versions of one name and
/// architecture installed at once (rpm's install-only packages: kernels, `gpg-pubkey`) gives
/// one item whose `version` lists them sorted and comma-separated and whose `size_bytes` is
/// their sum, because the item key has no room for the version.
pub(crate) fn add_package(
    items: &mut Items,
    source: &str,
    name: &str,
    version: &str,
    arch: &str,
    size: Option<u64>,
) {
    let arch = if arch.is_empty() { UNKNOWN_ARCH } else { arch };
    let key = format!("{source}/{name}/{arch}");
    if let Some(existing) = items.get_mut(&key) {
        let mut versions: Vec<&str> = existing
            .get("version")
            .map_or(Vec::new(), |v| v.split(',').collect());
        if !version.is_empty() {
            versions.push(version);
        }
        versions.sort_unstable();
        versions.dedup();
        let joined = versions.join(",");
        existing.insert("version".into(), joined);
        let total = existing
            .get("size_bytes")
            .and_then(|s| s.parse::<u64>().ok())
            .zip(size)
            .map(|(a, b)| a.saturating_add(b));
        match total {
            Some(t) => existing.insert("size_bytes".into(), t.to_string()),
            None => existing.remove("size_bytes"),
        };
        return;
    }
    let mut attrs = Attrs::new();
    attrs.insert("name".into(), name.to_string());
    if !version.is_empty() {
        attrs.insert("version".into(), version.to_string());
    }
    attrs.insert("arch".into(), arch.to_string());
    attrs.insert("source".into(), source.to_string());
    if let Some(s) = size {
        attrs.insert("size_bytes".into(), s.to_string());
    }
    items.insert(key, attrs);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_name_and_arch_merge() {
        let mut items = Items::new();
        add_package(
            &mut items,
            "rpm",
            "kernel",
            "5.14.0-2.el9",
            "x86_64",
            Some(10),
        );
        add_package(
            &mut items,
            "rpm",
            "kernel",
            "5.14.0-1.el9",
            "x86_64",
            Some(5),
        );
        add_package(&mut items, "rpm", "kernel", "5.14.0-1.el9", "x86_64", None);
        let k = &items["rpm/kernel/x86_64"];
        assert_eq!(k["version"], "5.14.0-1.el9,5.14.0-2.el9");
        assert!(!k.contains_key("size_bytes"));
        add_package(&mut items, "dpkg", "old", "", "", None);
        assert_eq!(items["dpkg/old/unknown"].get("version"), None);
        assert_eq!(items["dpkg/old/unknown"]["arch"], "unknown");
    }
}
