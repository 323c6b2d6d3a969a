//! Python distributions installed outside the package manager (by `pip`), as items
//! `pip/<name>/all` with `version`.
//!
//! An installed distribution is a `<name>-<version>.dist-info` directory whose `METADATA` file
//! starts with email-style headers (`Name:`, `Version:`, …) and a blank line before the long
//! description; only the headers are read, in chunks, stopping at that blank line (a long
//! description is often most of the file). The directories looked at are those where the
//! distribution's package manager does not install:
//!
//! - `usr/local/lib/python3*/dist-packages` (Debian's and Ubuntu's `pip install` as root) and
//!   `usr/local/lib/python3*/site-packages` (upstream Python's): everything there;
//! - `usr/lib/python3*/site-packages` (Fedora, Arch): shared with the system's packages, so only
//!   the distributions whose `INSTALLER` file says `pip`; rpm and pacman write their own name
//!   there.
//!
//! Debian's `usr/lib/python3/dist-packages` is dpkg's alone and not read. `.egg-info`
//! installs (`setup.py install` before pip 10) are not read either. The same distribution
//! installed for two Python versions is one item when the versions agree, else one item per
//! version, `pip/<name>/all/<version>`.

use std::collections::BTreeMap;
use std::io::Read;

use invsync_proto::{Attrs, Items};

use super::{add_each, package_attrs};
use crate::read::Reader;

/// Where the interpreters' directories are, with the package directory under each and
/// whether only pip's own installs count there.
const PLACES: [(&str, &str, bool); 3] = [
    ("usr/local/lib", "dist-packages", false),
    ("usr/local/lib", "site-packages", false),
    ("usr/lib", "site-packages", true),
];

/// How much of a METADATA file is read at most when no blank line ends its headers.
const MAX_HEADERS: usize = 64 * 1024;

/// Adds the distributions; returns whether any package directory was there.
pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) -> bool {
    let mut found = false;
    let mut by_name: BTreeMap<String, Vec<(String, Attrs)>> = BTreeMap::new();
    for (lib, packages, pip_only) in PLACES {
        let Some(pythons) = r.list_dir(lib) else {
            continue;
        };
        for python in pythons.iter().filter(|p| is_python3(p)) {
            let dir = format!("{lib}/{python}/{packages}");
            let Some(names) = r.list_dir(&dir) else {
                continue;
            };
            found = true;
            for d in names.iter().filter(|n| n.ends_with(".dist-info")) {
                let info = format!("{dir}/{d}");
                if pip_only
                    && r.read_quiet(&format!("{info}/INSTALLER"))
                        .as_deref()
                        .map(str::trim)
                        != Some("pip")
                {
                    continue;
                }
                let Some(head) = read_headers(r, &format!("{info}/METADATA")) else {
                    continue;
                };
                let meta = parse_metadata(&head);
                let Some(name) = meta.name else {
                    r.warn(&format!("{info}/METADATA names no distribution; skipped"));
                    continue;
                };
                let version = meta.version.unwrap_or("");
                by_name.entry(name.to_string()).or_default().push((
                    version.to_string(),
                    package_attrs("pip", name, version, "all"),
                ));
            }
        }
    }
    for (name, copies) in by_name {
        add_each(items, &format!("pip/{name}/all"), copies);
    }
    found
}

/// `python3` or `python3.N`: the interpreters whose distributions are inventoried.
fn is_python3(name: &str) -> bool {
    name.strip_prefix("python3").is_some_and(|rest| {
        rest.is_empty()
            || rest
                .strip_prefix('.')
                .is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// The headers of a METADATA file: read in chunks until the first blank line (or 64 KiB).
/// A missing file is silent (a dist-info being written or removed by pip right now); another
/// failure is a warning.
fn read_headers(r: &mut Reader<'_>, rel: &str) -> Option<String> {
    let mut file = match std::fs::File::open(r.path(rel)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            r.warn(&format!(
                "cannot read {rel}: {}",
                crate::read::io_message(&e)
            ));
            return None;
        }
    };
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match file.read(&mut chunk) {
            Ok(n) => n,
            Err(e) => {
                r.warn(&format!(
                    "cannot read {rel}: {}",
                    crate::read::io_message(&e)
                ));
                return None;
            }
        };
        // Look for the blank line from just before the new chunk, as `\n\n` may straddle.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if n == 0 || buf.len() >= MAX_HEADERS || has_blank_line(&buf[from..]) {
            break;
        }
    }
    Some(crate::read::decode(buf))
}

fn has_blank_line(b: &[u8]) -> bool {
    b.windows(2).any(|w| w == b"\n\n") || b.windows(4).any(|w| w == b"\r\n\r\n")
}

/// The `Name` and `Version` headers of a distribution's METADATA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipMetadata<'a> {
    pub name: Option<&'a str>,
    pub version: Option<&'a str>,
}

/// Parses the headers of a METADATA file (core metadata, an email-style header block) up to
/// the first blank line; header names are case-insensitive, the first of each wins, empty
/// values count as absent.
pub fn parse_metadata(text: &str) -> PipMetadata<'_> {
    let mut meta = PipMetadata::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        let val = Some(val.trim()).filter(|v| !v.is_empty());
        if key.eq_ignore_ascii_case("name") && meta.name.is_none() {
            meta.name = val;
        } else if key.eq_ignore_ascii_case("version") && meta.version.is_none() {
            meta.version = val;
        }
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata() {
        let text = "Metadata-Version: 2.1\r\nName: requests\r\nVersion: 2.32.3\r\nSummary: HTTP\r\nClassifier: A\r\n  continued\r\n\r\nName: not-a-header\nVersion: 0\n";
        assert_eq!(
            parse_metadata(text),
            PipMetadata {
                name: Some("requests"),
                version: Some("2.32.3")
            }
        );
        assert_eq!(
            parse_metadata("name: a\nNAME: b\nversion:\n"),
            PipMetadata {
                name: Some("a"),
                version: None
            }
        );
        assert_eq!(parse_metadata(""), PipMetadata::default());
        assert_eq!(parse_metadata("\nName: late\n"), PipMetadata::default());
    }

    #[test]
    fn python_dirs() {
        assert!(is_python3("python3"));
        assert!(is_python3("python3.12"));
        assert!(!is_python3("python3.12d"));
        assert!(!is_python3("python3."));
        assert!(!is_python3("python2.7"));
        assert!(!is_python3("python"));
    }

    #[test]
    fn headers_stop_at_blank_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("Name: big\nVersion: 1\n");
        text.push_str(&"Classifier: x\n".repeat(400));
        text.push('\n');
        text.push_str(&"description ".repeat(100_000));
        std::fs::write(dir.path().join("METADATA"), &text).unwrap();
        let mut r = Reader::new(dir.path(), "sw");
        let head = read_headers(&mut r, "METADATA").unwrap();
        // The headers are 5,621 bytes; reading stops at the chunk holding the blank line.
        assert_eq!(head.len(), 8192);
        assert_eq!(parse_metadata(&head).name, Some("big"));
        assert_eq!(read_headers(&mut r, "missing"), None);
        assert!(r.into_warnings().is_empty());
    }

    #[test]
    fn places_and_installers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let dist = |path: &str, meta: &str, installer: Option<&str>| {
            let d = root.join(path);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("METADATA"), meta).unwrap();
            if let Some(i) = installer {
                std::fs::write(d.join("INSTALLER"), i).unwrap();
            }
        };
        dist(
            "usr/local/lib/python3.11/dist-packages/requests-2.32.3.dist-info",
            "Name: requests\nVersion: 2.32.3\n\nbody",
            Some("pip\n"),
        );
        dist(
            "usr/local/lib/python3.12/site-packages/requests-2.31.0.dist-info",
            "Name: requests\nVersion: 2.31.0\n",
            None,
        );
        dist(
            "usr/lib/python3.12/site-packages/dnf-4.0.dist-info",
            "Name: dnf\nVersion: 4.0\n",
            Some("rpm\n"),
        );
        dist(
            "usr/lib/python3.12/site-packages/httpie-3.2.2.dist-info",
            "Name: httpie\nVersion: 3.2.2\n",
            Some("pip\n"),
        );
        dist(
            "usr/lib/python3/dist-packages/apt-2.6.dist-info",
            "Name: python-apt\nVersion: 2.6\n",
            Some("debian\n"),
        );
        dist(
            "usr/local/lib/python3.11/dist-packages/noname-1.dist-info",
            "Version: 1\n",
            None,
        );
        let mut r = Reader::new(root, "sw");
        let mut items = Items::new();
        assert!(collect(&mut r, &mut items));
        let keys: Vec<&str> = items.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "pip/httpie/all",
                "pip/requests/all/2.31.0",
                "pip/requests/all/2.32.3"
            ]
        );
        assert_eq!(items["pip/httpie/all"]["version"], "3.2.2");
        assert_eq!(
            r.into_warnings(),
            [
                "sw: usr/local/lib/python3.11/dist-packages/noname-1.dist-info/METADATA names no distribution; skipped"
            ]
        );
    }
}
