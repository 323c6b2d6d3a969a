//! The `battery/<name>` items: the system's batteries in `sys/class/power_supply/` (`type`
//! `Battery`): `manufacturer`, `model` (`model_name`), `serial` (`serial_number`),
//! `technology`, `design_capacity` and `full_capacity` with their `capacity_unit`, and
//! `health_percent` (the full capacity as a whole percentage of the design capacity).
//!
//! The kernel gives capacities either as energy (`energy_full_design`, `energy_full`, in µWh)
//! or as charge (`charge_full_design`, `charge_full`, in µAh), as the battery's firmware
//! reports them; they are reported as given, with the unit, never converted with a voltage
//! that changes. The current charge, status, voltage and cycle count change by the minute
//! and are never read, so an idle machine reports the same battery each cycle. Batteries of
//! peripherals (`scope` `Device`: a wireless mouse, a keyboard) are not the machine's and come
//! and go with them; they are left out.

use invsync_proto::{Attrs, Items};

use crate::read::{Reader, value};

const DIR: &str = "sys/class/power_supply";

/// A battery's capacities, in the unit the kernel gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub design: u64,
    pub full: Option<u64>,
    /// `µWh` (energy) or `µAh` (charge).
    pub unit: &'static str,
}

impl Capacity {
    /// `full / design` as a whole percentage, rounded half up; `None` without a full
    /// capacity.
    pub fn health_percent(&self) -> Option<u64> {
        let full = u128::from(self.full?);
        let design = u128::from(self.design);
        // design is never zero (see `parse_capacity`).
        u64::try_from((full * 200 + design) / (design * 2)).ok()
    }
}

/// A capacity file's value in µWh or µAh; `None` when not a positive number.
pub fn parse_capacity(text: &str) -> Option<u64> {
    value(text)?.parse().ok().filter(|v| *v > 0)
}

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    let Some(names) = r.list_dir(DIR) else {
        return;
    };
    for name in &names {
        let dir = format!("{DIR}/{name}");
        let field = |r: &Reader<'_>, file: &str| {
            r.read_quiet(&format!("{dir}/{file}"))
                .as_deref()
                .and_then(value)
                .map(str::to_string)
        };
        if field(r, "type").as_deref() != Some("Battery")
            || field(r, "scope").as_deref() == Some("Device")
        {
            continue;
        }
        let mut a = Attrs::new();
        for (attr, file) in [
            ("manufacturer", "manufacturer"),
            ("model", "model_name"),
            ("serial", "serial_number"),
            ("technology", "technology"),
        ] {
            if let Some(v) = field(r, file) {
                a.insert(attr.into(), v);
            }
        }
        let read = |file: &str| {
            r.read_quiet(&format!("{dir}/{file}"))
                .and_then(|t| parse_capacity(&t))
        };
        let capacity = match read("energy_full_design") {
            Some(design) => Some(Capacity {
                design,
                full: read("energy_full"),
                unit: "µWh",
            }),
            None => read("charge_full_design").map(|design| Capacity {
                design,
                full: read("charge_full"),
                unit: "µAh",
            }),
        };
        if let Some(c) = capacity {
            a.insert("design_capacity".into(), c.design.to_string());
            a.insert("capacity_unit".into(), c.unit.into());
            if let Some(full) = c.full {
                a.insert("full_capacity".into(), full.to_string());
            }
            if let Some(h) = c.health_percent() {
                a.insert("health_percent".into(), h.to_string());
            }
        }
        items.insert(format!("battery/{name}"), a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health() {
        let c = |design, full| Capacity {
            design,
            full,
            unit: "µWh",
        };
        assert_eq!(c(68_000_000, Some(55_240_000)).health_percent(), Some(81));
        assert_eq!(
            c(200, Some(101)).health_percent(),
            Some(51),
            "50.5 rounds up"
        );
        assert_eq!(
            c(200, Some(99)).health_percent(),
            Some(50),
            "49.5 rounds up"
        );
        assert_eq!(c(3, Some(1)).health_percent(), Some(33));
        assert_eq!(c(100, Some(105)).health_percent(), Some(105));
        assert_eq!(c(100, None).health_percent(), None);
        assert_eq!(c(1, Some(u64::MAX)).health_percent(), None);
    }

    #[test]
    fn capacities() {
        assert_eq!(parse_capacity("68000000\n"), Some(68_000_000));
        assert_eq!(parse_capacity("0\n"), None);
        assert_eq!(parse_capacity("-5"), None);
        assert_eq!(parse_capacity(""), None);
    }

    #[test]
    fn charge_batteries_mains_and_peripherals() {
        let dir = tempfile::tempdir().unwrap();
        let ps = dir.path().join(DIR);
        let mk = |name: &str, files: &[(&str, &str)]| {
            let d = ps.join(name);
            std::fs::create_dir_all(&d).unwrap();
            for (f, v) in files {
                std::fs::write(d.join(f), v).unwrap();
            }
        };
        mk("AC", &[("type", "Mains\n"), ("online", "1\n")]);
        mk(
            "BAT1",
            &[
                ("type", "Battery\n"),
                ("scope", "System\n"),
                ("technology", "Li-ion\n"),
                ("charge_full_design", "4400000\n"),
                ("charge_full", "4180000\n"),
                ("charge_now", "2000000\n"),
                ("capacity", "47\n"),
                ("model_name", "  \n"),
            ],
        );
        mk(
            "hidpp_battery_0",
            &[
                ("type", "Battery\n"),
                ("scope", "Device\n"),
                ("model_name", "MX Master\n"),
            ],
        );
        let mut r = Reader::new(dir.path(), "hw");
        let mut items = Items::new();
        collect(&mut r, &mut items);
        assert_eq!(items.keys().collect::<Vec<_>>(), ["battery/BAT1"]);
        assert_eq!(
            items["battery/BAT1"]
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
            [
                "capacity_unit=µAh",
                "design_capacity=4400000",
                "full_capacity=4180000",
                "health_percent=95",
                "technology=Li-ion"
            ]
        );
        assert!(r.into_warnings().is_empty());
    }
}
