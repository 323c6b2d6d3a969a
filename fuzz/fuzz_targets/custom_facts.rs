//! `invsync_collect::hw::custom::{parse_json, parse_toml}` (an administrator's custom
//! inventory file or a script's output) on arbitrary bytes, decoded as the collector decodes
//! a file.
//!
//! Besides "no panic": what is accepted has attribute names of 1 to 64 characters without
//! control characters, and writing the attributes back as JSON parses to the same attributes.

#![no_main]

use invsync_collect::hw::custom::{parse_json, parse_toml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for parsed in [parse_json(&text), parse_toml(&text)] {
        let Ok(attrs) = parsed else {
            continue;
        };
        for name in attrs.keys() {
            assert!(!name.is_empty() && name.len() <= 64, "{name:?}");
            assert!(!name.chars().any(char::is_control), "{name:?}");
        }
        let again = serde_json::to_string(&attrs).unwrap();
        assert_eq!(parse_json(&again), Ok(attrs), "{again}");
    }
});
