//! `invsite show CLIENT`: one client's identity, inventory versions, hardware items under
//! their kinds' headings (System, CPU, ..., Other: `kinds.rs`), software counts per source, and
//! requests; `--json` prints the full record of SPEC section 7, the flat item maps unchanged.

use anyhow::Result;
use invsync_proto::ClientName;
use invsync_proto::wire::{ClientView, RequestView, SnapshotView, Transport};

use super::DataDirArg;
use crate::access::{AccessOptions, SiteAccess};
use crate::kinds;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Client name
    #[arg(value_name = "CLIENT")]
    pub client: ClientName,
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// The owning site's code, when sites below this one hold several clients of that name
    #[arg(long, value_name = "CODE")]
    pub site: Option<invsync_proto::SiteCode>,
    /// Print JSON: SPEC section 7's record, plus `agent_version` (the agent's, or null),
    /// `agent_outdated` (older than `invsite config --min-agent-version`), `former_names` and
    /// `merges` (`at`, `old_name`, `new_name`, `matched_by`: `machine_id` or `hardware`) of
    /// enrollments of the same machine that took the record over
    #[arg(long)]
    pub json: bool,
}

/// A class's version line; the hardware items under their kinds' headings (`kinds.rs`), the
/// software as a count per source.
fn class_lines(out: &mut String, label: &str, snap: Option<&SnapshotView>, list_items: bool) {
    match snap {
        None => out.push_str(&format!("{label}: no inventory yet\n")),
        Some(s) => {
            out.push_str(&format!(
                "{label}: version {}, {} items, hash {}\n    last full report {}, last update {}\n",
                s.version,
                s.items.len(),
                &s.hash.to_hex()[..16],
                s.full_at,
                s.updated_at
            ));
            if list_items {
                for (kind, items) in kinds::by_kind(&s.items, |(k, _)| k.as_str()) {
                    out.push_str(&format!("    {} ({})\n", kind.label(), items.len()));
                    for (key, attrs) in items {
                        let attrs: Vec<String> =
                            attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        out.push_str(&format!("      {key}: {}\n", attrs.join(" ")));
                    }
                }
            } else if !s.items.is_empty() {
                let counts: Vec<String> = kinds::by_source(s.items.keys(), |k| k.as_str())
                    .iter()
                    .map(|(source, items)| format!("{source} {}", items.len()))
                    .collect();
                out.push_str(&format!("    by source: {}\n", counts.join(", ")));
            }
        }
    }
}

/// `, forwarded to P01 <time>` once this site's parent acknowledged the change that completed
/// the request: the hop up from here.
/// Then each site above that stored it (`, then P01 <time>`), as the parent's forward answers
/// reported them, and `(the top)` once the top of the tree has it.
fn forwarded(r: &RequestView) -> String {
    let mut out = match (r.forwarded_at, &r.forwarded_to) {
        (Some(at), Some(parent)) => format!(", forwarded to {parent} {at}"),
        (Some(at), None) => format!(", forwarded to the parent {at}"),
        (None, _) => return String::new(),
    };
    for hop in &r.hops {
        match &hop.site {
            Some(site) => out.push_str(&format!(", then {site} {}", hop.at)),
            None => out.push_str(&format!(", then one site further up {}", hop.at)),
        }
    }
    if r.reached_top {
        out.push_str(" (the top)");
    }
    out
}

pub fn render(v: &ClientView) -> String {
    let mut out = format!("{} (id {}, site {})\n", v.name, v.id, v.site);
    out.push_str(&format!(
        "machine id {}, enrolled {}\n",
        v.machine_id, v.enrolled_at
    ));
    match v.last_seen {
        Some(t) => out.push_str(&format!("last seen {t}\n")),
        None => out.push_str("never checked in\n"),
    }
    match (&v.agent_version, v.agent_outdated) {
        (Some(version), true) => out.push_str(&format!(
            "agent {version} (outdated: older than the site's minimum agent version)\n"
        )),
        (Some(version), false) => out.push_str(&format!("agent {version}\n")),
        (None, _) => {}
    }
    if !v.former_names.is_empty() {
        let names: Vec<&str> = v.former_names.iter().map(|n| n.as_str()).collect();
        out.push_str(&format!("formerly named {}\n", names.join(", ")));
    }
    for m in &v.merges {
        out.push_str(&format!(
            "taken over {} by an enrollment of the same machine (matched by {}): {} -> {}\n",
            m.at,
            m.matched_by.as_str().replace('_', " "),
            m.old_name,
            m.new_name
        ));
    }
    match v.transport {
        Transport::Http => {}
        Transport::Cap => out.push_str("reports through a file-share CAP directory (invsite cap-sync)\n"),
        Transport::Imported => out.push_str(
            "imported with invsite import: no agent; an agent enrolling from this machine takes it over\n",
        ),
    }
    class_lines(&mut out, "hardware", v.hw.as_ref(), true);
    class_lines(&mut out, "software", v.sw.as_ref(), false);
    if v.requests.is_empty() {
        out.push_str("no resync requests\n");
    }
    for r in &v.requests {
        // Where a request travelled: routed down to the owner from here, or made at another
        // site (the one that routed it down, or the owner that completed it).
        let path = match (&r.route, &r.origin) {
            (Some(owner), None) => format!(" (routed to site {owner})"),
            (Some(owner), Some(origin)) => format!(" (from {origin}, routed on to site {owner})"),
            (None, Some(origin)) => format!(" (from {origin})"),
            (None, None) => String::new(),
        };
        out.push_str(&format!(
            "request {}: {} resync {}{path}, requested {}{}{}{}\n",
            r.id,
            r.class,
            r.state.as_str(),
            r.requested_at,
            r.picked_up_at
                .map(|t| format!(", picked up {t}"))
                .unwrap_or_default(),
            r.completed_at
                .map(|t| format!(", completed {t}"))
                .unwrap_or_default(),
            forwarded(r),
        ));
    }
    for e in &v.events {
        out.push_str(&format!(
            "event {}: {} {}, requested {}\n",
            e.id,
            e.event.as_str(),
            e.state.as_str(),
            e.requested_at
        ));
    }
    out
}

pub fn apply(args: Args) -> Result<()> {
    let options = AccessOptions {
        tool: "invsite show",
        note_fallback: false,
    };
    let mut site = SiteAccess::open(options, args.data_dir.data_dir.as_deref())?;
    let view = site.client_view(&args.client, args.site.as_ref())?;
    if args.json {
        invsync_proto::outln!("{}", serde_json::to_string_pretty(&view)?)?;
    } else {
        invsync_proto::out!("{}", render(&view))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> ClientView {
        let snap = |items: serde_json::Value| {
            serde_json::json!({
                "version": 2,
                "hash": "ab".repeat(32),
                "full_at": "2026-01-02T03:04:05.000Z",
                "updated_at": "2026-01-02T03:04:05.000Z",
                "items": items,
            })
        };
        serde_json::from_value(serde_json::json!({
            "name": "LAPTOP1",
            "id": "6f1c7f0e-3f7b-4f7e-9d55-2d1a0a4b7c11",
            "site": "S01",
            "machine_id": "0123456789abcdef0123456789abcdef",
            "enrolled_at": "2026-01-02T03:04:05.000Z",
            "last_seen": null,
            "hw": snap(serde_json::json!({
                "battery/BAT0": { "model": "5B10W13930" },
                "cpu": { "model": "Intel(R) Core(TM) i7" },
                "os": { "name": "Debian GNU/Linux" },
                "pci/0000:00:02.0": { "class_id": "0300" },
                "system": { "vendor": "LENOVO" },
                "tpm/0": { "version": "2.0" },
                "usb/1-1.2": { "vendor_id": "046d" },
            })),
            "sw": snap(serde_json::json!({
                "dpkg/bash/amd64": { "version": "5.2" },
                "pip/requests/noarch": { "version": "2.31" },
                "snap/core22/amd64": { "version": "20240111" },
                "dpkg/gzip/amd64": { "version": "1.12" },
            })),
            "requests": [],
            "events": [],
        }))
        .unwrap()
    }

    #[test]
    fn hardware_is_listed_under_kind_headings_in_order() {
        let text = render(&view());
        let hw: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("hardware:"))
            .skip(2)
            .take_while(|l| l.starts_with("    "))
            .collect();
        assert_eq!(
            hw,
            [
                "    System (2)",
                "      os: name=Debian GNU/Linux",
                "      system: vendor=LENOVO",
                "    CPU (1)",
                "      cpu: model=Intel(R) Core(TM) i7",
                "    PCI (1)",
                "      pci/0000:00:02.0: class_id=0300",
                "    USB (1)",
                "      usb/1-1.2: vendor_id=046d",
                "    Batteries (1)",
                "      battery/BAT0: model=5B10W13930",
                "    Other (1)",
                "      tpm/0: version=2.0",
            ],
            "{text}"
        );
    }

    #[test]
    fn software_is_counted_per_source() {
        let text = render(&view());
        assert!(
            text.contains("software: version 2, 4 items, hash abababababababab\n"),
            "{text}"
        );
        assert!(
            text.contains("\n    by source: dpkg 2, snap 1, pip 1\n"),
            "{text}"
        );
    }
}
