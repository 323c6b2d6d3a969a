//! The `monitor/<connector>` items: the monitors on the graphics outputs in `sys/class/drm/`
//! (`card0-HDMI-A-1`, `card0-eDP-1`) whose `status` is `connected`, described by their EDID
//! (see [`super::edid`]): `manufacturer`, `model`, `serial`, `product_code`, `year`, `week`,
//! `width_mm`, `height_mm`.
//!
//! A connected output with an empty EDID (virtual displays, some KVM switches) says nothing
//! about its monitor and is left out without a warning; an EDID that is not valid (short,
//! without the header, with a wrong checksum) is a warning and no item, because its bytes
//! could describe a different monitor each time.

use std::io;

use invsync_proto::{Attrs, Items};

use super::edid::{Edid, parse_edid};
use crate::read::{Reader, io_message};

const DIR: &str = "sys/class/drm";

/// The item's attributes.
pub fn monitor_attrs(e: &Edid) -> Attrs {
    let mut a = Attrs::new();
    if let Some(m) = &e.manufacturer {
        a.insert("manufacturer".into(), m.clone());
    }
    if let Some(n) = &e.name {
        a.insert("model".into(), n.clone());
    }
    if let Some(s) = e.serial_text() {
        a.insert("serial".into(), s);
    }
    a.insert("product_code".into(), format!("{:04x}", e.product_code));
    a.insert("year".into(), e.year.to_string());
    if let Some(w) = e.week {
        a.insert("week".into(), w.to_string());
    }
    if let (Some(w), Some(h)) = (e.width_mm, e.height_mm) {
        a.insert("width_mm".into(), w.to_string());
        a.insert("height_mm".into(), h.to_string());
    }
    a
}

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    let Some(names) = r.list_dir(DIR) else {
        return;
    };
    // Connectors are `card<N>-<type>-<index>`; `card0`, `renderD128` and `version` are not.
    for name in names.iter().filter(|n| n.contains('-')) {
        let status = r.read_quiet(&format!("{DIR}/{name}/status"));
        if status.as_deref().map(str::trim) != Some("connected") {
            continue;
        }
        let rel = format!("{DIR}/{name}/edid");
        let bytes = match std::fs::read(r.path(&rel)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                r.warn(&format!("cannot read {rel}: {}", io_message(&e)));
                continue;
            }
        };
        if bytes.is_empty() {
            continue;
        }
        match parse_edid(&bytes) {
            Ok(e) => {
                items.insert(format!("monitor/{name}"), monitor_attrs(&e));
            }
            Err(e) => r.warn(&format!(
                "the EDID in {rel} is refused: {e}; the monitor on {name} is not reported"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connected_outputs_only() {
        let dir = tempfile::tempdir().unwrap();
        let drm = dir.path().join(DIR);
        let mk = |name: &str, status: &str, edid: &[u8]| {
            let d = drm.join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("status"), status).unwrap();
            std::fs::write(d.join("edid"), edid).unwrap();
        };
        let mut good = vec![0u8; 128];
        good[..8].copy_from_slice(&super::super::edid::EDID_HEADER);
        good[8..10].copy_from_slice(&0x10acu16.to_be_bytes());
        good[10] = 0x05;
        good[11] = 0x20;
        good[17] = 28;
        let sum = good.iter().fold(0u8, |s, x| s.wrapping_add(*x));
        good[127] = 0u8.wrapping_sub(sum);
        let mut bad = good.clone();
        bad[127] = bad[127].wrapping_add(1);
        mk("card0-HDMI-A-1", "connected\n", &good);
        mk("card0-DP-1", "disconnected\n", &[]);
        mk("card0-DP-2", "connected\n", &bad);
        mk("card0-Virtual-1", "connected\n", &[]);
        std::fs::create_dir_all(drm.join("card0")).unwrap();
        std::fs::write(drm.join("version"), "drm 1.1.0 20060810\n").unwrap();
        let mut r = Reader::new(dir.path(), "hw");
        let mut items = Items::new();
        collect(&mut r, &mut items);
        assert_eq!(items.keys().collect::<Vec<_>>(), ["monitor/card0-HDMI-A-1"]);
        assert_eq!(
            items["monitor/card0-HDMI-A-1"]
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
            ["manufacturer=DEL", "product_code=2005", "year=2018"]
        );
        assert_eq!(
            r.into_warnings(),
            [
                "hw: the EDID in sys/class/drm/card0-DP-2/edid is refused: its base block's \
                 checksum is wrong (its bytes add up to 0x01 modulo 256, not 0); the monitor on \
                 card0-DP-2 is not reported"
            ]
        );
    }
}
