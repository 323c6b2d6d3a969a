//! `invsync_collect::hw::parse_edid` on arbitrary bytes (a `sys/class/drm/*/edid` file is
//! read as bytes), then `monitor_attrs` on what it accepts.
//!
//! Besides "no panic": a blob is accepted only if it has a whole base block that starts with
//! the EDID header and whose bytes add up to zero; the manufacturer is three capital letters;
//! the name and serial descriptors are non-empty, trimmed, printable ASCII of at most 13
//! characters; the year is within 1990..=2245, the week within 1..=54; a size is at most
//! 4095 mm (the 12 bits of a detailed timing) and both sides are given or neither; and the
//! item's attributes are never empty strings.

#![no_main]

use invsync_collect::hw::{EDID_BLOCK, EDID_HEADER, EdidError, monitor_attrs, parse_edid};
use libfuzzer_sys::fuzz_target;

fn descriptor(text: &Option<String>) {
    if let Some(t) = text {
        assert!(!t.is_empty() && t.len() <= 13, "{t:?}");
        assert_eq!(t, t.trim());
        assert!(t.bytes().all(|b| (0x20..0x7f).contains(&b)), "{t:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    match parse_edid(data) {
        Ok(e) => {
            assert!(data.len() >= EDID_BLOCK);
            assert_eq!(data[..8], EDID_HEADER);
            assert_eq!(data[..EDID_BLOCK].iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
            if let Some(m) = &e.manufacturer {
                assert!(m.len() == 3 && m.bytes().all(|b| b.is_ascii_uppercase()), "{m:?}");
            }
            descriptor(&e.name);
            descriptor(&e.serial);
            assert!((1990..=2245).contains(&e.year));
            assert!(e.week.is_none_or(|w| (1..=54).contains(&w)));
            assert_eq!(e.width_mm.is_some(), e.height_mm.is_some());
            for s in [e.width_mm, e.height_mm].into_iter().flatten() {
                assert!((1..=4095).contains(&s), "{s} mm");
            }
            let attrs = monitor_attrs(&e);
            assert!(attrs.values().all(|v| !v.is_empty()), "{attrs:?}");
            assert_eq!(attrs["product_code"].len(), 4);
        }
        Err(EdidError::Short(n)) => assert!(n == data.len() && n < EDID_BLOCK),
        Err(EdidError::Header) => assert_ne!(data[..8], EDID_HEADER),
        Err(EdidError::Checksum(sum)) => {
            assert_ne!(sum, 0);
            assert_eq!(data[..EDID_BLOCK].iter().fold(0u8, |s, b| s.wrapping_add(*b)), sum);
        }
    }
});
