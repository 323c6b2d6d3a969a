//! One run of `invsite cap-sync` (and of `invsite serve --cap-dir`'s loop): import every `.inv`
//! waiting in `Inventry.box`, move each to `done/` or `bad/`, then write the `.cfg` of every
//! client that uses the CAP.
//!
//! Files of different clients are imported concurrently (the store groups concurrent writes
//! into one commit, which is where the rate comes from); one client's files are imported one
//! after another, oldest first by the agent's clock, because a delta applies only after the
//! report it follows. Nothing needs a lock, so two runs (two sites' operators, a `cap-sync`
//! beside `serve --cap-dir`) may work on one directory at once: both may read a file, the store
//! keeps the report once (report ids, base versions, the `not_past` guard), and the second
//! rename finds the file gone. A file is moved only after the store answered, so a run killed
//! at any point leaves every file it had not finished where the next run finds it.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use invsync_proto::offline::inv::InvFile;
use invsync_proto::offline::sign::SiteKey;
use invsync_proto::{ClientName, SiteCode, Timestamp};
use invsync_store::{ClientAuth, Store};
use serde::Serialize;
use tokio::sync::Notify;
use uuid::Uuid;

use super::SyncError;
use super::cfg::{self, CfgContext, Written};
use super::dir::{CapDir, Moved, Waiting};
use super::import::{self, Outcome};
use crate::datadir::Limits;

/// Files larger than this are authenticated and decoded on a blocking thread: a full report
/// takes about a millisecond, which must not stall a server's async workers.
const INLINE_MAX: usize = 64 * 1024;

/// Clients whose files are imported at once by default: enough for the store to group many
/// writes per commit, few enough that their files' memory stays small.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// What a run needs.
#[derive(Clone)]
pub struct SyncContext {
    pub store: Store,
    pub key: Arc<SiteKey>,
    pub site: SiteCode,
    pub limits: Limits,
    pub agent_interval_secs: Option<u64>,
    /// How many clients' files are imported at once.
    pub concurrency: usize,
    /// Notified when a report was stored, so a running server forwards it to its parent at
    /// once (`None` for the command, whose changes a running server finds at its next
    /// heartbeat).
    pub forward_wake: Option<Arc<Notify>>,
}

/// What a run did, for `invsite cap-sync` to print (`--json`: this, serialized).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncSummary {
    pub imported: Vec<ImportedFile>,
    pub refused: Vec<RefusedFile>,
    /// The `.cfg` files written (by file name).
    pub written: Vec<String>,
    /// `.cfg` files that already said what they would have said.
    pub unchanged: usize,
    /// Files another run moved while this one worked on them.
    pub taken: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportedFile {
    pub file: String,
    pub client: ClientName,
    /// `hw full`, `sw delta`, or `check-in`.
    pub what: String,
    /// The class's version after the report; absent for a check-in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// The report had been stored before: nothing changed.
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedFile {
    pub file: String,
    pub client: ClientName,
    pub reason: String,
}

/// What became of one file.
enum Done {
    Imported(ImportedFile),
    Refused(RefusedFile),
    Taken,
}

/// One run over the directory.
pub async fn run(ctx: &SyncContext, dir: &CapDir) -> Result<SyncSummary, SyncError> {
    let listing = dir.list()?;
    let mut summary = SyncSummary::default();
    for w in listing.not_files {
        let reason = "it is not a regular file (a symbolic link, a directory or a device); only regular files are imported".to_string();
        finish(&mut summary, refuse(dir, &w, reason)?);
    }
    let mut by_client: BTreeMap<ClientName, Vec<Waiting>> = BTreeMap::new();
    for w in listing.waiting {
        by_client.entry(w.client.clone()).or_default().push(w);
    }
    let mut results = futures_util::stream::iter(by_client.into_values())
        .map(|files| import_client(ctx, dir, files))
        .buffer_unordered(ctx.concurrency.max(1));
    while let Some(result) = results.next().await {
        // A store failure ends the run: every file not finished stays for the next one.
        for done in result? {
            finish(&mut summary, done);
        }
    }
    drop(results);
    if let Some(wake) = &ctx.forward_wake
        && summary
            .imported
            .iter()
            .any(|f| !f.duplicate && f.version.is_some())
    {
        wake.notify_one();
    }
    write_cfgs(ctx, dir, &mut summary).await?;
    dir.sync_all();
    summary.imported.sort_by(|a, b| a.file.cmp(&b.file));
    summary.refused.sort_by(|a, b| a.file.cmp(&b.file));
    summary.written.sort();
    tracing::info!(
        imported = summary.imported.len(),
        refused = summary.refused.len(),
        written = summary.written.len(),
        dir = %dir.root.display(),
        "Synchronized the CAP directory."
    );
    Ok(summary)
}

fn finish(summary: &mut SyncSummary, done: Done) {
    match done {
        Done::Imported(f) => summary.imported.push(f),
        Done::Refused(f) => summary.refused.push(f),
        Done::Taken => summary.taken += 1,
    }
}

/// Imports one client's files, oldest first.
async fn import_client(
    ctx: &SyncContext,
    dir: &CapDir,
    files: Vec<Waiting>,
) -> Result<Vec<Done>, SyncError> {
    let mut read = Vec::with_capacity(files.len());
    let mut out = Vec::new();
    for w in files {
        match dir.read(&w.file, ctx.limits.max_body_bytes as u64) {
            Ok(Some(bytes)) => read.push((w, bytes)),
            Ok(None) => out.push(Done::Taken),
            Err(reason) => out.push(refuse(dir, &w, reason)?),
        }
    }
    // Oldest first by the agent's clock, then by id; a file whose header cannot be read sorts
    // first and is refused on its own. A client's only file (the usual case) needs no order,
    // and its header is not parsed a further time for one.
    if read.len() > 1 {
        read.sort_by_cached_key(|(w, bytes)| {
            let written = InvFile::parse(bytes).map(|f| f.header.written_at.0).ok();
            (written, w.id)
        });
    }
    let mut auth_of: Option<(Uuid, Option<ClientAuth>)> = None;
    for (w, bytes) in read {
        let client_id = match import::header_of(&bytes, &w.client, w.id) {
            Ok(id) => id,
            Err(reason) => {
                out.push(refuse(dir, &w, reason)?);
                continue;
            }
        };
        let auth = match &auth_of {
            Some((id, auth)) if *id == client_id => auth.clone(),
            _ => {
                let auth = ctx.store.client_auth(client_id).await?;
                auth_of = Some((client_id, auth.clone()));
                auth
            }
        };
        let Some(auth) = auth else {
            out.push(refuse(
                dir,
                &w,
                import::unknown_client(&w.client, client_id),
            )?);
            continue;
        };
        let limits = ctx.limits;
        let prepared = if bytes.len() <= INLINE_MAX {
            import::prepare(&bytes, auth, &limits)
        } else {
            tokio::task::spawn_blocking(move || import::prepare(&bytes, auth, &limits))
                .await
                .map_err(|e| SyncError::Dir(format!("a decoding thread failed: {e}")))?
        };
        let prepared = match prepared {
            Ok(p) => p,
            Err(reason) => {
                out.push(refuse(dir, &w, reason)?);
                continue;
            }
        };
        let outcome = import::store(&ctx.store, prepared, Timestamp::now()).await?;
        crate::failpoint::hit("cap-sync-after-store");
        let imported = |what: String, version: Option<i64>, duplicate: bool| ImportedFile {
            file: w.file.clone(),
            client: w.client.clone(),
            what,
            version,
            duplicate,
        };
        let file = match outcome {
            Outcome::Refused(reason) => {
                out.push(refuse(dir, &w, reason)?);
                continue;
            }
            Outcome::Stored {
                class,
                full,
                version,
                ..
            } => {
                let kind = if full { "full" } else { "delta" };
                imported(format!("{class} {kind}"), Some(version), false)
            }
            Outcome::Duplicate { class, version, .. } => {
                imported(format!("{class} report"), Some(version), true)
            }
            Outcome::CheckedIn { .. } => imported("check-in".to_string(), None, false),
        };
        tracing::debug!(file = %file.file, client = %file.client, what = %file.what, version = file.version, duplicate = file.duplicate, "Imported a file from the CAP directory.");
        // A report this run stored is this run's to tell even when another run, which found
        // it a duplicate a moment later, moved the file first: otherwise neither run would
        // count it as stored (a CI run of two concurrent cap-syncs saw 28 of 30).
        let stored_here = !file.duplicate && file.version.is_some();
        out.push(match dir.to_done(&w.file).map_err(SyncError::Dir)? {
            Moved::Moved => Done::Imported(file),
            Moved::Gone if stored_here => Done::Imported(file),
            Moved::Gone => Done::Taken,
        });
    }
    Ok(out)
}

/// Moves a file to `bad/` beside its reason.
fn refuse(dir: &CapDir, w: &Waiting, reason: String) -> Result<Done, SyncError> {
    let moved = dir.to_bad(&w.file, &reason).map_err(SyncError::Dir)?;
    if moved == Moved::Gone {
        // Another run finished it first (imported it, most likely, and this run then found
        // the class already past it): its outcome is that run's to tell.
        return Ok(Done::Taken);
    }
    tracing::warn!(file = %w.file, client = %w.client, reason = %reason, "Refused a file in the CAP directory; it is in Inventry.box/bad/.");
    Ok(Done::Refused(RefusedFile {
        file: w.file.clone(),
        client: w.client.clone(),
        reason,
    }))
}

/// Writes the `.cfg` of every client of this directory: those with a `.cfg` here already and
/// those whose files this run imported or refused. A site may have several CAP directories
/// (the original had several CAPs: one per ship, say); each gets the `.cfg` files of its own
/// clients only, not every CAP client's.
async fn write_cfgs(
    ctx: &SyncContext,
    dir: &CapDir,
    summary: &mut SyncSummary,
) -> Result<(), SyncError> {
    let mut here = dir.cfg_clients();
    here.extend(summary.imported.iter().map(|f| f.client.clone()));
    here.extend(summary.refused.iter().map(|f| f.client.clone()));
    let clients: Vec<(Uuid, ClientName)> = ctx
        .store
        .cap_clients()
        .await?
        .into_iter()
        .filter(|(_, name)| here.contains(name))
        .collect();
    let mut refused = dir.refused();
    let cfg_ctx = Arc::new(CfgContext {
        key: ctx.key.clone(),
        site: ctx.site.clone(),
        agent_interval_secs: ctx.agent_interval_secs,
    });
    let now = Timestamp::now();
    let cfg_ctx = &cfg_ctx;
    let mut results = futures_util::stream::iter(clients.into_iter().map(|(id, name)| {
        let refused = refused.remove(&name).unwrap_or_default();
        async move {
            let written =
                cfg::write(cfg_ctx, &ctx.store, dir, id, name.clone(), refused, now).await;
            written.map(|w| (name, w))
        }
    }))
    .buffer_unordered(ctx.concurrency.max(1));
    while let Some(result) = results.next().await {
        let (name, written) = result?;
        match written {
            Written::Written => summary
                .written
                .push(invsync_proto::offline::cfg_file_name(&name)),
            Written::Unchanged => summary.unchanged += 1,
            Written::Gone => {}
        }
    }
    Ok(())
}
