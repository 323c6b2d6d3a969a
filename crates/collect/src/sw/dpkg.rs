//! Packages installed by dpkg (Debian, Ubuntu and their derivatives), from the database file
//! `var/lib/dpkg/status` and the journal `var/lib/dpkg/updates/NNNN` that dpkg writes while it
//! runs and folds into `status` at its next checkpoint (after an interrupted dpkg run the
//! newest state of a package is only there; `dpkg-query` reads both, and so does this).
//!
//! A package is installed when the third word of its `Status` is `installed`: the first word
//! is the administrator's wish (`install`, `hold`, `deinstall`, `purge`), the third the actual
//! state, so a held package counts and one removed with its configuration files left
//! (`deinstall ok config-files`) or half-installed does not. The file is parsed by slicing:
//! only the five fields needed are looked at and no string is allocated until an installed
//! package becomes an item, which keeps a 2,000-package status file well under a millisecond.

use invsync_proto::Items;

use super::add_package;
use crate::read::Reader;

pub(crate) const STATUS: &str = "var/lib/dpkg/status";
const UPDATES: &str = "var/lib/dpkg/updates";

/// Adds the installed packages; returns whether a dpkg database is there.
pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) -> bool {
    if !r.exists(STATUS) {
        return false;
    }
    let Some(status) = r.read(STATUS) else {
        return true;
    };
    // The journal's files are named by a decimal sequence number; anything else there (dpkg's
    // `tmp.i` while it writes one) is not yet part of the database.
    let mut journal: Vec<String> = Vec::new();
    if let Some(mut names) = r.list_dir(UPDATES) {
        names.retain(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        names.sort_by_key(|n| n.parse::<u64>().unwrap_or(u64::MAX));
        for n in names {
            if let Some(text) = r.read(&format!("{UPDATES}/{n}")) {
                journal.push(text);
            }
        }
    }
    let mut records = parse_status(&status);
    if !journal.is_empty() {
        // A journal entry replaces the whole record of its package (name and architecture).
        let mut index: std::collections::HashMap<(&str, &str), usize> = records
            .iter()
            .enumerate()
            .map(|(i, rec)| ((rec.name, rec.arch), i))
            .collect();
        for text in &journal {
            for rec in parse_status(text) {
                match index.get(&(rec.name, rec.arch)) {
                    Some(&i) => records[i] = rec,
                    None => {
                        index.insert((rec.name, rec.arch), records.len());
                        records.push(rec);
                    }
                }
            }
        }
    }
    for rec in records.iter().filter(|rec| rec.installed) {
        let size = rec
            .installed_size
            .and_then(|s| s.parse::<u64>().ok())
            .and_then(|k| k.checked_mul(1024));
        add_package(items, "dpkg", rec.name, rec.version, rec.arch, size);
    }
    true
}

/// One paragraph of the dpkg status file, as slices of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DpkgRecord<'a> {
    pub name: &'a str,
    /// The full version, epoch included (`1:2.39.2-1`); empty when the paragraph has none.
    pub version: &'a str,
    /// `amd64`, `all`, …; empty when the paragraph has none.
    pub arch: &'a str,
    /// The third word of `Status` is `installed`.
    pub installed: bool,
    /// `Installed-Size` in KiB, unparsed.
    pub installed_size: Option<&'a str>,
}

/// Parses a dpkg status file (or journal entry) into its paragraphs that name a package.
/// Continuation lines (starting with a space or tab: descriptions, conffiles) are skipped;
/// a paragraph cut short by the end of the file still counts with what it has.
pub fn parse_status(text: &str) -> Vec<DpkgRecord<'_>> {
    let mut out = Vec::new();
    let mut rec = DpkgRecord::default();
    let mut in_paragraph = false;
    for line in text.lines() {
        let first = line.as_bytes().first().copied();
        if matches!(first, Some(b' ' | b'\t')) {
            // A continuation line belongs to the previous field, and none of the fields
            // read here spans lines. A line of only blanks ends the paragraph, as in dpkg.
            if line.trim().is_empty() {
                finish(&mut out, &mut rec, &mut in_paragraph);
            }
            continue;
        }
        if line.is_empty() {
            finish(&mut out, &mut rec, &mut in_paragraph);
            continue;
        }
        in_paragraph = true;
        let Some((field, val)) = line.split_once(':') else {
            continue;
        };
        let val = val.trim();
        // Field names are case-insensitive in deb822; dpkg writes them capitalised, so the
        // exact comparison that almost always succeeds goes first.
        let is = |name: &str| field == name || field.eq_ignore_ascii_case(name);
        if is("Package") {
            rec.name = val;
        } else if is("Status") {
            rec.installed = val.split_ascii_whitespace().nth(2) == Some("installed");
        } else if is("Version") {
            rec.version = val;
        } else if is("Architecture") {
            rec.arch = val;
        } else if is("Installed-Size") {
            rec.installed_size = Some(val);
        }
    }
    finish(&mut out, &mut rec, &mut in_paragraph);
    out
}

fn finish<'a>(out: &mut Vec<DpkgRecord<'a>>, rec: &mut DpkgRecord<'a>, in_paragraph: &mut bool) {
    if *in_paragraph && !rec.name.is_empty() {
        out.push(*rec);
    }
    *rec = DpkgRecord::default();
    *in_paragraph = false;
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS_TEXT: &str = "\
Package: bash
Essential: yes
Status: install ok installed
Priority: required
Installed-Size: 7164
Architecture: amd64
Version: 5.2.15-2+b2
Description: GNU Bourne Again SHell
 Bash is an sh-compatible command language interpreter.
 .
 Package: not-a-package
Conffiles:
 /etc/bash.bashrc 89269e1298235f1b12b4c16e4065ad0d
 /etc/skel/.bashrc 7a5b0e18a1f4b7b5ad3ee2e6ae1c5f9d

Package: libc6
Status: hold ok installed
Version: 2.36-9+deb12u4
Architecture: amd64
Multi-Arch: same

Package: libc6
Status: install ok installed
Version: 2.36-9+deb12u4
Architecture: i386

Package: oldpkg
Status: deinstall ok config-files
Version: 1.0-1
Architecture: all

Package: broken
Status: install reinstreq half-installed
Version: 3.0
Architecture: amd64

Package: perl-base
Status: install ok installed
Version: 1:5.36.0-7+deb12u1
Architecture: amd64
Installed-Size: 7749
";

    #[test]
    fn paragraphs_and_states() {
        let recs = parse_status(STATUS_TEXT);
        let names: Vec<(&str, &str, bool)> =
            recs.iter().map(|r| (r.name, r.arch, r.installed)).collect();
        assert_eq!(
            names,
            [
                ("bash", "amd64", true),
                ("libc6", "amd64", true),
                ("libc6", "i386", true),
                ("oldpkg", "all", false),
                ("broken", "amd64", false),
                ("perl-base", "amd64", true),
            ]
        );
        assert_eq!(recs[0].installed_size, Some("7164"));
        assert_eq!(recs[0].version, "5.2.15-2+b2");
        assert_eq!(recs[5].version, "1:5.36.0-7+deb12u1");
        assert_eq!(recs[1].installed_size, None);
    }

    #[test]
    fn crlf_blank_lines_and_case() {
        let text = "package: a\r\nstatus: install ok installed\r\nversion: 1\r\narchitecture: all\r\n \t\r\nPackage: b\nStatus: install ok installed\n";
        let recs = parse_status(text);
        assert_eq!(recs.len(), 2);
        assert_eq!(
            (
                recs[0].name,
                recs[0].version,
                recs[0].arch,
                recs[0].installed
            ),
            ("a", "1", "all", true)
        );
        assert_eq!((recs[1].name, recs[1].version, recs[1].arch), ("b", "", ""));
    }

    #[test]
    fn bad_input() {
        assert!(parse_status("").is_empty());
        assert!(parse_status("\n\n\n").is_empty());
        assert!(parse_status("\u{fffd}\u{fffd}\0garbage\nmore: garbage\n").is_empty());
        // Truncated in the middle of the Status field: the state is unknown, so not installed.
        let recs = parse_status("Package: x\nVersion: 1\nStatus: install ok");
        assert_eq!(recs.len(), 1);
        assert!(!recs[0].installed);
        // Truncated in the middle of the last paragraph after the Status field.
        let recs = parse_status("Package: y\nStatus: install ok installed\nVers");
        assert!(recs[0].installed);
        // Status with too many words or odd spacing.
        let recs = parse_status("Package: z\nStatus:   install   ok   installed  extra\n");
        assert!(recs[0].installed);
        // A huge size does not overflow: it is dropped when the item is made.
        let recs = parse_status(
            "Package: h\nStatus: install ok installed\nInstalled-Size: 99999999999999999999\n",
        );
        assert_eq!(recs[0].installed_size, Some("99999999999999999999"));
    }

    #[test]
    fn collect_with_journal() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("var/lib/dpkg/updates");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(dir.path().join(STATUS), STATUS_TEXT).unwrap();
        // bash removed and a new package installed by an interrupted run; tmp.i is ignored.
        std::fs::write(d.join("0000"), "Package: bash\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 5.2.15-2+b2\n").unwrap();
        std::fs::write(
            d.join("0001"),
            "Package: new\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2\n",
        )
        .unwrap();
        std::fs::write(
            d.join("tmp.i"),
            "Package: ghost\nStatus: install ok installed\n",
        )
        .unwrap();
        let mut r = Reader::new(dir.path(), "sw");
        let mut items = Items::new();
        assert!(collect(&mut r, &mut items));
        let keys: Vec<&str> = items.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "dpkg/libc6/amd64",
                "dpkg/libc6/i386",
                "dpkg/new/amd64",
                "dpkg/perl-base/amd64"
            ]
        );
        assert_eq!(
            items["dpkg/perl-base/amd64"]["size_bytes"],
            (7749 * 1024).to_string()
        );
        assert_eq!(
            items["dpkg/perl-base/amd64"]["version"],
            "1:5.36.0-7+deb12u1"
        );
        assert!(r.into_warnings().is_empty());
    }
}
