//! Tests of the collectors on the machine running them (root `/`), compared with what the
//! system's own files and tools report. They hold on any Linux machine: where the machine has
//! a dpkg database, the software inventory must equal what `dpkg-query` reports (and the test
//! fails if `dpkg-query` is missing there); where it has none, there must be no dpkg items.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use invsync_collect::collect;
use invsync_proto::{Class, Snapshot};

fn root() -> &'static Path {
    Path::new("/")
}

/// Installed packages as `dpkg-query` reports them for a dpkg database directory.
fn dpkg_query(admindir: &Path) -> BTreeSet<(String, String, String)> {
    let out = Command::new("dpkg-query")
        .arg(format!("--admindir={}", admindir.display()))
        .args(["-W", "-f", "${Package}\\t${Version}\\t${Architecture}\\t${db:Status-Abbrev}\\n"])
        .output()
        .expect("/var/lib/dpkg/status exists, so dpkg-query must be installed to check the dpkg collector");
    assert!(
        out.status.success(),
        "dpkg-query failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // The second letter of the abbreviated status is the package's state; `i` is installed
    // (`ii` wanted and installed, `hi` held and installed).
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 4 && f[3].as_bytes().get(1) == Some(&b'i'))
                .then(|| (f[0].into(), f[1].into(), f[2].into()))
        })
        .collect()
}

fn dpkg_items(root: &Path) -> BTreeSet<(String, String, String)> {
    collect(Class::Sw, root)
        .items
        .iter()
        .filter(|(k, _)| k.starts_with("dpkg/"))
        .map(|(_, a)| {
            (
                a["name"].clone(),
                a.get("version").cloned().unwrap_or_default(),
                a["arch"].clone(),
            )
        })
        .collect()
}

#[test]
fn sw_equals_dpkg_query() {
    let ours = dpkg_items(root());
    if !Path::new("/var/lib/dpkg/status").exists() {
        assert!(
            ours.is_empty(),
            "dpkg items without a dpkg database: {ours:?}"
        );
        return;
    }
    let theirs = dpkg_query(Path::new("/var/lib/dpkg"));
    assert!(
        !theirs.is_empty(),
        "dpkg-query reports no installed package"
    );
    assert_eq!(ours, theirs);
    assert!(collect(Class::Sw, root()).warnings.is_empty());

    // dpkg itself agrees with the collector on the Debian fixture, whose status file holds
    // the hard cases (held, config-files only, half-installed, unpacked, purged, multi-arch).
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/debian");
    let theirs = dpkg_query(&fixture.join("var/lib/dpkg"));
    assert_eq!(theirs.len(), 23);
    assert_eq!(dpkg_items(&fixture), theirs);
}

#[test]
fn sw_is_stable() {
    let a = Snapshot::new(collect(Class::Sw, root()).items).hash();
    let b = Snapshot::new(collect(Class::Sw, root()).items).hash();
    assert_eq!(a, b);
}

/// Two runs give identical hardware items, except free space, which other processes on this
/// machine (compilers writing to the same disk) may move across a 1 % step between the runs.
#[test]
fn hw_is_stable() {
    let strip = |mut items: invsync_proto::Items| {
        for attrs in items.values_mut() {
            attrs.remove("free_bytes");
        }
        items
    };
    let a = collect(Class::Hw, root());
    let b = collect(Class::Hw, root());
    assert_eq!(strip(a.items), strip(b.items));
    assert_eq!(a.warnings, b.warnings);
}

#[test]
fn hw_matches_proc_and_sys() {
    let hw = collect(Class::Hw, root());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let processors = cpuinfo
        .lines()
        .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
        .count();
    assert!(processors > 0);
    assert_eq!(hw.items["cpu"]["threads"], processors.to_string());
    assert!(hw.items["cpu"].contains_key("mhz"), "{:?}", hw.items["cpu"]);

    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert_eq!(hw.items["memory"]["total_bytes"], (kb * 1024).to_string());

    let nics: BTreeSet<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "lo" && e.path().is_dir())
        .map(|e| format!("nic/{}", e.file_name().to_string_lossy()))
        .collect();
    let ours: BTreeSet<String> = hw
        .items
        .keys()
        .filter(|k| k.starts_with("nic/"))
        .cloned()
        .collect();
    assert_eq!(ours, nics);

    let osrelease = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(hw.items["os"]["kernel"], osrelease.trim());
    assert!(hw.items["os"].contains_key("arch"));

    // The root filesystem is always there and measured on the live system.
    let fs_root = &hw.items["fs//"];
    let size: u64 = fs_root["size_bytes"].parse().unwrap();
    let free: u64 = fs_root["free_bytes"].parse().unwrap();
    assert!(size > 0 && free <= size, "{fs_root:?}");
    // Free space is a whole percent of the size.
    assert_eq!(invsync_collect::hw::quantise_free(free, size), free);
}
