//! The `lvm/<vg>/<lv>` and `dm/<name>` items: device-mapper devices from
//! `sys/block/dm-*/dm/{name,uuid}`, with `size_bytes` (`size` in 512-byte sectors) and
//! `devices`, the devices under them (`slaves/`), sorted and comma-separated.
//!
//! A device whose uuid starts with `LVM-` is a logical volume: its name is `<vg>-<lv>` with
//! every `-` inside either name doubled, and it is reported as `lvm/<vg>/<lv>`. LVM's
//! internal layers (a snapshot's `-real` and `-cow`, whose uuid carries the layer as a
//! suffix) are details of the volumes already reported and are left out. Any other mapping
//! (dm-crypt, multipath, ...) is `dm/<name>` with its `uuid`. A device below that is itself
//! a mapping is named by its mapping name rather than `dm-N`, because the kernel numbers
//! mappings in activation order and the number changes between boots.

use invsync_proto::{Attrs, Items};

use crate::read::{Reader, value};

const DIR: &str = "sys/block";

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    let Some(names) = r.list_dir(DIR) else {
        return;
    };
    for dev in names.iter().filter(|n| n.starts_with("dm-")) {
        let base = format!("{DIR}/{dev}");
        let Some(name) = dm_name(r, dev) else {
            continue;
        };
        let uuid = r
            .read_quiet(&format!("{base}/dm/uuid"))
            .as_deref()
            .and_then(value)
            .map(str::to_string);
        let key = match uuid.as_deref() {
            Some(u) if u.starts_with("LVM-") => {
                if is_lvm_layer(u) {
                    continue;
                }
                match split_lvm_name(&name) {
                    Some((vg, lv)) => format!("lvm/{vg}/{lv}"),
                    None => format!("dm/{name}"),
                }
            }
            _ => format!("dm/{name}"),
        };
        let mut attrs = Attrs::new();
        if let Some(sectors) = r
            .read_optional(&format!("{base}/size"))
            .and_then(|t| t.trim().parse::<u64>().ok())
        {
            attrs.insert("size_bytes".into(), sectors.saturating_mul(512).to_string());
        }
        let mut slaves: Vec<String> = r
            .list_dir(&format!("{base}/slaves"))
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                if s.starts_with("dm-") {
                    dm_name(r, &s).unwrap_or(s)
                } else {
                    s
                }
            })
            .collect();
        slaves.sort_unstable();
        slaves.dedup();
        attrs.insert("devices".into(), slaves.join(","));
        if key.starts_with("dm/")
            && let Some(u) = uuid
        {
            attrs.insert("uuid".into(), u);
        }
        items.insert(key, attrs);
    }
}

fn dm_name(r: &Reader<'_>, dev: &str) -> Option<String> {
    r.read_quiet(&format!("{DIR}/{dev}/dm/name"))
        .as_deref()
        .and_then(value)
        .filter(|n| !n.contains('/'))
        .map(str::to_string)
}

/// Whether an LVM uuid (`LVM-` + 32 characters of the VG's uuid + 32 of the LV's) carries a
/// layer suffix (`-real`, `-cow`, `-pool`, ...).
pub fn is_lvm_layer(uuid: &str) -> bool {
    uuid.len() > 4 + 64
}

/// Splits a device-mapper name of a logical volume, `<vg>-<lv>` with `-` doubled inside
/// each, into the two names: `my--vg-root` is (`my-vg`, `root`). `None` when there is no
/// single `-` to split at, or more than one (a layer LVM names without saying so in the
/// uuid).
pub fn split_lvm_name(name: &str) -> Option<(String, String)> {
    let mut parts: Vec<String> = vec![String::new()];
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '-' {
            if chars.peek() == Some(&'-') {
                chars.next();
                parts.last_mut()?.push('-');
            } else {
                parts.push(String::new());
            }
        } else {
            parts.last_mut()?.push(c);
        }
    }
    match <[String; 2]>::try_from(parts) {
        Ok([vg, lv]) if !vg.is_empty() && !lv.is_empty() => Some((vg, lv)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lvm_names() {
        let s = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(split_lvm_name("vg0-root"), s("vg0", "root"));
        assert_eq!(split_lvm_name("my--vg-my--lv"), s("my-vg", "my-lv"));
        assert_eq!(split_lvm_name("vg-lv-real"), None);
        assert_eq!(split_lvm_name("plain"), None);
        assert_eq!(split_lvm_name("-lv"), None);
        assert_eq!(split_lvm_name("vg-"), None);
        assert!(!is_lvm_layer(&format!("LVM-{}", "a".repeat(64))));
        assert!(is_lvm_layer(&format!("LVM-{}-real", "a".repeat(64))));
    }

    #[test]
    fn mappings() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path().join(DIR);
        let dev = |n: &str, name: &str, uuid: &str, size: &str, slaves: &[&str]| {
            std::fs::create_dir_all(b.join(n).join("dm")).unwrap();
            std::fs::create_dir_all(b.join(n).join("slaves")).unwrap();
            std::fs::write(b.join(n).join("dm/name"), format!("{name}\n")).unwrap();
            std::fs::write(b.join(n).join("dm/uuid"), format!("{uuid}\n")).unwrap();
            std::fs::write(b.join(n).join("size"), format!("{size}\n")).unwrap();
            for s in slaves {
                std::fs::create_dir_all(b.join(n).join("slaves").join(s)).unwrap();
            }
        };
        let lvm = format!("LVM-{}", "x".repeat(64));
        dev(
            "dm-0",
            "cryptroot",
            "CRYPT-LUKS2-abc-cryptroot",
            "2000",
            &["sda3"],
        );
        dev("dm-1", "vg0-root", &lvm, "1000", &["dm-0"]);
        dev(
            "dm-2",
            "vg0-snap-cow",
            &format!("{lvm}-cow"),
            "10",
            &["dm-0"],
        );
        std::fs::create_dir_all(b.join("sda")).unwrap();
        let mut r = Reader::new(dir.path(), "hw");
        let mut items = Items::new();
        collect(&mut r, &mut items);
        assert_eq!(
            items.keys().collect::<Vec<_>>(),
            ["dm/cryptroot", "lvm/vg0/root"]
        );
        assert_eq!(items["lvm/vg0/root"]["devices"], "cryptroot");
        assert_eq!(items["lvm/vg0/root"]["size_bytes"], "512000");
        assert!(!items["lvm/vg0/root"].contains_key("uuid"));
        assert_eq!(items["dm/cryptroot"]["devices"], "sda3");
        assert_eq!(items["dm/cryptroot"]["uuid"], "CRYPT-LUKS2-abc-cryptroot");
        assert!(r.into_warnings().is_empty());
    }
}
