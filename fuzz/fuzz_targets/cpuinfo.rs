//! `invsync_collect::hw::parse_cpuinfo` on arbitrary bytes (decoded as the collector decodes
//! a file), plus the clock helpers the cpu collector applies to what it reads:
//! `khz_to_mhz` (the whole text of a cpufreq file), `mhz_from_model` (the model name) and
//! `parse_mhz` (a `cpu MHz` value).
//!
//! Besides "no panic": no processor means no sockets and no cores, a processor means at least
//! one socket, a model is never empty, and every clock is within 1 MHz .. 1 THz.

#![no_main]

use invsync_collect::hw::{khz_to_mhz, mhz_from_model, parse_cpuinfo, parse_mhz};
use libfuzzer_sys::fuzz_target;

fn plausible(mhz: Option<u64>) {
    if let Some(m) = mhz {
        assert!((1..=1_000_000).contains(&m), "clock {m} MHz");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let info = parse_cpuinfo(&text);
    if info.threads == 0 {
        assert_eq!((info.sockets, info.cores), (0, 0), "{info:?}");
    } else {
        assert!(info.sockets >= 1, "{info:?}");
    }
    if let Some(model) = &info.model {
        assert!(!model.trim().is_empty(), "{info:?}");
        plausible(mhz_from_model(model));
    }
    plausible(info.mhz);
    // The collector reads cpufreq files (kHz) whole, and `cpu MHz` values after the colon.
    if let Some(m) = khz_to_mhz(&text) {
        assert!(m > 0);
    }
    plausible(parse_mhz(&text));
    plausible(mhz_from_model(&text));
    for line in text.lines().take(64) {
        if let Some((_, v)) = line.split_once(':') {
            plausible(parse_mhz(v));
            let _ = khz_to_mhz(v);
        }
    }
});
