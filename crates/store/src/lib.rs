//! The site server's inventory database.
//!
//! [`Store`] is the one interface the site (and the command-line tools that read the database
//! directly) use; it hides which database is behind it: SQLite, embedded in the site's data
//! directory (`sqlite`), or a PostgreSQL server (`postgres`), each a `Backend` variant with its
//! SQL in its own module. The contract tests in `tests/` run against every backend. The store
//! knows nothing of HTTP.
//!
//! Design in brief (details in the modules):
//! * SQLite: writes go to one writer thread that commits them in groups, each write durable
//!   before it is acknowledged (`sqlite::writer`); reads run on a pool of read-only
//!   connections on blocking threads.
//! * PostgreSQL: each write is a transaction on a connection pool, in parallel with others;
//!   an advisory lock per client serialises one client's changes (`postgres`).
//! * Items are interned once per site and snapshots are compact id lists (`codec`), which keeps
//!   a client with 1,500 packages within the storage budget.
//! * Report handling is planned on reading threads and only checked and written by the writer
//!   (`plan`), with an in-memory item cache (`cache`) so deltas need no per-item queries.
//! * Software across clients (which clients have a package, every package with its counts)
//!   is answered from an in-memory index that every write keeps exact after its commit and
//!   that is built once when the site starts (`software`).
//! * The hierarchy of SPEC section 6: a child writes every change it accepts into a durable
//!   outbox in the change's own transaction; a parent applies the changes its children forward
//!   through the same planning and writing path as reports, keeping the owner's version
//!   numbers, and holds the clients of every site below it beside its own, keyed by client id.

mod cache;
mod codec;
mod error;
mod exec;
mod health;
mod hierarchy;
mod ingest;
mod last_seen;
mod lifecycle;
mod page;
mod plan;
mod postgres;
mod prefetch;
mod redact;
mod rows;
mod software;
mod sql;
mod sqlite;
mod users;

use std::path::Path;
use std::sync::Arc;

use invsync_proto::wire::{
    AuditEntry, AuditQuery, CheckinResponse, ClientPage, ClientQuery, ClientSummary, ClientView,
    DownRequest, Event, ForwardOutcome, Forwarded, HopReport, Owner, PackagePage, PackageQuery,
    Queued, Report, ReportAck, RequestPage, RequestQuery, RequestView, SiteStatus, SoftwarePage,
    SoftwareQuery, UserName, UserView,
};
pub use invsync_proto::wire::{HardwareId, MatchedBy};
use invsync_proto::{AgentVersion, Class, ClientName, Digest, SiteCode, Timestamp};
use uuid::Uuid;

pub use error::StoreError;
pub use health::WriteFailure;
pub use hierarchy::{IncomingForwarded, PreparedBody, PreparedDelta};
pub use ingest::{IncomingReport, PreparedItems, Shape};
pub use lifecycle::{DeletedHistory, Retained};
/// A database URL with its password (in the authority or a `password=` parameter) hidden.
pub use redact::redact_url;
pub use users::{AuditRecord, DEFAULT_AUDIT_LIMIT, NewUser, UserAuth};

/// The site's own identity, fixed at `invsite init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteMeta {
    pub code: SiteCode,
    pub name: String,
    pub created_at: Timestamp,
}

/// An agent asking to enroll (after the site checked the enrollment secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    pub name: ClientName,
    pub machine_id: String,
    /// The hash of the client key the site just issued; the key itself is never stored.
    pub key_hash: Digest,
    pub now: Timestamp,
    /// The machine's DMI serial and product UUID, when the agent sent usable ones
    /// ([`HardwareId::checked`]): what recognises a reimaged machine.
    pub hardware: Option<HardwareId>,
    /// The agent's version (from its `User-Agent`), when it said.
    pub agent_version: Option<String>,
}

/// The result of an enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub client_id: Uuid,
    /// True when this machine already held the name and kept its client id.
    pub reenrolled: bool,
    /// When the enrollment took over the record of an existing client of this machine (another
    /// name, or another machine id on the same hardware): what it took over. The one place a
    /// caller learns of a merge, so the one place to record it (the audit trail).
    pub merged: Option<Merged>,
}

/// An enrollment that took an existing client's record over ([`Store::set_merge_duplicates`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The client's name before (the same as the new one for a reimaged machine enrolling
    /// under its old name).
    pub old_name: ClientName,
    /// Its machine id before (another one when matched by hardware).
    pub old_machine_id: String,
    pub matched_by: MatchedBy,
}

/// What the site needs to check a client token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    pub client_id: Uuid,
    pub name: ClientName,
    pub key_hash: Digest,
    /// When the client was deleted (`invsite delete`); its key is revoked then too.
    pub deleted_at: Option<Timestamp>,
}

impl ClientAuth {
    /// Whether a key with this hash was revoked: its hash was replaced by zeros, which no key
    /// hashes to.
    pub fn is_revoked(&self) -> bool {
        self.key_hash.0 == [0u8; 32]
    }
}

/// Who a request with a client token turned out to be, when the store checks the token in the
/// same read as the work it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authenticated<T> {
    /// The key matched: the client, and the answer.
    Client(ClientAuth, T),
    /// No client of this site has that id, or the key does not match its key.
    Unknown,
    /// The client's key was revoked (`invsite revoke`).
    Revoked(ClientAuth),
}

impl<T> Authenticated<T> {
    /// The client and the answer when the key matched; otherwise the refusal, to pass on as
    /// the answer to a caller expecting another kind of value.
    pub(crate) fn accepted<U>(self) -> Result<(ClientAuth, T), Authenticated<U>> {
        match self {
            Authenticated::Client(auth, value) => Ok((auth, value)),
            Authenticated::Unknown => Err(Authenticated::Unknown),
            Authenticated::Revoked(auth) => Err(Authenticated::Revoked(auth)),
        }
    }
}

/// Checks a presented key's hash against a client's stored credentials.
pub fn authenticate(auth: Option<ClientAuth>, key_hash: &Digest) -> Authenticated<()> {
    match auth {
        None => Authenticated::Unknown,
        Some(a) if a.is_revoked() => Authenticated::Revoked(a),
        Some(a) if a.key_hash.ct_eq(key_hash) => Authenticated::Client(a, ()),
        Some(_) => Authenticated::Unknown,
    }
}

pub use invsync_proto::wire::{HistoryEntry, HistoryQuery};

/// The state of a child's outbox, as it reports it to its parent (`SiteStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxStats {
    /// Changes accepted and not yet acknowledged by the parent.
    pub depth: i64,
    /// When the oldest of them was accepted.
    pub oldest: Option<Timestamp>,
    /// When the parent last acknowledged forwarded changes.
    pub last_forwarded: Option<Timestamp>,
}

/// How long (milliseconds) a routed request waits after it was handed to a child before it is
/// handed over again, until the report that completes it comes back up: the answer that carried
/// it may have been lost, and a child takes a request it already holds as a no-op.
pub const REDELIVER_AFTER_MS: i64 = 30_000;

/// What became of a resync request the parent routed down ([`Store::accept_down_request`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownAccepted {
    /// Queued for this site's own client `client` as request `id`; `created` is false when the
    /// same request (same origin) arrived before.
    Queued {
        id: i64,
        client: ClientName,
        created: bool,
    },
    /// The client is owned by `route`, a site below this one: queued as routed request `id`
    /// here, to go one level further down with the next forward batch from that branch.
    Relayed {
        id: i64,
        route: SiteCode,
        created: bool,
    },
    /// This site's own client, but the site does not accept requests from its parent.
    NotAccepted,
    /// No client with that id at this site or below it.
    UnknownClient,
    /// A request this site cannot take, for the reason given; nothing was stored.
    Refused(String),
}

/// What a file-share check-in (an `.inv` file, with or without a report) tells the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapCheckin {
    pub machine_id: String,
    /// When the agent wrote the file, by its clock.
    pub seen_at: Timestamp,
    /// Instruction (request) ids the agent has received from its `.cfg`.
    pub seen: Vec<i64>,
    /// Event request ids the agent has acted on.
    pub done_events: Vec<i64>,
}

/// What [`Store::import_unmanaged`] did: the client the inventory went to, whether that record
/// was created by this import, and what became of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub client_id: Uuid,
    pub created: bool,
    pub ack: ReportAck,
}

/// Where [`Store::import_unmanaged`] stores an inventory: the record's name and machine id.
#[derive(Debug, Clone)]
pub(crate) struct ImportTo {
    pub name: ClientName,
    pub machine_id: String,
}

/// How many history entries a query without a limit returns.
pub const DEFAULT_HISTORY_LIMIT: usize = 1_000;

/// The inventory database of one site. Cloning is cheap and every clone is the same store;
/// the database is closed when the last clone is dropped (after the writes already sent).
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
    /// Whether the database takes writes, from the outcome of every write (`health`).
    health: Arc<health::WriteHealth>,
    /// How long a request waits to be picked up before it expires, in milliseconds
    /// ([`Store::set_request_expiry`]); none (`i64::MAX`) until it is set.
    request_expiry: Window,
    /// Whether an enrollment of a known machine takes its record over
    /// ([`Store::set_merge_duplicates`]); on until the site says otherwise.
    merge_duplicates: Arc<std::sync::atomic::AtomicBool>,
    /// The oldest agent version that is not flagged ([`Store::set_min_agent_version`]).
    min_agent_version: Arc<std::sync::RwLock<Option<AgentVersion>>>,
    /// The agent version last recorded per client id, so that a check-in writes only when its
    /// agent's version changed ([`Store::note_agent_version`]).
    agent_versions: Arc<std::sync::Mutex<std::collections::HashMap<Uuid, String>>>,
    /// How long a client may go unseen before it is stale, in milliseconds
    /// ([`Store::set_stale_after`]); [`DEFAULT_STALE_AFTER`] until it is set.
    stale_after: Window,
}

/// A period the site sets while it runs (`invsite config`), in milliseconds, and the cutoff
/// time it gives: what happened before `now` minus the period is older than it.
#[derive(Clone)]
struct Window(Arc<std::sync::atomic::AtomicI64>);

impl Window {
    fn new(ms: i64) -> Window {
        Window(Arc::new(std::sync::atomic::AtomicI64::new(ms)))
    }

    fn set(&self, period: std::time::Duration) {
        let ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX);
        self.0.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn cutoff(&self, now: Timestamp) -> i64 {
        now.0
            .saturating_sub(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// How long a client may go unseen before it counts as stale, unless the site says otherwise
/// (`invsite config --stale-after`): 30 days.
pub const DEFAULT_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// How long a request waits to be picked up before it expires, unless the site says otherwise
/// (`invsite config --request-expiry`): 30 days. The site sets it on the store it opens; a
/// store nobody set it on lets requests wait for ever.
pub const DEFAULT_REQUEST_EXPIRY: std::time::Duration =
    std::time::Duration::from_secs(30 * 24 * 3600);

enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// A write through [`dispatch!`] whose outcome the store's write health records:
/// `write_op!(self, "operation", b => b.call().await)`.
/// `write_op!(self, "operation", if |value| wrote, b => …)` when a success may have written
/// nothing (see `WriteHealth::record`).
macro_rules! write_op {
    ($store:ident, $op:literal, $b:ident => $call:expr) => {
        write_op!($store, $op, if |_| true, $b => $call)
    };
    ($store:ident, $op:literal, if $wrote:expr, $b:ident => $call:expr) => {{
        let result = dispatch!($store, $b => $call);
        $store.health.record($op, result, $wrote)
    }};
}

/// Runs the same call on whichever backend the store has: `dispatch!(self, b => b.call().await)`.
macro_rules! dispatch {
    ($store:ident, $b:ident => $call:expr) => {
        match &*$store.backend {
            Backend::Sqlite($b) => $call,
            Backend::Postgres($b) => $call,
        }
    };
}

/// A read written once in `exec` for both backends, run in one read transaction (a
/// REPEATABLE READ one in PostgreSQL) so that what it reads belongs together:
/// `view!(self, |e, b| exec::read(e, &b.site.code, &b.last_seen))`, where `e` is the executor
/// and `b` the backend's state. What the call names is moved to SQLite's reading thread, so it
/// must be owned.
macro_rules! view {
    ($store:ident, |$e:ident, $b:ident| $call:expr) => {
        in_transaction!($store, view, read_only_snapshot, |$e, $b| $call)
    };
}

/// What [`view!`] and [`change_all!`] share: `$call` through SQLite's `$lite` job (its reading
/// thread, or its writer, where each job is a savepoint), or in the PostgreSQL transaction
/// `$pg` opens, committed only when the call succeeds.
macro_rules! in_transaction {
    ($store:ident, $lite:ident, $pg:ident, |$e:ident, $b:ident| $call:expr) => {
        match &*$store.backend {
            Backend::Sqlite(s) => s.$lite(move |$e, $b| sqlite::ready($call)).await,
            Backend::Postgres($b) => {
                let mut tx = $b.$pg().await?;
                let $e = &mut *tx;
                let out = $call.await?;
                tx.commit().await?;
                Ok(out)
            }
        }
    };
}

/// A write written once in `exec` for both backends that must be all or nothing: through
/// SQLite's writer (each job is its own savepoint, undone when it fails), or as one PostgreSQL
/// transaction, committed only when the call succeeds.
macro_rules! change_all {
    ($store:ident, |$e:ident, $b:ident| $call:expr) => {
        in_transaction!($store, change, begin, |$e, $b| $call)
    };
}

/// A write written once in `exec` for both backends, as [`view!`] names it: through SQLite's
/// writer, or on a pooled PostgreSQL connection (each statement its own transaction).
macro_rules! change {
    ($store:ident, |$e:ident, $b:ident| $call:expr) => {
        match &*$store.backend {
            Backend::Sqlite(s) => s.change(move |$e, $b| sqlite::ready($call)).await,
            Backend::Postgres($b) => {
                let $e = &mut *$b.conn().await?;
                $call.await
            }
        }
    };
}

impl Store {
    fn new(backend: Backend) -> Store {
        Store {
            backend: Arc::new(backend),
            health: Arc::default(),
            // No expiry until the site sets its own (`set_request_expiry`).
            request_expiry: Window::new(i64::MAX),
            merge_duplicates: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            min_agent_version: Arc::default(),
            agent_versions: Arc::default(),
            stale_after: Window::new(DEFAULT_STALE_AFTER.as_millis() as i64),
        }
    }

    /// Why the database refuses writes, when the last write it was given failed and none has
    /// succeeded since; `None` while it takes them. `/healthz` answers 503 with it.
    pub fn write_failure(&self) -> Option<WriteFailure> {
        self.health.failure()
    }

    /// How many writes the database refused since the store was opened
    /// (`invsite_store_write_errors_total`).
    pub fn write_errors_total(&self) -> u64 {
        self.health.errors_total()
    }

    /// Writes a consistent copy of the whole database to `to`, a file that must not exist yet,
    /// while the site goes on serving (SQLite's `VACUUM INTO`: one read transaction, so the
    /// copy is the database as of one moment). A PostgreSQL site is backed up with
    /// PostgreSQL's own tools (`pg_dump`): [`StoreError::Refused`] says so.
    pub async fn backup_to(&self, to: &Path) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sqlite(b) => b.backup_to(to).await,
            Backend::Postgres(_) => Err(StoreError::Refused(
                "this site's database is PostgreSQL: back it up with pg_dump (see the README)"
                    .to_string(),
            )),
        }
    }

    /// A tiny write (the time, in the site's `meta` table), so that a site nobody writes to
    /// still learns whether it could, and an unwritable one learns that it can again.
    pub async fn probe_write(&self, now: Timestamp) -> Result<(), StoreError> {
        write_op!(self, "probe", b => b.probe_write(now).await)
    }

    /// Creates a new SQLite database at `path` for the site `meta`; refuses if the file exists.
    pub async fn create_sqlite(path: &Path, meta: &SiteMeta) -> Result<Store, StoreError> {
        let s = sqlite::SqliteStore::create(path, meta).await?;
        Ok(Store::new(Backend::Sqlite(s)))
    }

    /// Opens an existing SQLite database, migrating its schema if it is older; refuses if there
    /// is no file at `path`.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        let s = sqlite::SqliteStore::open(path).await?;
        Ok(Store::new(Backend::Sqlite(s)))
    }

    /// Creates the schema of a new site in an existing PostgreSQL database (or in the schema
    /// its URL selects through `options=-c search_path=…`). Refuses
    /// ([`StoreError::PgNotEmpty`]) a database that already holds invsync tables, and says
    /// why a URL does not connect ([`StoreError::PgConnect`], without the password).
    pub async fn create_postgres(url: &str, meta: &SiteMeta) -> Result<Store, StoreError> {
        let s = postgres::PgStore::create(url, meta).await?;
        Ok(Store::new(Backend::Postgres(s)))
    }

    /// Opens a site's PostgreSQL database, migrating its schema if it is older; refuses
    /// ([`StoreError::PgNotInvsync`]) a database without an invsync schema.
    pub async fn open_postgres(url: &str) -> Result<Store, StoreError> {
        let s = postgres::PgStore::open(url).await?;
        Ok(Store::new(Backend::Postgres(s)))
    }

    /// Which database is behind this store: `"sqlite"` or `"postgresql"`.
    pub fn backend_name(&self) -> &'static str {
        match &*self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgresql",
        }
    }

    /// Writes what the store holds in memory (last-seen times, which it otherwise writes about
    /// once a second), so that other processes see it; a stopping site calls it last.
    pub async fn flush(&self) -> Result<(), StoreError> {
        write_op!(self, "flush", if |_| false, b => b.flush().await)
    }

    /// Lets SQLite's writer wait up to `linger` for more writes before it commits a small group,
    /// for a bulk import whose writes come from a few busy tasks (`invsite cap-sync`): fewer,
    /// larger commits, each write still durable before it is acknowledged, each acknowledged up
    /// to `linger` later. A server answering agents leaves it at zero. PostgreSQL: no effect.
    pub fn set_commit_linger(&self, linger: std::time::Duration) {
        if let Backend::Sqlite(s) = &*self.backend {
            s.set_commit_linger(linger);
        }
    }

    /// Loads into the item cache the items of the current snapshots of these clients of the
    /// site (by name, both classes), so that the reports a bulk import is about to plan find their
    /// snapshots' items in memory: a one-shot `invsite cap-sync` starts with an empty cache, and
    /// loading each report's missing items one report at a time (a lookup per item, each
    /// decoded and hashed) was a fifth of its time. Here they are read once, in id order, with
    /// the ids the cache already holds skipped. Only a cache is filled, so a client unknown
    /// here or a snapshot changed meanwhile costs nothing but the read. PostgreSQL: no effect
    /// (its plans prefetch each report's items in one batched read already).
    pub async fn warm_item_cache(&self, clients: Vec<ClientName>) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.warm_item_cache(clients).await,
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// The site this database belongs to.
    pub async fn site(&self) -> Result<SiteMeta, StoreError> {
        Ok(dispatch!(self, b => b.site()))
    }

    /// Enrolls a client: a free name gets a new client id; the same machine (same machine id)
    /// enrolling again under its name keeps its id and gets the new key; another machine asking
    /// for a taken name is refused with [`StoreError::NameTaken`].
    ///
    /// With merging on ([`Store::set_merge_duplicates`], the default), an enrollment under a
    /// free name whose machine id is a client's of this site, or, when no client has that
    /// machine id, whose DMI serial and product UUID are one client's, takes that client's
    /// record over: same client id, history and requests, the new name and key, the old name
    /// recorded ([`Enrolled::merged`]); a name held by a client of the same hardware is taken
    /// over likewise (a reimaged machine keeping its name). A name held by another machine is
    /// still refused. In one transaction, so a failed enrollment changes nothing.
    pub async fn enroll(&self, e: &Enrollment) -> Result<Enrolled, StoreError> {
        let en = e.clone();
        let merge = self
            .merge_duplicates
            .load(std::sync::atomic::Ordering::Relaxed);
        let enrolled = change_all!(self, |e, b| exec::enroll(e, &b.site.code, &en, merge));
        let enrolled = self.health.record("enroll", enrolled, |_| true)?;
        if let Some(v) = &e.agent_version {
            self.remember_agent_version(enrolled.client_id, v);
        }
        tracing::debug!(client_id = %enrolled.client_id, reenrolled = enrolled.reenrolled, "Enrolled a client.");
        Ok(enrolled)
    }

    /// Whether an enrollment of a machine this site already holds a client of takes that
    /// record over (`invsite config --merge-duplicates`, on by default) or, off, gets a record
    /// of its own, as before: see [`Store::enroll`].
    pub fn set_merge_duplicates(&self, on: bool) {
        self.merge_duplicates
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Agents older than `min` are flagged (`agent_outdated`) in client lists and views
    /// (`invsite config --min-agent-version`); `None` flags none.
    pub fn set_min_agent_version(&self, min: Option<AgentVersion>) {
        *self
            .min_agent_version
            .write()
            .unwrap_or_else(|e| e.into_inner()) = min;
    }

    /// Whether a client's agent version is older than the minimum the site set. A version
    /// that does not parse (an agent of another make) is not judged.
    fn outdated(&self, version: Option<&str>) -> bool {
        let min = self
            .min_agent_version
            .read()
            .unwrap_or_else(|e| e.into_inner());
        match (
            min.as_ref(),
            version.and_then(AgentVersion::from_user_agent),
        ) {
            (Some(min), Some(v)) => &v < min,
            _ => false,
        }
    }

    /// Sets `agent_outdated` of a list's clients.
    fn flag_outdated(&self, clients: &mut [ClientSummary]) {
        for c in clients {
            c.agent_outdated = self.outdated(c.agent_version.as_deref());
        }
    }

    fn remember_agent_version(&self, client_id: Uuid, version: &str) {
        let mut known = self
            .agent_versions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        known.insert(client_id, version.to_string());
    }

    /// Records the agent version a client of this site presented (its `User-Agent`), writing
    /// only when it differs from the one last recorded: check-ins are the site's most frequent
    /// request and must not each write a row. The first check-in of each client after the site
    /// starts reads the stored version once.
    pub async fn note_agent_version(
        &self,
        client_id: Uuid,
        version: &str,
    ) -> Result<(), StoreError> {
        let known = self
            .agent_versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&client_id)
            .cloned();
        if known.as_deref() == Some(version) {
            return Ok(());
        }
        if known.is_none() {
            let stored = view!(self, |e, _b| exec::agent_version(e, client_id))?;
            if stored.as_deref() == Some(version) {
                self.remember_agent_version(client_id, version);
                return Ok(());
            }
        }
        let v = version.to_string();
        let result = change!(self, |e, _b| exec::set_agent_version(e, client_id, &v));
        self.health.record("agent_version", result, |_| true)?;
        self.remember_agent_version(client_id, version);
        tracing::debug!(%client_id, version, "Recorded a client's agent version.");
        Ok(())
    }

    /// The name and key hash of a client of this site, if the id is known. A client forwarded by
    /// a child belongs to another site and never authenticates here: `None`.
    pub async fn client_auth(&self, client_id: Uuid) -> Result<Option<ClientAuth>, StoreError> {
        dispatch!(self, b => b.client_auth(client_id).await)
    }

    /// A client's check-in: every request of the client not yet complete, oldest first (marked
    /// picked up now where they were not), and the version and hash the site holds per class.
    /// The client's last-seen time becomes `now` (written within about a second).
    pub async fn checkin(
        &self,
        client_id: Uuid,
        now: Timestamp,
    ) -> Result<CheckinResponse, StoreError> {
        let cutoff = self.expiry_cutoff(now);
        write_op!(self, "checkin", if |_| false, b => b.checkin(client_id, now, cutoff).await)
    }

    /// A check-in by whoever presents `key_hash` as the key of `client_id`: the same as
    /// Whose key `key_hash` is, looked up on its own: for a request the store does no other
    /// work for, or one refused before that work (the key is still checked first).
    pub async fn authenticate_key(
        &self,
        client_id: Uuid,
        key_hash: &Digest,
    ) -> Result<Authenticated<()>, StoreError> {
        Ok(authenticate(self.client_auth(client_id).await?, key_hash))
    }

    /// [`Store::checkin`] once the key matches, with the credentials read in the same read
    /// transaction (a check-in is the site's most frequent request, and a separate read for the
    /// credentials cost a fifth of it). Nothing is done for an unknown id, a wrong key or a
    /// revoked key.
    pub async fn checkin_with_key(
        &self,
        client_id: Uuid,
        key_hash: &Digest,
        now: Timestamp,
    ) -> Result<Authenticated<CheckinResponse>, StoreError> {
        let cutoff = self.expiry_cutoff(now);
        let result = async {
            match &*self.backend {
                Backend::Sqlite(b) => b.checkin_with_key(client_id, key_hash, now, cutoff).await,
                Backend::Postgres(b) => {
                    match self.authenticate_key(client_id, key_hash).await?.accepted() {
                        Ok((auth, ())) => Ok(Authenticated::Client(
                            auth,
                            b.checkin(client_id, now, cutoff).await?,
                        )),
                        Err(refused) => Ok(refused),
                    }
                }
            }
        };
        self.health.record("checkin", result.await, |_| false)
    }

    /// Stores a report (SPEC section 5), all in one transaction:
    /// * a report id accepted before → `Duplicate` with the current version and hash;
    /// * a full report whose items do not hash to its hash → `Err(BadReport)`;
    /// * a full report → the new snapshot, version + 1, history of the differences (none for
    ///   the first), and this client's resync requests for this class it answers complete;
    /// * a delta → applied only against the current version and only if the result has the
    ///   reported hash, else `ResyncRequired` saying which check failed.
    ///
    /// Nothing is stored unless the answer is `Accepted`. When forwarding is on, an accepted
    /// report is also appended to the outbox in the same transaction, as accepted (full or
    /// delta, with the resulting version, hash and times and the requests it completed).
    ///
    /// Only this site's own clients report here: another site's client is `UnknownClient`.
    pub async fn store_report(
        &self,
        client_id: Uuid,
        report: &Report,
        now: Timestamp,
    ) -> Result<ReportAck, StoreError> {
        let input = plan::ReportInput::prepare(report)?;
        let result = async {
            match &*self.backend {
                Backend::Sqlite(b) => match b.store_input(client_id, None, input, now).await? {
                    Authenticated::Client(_, ack) => Ok(ack),
                    // Without a key to check, the backend refuses nothing but an unknown client.
                    Authenticated::Unknown | Authenticated::Revoked(_) => {
                        Err(StoreError::UnknownClient {
                            name: client_id.to_string(),
                        })
                    }
                },
                Backend::Postgres(b) => b.store_input(client_id, input, now).await,
            }
        };
        self.health.record("report", result.await, |ack| {
            matches!(ack, ReportAck::Accepted { .. })
        })
    }

    /// [`Store::store_report`] for a report whose items were prepared as they were read (the
    /// site's path: see [`PreparedItems`]), stored only when `key_hash` is the client's key.
    /// The key is checked first, so a caller without it learns nothing of what is wrong with
    /// its report; on SQLite it is checked in the same read as the report's plan.
    pub async fn store_incoming_with_key(
        &self,
        client_id: Uuid,
        key_hash: &Digest,
        report: IncomingReport,
        now: Timestamp,
    ) -> Result<Authenticated<ReportAck>, StoreError> {
        self.store_incoming(client_id, key_hash, report, None, now)
            .await
    }

    /// [`Store::store_incoming_with_key`], with the guard a file-share report needs: for a full
    /// report with `not_past: Some(v)`, when the class's stored version is already greater than
    /// `v` the report is stale (an old file put back in the directory, or one the agent also
    /// sent over HTTP), nothing is stored, and the answer is `ReportAck::ResyncRequired` saying
    /// so. The report-id de-duplication comes first (an exact re-import of an accepted report is
    /// `Duplicate`, not stale). Deltas ignore `not_past` (their base version guards them). The
    /// check is made where the report is planned against the snapshot it is written over, in the
    /// same transaction (PostgreSQL) or writer step (SQLite) as the write, so two `cap-sync`
    /// processes importing at once cannot both pass it.
    pub async fn store_incoming_guarded(
        &self,
        client_id: Uuid,
        key_hash: &Digest,
        report: IncomingReport,
        not_past: Option<i64>,
        now: Timestamp,
    ) -> Result<Authenticated<ReportAck>, StoreError> {
        self.store_incoming(client_id, key_hash, report, not_past, now)
            .await
    }

    async fn store_incoming(
        &self,
        client_id: Uuid,
        key_hash: &Digest,
        report: IncomingReport,
        not_past: Option<i64>,
        now: Timestamp,
    ) -> Result<Authenticated<ReportAck>, StoreError> {
        let input = match plan::ReportInput::from_incoming(report) {
            Ok(input) => plan::ReportInput { not_past, ..input },
            Err(e) => {
                return match self.authenticate_key(client_id, key_hash).await?.accepted() {
                    Ok((_, ())) => Err(e),
                    Err(refused) => Ok(refused),
                };
            }
        };
        let result = async {
            match &*self.backend {
                Backend::Sqlite(b) => b.store_input(client_id, Some(*key_hash), input, now).await,
                Backend::Postgres(b) => {
                    match self.authenticate_key(client_id, key_hash).await?.accepted() {
                        Ok((auth, ())) => Ok(Authenticated::Client(
                            auth,
                            b.store_input(client_id, input, now).await?,
                        )),
                        Err(refused) => Ok(refused),
                    }
                }
            }
        };
        self.health.record("report", result.await, |found| {
            matches!(found, Authenticated::Client(_, ReportAck::Accepted { .. }))
        })
    }

    // -----------------------------------------------------------------------------------------
    // The file-share CAP (issue 18): clients that reach the site through a directory

    /// This site's clients whose transport is `cap`, by name: (client id, name).
    pub async fn cap_clients(&self) -> Result<Vec<(Uuid, ClientName)>, StoreError> {
        view!(self, |e, b| exec::cap_clients(e, &b.site.code))
    }

    /// What a check-in of this own client would answer (open instructions oldest first, the
    /// version and hash per class; the agent interval is the site's to add, as for
    /// [`Store::checkin`], which leaves it `None`), WITHOUT marking anything picked up and
    /// without touching last_seen: `invsite cap-sync` writes it into the client's `.cfg`, which
    /// the agent may never read. `None` when the id is not a client of this site.
    pub async fn cfg_view(&self, client_id: Uuid) -> Result<Option<CheckinResponse>, StoreError> {
        let cutoff = self.expiry_cutoff(Timestamp::now());
        match &*self.backend {
            // A few point reads: on the calling thread (`cap-sync` makes one per client).
            Backend::Sqlite(s) => s.view_inline(|e, b| {
                sqlite::ready(exec::cfg_view(e, &b.site.code, client_id, cutoff))
            }),
            Backend::Postgres(_) => view!(self, |e, b| exec::cfg_view(
                e,
                &b.site.code,
                client_id,
                cutoff
            )),
        }
    }

    /// Records a file-share check-in of an own client, in one transaction: transport becomes
    /// cap, machine_id is set when the stored one is empty (a client enrolled offline),
    /// last_seen = max(stored last_seen, min(seen_at, now)) (so an old file put back changes
    /// nothing and a clock ahead cannot put last_seen in the future), the requests in `seen`
    /// that belong to this client and are not yet picked up are marked picked up at `now` (ids
    /// of other clients are ignored), and the event requests in `done_events` of this client
    /// are completed (as [`Store::complete_events`]). Unknown client:
    /// [`StoreError::UnknownClient`]. On SQLite a check-in that changes nothing but the
    /// last-seen time records it in memory, written within about a second or at
    /// [`Store::flush`], as an HTTP check-in's is.
    pub async fn cap_checkin(
        &self,
        client_id: Uuid,
        c: &CapCheckin,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        // Most check-ins (every delta's file carries one) change only the last-seen time,
        // which SQLite's store keeps in memory and writes about once a second, as for HTTP
        // check-ins; a write each would double the writer's work for a run of deltas.
        if let Backend::Sqlite(s) = &*self.backend
            && s.cap_seen_only(client_id, c, now)?
        {
            return Ok(());
        }
        let c = c.clone();
        let result = change_all!(self, |e, b| exec::cap_checkin(
            e,
            &b.site.code,
            client_id,
            &c,
            now
        ));
        self.health.record("cap_checkin", result, |_| true)
    }

    /// `invsite offline-enroll`: creates a client of this site named `name` with transport
    /// cap, an empty machine id (filled in by its first [`Store::cap_checkin`]) and this key
    /// hash. A name already held (by any client of this site) is refused with
    /// [`StoreError::NameTaken`] (the same error enroll gives), and nothing changes.
    pub async fn enroll_offline(
        &self,
        name: &ClientName,
        key_hash: &Digest,
        now: Timestamp,
    ) -> Result<Enrolled, StoreError> {
        let (n, key) = (name.clone(), *key_hash);
        let result = change!(self, |e, b| exec::enroll_offline(
            e,
            &b.site.code,
            &n,
            &key,
            now
        ));
        let enrolled = self.health.record("enroll_offline", result, |_| true)?;
        tracing::info!(client_id = %enrolled.client_id, name = %name, "Enrolled a client offline.");
        Ok(enrolled)
    }

    /// `invsite import`: one class of inventory from a machine that was never enrolled. The
    /// record for `name` on this site is created with transport imported, the machine id and a
    /// key hash of 32 zero bytes (no key authenticates it), or, when `name` is already an
    /// imported record, updated (its machine id becomes this one); when `name` is held by an
    /// enrolled client with the SAME machine id, the report is stored for that client (its
    /// transport unchanged); when held by a client with another machine id:
    /// [`StoreError::NameTaken`], nothing stored. The report (a full report built by the
    /// caller, with a fresh report id and the file's hash) is stored like any full report
    /// (hash checked first: `BadReport` on mismatch, nothing created; history; forwarding to
    /// the parent when on), in the same transaction as the record. The client's last-seen
    /// time is left as it is: the site did not see the machine.
    pub async fn import_unmanaged(
        &self,
        name: &ClientName,
        machine_id: &str,
        report: &Report,
        now: Timestamp,
    ) -> Result<Imported, StoreError> {
        if machine_id.trim().is_empty() {
            // An empty machine id would match every client enrolled offline that has not
            // delivered a file yet, and no enrolling agent could ever take the record over.
            return Err(StoreError::Refused(format!(
                "the inventory for {name} names no machine id; take it again with \
                 `invagent inventory` on the machine itself"
            )));
        }
        let input = plan::ReportInput::prepare(report)?;
        if !input.is_full() {
            return Err(StoreError::BadReport(
                "an imported inventory must be a full report, not a delta".to_string(),
            ));
        }
        let target = ImportTo {
            name: name.clone(),
            machine_id: machine_id.to_string(),
        };
        let result = dispatch!(self, b => b.import_unmanaged(target, input, now).await);
        let imported = self.health.record("import", result, |i: &Imported| {
            i.created || matches!(i.ack, ReportAck::Accepted { .. })
        })?;
        tracing::info!(client_id = %imported.client_id, name = %name, created = imported.created, "Imported an inventory of an unmanaged machine.");
        Ok(imported)
    }

    /// Marks this client's event requests with these ids complete; other ids are ignored.
    pub async fn complete_events(
        &self,
        client_id: Uuid,
        ids: &[i64],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.to_vec();
        let result = change!(self, |e, b| async {
            let client = exec::own_client_row(&mut *e, &b.site.code, client_id).await?;
            let client = client.ok_or_else(|| rows::unknown_id(client_id))?;
            exec::complete_events(e, client, &ids, now).await
        });
        self.health.record("complete_events", result, |_| true)
    }

    /// Makes an own client's key useless at once (its hash becomes one no key has). The
    /// client's inventory stays; enrolling again (with the enrollment secret) issues a new key.
    pub async fn revoke(&self, name: &ClientName) -> Result<(), StoreError> {
        let n = name.clone();
        let found = change!(self, |e, b| exec::revoke(e, &b.site.code, &n));
        let found = self.health.record("revoke", found, |_| true)?;
        match found {
            true => Ok(()),
            false => Err(StoreError::UnknownClient {
                name: name.to_string(),
            }),
        }
    }

    /// Queues a resync request for a client of this site, or returns the identical request
    /// still pending (`created = false`).
    pub async fn request_resync(
        &self,
        name: &ClientName,
        class: Class,
        now: Timestamp,
    ) -> Result<Queued, StoreError> {
        let kind = invsync_proto::wire::InstructionKind::Resync { class };
        self.queue("request_resync", name, kind, now).await
    }

    /// Queues a client event, or returns the identical event still pending (`created = false`).
    pub async fn request_event(
        &self,
        name: &ClientName,
        event: Event,
        now: Timestamp,
    ) -> Result<Queued, StoreError> {
        let kind = invsync_proto::wire::InstructionKind::Event { event };
        self.queue("request_event", name, kind, now).await
    }

    /// Queues a request of `kind` unless an identical one is pending.
    async fn queue(
        &self,
        operation: &'static str,
        name: &ClientName,
        kind: invsync_proto::wire::InstructionKind,
        now: Timestamp,
    ) -> Result<Queued, StoreError> {
        let n = name.clone();
        let cutoff = self.expiry_cutoff(now);
        let result = change!(self, |e, b| exec::queue_request(
            e,
            &b.site.code,
            &n,
            &kind,
            now,
            cutoff
        ));
        let queued = self
            .health
            .record(operation, result, |q: &Queued| q.created)?;
        let (kind, arg) = rows::kind_and_arg(&kind);
        tracing::debug!(client = %queued.client, kind, arg, id = queued.id, created = queued.created, "Queued a request.");
        Ok(queued)
    }

    /// Every client this site holds, its own and those of the sites below it (`site` is the
    /// owner), sorted by name and then site. `pending_requests` counts requests and events not
    /// yet complete, leaving out cancelled and expired requests (which no agent receives).
    pub async fn clients(&self) -> Result<Vec<ClientSummary>, StoreError> {
        let cutoff = self.expiry_cutoff(Timestamp::now());
        let before = self.stale_cutoff(Timestamp::now());
        let mut clients = view!(self, |e, b| exec::clients(
            e,
            &b.last_seen,
            cutoff,
            &rows::StaleRule {
                own: b.site.code.clone(),
                before
            }
        ))?;
        self.flag_outdated(&mut clients);
        Ok(clients)
    }

    /// The clients (of this site and the sites below it) having the package `q.name`, in
    /// the version range if one is given: one page of rows, one per client and installed
    /// version and architecture, sorted by client name then version. Answered from the
    /// in-memory software index (see the `software` module), built first if it is not.
    pub async fn software(&self, q: &SoftwareQuery) -> Result<SoftwarePage, StoreError> {
        dispatch!(self, b => b.software(q).await)
    }

    /// Every package some client has (whose name contains `q.search`), sorted by name, with
    /// how many clients have it and each of its versions.
    pub async fn packages(&self, q: &PackageQuery) -> Result<PackagePage, StoreError> {
        dispatch!(self, b => b.packages(q).await)
    }

    /// Starts building the in-memory software index in the background, unless it is built or
    /// being built, so that the first software query need not wait for it. `invsite serve`
    /// calls this when it starts; without it the first software query starts the build.
    pub fn warm_software_index(&self) {
        dispatch!(self, b => b.warm_software_index())
    }

    /// One page of the clients this site holds (its own and those of the sites below it),
    /// filtered, sorted and counted in the database with indexes, so a page of a site with
    /// 100,000 clients costs milliseconds (see `tests/contract.rs`). A query with a limit
    /// outside 1..=1000 is refused ([`StoreError::Refused`]).
    ///
    /// Sorting by `last_seen` uses the times written to the database: a check-in's time is
    /// held in memory and written within about a second, so that order may be up to a second
    /// stale, while the `last_seen` shown on the page includes the time held in memory.
    pub async fn clients_page(&self, q: &ClientQuery) -> Result<ClientPage, StoreError> {
        if let Some(problem) = q.problem() {
            return Err(StoreError::Refused(problem));
        }
        if q.stale.is_some() {
            // The filter runs in SQL, on the stored last-seen times: the check-ins of the last
            // second are written first, or a client that just checked in would be listed as
            // stale while its row (with the time laid over) says it is not.
            self.flush().await?;
        }
        let q = q.clone();
        let cutoff = self.expiry_cutoff(Timestamp::now());
        let before = self.stale_cutoff(Timestamp::now());
        let mut page = view!(self, |e, b| exec::clients_page(
            e,
            &q,
            &b.last_seen,
            cutoff,
            &rows::StaleRule {
                own: b.site.code.clone(),
                before
            }
        ))?;
        self.flag_outdated(&mut page.clients);
        Ok(page)
    }

    /// One page of the resync requests of every client this site holds, newest first, with
    /// each one's client, filtered by state and class, and how many match in all. A query with
    /// a limit outside 1..=1000 is refused ([`StoreError::Refused`]).
    pub async fn requests_page(&self, q: &RequestQuery) -> Result<RequestPage, StoreError> {
        if let Some(problem) = q.problem() {
            return Err(StoreError::Refused(problem));
        }
        let q = q.clone();
        let cutoff = self.expiry_cutoff(Timestamp::now());
        view!(self, |e, _b| exec::requests_page(e, &q, cutoff))
    }

    /// One client of this site with its snapshots and its latest 50 requests and 50 events,
    /// newest first.
    pub async fn client_view(&self, name: &ClientName) -> Result<Option<ClientView>, StoreError> {
        self.client_view_of(rows::ClientKey::Name(name.clone()))
            .await
    }

    /// A client's item changes, newest first, at most `limit`; `None` for an unknown client.
    pub async fn history(
        &self,
        name: &ClientName,
        limit: usize,
    ) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
        let query = HistoryQuery {
            limit: Some(limit),
            ..HistoryQuery::default()
        };
        self.history_query(name, &query).await
    }

    /// A client's history filtered by class and time, newest first; `None` for an unknown
    /// client. Without a limit, at most [`DEFAULT_HISTORY_LIMIT`] entries.
    pub async fn history_query(
        &self,
        name: &ClientName,
        query: &HistoryQuery,
    ) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
        self.history_of(rows::ClientKey::Name(name.clone()), query)
            .await
    }

    /// A resync request by id; `None` for an unknown id or an event's id.
    pub async fn request_state(&self, id: i64) -> Result<Option<RequestView>, StoreError> {
        let mut view = view!(self, |e, _b| exec::request_state(e, id))?;
        if let Some(v) = &mut view {
            rows::expire(v, self.expiry_cutoff(Timestamp::now()));
        }
        Ok(view)
    }

    /// Sets how long a request may wait to be picked up (`invsite config --request-expiry`);
    /// one not picked up in that time reads as `expired` and is no longer handed to its agent.
    pub fn set_request_expiry(&self, expiry: std::time::Duration) {
        self.request_expiry.set(expiry);
    }

    /// Requests made before this time, and not picked up, have expired at `now`.
    fn expiry_cutoff(&self, now: Timestamp) -> i64 {
        self.request_expiry.cutoff(now)
    }

    /// Cancels a resync request that is still pending, so its agent never receives it. Cancelling
    /// a cancelled (or expired) request answers it again with `already_cancelled`. Refused: a
    /// request already picked up or complete ([`StoreError::NotCancellable`]: it completes as
    /// usual), one routed down to a site below ([`StoreError::OtherSite`]: the owning site holds
    /// it), an unknown id ([`StoreError::UnknownRequest`]).
    pub async fn cancel_request(
        &self,
        id: i64,
        now: Timestamp,
    ) -> Result<invsync_proto::wire::Cancelled, StoreError> {
        let cutoff = self.expiry_cutoff(now);
        let result = change!(self, |e, _b| exec::cancel_request(e, id, now, cutoff));
        let answer = self.health.record(
            "cancel_request",
            result,
            |c: &invsync_proto::wire::Cancelled| !c.already_cancelled,
        )?;
        tracing::debug!(id, client = %answer.client, already = answer.already_cancelled, "Cancelled a request.");
        Ok(answer)
    }

    /// Every client of that name at this site and below it, sorted by owner code, with the
    /// owner's URL where the owner announced one (`None` for this site's own client).
    pub async fn find_clients(&self, name: &ClientName) -> Result<Vec<Owner>, StoreError> {
        dispatch!(self, b => b.find_clients(name).await)
    }

    /// Any client this site holds (its own or one of a site below it) by client id, as
    /// [`Store::client_view`] shows it.
    pub async fn client_view_by_id(&self, id: Uuid) -> Result<Option<ClientView>, StoreError> {
        self.client_view_of(rows::ClientKey::Id(id)).await
    }

    /// The history of any client this site holds by client id, as [`Store::history_query`].
    pub async fn history_by_id(
        &self,
        id: Uuid,
        query: &HistoryQuery,
    ) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
        self.history_of(rows::ClientKey::Id(id), query).await
    }

    async fn client_view_of(&self, key: rows::ClientKey) -> Result<Option<ClientView>, StoreError> {
        let mut view = view!(self, |e, b| exec::client_view(
            e,
            &b.site.code,
            &key,
            &b.last_seen
        ))?;
        let cutoff = self.expiry_cutoff(Timestamp::now());
        for r in view.iter_mut().flat_map(|v| v.requests.iter_mut()) {
            rows::expire(r, cutoff);
        }
        if let Some(v) = &mut view {
            v.agent_outdated = self.outdated(v.agent_version.as_deref());
            let rule = rows::StaleRule {
                own: self.site().await?.code,
                before: self.stale_cutoff(Timestamp::now()),
            };
            v.stale = rule.is_stale(&v.site, v.last_seen.unwrap_or(v.enrolled_at).0);
        }
        Ok(view)
    }

    // -----------------------------------------------------------------------------------------
    // The client lifecycle (issue 20): delete, stale, retention (see `lifecycle`)

    /// Sets how long a client may go unseen before it is stale (`invsite config --stale-after`).
    pub fn set_stale_after(&self, after: std::time::Duration) {
        self.stale_after.set(after);
    }

    /// Clients last seen (or, never seen, enrolled) before this time are stale at `now`.
    fn stale_cutoff(&self, now: Timestamp) -> i64 {
        self.stale_after.cutoff(now)
    }

    /// Deletes this site's client `name` at `now`, in one transaction: its key is revoked, its
    /// snapshots (and its packages in the software index), requests and outbox entries go, and,
    /// when the site forwards, a tombstone entry tells the sites above to forget it. Its row
    /// stays, with its history, until the retention pruner removes both; the name is free for a
    /// new enrollment at once. No live client of that name at this site:
    /// [`StoreError::UnknownClient`] (whether another site owns one is the caller's to say).
    pub async fn delete_client(
        &self,
        name: &ClientName,
        now: Timestamp,
    ) -> Result<invsync_proto::wire::Deleted, StoreError> {
        let n = name.clone();
        let deleted = write_op!(self, "delete_client", b => b.delete_client(n, now).await)?;
        tracing::info!(client = %deleted.client, client_id = %deleted.id, "Deleted a client.");
        Ok(deleted)
    }

    /// Applies a tombstone (`entry.deleted`) forwarded by the direct child `via`: the client is
    /// forgotten here as at its owner (its row kept with its history, as
    /// [`Store::delete_client`] keeps it), and the tombstone goes on up when this site forwards.
    /// The owner must be reached through `via`, as for any forwarded change (else `Refused`); a
    /// client this site never held is `Applied` with nothing to do, one already forgotten is
    /// `Duplicate`. An entry that is not a tombstone is refused.
    pub async fn apply_tombstone<B>(
        &self,
        via: &SiteCode,
        entry: &invsync_proto::wire::ForwardedOf<B>,
        now: Timestamp,
    ) -> Result<ForwardOutcome, StoreError> {
        let meta = hierarchy::meta_of(entry);
        let Some(deleted_at) = entry.deleted else {
            return Ok(meta.refused("not a tombstone".to_string()));
        };
        let via = via.clone();
        write_op!(self, "apply_tombstone", if |o: &ForwardOutcome| matches!(o, ForwardOutcome::Applied { .. }), b => b.apply_tombstone(via, meta, deleted_at, now).await)
    }

    /// The deleted clients once named `name` that this site still holds (until the retention
    /// pruner removes them), the latest deletion first, each with its history as `query`
    /// selects it; empty when there are none.
    pub async fn deleted_history(
        &self,
        name: &ClientName,
        query: &HistoryQuery,
    ) -> Result<Vec<DeletedHistory>, StoreError> {
        let (name, query) = (name.clone(), query.clone());
        view!(self, |e, _b| lifecycle::deleted_history(e, &name, &query))
    }

    /// Up to `limit` names of this site's own clients stale at `now` (`--delete-after` deletes
    /// them), oldest enrollment first.
    pub async fn stale_clients(
        &self,
        older_than: std::time::Duration,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<ClientName>, StoreError> {
        // On the stored times: the last second's check-ins are written first, so a client
        // that just checked in is never deleted as unseen.
        self.flush().await?;
        let before = now
            .0
            .saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        view!(self, |e, b| lifecycle::stale_names(
            e,
            &b.site.code,
            before,
            limit
        ))
    }

    /// How many of this site's own clients are stale now (`invsite_clients_stale`).
    pub async fn stale_count(&self) -> Result<i64, StoreError> {
        let before = self.stale_cutoff(Timestamp::now());
        view!(self, |e, b| lifecycle::stale_count(e, &b.site.code, before))
    }

    /// One batch of the retention pruner: deletes at most `limit` rows of `table` older than
    /// `cutoff` (the oldest first) in one short write, and says how many went. The pruner calls
    /// it until a batch deletes fewer than `limit`, so no write waits behind a long one.
    pub async fn prune(
        &self,
        table: Retained,
        cutoff: Timestamp,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let result = change!(self, |e, _b| lifecycle::prune(e, table, cutoff.0, limit));
        self.health.record("prune", result, |n: &u64| *n > 0)
    }

    async fn history_of(
        &self,
        key: rows::ClientKey,
        query: &HistoryQuery,
    ) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
        let query = query.clone();
        view!(self, |e, b| exec::history(e, &b.site.code, &key, &query))
    }

    // -----------------------------------------------------------------------------------------
    // Administrators with roles and the audit trail (issue 20, items 6 and 7; `users`)

    /// Adds a user with the hash of its token's key; [`StoreError::UserExists`] when the name
    /// is taken.
    pub async fn add_user(&self, user: &NewUser) -> Result<UserView, StoreError> {
        let u = user.clone();
        let result = change!(self, |e, _b| users::add_user(e, &u));
        self.health.record("add_user", result, |_| true)
    }

    /// Gives a user a new token (the old one stops working at once). Without
    /// `user.lifetime_ms` and with `keep_lifetime`, the new token works as long as the old one
    /// did when it was issued. [`StoreError::UnknownUser`] for an unknown name.
    pub async fn rotate_user(
        &self,
        user: &NewUser,
        keep_lifetime: bool,
    ) -> Result<UserView, StoreError> {
        let u = user.clone();
        let result = change!(self, |e, _b| users::rotate_user(e, &u, keep_lifetime));
        self.health.record("rotate_user", result, |_| true)
    }

    /// Removes a user: its token stops working at once. Its audit entries stay.
    pub async fn remove_user(&self, name: &UserName) -> Result<(), StoreError> {
        let n = name.clone();
        let result = change!(self, |e, _b| users::remove_user(e, &n));
        self.health.record("remove_user", result, |_| true)
    }

    /// Every user, sorted by name (`expired` as of `now`).
    pub async fn users(&self, now: Timestamp) -> Result<Vec<UserView>, StoreError> {
        view!(self, |e, _b| users::users(e, now))
    }

    /// A user's role, key hash and expiry, to check a presented token against.
    pub async fn user_auth(&self, name: &UserName) -> Result<Option<UserAuth>, StoreError> {
        let n = name.clone();
        view!(self, |e, _b| users::user_auth(e, &n))
    }

    /// Appends an audit entry for something done at this site; its number. Entries are never
    /// changed; only the retention pruning removes them ([`Store::prune`] with
    /// [`Retained::Audit`]).
    pub async fn record_audit(&self, record: &AuditRecord) -> Result<i64, StoreError> {
        let r = record.clone();
        let result = change!(self, |e, b| users::record_audit(e, &b.site.code, &r));
        self.health.record("record_audit", result, |_| true)
    }

    /// Appends audit entries a child (`from`) forwarded up, each keeping the site it was done
    /// at; an entry already held (same child, same number there) is skipped. How many were
    /// new.
    pub async fn record_forwarded_audit(
        &self,
        from: &SiteCode,
        entries: &[AuditEntry],
    ) -> Result<u64, StoreError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let (f, list) = (from.clone(), entries.to_vec());
        let result = change_all!(self, |e, _b| users::record_forwarded_audit(e, &f, &list));
        self.health
            .record("record_forwarded_audit", result, |n: &u64| *n > 0)
    }

    /// The audit entries matching `q`, newest first (at most [`DEFAULT_AUDIT_LIMIT`] without
    /// a limit). A limit outside 1..=1000 is refused ([`StoreError::Refused`]).
    pub async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        if let Some(problem) = q.problem() {
            return Err(StoreError::Refused(problem));
        }
        let q = q.clone();
        view!(self, |e, _b| users::audit(e, &q))
    }

    /// The audit entries the parent has not acknowledged yet, oldest first, at most `limit`: a
    /// child sends them with each forward batch.
    pub async fn audit_to_forward(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        view!(self, |e, _b| async move {
            let after = users::audit_forwarded(&mut *e).await?;
            users::audit_after(e, after, limit).await
        })
    }

    /// Records that the parent holds every audit entry up to number `upto`.
    pub async fn audit_forwarded_upto(&self, upto: i64) -> Result<(), StoreError> {
        let result = change!(self, |e, _b| users::set_audit_forwarded(e, upto));
        self.health.record("audit_forwarded", result, |_| true)
    }

    // -----------------------------------------------------------------------------------------
    // Hierarchy (SPEC section 6): a child's outbox

    /// Turns forwarding to a parent on or off (persisted). While on, every change this site
    /// accepts is also appended to the outbox. Turning it off leaves the outbox as it is.
    pub async fn set_forwarding(&self, on: bool) -> Result<(), StoreError> {
        write_op!(self, "set_forwarding", b => b.set_forwarding(on).await)
    }

    /// Whether accepted changes go into the outbox.
    pub async fn forwarding(&self) -> Result<bool, StoreError> {
        dispatch!(self, b => b.forwarding().await)
    }

    /// The oldest `limit` outbox entries, oldest first; `seq` is the entry's sequence number,
    /// which grows and is never reused.
    pub async fn outbox_batch(&self, limit: usize) -> Result<Vec<Forwarded>, StoreError> {
        dispatch!(self, b => b.outbox_batch(limit).await)
    }

    /// Removes the entries the parent acknowledged (unknown numbers are ignored) and, when
    /// there are any, records `now` as the last forwarding time. `stored` are the entries the
    /// parent stored (applied, or held already): the resync requests they completed get
    /// `forwarded_at` = `now` and `forwarded_to` = `parent` (the parent's code, when this site
    /// knows it), once. `refused` entries leave without that mark: the parent stored nothing.
    pub async fn outbox_done(
        &self,
        stored: &[i64],
        refused: &[i64],
        parent: Option<&SiteCode>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let acked = hierarchy::Acked {
            stored: stored.to_vec(),
            refused: refused.to_vec(),
            parent: parent.cloned(),
            now,
        };
        write_op!(self, "outbox_done", if |_| !stored.is_empty() || !refused.is_empty(), b => b.outbox_done(acked).await)
    }

    /// Atomically drops every outbox entry of this client and class and appends one full entry
    /// built from the current snapshot (carrying the completed requests of the dropped
    /// entries). Nothing happens when this site holds no such snapshot.
    pub async fn outbox_resync(&self, client: Uuid, class: Class) -> Result<(), StoreError> {
        write_op!(self, "outbox_resync", if |_| false, b => b.outbox_resync(client, class).await)
    }

    /// The outbox's depth, its oldest entry's time and the last forwarding time.
    pub async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        dispatch!(self, b => b.outbox_stats().await)
    }

    // -----------------------------------------------------------------------------------------
    // Hierarchy: a parent's children and the sites below it

    /// Records the key hash of a child's token, replacing any earlier one for that code.
    /// Refuses ([`StoreError::CodeInUse`]) this site's own code and a code already recorded as
    /// a site reached through another child.
    pub async fn set_child_token(
        &self,
        code: &SiteCode,
        key_hash: Digest,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let code = code.clone();
        let token = hierarchy::ChildToken {
            code,
            key_hash,
            now,
        };
        write_op!(self, "set_child_token", b => b.set_child_token(token).await)
    }

    /// The key hash of a child's token, if one was issued for that code.
    pub async fn child_key_hash(&self, code: &SiteCode) -> Result<Option<Digest>, StoreError> {
        dispatch!(self, b => b.child_key_hash(code).await)
    }

    /// Records the statuses a direct child `via` reported (its own and those of the sites below
    /// it), each as reached through `via`. All or nothing: a status with this site's own code,
    /// with a code reached through another child, or with the code of another direct child is
    /// refused with [`StoreError::CodeInUse`] and nothing of the call is stored.
    pub async fn record_site_status(
        &self,
        via: &SiteCode,
        statuses: &[SiteStatus],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let report = hierarchy::SiteReport {
            via: via.clone(),
            statuses: statuses.to_vec(),
            now,
        };
        write_op!(self, "record_site_status", b => b.record_site_status(report).await)
    }

    /// Every site known below this one, as it last reported itself, sorted by code.
    pub async fn sites(&self) -> Result<Vec<SiteStatus>, StoreError> {
        dispatch!(self, b => b.sites().await)
    }

    /// The direct child through which `code` is reached (the code itself for a child); `None`
    /// for a code not known below this site.
    pub async fn site_via(&self, code: &SiteCode) -> Result<Option<SiteCode>, StoreError> {
        dispatch!(self, b => b.site_via(code).await)
    }

    /// Applies one change forwarded by the direct child `via`, in one transaction:
    /// * the owner (`entry.client.site`) must be `via` or a site recorded below it, never this
    ///   site, and a known client id must keep its owner; else `Refused`;
    /// * a full body whose items do not hash to `entry.hash` is `Refused`;
    /// * the version and hash already held → `Duplicate`;
    /// * a delta not against the version held, or not giving `entry.hash` → `ResyncRequired`;
    /// * otherwise the client is created or updated (a stale client of another id with the
    ///   same owner and name is removed), the snapshot stored with the owner's version and
    ///   times, history recorded, the completed requests recorded, and, when forwarding is on,
    ///   the change appended to this site's outbox: `Applied`.
    ///
    /// A completed request whose origin is this site (a routed request made here) completes
    /// that request with the owner's times; one whose origin a routed request here holds (routed
    /// on through this site) completes that one; any other is recorded as a complete request of
    /// the client once per origin (`<owner>:<id>` when it has none).
    ///
    /// Only `Applied` stores anything.
    pub async fn apply_forwarded(
        &self,
        via: &SiteCode,
        entry: &Forwarded,
        now: Timestamp,
    ) -> Result<ForwardOutcome, StoreError> {
        let jobs = vec![hierarchy::job_of(entry)?];
        let outcome = write_op!(self, "apply_forwarded", if |o: &Vec<ForwardOutcome>| o.iter().any(|o| matches!(o, ForwardOutcome::Applied { .. })), b => b.apply_forwarded_jobs(via, jobs, now).await)?;
        Ok(outcome
            .into_iter()
            .next()
            .unwrap_or(ForwardOutcome::Refused {
                seq: entry.seq,
                reason: "internal error: no outcome".to_string(),
            }))
    }

    // -----------------------------------------------------------------------------------------
    // Hierarchy: resync requests routed down the tree (`invsync --via-child`)

    /// Queues a resync request for a client of a site below this one (by client id), to be
    /// routed down to its owner: a request with `routed_to` the owner, pending until the full
    /// report that completes it at the owner is forwarded up, which completes it here (see
    /// [`Store::apply_forwarded`]). An identical routed request still pending stands for both
    /// (`created = false`). Whether the owner accepts requests from its parent is the caller's
    /// to check. This site's own client is refused ([`StoreError::Refused`]); an unknown id is
    /// `UnknownClient`.
    pub async fn queue_routed_request(
        &self,
        client_id: Uuid,
        class: Class,
        now: Timestamp,
    ) -> Result<Queued, StoreError> {
        let route = hierarchy::RouteDown {
            client: client_id,
            class,
            now,
        };
        write_op!(self, "queue_routed_request", if |q: &Queued| q.created, b => b.queue_routed_request(route).await)
    }

    /// The routed requests to hand to the direct child `via` in the answer to its forward
    /// batch: every routed request not yet complete whose owner is `via` or a site recorded
    /// below it, and that was not delivered in the last [`REDELIVER_AFTER_MS`]. Each is marked
    /// delivered at `now`. A request made here travels with this site's code and its id here;
    /// one routed on through here keeps the origin it came with.
    pub async fn deliver_routed_requests(
        &self,
        via: &SiteCode,
        now: Timestamp,
    ) -> Result<Vec<DownRequest>, StoreError> {
        write_op!(self, "deliver_routed_requests", if |d: &Vec<DownRequest>| !d.is_empty(), b => b.deliver_routed_requests(hierarchy::Delivery::new(via, now)).await)
    }

    /// What the answer to a forward batch of the child `via` tells it of the requests completed
    /// below it: how far up the tree their changes travelled since it was last told (the
    /// parent of this site that stored them and the sites above it; `top` once the top of the
    /// tree did, which this site is when it has no parent). Each is told once. Read first
    /// without writing, since most batches (heartbeats) have nothing to tell.
    pub async fn deliver_hops(&self, via: &SiteCode) -> Result<Vec<HopReport>, StoreError> {
        let v = via.clone();
        let due = view!(self, |e, _b| hierarchy::hops_due(e, &v))?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let v = via.clone();
        let result = change_all!(self, |e, _b| hierarchy::deliver_hops(e, &v));
        self.health
            .record("deliver_hops", result, |d: &Vec<HopReport>| !d.is_empty())
    }

    /// Records what the parent's answer said of requests completed here or below: how far up
    /// their changes travelled above the parent (see [`Store::deliver_hops`]), passed on in turn
    /// to the child a request came through. Reports naming no request here change nothing.
    pub async fn record_hops(&self, reports: &[HopReport]) -> Result<(), StoreError> {
        if reports.is_empty() {
            return Ok(());
        }
        let r = reports.to_vec();
        let result = change_all!(self, |e, b| hierarchy::record_hops(e, &b.site.code, &r));
        let found = self.health.record("record_hops", result, |_| true)?;
        tracing::debug!(
            reports = reports.len(),
            found,
            "Recorded how far up requests travelled."
        );
        Ok(())
    }

    /// Takes in a request the parent routed down, once per origin (a re-delivery answers with
    /// `created = false` and changes nothing):
    /// * this site's own client, with `accept_own` → a resync request queued for its agent,
    ///   carrying the origin, so that the full report answering it tells the sites above;
    /// * this site's own client without `accept_own` → `NotAccepted`, nothing stored;
    /// * a client of a site below → a routed request here with the same origin (`Relayed`);
    /// * an unknown client → `UnknownClient`, nothing stored.
    pub async fn accept_down_request(
        &self,
        req: &DownRequest,
        accept_own: bool,
        now: Timestamp,
    ) -> Result<DownAccepted, StoreError> {
        let take = hierarchy::TakeDown {
            req: req.clone(),
            accept_own,
            now,
        };
        write_op!(self, "accept_down_request", if |_| false, b => b.accept_down_request(take).await)
    }

    /// Applies a batch of changes forwarded by `via`, in order, with the rules and outcomes of
    /// [`Store::apply_forwarded`] (one outcome per entry, in the same order). The changes are
    /// handed to the writer together, so they share group commits: applying them one call at a
    /// time costs one commit each, which bounds a parent to about a thousand forwarded changes a
    /// second per child. Every change is its own savepoint; an `Err` means some of the batch may
    /// be stored, and sending it again is safe (those answer `Duplicate`).
    pub async fn apply_forwarded_batch(
        &self,
        via: &SiteCode,
        entries: &[Forwarded],
        now: Timestamp,
    ) -> Result<Vec<ForwardOutcome>, StoreError> {
        let jobs = entries
            .iter()
            .map(hierarchy::job_of)
            .collect::<Result<Vec<_>, _>>()?;
        self.apply_forwarded_jobs(via, jobs, now).await
    }

    /// [`Store::apply_forwarded_batch`] for changes whose items were prepared as they were read
    /// (the site's path, as [`Store::store_incoming_with_key`] is for reports): each body is
    /// prepared once, straight from the request.
    pub async fn apply_incoming_forwarded_batch(
        &self,
        via: &SiteCode,
        entries: Vec<IncomingForwarded>,
        now: Timestamp,
    ) -> Result<Vec<ForwardOutcome>, StoreError> {
        let jobs = entries
            .into_iter()
            .map(hierarchy::incoming_job)
            .collect::<Result<Vec<_>, _>>()?;
        self.apply_forwarded_jobs(via, jobs, now).await
    }

    async fn apply_forwarded_jobs(
        &self,
        via: &SiteCode,
        jobs: Vec<hierarchy::ForwardInput>,
        now: Timestamp,
    ) -> Result<Vec<ForwardOutcome>, StoreError> {
        write_op!(self, "apply_forwarded_batch", if |o: &Vec<ForwardOutcome>| o.iter().any(|o| matches!(o, ForwardOutcome::Applied { .. })), b => b.apply_forwarded_jobs(via, jobs, now).await)
    }

    /// How many clients this site owns itself (not those of the sites below it).
    pub async fn own_clients(&self) -> Result<i64, StoreError> {
        dispatch!(self, b => b.own_clients().await)
    }
}
