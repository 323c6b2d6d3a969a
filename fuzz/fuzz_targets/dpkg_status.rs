//! `invsync_collect::sw::parse_status` (dpkg's `var/lib/dpkg/status` and journal entries)
//! on arbitrary bytes, decoded as the collector decodes a file (invalid UTF-8 becomes U+FFFD).
//!
//! Besides "no panic": every record names a package, its fields are trimmed single-line
//! slices of the input, and writing the records back as a status file parses to the same
//! records.

#![no_main]

use invsync_collect::sw::{DpkgRecord, parse_status};
use libfuzzer_sys::fuzz_target;

fn is_slice_of(part: &str, whole: &str) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    part.is_empty() || (p >= w && p + part.len() <= w + whole.len())
}

fn check_field(v: &str, text: &str) {
    assert!(is_slice_of(v, text), "field {v:?} is not a slice of the input");
    assert_eq!(v, v.trim(), "field {v:?} is not trimmed");
    assert!(!v.contains('\n'), "field {v:?} spans lines");
}

fn render(records: &[DpkgRecord<'_>]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&format!("Package: {}\n", r.name));
        let state = if r.installed { "installed" } else { "config-files" };
        out.push_str(&format!("Status: install ok {state}\n"));
        if !r.version.is_empty() {
            out.push_str(&format!("Version: {}\n", r.version));
        }
        if !r.arch.is_empty() {
            out.push_str(&format!("Architecture: {}\n", r.arch));
        }
        if let Some(s) = r.installed_size {
            out.push_str(&format!("Installed-Size: {s}\n"));
        }
        out.push('\n');
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let records = parse_status(&text);
    assert!(records.len() <= text.lines().count());
    for r in &records {
        assert!(!r.name.is_empty());
        check_field(r.name, &text);
        check_field(r.version, &text);
        check_field(r.arch, &text);
        if let Some(s) = r.installed_size {
            check_field(s, &text);
        }
    }
    let again = render(&records);
    assert_eq!(parse_status(&again), records, "re-rendered status:\n{again}");
});
