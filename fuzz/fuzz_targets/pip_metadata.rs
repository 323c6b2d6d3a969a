//! `invsync_collect::sw::parse_metadata` (the headers of a Python distribution's `METADATA`)
//! on arbitrary bytes, decoded as the collector decodes a file (invalid UTF-8 becomes U+FFFD).
//!
//! Besides "no panic": name and version are non-empty, trimmed, single-line slices of the
//! input before its first blank line, and writing them back as headers parses to the same.

#![no_main]

use invsync_collect::sw::parse_metadata;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let meta = parse_metadata(&text);
    for v in [meta.name, meta.version].into_iter().flatten() {
        let (p, w) = (v.as_ptr() as usize, text.as_ptr() as usize);
        assert!(p >= w && p + v.len() <= w + text.len());
        assert!(!v.is_empty() && !v.contains('\n') && v == v.trim(), "{v:?}");
    }
    let mut again = String::new();
    if let Some(n) = meta.name {
        again.push_str(&format!("Name: {n}\n"));
    }
    if let Some(v) = meta.version {
        again.push_str(&format!("Version: {v}\n"));
    }
    assert_eq!(parse_metadata(&again), meta, "{again:?}");
});
