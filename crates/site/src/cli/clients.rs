//! `invsite clients [--stale]`: this site's clients, one per line (with each one's agent
//! version, marked when older than `invsite config --min-agent-version`), or as JSON; `--stale`
//! lists only those not seen for longer than `invsite config --stale-after`.

use anyhow::Result;
use invsync_proto::Timestamp;
use invsync_proto::wire::ClientSummary;

use super::DataDirArg;
use crate::access::{AccessOptions, SiteAccess};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Only the stale clients: this site's clients not seen for longer than `invsite config
    /// --stale-after` (default 30d); in JSON every client has `stale: true|false`
    #[arg(long)]
    pub stale: bool,
    /// Print JSON: per client `name`, `id`, `site`, `last_seen`, `hw_version`,
    /// `hw_updated_at`, `sw_version`, `sw_updated_at`, `pending_requests`, `transport`,
    /// `agent_version` (or null), `agent_outdated` (older than `invsite config
    /// --min-agent-version`) and `stale`
    #[arg(long)]
    pub json: bool,
}

fn or_dash(t: Option<Timestamp>) -> String {
    t.map(|t| t.rfc3339()).unwrap_or_else(|| "-".to_string())
}

fn version(v: Option<i64>) -> String {
    v.map(|v| format!("v{v}"))
        .unwrap_or_else(|| "-".to_string())
}

pub fn render(clients: &[ClientSummary]) -> String {
    let mut out = format!(
        "{:<15}  {:<4}  {:<24}  {:>6}  {:>6}  {:>7}  {}\n",
        "NAME", "SITE", "LAST SEEN", "HW", "SW", "PENDING", "AGENT"
    );
    for c in clients {
        // An agent older than `invsite config --min-agent-version` is marked for the eye.
        let agent = match (&c.agent_version, c.agent_outdated) {
            (Some(v), true) => format!("{v} (outdated)"),
            (Some(v), false) => v.clone(),
            (None, _) => "-".to_string(),
        };
        out.push_str(&format!(
            "{:<15}  {:<4}  {:<24}  {:>6}  {:>6}  {:>7}  {}\n",
            c.name.as_str(),
            c.site.as_str(),
            or_dash(c.last_seen),
            version(c.hw_version),
            version(c.sw_version),
            c.pending_requests,
            agent
        ));
        if c.stale {
            // Marked after the columns, so scripts reading the columns read them as before.
            out.truncate(out.len() - 1);
            out.push_str("  stale\n");
        }
    }
    out
}

pub fn apply(args: Args) -> Result<()> {
    let options = AccessOptions {
        tool: "invsite clients",
        note_fallback: false,
    };
    let mut site = SiteAccess::open(options, args.data_dir.data_dir.as_deref())?;
    let clients = site.clients(args.stale)?;
    if args.json {
        invsync_proto::outln!("{}", serde_json::to_string_pretty(&clients)?)?;
    } else if clients.is_empty() && args.stale {
        invsync_proto::outln!("No stale clients.")?;
    } else if clients.is_empty() {
        invsync_proto::outln!(
            "No clients yet. Enroll one with: invagent enroll --site URL --secret $(invsite enroll-secret)"
        )?;
    } else {
        invsync_proto::out!("{}", render(&clients))?;
    }
    Ok(())
}
