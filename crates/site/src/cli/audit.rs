//! `invsite audit [--since AGE] [--user NAME] [--limit N] [--json]`: the audit trail, newest
//! first, read from the database (running server or not). Each entry says who (a user name,
//! `site-token` or `local:<unix user>`), when, from where, what and at which site.

use anyhow::Result;
use invsync_proto::Timestamp;
use invsync_proto::exit::Exit;
use invsync_proto::outln;
use invsync_proto::wire::{AuditEntry, AuditQuery};

use super::DataDirArg;
use crate::datadir::open_store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only entries since this time: RFC 3339 (2026-11-25T13:00:00Z) or an age (90m, 2d)
    #[arg(long, value_name = "TIME", value_parser = super::history::parse_since)]
    pub since: Option<Timestamp>,
    /// Only entries of this actor: a user name, site-token or local:<unix user>
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// At most this many entries, 1 to 1000
    #[arg(long, value_name = "N", default_value_t = invsync_store::DEFAULT_AUDIT_LIMIT)]
    pub limit: u32,
    /// Print JSON: [{"id", "at", "actor", "address", "action", "target", "details", "site"}]
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data_dir: DataDirArg,
}

pub async fn apply(args: Args) -> Result<()> {
    let q = AuditQuery {
        since: args.since,
        user: args.user,
        limit: Some(args.limit),
    };
    if let Some(problem) = q.problem() {
        return Err(Exit::usage(problem).into());
    }
    let dir = args.data_dir.dir();
    let config = dir.config()?;
    // The audit names who did what from where: for the site's administrators only.
    dir.admin_token()?;
    let store = open_store(&dir, &config).await?;
    let entries = store.audit(&q).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&entries)?)?;
    } else {
        invsync_proto::out!("{}", render(&entries))?;
    }
    Ok(())
}

pub fn render(entries: &[AuditEntry]) -> String {
    let mut out = format!(
        "{:<24}  {:<4}  {:<20}  {:<15}  {:<12}  {:<15}  {}\n",
        "WHEN", "SITE", "ACTOR", "FROM", "ACTION", "TARGET", "DETAILS"
    );
    for e in entries {
        out.push_str(&format!(
            "{:<24}  {:<4}  {:<20}  {:<15}  {:<12}  {:<15}  {}\n",
            e.at.rfc3339(),
            e.site.as_str(),
            e.actor,
            e.address.as_deref().unwrap_or("-"),
            e.action.as_str(),
            e.target.as_deref().unwrap_or("-"),
            e.details.as_deref().unwrap_or("")
        ));
    }
    out
}
