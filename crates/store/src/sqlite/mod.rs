//! The SQLite backend: one writer thread with group commit (see `writer`), a small pool of
//! read-only connections used from `spawn_blocking`, and the schema in WAL mode so that other
//! processes (`invsite show`, `invsync` queueing directly) can use the same file at the same
//! time. The SQL of this backend lives in `schema`, `queries` and (for the hierarchy of sites)
//! `hierarchy`, beside the statements both dialects share (`crate::sql`, run once for both by
//! `crate::exec`); what rows mean is decided once for both backends in `crate::rows`.

mod hierarchy;
mod outbox;
mod queries;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use invsync_proto::wire::{
    CheckinResponse, DownRequest, ForwardOutcome, Forwarded, Owner, PackagePage, PackageQuery,
    Queued, ReportAck, SiteStatus, SoftwarePage, SoftwareQuery,
};
use invsync_proto::{Class, ClientName, Digest, SiteCode, Timestamp};
use rusqlite::Connection;
use tokio::sync::{Semaphore, oneshot};
use uuid::Uuid;

use crate::cache::ItemCache;
use crate::error::StoreError;
use crate::exec;
use crate::hierarchy as core;
use crate::last_seen::LastSeen;
use crate::plan::{ItemSource, Outcome, Plan, ReportInput, Resolver};
use crate::rows::unknown_id;
use crate::software::{Build, SoftwareIndex};
use crate::{Authenticated, ClientAuth, DownAccepted, OutboxStats, SiteMeta};
use hierarchy::{ForwardJob, Verdict};
pub(crate) use queries::ready;
use queries::{Lite, SqlItems};
use writer::{Batch, FnJob, JobSender};

/// How many reads may run at once, each on its own connection: enough to keep both cores busy
/// while some reads wait for the disk, and a bound on open connections and blocking threads.
/// Without the bound, a burst of reads would open connections only to close them again, and a
/// new connection has to read the schema and prepare its statements afresh.
fn max_readers() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 2).clamp(4, 16)
}

/// What the writer thread and the reading threads share.
pub(crate) struct Shared {
    path: PathBuf,
    pub site: SiteMeta,
    idle_readers: Mutex<Vec<Connection>>,
    pub cache: ItemCache,
    pub last_seen: LastSeen,
    pub software: SoftwareIndex,
    /// How long the writer waits for more jobs before committing a small group, in
    /// microseconds (0: it commits what is waiting at once). See [`crate::Store::set_commit_linger`].
    pub linger_micros: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// Runs `f` on a read connection from the pool.
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self
            .idle_readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => schema::open_reader(&self.path)?,
        };
        let result = f(&conn);
        // A connection left inside a transaction would pin an old snapshot of the database.
        if conn.is_autocommit() {
            self.idle_readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
        result
    }
}

/// Builds the software index (see the `software` module for why this is exact while writes go
/// on): the snapshot starts between two of the writer's groups, then the items and every
/// software snapshot are read in it, and the changes committed since are applied after.
fn build_software_index(shared: &Shared) -> Result<(), StoreError> {
    let conn = schema::open_reader(&shared.path)?;
    {
        let _gate = shared.software.gate.blocking_write();
        shared.software.begin_build();
        conn.execute_batch("BEGIN")?;
        // A read transaction takes its snapshot at its first read.
        conn.query_row("SELECT count(*) FROM meta", [], |_| Ok(()))?;
    }
    let mut build = Build::new();
    queries::items_for_index(&conn, None, |id, attrs| build.item(id, attrs))?;
    queries::software_lists(&conn, |client, version, items| {
        build.list(client, version, items)
    })?;
    conn.execute_batch("COMMIT")?;
    loop {
        let unknown = shared.software.queued_unknown(&mut build);
        if !unknown.is_empty() {
            queries::items_for_index(&conn, Some(&unknown), |id, attrs| build.item(id, attrs))?;
            continue;
        }
        match shared.software.try_finish(build) {
            Ok(()) => return Ok(()),
            Err(again) => build = again,
        }
    }
}

/// Clients whose snapshots [`SqliteStore::warm_item_cache`] reads at a time, and items it
/// loads per statement: bounded so that its memory stays small whatever the run's size.
const WARM_CLIENTS: usize = 512;
const WARM_ITEMS: usize = 8192;

/// An open SQLite store.
pub(crate) struct SqliteStore {
    shared: Arc<Shared>,
    /// One permit per read connection ([`max_readers`]).
    readers: Arc<Semaphore>,
    sender: Option<JobSender>,
    thread: Option<JoinHandle<()>>,
}

/// What the reading half of `store_input` decided.
enum Prepared {
    /// The credentials were refused.
    Refused(Authenticated<ReportAck>),
    /// The answer is already known from committed data.
    Answer(ClientAuth, ReportAck),
    /// A plan for the writer.
    Write {
        auth: ClientAuth,
        client: i64,
        input: Box<ReportInput>,
        plan: Box<Plan>,
    },
}

/// What the reading half of `apply_forwarded` decided: an answer from committed data (with the
/// job, which a batch still sends to the writer), or a job for the writer.
enum PreparedForward {
    Answer(ForwardOutcome, Box<ForwardJob>),
    Write(Box<ForwardJob>),
}

impl SqliteStore {
    pub async fn create(path: &Path, meta: &SiteMeta) -> Result<SqliteStore, StoreError> {
        let (path, meta) = (path.to_path_buf(), meta.clone());
        blocking(move || {
            let conn = schema::create(&path, &meta)?;
            tracing::info!(path = %path.display(), site = %meta.code, "Created the site database.");
            SqliteStore::start(path, conn)
        })
        .await
    }

    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let path = path.to_path_buf();
        blocking(move || {
            let conn = schema::open(&path)?;
            SqliteStore::start(path, conn)
        })
        .await
    }

    fn start(path: PathBuf, conn: Connection) -> Result<SqliteStore, StoreError> {
        let site = ready(exec::site_meta(&mut Lite(&conn)))?;
        let shared = Arc::new(Shared {
            path,
            site,
            idle_readers: Mutex::new(Vec::new()),
            cache: ItemCache::default(),
            last_seen: LastSeen::default(),
            software: SoftwareIndex::default(),
            linger_micros: Default::default(),
        });
        let (sender, thread) = writer::spawn(conn, shared.clone())?;
        Ok(SqliteStore {
            shared,
            readers: Arc::new(Semaphore::new(max_readers())),
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// Runs `f` on a read connection on a blocking thread.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Shared) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self
            .readers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let shared = self.shared.clone();
        blocking(move || {
            let result = shared.with_reader(|conn| f(conn, &shared));
            drop(permit);
            result
        })
        .await
    }

    /// Runs a short read (a few point look-ups by key) on the calling thread, with a pooled
    /// connection. Profiling check-ins over HTTP showed that handing such a read to a blocking
    /// thread and back cost far more than the read (about 40% of the site's CPU time went to
    /// waking threads); a point read on a warm page cache takes microseconds, well within what
    /// a task may run between awaits. Anything that reads many rows goes through [`Self::read`].
    ///
    /// The statements run in one read transaction: SQLite takes and releases the WAL read lock
    /// (several `fcntl` calls) once instead of once per statement, which was the next-largest
    /// cost of a check-in, and they all see the same committed state.
    fn read_inline<T>(
        &self,
        f: impl FnOnce(&Connection, &Shared) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let shared = &self.shared;
        shared.with_reader(|conn| {
            conn.prepare_cached("BEGIN")?.execute([])?;
            let result = f(conn, shared);
            // Ending a read transaction cannot lose anything; should it fail, `with_reader`
            // drops the connection instead of pooling it (it is not in autocommit mode).
            let _ = conn
                .prepare_cached("COMMIT")
                .and_then(|mut st| st.execute([]));
            result
        })
    }

    /// Runs `f`, a read of `crate::exec`, on a read connection in one read transaction, so
    /// that everything it reads belongs together (`Store`'s `view!`).
    pub(crate) async fn view<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Lite<'_>, &Shared) -> Result<T, StoreError> + Send + 'static,
    {
        self.read(move |conn, shared| {
            let tx = conn.unchecked_transaction()?;
            let out = f(&mut Lite(&tx), shared)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    /// Runs `f`, a write of `crate::exec`, in the writer's next group (`Store`'s `change!`).
    pub(crate) async fn change<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Lite<'_>, &Shared) -> Result<T, StoreError> + Send + 'static,
    {
        self.write(move |conn, batch| f(&mut Lite(conn), batch.shared))
            .await
    }

    /// Runs `f` in the writer's next group and returns once that group is committed.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Batch<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(f)?.await.map_err(|_| StoreError::Closed)?
    }

    /// Hands `f` to the writer at once and returns where its answer will arrive. Jobs run in
    /// the order they were submitted, so a caller may submit several before waiting, and they
    /// then share group commits instead of paying one each.
    fn submit<T, F>(&self, f: F) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Batch<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let sender = self.sender.as_ref().ok_or(StoreError::Closed)?;
        sender
            .send(Box::new(FnJob::new(f, tx)))
            .map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    pub fn site(&self) -> SiteMeta {
        self.shared.site.clone()
    }

    /// Writes the pending last-seen times now instead of at the writer's next second.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let written = self
            .write(|conn, batch| {
                let seen = batch.shared.last_seen.pending();
                writer::write_seen(conn, &seen)?;
                Ok(seen)
            })
            .await?;
        self.shared.last_seen.forget(&written);
        Ok(())
    }

    pub async fn checkin(
        &self,
        client_id: Uuid,
        now: Timestamp,
        cutoff: i64,
    ) -> Result<CheckinResponse, StoreError> {
        let (client, response, to_pick) = self.read_inline(|conn, shared| {
            let client = ready(exec::own_client_row(
                &mut Lite(conn),
                &shared.site.code,
                client_id,
            ))?
            .ok_or_else(|| unknown_id(client_id))?;
            let (response, to_pick) = ready(exec::checkin_read(&mut Lite(conn), client, cutoff))?;
            Ok((client, response, to_pick))
        })?;
        self.checkin_write(client, to_pick, now).await?;
        Ok(response)
    }

    pub async fn checkin_with_key(
        &self,
        client_id: Uuid,
        key_hash: &Digest,
        now: Timestamp,
        cutoff: i64,
    ) -> Result<Authenticated<CheckinResponse>, StoreError> {
        let read = self.read_inline(|conn, shared| {
            let Some((row, auth)) = ready(exec::client_credentials(
                &mut Lite(conn),
                &shared.site.code,
                client_id,
            ))?
            else {
                return Ok(Err(Authenticated::Unknown));
            };
            Ok(match crate::authenticate(Some(auth), key_hash).accepted() {
                Ok((auth, ())) => Ok((
                    auth,
                    row,
                    ready(exec::checkin_read(&mut Lite(conn), row, cutoff))?,
                )),
                Err(refused) => Err(refused),
            })
        })?;
        let (auth, row, (response, to_pick)) = match read {
            Ok(found) => found,
            Err(refused) => return Ok(refused),
        };
        self.checkin_write(row, to_pick, now).await?;
        Ok(Authenticated::Client(auth, response))
    }

    /// See [`crate::Store::warm_item_cache`].
    pub(crate) async fn warm_item_cache(&self, clients: Vec<ClientName>) -> Result<(), StoreError> {
        self.read(move |conn, shared| {
            // Snapshots share most of their items: a bit per item id seen (ids are dense row
            // ids) finds the distinct ones among millions of references in milliseconds.
            let mut seen: Vec<u64> = Vec::new();
            let mut room = shared.cache.capacity() / 2;
            // Chunk by chunk, in the order the caller will import: a caller that starts its
            // imports at once finds the items of the first clients loaded first.
            for chunk in clients.chunks(WARM_CLIENTS) {
                let mut ids = Vec::new();
                queries::snapshot_item_ids(conn, &shared.site.code, chunk, |id| {
                    let Ok(bit) = usize::try_from(id) else {
                        return;
                    };
                    if seen.len() <= bit / 64 {
                        seen.resize(bit / 64 + 1, 0);
                    }
                    if seen[bit / 64] & (1 << (bit % 64)) == 0 {
                        seen[bit / 64] |= 1 << (bit % 64);
                        ids.push(id);
                    }
                })?;
                ids.sort_unstable();
                let known = shared.cache.items(&ids);
                let mut missing: Vec<i64> = ids
                    .iter()
                    .zip(known)
                    .filter(|(_, c)| c.is_none())
                    .map(|(id, _)| *id)
                    .collect();
                // More than a generation of the cache would push out what was loaded first.
                missing.truncate(room);
                room -= missing.len();
                for part in missing.chunks(WARM_ITEMS) {
                    let loaded = SqlItems(conn).load(part)?;
                    shared.cache.insert(part.iter().copied().zip(loaded));
                }
                if room == 0 {
                    break;
                }
            }
            Ok(())
        })
        .await
    }

    pub(crate) fn set_commit_linger(&self, linger: std::time::Duration) {
        let micros = u64::try_from(linger.as_micros()).unwrap_or(u64::MAX);
        self.shared
            .linger_micros
            .store(micros, std::sync::atomic::Ordering::Relaxed);
    }

    /// A read of `crate::exec` made of a few point look-ups, on the calling thread
    /// ([`Self::read_inline`]) rather than a reading thread.
    pub(crate) fn view_inline<T>(
        &self,
        f: impl FnOnce(&mut Lite<'_>, &Shared) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.read_inline(|conn, shared| f(&mut Lite(conn), shared))
    }

    /// [`crate::Store::cap_checkin`]'s common case, where it changes nothing but the
    /// last-seen time ([`exec::cap_seen_only`]): recorded in memory, as an HTTP check-in's.
    /// `false`: the check-in needs its write.
    pub(crate) fn cap_seen_only(
        &self,
        client_id: Uuid,
        c: &crate::CapCheckin,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let row = self.view_inline(|e, shared| {
            ready(exec::cap_seen_only(e, &shared.site.code, client_id, c))
        })?;
        let Some(row) = row else {
            return Ok(false);
        };
        // As the write would: not past now, and never moving the time back (the later of the
        // stored and the pending time is what is written).
        self.shared
            .last_seen
            .record(row, Timestamp(c.seen_at.0.min(now.0)));
        Ok(true)
    }

    /// A point read on the calling thread ([`Self::read_inline`]): reports and check-ins
    /// by key ask it first.
    pub async fn client_auth(&self, client_id: Uuid) -> Result<Option<ClientAuth>, StoreError> {
        let found = self.read_inline(|conn, shared| {
            ready(exec::client_credentials(
                &mut Lite(conn),
                &shared.site.code,
                client_id,
            ))
        })?;
        Ok(found.map(|(_, auth)| auth))
    }

    /// What a check-in writes: only a check-in that picks something up writes (and waits for)
    /// a row; the common no-change check-in only records its last-seen time in memory.
    async fn checkin_write(
        &self,
        client: i64,
        to_pick: Vec<i64>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if !to_pick.is_empty() {
            self.write(move |conn, _| {
                ready(exec::mark_picked_up(&mut Lite(conn), client, &to_pick, now))
            })
            .await?;
        }
        self.shared.last_seen.record(client, now);
        Ok(())
    }

    /// Stores a report; with `key_hash`, only when it is the client's key, checked in the same
    /// read as the report's plan (without, an unknown client is an error).
    pub(crate) async fn store_input(
        &self,
        client_id: Uuid,
        key_hash: Option<Digest>,
        input: ReportInput,
        now: Timestamp,
    ) -> Result<Authenticated<ReportAck>, StoreError> {
        let is_full = input.is_full();
        let plan_report = move |conn: &Connection, shared: &Shared| {
            // Item lookups and the merge happen here, on a reading thread, so that the writer
            // only checks the plan still holds and writes it.
            let Some((client, auth)) = ready(exec::client_credentials(
                &mut Lite(conn),
                &shared.site.code,
                client_id,
            ))?
            else {
                return match key_hash {
                    Some(_) => Ok(Prepared::Refused(Authenticated::Unknown)),
                    None => Err(unknown_id(client_id)),
                };
            };
            let auth = match &key_hash {
                None => auth,
                Some(key_hash) => match crate::authenticate(Some(auth), key_hash).accepted() {
                    Ok((auth, ())) => auth,
                    Err(refused) => return Ok(Prepared::Refused(refused)),
                },
            };
            let row = queries::snapshot_row(conn, client, input.class)?;
            if let Some(row) = &row
                && row.has_report(input.report_id)
            {
                return Ok(Prepared::Answer(auth, row.duplicate()));
            }
            let current = row.as_ref().map(|r| r.current()).transpose()?;
            let resolver = Resolver {
                cache: &shared.cache,
                db: &SqlItems(conn),
                fill_cache: true,
            };
            let plan = crate::plan::plan(&input, current.as_ref(), &resolver)?;
            if let Outcome::Resync(reason) = &plan.outcome {
                // Refusing stores nothing, so the committed state is as good a basis as any.
                return Ok(Prepared::Answer(
                    auth,
                    ReportAck::ResyncRequired {
                        reason: reason.clone(),
                    },
                ));
            }
            Ok(Prepared::Write {
                auth,
                client,
                input: Box::new(input),
                plan: Box::new(plan),
            })
        };
        // A delta touches a handful of items: planning it on this thread is cheaper than the
        // trip to a blocking thread and back. A full report's plan looks at every item and may
        // read many from disk, so it runs where blocking is expected.
        let prepared = if is_full {
            self.read(plan_report).await?
        } else {
            self.read_inline(plan_report)?
        };
        let (auth, ack) = match prepared {
            Prepared::Refused(refused) => return Ok(refused),
            Prepared::Answer(auth, ack) => (auth, ack),
            Prepared::Write {
                auth,
                client,
                input,
                plan,
            } => {
                let ack = self
                    .write(move |conn, batch| {
                        queries::apply_report(conn, batch, client, &input, Some(*plan), now)
                    })
                    .await?;
                self.shared.last_seen.record(client, now);
                (auth, ack)
            }
        };
        crate::rows::log_ack(client_id, &ack);
        Ok(Authenticated::Client(auth, ack))
    }

    /// Stores an imported inventory (`Store::import_unmanaged`) in one writer job: the record
    /// found or created and the report planned and written over it, so that a failure undoes
    /// both. The writer plans the report itself: an import is rare, and a plan made on a reading
    /// thread could not see a record the same job creates.
    pub(crate) async fn import_unmanaged(
        &self,
        to: crate::ImportTo,
        input: ReportInput,
        now: Timestamp,
    ) -> Result<crate::Imported, StoreError> {
        self.write(move |conn, batch| {
            let target = ready(exec::import_target(
                &mut Lite(conn),
                &batch.shared.site.code,
                &to.name,
                &to.machine_id,
                now,
            ))?;
            let ack = queries::apply_report(conn, batch, target.row, &input, None, now)?;
            Ok(crate::Imported {
                client_id: target.client_id,
                created: target.created,
                ack,
            })
        })
        .await
    }

    pub async fn software(&self, q: &SoftwareQuery) -> Result<SoftwarePage, StoreError> {
        self.software_index_ready().await?;
        let q = q.clone();
        self.read(move |conn, shared| queries::software(conn, &shared.software, &q))
            .await
    }

    pub async fn packages(&self, q: &PackageQuery) -> Result<PackagePage, StoreError> {
        self.software_index_ready().await?;
        let q = q.clone();
        self.read(move |conn, shared| queries::packages(conn, &shared.software, &q))
            .await
    }

    /// Starts building the software index unless it is built or being built.
    pub fn warm_software_index(&self) {
        if self.shared.software.claim_build() {
            self.spawn_software_build();
        }
    }

    async fn software_index_ready(&self) -> Result<(), StoreError> {
        self.shared
            .software
            .ready(|| self.spawn_software_build())
            .await
    }

    fn spawn_software_build(&self) {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = build_software_index(&shared) {
                shared.software.fail_build(&e.to_string());
            }
        });
    }

    pub async fn find_clients(&self, name: &ClientName) -> Result<Vec<Owner>, StoreError> {
        let name = name.clone();
        self.read(move |conn, _| hierarchy::find_clients(conn, &name))
            .await
    }

    // -----------------------------------------------------------------------------------------
    // Hierarchy (SPEC section 6)

    /// A consistent copy of the database in a new file (see `Store::backup_to`): `VACUUM INTO`
    /// runs in one read transaction on a reading connection, so writers go on meanwhile and
    /// the copy is the database as of that transaction's start, compacted.
    pub async fn backup_to(&self, to: &Path) -> Result<(), StoreError> {
        let to = to
            .to_str()
            .ok_or_else(|| StoreError::Refused(format!("{} is not a UTF-8 path", to.display())))?
            .to_string();
        self.read(move |conn, _| {
            conn.execute("VACUUM INTO ?1", [to])?;
            Ok(())
        })
        .await
    }

    /// A tiny write through the writer (see `Store::probe_write`).
    pub async fn probe_write(&self, now: Timestamp) -> Result<(), StoreError> {
        self.write(move |conn, _| outbox::set_probe_time(conn, now))
            .await
    }

    pub async fn set_forwarding(&self, on: bool) -> Result<(), StoreError> {
        let set = self.write(move |conn, _| outbox::set_forwarding(conn, on));
        core::log_forwarding(on, set.await)
    }

    pub async fn forwarding(&self) -> Result<bool, StoreError> {
        self.read(|conn, _| outbox::forwarding(conn)).await
    }

    pub async fn own_clients(&self) -> Result<i64, StoreError> {
        self.read_inline(|conn, shared| hierarchy::own_clients(conn, &shared.site.code))
    }

    pub async fn outbox_batch(&self, limit: usize) -> Result<Vec<Forwarded>, StoreError> {
        self.read(move |conn, _| hierarchy::outbox_batch(conn, limit))
            .await
    }

    pub async fn outbox_done(&self, acked: core::Acked) -> Result<(), StoreError> {
        if acked.is_empty() {
            return Ok(());
        }
        self.write(move |conn, batch| hierarchy::outbox_done(conn, &batch.shared.site.code, &acked))
            .await
    }

    /// Deletes this site's live client `name` (`crate::lifecycle`), in one writer job.
    pub async fn delete_client(
        &self,
        name: ClientName,
        now: Timestamp,
    ) -> Result<invsync_proto::wire::Deleted, StoreError> {
        self.write(move |conn, batch| hierarchy::delete_own(conn, batch, &name, now))
            .await
    }

    /// Applies a tombstone a child forwarded (`crate::lifecycle`).
    pub async fn apply_tombstone(
        &self,
        via: SiteCode,
        meta: core::ForwardMeta,
        deleted_at: Timestamp,
        now: Timestamp,
    ) -> Result<ForwardOutcome, StoreError> {
        self.write(move |conn, batch| {
            hierarchy::apply_tombstone(conn, batch, &via, &meta, deleted_at, now)
        })
        .await
    }

    pub async fn outbox_resync(&self, client: Uuid, class: Class) -> Result<(), StoreError> {
        let queued = self.write(move |conn, _| hierarchy::outbox_resync(conn, client, class));
        core::log_resync(client, class, queued.await?)
    }

    pub async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        self.read(|conn, _| hierarchy::outbox_stats(conn)).await
    }

    pub async fn set_child_token(&self, token: core::ChildToken) -> Result<(), StoreError> {
        self.write(move |conn, batch| {
            hierarchy::set_child_token(conn, &batch.shared.site.code, &token)
        })
        .await
    }

    pub async fn child_key_hash(&self, code: &SiteCode) -> Result<Option<Digest>, StoreError> {
        let code = code.clone();
        self.read(move |conn, _| hierarchy::child_key_hash(conn, &code))
            .await
    }

    pub async fn record_site_status(&self, report: core::SiteReport) -> Result<(), StoreError> {
        self.write(move |conn, batch| {
            hierarchy::record_site_status(conn, &batch.shared.site.code, &report)
        })
        .await
    }

    pub async fn sites(&self) -> Result<Vec<SiteStatus>, StoreError> {
        self.read(|conn, _| hierarchy::sites(conn)).await
    }

    pub async fn site_via(&self, code: &SiteCode) -> Result<Option<SiteCode>, StoreError> {
        let code = code.clone();
        self.read(move |conn, _| hierarchy::site_via(conn, &code))
            .await
    }

    /// Applies forwarded changes in order (`core::ForwardInput`s, see `Store::apply_forwarded`).
    /// A lone change answered from committed data never reaches the writer; in a batch every
    /// change does, in order, even when the reading half already has an answer: an earlier
    /// change of the batch may change it (a stale client removed, a snapshot moved), and the
    /// writer checks everything again anyway.
    pub async fn apply_forwarded_jobs(
        &self,
        via: &SiteCode,
        jobs: Vec<core::ForwardInput>,
        now: Timestamp,
    ) -> Result<Vec<ForwardOutcome>, StoreError> {
        enum Pending {
            Ready(ForwardOutcome),
            Waiting(oneshot::Receiver<Result<ForwardOutcome, StoreError>>),
        }
        let alone = jobs.len() == 1;
        let mut seen = std::collections::HashSet::new();
        let mut pending = Vec::with_capacity(jobs.len());
        let mut metas = Vec::with_capacity(jobs.len());
        for (meta, input) in jobs {
            metas.push(meta.clone());
            let input = match input {
                // A malformed body is refused whatever comes before it.
                Err(refused) => {
                    pending.push(Pending::Ready(refused));
                    continue;
                }
                Ok(input) => input,
            };
            // A plan made before an earlier entry of the same client and class is written
            // would be made against the wrong snapshot; the writer plans those itself.
            let first = seen.insert((meta.client.id, meta.class));
            let job = Box::new(ForwardJob {
                via: via.clone(),
                meta,
                input,
                planned: None,
            });
            let job = match self.prepare_forwarded(job, first).await? {
                PreparedForward::Answer(outcome, _) if alone => {
                    pending.push(Pending::Ready(outcome));
                    continue;
                }
                PreparedForward::Answer(_, job) | PreparedForward::Write(job) => job,
            };
            pending.push(Pending::Waiting(self.submit(move |conn, batch| {
                hierarchy::apply_forwarded(conn, batch, *job, now)
            })?));
        }
        let mut outcomes = Vec::with_capacity(metas.len());
        for (meta, p) in metas.iter().zip(pending) {
            let outcome = match p {
                Pending::Ready(outcome) => outcome,
                Pending::Waiting(rx) => rx.await.map_err(|_| StoreError::Closed)??,
            };
            outcomes.push(core::log_forward(via, meta, outcome));
        }
        Ok(outcomes)
    }

    pub async fn queue_routed_request(&self, route: core::RouteDown) -> Result<Queued, StoreError> {
        self.write(move |conn, batch| {
            hierarchy::queue_routed(conn, &batch.shared.site.code, &route)
        })
        .await
    }

    pub async fn deliver_routed_requests(
        &self,
        delivery: core::Delivery,
    ) -> Result<Vec<DownRequest>, StoreError> {
        // Every forward batch of every child asks, heartbeats included; a read on the pool
        // answers the usual "nothing to deliver" without a trip through the writer.
        let look = delivery.clone();
        let any = self
            .read(move |conn, shared| {
                Ok(!hierarchy::routed_due(conn, &shared.site.code, &look)?.is_empty())
            })
            .await?;
        if !any {
            return Ok(Vec::new());
        }
        self.write(move |conn, batch| {
            // Selected again by the writer: another batch of the same child may have taken
            // them meanwhile, and a request is delivered once per period.
            let (ids, down): (Vec<i64>, Vec<DownRequest>) =
                hierarchy::routed_due(conn, &batch.shared.site.code, &delivery)?
                    .into_iter()
                    .unzip();
            hierarchy::mark_delivered(conn, &ids, delivery.now)?;
            Ok(down)
        })
        .await
    }

    pub async fn accept_down_request(
        &self,
        take: core::TakeDown,
    ) -> Result<DownAccepted, StoreError> {
        self.write(move |conn, batch| hierarchy::accept_down(conn, &batch.shared.site.code, &take))
            .await
    }

    /// The reading half of applying a forwarded change: the checks and, with `plan`, the plan
    /// against committed data, so that the writer only re-checks them.
    async fn prepare_forwarded(
        &self,
        job: Box<ForwardJob>,
        plan: bool,
    ) -> Result<PreparedForward, StoreError> {
        self.read(move |conn, shared| {
            let row = match hierarchy::check_forwarded(conn, &shared.site.code, &job)? {
                Verdict::Answer(outcome) => return Ok(PreparedForward::Answer(outcome, job)),
                Verdict::Proceed(row) => row,
            };
            if !plan {
                return Ok(PreparedForward::Write(job));
            }
            let current = row.as_ref().map(|r| r.current()).transpose()?;
            let resolver = Resolver {
                cache: &shared.cache,
                db: &SqlItems(conn),
                fill_cache: true,
            };
            let planned = crate::plan::plan(&job.input, current.as_ref(), &resolver)?;
            if let Outcome::Resync(reason) = &planned.outcome {
                let outcome = job.meta.resync(reason.clone());
                return Ok(PreparedForward::Answer(outcome, job));
            }
            Ok(PreparedForward::Write(Box::new(ForwardJob {
                planned: Some(planned),
                ..*job
            })))
        })
        .await
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // The idle readers close first so that the writer's connection is the last one to close:
        // only a read-write connection can checkpoint the WAL into the database file and remove
        // it, which leaves a single file behind.
        self.shared
            .idle_readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        // Closing the channel lets the writer finish the jobs already sent, write pending
        // last-seen times and stop; waiting for it means the file is quiet once the store is gone.
        drop(self.sender.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(
                "The store's writer thread panicked; recent writes may not have been answered."
            );
        }
    }
}

/// Runs blocking database work off the async threads.
async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Database(format!("a database task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::PreparedItem;
    use crate::plan::ItemSource;
    use invsync_proto::SiteCode;
    use invsync_proto::inventory::Attrs;

    fn item(key: &str) -> PreparedItem {
        PreparedItem::new(key, &Attrs::from([("name".to_string(), key.to_string())]))
    }

    /// A rolled-back savepoint may free item ids for reuse, so items it inserted must never be
    /// published to the cache, while the other jobs of the same group commit normally.
    #[tokio::test]
    async fn items_of_a_failed_write_never_reach_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SiteMeta {
            code: SiteCode::parse("S01").unwrap(),
            name: String::new(),
            created_at: Timestamp(0),
        };
        let store = SqliteStore::create(&dir.path().join("t.db"), &meta)
            .await
            .unwrap();
        let (lost, kept) = (item("lost"), item("kept"));
        let (l, k) = (lost.clone(), kept.clone());
        let (failed, ok) = tokio::join!(
            store.write(move |conn, batch| {
                queries::intern_item(conn, batch, &l)?;
                Err::<i64, _>(StoreError::BadReport("fails after inserting".to_string()))
            }),
            store.write(move |conn, batch| queries::intern_item(conn, batch, &k)),
        );
        assert!(matches!(failed, Err(StoreError::BadReport(_))));
        let kept_id = ok.unwrap();
        assert_eq!(
            store.shared.cache.ids([&lost.digest, &kept.digest]),
            vec![None, Some(kept_id)]
        );
        let in_db = store
            .read(move |conn, _| SqlItems(conn).find(&[&lost, &kept]))
            .await
            .unwrap();
        assert_eq!(
            in_db,
            vec![None, Some(kept_id)],
            "the failed job's insert was undone"
        );
    }

    /// A one-shot bulk import starts with an empty cache: warming loads the items of the named
    /// clients' snapshots (and only theirs) with their keys and digests.
    #[tokio::test]
    async fn warming_loads_the_items_of_the_named_clients_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let meta = SiteMeta {
            code: SiteCode::parse("S01").unwrap(),
            name: String::new(),
            created_at: Timestamp(0),
        };
        let items: Vec<PreparedItem> = ["a", "b", "c", "d"].into_iter().map(item).collect();
        let ids = {
            let store = SqliteStore::create(&path, &meta).await.unwrap();
            let all = items.clone();
            store
                .write(move |conn, batch| {
                    let ids = all
                        .iter()
                        .map(|i| queries::intern_item(conn, batch, i))
                        .collect::<Result<Vec<i64>, _>>()?;
                    // PC1 holds a, b and c; PC2 (another client) holds d.
                    for (n, (name, held)) in [("PC1", &ids[..3]), ("PC2", &ids[3..])]
                        .into_iter()
                        .enumerate()
                    {
                        conn.execute(
                            "INSERT INTO clients (uuid, name, site_code, machine_id, key_hash, enrolled_at)
                             VALUES (?1, ?2, 'S01', '', x'00', 0)",
                            rusqlite::params![Uuid::from_u128(n as u128 + 1).as_bytes().to_vec(), name],
                        )?;
                        conn.execute(
                            "INSERT INTO snapshots (client_id, class, version, hash, full_at, updated_at, recent_reports, items)
                             VALUES (last_insert_rowid(), 1, 1, x'', 0, 0, x'', ?1)",
                            [crate::codec::encode_ids(held)],
                        )?;
                    }
                    Ok(ids)
                })
                .await
                .unwrap()
        };
        let store = SqliteStore::open(&path).await.unwrap();
        assert!(
            store.shared.cache.items(&ids).iter().all(Option::is_none),
            "a new process starts cold"
        );
        let names = ["PC1", "NOSUCH"].map(|n| ClientName::parse(n).unwrap());
        store.warm_item_cache(names.to_vec()).await.unwrap();
        let cached = store.shared.cache.items(&ids);
        for (i, item) in items.iter().take(3).enumerate() {
            let c = cached[i].as_ref().expect("PC1's items are cached");
            assert_eq!((&*c.key, c.digest), (item.key.as_str(), item.digest));
        }
        assert!(cached[3].is_none(), "PC2 was not named");
    }
}
