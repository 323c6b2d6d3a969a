//! The `memory` item (`total_bytes` from `MemTotal` in `proc/meminfo`) and one `dimm/<locator>`
//! item per installed memory module, from the SMBIOS type 17 ("Memory Device") structures the
//! kernel exports as `sys/firmware/dmi/entries/17-*/raw`.
//!
//! `MemTotal` is what the kernel manages (installed memory less firmware reservations); it is
//! constant while the machine runs. The raw SMBIOS entries are readable by root only; when
//! they are not readable there is one warning, not one per slot, and no `dimm/` items. Empty
//! slots (size 0) are not modules and are left out.

use invsync_proto::{Attrs, Items};

use crate::read::Reader;

const ENTRIES: &str = "sys/firmware/dmi/entries";

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    if let Some(text) = r.read("proc/meminfo") {
        match parse_mem_total(&text) {
            Some(bytes) => {
                items.insert(
                    "memory".into(),
                    Attrs::from([("total_bytes".to_string(), bytes.to_string())]),
                );
            }
            None => r.warn("proc/meminfo has no valid MemTotal: memory is not reported"),
        }
    }
    collect_dimms(r, items);
}

fn collect_dimms(r: &mut Reader<'_>, items: &mut Items) {
    // No entries directory is normal (no SMBIOS, or a fake root without it): no warning, the
    // DMI collector already says when there is no firmware information at all.
    let Some(names) = r.list_dir(ENTRIES) else {
        return;
    };
    let mut dimms = Vec::new();
    for name in names.iter().filter(|n| n.starts_with("17-")) {
        let rel = format!("{ENTRIES}/{name}/raw");
        match std::fs::read(r.path(&rel)) {
            Ok(raw) => {
                if let Some(d) = parse_type17(&raw) {
                    dimms.push(d);
                }
            }
            Err(e) => {
                r.warn(&format!(
                    "cannot read {rel}: {}; memory modules are not reported",
                    crate::read::io_message(&e)
                ));
                return;
            }
        }
    }
    // Some boards name the slots only within a bank ("DIMM 0" in "BANK 0" and in "BANK 1"):
    // then every key carries the bank too, so that no module hides another.
    let unique = dimms
        .iter()
        .enumerate()
        .all(|(i, d)| dimms[..i].iter().all(|o| o.locator != d.locator));
    for d in dimms
        .into_iter()
        .filter(|d| d.size_bytes.is_some_and(|s| s > 0))
    {
        let key = if unique || d.bank.is_empty() {
            format!("dimm/{}", d.locator)
        } else {
            format!("dimm/{} {}", d.bank, d.locator)
        };
        let mut attrs = Attrs::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                attrs.insert(k.to_string(), v);
            }
        };
        put("size_bytes", d.size_bytes.map(|s| s.to_string()));
        put("speed_mts", d.speed_mts.map(|s| s.to_string()));
        put("manufacturer", d.manufacturer);
        put("part_number", d.part_number);
        put("serial", d.serial);
        put("type", d.memory_type.map(str::to_string));
        items.insert(key, attrs);
    }
}

/// `MemTotal` of `proc/meminfo` in bytes (the file counts in kB, which are KiB).
pub fn parse_mem_total(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let mut words = line.split_ascii_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => n.checked_mul(1024),
        _ => None,
    }
}

/// One SMBIOS type 17 structure.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Dimm {
    pub locator: String,
    pub bank: String,
    /// `Some(0)` for an empty slot, `None` when the firmware does not know.
    pub size_bytes: Option<u64>,
    pub speed_mts: Option<u64>,
    pub manufacturer: Option<String>,
    pub part_number: Option<String>,
    pub serial: Option<String>,
    pub memory_type: Option<&'static str>,
}

/// Parses one raw SMBIOS type 17 structure: the formatted area (its length is byte 1) and
/// the string set after it. Fields beyond the formatted length belong to later SMBIOS
/// versions and are treated as absent.
pub fn parse_type17(raw: &[u8]) -> Option<Dimm> {
    if raw.len() < 0x15 || raw[0] != 17 {
        return None;
    }
    let len = usize::from(raw[1]);
    if len < 0x15 || len > raw.len() {
        return None;
    }
    let formatted = &raw[..len];
    let strings: Vec<&[u8]> = raw[len..]
        .split(|b| *b == 0)
        .take_while(|s| !s.is_empty())
        .collect();
    let byte = |off: usize| formatted.get(off).copied();
    let word = |off: usize| Some(u16::from_le_bytes([byte(off)?, byte(off + 1)?]));
    let dword = |off: usize| {
        Some(u32::from_le_bytes([
            byte(off)?,
            byte(off + 1)?,
            byte(off + 2)?,
            byte(off + 3)?,
        ]))
    };
    let string = |off: usize| -> Option<String> {
        let i = usize::from(byte(off)?);
        let s = strings.get(i.checked_sub(1)?)?;
        let s = String::from_utf8_lossy(s);
        let t = s.trim();
        (!t.is_empty()).then(|| t.to_string())
    };

    let size_bytes = match word(0x0C)? {
        0xFFFF => None,
        0x7FFF => dword(0x1C).map(|mb| u64::from(mb & 0x7FFF_FFFF) << 20),
        w if w & 0x8000 != 0 => Some(u64::from(w & 0x7FFF) << 10),
        w => Some(u64::from(w) << 20),
    };
    let speed_mts = match word(0x15) {
        Some(0xFFFF) => dword(0x54).map(u64::from),
        Some(0) | None => None,
        Some(s) => Some(u64::from(s)),
    };
    let memory_type = byte(0x12).and_then(|t| match t {
        0x0F => Some("SDRAM"),
        0x12 => Some("DDR"),
        0x13 => Some("DDR2"),
        0x18 => Some("DDR3"),
        0x1A => Some("DDR4"),
        0x1B => Some("LPDDR"),
        0x1C => Some("LPDDR2"),
        0x1D => Some("LPDDR3"),
        0x1E => Some("LPDDR4"),
        0x22 => Some("DDR5"),
        0x23 => Some("LPDDR5"),
        _ => None,
    });
    let handle = word(0x02).unwrap_or(0);
    Some(Dimm {
        locator: string(0x10).unwrap_or_else(|| format!("handle-{handle:#06x}")),
        bank: string(0x11).unwrap_or_default(),
        size_bytes,
        speed_mts,
        manufacturer: string(0x17),
        part_number: string(0x1A),
        serial: string(0x18),
        memory_type,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A type 17 structure as SMBIOS 3.x firmware writes it (0x28 bytes formatted).
    pub(crate) fn type17(size_word: u16, ext_mb: u32, speed: u16, strings: &[&str]) -> Vec<u8> {
        let mut f = vec![0u8; 0x28];
        f[0] = 17;
        f[1] = 0x28;
        f[2..4].copy_from_slice(&0x1100u16.to_le_bytes());
        f[0x0C..0x0E].copy_from_slice(&size_word.to_le_bytes());
        f[0x10] = 1; // device locator
        f[0x11] = 2; // bank locator
        f[0x12] = 0x1A; // DDR4
        f[0x15..0x17].copy_from_slice(&speed.to_le_bytes());
        f[0x17] = 3; // manufacturer
        f[0x18] = 4; // serial
        f[0x1A] = 5; // part number
        f[0x1C..0x20].copy_from_slice(&ext_mb.to_le_bytes());
        for s in strings {
            f.extend_from_slice(s.as_bytes());
            f.push(0);
        }
        f.push(0);
        if strings.is_empty() {
            f.push(0);
        }
        f
    }

    #[test]
    fn mem_total() {
        assert_eq!(
            parse_mem_total("MemTotal:       16318436 kB\nMemFree: 1 kB\n"),
            Some(16318436 * 1024)
        );
        assert_eq!(parse_mem_total("MemFree: 1 kB\nMemTotal: 2 kB"), Some(2048));
        assert_eq!(parse_mem_total(""), None);
        assert_eq!(parse_mem_total("MemTotal:\n"), None);
        assert_eq!(parse_mem_total("MemTotal: 12 MB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: 18446744073709551615 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: \u{fffd}\u{fffd} kB\n"), None);
    }

    #[test]
    fn dimm() {
        let raw = type17(
            16384,
            0,
            3200,
            &[
                "DIMM_A1",
                "BANK 0",
                "Samsung",
                "12345678",
                "M393A2K43DB3-CWE  ",
            ],
        );
        let d = parse_type17(&raw).unwrap();
        assert_eq!(d.locator, "DIMM_A1");
        assert_eq!(d.bank, "BANK 0");
        assert_eq!(d.size_bytes, Some(16 << 30));
        assert_eq!(d.speed_mts, Some(3200));
        assert_eq!(d.manufacturer.as_deref(), Some("Samsung"));
        assert_eq!(d.serial.as_deref(), Some("12345678"));
        assert_eq!(d.part_number.as_deref(), Some("M393A2K43DB3-CWE"));
        assert_eq!(d.memory_type, Some("DDR4"));
    }

    #[test]
    fn dimm_sizes() {
        let empty = parse_type17(&type17(0, 0, 0, &["DIMM_B1"])).unwrap();
        assert_eq!((empty.size_bytes, empty.speed_mts), (Some(0), None));
        let kb = parse_type17(&type17(0x8000 | 512, 0, 0, &[])).unwrap();
        assert_eq!(kb.size_bytes, Some(512 << 10));
        assert_eq!(kb.locator, "handle-0x1100");
        let ext = parse_type17(&type17(0x7FFF, 65536, 0, &[])).unwrap();
        assert_eq!(ext.size_bytes, Some(64 << 30));
        let unknown = parse_type17(&type17(0xFFFF, 0, 0, &[])).unwrap();
        assert_eq!(unknown.size_bytes, None);
    }

    #[test]
    fn dimm_bad_input() {
        assert_eq!(parse_type17(&[]), None);
        assert_eq!(parse_type17(&[16; 64]), None);
        // Truncated formatted area.
        let raw = type17(1024, 0, 0, &["X"]);
        assert_eq!(parse_type17(&raw[..0x20]), None);
        // An old, short structure (SMBIOS 2.1, 0x15 bytes) has no speed or strings past it.
        let mut short = raw[..0x15].to_vec();
        short[1] = 0x15;
        short.extend_from_slice(b"X\0\0");
        let d = parse_type17(&short).unwrap();
        assert_eq!(
            (d.size_bytes, d.speed_mts, d.manufacturer),
            (Some(1 << 30), None, None)
        );
        // String indices past the string set and garbage bytes.
        let mut garbage = type17(1024, 0, 0, &[]);
        garbage.truncate(0x28);
        garbage.extend_from_slice(&[0xff, 0xfe, 0]);
        let d = parse_type17(&garbage).unwrap();
        assert_eq!(d.locator, "\u{fffd}\u{fffd}");
        assert_eq!(d.manufacturer, None);
    }

    #[test]
    fn duplicate_locators_get_the_bank() {
        let dir = tempfile::tempdir().unwrap();
        for (i, bank) in ["BANK 0", "BANK 1"].iter().enumerate() {
            let d = dir.path().join(format!("{ENTRIES}/17-{i}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(
                d.join("raw"),
                type17(8192, 0, 2400, &["DIMM 0", bank, "Micron", "1", "P"]),
            )
            .unwrap();
        }
        let mut r = Reader::new(dir.path(), "hw");
        let mut items = Items::new();
        collect_dimms(&mut r, &mut items);
        let keys: Vec<&str> = items.keys().map(String::as_str).collect();
        assert_eq!(keys, ["dimm/BANK 0 DIMM 0", "dimm/BANK 1 DIMM 0"]);
        assert!(r.into_warnings().is_empty());
    }
}
