//! `invsync_proto::version::compare_in` for every source's rules on arbitrary version
//! strings: three versions cut from the input at NUL bytes.
//!
//! Besides "no panic": each order is reflexive, antisymmetric and transitive on the three,
//! because the store sorts with it (a sort over an inconsistent order may panic), and a range
//! made of a version matches that version under every rules.

#![no_main]

use std::cmp::Ordering;

use invsync_proto::version::{Scheme, VersionRange, compare_in};
use libfuzzer_sys::fuzz_target;

const SOURCES: [&str; 6] = ["dpkg", "rpm", "apk", "pip", "snap", "flatpak"];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let a = parts.next().unwrap_or("");
    let b = parts.next().unwrap_or("");
    let c = parts.next().unwrap_or("");
    for source in SOURCES {
        let cmp = |x: &str, y: &str| compare_in(source, x, y);
        for v in [a, b, c] {
            assert_eq!(cmp(v, v), Ordering::Equal, "{source}: {v:?}");
        }
        for (x, y) in [(a, b), (b, c), (a, c)] {
            assert_eq!(cmp(x, y), cmp(y, x).reverse(), "{source}: {x:?} {y:?}");
        }
        let mut sorted = [a, b, c];
        sorted.sort_by(|x, y| cmp(x, y));
        assert_ne!(
            cmp(sorted[0], sorted[2]),
            Ordering::Greater,
            "{source}: {sorted:?}"
        );
        if let Ok(range) = VersionRange::parse(&format!("={a}")) {
            assert!(range.matches_in(Scheme::of(source), a), "{source}: {a:?}");
        }
    }
});
