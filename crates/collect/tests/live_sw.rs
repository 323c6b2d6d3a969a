//! The software sources of issue 19 (rpm's SQLite database, snaps, flatpaks, pip installs) on
//! the machine running the tests (root `/`), compared with what the machine's own tools and
//! files say. Where a source is absent, the test asserts that it gives no items and no
//! warnings; where `rpm` is installed, the `rpm-sqlite` fixture is also compared with
//! `rpm -qa` on a copy of it, and without `rpm`, with its own row count.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use invsync_collect::{Collected, collect};
use invsync_proto::Class;

type Triple = (String, String, String);

fn triples(c: &Collected, source: &str) -> BTreeSet<Triple> {
    c.items
        .values()
        .filter(|a| a.get("source").map(String::as_str) == Some(source))
        .map(|a| {
            (
                a["name"].clone(),
                a.get("version").cloned().unwrap_or_default(),
                a["arch"].clone(),
            )
        })
        .collect()
}

fn warnings_about(c: &Collected, word: &str) -> Vec<String> {
    c.warnings
        .iter()
        .filter(|w| w.contains(word))
        .cloned()
        .collect()
}

/// `rpm -qa` under `root` with the given database directory, as (name, version, arch), or
/// `None` when no `rpm` program runs here.
fn rpm_qa(root: &Path, dbpath: &str) -> Option<BTreeSet<Triple>> {
    let out = Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", dbpath, "-qa", "--qf"])
        .arg("%{NAME}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\t%{ARCH}\\n")
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "rpm -qa failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() == 3).then(|| {
                    let v = f[1].strip_prefix("0:").unwrap_or(f[1]);
                    (f[0].to_string(), v.to_string(), f[2].to_string())
                })
            })
            .collect(),
    )
}

#[test]
fn rpm_equals_rpm_qa() {
    let sw = collect(Class::Sw, Path::new("/"));
    let ours = triples(&sw, "rpm");
    let db = ["usr/lib/sysimage/rpm", "var/lib/rpm"]
        .into_iter()
        .find(|d| Path::new("/").join(d).join("rpmdb.sqlite").exists());
    match db {
        Some(d) => {
            let theirs = rpm_qa(Path::new("/"), &format!("/{d}"))
                .expect("an rpm database is here, so rpm must be installed to check the collector");
            assert!(!theirs.is_empty());
            assert_eq!(ours, theirs);
            assert_eq!(warnings_about(&sw, "rpm"), Vec::<String>::new());
        }
        None => {
            // An empty /var/lib/rpm (the rpm tool installed on Debian) is not a database.
            assert_eq!(ours, BTreeSet::new());
            assert_eq!(warnings_about(&sw, "rpm"), Vec::<String>::new());
        }
    }
}

#[test]
fn rpm_fixture_equals_rpm_qa() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/rpm-sqlite");
    let ours = triples(&collect(Class::Sw, &fixture), "rpm");
    // rpm writes its shared memory and log files beside the database: work on a copy.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("var/lib/rpm");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::copy(
        fixture.join("var/lib/rpm/rpmdb.sqlite"),
        db.join("rpmdb.sqlite"),
    )
    .unwrap();
    match rpm_qa(dir.path(), "/var/lib/rpm") {
        Some(theirs) => assert_eq!(ours, theirs),
        None => {
            let conn = rusqlite::Connection::open(db.join("rpmdb.sqlite")).unwrap();
            let rows: i64 = conn
                .query_row("SELECT count(*) FROM Packages", [], |r| r.get(0))
                .unwrap();
            assert_eq!(rows, 9);
            assert_eq!(ours.len() as i64, rows);
        }
    }
}

#[test]
fn snaps_match_snapd_state() {
    let sw = collect(Class::Sw, Path::new("/"));
    let ours: BTreeSet<String> = sw
        .items
        .keys()
        .filter_map(|k| k.strip_prefix("snap/"))
        .filter_map(|k| k.strip_suffix("/all"))
        .map(str::to_string)
        .collect();
    assert_eq!(warnings_about(&sw, "snap"), Vec::<String>::new());
    let state = Path::new("/var/lib/snapd/state.json");
    if !state.exists() {
        if !Path::new("/snap").exists() {
            assert_eq!(ours, BTreeSet::new());
        }
        return;
    }
    // The state read by a general JSON parser: every snap with a current revision.
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    let theirs: BTreeSet<String> = v["data"]["snaps"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, s)| {
                    let c = &s["current"];
                    let n = c.as_i64().or_else(|| c.as_str()?.trim().parse().ok());
                    n.is_some_and(|n| n != 0)
                })
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(ours, theirs);
}

#[test]
fn flatpaks_match_the_installation() {
    let sw = collect(Class::Sw, Path::new("/"));
    let ours: BTreeSet<Triple> = sw
        .items
        .values()
        .filter(|a| a["source"] == "flatpak")
        .map(|a| (a["name"].clone(), a["arch"].clone(), a["branch"].clone()))
        .collect();
    assert_eq!(warnings_about(&sw, "flatpak"), Vec::<String>::new());
    let apps = Path::new("/var/lib/flatpak/app");
    if !apps.exists() {
        assert_eq!(ours, BTreeSet::new());
        return;
    }
    let out = Command::new("flatpak")
        .args([
            "list",
            "--system",
            "--app",
            "--columns=application,arch,branch",
        ])
        .output()
        .expect("a system flatpak installation is here, so flatpak must be installed to check it");
    let theirs: BTreeSet<Triple> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 3).then(|| (f[0].into(), f[1].into(), f[2].into()))
        })
        .collect();
    assert_eq!(ours, theirs);
}

/// A distribution's name as its dist-info directory spells it (PEP 427: runs of `-`, `_` and
/// `.` become `_`), lowercased.
fn normalise(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = if matches!(c, '-' | '.') { '_' } else { c };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

#[test]
fn pip_matches_dist_info_directories() {
    let sw = collect(Class::Sw, Path::new("/"));
    assert_eq!(warnings_about(&sw, "dist-info"), Vec::<String>::new());
    let ours: BTreeSet<(String, String)> = sw
        .items
        .values()
        .filter(|a| a["source"] == "pip")
        .map(|a| {
            (
                normalise(&a["name"]),
                a.get("version").cloned().unwrap_or_default(),
            )
        })
        .collect();
    // Every dist-info directory of the places pip installs to, named `<name>-<version>`.
    let mut theirs = BTreeSet::new();
    for (lib, packages, pip_only) in [
        ("/usr/local/lib", "dist-packages", false),
        ("/usr/local/lib", "site-packages", false),
        ("/usr/lib", "site-packages", true),
    ] {
        let Ok(pythons) = std::fs::read_dir(lib) else {
            continue;
        };
        for python in pythons.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()) {
            if !python.starts_with("python3") {
                continue;
            }
            let dir = Path::new(lib).join(&python).join(packages);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                let Some(stem) = name.strip_suffix(".dist-info") else {
                    continue;
                };
                let installer = std::fs::read_to_string(dir.join(&name).join("INSTALLER"));
                if pip_only && installer.as_deref().map(str::trim).ok() != Some("pip") {
                    continue;
                }
                if let Some((n, v)) = stem.split_once('-') {
                    theirs.insert((normalise(n), v.to_string()));
                }
            }
        }
    }
    assert_eq!(ours, theirs);
}
