//! Names of PCI and USB ids from the `pci.ids` and `usb.ids` databases that distributions ship
//! (`usr/share/misc/`, `usr/share/hwdata/`, `var/lib/usbutils/`), looked up only for the ids a
//! machine actually has.
//!
//! Both files share one format: a vendor line (`8086  Intel Corporation`) is followed by its
//! devices, each indented by one tab (`\t9d2f  Sunrise Point-LP USB 3.0 xHCI Controller`);
//! subsystems and interfaces are indented by two tabs; after the vendors, class lines
//! (`C 03  Display controller`) are followed by their subclasses, one tab deep; `usb.ids` has
//! further sections (`AT`, `HID`, `L` ...) that are not needed here. `pci.ids` is about 1.3 MB
//! and 40 000 lines, so [`parse_ids`] makes one pass over the lines, keeps only the names asked
//! for, skips a vendor's block when the vendor is not wanted, jumps over the rest of the vendor
//! section once every wanted vendor is behind it (the vendors are sorted, as the files' headers
//! require) and stops as soon as nothing more is wanted.

use std::collections::{BTreeMap, BTreeSet};

/// The ids whose names are wanted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdQuery {
    pub vendors: BTreeSet<u16>,
    /// (vendor, device) pairs; the vendor need not be in [`IdQuery::vendors`] as well.
    pub devices: BTreeSet<(u16, u16)>,
    /// (class, subclass) pairs; `None` asks for the class name alone.
    pub classes: BTreeSet<(u8, Option<u8>)>,
}

impl IdQuery {
    pub fn is_empty(&self) -> bool {
        self.vendors.is_empty() && self.devices.is_empty() && self.classes.is_empty()
    }

    fn wants_vendor(&self, v: u16) -> bool {
        self.vendors.contains(&v) || self.devices.range((v, 0)..=(v, u16::MAX)).next().is_some()
    }

    fn wants_class(&self, c: u8) -> bool {
        self.classes
            .range((c, None)..=(c, Some(u8::MAX)))
            .next()
            .is_some()
    }

    /// The highest vendor id asked for, vendors or devices.
    fn last_vendor(&self) -> Option<u16> {
        let v = self.vendors.last().copied();
        let d = self.devices.last().map(|(v, _)| *v);
        v.max(d)
    }
}

/// The names found for an [`IdQuery`]; an id the database does not know has no name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdNames {
    pub vendors: BTreeMap<u16, String>,
    pub devices: BTreeMap<(u16, u16), String>,
    pub classes: BTreeMap<u8, String>,
    pub subclasses: BTreeMap<(u8, u8), String>,
}

impl IdNames {
    pub fn vendor(&self, vendor: u16) -> Option<&str> {
        self.vendors.get(&vendor).map(String::as_str)
    }

    pub fn device(&self, vendor: u16, device: u16) -> Option<&str> {
        self.devices.get(&(vendor, device)).map(String::as_str)
    }

    /// The subclass's name when the database has one, else the class's name (as `lspci`
    /// names a device class).
    pub fn class(&self, class: u8, subclass: Option<u8>) -> Option<&str> {
        subclass
            .and_then(|s| self.subclasses.get(&(class, s)))
            .or_else(|| self.classes.get(&class))
            .map(String::as_str)
    }
}

/// Where a line of the database belongs.
#[derive(Clone, Copy)]
enum Section {
    /// Inside a vendor's block; `true` if the vendor is wanted.
    Vendor(u16, bool),
    Class(u8, bool),
    /// A block nothing is wanted from (another section of `usb.ids`, a vendor not asked for).
    Other,
}

/// Looks up the names asked for in the text of a `pci.ids` or `usb.ids` file. Lines that do not
/// follow the format are ignored, so a damaged file gives fewer names, never an error.
pub fn parse_ids(text: &str, query: &IdQuery) -> IdNames {
    let mut names = IdNames::default();
    if query.is_empty() {
        return names;
    }
    let last_vendor = query.last_vendor();
    let wants_classes = !query.classes.is_empty();
    let mut section = Section::Other;
    let mut seen_class = false;
    let mut pos = 0;
    while pos < text.len() {
        let end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
        let line = text[pos..end].trim_end_matches('\r');
        let next = end + 1;
        match line.as_bytes().first() {
            None | Some(b'#') => {}
            Some(b'\t') => {
                // One tab: a device or a subclass of the current block; two: deeper levels.
                let entry = &line[1..];
                if entry.starts_with('\t') {
                    pos = next;
                    continue;
                }
                match section {
                    Section::Vendor(v, true) => {
                        if let Some((d, name)) = id_and_name::<4>(entry)
                            && query.devices.contains(&(v, d as u16))
                        {
                            names.devices.insert((v, d as u16), name.to_string());
                        }
                    }
                    Section::Class(c, true) => {
                        if let Some((s, name)) = id_and_name::<2>(entry)
                            && query.classes.contains(&(c, Some(s as u8)))
                        {
                            names.subclasses.insert((c, s as u8), name.to_string());
                        }
                    }
                    _ => {}
                }
            }
            Some(_) => {
                if let Some(rest) = line.strip_prefix("C ") {
                    seen_class = true;
                    section = match id_and_name::<2>(rest) {
                        Some((c, name)) => {
                            let c = c as u8;
                            let wanted = query.wants_class(c);
                            if wanted {
                                names.classes.insert(c, name.to_string());
                            }
                            Section::Class(c, wanted)
                        }
                        None => Section::Other,
                    };
                    if !wants_classes || names_complete_classes(query, c_of(section)) {
                        return names;
                    }
                } else if let Some((v, name)) = id_and_name::<4>(line) {
                    let v = v as u16;
                    if last_vendor.is_none_or(|last| v > last) {
                        // Every wanted vendor is behind: what remains of the vendor section
                        // is skipped in one search for the first class line.
                        if !wants_classes {
                            return names;
                        }
                        match text[pos..].find("\nC ") {
                            Some(i) => {
                                section = Section::Other;
                                pos += i + 1;
                                continue;
                            }
                            None => return names,
                        }
                    }
                    let wanted = query.wants_vendor(v);
                    if wanted && query.vendors.contains(&v) {
                        names.vendors.insert(v, name.to_string());
                    }
                    section = Section::Vendor(v, wanted);
                } else {
                    // Another section of usb.ids (`AT 0409  ...`, `HID ...`): they all come
                    // after the classes, so once a class has been seen nothing more is wanted.
                    if seen_class {
                        return names;
                    }
                    section = Section::Other;
                }
            }
        }
        pos = next;
    }
    names
}

fn c_of(section: Section) -> Option<u8> {
    match section {
        Section::Class(c, _) => Some(c),
        _ => None,
    }
}

/// Whether no class still to come in the (sorted) class section is wanted, once the class
/// `current` has started: the pass then ends after `current`'s block. A class line itself never
/// completes the search if its own subclasses are wanted.
fn names_complete_classes(query: &IdQuery, current: Option<u8>) -> bool {
    match (current, query.classes.last()) {
        (Some(c), Some((last, _))) => c > *last,
        _ => false,
    }
}

/// `ID  name`: `N` hexadecimal digits, then whitespace, then a non-empty name.
fn id_and_name<const N: usize>(s: &str) -> Option<(u32, &str)> {
    let id = s.get(..N)?;
    let rest = s.get(N..)?;
    if !rest.starts_with([' ', '\t']) || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let name = rest.trim();
    if name.is_empty() {
        return None;
    }
    Some((u32::from_str_radix(id, 16).ok()?, name))
}

/// A sysfs id file's value (`0x8086\n`, or `8086\n` as USB gives it) as a number.
pub fn parse_hex_id(text: &str) -> Option<u32> {
    let t = text.trim();
    let digits = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PCI: &str = "\
#\tList of PCI ID's
# Syntax:
# vendor  vendor_name
0010  Allied Telesis, Inc (Wrong ID)
# This is a relabelled RTL-8139
\t8139  AT-2500TX V3 Ethernet
1002  Advanced Micro Devices, Inc. [AMD/ATI]
\t6900  Topaz XT [Radeon R7 M260/M265 / M340/M360 / M440/M445 / 530/535 / 620/625 Mobile]
\t\t1028 0640  Radeon R7 M260/M265
8086  Intel Corporation
\t5917  UHD Graphics 620
\t9d2f  Sunrise Point-LP USB 3.0 xHCI Controller
\t\t1028 07a0  Latitude 5480
ffff  Illegal Vendor ID

# List of known device classes, subclasses and programming interfaces
C 02  Network controller
\t00  Ethernet controller
C 03  Display controller
\t00  VGA compatible controller
\t\t00  VGA controller
\t80  Display controller
C 0c  Serial bus controller
\t03  USB controller
C ff  Unassigned class
";

    fn query(vendors: &[u16], devices: &[(u16, u16)], classes: &[(u8, Option<u8>)]) -> IdQuery {
        IdQuery {
            vendors: vendors.iter().copied().collect(),
            devices: devices.iter().copied().collect(),
            classes: classes.iter().copied().collect(),
        }
    }

    #[test]
    fn finds_only_what_is_asked() {
        let q = query(
            &[0x8086, 0x1002, 0x1234],
            &[(0x8086, 0x5917), (0x1002, 0x6900), (0x8086, 0x0d57)],
            &[
                (0x03, Some(0x00)),
                (0x03, Some(0x80)),
                (0xff, Some(0xff)),
                (0x0c, Some(0x03)),
            ],
        );
        let n = parse_ids(PCI, &q);
        assert_eq!(n.vendor(0x8086), Some("Intel Corporation"));
        assert_eq!(
            n.vendor(0x1002),
            Some("Advanced Micro Devices, Inc. [AMD/ATI]")
        );
        assert_eq!(n.vendor(0x1234), None);
        assert_eq!(n.vendor(0x0010), None);
        assert_eq!(n.device(0x8086, 0x5917), Some("UHD Graphics 620"));
        assert_eq!(n.device(0x8086, 0x9d2f), None, "not asked");
        assert_eq!(n.device(0x8086, 0x0d57), None, "unknown");
        assert_eq!(
            n.device(0x1002, 0x6900),
            Some(
                "Topaz XT [Radeon R7 M260/M265 / M340/M360 / M440/M445 / 530/535 / 620/625 Mobile]"
            )
        );
        assert_eq!(n.class(0x03, Some(0x00)), Some("VGA compatible controller"));
        assert_eq!(n.class(0x03, Some(0x80)), Some("Display controller"));
        assert_eq!(n.class(0x0c, Some(0x03)), Some("USB controller"));
        // An unknown subclass falls back on its class's name, as lspci does.
        assert_eq!(n.class(0xff, Some(0xff)), Some("Unassigned class"));
        assert_eq!(n.class(0x02, Some(0x00)), None, "not asked");
        assert_eq!(n.devices.len(), 2);
        assert_eq!(n.subclasses.len(), 3);
    }

    #[test]
    fn subsystem_lines_are_not_devices() {
        // `1028 07a0` under 9d2f is two tabs deep and must not be taken for device 1028.
        let n = parse_ids(PCI, &query(&[], &[(0x8086, 0x1028)], &[]));
        assert!(n.devices.is_empty());
    }

    #[test]
    fn vendors_only_stop_before_classes_and_empty_query_reads_nothing() {
        let n = parse_ids(PCI, &query(&[0x0010], &[], &[]));
        assert_eq!(n.vendor(0x0010), Some("Allied Telesis, Inc (Wrong ID)"));
        assert_eq!(n.classes.len(), 0);
        assert_eq!(parse_ids(PCI, &IdQuery::default()), IdNames::default());
    }

    #[test]
    fn classes_only_skip_the_vendors() {
        let n = parse_ids(PCI, &query(&[], &[], &[(0x02, None), (0x0c, Some(0x03))]));
        assert_eq!(n.class(0x02, None), Some("Network controller"));
        assert_eq!(n.class(0x0c, Some(0x03)), Some("USB controller"));
        assert!(n.vendors.is_empty());
    }

    #[test]
    fn usb_sections_after_the_classes_are_ignored() {
        let usb = "046d  Logitech, Inc.\n\tc52b  Unifying Receiver\n\
                   8087  Intel Corp.\n\t0a2b  Bluetooth wireless interface\n\
                   C 09  Hub\n\t00  Unused\n\
                   C e0  Wireless\n\t01  Radio Frequency\n\
                   AT 0409  English (US)\nHID 00  Undefined\nR 00  Undefined\n";
        let n = parse_ids(
            usb,
            &query(
                &[0x046d, 0x8087],
                &[(0x046d, 0xc52b), (0x8087, 0x0a2b)],
                &[(0x09, None), (0xe0, None)],
            ),
        );
        assert_eq!(n.vendor(0x046d), Some("Logitech, Inc."));
        assert_eq!(
            n.device(0x8087, 0x0a2b),
            Some("Bluetooth wireless interface")
        );
        assert_eq!(n.class(0x09, None), Some("Hub"));
        assert_eq!(n.class(0xe0, None), Some("Wireless"));
    }

    #[test]
    fn damaged_lines_are_ignored() {
        let text = "80  short\n8086\n808g  bad digit\n8086  \n\tzz  bad\nC zz  bad\r\n8086  Intel\r\n\t5917  UHD\r\n";
        let n = parse_ids(
            text,
            &query(&[0x8086], &[(0x8086, 0x5917)], &[(0x03, None)]),
        );
        assert_eq!(n.vendor(0x8086), Some("Intel"));
        assert_eq!(n.device(0x8086, 0x5917), Some("UHD"));
        assert!(n.classes.is_empty());
    }

    #[test]
    fn hex_ids() {
        assert_eq!(parse_hex_id("0x8086\n"), Some(0x8086));
        assert_eq!(parse_hex_id("046d\n"), Some(0x046d));
        assert_eq!(parse_hex_id("0x030000\n"), Some(0x030000));
        assert_eq!(parse_hex_id("0x"), None);
        assert_eq!(parse_hex_id(""), None);
        assert_eq!(parse_hex_id("0x123456789"), None);
        assert_eq!(parse_hex_id("zz"), None);
    }
}
