//! Snapshot tests of the device collectors (`pci/`, `gpu/`, `usb/`, `monitor/`, `battery/`)
//! on the `laptop` fixture root: a Kaby Lake laptop with an AMD graphics card behind a PCIe
//! port, a USB hub with a receiver behind it, a webcam and a Bluetooth adapter without
//! strings, four graphics outputs (an eDP panel and an HDMI monitor with real EDIDs from
//! linuxhw/EDID, a disconnected DisplayPort and one whose EDID arrived with a flipped bit),
//! the system battery, the mains adapter and a wireless mouse's battery, and subsets of the
//! real `pci.ids` and `usb.ids`.
//!
//! Only the device items and the warnings about their sources are in the snapshot: the
//! fixture has no DMI, CPU or memory files, and what the other collectors say about their
//! absence is theirs to test.

use std::path::PathBuf;

use invsync_collect::{Collected, collect};
use invsync_proto::{Class, Snapshot};

const PREFIXES: [&str; 5] = ["pci/", "gpu/", "usb/", "monitor/", "battery/"];
const SOURCES: [&str; 6] = [
    "sys/bus/pci",
    "sys/bus/usb",
    "sys/class/drm",
    "sys/class/power_supply",
    "pci.ids",
    "usb.ids",
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

/// The device items and the warnings about device sources.
fn devices(c: &Collected) -> serde_json::Value {
    let items: serde_json::Map<String, serde_json::Value> = c
        .items
        .iter()
        .filter(|(k, _)| PREFIXES.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.clone(), serde_json::json!(v)))
        .collect();
    let warnings: Vec<&String> = c
        .warnings
        .iter()
        .filter(|w| SOURCES.iter().any(|s| w.contains(s)))
        .collect();
    serde_json::json!({ "items": items, "warnings": warnings })
}

#[test]
fn laptop_devices() {
    insta::assert_json_snapshot!(
        "laptop_devices",
        devices(&collect(Class::Hw, &fixture("laptop")))
    );
}

/// The contract of issue 19 that the snapshot encodes, stated once more so that accepting a
/// wrong snapshot cannot hide it.
#[test]
fn laptop_rules() {
    let hw = collect(Class::Hw, &fixture("laptop"));
    let keys: Vec<&str> = hw
        .items
        .keys()
        .map(String::as_str)
        .filter(|k| PREFIXES.iter().any(|p| k.starts_with(p)))
        .collect();
    assert_eq!(
        keys,
        [
            "battery/BAT0",
            "gpu/0000:00:02.0",
            "gpu/0000:01:00.0",
            "monitor/card0-HDMI-A-1",
            "monitor/card0-eDP-1",
            "pci/0000:00:00.0",
            "pci/0000:00:02.0",
            "pci/0000:00:14.0",
            "pci/0000:00:1c.0",
            "pci/0000:00:1c.4",
            "pci/0000:00:1f.4",
            "pci/0000:00:1f.6",
            "pci/0000:01:00.0",
            "pci/0000:02:00.0",
            "usb/1-1",
            "usb/1-1.2",
            "usb/1-5",
            "usb/1-7",
        ]
    );
    let item = |k: &str| &hw.items[k];

    let gpu = item("pci/0000:01:00.0");
    assert_eq!(
        (
            &*gpu["vendor_id"],
            &*gpu["device_id"],
            &*gpu["class_id"],
            &*gpu["subsystem_vendor_id"],
            &*gpu["subsystem_device_id"],
            &*gpu["driver"],
            &*gpu["class"],
        ),
        (
            "1002",
            "6900",
            "0380",
            "1028",
            "0767",
            "amdgpu",
            "Display controller"
        )
    );
    assert_eq!(item("gpu/0000:01:00.0")["memory_bytes"], "2147483648");
    assert!(!item("gpu/0000:00:02.0").contains_key("memory_bytes"));
    assert_eq!(item("gpu/0000:00:02.0")["device"], "HD Graphics 620");
    // 9d14 is not in the fixture's pci.ids: ids without a device name.
    assert!(!item("pci/0000:00:1c.4").contains_key("device"));
    assert_eq!(item("pci/0000:00:1c.4")["class"], "PCI bridge");
    assert!(!item("pci/0000:00:1f.4").contains_key("driver"));
    assert_eq!(item("pci/0000:00:14.0")["class_id"], "0c03");

    assert_eq!(
        item("usb/1-1")["vendor"],
        "Genesys Logic, Inc.",
        "from usb.ids"
    );
    assert_eq!(
        item("usb/1-1")["product"],
        "USB2.0 Hub",
        "the device's own string"
    );
    assert_eq!(item("usb/1-1")["class"], "Hub");
    assert_eq!(item("usb/1-7")["product"], "Bluetooth wireless interface");
    assert_eq!(item("usb/1-5")["serial"], "200901010001");

    let hdmi = item("monitor/card0-HDMI-A-1");
    assert_eq!(
        (
            &*hdmi["manufacturer"],
            &*hdmi["model"],
            &*hdmi["serial"],
            &*hdmi["product_code"],
            &*hdmi["year"],
            &*hdmi["width_mm"],
            &*hdmi["height_mm"],
        ),
        (
            "DEL",
            "D1918H",
            "2C8FJ8255K5E",
            "2005",
            "2018",
            "410",
            "230"
        )
    );
    let panel = item("monitor/card0-eDP-1");
    assert!(!panel.contains_key("model") && !panel.contains_key("serial"));
    assert_eq!((&*panel["width_mm"], &*panel["height_mm"]), ("293", "165"));

    let bat = item("battery/BAT0");
    assert_eq!(
        (
            &*bat["design_capacity"],
            &*bat["full_capacity"],
            &*bat["capacity_unit"],
            &*bat["health_percent"],
            &*bat["model"],
        ),
        ("68000000", "55240000", "µWh", "81", "DELL WJ5R29C")
    );
    for volatile in [
        "energy_now",
        "capacity",
        "status",
        "voltage_now",
        "cycle_count",
    ] {
        assert!(!bat.contains_key(volatile), "{volatile}");
    }

    let warnings: Vec<&String> = hw
        .warnings
        .iter()
        .filter(|w| SOURCES.iter().any(|s| w.contains(s)))
        .collect();
    assert_eq!(
        warnings,
        [
            "hw: the EDID in sys/class/drm/card0-DP-2/edid is refused: its base block's checksum \
             is wrong (its bytes add up to 0xff modulo 256, not 0); the monitor on card0-DP-2 is \
             not reported"
        ]
    );
}

/// Collecting the fixture twice gives the same snapshot hash.
#[test]
fn laptop_deterministic() {
    let a = Snapshot::new(collect(Class::Hw, &fixture("laptop")).items).hash();
    let b = Snapshot::new(collect(Class::Hw, &fixture("laptop")).items).hash();
    assert_eq!(a, b);
}
