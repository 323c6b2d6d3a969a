//! The `custom/<name>` items: facts administrators add themselves, from
//! `etc/invagent/inventory.d/` under the root (as ConfigMgr's MOF extensions and osquery's
//! extensions allow).
//!
//! - `<name>.json` holds a JSON object whose values are all strings; `<name>.toml` a TOML
//!   table of `key = "string"` lines. Its entries become the attributes of `custom/<name>`.
//! - Any other file with an execute bit is a script, run with no arguments, no input and a
//!   minimal environment; it must print such a JSON object on its standard output and exit 0.
//!   The item is named after the file up to its first dot (`warranty.sh` gives
//!   `custom/warranty`).
//!
//! Nothing of a file is sent when it is writable by group or others, owned by anyone but root
//! (checked only when the root is the live `/`: a fixture tree or a mounted image belongs to
//! whoever unpacked it), over 64 KB, not an object of strings, or when its name is not a valid
//! item key part; each is a warning that names the file and what to change. The directory
//! itself must pass the same checks, or nothing in it is read.
//!
//! A script that fails, runs longer than [`CollectOptions::script_timeout`] (killed, with its
//! process group) or prints something unreadable says nothing about its facts, so its item is
//! not reported as removed: the collector names its key in `Collected::keep_previous` and the
//! agent keeps the item it last had acknowledged. Scripts are outside the 20 ms budget of the
//! inventory, which covers reading files; a script costs what it costs, within its timeout.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use invsync_proto::{Attrs, Items};

use crate::read::{Reader, io_message};

/// The directory of custom inventory files and scripts, under the root.
pub const DIR: &str = "etc/invagent/inventory.d";

/// The largest file, or script output, read.
pub const MAX_BYTES: u64 = 64 * 1024;

/// The longest name and attribute name.
const MAX_NAME: usize = 64;

/// What the file is, by its name and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Json,
    Toml,
    Script,
}

/// Whether `name` may follow `custom/` in an item key: 1 to 64 ASCII letters, digits, `-`,
/// `_` and `.`, not starting with a dot.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `name` may be an attribute name: 1 to 64 characters, none of them a control
/// character.
fn valid_attribute(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && !name.chars().any(char::is_control)
}

/// Checks an object's entries and makes them attributes.
fn attrs_of<'a>(
    entries: impl Iterator<Item = (&'a String, Option<&'a str>)>,
) -> Result<Attrs, String> {
    let mut attrs = Attrs::new();
    for (key, value) in entries {
        if !valid_attribute(key) {
            return Err(format!(
                "{key:?} is not an attribute name (1 to {MAX_NAME} characters, no control characters)"
            ));
        }
        let Some(value) = value else {
            return Err(format!(
                "the value of {key:?} is not a string (quote it: every value must be a string)"
            ));
        };
        attrs.insert(key.clone(), value.to_string());
    }
    Ok(attrs)
}

/// Parses a JSON object of string values; the error says what is wrong.
pub fn parse_json(text: &str) -> Result<Attrs, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("it is not JSON ({e})"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("it is not a JSON object of strings".to_string());
    };
    attrs_of(map.iter().map(|(k, v)| (k, v.as_str())))
}

/// Parses a TOML table of string values (no sub-tables); the error says what is wrong.
pub fn parse_toml(text: &str) -> Result<Attrs, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("it is not TOML ({})", e.message()))?;
    attrs_of(table.iter().map(|(k, v)| (k, v.as_str())))
}

/// Why a file or directory may not be trusted, if it may not: writable by group or others
/// always, owned by anyone but root only on the live system.
fn unsafe_because(meta: &std::fs::Metadata, live: bool) -> Option<String> {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Some(format!(
            "it is writable by group or others (mode {mode:04o}); run chmod go-w on it"
        ));
    }
    if live && meta.uid() != 0 {
        return Some(format!(
            "it is owned by uid {}, not root; run chown root on it",
            meta.uid()
        ));
    }
    None
}

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    let Some(files) = r.list_dir(DIR) else {
        return;
    };
    let live = r.live();
    match std::fs::metadata(r.path(DIR)) {
        Ok(meta) => {
            if let Some(why) = unsafe_because(&meta, live) {
                r.warn(&format!(
                    "custom inventory {DIR} skipped, nothing in it is read: {why}"
                ));
                return;
            }
        }
        Err(e) => {
            r.warn(&format!("cannot read {DIR}: {}", io_message(&e)));
            return;
        }
    }
    let mut seen = BTreeSet::new();
    // Hidden files are editors' and package managers' leftovers, not facts.
    for file in files.iter().filter(|f| !f.starts_with('.')) {
        let rel = format!("{DIR}/{file}");
        let meta = match std::fs::metadata(r.path(&rel)) {
            Ok(m) => m,
            Err(e) => {
                r.warn(&format!("cannot read {rel}: {}", io_message(&e)));
                continue;
            }
        };
        if !meta.is_file() {
            r.warn(&format!(
                "custom inventory {rel} skipped: it is not a regular file"
            ));
            continue;
        }
        let (name, kind) = if let Some(n) = file.strip_suffix(".json") {
            (n, Kind::Json)
        } else if let Some(n) = file.strip_suffix(".toml") {
            (n, Kind::Toml)
        } else if meta.permissions().mode() & 0o111 != 0 {
            (file.split('.').next().unwrap_or(file), Kind::Script)
        } else {
            r.warn(&format!(
                "custom inventory {rel} skipped: it is neither <name>.json, <name>.toml nor executable"
            ));
            continue;
        };
        if !valid_name(name) {
            r.warn(&format!(
                "custom inventory {rel} skipped: {name:?} is not a valid item name (1 to {MAX_NAME} letters, digits, '-', '_' or '.'); rename the file"
            ));
            continue;
        }
        if let Some(why) = unsafe_because(&meta, live) {
            r.warn(&format!("custom inventory {rel} skipped: {why}"));
            continue;
        }
        if !seen.insert(name.to_string()) {
            r.warn(&format!(
                "custom inventory {rel} skipped: another file already gives custom/{name}; keep one"
            ));
            continue;
        }
        let key = format!("custom/{name}");
        if kind == Kind::Script {
            let timeout = r.options().script_timeout;
            match run_script(&r.path(&rel), timeout).and_then(|out| parse_json(&out)) {
                Ok(attrs) => {
                    items.insert(key, attrs);
                }
                Err(why) => {
                    r.warn(&format!(
                        "custom inventory script {rel} skipped, its previous item is kept: {why}"
                    ));
                    r.keep_previous(key);
                }
            }
            continue;
        }
        if meta.len() > MAX_BYTES {
            r.warn(&format!(
                "custom inventory {rel} skipped: it is {} bytes, over the limit of {MAX_BYTES}",
                meta.len()
            ));
            continue;
        }
        let Some(text) = r.read(&rel) else {
            continue;
        };
        let parsed = match kind {
            Kind::Json => parse_json(&text),
            _ => parse_toml(&text),
        };
        match parsed {
            Ok(attrs) => {
                items.insert(key, attrs);
            }
            Err(why) => r.warn(&format!("custom inventory {rel} skipped: {why}")),
        }
    }
}

/// What the thread that reads a script's output reports.
type Finished = (Result<Vec<u8>, String>, std::io::Result<ExitStatus>);

/// Runs a script and returns its standard output, or why it gave none: it could not start,
/// exited with a failure, printed more than [`MAX_BYTES`] or ran past `timeout`. A killed
/// script's whole process group is killed, so a `sleep` it started does not linger.
fn run_script(path: &Path, timeout: Duration) -> Result<String, String> {
    let mut child = Command::new(path)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LC_ALL", "C")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("it could not be started ({})", io_message(&e)))?;
    let group = i32::try_from(child.id()).unwrap_or(0);
    let kill_group = move || {
        if group > 0 {
            // SAFETY: kill(2) has no memory effects; a negative pid names the process group
            // the script leads (spawned with process_group(0)).
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
    };
    let Some(mut stdout) = child.stdout.take() else {
        kill_group();
        let _ = child.wait();
        return Err("its output could not be read".to_string());
    };
    let (tx, rx) = mpsc::channel::<Finished>();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let read = (&mut stdout)
            .take(MAX_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("its output could not be read ({})", io_message(&e)));
        let read = match read {
            Ok(_) if out.len() as u64 > MAX_BYTES => {
                kill_group();
                Err(format!("it printed more than {MAX_BYTES} bytes"))
            }
            Ok(_) => Ok(out),
            Err(e) => Err(e),
        };
        drop(stdout);
        let status = child.wait();
        // The receiver is gone only when the collector gave up on this script already.
        let _ = tx.send((read, status));
    });
    let (out, status) = match rx.recv_timeout(timeout) {
        Ok(done) => done,
        Err(_) => {
            kill_group();
            // The group is killed, so the reader sees the end of the pipe and reaps the
            // script at once; the wait is bounded all the same.
            let _ = rx.recv_timeout(Duration::from_secs(1));
            return Err(format!(
                "it ran longer than {} ms and was killed",
                timeout.as_millis()
            ));
        }
    };
    let out = out?;
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(format!("it failed ({s})")),
        Err(e) => return Err(format!("it could not be waited for ({})", io_message(&e))),
    }
    String::from_utf8(out).map_err(|_| "its output is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Attrs {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn json_objects_of_strings_only() {
        assert_eq!(
            parse_json(r#"{"tag": "IT-1", "room": "B2"}"#),
            Ok(attrs(&[("room", "B2"), ("tag", "IT-1")]))
        );
        assert_eq!(parse_json("{}"), Ok(Attrs::new()));
        assert_eq!(
            parse_json(r#"{"cores": 4}"#).unwrap_err(),
            "the value of \"cores\" is not a string (quote it: every value must be a string)"
        );
        assert_eq!(
            parse_json(r#"["a"]"#).unwrap_err(),
            "it is not a JSON object of strings"
        );
        assert!(parse_json("{").unwrap_err().starts_with("it is not JSON ("));
        assert!(
            parse_json(r#"{"": "x"}"#)
                .unwrap_err()
                .starts_with("\"\" is not an attribute name")
        );
    }

    #[test]
    fn toml_tables_of_strings_only() {
        assert_eq!(
            parse_toml("# warranty\nvendor = \"Dell\"\n'ends on' = '2027-03-31'\n"),
            Ok(attrs(&[("ends on", "2027-03-31"), ("vendor", "Dell")]))
        );
        assert_eq!(
            parse_toml("[section]\na = \"b\"\n").unwrap_err(),
            "the value of \"section\" is not a string (quote it: every value must be a string)"
        );
        assert!(
            parse_toml("a = ")
                .unwrap_err()
                .starts_with("it is not TOML (")
        );
    }

    #[test]
    fn owners_count_on_the_live_system_only_and_modes_always() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("facts.json");
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        // Owned by whoever runs the tests; chown to uid 4242 where the tests run as root.
        let uid = unsafe { libc::geteuid() };
        let owner = if uid == 0 {
            std::os::unix::fs::chown(&path, Some(4242), None).unwrap();
            4242
        } else {
            uid
        };
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(unsafe_because(&meta, false), None);
        assert_eq!(
            unsafe_because(&meta, true),
            Some(format!(
                "it is owned by uid {owner}, not root; run chown root on it"
            ))
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o620)).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            unsafe_because(&meta, false),
            Some("it is writable by group or others (mode 0620); run chmod go-w on it".into())
        );
    }

    #[test]
    fn names_are_item_key_parts() {
        for ok in ["asset", "warranty-2", "a.b_c", "X"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".hidden", "has space", "a/b", "é", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
