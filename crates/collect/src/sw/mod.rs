//! The software inventory (class `sw`): installed packages of every package manager whose
//! database is under the root, as items `<source>/<name>/<arch>` with `name`, `version`,
//! `arch`, `source` and `size_bytes`.
//!
//! Several databases may be present (a Debian host with an rpm database for alien packages,
//! snaps and pip installs beside dpkg); each is read. When none is, there is one warning naming
//! what was looked for, so an empty software inventory is never silent. Snaps, flatpaks and pip
//! installs do not count as a package database for that warning: a machine with only those
//! still has its system's packages unread.

mod apk;
mod dpkg;
mod flatpak;
mod pip;
mod rpm;
mod snap;

pub use apk::{ApkRecord, parse_installed};
pub use dpkg::{DpkgRecord, parse_status};
pub use flatpak::{parse_deploy_origin, parse_metainfo_version};
pub use pip::{PipMetadata, parse_metadata};
pub use rpm::{HeaderError, RpmHeader, RpmRecord, parse_header, parse_query};
pub use snap::{SnapRecord, SnapStateError, parse_snap_yaml, parse_state};

use invsync_proto::{Attrs, Items};

use crate::read::Reader;

/// The architecture of a package whose database entry names none (very old dpkg entries).
const UNKNOWN_ARCH: &str = "unknown";

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    let dpkg = dpkg::collect(r, items);
    let apk = apk::collect(r, items);
    let rpm = rpm::collect(r, items);
    snap::collect(r, items);
    flatpak::collect(r, items);
    pip::collect(r, items);
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

/// Adds one installed package. Should a database list one name and architecture twice, the
/// item's `version` lists them sorted and comma-separated and its `size_bytes` is their sum
/// (neither dpkg nor apk installs one name and architecture twice; rpm, whose install-only
/// packages do, and the sources that may, use [`add_each`] instead).
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

/// Adds the installed copies of one package (one name and architecture): a single copy is the
/// item `base`, several are one item each, `base/<suffix>` (the suffix is what tells them
/// apart: a version, a branch), so that a query sees every installed version. Copies with the
/// same suffix are one item, the first kept.
pub(crate) fn add_each(items: &mut Items, base: &str, mut copies: Vec<(String, Attrs)>) {
    copies.sort_by(|a, b| a.0.cmp(&b.0));
    copies.dedup_by(|a, b| a.0 == b.0);
    if copies.len() == 1 {
        if let Some((_, attrs)) = copies.pop() {
            items.insert(base.to_string(), attrs);
        }
        return;
    }
    for (suffix, attrs) in copies {
        items.insert(format!("{base}/{suffix}"), attrs);
    }
}

/// The attributes every package item has; `version` is left out when empty.
pub(crate) fn package_attrs(source: &str, name: &str, version: &str, arch: &str) -> Attrs {
    let mut attrs = Attrs::new();
    attrs.insert("name".into(), name.to_string());
    if !version.is_empty() {
        attrs.insert("version".into(), version.to_string());
    }
    attrs.insert("arch".into(), arch.to_string());
    attrs.insert("source".into(), source.to_string());
    attrs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_copy_is_an_item_when_several() {
        let mut items = Items::new();
        let a = |v: &str| (v.to_string(), package_attrs("pip", "x", v, "all"));
        add_each(&mut items, "pip/x/all", vec![a("2.0"), a("1.0"), a("1.0")]);
        add_each(&mut items, "pip/y/all", vec![a("3.0")]);
        add_each(&mut items, "pip/z/all", vec![]);
        let keys: Vec<&str> = items.keys().map(String::as_str).collect();
        assert_eq!(keys, ["pip/x/all/1.0", "pip/x/all/2.0", "pip/y/all"]);
        assert_eq!(items["pip/y/all"]["version"], "3.0");
        assert_eq!(items["pip/x/all/2.0"]["source"], "pip");
    }

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
