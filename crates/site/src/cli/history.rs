//! `invsite history CLIENT [--class hw|sw] [--since TIME] [--json]`: the accepted changes of a
//! client's inventory, newest first: time, class, item, old and new attributes, and whether a
//! full report or a delta made the change.

use anyhow::Result;
use invsync_proto::wire::{HistoryEntry, HistoryQuery};
use invsync_proto::{Attrs, Class, ClientName, Timestamp};

use super::DataDirArg;
use crate::access::{AccessOptions, SiteAccess};

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
    /// Only this class
    #[arg(long, value_name = "hw|sw", value_parser = parse_class)]
    pub class: Option<Class>,
    /// Only changes since this time: RFC 3339 (2026-11-25T13:00:00Z) or an age (90m, 2d)
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<Timestamp>,
    /// At most this many changes
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub limit: usize,
    /// The history of the deleted clients once of this name (`invsite delete`), kept for the
    /// retention period; JSON: [ { "name", "id", "site", "deleted_at", "history": [ … ] } ]
    #[arg(long)]
    pub deleted: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

fn parse_class(raw: &str) -> Result<Class, String> {
    Class::parse(raw).ok_or_else(|| format!("{raw:?} is not an inventory class; use hw or sw"))
}

/// An RFC 3339 time, or an age counted back from now.
pub fn parse_since(raw: &str) -> Result<Timestamp, String> {
    Timestamp::parse_since(raw)
}

fn attrs_text(a: &Attrs) -> String {
    a.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line per change: `+` added, `-` removed, `~` changed (only the attributes that differ).
pub fn render(entries: &[HistoryEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        let how = if e.full { "full" } else { "delta" };
        let what = match (&e.old, &e.new) {
            (None, Some(new)) => format!("+ {}  {}", e.key, attrs_text(new)),
            (Some(_), None) => format!("- {}", e.key),
            (Some(old), Some(new)) => {
                let mut parts = Vec::new();
                for (k, v) in new {
                    match old.get(k) {
                        Some(o) if o == v => {}
                        Some(o) => parts.push(format!("{k}: {o} -> {v}")),
                        None => parts.push(format!("{k}: (none) -> {v}")),
                    }
                }
                for k in old.keys().filter(|k| !new.contains_key(*k)) {
                    parts.push(format!("{k}: {} -> (none)", old[k]));
                }
                format!("~ {}  {}", e.key, parts.join(", "))
            }
            (None, None) => format!("? {}", e.key),
        };
        out.push_str(&format!("{}  {}  {:<5}  {what}\n", e.at, e.class, how));
    }
    out
}

pub fn apply(args: Args) -> Result<()> {
    let options = AccessOptions {
        tool: "invsite history",
        note_fallback: false,
    };
    let mut site = SiteAccess::open(options, args.data_dir.data_dir.as_deref())?;
    let query = HistoryQuery {
        class: args.class,
        since: args.since,
        limit: Some(args.limit),
    };
    if args.deleted {
        return deleted(&mut site, &args, &query);
    }
    let entries = site.history(&args.client, args.site.as_ref(), &query)?;
    if args.json {
        invsync_proto::outln!("{}", serde_json::to_string_pretty(&entries)?)?;
    } else if entries.is_empty() {
        invsync_proto::outln!(
            "No changes recorded for {} (the first report of each class is not a change).",
            args.client
        )?;
    } else {
        invsync_proto::out!("{}", render(&entries))?;
    }
    Ok(())
}

/// `--deleted`: each deleted client of that name (narrowed by `--site`), the latest deletion
/// first, or exit 4 when there is none.
fn deleted(site: &mut SiteAccess, args: &Args, query: &HistoryQuery) -> Result<()> {
    let found: Vec<_> = site
        .deleted_history(&args.client, query)?
        .into_iter()
        .filter(|d| args.site.as_ref().is_none_or(|s| &d.site == s))
        .collect();
    if found.is_empty() {
        return Err(invsync_proto::exit::Exit::new(
            invsync_proto::exit::Code::UnknownClient,
            format!(
                "no deleted client {} at site {} (a deleted client's history is kept for the retention period, `invsite config --history-retention`)",
                args.client,
                site.code()
            ),
        )
        .into());
    }
    if args.json {
        let list: Vec<serde_json::Value> = found
            .iter()
            .map(|d| {
                serde_json::json!({
                    "name": d.name,
                    "id": d.id,
                    "site": d.site,
                    "deleted_at": d.deleted_at,
                    "history": d.history,
                })
            })
            .collect();
        invsync_proto::outln!("{}", serde_json::to_string_pretty(&list)?)?;
        return Ok(());
    }
    for d in &found {
        invsync_proto::outln!(
            "{} (client id {}, site {}), deleted at {}:",
            d.name,
            d.id,
            d.site,
            d.deleted_at
        )?;
        if d.history.is_empty() {
            invsync_proto::outln!("  no changes recorded")?;
        } else {
            invsync_proto::out!("{}", render(&d.history))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_and_ages() {
        let t = parse_since("2026-11-25T13:00:00.000Z").unwrap();
        assert_eq!(t.rfc3339(), "2026-11-25T13:00:00.000Z");
        let before = Timestamp::now().0;
        let ago = parse_since("1h").unwrap().0;
        assert!((before - ago - 3_600_000).abs() < 5_000);
        assert!(parse_since("yesterday-ish").is_err());
    }
}
