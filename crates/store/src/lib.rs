//! The site server's inventory database.
//!
//! [`Store`] is the one interface the site (and the command-line tools that read the database
//! directly) use; it hides which database is behind it. Today that is SQLite, embedded in the
//! site's data directory; a PostgreSQL backend is meant to slot in beside it as another
//! `Backend` variant with its SQL in its own module, and the contract tests in `tests/` run
//! against every backend. The store knows nothing of HTTP.
//!
//! Design in brief (details in the modules):
//! * Writes go to one writer thread that commits them in groups, each write durable before it
//!   is acknowledged (`sqlite::writer`).
//! * Reads run on a pool of read-only connections on blocking threads.
//! * Items are interned once per site and snapshots are compact id lists (`codec`), which keeps
//!   a client with 1,500 packages within the storage budget.
//! * Report handling is planned on reading threads and only checked and written by the writer
//!   (`plan`), with an in-memory item cache (`cache`) so deltas need no per-item queries.

mod cache;
mod codec;
mod error;
mod last_seen;
mod plan;
mod sqlite;

use std::path::Path;
use std::sync::Arc;

use invsync_proto::wire::{
    CheckinResponse, ClientSummary, ClientView, Event, Queued, Report, ReportAck, RequestView,
};
use invsync_proto::{Class, ClientName, Digest, SiteCode, Timestamp};
use uuid::Uuid;

pub use error::StoreError;

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
}

/// The result of an enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enrolled {
    pub client_id: Uuid,
    /// True when this machine already held the name and kept its client id.
    pub reenrolled: bool,
}

/// What the site needs to check a client token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    pub client_id: Uuid,
    pub name: ClientName,
    pub key_hash: Digest,
}

pub use invsync_proto::wire::{HistoryEntry, HistoryQuery};

/// How many history entries a query without a limit returns.
pub const DEFAULT_HISTORY_LIMIT: usize = 1_000;

/// The inventory database of one site. Cloning is cheap and every clone is the same store;
/// the database is closed when the last clone is dropped (after the writes already sent).
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
}

enum Backend {
    Sqlite(sqlite::SqliteStore),
}

impl Store {
    /// Creates a new SQLite database at `path` for the site `meta`; refuses if the file exists.
    pub async fn create_sqlite(path: &Path, meta: &SiteMeta) -> Result<Store, StoreError> {
        let s = sqlite::SqliteStore::create(path, meta).await?;
        Ok(Store {
            backend: Arc::new(Backend::Sqlite(s)),
        })
    }

    /// Opens an existing SQLite database, migrating its schema if it is older; refuses if there
    /// is no file at `path`.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        let s = sqlite::SqliteStore::open(path).await?;
        Ok(Store {
            backend: Arc::new(Backend::Sqlite(s)),
        })
    }

    fn sqlite(&self) -> &sqlite::SqliteStore {
        match &*self.backend {
            Backend::Sqlite(s) => s,
        }
    }

    /// The site this database belongs to.
    pub async fn site(&self) -> Result<SiteMeta, StoreError> {
        Ok(self.sqlite().site())
    }

    /// Enrolls a client: a free name gets a new client id; the same machine (same machine id)
    /// enrolling again under its name keeps its id and gets the new key; another machine asking
    /// for a taken name is refused with [`StoreError::NameTaken`].
    pub async fn enroll(&self, e: &Enrollment) -> Result<Enrolled, StoreError> {
        self.sqlite().enroll(e).await
    }

    /// The name and key hash of a client, if the id is known.
    pub async fn client_auth(&self, client_id: Uuid) -> Result<Option<ClientAuth>, StoreError> {
        self.sqlite().client_auth(client_id).await
    }

    /// A client's check-in: every request of the client not yet complete, oldest first (marked
    /// picked up now where they were not), and the version and hash the site holds per class.
    /// The client's last-seen time becomes `now` (written within about a second).
    pub async fn checkin(
        &self,
        client_id: Uuid,
        now: Timestamp,
    ) -> Result<CheckinResponse, StoreError> {
        self.sqlite().checkin(client_id, now).await
    }

    /// Stores a report (SPEC section 5), all in one transaction:
    /// * a report id accepted before → `Duplicate` with the current version and hash;
    /// * a full report whose items do not hash to its hash → `Err(BadReport)`;
    /// * a full report → the new snapshot, version + 1, history of the differences (none for
    ///   the first), and this client's resync requests for this class it answers complete;
    /// * a delta → applied only against the current version and only if the result has the
    ///   reported hash, else `ResyncRequired` saying which check failed.
    ///
    /// Nothing is stored unless the answer is `Accepted`.
    pub async fn store_report(
        &self,
        client_id: Uuid,
        report: &Report,
        now: Timestamp,
    ) -> Result<ReportAck, StoreError> {
        self.sqlite().store_report(client_id, report, now).await
    }

    /// Marks this client's event requests with these ids complete; other ids are ignored.
    pub async fn complete_events(
        &self,
        client_id: Uuid,
        ids: &[i64],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.sqlite().complete_events(client_id, ids, now).await
    }

    /// Queues a resync request for a client of this site, or returns the identical request
    /// still pending (`created = false`).
    pub async fn request_resync(
        &self,
        name: &ClientName,
        class: Class,
        now: Timestamp,
    ) -> Result<Queued, StoreError> {
        self.sqlite().request_resync(name, class, now).await
    }

    /// Queues a client event, or returns the identical event still pending (`created = false`).
    pub async fn request_event(
        &self,
        name: &ClientName,
        event: Event,
        now: Timestamp,
    ) -> Result<Queued, StoreError> {
        self.sqlite().request_event(name, event, now).await
    }

    /// Every client, sorted by name. `pending_requests` counts requests and events not yet
    /// complete.
    pub async fn clients(&self) -> Result<Vec<ClientSummary>, StoreError> {
        self.sqlite().clients().await
    }

    /// One client of this site with its snapshots and its latest 50 requests and 50 events,
    /// newest first.
    pub async fn client_view(&self, name: &ClientName) -> Result<Option<ClientView>, StoreError> {
        self.sqlite().client_view(name).await
    }

    /// A client's item changes, newest first, at most `limit`; `None` for an unknown client.
    pub async fn history(
        &self,
        name: &ClientName,
        limit: usize,
    ) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
        let query = HistoryQuery { limit: Some(limit), ..HistoryQuery::default() };
        self.sqlite().history(name, &query).await
    }

    /// A client's history filtered by class and time, newest first; `None` for an unknown
    /// client. Without a limit, at most [`DEFAULT_HISTORY_LIMIT`] entries.
    pub async fn history_query(
        &self,
        name: &ClientName,
        query: &HistoryQuery,
    ) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
        self.sqlite().history(name, query).await
    }

    /// A resync request by id; `None` for an unknown id or an event's id.
    pub async fn request_state(&self, id: i64) -> Result<Option<RequestView>, StoreError> {
        self.sqlite().request_state(id).await
    }
}
