//! Synthetic inventories for simulated agents, deterministic per agent index so a mode can
//! rebuild an agent's snapshot instead of keeping it. Software items look like the dpkg
//! collector's (`dpkg/<name>/<arch>`, attributes `arch name size_bytes source version`); most
//! packages are shared by every agent, as on real fleets (the store interns them once), and
//! the rest are the agent's own.

use invsync_proto::inventory::Attrs;
use invsync_proto::wire::{Report, ReportBody};
use invsync_proto::{Class, Items, Snapshot};
use uuid::Uuid;

/// Of every ten packages, this many are shared by all agents.
const SHARED_TENTHS: usize = 9;

fn package(name: String, n: usize, version: usize) -> (String, Attrs) {
    let attrs: Attrs = [
        ("arch", "amd64".to_string()),
        ("name", name.clone()),
        ("size_bytes", ((n % 977 + 1) * 4096).to_string()),
        ("source", "dpkg".to_string()),
        ("version", format!("1.{version}.{n}-1")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    (format!("dpkg/{name}/amd64"), attrs)
}

/// `count` software packages of agent `agent`: 90 % shared by every agent, 10 % its own.
pub fn sw_items(agent: usize, count: usize) -> Items {
    let shared = count * SHARED_TENTHS / 10;
    (0..shared)
        .map(|n| package(format!("libshared{n}"), n, 1))
        .chain((shared..count).map(|n| package(format!("lg{agent}-pkg{n}"), n, 1)))
        .collect()
}

/// A small hardware inventory: the OS and one CPU.
pub fn hw_items(agent: usize) -> Items {
    let mut items = Items::new();
    items.insert(
        "os".to_string(),
        [("name", "Debian GNU/Linux"), ("version", "12")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
    );
    items.insert(
        "cpu/0".to_string(),
        [
            ("model", "Synthetic CPU".to_string()),
            ("serial", format!("LG{agent:08}")),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v))
        .collect(),
    );
    items
}

/// The items of `class` for agent `agent` with `sw_count` software packages.
pub fn items(class: Class, agent: usize, sw_count: usize) -> Items {
    match class {
        Class::Sw => sw_items(agent, sw_count),
        Class::Hw => hw_items(agent),
    }
}

/// A full report of `items` with a fresh report id, answering `answers`.
pub fn full_report(class: Class, items: Items, answers: Vec<i64>) -> Report {
    Report {
        report_id: Uuid::new_v4(),
        class,
        hash: Snapshot::new(items.clone()).hash(),
        body: ReportBody::Full { items },
        answers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let a = sw_items(1, 20);
        let b = sw_items(2, 20);
        assert_eq!(a.len(), 20);
        assert_eq!(a.keys().filter(|k| b.contains_key(*k)).count(), 18);
        assert_eq!(sw_items(1, 20), a, "deterministic");
        assert!(a.contains_key("dpkg/libshared0/amd64"));
    }
}
