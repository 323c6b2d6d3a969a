//! `invsync_collect::sw::parse_state` (snapd's `var/lib/snapd/state.json`) and
//! `parse_snap_yaml` (a snap's `meta/snap.yaml`) on arbitrary bytes, decoded as the collector
//! decodes a file (invalid UTF-8 becomes U+FFFD).
//!
//! Besides "no panic": every snap has a non-empty instance and snap name and a revision that
//! is a non-zero integer; the yaml's name and version are non-empty single-line slices of the
//! input, trimmed.

#![no_main]

use invsync_collect::sw::{parse_snap_yaml, parse_state};
use libfuzzer_sys::fuzz_target;

fn is_slice_of(part: &str, whole: &str) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(snaps) = parse_state(&text) {
        for s in &snaps {
            assert!(!s.instance.is_empty());
            assert!(!s.name.is_empty());
            let n: i64 = s.revision.parse().expect("a revision is an integer");
            assert_ne!(n, 0);
        }
    }
    let (name, version) = parse_snap_yaml(&text);
    for v in [name, version].into_iter().flatten() {
        assert!(!v.is_empty() && is_slice_of(v, &text) && !v.contains('\n'), "{v:?}");
        assert_eq!(v, v.trim(), "{v:?}");
    }
});
