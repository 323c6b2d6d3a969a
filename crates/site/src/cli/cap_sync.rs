//! `invsite cap-sync DIR`: one synchronization of a file-share CAP directory (the original's
//! `CAP_<SiteCode>` share): import every `.inv` in `DIR/Inventry.box` into the database, move
//! each to `done/` or `bad/` (beside a `.reason`), write the `.cfg` of every client that uses
//! the CAP. It works on the database directly, whether or not `invsite serve` runs.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use invsync_proto::exit::{Code, Exit};

use super::DataDirArg;
use crate::datadir::open_store;
use crate::offline::sync::{DEFAULT_CONCURRENCY, SyncSummary, run};
use crate::offline::{CapDir, SyncContext};

/// How long the store's writer waits to fill a commit during `cap-sync` (see
/// `Store::set_commit_linger`).
const CAP_SYNC_LINGER: std::time::Duration = std::time::Duration::from_millis(3);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The CAP directory (holds Clidata.box and Inventry.box; the boxes are created if missing)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Print what was imported, refused and written as JSON
    #[arg(long)]
    pub json: bool,
}

pub async fn apply(args: Args) -> Result<()> {
    let dir = args.data_dir.dir();
    let config = dir.config()?;
    // The site's administrator only: the run writes instructions signed with the site's key.
    dir.admin_token()?;
    let cap = CapDir::open(&args.dir).map_err(|e| Exit::new(Code::Failure, e.0))?;
    let key = Arc::new(crate::signing::load_or_create(&dir)?);
    let store = open_store(&dir, &config).await?;
    // A bulk import: a few milliseconds more per report buy commits of many reports each.
    store.set_commit_linger(CAP_SYNC_LINGER);
    let ctx = SyncContext {
        store: store.clone(),
        key,
        site: config.site_code.clone(),
        limits: config.limits,
        agent_interval_secs: config.agent_interval_secs,
        concurrency: DEFAULT_CONCURRENCY,
        forward_wake: None,
    };
    let summary = run(&ctx, &cap).await.map_err(|e| {
        Exit::new(
            Code::Failure,
            format!(
                "cap-sync stopped: {e}; the files not yet imported stay in {} for the next run",
                cap.inbox.display()
            ),
        )
    })?;
    // The last-seen times the check-ins wrote are flushed before the process ends.
    store.flush().await?;
    if args.json {
        invsync_proto::outln!("{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        for line in lines(&summary) {
            invsync_proto::outln!("{line}")?;
        }
    }
    Ok(())
}

/// One line per file and `.cfg`, then the counts.
pub fn lines(s: &SyncSummary) -> Vec<String> {
    let mut out = Vec::new();
    for f in &s.imported {
        out.push(match (f.version, f.duplicate) {
            (None, _) => format!("imported {}: check-in of {}", f.file, f.client),
            (Some(v), false) => {
                format!(
                    "imported {}: {}, {} now at version {v}",
                    f.file, f.what, f.client
                )
            }
            (Some(v), true) => format!(
                "imported {}: {} already stored, {} at version {v}",
                f.file, f.what, f.client
            ),
        });
    }
    for f in &s.refused {
        out.push(format!("refused {}: {}", f.file, f.reason));
    }
    for w in &s.written {
        out.push(format!("wrote Clidata.box/{w}"));
    }
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut total = format!(
        "cap-sync: imported {}, refused {}, wrote {} ({} unchanged)",
        plural(s.imported.len(), "file", "files"),
        s.refused.len(),
        plural(s.written.len(), ".cfg file", ".cfg files"),
        s.unchanged
    );
    if s.taken > 0 {
        total.push_str(&format!("; {} taken by another run", s.taken));
    }
    out.push(total);
    out
}
