//! Packages installed by apk (Alpine Linux), from `lib/apk/db/installed`.
//!
//! The database is a list of records separated by blank lines, one `X:value` field a line,
//! where `P` is the name, `V` the version, `A` the architecture and `I` the installed size in
//! bytes. Every record there is an installed package (apk keeps no removed ones). The file
//! also lists each package's files (`F:`, `R:`, `Z:` lines), which are skipped.

use invsync_proto::Items;

use super::add_package;
use crate::read::Reader;

pub(crate) const INSTALLED: &str = "lib/apk/db/installed";

/// Adds the installed packages; returns whether an apk database is there.
pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) -> bool {
    if !r.exists(INSTALLED) {
        return false;
    }
    let Some(text) = r.read(INSTALLED) else {
        return true;
    };
    for rec in parse_installed(&text) {
        add_package(
            items,
            "apk",
            rec.name,
            rec.version,
            rec.arch,
            rec.size.and_then(|s| s.parse().ok()),
        );
    }
    true
}

/// One record of the apk database, as slices of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApkRecord<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub arch: &'a str,
    /// `I:`, the installed size in bytes, unparsed.
    pub size: Option<&'a str>,
}

/// Parses `lib/apk/db/installed` into its records that name a package. Lines that are not
/// `X:value` are skipped; a record cut short by the end of the file counts with what it has.
pub fn parse_installed(text: &str) -> Vec<ApkRecord<'_>> {
    let mut out = Vec::new();
    let mut rec = ApkRecord::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !rec.name.is_empty() {
                out.push(rec);
            }
            rec = ApkRecord::default();
            continue;
        }
        let b = line.as_bytes();
        if b.len() < 2 || b[1] != b':' {
            continue;
        }
        let val = line[2..].trim();
        match b[0] {
            b'P' => rec.name = val,
            b'V' => rec.version = val,
            b'A' => rec.arch = val,
            b'I' => rec.size = Some(val),
            _ => {}
        }
    }
    if !rec.name.is_empty() {
        out.push(rec);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        let text = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nS:383152\nI:622592\nT:the musl c library\n\
                    F:lib\nR:libc.musl-x86_64.so.1\n\nP:alpine-baselayout-data\nV:3.4.3-r1\nA:x86_64\n\n\n";
        let recs = parse_installed(text);
        assert_eq!(
            recs,
            [
                ApkRecord {
                    name: "musl",
                    version: "1.2.4-r2",
                    arch: "x86_64",
                    size: Some("622592")
                },
                ApkRecord {
                    name: "alpine-baselayout-data",
                    version: "3.4.3-r1",
                    arch: "x86_64",
                    size: None
                },
            ]
        );
    }

    #[test]
    fn bad_input() {
        assert!(parse_installed("").is_empty());
        assert!(parse_installed("\n\n").is_empty());
        assert!(parse_installed("garbage\n\u{fffd}:x\n:\nV:1\n").is_empty());
        // Truncated at the end of the file, in the middle of a field name.
        let recs = parse_installed("P:busybox\nV:1.36.1-r5\nA");
        assert_eq!(
            recs,
            [ApkRecord {
                name: "busybox",
                version: "1.36.1-r5",
                arch: "",
                size: None
            }]
        );
        // A multi-byte character in the second position is not a field.
        assert!(parse_installed("P\u{fffd}x\n").is_empty());
    }
}
