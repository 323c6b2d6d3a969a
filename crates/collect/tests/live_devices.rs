//! Tests of the device collectors on the machine running them (root `/`), compared with what
//! others report about the same devices: the `pci/` items with `lspci -n -mm -D` (pciutils),
//! and where `lspci` is not installed with `/sys/bus/pci/devices` read here independently;
//! the `usb/`, `monitor/` and `battery/` keys with the sysfs directories they come from.
//! Machines without PCI (containers, ARM boards) must then have no `pci/` item.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;

use invsync_collect::collect;
use invsync_proto::{Class, Items};

/// What `lspci -n -mm` says of a function: slot, class, vendor, device, subsystem vendor and
/// subsystem device (empty when there is no subsystem).
type PciLine = (String, String, String, String, String, String);

fn ours(items: &Items) -> BTreeSet<PciLine> {
    items
        .iter()
        .filter_map(|(k, a)| {
            let slot = k.strip_prefix("pci/")?;
            let get = |key: &str| a.get(key).cloned().unwrap_or_default();
            Some((
                slot.to_string(),
                get("class_id"),
                get("vendor_id"),
                get("device_id"),
                get("subsystem_vendor_id"),
                get("subsystem_device_id"),
            ))
        })
        .collect()
}

/// The quoted fields of one `lspci -mm` line, in order (the `-r` and `-p` options between
/// them are not quoted).
fn quoted(line: &str) -> Vec<String> {
    line.split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

fn parse_lspci(text: &str) -> BTreeSet<PciLine> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let slot = l.split_whitespace().next().unwrap().to_string();
            let q = quoted(l);
            assert_eq!(q.len(), 5, "unexpected lspci -mm line: {l}");
            (
                slot,
                q[0].clone(),
                q[1].clone(),
                q[2].clone(),
                q[3].clone(),
                q[4].clone(),
            )
        })
        .collect()
}

/// `/sys/bus/pci/devices` read here, with lspci's rule for subsystems.
fn from_sysfs(dir: &Path) -> BTreeSet<PciLine> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeSet::new();
    };
    entries
        .map(|e| e.unwrap())
        .map(|e| {
            let read = |f: &str| {
                let t = std::fs::read_to_string(e.path().join(f)).unwrap();
                t.trim().trim_start_matches("0x").to_string()
            };
            let class = read("class");
            let sv = read("subsystem_vendor");
            let (sv, sd) = if sv == "0000" || sv == "ffff" {
                (String::new(), String::new())
            } else {
                (sv, read("subsystem_device"))
            };
            (
                e.file_name().to_string_lossy().into_owned(),
                class[..4].to_string(),
                read("vendor"),
                read("device"),
                sv,
                sd,
            )
        })
        .collect()
}

#[test]
fn pci_equals_lspci() {
    let hw = collect(Class::Hw, Path::new("/"));
    let ours = ours(&hw.items);
    match Command::new("lspci").args(["-n", "-mm", "-D"]).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "lspci failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let theirs = parse_lspci(&String::from_utf8_lossy(&out.stdout));
            assert_eq!(ours, theirs);
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            // Without pciutils, the kernel's own listing is the reference.
            assert_eq!(ours, from_sysfs(Path::new("/sys/bus/pci/devices")));
        }
        Err(e) => panic!("cannot run lspci: {e}"),
    }
    if Path::new("/sys/bus/pci/devices").is_dir() {
        let n = std::fs::read_dir("/sys/bus/pci/devices").unwrap().count();
        assert_eq!(ours.len(), n);
    } else {
        assert!(ours.is_empty());
    }
    // Nothing about the devices is a warning on a healthy machine.
    let device_warnings: Vec<&String> = hw
        .warnings
        .iter()
        .filter(|w| {
            [
                "sys/bus/pci",
                "sys/bus/usb",
                "power_supply",
                "pci.ids",
                "usb.ids",
            ]
            .iter()
            .any(|s| w.contains(s))
        })
        .collect();
    assert!(device_warnings.is_empty(), "{device_warnings:?}");
}

#[test]
fn lspci_lines_are_parsed() {
    let text = "0000:00:00.0 \"0600\" \"8086\" \"0d57\" -p00 \"\" \"\"\n\
                0000:00:03.0 \"0200\" \"1af4\" \"1041\" -r01 -p00 \"1af4\" \"1041\"\n";
    let p = parse_lspci(text);
    assert_eq!(p.len(), 2);
    assert!(p.contains(&(
        "0000:00:03.0".into(),
        "0200".into(),
        "1af4".into(),
        "1041".into(),
        "1af4".into(),
        "1041".into()
    )));
}

fn keys(items: &Items, prefix: &str) -> BTreeSet<String> {
    items
        .keys()
        .filter_map(|k| k.strip_prefix(prefix).map(str::to_string))
        .collect()
}

fn names(dir: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn usb_monitors_and_batteries_match_sysfs() {
    let hw = collect(Class::Hw, Path::new("/"));
    // USB devices are the entries with a vendor id that are not root hubs or interfaces.
    let usb: BTreeSet<String> = names("/sys/bus/usb/devices")
        .into_iter()
        .filter(|n| !n.starts_with("usb") && !n.contains(':'))
        .filter(|n| {
            Path::new("/sys/bus/usb/devices")
                .join(n)
                .join("idVendor")
                .exists()
        })
        .collect();
    assert_eq!(keys(&hw.items, "usb/"), usb);

    let monitors: BTreeSet<String> = names("/sys/class/drm")
        .into_iter()
        .filter(|n| {
            let d = Path::new("/sys/class/drm").join(n);
            std::fs::read_to_string(d.join("status")).is_ok_and(|s| s.trim() == "connected")
                && std::fs::metadata(d.join("edid")).is_ok_and(|m| m.len() > 0)
        })
        .collect();
    let refused = hw.warnings.iter().filter(|w| w.contains("EDID")).count();
    assert_eq!(keys(&hw.items, "monitor/").len() + refused, monitors.len());

    let batteries: BTreeSet<String> = names("/sys/class/power_supply")
        .into_iter()
        .filter(|n| {
            let d = Path::new("/sys/class/power_supply").join(n);
            let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
            read("type").trim() == "Battery" && read("scope").trim() != "Device"
        })
        .collect();
    assert_eq!(keys(&hw.items, "battery/"), batteries);

    let gpus: BTreeSet<String> = hw
        .items
        .iter()
        .filter(|(k, a)| k.starts_with("pci/") && a["class_id"].starts_with("03"))
        .map(|(k, _)| k["pci/".len()..].to_string())
        .collect();
    assert_eq!(keys(&hw.items, "gpu/"), gpus);
}
