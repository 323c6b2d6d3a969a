//! The single writer thread and its group commit.
//!
//! One thread owns the read-write connection. Write operations arrive as jobs over a channel;
//! the thread takes every job waiting (up to [`MAX_BATCH`]), runs each inside its own SAVEPOINT
//! of one transaction, so that one job's failure undoes only that job, COMMITs once, and only
//! then answers each caller. Every write is thus durable before it is acknowledged, while one
//! fsync serves the whole group: this is what makes thousands of acknowledged writes per second
//! possible on one disk.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::Shared;
use crate::cache::CachedItem;
use crate::error::StoreError;
use crate::software::SwChange;

/// The most jobs in one transaction. Large enough to amortise the fsync, small enough that a
/// failed commit does not fail very many callers and that the first job waits little.
pub(super) const MAX_BATCH: usize = 256;

/// How often pending last-seen times are written.
const LAST_SEEN_INTERVAL: Duration = Duration::from_secs(1);

/// What a job sees of the transaction it runs in.
pub(super) struct Batch<'a> {
    pub shared: &'a Shared,
    /// Items this transaction interned, published to the cache only after COMMIT.
    pub inserted: Vec<(i64, CachedItem)>,
    /// Changes of software snapshots, handed to the software index only after COMMIT; `None`
    /// while the index is neither built nor being built.
    pub software: Option<Vec<SwChange>>,
}

/// A unit of work for the writer.
pub(super) trait Job: Send {
    /// Runs the job inside its savepoint; false means it failed and its savepoint is undone.
    fn run(&mut self, conn: &Connection, batch: &mut Batch<'_>) -> bool;
    /// Answers the caller once the group's fate is known.
    fn finish(self: Box<Self>, committed: &Result<(), StoreError>);
}

/// A job made of a closure and the channel its result goes back on.
pub(super) struct FnJob<T, F> {
    f: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> FnJob<T, F> {
    pub fn new(f: F, reply: oneshot::Sender<Result<T, StoreError>>) -> FnJob<T, F> {
        FnJob {
            f: Some(f),
            result: None,
            reply,
        }
    }
}

impl<T, F> Job for FnJob<T, F>
where
    T: Send,
    F: FnOnce(&Connection, &mut Batch<'_>) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection, batch: &mut Batch<'_>) -> bool {
        let Some(f) = self.f.take() else { return false };
        // A panicking job must not take the writer thread (and so every later write) with it.
        let result = catch_unwind(AssertUnwindSafe(|| f(conn, batch))).unwrap_or_else(|_| {
            tracing::error!("A write operation panicked; it was rolled back. This is a bug.");
            Err(StoreError::Database(
                "internal error in a write operation".to_string(),
            ))
        });
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, committed: &Result<(), StoreError>) {
        let this = *self;
        let answer = match (this.result, committed) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (_, Err(e)) => Err(e.clone()),
            (None, Ok(())) => Err(StoreError::Database("a write was not run".to_string())),
        };
        // The caller may have gone away (its request was cancelled); the write stands anyway.
        let _ = this.reply.send(answer);
    }
}

pub(super) type JobSender = Sender<Box<dyn Job>>;

/// Starts the writer thread on `conn`.
pub(super) fn spawn(
    conn: Connection,
    shared: Arc<Shared>,
) -> Result<(JobSender, JoinHandle<()>), StoreError> {
    let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
    let handle = std::thread::Builder::new()
        .name("invsync-store-writer".to_string())
        .spawn(move || run(conn, rx, shared))
        .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;
    Ok((tx, handle))
}

fn run(conn: Connection, rx: Receiver<Box<dyn Job>>, shared: Arc<Shared>) {
    let mut last_flush = Instant::now();
    loop {
        let mut jobs: Vec<Box<dyn Job>> = Vec::new();
        let closed = match rx.recv_timeout(LAST_SEEN_INTERVAL) {
            Ok(job) => {
                jobs.push(job);
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        linger(&rx, &shared, &mut jobs);
        let seen = if closed || last_flush.elapsed() >= LAST_SEEN_INTERVAL {
            last_flush = Instant::now();
            shared.last_seen.pending()
        } else {
            Vec::new()
        };
        if !jobs.is_empty() || !seen.is_empty() {
            commit_group(&conn, &shared, jobs, &seen);
        }
        if closed {
            break;
        }
    }
    tracing::debug!("The store's writer stopped: every handle to the store was dropped.");
}

/// With a linger set (a bulk import's), waits up to that long for more jobs before committing a
/// group smaller than [`MAX_BATCH`]. A commit's fsync and WAL writes cost about as much CPU time
/// as preparing a delta does, so when the jobs come from a few busy threads rather than many
/// waiting clients, committing whatever is queued makes groups of two or three and spends the
/// writer on fsyncs (`cap-sync`: 3,641 commits for 10,000 deltas).
fn linger(rx: &Receiver<Box<dyn Job>>, shared: &Shared, jobs: &mut Vec<Box<dyn Job>>) {
    let micros = shared
        .linger_micros
        .load(std::sync::atomic::Ordering::Relaxed);
    if micros == 0 || jobs.is_empty() {
        return;
    }
    let deadline = Instant::now() + Duration::from_micros(micros);
    while jobs.len() < MAX_BATCH {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match rx.recv_timeout(left) {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
}

/// Runs one statement that takes no parameters through the statement cache.
fn exec(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Runs `jobs` (and writes `seen`) in one transaction and answers every job.
fn commit_group(
    conn: &Connection,
    shared: &Shared,
    mut jobs: Vec<Box<dyn Job>>,
    seen: &[(i64, i64)],
) {
    let started = Instant::now();
    let n = jobs.len();
    // Held until the group's software changes are handed over, so that a build of the index
    // starts its snapshot between two groups (see the `software` module).
    let _gate = shared.software.gate.blocking_read();
    // IMMEDIATE takes the write lock now: a deferred transaction that reads first could find
    // another process committed meanwhile and fail with SQLITE_BUSY, which no timeout cures.
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        tracing::warn!(batch = n, error = %e, "Could not start a write transaction; the group failed.");
        let err = Err(e);
        for job in jobs {
            job.finish(&err);
        }
        return;
    }
    let mut batch = Batch {
        shared,
        inserted: Vec::new(),
        software: shared.software.collecting().then(Vec::new),
    };
    let mut lost: Option<StoreError> = None;
    for job in &mut jobs {
        let mark = batch.inserted.len();
        let sw_mark = batch.software.as_ref().map_or(0, Vec::len);
        let step = (|| {
            exec(conn, "SAVEPOINT job")?;
            let ok = job.run(conn, &mut batch);
            if conn.is_autocommit() {
                // Some errors (I/O, disk full) make SQLite roll back the whole transaction, and
                // with it the jobs before this one.
                return Err(StoreError::Database(
                    "the write transaction was rolled back".to_string(),
                ));
            }
            if !ok {
                exec(conn, "ROLLBACK TO job")?;
                batch.inserted.truncate(mark);
                if let Some(sw) = &mut batch.software {
                    sw.truncate(sw_mark);
                }
            }
            exec(conn, "RELEASE job")
        })();
        if let Err(e) = step {
            lost = Some(e);
            break;
        }
    }
    let mut wrote_seen = false;
    if lost.is_none() && !seen.is_empty() {
        match write_seen(conn, seen) {
            Ok(()) => wrote_seen = true,
            Err(e) => {
                tracing::warn!(error = %e, "Could not write last-seen times; they stay pending.")
            }
        }
    }
    let committed = match lost {
        Some(e) => Err(e),
        None => exec(conn, "COMMIT"),
    };
    if committed.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    match &committed {
        Ok(()) => {
            shared.cache.insert(batch.inserted);
            if let Some(sw) = batch.software {
                shared.software.apply(sw);
            }
            if wrote_seen {
                shared.last_seen.forget(seen);
            }
            tracing::debug!(
                batch = n,
                last_seen = seen.len(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "Committed a group of writes."
            );
        }
        Err(e) => {
            tracing::warn!(batch = n, error = %e, "A group of writes failed and was rolled back.")
        }
    }
    for job in jobs {
        job.finish(&committed);
    }
}

pub(super) fn write_seen(conn: &Connection, seen: &[(i64, i64)]) -> Result<(), StoreError> {
    exec(conn, "SAVEPOINT seen")?;
    match write_last_seen(conn, seen) {
        Ok(()) => exec(conn, "RELEASE seen"),
        Err(e) => {
            exec(conn, "ROLLBACK TO seen")?;
            exec(conn, "RELEASE seen")?;
            Err(e)
        }
    }
}

/// Writes last-seen times (client row id, milliseconds), later times winning. The writer owns
/// this statement: it runs it between groups of jobs, with no job of its own.
fn write_last_seen(conn: &Connection, seen: &[(i64, i64)]) -> Result<(), StoreError> {
    let mut st = conn.prepare_cached(
        "UPDATE clients SET last_seen = max(coalesce(last_seen, ?2), ?2) WHERE id = ?1",
    )?;
    for (client, at) in seen {
        st.execute([client, at])?;
    }
    Ok(())
}
