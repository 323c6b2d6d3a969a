//! The `disk/<name>` items: physical block devices from `sys/block/<name>/` with `size`
//! (512-byte sectors whatever the device's own sector size), `queue/rotational`,
//! `device/model`, `device/vendor` and a serial number from `device/serial` (NVMe) or
//! `serial` (virtio).
//!
//! Virtual block devices are not hardware and come and go with containers, snaps and
//! volume managers, so they are skipped by name (loop, ram, zram, device-mapper, md RAID,
//! optical `sr`) and by the lack of a `device` link, which only devices on a bus have.

use invsync_proto::{Attrs, Items};

use crate::read::{Reader, value};

const DIR: &str = "sys/block";

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    let Some(names) = r.list_dir(DIR) else {
        r.warn(&format!(
            "cannot read {DIR}: No such file or directory; disks are not reported"
        ));
        return;
    };
    for name in names.iter().filter(|n| !is_virtual_name(n)) {
        let dir = format!("{DIR}/{name}");
        if !r.exists(&format!("{dir}/device")) {
            continue;
        }
        let mut attrs = Attrs::new();
        if let Some(size) = r.read(&format!("{dir}/size")).and_then(|t| parse_size(&t)) {
            attrs.insert("size_bytes".into(), size.to_string());
        }
        if let Some(rot) = r
            .read_optional(&format!("{dir}/queue/rotational"))
            .and_then(|t| parse_rotational(&t))
        {
            attrs.insert("rotational".into(), rot.into());
        }
        // Model, vendor and serial are published by some drivers only (virtio has no model,
        // SCSI no serial in a plain file), so their absence is not worth a warning.
        for (attr, file) in [("model", "device/model"), ("vendor", "device/vendor")] {
            if let Some(v) = r
                .read_quiet(&format!("{dir}/{file}"))
                .as_deref()
                .and_then(value)
            {
                attrs.insert(attr.into(), v.to_string());
            }
        }
        let serial = r
            .read_quiet(&format!("{dir}/device/serial"))
            .filter(|t| value(t).is_some())
            .or_else(|| r.read_quiet(&format!("{dir}/serial")));
        if let Some(v) = serial.as_deref().and_then(value) {
            attrs.insert("serial".into(), v.to_string());
        }
        items.insert(format!("disk/{name}"), attrs);
    }
}

/// Whether a block device name is a kind of virtual device that is never a disk.
pub fn is_virtual_name(name: &str) -> bool {
    ["loop", "ram", "zram", "dm-", "md", "sr", "nbd"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// `size` in 512-byte sectors as bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    text.trim().parse::<u64>().ok()?.checked_mul(512)
}

/// `queue/rotational` as `true`/`false`.
pub fn parse_rotational(text: &str) -> Option<&'static str> {
    match text.trim() {
        "0" => Some("false"),
        "1" => Some("true"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for v in ["loop0", "ram15", "zram0", "dm-3", "md127", "sr0", "nbd2"] {
            assert!(is_virtual_name(v), "{v}");
        }
        for d in ["sda", "nvme0n1", "vda", "xvda", "mmcblk0", "hdc"] {
            assert!(!is_virtual_name(d), "{d}");
        }
    }

    #[test]
    fn values() {
        assert_eq!(parse_size("1953525168\n"), Some(1953525168 * 512));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("18446744073709551615"), None);
        assert_eq!(parse_size("\u{fffd}"), None);
        assert_eq!(parse_rotational("1\n"), Some("true"));
        assert_eq!(parse_rotational("0"), Some("false"));
        assert_eq!(parse_rotational("2"), None);
        assert_eq!(parse_rotational(""), None);
    }

    #[test]
    fn devices_without_device_link_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path().join(DIR);
        std::fs::create_dir_all(b.join("vdb/device")).unwrap();
        std::fs::create_dir_all(b.join("nbd0")).unwrap();
        std::fs::create_dir_all(b.join("xyz0")).unwrap();
        std::fs::write(b.join("vdb/size"), "2097152\n").unwrap();
        std::fs::write(b.join("vdb/serial"), "\n").unwrap();
        let mut r = Reader::new(dir.path(), "hw");
        let mut items = Items::new();
        collect(&mut r, &mut items);
        assert_eq!(items.len(), 1);
        assert_eq!(
            items["disk/vdb"],
            Attrs::from([("size_bytes".to_string(), "1073741824".to_string())])
        );
        assert!(r.into_warnings().is_empty());
    }
}
