//! The `usb/<bus>-<port path>` items: the USB devices in `sys/bus/usb/devices/` (`1-1`,
//! `1-1.2`: bus 1, port 1, then port 2 of the hub there), not their interfaces (`1-1:1.0`) and
//! not the root hubs (`usb1`), which are the host controller, already a `pci/` item.
//!
//! Attributes: `vendor_id` and `product_id` (`idVendor`, `idProduct`: four lowercase hex
//! digits, as `lsusb` prints them), `class_id` (`bDeviceClass`, two hex digits; `00` means
//! each interface declares its own) and `class` (its name in `usb.ids`), `vendor` and
//! `product` (the strings the device itself reports, else the names in `usb.ids`), and
//! `serial` when the device has one. `usb.ids` is read only when some device lacks its own
//! strings or has a class to name.

use invsync_proto::{Attrs, Items};

use super::ids::{IdNames, IdQuery, parse_hex_id, parse_ids};
use crate::read::{Reader, value};

const DIR: &str = "sys/bus/usb/devices";

/// Where distributions install `usb.ids`, relative to the root. Debian's real file is under
/// `var/lib/usbutils/` (`usr/share/misc/usb.ids` is an absolute link to it, which would point
/// outside a root other than `/`), so it is tried first.
const USB_IDS: [&str; 3] = [
    "var/lib/usbutils/usb.ids",
    "usr/share/misc/usb.ids",
    "usr/share/hwdata/usb.ids",
];

/// Whether a name in `sys/bus/usb/devices/` is a device: a bus number, a dash, then port
/// numbers separated by dots (`3-1.4.2`). Interfaces add `:config.interface`; root hubs are
/// `usb<bus>`.
pub fn is_device_name(name: &str) -> bool {
    let Some((bus, ports)) = name.split_once('-') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(bus) && ports.split('.').all(digits)
}

/// One USB device as read from sysfs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct UsbDevice {
    name: String,
    vendor_id: u16,
    product_id: u16,
    class: Option<u8>,
    manufacturer: Option<String>,
    product: Option<String>,
    serial: Option<String>,
}

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    let Some(names) = r.list_dir(DIR) else {
        return;
    };
    let devices: Vec<UsbDevice> = names
        .iter()
        .filter(|n| is_device_name(n))
        .filter_map(|n| read_device(r, n))
        .collect();
    if devices.is_empty() {
        return;
    }
    let names = lookup(r, &devices);
    for d in devices {
        let mut a = Attrs::new();
        a.insert("vendor_id".into(), format!("{:04x}", d.vendor_id));
        a.insert("product_id".into(), format!("{:04x}", d.product_id));
        if let Some(c) = d.class {
            a.insert("class_id".into(), format!("{c:02x}"));
            if let Some(n) = names.class(c, None) {
                a.insert("class".into(), n.to_string());
            }
        }
        let vendor = d
            .manufacturer
            .or_else(|| names.vendor(d.vendor_id).map(str::to_string));
        let product = d
            .product
            .or_else(|| names.device(d.vendor_id, d.product_id).map(str::to_string));
        for (key, v) in [
            ("vendor", vendor),
            ("product", product),
            ("serial", d.serial),
        ] {
            if let Some(v) = v {
                a.insert(key.into(), v);
            }
        }
        items.insert(format!("usb/{}", d.name), a);
    }
}

fn read_device(r: &mut Reader<'_>, name: &str) -> Option<UsbDevice> {
    let dir = format!("{DIR}/{name}");
    let id = |r: &mut Reader<'_>, file: &str| {
        let rel = format!("{dir}/{file}");
        let text = r.read(&rel)?;
        let v = parse_hex_id(&text).and_then(|v| u16::try_from(v).ok());
        if v.is_none() {
            r.warn(&format!(
                "{rel} holds {:?}, not a hexadecimal id: USB device {name} is not reported",
                text.trim()
            ));
        }
        v
    };
    let vendor_id = id(r, "idVendor")?;
    let product_id = id(r, "idProduct")?;
    let class = r
        .read_optional(&format!("{dir}/bDeviceClass"))
        .and_then(|t| parse_hex_id(&t))
        .and_then(|c| u8::try_from(c).ok());
    // The strings are optional in USB: many devices have no serial, some no strings at all.
    let string = |r: &mut Reader<'_>, file: &str| {
        r.read_quiet(&format!("{dir}/{file}"))
            .as_deref()
            .and_then(value)
            .map(str::to_string)
    };
    Some(UsbDevice {
        name: name.to_string(),
        vendor_id,
        product_id,
        class,
        manufacturer: string(r, "manufacturer"),
        product: string(r, "product"),
        serial: string(r, "serial"),
    })
}

/// The names `usb.ids` gives for what the devices do not say themselves.
fn lookup(r: &mut Reader<'_>, devices: &[UsbDevice]) -> IdNames {
    let mut query = IdQuery::default();
    for d in devices {
        if d.manufacturer.is_none() {
            query.vendors.insert(d.vendor_id);
        }
        if d.product.is_none() {
            query.devices.insert((d.vendor_id, d.product_id));
        }
        if let Some(c) = d.class {
            query.classes.insert((c, None));
        }
    }
    if query.is_empty() {
        return IdNames::default();
    }
    match USB_IDS.iter().find_map(|p| r.read_optional(p)) {
        Some(text) => parse_ids(&text, &query),
        None => IdNames::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        for n in ["1-1", "1-1.2", "3-10.4.2", "12-3"] {
            assert!(is_device_name(n), "{n}");
        }
        for n in [
            "usb1", "1-1:1.0", "1-0:1.0", "1-", "-1", "1-1.", "1-1..2", "a-1", "1-x", "",
        ] {
            assert!(!is_device_name(n), "{n}");
        }
    }

    #[test]
    fn device_strings_win_over_usb_ids_and_bad_ids_warn() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join(DIR);
        let mk = |name: &str, files: &[(&str, &str)]| {
            let d = base.join(name);
            std::fs::create_dir_all(&d).unwrap();
            for (f, v) in files {
                std::fs::write(d.join(f), v).unwrap();
            }
        };
        mk(
            "1-2",
            &[
                ("idVendor", "046d\n"),
                ("idProduct", "c52b\n"),
                ("bDeviceClass", "00\n"),
                ("manufacturer", "Logitech\n"),
                ("product", "USB Receiver\n"),
            ],
        );
        mk(
            "1-3",
            &[
                ("idVendor", "8087\n"),
                ("idProduct", "0a2b\n"),
                ("bDeviceClass", "e0\n"),
            ],
        );
        mk("1-4", &[("idVendor", "zzzz\n"), ("idProduct", "0001\n")]);
        mk("1-2:1.0", &[("idVendor", "046d\n")]);
        mk("usb1", &[("idVendor", "1d6b\n"), ("idProduct", "0002\n")]);
        let ids = dir.path().join("usr/share/hwdata");
        std::fs::create_dir_all(&ids).unwrap();
        std::fs::write(
            ids.join("usb.ids"),
            "046d  Logitech, Inc.\n\tc52b  Unifying Receiver\n\
             8087  Intel Corp.\n\t0a2b  Bluetooth wireless interface\n\
             C 00  (Defined at Interface level)\nC e0  Wireless\n",
        )
        .unwrap();
        let mut r = Reader::new(dir.path(), "hw");
        let mut items = Items::new();
        collect(&mut r, &mut items);
        assert_eq!(items.keys().collect::<Vec<_>>(), ["usb/1-2", "usb/1-3"]);
        let logi = &items["usb/1-2"];
        assert_eq!(logi["vendor"], "Logitech");
        assert_eq!(logi["product"], "USB Receiver");
        assert_eq!(logi["class"], "(Defined at Interface level)");
        let bt = &items["usb/1-3"];
        assert_eq!(bt["vendor"], "Intel Corp.");
        assert_eq!(bt["product"], "Bluetooth wireless interface");
        assert_eq!(
            (bt["class_id"].as_str(), bt["class"].as_str()),
            ("e0", "Wireless")
        );
        assert!(!bt.contains_key("serial"));
        assert_eq!(
            r.into_warnings(),
            [
                "hw: sys/bus/usb/devices/1-4/idVendor holds \"zzzz\", not a hexadecimal id: \
                 USB device 1-4 is not reported"
            ]
        );
    }
}
