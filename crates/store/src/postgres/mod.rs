//! The PostgreSQL backend: a site's database on a PostgreSQL server (`invsite init --db
//! postgres://…`), with the same semantics as the SQLite backend: the same versions, hashes,
//! history, de-duplication and errors, decided once for both in `crate::rows`. The SQL of this
//! backend lives in `schema`, `queries` and `hierarchy`, beside the statements both dialects
//! share (`crate::sql`, run once for both by `crate::exec`).
//!
//! Concurrency. The SQLite backend funnels writes through one writer thread; here each write
//! is its own transaction on a pooled connection, and transactions run in parallel. What must
//! not interleave is serialised by transaction-scoped advisory locks: every change of one
//! client (a report, a forwarded change, an outbox rebuild) takes that client's lock first, so
//! it reads the snapshot, plans against it and writes without another change of the client
//! moving the snapshot in between; there is never a plan to redo. Changes to the tree of sites
//! take a tree lock, which applying a forwarded change holds shared. Inserts that two
//! transactions may both attempt (an enrollment, a pending request, an item) use `ON CONFLICT`
//! against unique indexes, so they are atomic without a lock.
//!
//! Planning. `plan::plan` asks an `ItemSource` synchronously. Rather than block a thread on
//! async queries from inside it, planning is split: `queries::plan_report` first makes every
//! lookup the plan can ask (`crate::prefetch` decides which), batched (one statement for the
//! report's items not in the shared item cache, one for the stored items it needs by id), then
//! runs `plan::plan` against those answers alone, as pure computation. Its CPU cost (a merge of sorted lists and one hash of
//! the digests) is well under a millisecond for 1,500 items, so it runs inline on the async
//! task. Items are interned in two statements per report whatever their number, and a report
//! is one transaction.
//!
//! The item cache is the shared `ItemCache` as in SQLite; identity columns never reuse an id,
//! and what a transaction interned enters the cache only after its commit.
//!
//! Last-seen times are batched in memory and written about once a second in one statement, as
//! SQLite does (`last_seen`), and once more when the site stops (`Store::flush`). Written per
//! check-in, each no-change check-in was a commit and a WAL flush of its own, and check-ins ran
//! at a tenth of the SQLite backend's rate; batched, a check-in only reads. Reads in this process
//! overlay the pending times; another process sharing the database sees them within a second,
//! and a crash loses at most the last second of them, which are not inventory.

mod hierarchy;
mod outbox;
mod queries;
mod schema;

use invsync_proto::wire::{
    CheckinResponse, DownRequest, ForwardOutcome, Forwarded, Owner, PackagePage, PackageQuery,
    Queued, ReportAck, SiteStatus, SoftwarePage, SoftwareQuery,
};
use invsync_proto::{Class, ClientName, Digest, SiteCode, Timestamp};
use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgPool, Postgres};
use uuid::Uuid;

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::cache::ItemCache;
use crate::error::StoreError;
use crate::exec;
use crate::hierarchy::{self as core, ForwardInput};
use crate::last_seen::LastSeen;
use crate::plan::ReportInput;
use crate::rows::unknown_id;
use crate::software::{Build, SoftwareIndex, SwChange};
use crate::{ClientAuth, DownAccepted, OutboxStats, SiteMeta};

use crate::redact::redact_url;

/// Builds the software index (see the `software` module for why this is exact while writes go
/// on): the snapshot starts while no writer is between its transaction and handing over its
/// changes, then the items and every software snapshot are read in it, and the changes
/// committed since are applied after.
async fn build_software_index(pool: &PgPool, index: &SoftwareIndex) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    {
        let _gate = index.gate.write().await;
        index.begin_build();
        // A REPEATABLE READ transaction takes its snapshot at its first query.
        sqlx::query("SELECT 1 FROM meta LIMIT 1")
            .execute(&mut *tx)
            .await?;
    }
    let mut build = Build::new();
    queries::items_for_index(&mut tx, None, |id, attrs| build.item(id, attrs)).await?;
    queries::software_lists(&mut tx, |client, version, items| {
        build.list(client, version, items)
    })
    .await?;
    tx.commit().await?;
    loop {
        let unknown = index.queued_unknown(&mut build);
        if !unknown.is_empty() {
            let mut conn = pool.acquire().await?;
            queries::items_for_index(&mut conn, Some(&unknown), |id, attrs| build.item(id, attrs))
                .await?;
            continue;
        }
        match index.try_finish(build) {
            Ok(()) => return Ok(()),
            Err(again) => build = again,
        }
    }
}

/// An open PostgreSQL store.
pub(crate) struct PgStore {
    pool: PgPool,
    pub site: SiteMeta,
    cache: ItemCache,
    pub last_seen: Arc<LastSeen>,
    software: Arc<SoftwareIndex>,
}

impl Drop for PgStore {
    /// Writes the last-seen times still pending, as the SQLite backend's writer does when it
    /// stops, so that closing a store loses nothing. The pool's connections belong to the tokio
    /// runtime that opened them, which may be the very thread dropping the store or one shutting
    /// down; a fresh connection on a thread and runtime of its own works from any context.
    fn drop(&mut self) {
        let pending = self.last_seen.pending();
        if pending.is_empty() {
            return;
        }
        let opts = (*self.pool.connect_options()).clone();
        let written = std::thread::spawn(move || -> Result<(), StoreError> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::Database(format!("cannot start a runtime: {e}")))?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect_with(&opts).await?;
                queries::write_last_seen(&mut conn, &pending).await
            })
        })
        .join();
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Could not write the last last-seen times on closing.")
            }
            Err(_) => tracing::warn!("Writing the last last-seen times on closing panicked."),
        }
    }
}

/// How often pending last-seen times are written.
const LAST_SEEN_EVERY: Duration = Duration::from_secs(1);

/// Writes pending last-seen times every [`LAST_SEEN_EVERY`] until the store is gone.
async fn write_last_seen_loop(pool: PgPool, last_seen: Weak<LastSeen>) {
    let mut tick = tokio::time::interval(LAST_SEEN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(last_seen) = last_seen.upgrade() else {
            return;
        };
        if let Err(e) = flush_last_seen(&pool, &last_seen).await {
            tracing::warn!(error = %e, "Could not write last-seen times; will try again.");
        }
    }
}

async fn flush_last_seen(pool: &PgPool, last_seen: &LastSeen) -> Result<(), StoreError> {
    let pending = last_seen.pending();
    if pending.is_empty() {
        return Ok(());
    }
    queries::write_last_seen(&mut *pool.acquire().await?, &pending).await?;
    last_seen.forget(&pending);
    Ok(())
}

impl PgStore {
    pub async fn create(url: &str, meta: &SiteMeta) -> Result<PgStore, StoreError> {
        let pool = schema::create(url, meta).await?;
        tracing::info!(url = %redact_url(url), site = %meta.code, "Created the site database in PostgreSQL.");
        PgStore::start(pool).await
    }

    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        let pool = schema::open(url).await?;
        PgStore::start(pool).await
    }

    async fn start(pool: PgPool) -> Result<PgStore, StoreError> {
        let site = {
            let mut conn = pool.acquire().await?;
            exec::site_meta(&mut *conn).await?
        };
        let last_seen = Arc::new(LastSeen::default());
        tokio::spawn(write_last_seen_loop(
            pool.clone(),
            Arc::downgrade(&last_seen),
        ));
        Ok(PgStore {
            pool,
            site,
            cache: ItemCache::default(),
            last_seen,
            software: Arc::new(SoftwareIndex::default()),
        })
    }

    /// Writes what is pending now (last-seen times), for a site that is stopping.
    pub async fn flush(&self) -> Result<(), StoreError> {
        flush_last_seen(&self.pool, &self.last_seen).await
    }

    pub(crate) async fn conn(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        Ok(self.pool.acquire().await?)
    }

    /// A read-write transaction on a pooled connection (`Store`'s `change_all!`).
    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// Stores an imported inventory (`Store::import_unmanaged`) in one transaction: the record
    /// found or created, then the report as `store_input` stores it; nothing is kept unless the
    /// report is accepted.
    pub(crate) async fn import_unmanaged(
        &self,
        to: crate::ImportTo,
        input: ReportInput,
        now: Timestamp,
    ) -> Result<crate::Imported, StoreError> {
        // Held until this report's software change is handed over (see the `software` module).
        let _gate = self.software.gate.read().await;
        let mut inserted = queries::Inserted::new(&self.software);
        let mut tx = self.pool.begin().await?;
        let target =
            exec::import_target(&mut *tx, &self.site.code, &to.name, &to.machine_id, now).await?;
        let (_, ack) = queries::apply_report(
            &mut tx,
            &self.cache,
            &self.site.code,
            target.client_id,
            &input,
            now,
            &mut inserted,
        )
        .await?;
        let accepted = matches!(ack, ReportAck::Accepted { .. });
        if accepted {
            tx.commit().await?;
            self.cache.insert(inserted.items);
            self.hand_over(inserted.software).await;
        } else {
            tx.rollback().await?;
        }
        crate::rows::log_ack(target.client_id, &ack);
        Ok(crate::Imported {
            client_id: target.client_id,
            created: target.created && accepted,
            ack,
        })
    }

    pub fn site(&self) -> SiteMeta {
        self.site.clone()
    }

    /// On a pooled connection, outside a transaction: every report asks it first.
    pub async fn client_auth(&self, client_id: Uuid) -> Result<Option<ClientAuth>, StoreError> {
        let mut conn = self.conn().await?;
        let found = exec::client_credentials(&mut *conn, &self.site.code, client_id).await?;
        Ok(found.map(|(_, auth)| auth))
    }

    pub async fn checkin(
        &self,
        client_id: Uuid,
        now: Timestamp,
        cutoff: i64,
    ) -> Result<CheckinResponse, StoreError> {
        let mut conn = self.conn().await?;
        let client = exec::own_client_row(&mut *conn, &self.site.code, client_id)
            .await?
            .ok_or_else(|| unknown_id(client_id))?;
        let (response, to_pick) = exec::checkin_read(&mut *conn, client, cutoff).await?;
        if !to_pick.is_empty() {
            exec::mark_picked_up(&mut *conn, client, &to_pick, now).await?;
        }
        self.last_seen.record(client, now);
        Ok(response)
    }

    pub(crate) async fn store_input(
        &self,
        client_id: Uuid,
        input: ReportInput,
        now: Timestamp,
    ) -> Result<ReportAck, StoreError> {
        // Held until this report's software change is handed over (see the `software` module).
        let _gate = self.software.gate.read().await;
        let mut inserted = queries::Inserted::new(&self.software);
        let mut tx = self.pool.begin().await?;
        let (client, ack) = queries::apply_report(
            &mut tx,
            &self.cache,
            &self.site.code,
            client_id,
            &input,
            now,
            &mut inserted,
        )
        .await?;
        if matches!(ack, ReportAck::Accepted { .. }) {
            tx.commit().await?;
            self.cache.insert(inserted.items);
            self.hand_over(inserted.software).await;
            // A report is also a sign of life, as with SQLite.
            self.last_seen.record(client, now);
        } else {
            // Nothing is stored unless the answer is `Accepted`.
            tx.rollback().await?;
        }
        crate::rows::log_ack(client_id, &ack);
        Ok(ack)
    }

    pub async fn software(&self, q: &SoftwareQuery) -> Result<SoftwarePage, StoreError> {
        self.software_index_ready().await?;
        let mut tx = self.read_only_snapshot().await?;
        let site = match &q.site {
            Some(code) => Some(exec::site_rows(&mut *tx, code).await?),
            None => None,
        };
        let holders = self
            .software
            .read(|ix| crate::software::Holders::find(ix, q, site.as_ref()))?;
        let page = match holders.rows(crate::software::DIRECT_HOLDERS) {
            Some(rows) => holders.page_from(&queries::list_owners(&mut tx, &rows).await?),
            None => {
                let mut collect = holders.collector();
                let wanted = q.offset.saturating_add(u64::from(q.limit));
                queries::clients_by_name(&mut tx, wanted, |row, owner| collect.offer(row, owner))
                    .await?;
                collect.finish()
            }
        };
        tx.commit().await?;
        Ok(page)
    }

    pub async fn packages(&self, q: &PackageQuery) -> Result<PackagePage, StoreError> {
        self.software_index_ready().await?;
        let site = match &q.site {
            Some(code) => Some(exec::site_rows(&mut *self.conn().await?, code).await?),
            None => None,
        };
        self.software
            .read(|ix| crate::software::packages_page(ix, q, site.as_ref()))
    }

    /// Starts building the software index unless it is built or being built.
    pub fn warm_software_index(&self) {
        if self.software.claim_build() {
            self.spawn_software_build();
        }
    }

    async fn software_index_ready(&self) -> Result<(), StoreError> {
        self.software.ready(|| self.spawn_software_build()).await
    }

    fn spawn_software_build(&self) {
        let (pool, index) = (self.pool.clone(), self.software.clone());
        tokio::spawn(async move {
            if let Err(e) = build_software_index(&pool, &index).await {
                index.fail_build(&e.to_string());
            }
        });
    }

    /// Hands a committed transaction's software changes to the index, first describing the
    /// items it does not know (read now that they are committed). Should that read fail, the
    /// index finds an item it cannot place and rebuilds itself, which is slow but not wrong.
    async fn hand_over(&self, changes: Option<Vec<SwChange>>) {
        let Some(mut changes) = changes.filter(|c| !c.is_empty()) else {
            return;
        };
        let mut unknown: Vec<i64> = changes
            .iter()
            .flat_map(|c| self.software.to_describe(&c.added))
            .collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            unknown.dedup();
            let mut described = Vec::new();
            let read = async {
                let mut conn = self.conn().await?;
                queries::items_for_index(&mut conn, Some(&unknown), |id, attrs| {
                    described.push((id, crate::software::Package::from_stored(attrs)?));
                    Ok(())
                })
                .await
            };
            if let Err(e) = read.await {
                tracing::warn!(error = %e, "Could not read the new items of a software change for the software index.");
            }
            changes[0].described = described;
        }
        self.software.apply(changes);
    }

    /// A read-only transaction whose statements all see one snapshot (REPEATABLE READ).
    pub(crate) async fn read_only_snapshot(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    pub async fn find_clients(&self, name: &ClientName) -> Result<Vec<Owner>, StoreError> {
        hierarchy::find_clients(&mut *self.conn().await?, name).await
    }

    // -----------------------------------------------------------------------------------------
    // Hierarchy (SPEC section 6)

    /// A tiny write (see `Store::probe_write`).
    pub async fn probe_write(&self, now: Timestamp) -> Result<(), StoreError> {
        outbox::set_probe_time(&mut *self.conn().await?, now).await
    }

    pub async fn set_forwarding(&self, on: bool) -> Result<(), StoreError> {
        let set = outbox::set_forwarding(&mut *self.conn().await?, on).await;
        core::log_forwarding(on, set)
    }

    pub async fn forwarding(&self) -> Result<bool, StoreError> {
        outbox::forwarding(&mut *self.conn().await?).await
    }

    pub async fn outbox_batch(&self, limit: usize) -> Result<Vec<Forwarded>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let batch = hierarchy::outbox_batch(&mut tx, limit).await?;
        tx.commit().await?;
        Ok(batch)
    }

    pub async fn outbox_done(&self, acked: core::Acked) -> Result<(), StoreError> {
        if acked.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        hierarchy::outbox_done(&mut tx, &self.site.code, &acked).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn outbox_resync(&self, client: Uuid, class: Class) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let queued = hierarchy::outbox_resync(&mut tx, client, class).await?;
        tx.commit().await?;
        core::log_resync(client, class, queued)
    }

    pub async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        hierarchy::outbox_stats(&mut *self.conn().await?).await
    }

    pub async fn set_child_token(&self, token: core::ChildToken) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        hierarchy::set_child_token(&mut tx, &self.site.code, &token).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn child_key_hash(&self, code: &SiteCode) -> Result<Option<Digest>, StoreError> {
        hierarchy::child_key_hash(&mut *self.conn().await?, code).await
    }

    pub async fn record_site_status(&self, report: core::SiteReport) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        hierarchy::record_site_status(&mut tx, &self.site.code, &report).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn sites(&self) -> Result<Vec<SiteStatus>, StoreError> {
        hierarchy::sites(&mut *self.conn().await?).await
    }

    pub async fn site_via(&self, code: &SiteCode) -> Result<Option<SiteCode>, StoreError> {
        hierarchy::site_via(&mut *self.conn().await?, code).await
    }

    /// One transaction for the whole batch, so that it costs one commit; an entry that is not
    /// applied writes nothing, and an `Err` rolls back the batch (sending it again is safe).
    pub async fn apply_forwarded_jobs(
        &self,
        via: &SiteCode,
        jobs: Vec<ForwardInput>,
        now: Timestamp,
    ) -> Result<Vec<ForwardOutcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(jobs.len());
        let _gate = self.software.gate.read().await;
        let mut inserted = queries::Inserted::new(&self.software);
        let mut tx = self.pool.begin().await?;
        for (meta, input) in jobs {
            let outcome = match input {
                // A malformed body is refused whatever comes before it.
                Err(refused) => refused,
                Ok(input) => {
                    hierarchy::apply_forwarded(
                        &mut tx,
                        &self.cache,
                        &self.site.code,
                        via,
                        &meta,
                        &input,
                        now,
                        &mut inserted,
                    )
                    .await?
                }
            };
            outcomes.push(core::log_forward(via, &meta, outcome));
        }
        tx.commit().await?;
        self.cache.insert(inserted.items);
        self.hand_over(inserted.software).await;
        Ok(outcomes)
    }

    /// Deletes this site's live client `name` in one transaction (`crate::lifecycle`).
    pub async fn delete_client(
        &self,
        name: ClientName,
        now: Timestamp,
    ) -> Result<invsync_proto::wire::Deleted, StoreError> {
        let _gate = self.software.gate.read().await;
        let mut inserted = queries::Inserted::new(&self.software);
        let mut tx = self.pool.begin().await?;
        let deleted =
            hierarchy::delete_own(&mut tx, &mut inserted, &self.site.code, &name, now).await?;
        tx.commit().await?;
        self.hand_over(inserted.software).await;
        Ok(deleted)
    }

    /// Applies a tombstone a child forwarded, in one transaction (`crate::lifecycle`).
    pub async fn apply_tombstone(
        &self,
        via: SiteCode,
        meta: core::ForwardMeta,
        deleted_at: Timestamp,
        now: Timestamp,
    ) -> Result<ForwardOutcome, StoreError> {
        let _gate = self.software.gate.read().await;
        let mut inserted = queries::Inserted::new(&self.software);
        let mut tx = self.pool.begin().await?;
        let outcome = hierarchy::apply_tombstone(
            &mut tx,
            &mut inserted,
            &self.site.code,
            &via,
            &meta,
            deleted_at,
            now,
        )
        .await?;
        tx.commit().await?;
        self.hand_over(inserted.software).await;
        Ok(outcome)
    }

    pub async fn own_clients(&self) -> Result<i64, StoreError> {
        hierarchy::own_clients(&mut *self.conn().await?, &self.site.code).await
    }

    pub async fn queue_routed_request(&self, route: core::RouteDown) -> Result<Queued, StoreError> {
        hierarchy::queue_routed(&mut *self.conn().await?, &self.site.code, &route).await
    }

    /// Under the delivery lock, in one transaction: two batches of one child at once deliver
    /// each request once.
    pub async fn deliver_routed_requests(
        &self,
        delivery: core::Delivery,
    ) -> Result<Vec<DownRequest>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let out = hierarchy::deliver_routed(&mut tx, &self.site.code, &delivery).await?;
        tx.commit().await?;
        Ok(out)
    }

    pub async fn accept_down_request(
        &self,
        take: core::TakeDown,
    ) -> Result<DownAccepted, StoreError> {
        hierarchy::accept_down(&mut *self.conn().await?, &self.site.code, &take).await
    }
}
