//! `invsync_collect::sw::parse_metainfo_version` (an AppStream metainfo file) and
//! `parse_deploy_origin` (a flatpak deploy file) on arbitrary bytes.
//!
//! Besides "no panic": a version is a non-empty slice of the input without `&`, `"` or `<`;
//! an origin is a non-empty prefix of the input of printable ASCII without `/`, followed by
//! a NUL.

#![no_main]

use invsync_collect::sw::{parse_deploy_origin, parse_metainfo_version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(v) = parse_metainfo_version(&text) {
        let (p, w) = (v.as_ptr() as usize, text.as_ptr() as usize);
        assert!(p >= w && p + v.len() <= w + text.len());
        assert!(!v.is_empty() && !v.contains(['&', '"', '<']), "{v:?}");
    }
    if let Some(o) = parse_deploy_origin(data) {
        assert!(!o.is_empty() && o.len() <= 256);
        assert!(o.bytes().all(|b| b.is_ascii_graphic() && b != b'/'));
        assert_eq!(&data[..o.len()], o.as_bytes());
        assert_eq!(data[o.len()], 0);
    }
});
