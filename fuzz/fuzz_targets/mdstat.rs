//! `invsync_collect::hw::parse_mdstat` (`/proc/mdstat`) on arbitrary bytes, decoded as the
//! collector decodes a file (invalid UTF-8 becomes U+FFFD).
//!
//! Besides "no panic": every array is named `md...` without spaces or `/`, its members'
//! names are non-empty slices of the input without `[`, there are no more arrays than lines,
//! a `[n/m]` count comes with a size, and the state is one of the four the parser gives.

#![no_main]

use invsync_collect::hw::parse_mdstat;
use libfuzzer_sys::fuzz_target;

fn is_slice_of(part: &str, whole: &str) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let arrays = parse_mdstat(&text);
    assert!(arrays.len() <= text.lines().count());
    for a in &arrays {
        assert!(a.name.starts_with("md"), "{a:?}");
        assert!(!a.name.contains([' ', '/']), "{a:?}");
        assert!(is_slice_of(a.name, &text));
        assert!(
            ["active", "inactive", "readonly", "read-auto"].contains(&a.state),
            "{a:?}"
        );
        if a.raid_disks.is_some() {
            assert!(a.blocks.is_some(), "{a:?}");
        }
        for m in &a.members {
            assert!(!m.name.is_empty() && !m.name.contains('['), "{a:?}");
            assert!(is_slice_of(m.name, &text));
        }
        if let Some(level) = a.level {
            assert!(!level.is_empty() && is_slice_of(level, &text), "{a:?}");
        }
    }
});
