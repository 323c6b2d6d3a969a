//! The `system` and `bios` items, from the firmware's DMI (SMBIOS) tables as the kernel exports
//! them in `sys/class/dmi/id/` (`sys_vendor`, `product_name`, `product_serial`,
//! `product_uuid`, `bios_vendor`, `bios_version`, `bios_date`).
//!
//! `product_serial` and `product_uuid` are readable by root only, so an agent that runs as
//! another user gets the other attributes and a warning for each missing one. Virtual machines
//! without SMBIOS, containers and most ARM boards have no DMI directory at all: that is one
//! warning and no items, not one warning per file.

use invsync_proto::Items;

use crate::read::{Reader, value};

pub(crate) const DIR: &str = "sys/class/dmi/id";

/// (item, attribute, file under [`DIR`]).
const FIELDS: [(&str, &str, &str); 7] = [
    ("system", "vendor", "sys_vendor"),
    ("system", "product", "product_name"),
    ("system", "serial", "product_serial"),
    ("system", "uuid", "product_uuid"),
    ("bios", "vendor", "bios_vendor"),
    ("bios", "version", "bios_version"),
    ("bios", "date", "bios_date"),
];

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    if !r.is_dir(DIR) {
        r.warn(&format!(
            "no DMI information ({DIR} does not exist): system and bios are not reported"
        ));
        return;
    }
    for (item, attr, file) in FIELDS {
        let Some(text) = r.read(&format!("{DIR}/{file}")) else {
            continue;
        };
        if let Some(v) = value(&text) {
            items
                .entry(item.to_string())
                .or_default()
                .insert(attr.to_string(), v.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_directory_is_one_warning() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Reader::new(dir.path(), "hw");
        let mut items = Items::new();
        collect(&mut r, &mut items);
        assert!(items.is_empty());
        assert_eq!(r.into_warnings().len(), 1);
    }

    #[test]
    fn unreadable_and_blank_values_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join(DIR);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("sys_vendor"), "  LENOVO \n").unwrap();
        std::fs::write(d.join("product_name"), "\n").unwrap();
        std::fs::write(d.join("bios_vendor"), [b'A', 0xff, b'\n']).unwrap();
        let mut r = Reader::new(dir.path(), "hw");
        let mut items = Items::new();
        collect(&mut r, &mut items);
        assert_eq!(items["system"].len(), 1);
        assert_eq!(items["system"]["vendor"], "LENOVO");
        assert_eq!(items["bios"]["vendor"], "A\u{fffd}");
        let w = r.into_warnings();
        // product_serial, product_uuid, bios_version and bios_date are missing.
        assert_eq!(w.len(), 4, "{w:?}");
        assert_eq!(
            w[0],
            "hw: cannot read sys/class/dmi/id/product_serial: No such file or directory"
        );
    }
}
