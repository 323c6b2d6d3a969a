//! `invsync_collect::hw::parse_printers_conf` (CUPS's `printers.conf`) and
//! `strip_credentials` on arbitrary bytes, decoded as the collector decodes a file.
//!
//! Besides "no panic": queue names are unique, non-empty slices of the input without `/` or
//! spaces; values are trimmed, non-empty and single-line; and a URI with its credentials
//! stripped keeps its scheme, has no `@` left in its authority, and strips to itself again.

#![no_main]

use invsync_collect::hw::{parse_printers_conf, strip_credentials};
use libfuzzer_sys::fuzz_target;

fn authority(uri: &str) -> Option<&str> {
    let rest = &uri[uri.find("://")? + 3..];
    Some(&rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())])
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let printers = parse_printers_conf(&text);
    let mut names: Vec<&str> = printers.iter().map(|p| p.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), printers.len(), "duplicate queues");
    for p in &printers {
        assert!(!p.name.is_empty() && !p.name.contains(['/', ' ']), "{p:?}");
        for v in [p.make_model, p.uri, p.info, p.location]
            .into_iter()
            .flatten()
        {
            assert!(!v.is_empty() && v == v.trim() && !v.contains('\n'), "{p:?}");
        }
    }
    for uri in printers.iter().filter_map(|p| p.uri).chain([text.as_ref()]) {
        let stripped = strip_credentials(uri);
        if let Some(i) = uri.find("://") {
            assert!(stripped.starts_with(&uri[..i + 3]));
            assert!(
                !authority(&stripped).unwrap_or("").contains('@'),
                "{stripped:?}"
            );
        } else {
            assert_eq!(stripped, uri);
        }
        assert_eq!(strip_credentials(&stripped), stripped);
    }
});
