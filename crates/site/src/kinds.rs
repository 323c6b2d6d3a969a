//! Which kind an inventory item is, for people: hardware items grouped under System, CPU,
//! Memory, ... in one fixed order, software items under their source (dpkg, rpm, ...). The one
//! mapping that `invsite show` (`cli/show.rs`) and the console's client page
//! (`console/client.rs`) both use; it names nothing else in the crate.
//!
//! A hardware key's kind is decided by its head, the key up to its first `/` (`pci` for
//! `pci/0000:00:03.0`, the whole key for `cpu`). A head this module does not know (a newer
//! agent's item) is of kind [`Kind::Other`], shown last: an item is never dropped. Within a
//! kind, items keep the order they come in (key order, from the snapshot's sorted map). This is
//! presentation only: the wire, the store and `--json` keep the flat, sorted item map.

use std::collections::BTreeMap;

/// A kind of hardware item, in the order kinds are shown (the derived `Ord` is that order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    System,
    Cpu,
    Memory,
    Disks,
    Filesystems,
    Volumes,
    Network,
    Pci,
    Graphics,
    Usb,
    Monitors,
    Batteries,
    Printers,
    Users,
    Services,
    KernelModules,
    Custom,
    Other,
}

/// Every key head an agent's collectors produce (`crates/collect/src/hw/`), and the few more
/// the SPEC's kinds name, with its kind.
const HEADS: [(&str, Kind); 26] = [
    ("system", Kind::System),
    ("bios", Kind::System),
    ("baseboard", Kind::System),
    ("chassis", Kind::System),
    ("os", Kind::System),
    ("virt", Kind::System),
    ("cpu", Kind::Cpu),
    ("memory", Kind::Memory),
    ("dimm", Kind::Memory),
    ("disk", Kind::Disks),
    ("fs", Kind::Filesystems),
    ("raid", Kind::Volumes),
    ("lvm", Kind::Volumes),
    ("dm", Kind::Volumes),
    ("nic", Kind::Network),
    ("net", Kind::Network),
    ("pci", Kind::Pci),
    ("gpu", Kind::Graphics),
    ("usb", Kind::Usb),
    ("monitor", Kind::Monitors),
    ("battery", Kind::Batteries),
    ("printer", Kind::Printers),
    ("user", Kind::Users),
    ("service", Kind::Services),
    ("kmod", Kind::KernelModules),
    ("custom", Kind::Custom),
];

/// Software sources in the order they are shown: the system's package managers first, then
/// the others; a source not named here comes after these, alphabetically.
const SOURCES: [&str; 6] = ["dpkg", "rpm", "apk", "snap", "flatpak", "pip"];

impl Kind {
    /// Every kind, in display order.
    pub const ALL: [Kind; 18] = [
        Kind::System,
        Kind::Cpu,
        Kind::Memory,
        Kind::Disks,
        Kind::Filesystems,
        Kind::Volumes,
        Kind::Network,
        Kind::Pci,
        Kind::Graphics,
        Kind::Usb,
        Kind::Monitors,
        Kind::Batteries,
        Kind::Printers,
        Kind::Users,
        Kind::Services,
        Kind::KernelModules,
        Kind::Custom,
        Kind::Other,
    ];

    /// The kind of the hardware item `key`.
    pub fn of(key: &str) -> Kind {
        let head = head(key);
        HEADS
            .iter()
            .find(|(h, _)| *h == head)
            .map_or(Kind::Other, |&(_, k)| k)
    }

    /// The heading people read.
    pub fn label(self) -> &'static str {
        match self {
            Kind::System => "System",
            Kind::Cpu => "CPU",
            Kind::Memory => "Memory",
            Kind::Disks => "Disks",
            Kind::Filesystems => "Filesystems",
            Kind::Volumes => "RAID & volumes",
            Kind::Network => "Network",
            Kind::Pci => "PCI",
            Kind::Graphics => "Graphics",
            Kind::Usb => "USB",
            Kind::Monitors => "Monitors",
            Kind::Batteries => "Batteries",
            Kind::Printers => "Printers",
            Kind::Users => "Users",
            Kind::Services => "Services",
            Kind::KernelModules => "Kernel modules",
            Kind::Custom => "Custom",
            Kind::Other => "Other",
        }
    }

    /// A stable, URL- and HTML-id-safe name (`kernel-modules`), for the console's anchors.
    pub fn slug(self) -> &'static str {
        match self {
            Kind::System => "system",
            Kind::Cpu => "cpu",
            Kind::Memory => "memory",
            Kind::Disks => "disks",
            Kind::Filesystems => "filesystems",
            Kind::Volumes => "volumes",
            Kind::Network => "network",
            Kind::Pci => "pci",
            Kind::Graphics => "graphics",
            Kind::Usb => "usb",
            Kind::Monitors => "monitors",
            Kind::Batteries => "batteries",
            Kind::Printers => "printers",
            Kind::Users => "users",
            Kind::Services => "services",
            Kind::KernelModules => "kernel-modules",
            Kind::Custom => "custom",
            Kind::Other => "other",
        }
    }
}

/// A key up to its first `/`, or the whole key.
fn head(key: &str) -> &str {
    key.split_once('/').map_or(key, |(h, _)| h)
}

/// Hardware items grouped by kind: the kinds that have items, in display order, each with its
/// items in the order given. `key` says which item key a `T` is.
pub fn by_kind<T>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> &str,
) -> Vec<(Kind, Vec<T>)> {
    let mut groups: BTreeMap<Kind, Vec<T>> = BTreeMap::new();
    for item in items {
        let kind = Kind::of(key(&item));
        groups.entry(kind).or_default().push(item);
    }
    groups.into_iter().collect()
}

/// The source of the software item `key` (`<source>/<name>/<arch>`): its head.
pub fn source_of(key: &str) -> &str {
    head(key)
}

/// Software items grouped by source: the sources that have items, known ones in the order of
/// [`SOURCES`], then others alphabetically; each with its items in the order given.
pub fn by_source<T>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> &str,
) -> Vec<(String, Vec<T>)> {
    let mut groups: BTreeMap<(usize, String), Vec<T>> = BTreeMap::new();
    for item in items {
        let source = source_of(key(&item));
        let rank = SOURCES
            .iter()
            .position(|s| *s == source)
            .unwrap_or(SOURCES.len());
        groups
            .entry((rank, source.to_string()))
            .or_default()
            .push(item);
    }
    groups.into_iter().map(|((_, s), v)| (s, v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every item key (or head) the agent's collectors produce, from SPEC section 4 and issue
    /// 19, with the kind it is shown under.
    const COLLECTED: [(&str, Kind); 27] = [
        ("system", Kind::System),
        ("bios", Kind::System),
        ("os", Kind::System),
        ("virt", Kind::System),
        ("cpu", Kind::Cpu),
        ("memory", Kind::Memory),
        ("dimm/DIMM A1", Kind::Memory),
        ("disk/sda", Kind::Disks),
        ("fs//", Kind::Filesystems),
        ("fs//home", Kind::Filesystems),
        ("raid/md0", Kind::Volumes),
        ("lvm/vg0/root", Kind::Volumes),
        ("dm/cryptroot", Kind::Volumes),
        ("nic/eth0", Kind::Network),
        ("net", Kind::Network),
        ("pci/0000:00:03.0", Kind::Pci),
        ("gpu/0000:00:02.0", Kind::Graphics),
        ("usb/1-1.2", Kind::Usb),
        ("monitor/card0-HDMI-A-1", Kind::Monitors),
        ("battery/BAT0", Kind::Batteries),
        ("printer/office", Kind::Printers),
        ("user/alice", Kind::Users),
        ("service/ssh.service", Kind::Services),
        ("kmod/ext4", Kind::KernelModules),
        ("custom/asset", Kind::Custom),
        ("custom/a/b", Kind::Custom),
        ("baseboard", Kind::System),
    ];

    #[test]
    fn every_collected_key_has_its_named_kind() {
        for (key, kind) in COLLECTED {
            assert_eq!(Kind::of(key), kind, "{key}");
            assert_ne!(Kind::of(key), Kind::Other, "{key}");
        }
    }

    /// The heads the collectors write, read from their source (`items.insert("cpu".into() …`,
    /// `format!("pci/{}" …`, dmi's table), so that a new collector without a kind here fails.
    #[test]
    fn every_head_in_the_collectors_source_is_known() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../collect/src/hw");
        let mut heads = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let src = std::fs::read_to_string(&path).unwrap();
            // Test code writes fixture paths, not items.
            let src = src.split("#[cfg(test)]").next().unwrap();
            let quoted = |rest: &str| -> Option<String> {
                let rest = rest.trim_start().strip_prefix('"')?;
                let end = rest.find(['"', '/', '{'])?;
                Some(rest[..end].to_string())
            };
            for (i, _) in src.match_indices("items.insert(") {
                let rest = &src[i + "items.insert(".len()..];
                let rest = rest.trim_start();
                let rest = rest.strip_prefix("format!(").unwrap_or(rest);
                if let Some(h) = quoted(rest) {
                    heads.insert(h);
                }
            }
            // Keys built before they are inserted (`let key = format!("dimm/{}", …)`).
            for (i, _) in src.match_indices("format!(\"") {
                let rest = &src[i + "format!(".len()..];
                let lit = &rest[1..rest[1..].find('"').unwrap() + 1];
                let Some((h, after)) = lit.split_once('/') else {
                    continue;
                };
                // Paths under the root (`proc/{pid}/comm`) are not keys.
                let path = ["proc", "sys", "etc", "run", "usr", "var", "dev"].contains(&h);
                if after.starts_with('{')
                    && !h.is_empty()
                    && h.bytes().all(|b| b.is_ascii_lowercase())
                    && !path
                {
                    heads.insert(h.to_string());
                }
            }
            // dmi.rs's table: `("system", "vendor", "sys_vendor")`.
            if path.file_name().unwrap() == "dmi.rs" {
                for line in src.lines().filter(|l| l.trim_start().starts_with("(\"")) {
                    heads.insert(quoted(&line.trim_start()[1..]).unwrap());
                }
            }
        }
        heads.retain(|h| !h.is_empty());
        // The scan finds every head of SPEC section 4 and issue 19 (so it still reads the
        // collectors as they are written) ...
        for (key, _) in COLLECTED.iter().filter(|(k, _)| !["baseboard"].contains(k)) {
            let expected = head(key);
            assert!(
                heads.contains(expected),
                "{expected} not found in {heads:?}"
            );
        }
        // ... and a head found there that this module does not know fails here.
        for h in &heads {
            assert_ne!(
                Kind::of(h),
                Kind::Other,
                "the collectors' {h:?} has no kind"
            );
        }
    }

    #[test]
    fn unknown_heads_are_other_and_last() {
        for key in ["tpm", "tpm/0", "", "/x", "CPU", "cpux", "pcie/0000:00:01.0"] {
            assert_eq!(Kind::of(key), Kind::Other, "{key:?}");
        }
        assert_eq!(Kind::ALL.last(), Some(&Kind::Other));
    }

    #[test]
    fn kinds_have_a_stable_order_and_distinct_names() {
        let labels: Vec<&str> = Kind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(
            labels,
            [
                "System",
                "CPU",
                "Memory",
                "Disks",
                "Filesystems",
                "RAID & volumes",
                "Network",
                "PCI",
                "Graphics",
                "USB",
                "Monitors",
                "Batteries",
                "Printers",
                "Users",
                "Services",
                "Kernel modules",
                "Custom",
                "Other",
            ]
        );
        let mut sorted = Kind::ALL;
        sorted.sort();
        assert_eq!(sorted, Kind::ALL, "the derived order is the display order");
        let slugs: std::collections::BTreeSet<&str> = Kind::ALL.iter().map(|k| k.slug()).collect();
        assert_eq!(slugs.len(), Kind::ALL.len());
        for s in slugs {
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{s}"
            );
        }
        for (h, k) in HEADS {
            assert!(Kind::ALL.contains(&k) && k != Kind::Other, "{h}");
        }
    }

    #[test]
    fn grouping_keeps_key_order_and_leaves_out_empty_kinds() {
        let keys = [
            "battery/BAT0",
            "bios",
            "cpu",
            "disk/nvme0n1",
            "kmod/ext4",
            "nic/wlan0",
            "os",
            "pci/0000:00:02.0",
            "pci/0000:00:14.0",
            "system",
            "tpm/0",
            "usb/1-1.2",
            "virt",
            "zz",
        ];
        let groups = by_kind(keys, |k| k);
        let shown: Vec<(&str, Vec<&str>)> =
            groups.iter().map(|(k, v)| (k.label(), v.clone())).collect();
        assert_eq!(
            shown,
            [
                ("System", vec!["bios", "os", "system", "virt"]),
                ("CPU", vec!["cpu"]),
                ("Disks", vec!["disk/nvme0n1"]),
                ("Network", vec!["nic/wlan0"]),
                ("PCI", vec!["pci/0000:00:02.0", "pci/0000:00:14.0"]),
                ("USB", vec!["usb/1-1.2"]),
                ("Batteries", vec!["battery/BAT0"]),
                ("Kernel modules", vec!["kmod/ext4"]),
                ("Other", vec!["tpm/0", "zz"]),
            ]
        );
        let n: usize = groups.iter().map(|(_, v)| v.len()).sum();
        assert_eq!(n, keys.len(), "no item dropped");
        assert!(by_kind(Vec::<&str>::new(), |k| k).is_empty());
    }

    #[test]
    fn software_groups_by_source_known_ones_first() {
        let keys = [
            "apk/musl/x86_64",
            "brew/jq/arm64",
            "dpkg/bash/amd64",
            "dpkg/gzip/amd64",
            "flatpak/org.gimp.GIMP/x86_64",
            "cargo/ripgrep/x86_64",
            "pip/requests/noarch",
            "rpm/kernel/x86_64",
            "snap/core22/amd64",
        ];
        let groups = by_source(keys, |k| k);
        let shown: Vec<(&str, usize)> = groups.iter().map(|(s, v)| (s.as_str(), v.len())).collect();
        assert_eq!(
            shown,
            [
                ("dpkg", 2),
                ("rpm", 1),
                ("apk", 1),
                ("snap", 1),
                ("flatpak", 1),
                ("pip", 1),
                ("brew", 1),
                ("cargo", 1),
            ]
        );
        assert_eq!(groups[0].1, ["dpkg/bash/amd64", "dpkg/gzip/amd64"]);
    }
}
