//! The `pci/<domain:bus:dev.fn>` items: every PCI function the kernel lists in
//! `sys/bus/pci/devices/` (symbolic links into `sys/devices/`), with its ids as `lspci -n`
//! prints them (four lowercase hex digits; the class as class and subclass, `0x030000` →
//! `0300`), its subsystem ids, the driver bound to it and, when `pci.ids` is installed under
//! the root, the names of its vendor, device and class.
//!
//! A subsystem vendor id of `0000` or `ffff` means "no subsystem" (host bridges have none):
//! both subsystem ids are then left out, as `lspci -mm` prints them empty. A device whose vendor, device or class cannot be read is
//! a warning and no item: an item without its ids would say nothing. `pci.ids` is read only
//! when there are devices, and only the names of the ids present are looked up (see
//! [`super::ids`]); a machine without it reports ids without names and no warning.

use invsync_proto::{Attrs, Items};

use super::ids::{IdNames, IdQuery, parse_hex_id, parse_ids};
use crate::read::Reader;

const DIR: &str = "sys/bus/pci/devices";

/// Where distributions install `pci.ids` (Debian's `pci.ids`, Fedora's and Alpine's
/// `hwdata`), relative to the root.
const PCI_IDS: [&str; 2] = ["usr/share/misc/pci.ids", "usr/share/hwdata/pci.ids"];

/// One PCI function as read from sysfs, with the names found for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PciDevice {
    /// `domain:bus:device.function`, e.g. `0000:00:02.0`.
    pub slot: String,
    pub vendor_id: u16,
    pub device_id: u16,
    /// The 24-bit class code: class, subclass, programming interface.
    pub class: u32,
    pub subsystem_vendor_id: Option<u16>,
    pub subsystem_device_id: Option<u16>,
    pub driver: Option<String>,
    pub vendor: Option<String>,
    pub device: Option<String>,
    pub class_name: Option<String>,
}

impl PciDevice {
    /// The class and subclass as `lspci -n` prints them (`0300`).
    pub fn class_id(&self) -> String {
        format!("{:04x}", self.class >> 8)
    }

    /// The base class (`0x03` for display controllers).
    pub fn base_class(&self) -> u8 {
        (self.class >> 16) as u8
    }

    fn subclass(&self) -> u8 {
        (self.class >> 8) as u8
    }

    /// The item's attributes.
    pub fn attrs(&self) -> Attrs {
        let mut a = Attrs::new();
        a.insert("vendor_id".into(), format!("{:04x}", self.vendor_id));
        a.insert("device_id".into(), format!("{:04x}", self.device_id));
        a.insert("class_id".into(), self.class_id());
        if let Some(v) = self.subsystem_vendor_id {
            a.insert("subsystem_vendor_id".into(), format!("{v:04x}"));
        }
        if let Some(d) = self.subsystem_device_id {
            a.insert("subsystem_device_id".into(), format!("{d:04x}"));
        }
        for (key, value) in [
            ("driver", &self.driver),
            ("vendor", &self.vendor),
            ("device", &self.device),
            ("class", &self.class_name),
        ] {
            if let Some(v) = value {
                a.insert(key.into(), v.clone());
            }
        }
        a
    }
}

/// A 16-bit id file's value (`0x8086\n`).
pub fn parse_id16(text: &str) -> Option<u16> {
    parse_hex_id(text).and_then(|v| u16::try_from(v).ok())
}

/// A class file's value (`0x030000\n`): 24 bits.
pub fn parse_class(text: &str) -> Option<u32> {
    parse_hex_id(text).filter(|c| *c <= 0xff_ffff)
}

/// A subsystem id, `None` for the "no subsystem" values `0000` and `ffff`.
pub fn parse_subsystem_id(text: &str) -> Option<u16> {
    parse_id16(text).filter(|v| *v != 0 && *v != 0xffff)
}

/// Reads the PCI devices, adds their `pci/` items and returns them for the collectors that
/// describe some of them further (graphics cards).
pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) -> Vec<PciDevice> {
    // A machine without PCI (most ARM boards, containers without sysfs) has no directory:
    // nothing to report and nothing to warn about.
    let Some(slots) = r.list_dir(DIR) else {
        return Vec::new();
    };
    let mut devices: Vec<PciDevice> = slots.iter().filter_map(|s| read_device(r, s)).collect();
    if !devices.is_empty() {
        name(r, &mut devices);
    }
    for d in &devices {
        items.insert(format!("pci/{}", d.slot), d.attrs());
    }
    devices
}

fn read_device(r: &mut Reader<'_>, slot: &str) -> Option<PciDevice> {
    let dir = format!("{DIR}/{slot}");
    let id = |r: &mut Reader<'_>, file: &str, parse: fn(&str) -> Option<u32>| {
        let rel = format!("{dir}/{file}");
        let text = r.read(&rel)?;
        let v = parse(&text);
        if v.is_none() {
            r.warn(&format!(
                "{rel} holds {:?}, not a hexadecimal id: PCI device {slot} is not reported",
                text.trim()
            ));
        }
        v
    };
    let id16 = |t: &str| parse_id16(t).map(u32::from);
    let vendor_id = id(r, "vendor", id16)? as u16;
    let device_id = id(r, "device", id16)? as u16;
    let class = id(r, "class", parse_class)?;
    // As lspci: the subsystem device id counts only with a subsystem vendor.
    let subsystem_vendor_id = r
        .read_optional(&format!("{dir}/subsystem_vendor"))
        .and_then(|t| parse_subsystem_id(&t));
    let subsystem_device_id = subsystem_vendor_id.and_then(|_| {
        r.read_optional(&format!("{dir}/subsystem_device"))
            .and_then(|t| parse_id16(&t))
    });
    // `driver` is a link to `bus/pci/drivers/<name>`; a device without a driver has none.
    let driver = std::fs::read_link(r.path(&format!("{dir}/driver")))
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()));
    Some(PciDevice {
        slot: slot.to_string(),
        vendor_id,
        device_id,
        class,
        subsystem_vendor_id,
        subsystem_device_id,
        driver,
        ..PciDevice::default()
    })
}

/// Fills in the names from the first `pci.ids` found under the root.
fn name(r: &mut Reader<'_>, devices: &mut [PciDevice]) {
    let Some(text) = PCI_IDS.iter().find_map(|p| r.read_optional(p)) else {
        return;
    };
    let mut query = IdQuery::default();
    for d in devices.iter() {
        query.vendors.insert(d.vendor_id);
        query.devices.insert((d.vendor_id, d.device_id));
        query.classes.insert((d.base_class(), Some(d.subclass())));
    }
    let names: IdNames = parse_ids(&text, &query);
    for d in devices.iter_mut() {
        d.vendor = names.vendor(d.vendor_id).map(str::to_string);
        d.device = names.device(d.vendor_id, d.device_id).map(str::to_string);
        d.class_name = names
            .class(d.base_class(), Some(d.subclass()))
            .map(str::to_string);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(parse_id16("0x8086\n"), Some(0x8086));
        assert_eq!(parse_id16("0x18086\n"), None);
        assert_eq!(parse_class("0x030000\n"), Some(0x030000));
        assert_eq!(parse_class("0x1030000\n"), None);
        assert_eq!(parse_subsystem_id("0x0000\n"), None);
        assert_eq!(parse_subsystem_id("0xffff\n"), None);
        assert_eq!(parse_subsystem_id("0x1028\n"), Some(0x1028));
        let d = PciDevice {
            class: 0x0c0330,
            ..PciDevice::default()
        };
        assert_eq!(
            (d.class_id().as_str(), d.base_class(), d.subclass()),
            ("0c03", 0x0c, 0x03)
        );
    }

    #[test]
    fn unreadable_ids_are_a_warning_and_no_item() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join(DIR).join("0000:00:00.0");
        let bad = dir.path().join(DIR).join("0000:00:01.0");
        std::fs::create_dir_all(&ok).unwrap();
        std::fs::create_dir_all(&bad).unwrap();
        for (f, v) in [
            ("vendor", "0x8086\n"),
            ("device", "0x0d57\n"),
            ("class", "0x060000\n"),
            ("subsystem_vendor", "0x0000\n"),
            ("subsystem_device", "0x0000\n"),
        ] {
            std::fs::write(ok.join(f), v).unwrap();
        }
        std::fs::write(bad.join("vendor"), "garbage\n").unwrap();
        let mut r = Reader::new(dir.path(), "hw");
        let mut items = Items::new();
        let devices = collect(&mut r, &mut items);
        assert_eq!(devices.len(), 1);
        assert_eq!(items.len(), 1);
        let a = &items["pci/0000:00:00.0"];
        assert_eq!(
            a.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
            ["class_id=0600", "device_id=0d57", "vendor_id=8086"]
        );
        assert_eq!(
            r.into_warnings(),
            [
                "hw: sys/bus/pci/devices/0000:00:01.0/vendor holds \"garbage\", not a hexadecimal id: \
                 PCI device 0000:00:01.0 is not reported"
            ]
        );
    }

    #[test]
    fn no_pci_directory_is_silent() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Reader::new(dir.path(), "hw");
        let mut items = Items::new();
        assert!(collect(&mut r, &mut items).is_empty());
        assert!(items.is_empty());
        assert!(r.into_warnings().is_empty());
    }
}
