//! Snapshot tests of the software sources of issue 19 on their fixture roots in
//! `tests/fixtures/` of the workspace: `rpm-sqlite` (a real rpm 4.18 SQLite database with
//! install-only and multilib packages and two `gpg-pubkey` entries; `README.fixture` there
//! says how it was made) and `desktop` (an Ubuntu desktop with dpkg, snaps, flatpaks and pip
//! installs). The snapshots hold items and warnings; the rules beside them are stated once
//! more so that accepting a wrong snapshot cannot hide them.

use std::path::PathBuf;

use invsync_collect::{Collected, collect};
use invsync_proto::{Class, Snapshot};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn json(c: &Collected) -> serde_json::Value {
    serde_json::json!({ "items": c.items, "warnings": c.warnings })
}

fn keys(c: &Collected, prefix: &str) -> Vec<String> {
    c.items
        .keys()
        .filter(|k| k.starts_with(prefix))
        .cloned()
        .collect()
}

#[test]
fn rpm_sqlite_sw() {
    insta::assert_json_snapshot!(
        "rpm_sqlite_sw",
        json(&collect(Class::Sw, &fixture("rpm-sqlite")))
    );
}

#[test]
fn desktop_sw() {
    insta::assert_json_snapshot!("desktop_sw", json(&collect(Class::Sw, &fixture("desktop"))));
}

#[test]
fn rpm_sqlite_rules() {
    let root = fixture("rpm-sqlite");
    let db = root.join("var/lib/rpm");
    let before: Vec<_> = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let sw = collect(Class::Sw, &root);
    assert!(sw.warnings.is_empty(), "{:?}", sw.warnings);
    assert_eq!(
        keys(&sw, "rpm/"),
        [
            "rpm/bash/x86_64",
            "rpm/glibc/i686",
            "rpm/glibc/x86_64",
            "rpm/gpg-pubkey/(none)/13846e69-6b16db24",
            "rpm/gpg-pubkey/(none)/8588b37e-6b16db24",
            "rpm/kernel-core/x86_64/6.8.5-301.fc40",
            "rpm/kernel-core/x86_64/6.9.7-200.fc40",
            "rpm/openssl-libs/x86_64",
            "rpm/tzdata/noarch",
        ]
    );
    assert_eq!(sw.items.len(), 9);
    let k = &sw.items["rpm/kernel-core/x86_64/6.8.5-301.fc40"];
    assert_eq!(
        (
            &*k["name"],
            &*k["version"],
            &*k["arch"],
            &*k["source"],
            &*k["size_bytes"]
        ),
        ("kernel-core", "6.8.5-301.fc40", "x86_64", "rpm", "40000")
    );
    assert_eq!(
        sw.items["rpm/openssl-libs/x86_64"]["version"],
        "1:3.2.2-3.fc40"
    );
    assert_eq!(sw.items["rpm/bash/x86_64"]["version"], "5.2.26-3.fc40");
    // Reading wrote nothing beside the database: no journal, no shared memory, no lock.
    let after: Vec<_> = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn desktop_rules() {
    let sw = collect(Class::Sw, &fixture("desktop"));
    assert!(sw.warnings.is_empty(), "{:?}", sw.warnings);
    assert_eq!(
        keys(&sw, "snap/"),
        [
            "snap/bare/all",
            "snap/core22/all",
            "snap/firefox/all",
            "snap/hello-world_dev/all",
            "snap/snapd/all",
        ]
    );
    let core = &sw.items["snap/core22/all"];
    assert_eq!(
        (
            &*core["version"],
            &*core["revision"],
            &*core["channel"],
            &*core["source"]
        ),
        ("20240408", "1380", "latest/stable", "snap")
    );
    assert_eq!(
        sw.items["snap/firefox/all"]["channel"],
        "latest/stable/ubuntu-24.04"
    );
    // Not mounted: the state has no version for it.
    assert!(!sw.items["snap/hello-world_dev/all"].contains_key("version"));

    assert_eq!(
        keys(&sw, "flatpak/"),
        [
            "flatpak/org.gimp.GIMP/x86_64/beta",
            "flatpak/org.gimp.GIMP/x86_64/stable",
            "flatpak/org.gnome.Calculator/x86_64",
            "flatpak/org.videolan.VLC/x86_64",
        ]
    );
    let calc = &sw.items["flatpak/org.gnome.Calculator/x86_64"];
    assert_eq!(
        (
            &*calc["version"],
            &*calc["branch"],
            &*calc["origin"],
            &*calc["arch"]
        ),
        ("46.1", "stable", "flathub", "x86_64")
    );
    assert_eq!(
        sw.items["flatpak/org.gimp.GIMP/x86_64/beta"]["origin"],
        "flathub-beta"
    );
    assert_eq!(
        sw.items["flatpak/org.gimp.GIMP/x86_64/beta"]["version"],
        "2.99.18"
    );
    assert_eq!(
        sw.items["flatpak/org.videolan.VLC/x86_64"]["version"],
        "3.0.21"
    );

    assert_eq!(keys(&sw, "pip/"), ["pip/requests/all", "pip/urllib3/all"]);
    let req = &sw.items["pip/requests/all"];
    assert_eq!(
        (
            &*req["name"],
            &*req["version"],
            &*req["arch"],
            &*req["source"]
        ),
        ("requests", "2.32.3", "all", "pip")
    );
    assert_eq!(keys(&sw, "dpkg/").len(), 4);
    assert_eq!(sw.items.len(), 15);
}

/// Collecting twice gives the same snapshot hash: nothing depends on time or order.
#[test]
fn deterministic() {
    for name in ["rpm-sqlite", "desktop"] {
        let a = Snapshot::new(collect(Class::Sw, &fixture(name)).items).hash();
        let b = Snapshot::new(collect(Class::Sw, &fixture(name)).items).hash();
        assert_eq!(a, b, "{name}");
    }
}
