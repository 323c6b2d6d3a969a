//! `invsync_collect::sw::parse_header` (an rpm header blob from `rpmdb.sqlite`'s `Packages`
//! table) on arbitrary bytes.
//!
//! Besides "no panic": a header that parses is exactly as long as its two counts declare,
//! names a package, a version and a release that are not empty and hold no NUL, and its
//! `[epoch:]version-release` starts with an epoch only when the epoch is not 0.

#![no_main]

use invsync_collect::sw::parse_header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(h) = parse_header(data) else {
        return;
    };
    let be = |at: usize| u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    assert_eq!(8 + be(0) as usize * 16 + be(4) as usize, data.len());
    for s in [&h.name, &h.version, &h.release] {
        assert!(!s.is_empty() && !s.contains('\0'), "{s:?}");
    }
    if let Some(a) = &h.arch {
        assert!(!a.is_empty() && !a.contains('\0'));
    }
    let evr = h.evr();
    match h.epoch {
        Some(e) if e != 0 => assert!(evr.starts_with(&format!("{e}:"))),
        _ => assert!(evr.starts_with(&*h.version)),
    }
    assert!(evr.ends_with(&format!("-{}", h.release)));
});
