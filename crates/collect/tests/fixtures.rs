//! Snapshot tests of the collectors on the fixture roots in `tests/fixtures/` of the
//! workspace: `debian` (a full Debian 12 server), `alpine` (an aarch64 container with apk)
//! and `minimal` (only os-release and the identity files). The snapshots hold items and
//! warnings, so a change of either is a visible diff in review.

use std::path::PathBuf;

use invsync_collect::{Collected, collect, dmi_identity, hostname, machine_id};
use invsync_proto::{Class, ClientName, Snapshot};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn json(c: &Collected) -> serde_json::Value {
    serde_json::json!({ "items": c.items, "warnings": c.warnings })
}

#[test]
fn debian_hw() {
    insta::assert_json_snapshot!("debian_hw", json(&collect(Class::Hw, &fixture("debian"))));
}

#[test]
fn debian_sw() {
    insta::assert_json_snapshot!("debian_sw", json(&collect(Class::Sw, &fixture("debian"))));
}

#[test]
fn alpine_hw() {
    insta::assert_json_snapshot!("alpine_hw", json(&collect(Class::Hw, &fixture("alpine"))));
}

#[test]
fn alpine_sw() {
    insta::assert_json_snapshot!("alpine_sw", json(&collect(Class::Sw, &fixture("alpine"))));
}

#[test]
fn minimal_hw() {
    insta::assert_json_snapshot!("minimal_hw", json(&collect(Class::Hw, &fixture("minimal"))));
}

#[test]
fn minimal_sw() {
    insta::assert_json_snapshot!("minimal_sw", json(&collect(Class::Sw, &fixture("minimal"))));
}

/// The rules of SPEC 4 that the snapshots encode, stated once more so that accepting a
/// wrong snapshot cannot hide them.
#[test]
fn debian_rules() {
    let hw = collect(Class::Hw, &fixture("debian"));
    let keys: Vec<&str> = hw.items.keys().map(String::as_str).collect();
    for k in [
        "system",
        "bios",
        "cpu",
        "memory",
        "os",
        "disk/sda",
        "disk/sdb",
        "disk/nvme0n1",
        "nic/eth0",
        "nic/docker0",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    for k in [
        "disk/loop0",
        "disk/dm-0",
        "disk/sr0",
        "nic/lo",
        "fs//proc",
        "fs//run",
        "fs//home",
    ] {
        assert!(!keys.contains(&k), "{k} must not be reported");
    }
    let fs: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| k.starts_with("fs/"))
        .collect();
    assert_eq!(
        fs,
        [
            "fs//",
            "fs//boot/efi",
            "fs//mnt/backup disk",
            "fs//srv/data"
        ]
    );
    let cpu = &hw.items["cpu"];
    assert_eq!(
        (
            &*cpu["sockets"],
            &*cpu["cores"],
            &*cpu["threads"],
            &*cpu["mhz"]
        ),
        ("2", "4", "8", "2200")
    );
    assert_eq!(
        hw.items["memory"]["total_bytes"],
        (65598516u64 * 1024).to_string()
    );
    assert_eq!(hw.items["disk/sdb"]["rotational"], "true");
    assert_eq!(
        hw.items["disk/sda"]["size_bytes"],
        (937703088u64 * 512).to_string()
    );
    assert!(!hw.items["nic/eth1"].contains_key("speed_mbps"));
    assert_eq!(hw.items["nic/eth0"]["speed_mbps"], "1000");
    assert_eq!(hw.items["os"]["version"], "12");
    assert_eq!(hw.items["os"]["kernel"], "6.1.0-18-amd64");
    assert!(hw.warnings.is_empty(), "{:?}", hw.warnings);

    let sw = collect(Class::Sw, &fixture("debian"));
    assert!(sw.warnings.is_empty(), "{:?}", sw.warnings);
    let pkg = |k: &str| sw.items.get(k);
    assert_eq!(
        pkg("dpkg/openssh-server/amd64").unwrap()["version"],
        "1:9.2p1-2+deb12u3",
        "held counts"
    );
    assert!(
        pkg("dpkg/nginx/amd64").is_none(),
        "config-files only is not installed"
    );
    assert!(
        pkg("dpkg/postgresql-15/amd64").is_none(),
        "half-installed is not installed"
    );
    assert!(
        pkg("dpkg/vim-tiny/amd64").is_none(),
        "unpacked is not installed"
    );
    assert!(pkg("dpkg/telnet/all").is_none());
    assert!(pkg("dpkg/libc6/i386").is_some() && pkg("dpkg/libc6/amd64").is_some());
    assert_eq!(pkg("dpkg/tzdata/all").unwrap()["arch"], "all");
    assert!(
        !pkg("dpkg/debian-archive-keyring/all")
            .unwrap()
            .contains_key("size_bytes")
    );
    assert_eq!(sw.items.len(), 23);
}

#[test]
fn alpine_rules() {
    let sw = collect(Class::Sw, &fixture("alpine"));
    assert_eq!(sw.items.len(), 13);
    assert_eq!(sw.items["apk/musl/aarch64"]["size_bytes"], "622592");
    assert!(sw.warnings.is_empty(), "{:?}", sw.warnings);
    let hw = collect(Class::Hw, &fixture("alpine"));
    assert_eq!(hw.items["cpu"]["model"], "ARM Neoverse-N1");
    assert_eq!(hw.items["cpu"]["threads"], "4");
    assert_eq!(hw.items["os"]["id"], "alpine");
}

#[test]
fn minimal_root_gives_warnings_not_failure() {
    let hw = collect(Class::Hw, &fixture("minimal"));
    assert_eq!(hw.items.keys().collect::<Vec<_>>(), ["net", "os"]);
    assert!(hw.warnings.len() >= 5, "{:?}", hw.warnings);
    let sw = collect(Class::Sw, &fixture("minimal"));
    assert!(sw.items.is_empty());
    assert_eq!(sw.warnings.len(), 1);
    assert!(sw.warnings[0].starts_with("sw: no package database found"));
}

#[test]
fn a_missing_root_is_warnings_only() {
    let c = collect(Class::Hw, &fixture("no-such-root"));
    assert!(c.items.is_empty());
    assert!(!c.warnings.is_empty());
}

/// Other crates enroll agents with these fixtures: their identities must make valid names.
#[test]
fn identities() {
    for (name, host, client) in [
        ("debian", "debian-fixture", "DEBIAN-FIXTURE"),
        ("alpine", "alpine-fixture", "ALPINE-FIXTURE"),
        ("minimal", "minimal-fixture", "MINIMAL-FIXTURE"),
    ] {
        let root = fixture(name);
        assert_eq!(hostname(&root).as_deref(), Some(host));
        assert_eq!(ClientName::from_hostname(host).unwrap().as_str(), client);
        let id = machine_id(&root).unwrap();
        assert!(
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{id}"
        );
    }
    assert_eq!(machine_id(&fixture("no-such-root")), None);
    assert_eq!(hostname(&fixture("no-such-root")), None);
}

/// What enrollment sends to recognise a reimaged machine: the DMI serial and product UUID, only
/// when both are readable.
#[test]
fn the_dmi_identity_needs_both_serial_and_uuid() {
    assert_eq!(
        dmi_identity(&fixture("debian")),
        Some((
            "7XJ3K53".to_string(),
            "4c4c4544-0058-4a10-8033-b7c04f4b3533".to_string()
        ))
    );
    // A UUID without a serial, and no DMI at all.
    assert_eq!(dmi_identity(&fixture("kvm-guest")), None);
    assert_eq!(dmi_identity(&fixture("minimal")), None);
}

/// Collecting a fixture twice gives the same snapshot hash: nothing depends on time or order.
#[test]
fn deterministic() {
    for class in Class::ALL {
        let a = Snapshot::new(collect(class, &fixture("debian")).items).hash();
        let b = Snapshot::new(collect(class, &fixture("debian")).items).hash();
        assert_eq!(a, b);
    }
}
