//! `invsite sites`: this site and the tree of sites below it: for each, its clients, outbox
//! depth and the age of its last forwarded change.

use anyhow::Result;
use invsync_proto::wire::{SiteStatus, SitesView};
use invsync_proto::{SiteCode, Timestamp};

use super::DataDirArg;
use crate::access::{AccessOptions, SiteAccess};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

fn age(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        None => "never".to_string(),
        Some(t) => {
            let secs = ((now.0 - t.0).max(0) / 1000) as u64;
            format!(
                "{} ago",
                humantime::format_duration(std::time::Duration::from_secs(secs))
            )
        }
    }
}

fn line(out: &mut String, s: &SiteStatus, depth: usize, now: Timestamp) {
    out.push_str(&format!(
        "{:indent$}{}  {:<24} clients {:>6}  outbox {:>6}  last forwarded {}{}{}\n",
        "",
        s.code,
        s.name,
        s.clients,
        s.outbox_depth,
        age(s.last_forwarded, now),
        s.url
            .as_deref()
            .map(|u| format!("  {u}"))
            .unwrap_or_default(),
        if s.accepts_parent_requests {
            "  accepts parent requests"
        } else {
            ""
        },
        indent = depth * 2
    ));
}

fn children(out: &mut String, view: &SitesView, parent: &SiteCode, depth: usize, now: Timestamp) {
    for s in view
        .below
        .iter()
        .filter(|s| s.parent.as_ref() == Some(parent))
    {
        line(out, s, depth, now);
        children(out, view, &s.code, depth + 1, now);
    }
}

/// The tree, indented by depth; sites whose parent is not known yet are listed at the end.
pub fn render(view: &SitesView, now: Timestamp) -> String {
    let mut out = String::new();
    line(&mut out, &view.site, 0, now);
    children(&mut out, view, &view.site.code, 1, now);
    let placed: std::collections::HashSet<&SiteCode> = std::iter::once(&view.site.code)
        .chain(view.below.iter().map(|s| &s.code))
        .collect();
    for s in view
        .below
        .iter()
        .filter(|s| s.parent.as_ref().is_none_or(|p| !placed.contains(p)))
    {
        line(&mut out, s, 1, now);
    }
    out
}

pub fn apply(args: Args) -> Result<()> {
    let options = AccessOptions {
        tool: "invsite sites",
        note_fallback: false,
    };
    let mut site = SiteAccess::open(options, args.data_dir.data_dir.as_deref())?;
    let view = site.sites()?;
    if args.json {
        invsync_proto::outln!("{}", serde_json::to_string_pretty(&view)?)?;
    } else {
        invsync_proto::out!("{}", render(&view, Timestamp::now()))?;
    }
    Ok(())
}
