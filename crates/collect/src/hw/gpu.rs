//! The `gpu/<pci slot>` items: the PCI devices of class `03xx` (VGA, 3D and other display
//! controllers), which are also `pci/` items, described as graphics cards: vendor and device
//! (names from `pci.ids` when installed, ids always), the driver, and the dedicated memory
//! where the kernel exposes it: `mem_info_vram_total` (bytes) of the `amdgpu` driver. Other
//! drivers do not say (`i915` shares system memory, the proprietary `nvidia` driver has no
//! sysfs file for it), so the attribute is left out for them rather than guessed from the
//! size of a PCI memory window.

use invsync_proto::{Attrs, Items};

use super::pci::PciDevice;
use crate::read::{Reader, value};

const DISPLAY_CLASS: u8 = 0x03;

/// `mem_info_vram_total`: a byte count, or `None` when not a positive number.
pub fn parse_vram_total(text: &str) -> Option<u64> {
    value(text)?.parse().ok().filter(|v| *v > 0)
}

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items, devices: &[PciDevice]) {
    for d in devices.iter().filter(|d| d.base_class() == DISPLAY_CLASS) {
        let mut a = Attrs::new();
        a.insert("vendor_id".into(), format!("{:04x}", d.vendor_id));
        a.insert("device_id".into(), format!("{:04x}", d.device_id));
        for (key, v) in [
            ("vendor", &d.vendor),
            ("device", &d.device),
            ("driver", &d.driver),
        ] {
            if let Some(v) = v {
                a.insert(key.into(), v.clone());
            }
        }
        // Absent for every driver but amdgpu, so its absence is no warning.
        if let Some(bytes) = r
            .read_quiet(&format!(
                "sys/bus/pci/devices/{}/mem_info_vram_total",
                d.slot
            ))
            .and_then(|t| parse_vram_total(&t))
        {
            a.insert("memory_bytes".into(), bytes.to_string());
        }
        items.insert(format!("gpu/{}", d.slot), a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vram() {
        assert_eq!(parse_vram_total("2147483648\n"), Some(2147483648));
        assert_eq!(parse_vram_total("0\n"), None);
        assert_eq!(parse_vram_total("-1\n"), None);
        assert_eq!(parse_vram_total(""), None);
    }

    #[test]
    fn only_display_controllers_are_gpus() {
        let dir = tempfile::tempdir().unwrap();
        let amd = dir.path().join("sys/bus/pci/devices/0000:01:00.0");
        std::fs::create_dir_all(&amd).unwrap();
        std::fs::write(amd.join("mem_info_vram_total"), "2147483648\n").unwrap();
        let devices = [
            PciDevice {
                slot: "0000:00:02.0".into(),
                vendor_id: 0x8086,
                device_id: 0x5917,
                class: 0x030000,
                driver: Some("i915".into()),
                vendor: Some("Intel Corporation".into()),
                ..PciDevice::default()
            },
            PciDevice {
                slot: "0000:01:00.0".into(),
                vendor_id: 0x1002,
                device_id: 0x6900,
                class: 0x038000,
                ..PciDevice::default()
            },
            PciDevice {
                slot: "0000:00:14.0".into(),
                vendor_id: 0x8086,
                device_id: 0x9d2f,
                class: 0x0c0330,
                ..PciDevice::default()
            },
        ];
        let mut r = Reader::new(dir.path(), "hw");
        let mut items = Items::new();
        collect(&mut r, &mut items, &devices);
        assert_eq!(
            items.keys().collect::<Vec<_>>(),
            ["gpu/0000:00:02.0", "gpu/0000:01:00.0"]
        );
        let intel = &items["gpu/0000:00:02.0"];
        assert_eq!(intel["vendor"], "Intel Corporation");
        assert_eq!(intel["driver"], "i915");
        assert!(!intel.contains_key("memory_bytes") && !intel.contains_key("device"));
        let amd = &items["gpu/0000:01:00.0"];
        assert_eq!(amd["memory_bytes"], "2147483648");
        assert_eq!(amd["device_id"], "6900");
        assert!(r.into_warnings().is_empty());
    }
}
