//! Snapshot test of the custom inventory (`custom/<name>` items) on the fixture root
//! `tests/fixtures/custom/`: a good JSON file, a good TOML file, a world-writable file, a file
//! with a number among its values, an oversized file, a badly named one, a file that is
//! neither data nor executable, a good script, a failing one, a slow one and one that prints
//! something other than JSON.
//!
//! Git keeps only the execute bit of a file, and a checkout's umask may leave files
//! group-writable, so the fixture is copied into a temporary root with explicit modes (644,
//! 755 for executables) and `open.json` made world-writable there. Only the custom items and
//! the warnings about `etc/invagent/inventory.d` are snapshotted: the other collectors warn
//! about the files this root lacks, which is not this test's subject.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use invsync_collect::hw::custom::DIR;
use invsync_collect::{CollectOptions, Collected, collect_with};
use invsync_proto::Class;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/custom")
        .join(DIR)
}

/// A copy of the fixture root with the modes the test needs.
fn root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(DIR);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let entry = entry.unwrap();
        let to = dir.join(entry.file_name());
        std::fs::copy(entry.path(), &to).unwrap();
        let executable = entry.metadata().unwrap().permissions().mode() & 0o111 != 0;
        let mode = if entry.file_name() == "open.json" {
            0o666
        } else if executable {
            0o755
        } else {
            0o644
        };
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    root
}

/// The test's own timeout for the slow script: long enough for a shell on a loaded machine
/// to print a line, short enough not to slow the suite.
const TIMEOUT: Duration = Duration::from_millis(1500);

fn custom(root: &Path) -> Collected {
    let options = CollectOptions {
        script_timeout: TIMEOUT,
    };
    collect_with(Class::Hw, root, &options)
}

fn json(c: &Collected) -> serde_json::Value {
    let items: serde_json::Map<String, serde_json::Value> = c
        .items
        .iter()
        .filter(|(k, _)| k.starts_with("custom/"))
        .map(|(k, v)| (k.clone(), serde_json::json!(v)))
        .collect();
    let warnings: Vec<&String> = c.warnings.iter().filter(|w| w.contains(DIR)).collect();
    serde_json::json!({ "items": items, "warnings": warnings, "keep_previous": c.keep_previous })
}

#[test]
fn custom_hw() {
    let root = root();
    let got = custom(root.path());
    insta::assert_json_snapshot!("custom_hw", json(&got));
    // The rules the snapshot encodes, stated once more so that accepting a wrong snapshot
    // cannot hide them.
    let keys: Vec<&str> = got
        .items
        .keys()
        .map(String::as_str)
        .filter(|k| k.starts_with("custom/"))
        .collect();
    assert_eq!(
        keys,
        ["custom/asset", "custom/hostinfo", "custom/warranty"],
        "only the good files and the good script give items"
    );
    assert_eq!(
        got.keep_previous,
        ["custom/failing", "custom/garbled", "custom/slow"],
        "a script that fails, times out or prints garbage keeps its previous item"
    );
    for name in [
        "open.json",
        "numbers.json",
        "big.json",
        "bad name.json",
        "README",
        "failing",
        "slow",
        "garbled",
    ] {
        let path = format!("{DIR}/{name}");
        assert_eq!(
            got.warnings.iter().filter(|w| w.contains(&path)).count(),
            1,
            "one warning names {path}: {:?}",
            got.warnings
        );
    }
}

#[test]
fn a_group_writable_directory_is_not_read_at_all() {
    let root = root();
    let dir = root.path().join(DIR);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o775)).unwrap();
    let got = custom(root.path());
    assert!(!got.items.keys().any(|k| k.starts_with("custom/")));
    assert!(got.keep_previous.is_empty());
    let warnings: Vec<&String> = got.warnings.iter().filter(|w| w.contains(DIR)).collect();
    assert_eq!(
        warnings,
        [&format!(
            "hw: custom inventory {DIR} skipped, nothing in it is read: it is writable by group or others (mode 0775); run chmod go-w on it"
        )]
    );
}

#[test]
fn no_directory_is_silent() {
    let root = tempfile::tempdir().unwrap();
    let got = custom(root.path());
    assert!(!got.items.keys().any(|k| k.starts_with("custom/")));
    assert!(got.keep_previous.is_empty());
    assert!(!got.warnings.iter().any(|w| w.contains("inventory.d")));
}
