//! One run of `invsite cap-sync` (and of `invsite serve --cap-dir`'s loop): import every `.inv`
//! waiting in `Inventry.box`, move each to `done/` or `bad/`, then write the `.cfg` of every
//! client that uses the CAP.
//!
//! Files of different clients are imported concurrently, a task per client on the runtime's
//! workers (the store groups concurrent writes into one commit, which is where the rate comes
//! from), and each task writes its client's `.cfg` as soon as the client's files are in; the
//! directory's other clients get theirs in a pass at the end. One client's files are imported
//! one after another, oldest first by the agent's clock, because a delta applies only after
//! the report it follows. Nothing needs a lock, so two runs (two sites' operators, a `cap-sync`
//! beside `serve --cap-dir`) may work on one directory at once: both may read a file, the store
//! keeps the report once (report ids, base versions, the `not_past` guard), and the second
//! rename finds the file gone. A file is moved only after the store answered, so a run killed
//! at any point leaves every file it had not finished where the next run finds it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt;
use invsync_proto::offline::cfg::{MAX_REFUSED, Refused};
use invsync_proto::offline::inv::InvFile;
use invsync_proto::offline::parse_inv_file_name;
use invsync_proto::offline::sign::SiteKey;
use invsync_proto::{ClientName, SiteCode, Timestamp};
use invsync_store::{ClientAuth, Store};
use serde::Serialize;
use tokio::sync::Notify;
use uuid::Uuid;

use super::SyncError;
use super::cfg::{self, CfgContext, CfgOf, Known, Written};
use super::dir::{CapDir, Moved, Waiting};
use super::import::{self, Outcome};
use crate::datadir::Limits;

/// Files larger than this are authenticated and decoded on a blocking thread: a full report
/// takes about a millisecond, which must not stall a server's async workers.
const INLINE_MAX: usize = 64 * 1024;

/// Clients whose files are imported at once by default: enough for the store to group many
/// writes per commit, few enough that their files' memory stays small.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// From this many clients with files on, a run loads their snapshots' items into the item
/// cache before it imports (`Store::warm_item_cache`); below it, each report loads its own.
const WARM_FROM: usize = 256;

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
    let started = std::time::Instant::now();
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
    // A run of many files plans many reports against snapshots the item cache has not seen
    // (a one-shot `cap-sync` starts with it empty): their items are loaded in one pass, on a
    // reading thread beside the imports and ahead of them (same client order).
    let warm = (by_client.len() >= WARM_FROM).then(|| {
        let (store, names) = (ctx.store.clone(), by_client.keys().cloned().collect());
        tokio::spawn(async move { store.warm_item_cache(names).await })
    });
    // What `bad/` held before this run: each client's `.cfg` lists its refused reports.
    let refused = Arc::new(dir.refused());
    let now = Timestamp::now();
    let run = Arc::new(RunContext {
        sync: ctx.clone(),
        dir: dir.clone(),
        cfg: Arc::new(CfgContext {
            key: ctx.key.clone(),
            site: ctx.site.clone(),
            agent_interval_secs: ctx.agent_interval_secs,
        }),
        now,
    });
    // One task per client, so that the runtime's workers (one per core) read, authenticate,
    // decode and move files in parallel while the store's writer commits what they hand it.
    let mut clients = by_client.into_iter();
    let mut tasks = tokio::task::JoinSet::new();
    let mut cfg_done = HashSet::new();
    loop {
        while tasks.len() < ctx.concurrency.max(1) {
            let Some((client, files)) = clients.next() else {
                break;
            };
            let (run, earlier) = (
                run.clone(),
                refused.get(&client).cloned().unwrap_or_default(),
            );
            tasks.spawn(async move { import_client(&run, client, files, earlier).await });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        // A store failure ends the run (dropping the set cancels the other clients' tasks):
        // every file not finished stays for the next one.
        let client =
            joined.map_err(|e| SyncError::Dir(format!("an import task failed: {e}")))??;
        for done in client.files {
            finish(&mut summary, done);
        }
        if let Some((name, written)) = client.cfg {
            count_cfg(&mut summary, &name, written);
            cfg_done.insert(name);
        }
    }
    if let Some(warm) = warm {
        // Only a cache was filled: a failure of its read is told, and the run stands.
        match warm.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Could not load the item cache ahead of the imports.")
            }
            Err(e) => {
                tracing::warn!(error = %e, "Could not load the item cache ahead of the imports.")
            }
        }
    }
    if let Some(wake) = &ctx.forward_wake
        && summary
            .imported
            .iter()
            .any(|f| !f.duplicate && f.version.is_some())
    {
        wake.notify_one();
    }
    write_cfgs(&run, &mut summary, &refused, &cfg_done).await?;
    dir.sync_all();
    summary.imported.sort_by(|a, b| a.file.cmp(&b.file));
    summary.refused.sort_by(|a, b| a.file.cmp(&b.file));
    summary.written.sort();
    tracing::info!(
        imported = summary.imported.len(),
        refused = summary.refused.len(),
        written = summary.written.len(),
        took_ms = started.elapsed().as_millis() as u64,
        dir = %dir.root.display(),
        "Synchronized the CAP directory."
    );
    Ok(summary)
}

/// What the tasks of one run share.
struct RunContext {
    sync: SyncContext,
    dir: CapDir,
    cfg: Arc<CfgContext>,
    /// The run's time: every `.cfg` it writes is issued at it.
    now: Timestamp,
}

/// What one client's task did: its files, and its `.cfg` when the task wrote it.
struct ClientDone {
    files: Vec<Done>,
    cfg: Option<(ClientName, Written)>,
}

fn count_cfg(summary: &mut SyncSummary, name: &ClientName, written: Written) {
    match written {
        Written::Written => summary
            .written
            .push(invsync_proto::offline::cfg_file_name(name)),
        Written::Unchanged => summary.unchanged += 1,
        Written::Gone => {}
    }
}

fn finish(summary: &mut SyncSummary, done: Done) {
    match done {
        Done::Imported(f) => summary.imported.push(f),
        Done::Refused(f) => summary.refused.push(f),
        Done::Taken => summary.taken += 1,
    }
}

/// Imports one client's files, oldest first, then writes its `.cfg` if a file was imported:
/// the agent learns the new versions in the same run, and the `.cfg` files are written while
/// other clients' imports wait for the store (rather than in a pass of their own at the end).
/// `earlier`: the client's reports refused before this run, newest first.
async fn import_client(
    run: &RunContext,
    client: ClientName,
    files: Vec<Waiting>,
    earlier: Vec<Refused>,
) -> Result<ClientDone, SyncError> {
    let (ctx, dir) = (&run.sync, &run.dir);
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
    // A client with only refused or taken files is left to the pass over the directory's
    // clients, which writes `.cfg` files for clients of the CAP transport only.
    let imported = out.iter().any(|d| matches!(d, Done::Imported(_)));
    let cfg = match (imported, &auth_of) {
        (true, Some((client_id, Some(_)))) => {
            // This run's refusals are the newest.
            let mut refused: Vec<Refused> = out
                .iter()
                .rev()
                .filter_map(|d| match d {
                    Done::Refused(f) => Some(Refused {
                        report_id: parse_inv_file_name(&f.file).map_or(Uuid::nil(), |(_, id)| id),
                        reason: f.reason.clone(),
                    }),
                    _ => None,
                })
                .chain(earlier)
                .collect();
            refused.truncate(MAX_REFUSED);
            let stored = out
                .iter()
                .any(|d| matches!(d, Done::Imported(f) if !f.duplicate && f.version.is_some()));
            let of = CfgOf {
                client_id: *client_id,
                client: client.clone(),
                refused,
                known: if stored { Known::Stale } else { Known::Nothing },
            };
            let written = cfg::write(&run.cfg, &ctx.store, dir, of, run.now).await?;
            Some((client, written))
        }
        _ => None,
    };
    Ok(ClientDone { files: out, cfg })
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

/// Writes the `.cfg` of the directory's other clients: those with a `.cfg` here already and
/// those whose files this run refused, when the import tasks did not write it. A site may have
/// several CAP directories (the original had several CAPs: one per ship, say); each gets the
/// `.cfg` files of its own clients only, not every CAP client's.
async fn write_cfgs(
    run: &Arc<RunContext>,
    summary: &mut SyncSummary,
    refused: &HashMap<ClientName, Vec<Refused>>,
    done: &HashSet<ClientName>,
) -> Result<(), SyncError> {
    let ctx = &run.sync;
    let mut here = run.dir.cfg_clients();
    here.extend(summary.refused.iter().map(|f| f.client.clone()));
    let clients: Vec<(Uuid, ClientName)> = ctx
        .store
        .cap_clients()
        .await?
        .into_iter()
        .filter(|(_, name)| here.contains(name) && !done.contains(name))
        .collect();
    if clients.is_empty() {
        return Ok(());
    }
    // Read again: this run's refusals are in `bad/` now.
    let mut refused = if summary.refused.is_empty() {
        refused.clone()
    } else {
        run.dir.refused()
    };
    let mut results = futures_util::stream::iter(clients.into_iter().map(|(id, name)| {
        let refused = refused.remove(&name).unwrap_or_default();
        async move {
            let of = CfgOf {
                client_id: id,
                client: name.clone(),
                refused,
                known: Known::Nothing,
            };
            let written = cfg::write(&run.cfg, &ctx.store, &run.dir, of, run.now).await;
            written.map(|w| (name, w))
        }
    }))
    .buffer_unordered(ctx.concurrency.max(1));
    while let Some(result) = results.next().await {
        let (name, written) = result?;
        count_cfg(summary, &name, written);
    }
    Ok(())
}
