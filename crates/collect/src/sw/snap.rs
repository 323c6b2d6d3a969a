//! Snaps installed by snapd (Ubuntu and others), as items `snap/<instance>/all` with `name`
//! (the snap's name; the instance name differs for a second instance, `hello_dev`),
//! `version`, `revision` and `channel`.
//!
//! snapd keeps what is installed in `var/lib/snapd/state.json`, under `data.snaps`: per snap
//! (by instance name, `hello_foo` for a second instance) the `current` revision, the tracked
//! `channel`, and the `sequence` of revisions kept on disk, each with its own `revision` and the
//! `channel` it came from. The file also holds snapd's changes, tasks and warnings and can be
//! several megabytes, so it is parsed into borrowed structs that name only those fields;
//! everything else is skipped by the parser without being built. The state has no version (the
//! version is in the snap itself), so the version is read from the mounted snap's
//! `meta/snap.yaml`, at `snap/<name>/<revision>` (Debian, Ubuntu) or
//! `var/lib/snapd/snap/<name>/<revision>` (Fedora, Arch), when it is mounted; a sequence entry
//! that carries a `version` is believed first.
//!
//! Without a state file (a root copied without `var/lib/snapd`, or snapd's own file unreadable),
//! each mounted `snap/<name>/current/meta/snap.yaml` is read instead, with the revision from the
//! `current` link and no channel. `snap.yaml` is read by a small line parser for the top-level
//! `name:` and `version:` keys; YAML's other forms are not needed for them.
//!
//! The key's architecture is `all`: neither file says which architecture a snap was built for
//! in one word (`architectures:` is a list, often absent), and a machine installs only snaps
//! of its own, so a fixed word keeps the key stable.

use std::borrow::Cow;
use std::collections::BTreeMap;

use invsync_proto::Items;
use serde::Deserialize;

use super::package_attrs;
use crate::read::Reader;

pub(crate) const STATE: &str = "var/lib/snapd/state.json";

/// Where snaps are mounted: Debian and Ubuntu first, then the distributions that keep `/snap`
/// out of the root directory.
const MOUNT_DIRS: [&str; 2] = ["snap", "var/lib/snapd/snap"];

/// The architecture word of every snap item (see the module documentation).
const ARCH: &str = "all";

/// Adds the installed snaps; returns whether snapd's state or a mounted snap is there.
pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) -> bool {
    // The state is readable by root only; an agent running as another user, or a state that
    // does not parse, still inventories the mounted snaps after its warning.
    if r.exists(STATE) {
        if let Some(text) = r.read(STATE) {
            match parse_state(&text) {
                Ok(records) => {
                    for rec in records {
                        let version = match rec.version {
                            Some(v) => Some(v.into_owned()),
                            None => mounted_version(r, &rec.instance, &rec.revision),
                        };
                        add(
                            items,
                            &rec.instance,
                            &rec.name,
                            version.as_deref(),
                            &rec.revision,
                            rec.channel.as_deref(),
                        );
                    }
                    return true;
                }
                Err(e) => r.warn(&format!(
                    "snapd's state was not read, only mounted snaps are listed: {STATE} is not snapd's state ({e})"
                )),
            }
        }
        collect_mounted(r, items);
        return true;
    }
    collect_mounted(r, items)
}

/// Adds the mounted snaps (`<mount dir>/<name>/current/meta/snap.yaml`); returns whether there
/// was one.
fn collect_mounted(r: &mut Reader<'_>, items: &mut Items) -> bool {
    let mut found = false;
    for dir in MOUNT_DIRS {
        let Some(names) = r.list_dir(dir) else {
            continue;
        };
        for name in names {
            let current = format!("{dir}/{name}/current");
            // `current` links to the revision's directory by its number; a name without one
            // (`bin`, `README`) is not a snap.
            let Ok(target) = std::fs::read_link(r.path(&current)) else {
                continue;
            };
            let revision = target.to_string_lossy().into_owned();
            let Some(text) = r.read_optional(&format!("{current}/meta/snap.yaml")) else {
                continue;
            };
            // The directory is the instance name, which the key needs; snap.yaml names the snap.
            let (Some(snap_name), version) = parse_snap_yaml(&text) else {
                continue;
            };
            found = true;
            add(items, &name, snap_name, version, &revision, None);
        }
        if found {
            break;
        }
    }
    found
}

/// Adds one snap: keyed by its instance name, named by its snap name.
fn add(
    items: &mut Items,
    instance: &str,
    name: &str,
    version: Option<&str>,
    revision: &str,
    channel: Option<&str>,
) {
    let mut attrs = package_attrs("snap", name, version.unwrap_or(""), ARCH);
    attrs.insert("revision".into(), revision.to_string());
    if let Some(c) = channel.filter(|c| !c.is_empty()) {
        attrs.insert("channel".into(), c.to_string());
    }
    items.insert(format!("snap/{instance}/{ARCH}"), attrs);
}

/// The version in the mounted snap's `meta/snap.yaml`, if it is mounted.
fn mounted_version(r: &Reader<'_>, name: &str, revision: &str) -> Option<String> {
    MOUNT_DIRS.iter().find_map(|dir| {
        let text = r.read_quiet(&format!("{dir}/{name}/{revision}/meta/snap.yaml"))?;
        parse_snap_yaml(&text).1.map(str::to_string)
    })
}

/// One installed snap, as snapd's state holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapRecord<'a> {
    /// The instance name (the key of `data.snaps`): the snap's name, `_` and the instance key
    /// for a second instance (`hello_dev`).
    pub instance: Cow<'a, str>,
    /// The snap's name, from the current revision's sequence entry, else the instance name
    /// without its key.
    pub name: Cow<'a, str>,
    /// The current revision: a number, negative for a locally installed snap (`x1` in `snap
    /// list`).
    pub revision: String,
    /// The tracked channel, else the channel the current revision came from.
    pub channel: Option<Cow<'a, str>>,
    /// Only when the sequence entry of the current revision carries one.
    pub version: Option<Cow<'a, str>>,
}

/// Why a state file was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SnapStateError(#[from] serde_json::Error);

/// The message of the error that stops the parser once `data` is read: snapd writes `data`
/// first and its changes and tasks after it, often most of the file, so what follows is never
/// looked at. serde has no other way for a visitor to stop early.
const STOP: &str = "invsync: snapd data read";

/// The top-level object's `data` member, parsed up to its end and no further.
fn read_data(text: &str) -> Result<Option<Data<'_>>, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut slot = None;
    let mut de = serde_json::Deserializer::from_str(text);
    match DataSeed(&mut slot).deserialize(&mut de) {
        Ok(()) => {
            de.end()?;
            Ok(slot)
        }
        Err(e) if slot.is_some() && e.to_string().starts_with(STOP) => Ok(slot),
        Err(e) => Err(e),
    }
}

/// Fills its slot with the `data` member, then stops the parser with [`STOP`].
struct DataSeed<'s, 'a>(&'s mut Option<Data<'a>>);

impl<'de> serde::de::DeserializeSeed<'de> for DataSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for DataSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("snapd's state, a JSON object")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        use serde::de::Error;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "data" {
                let data: Option<Data<'de>> = map.next_value()?;
                *self.0 = Some(data.unwrap_or_default());
                return Err(M::Error::custom(STOP));
            }
            map.next_value::<serde::de::IgnoredAny>()?;
        }
        Ok(())
    }
}

#[derive(Deserialize, Default)]
struct Data<'a> {
    #[serde(borrow, default)]
    snaps: Option<BTreeMap<Cow<'a, str>, SnapState<'a>>>,
}

#[derive(Deserialize)]
struct SnapState<'a> {
    #[serde(default)]
    current: Option<Revision>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sequence: Vec<SideInfo<'a>>,
}

#[derive(Deserialize)]
struct SideInfo<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    revision: Option<Revision>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    version: Option<Cow<'a, str>>,
}

/// A revision, which snapd writes as a string (`"1380"`) and older versions as a number.
#[derive(Deserialize, Clone, PartialEq, Eq)]
#[serde(untagged)]
enum Revision {
    Number(i64),
    Text(String),
}

impl Revision {
    /// The revision as a number's text, or `None` for "unset" (0, empty, not a number).
    fn text(&self) -> Option<String> {
        let n = match self {
            Revision::Number(n) => *n,
            Revision::Text(t) => t.trim().parse::<i64>().ok()?,
        };
        (n != 0).then(|| n.to_string())
    }
}

/// Parses snapd's `state.json` into the installed snaps, sorted by name. A snap without a
/// current revision (being installed for the first time) is left out. Invalid JSON up to the
/// end of `data`, or a `data.snaps` that is not an object of snap states, is an error; what
/// follows `data` is not read (snapd writes the file atomically, and its changes and tasks
/// are not inventoried).
pub fn parse_state(text: &str) -> Result<Vec<SnapRecord<'_>>, SnapStateError> {
    let snaps = read_data(text)?.and_then(|d| d.snaps).unwrap_or_default();
    let mut out = Vec::with_capacity(snaps.len());
    for (instance, snap) in snaps {
        let Some(revision) = snap.current.as_ref().and_then(Revision::text) else {
            continue;
        };
        if instance.is_empty() {
            continue;
        }
        let entry = snap
            .sequence
            .into_iter()
            .find(|s| s.revision.as_ref().and_then(Revision::text).as_deref() == Some(&revision));
        let (entry_name, entry_channel, version) = match entry {
            Some(e) => (e.name, e.channel, e.version),
            None => (None, None, None),
        };
        let name = entry_name.filter(|n| !n.is_empty()).unwrap_or_else(|| {
            match instance.split_once('_') {
                Some((n, _)) => Cow::Owned(n.to_string()),
                None => instance.clone(),
            }
        });
        let channel = snap
            .channel
            .filter(|c| !c.is_empty())
            .or(entry_channel.filter(|c| !c.is_empty()));
        out.push(SnapRecord {
            instance,
            name,
            revision,
            channel,
            version: version.filter(|v| !v.is_empty()),
        });
    }
    Ok(out)
}

/// The top-level `name:` and `version:` of a `snap.yaml`, unquoted. Indented lines belong to
/// nested keys (an app's `version` is not the snap's) and are skipped, as are comments.
pub fn parse_snap_yaml(text: &str) -> (Option<&str>, Option<&str>) {
    let mut name = None;
    let mut version = None;
    for line in text.lines() {
        if line.starts_with([' ', '\t', '#']) {
            continue;
        }
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        let val = unquote(val);
        match key {
            "name" if name.is_none() => name = val,
            "version" if version.is_none() => version = val,
            _ => {}
        }
    }
    (name, version)
}

/// A scalar's text: trimmed, a trailing comment dropped, surrounding quotes removed; `None`
/// when empty.
fn unquote(val: &str) -> Option<&str> {
    let v = val.trim();
    let v = if let Some(q) = v.strip_prefix('\'').or_else(|| v.strip_prefix('"')) {
        let quote = if v.starts_with('\'') { '\'' } else { '"' };
        q.find(quote).map_or(q, |end| &q[..end])
    } else {
        // An unquoted scalar ends at ` #`.
        v.find(" #").map_or(v, |i| v[..i].trim_end())
    };
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE_TEXT: &str = r#"{"data":{"auth":{"users":[]},"snaps":{
        "core22":{"type":"base","sequence":[{"name":"core22","snap-id":"amcUKQILKXHHTlmSa7NMdnXSx02dNeeT","revision":"1122","channel":"latest/stable"},{"name":"core22","snap-id":"amcUKQILKXHHTlmSa7NMdnXSx02dNeeT","revision":"1380","channel":"latest/stable"}],"active":true,"current":"1380","channel":"latest/stable"},
        "hello_dev":{"type":"app","sequence":[{"name":"hello","revision":"-1","version":"2.10-local"}],"active":true,"current":"-1"},
        "installing":{"type":"app","sequence":[],"current":"unset"},
        "other_x":{"sequence":[{"revision":"6"}],"current":"7"},
        "firefox":{"type":"app","sequence":[{"name":"firefox","revision":4173,"channel":"latest/stable"}],"active":false,"current":4173,"channel":"latest/stable/fix-1"}
    }},"changes":{"1":{"id":"1","kind":"install-snap","summary":"Install \"core22\" snap","status":4}},"tasks":{}}"#;

    /// Instance, name, revision, channel, version.
    type Row<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

    #[test]
    fn state() {
        let recs = parse_state(STATE_TEXT).unwrap();
        let got: Vec<Row<'_>> = recs
            .iter()
            .map(|r| {
                (
                    &*r.instance,
                    &*r.name,
                    &*r.revision,
                    r.channel.as_deref(),
                    r.version.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("core22", "core22", "1380", Some("latest/stable"), None),
                (
                    "firefox",
                    "firefox",
                    "4173",
                    Some("latest/stable/fix-1"),
                    None
                ),
                ("hello_dev", "hello", "-1", None, Some("2.10-local")),
                ("other_x", "other", "7", None, None),
            ]
        );
        assert!(parse_state("{}").unwrap().is_empty());
        assert!(parse_state(r#"{"data":{}}"#).unwrap().is_empty());
        assert!(parse_state("").is_err());
        assert!(parse_state(r#"{"data":{"snaps":[]}}"#).is_err());
        assert!(parse_state(r#"{"data":{"snaps":{"x":{"current":[1]}}}}"#).is_err());
        // What follows `data` is not read, so not judged either.
        let early = parse_state(r#"{"data":{"snaps":{"a":{"current":"3"}}},"tasks":garbage"#);
        assert_eq!(early.unwrap()[0].revision, "3");
        assert!(
            parse_state(r#"{"tasks":{"1":{}},"data":null}"#)
                .unwrap()
                .is_empty()
        );
        assert!(parse_state(r#"{"tasks":1} trailing"#).is_err());
        assert!(parse_state("[1]").is_err());
    }

    #[test]
    fn snap_yaml() {
        let text = "name: core22\nversion: '20240111'\nsummary: Runtime\napps:\n  hello:\n    version: no\n# version: comment\ntype: base\n";
        assert_eq!(parse_snap_yaml(text), (Some("core22"), Some("20240111")));
        assert_eq!(
            parse_snap_yaml("version: \"1.2 # x\"\nname: a # the name\n"),
            (Some("a"), Some("1.2 # x"))
        );
        assert_eq!(parse_snap_yaml("name:\nversion: ''\n"), (None, None));
        assert_eq!(
            parse_snap_yaml("version: 'unterminated\n"),
            (None, Some("unterminated"))
        );
        assert_eq!(parse_snap_yaml(""), (None, None));
    }

    #[test]
    fn mounted_snaps_without_state() {
        let dir = tempfile::tempdir().unwrap();
        let snap = dir.path().join("snap");
        std::fs::create_dir_all(snap.join("lxd/28373/meta")).unwrap();
        std::fs::write(
            snap.join("lxd/28373/meta/snap.yaml"),
            "name: lxd\nversion: 5.21.1-2d13beb\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("28373", snap.join("lxd/current")).unwrap();
        std::fs::create_dir_all(snap.join("bin")).unwrap();
        std::fs::write(snap.join("README"), "not a snap").unwrap();
        let mut r = Reader::new(dir.path(), "sw");
        let mut items = Items::new();
        assert!(collect(&mut r, &mut items));
        assert_eq!(items.len(), 1);
        let lxd = &items["snap/lxd/all"];
        assert_eq!(lxd["version"], "5.21.1-2d13beb");
        assert_eq!(lxd["revision"], "28373");
        assert!(!lxd.contains_key("channel"));
        assert!(r.into_warnings().is_empty());
    }

    #[test]
    fn bad_state_is_one_warning_and_mounted_snaps_still_count() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var/lib/snapd")).unwrap();
        std::fs::write(dir.path().join(STATE), "{\"data\":").unwrap();
        let mut r = Reader::new(dir.path(), "sw");
        let mut items = Items::new();
        assert!(collect(&mut r, &mut items));
        assert!(items.is_empty());
        assert_eq!(
            r.into_warnings(),
            [
                "sw: snapd's state was not read, only mounted snaps are listed: var/lib/snapd/state.json is not snapd's state (EOF while parsing a value at line 1 column 8)"
            ]
        );
        let meta = dir.path().join("var/lib/snapd/snap/jq/6/meta");
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(meta.join("snap.yaml"), "name: jq\nversion: 1.5+dfsg-1\n").unwrap();
        std::os::unix::fs::symlink("6", dir.path().join("var/lib/snapd/snap/jq/current")).unwrap();
        let mut r = Reader::new(dir.path(), "sw");
        assert!(collect(&mut r, &mut items));
        assert_eq!(items["snap/jq/all"]["version"], "1.5+dfsg-1");
        assert_eq!(items["snap/jq/all"]["revision"], "6");
        assert_eq!(r.into_warnings().len(), 1);
    }

    #[test]
    fn nothing_there_is_silent() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Reader::new(dir.path(), "sw");
        let mut items = Items::new();
        assert!(!collect(&mut r, &mut items));
        assert!(items.is_empty());
        assert!(r.into_warnings().is_empty());
    }
}
