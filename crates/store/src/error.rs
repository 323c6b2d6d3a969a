//! The errors of the store. Each variant is a distinct answer the site gives: a refusal an
//! agent, administrator or other site can act on (name taken, unknown client, bad report, a
//! site code already in use in the tree), a problem with the database file at create/open, or
//! an internal failure the site reports as a 500 without showing its text to the caller.
//! Errors that name a PostgreSQL URL show it without its password.

use std::path::PathBuf;

use invsync_proto::ClientName;
use uuid::Uuid;

/// Why a store operation did not do what was asked.
///
/// It is `Clone` because one failed group commit answers every caller of that group with the
/// same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another machine holds this name in this site.
    #[error(
        "client name {name} is taken by another machine (client id {holder_id}, machine id {holder_machine_id})"
    )]
    NameTaken {
        name: ClientName,
        holder_id: Uuid,
        holder_machine_id: String,
    },
    /// No client of this site has this name (or this id).
    #[error("unknown client {name}")]
    UnknownClient { name: String },
    /// No resync request of this id at this site.
    #[error("no request {id} at this site")]
    UnknownRequest { id: i64 },
    /// A request that can no longer be cancelled (picked up, complete or expired); the text
    /// says which and what becomes of it.
    #[error("{0}")]
    NotCancellable(String),
    /// A request that only another site can act on (one routed down to the client's owning
    /// site); the text names that site and what to run there.
    #[error("{0}")]
    OtherSite(String),
    /// The report contradicts itself (for example, a full report whose hash does not match its
    /// items); nothing was stored.
    #[error("bad report: {0}")]
    BadReport(String),
    /// A user of this name exists already (`invsite user add`).
    #[error("user {0} exists already; `invsite user rotate {0}` issues a new token")]
    UserExists(String),
    /// No user of this name at this site.
    #[error("unknown user {0}; `invsite user list` lists them")]
    UnknownUser(String),
    /// A site code cannot be given to a child or recorded for a site below this one because the
    /// tree already uses it: it is this site's own code, or a site reached through another
    /// child. The text names the code and where it is in use.
    #[error("site code already in use: {0}")]
    CodeInUse(String),
    /// A request from another site that this site will not carry out, for the reason given
    /// (for refusals that are not about a site code).
    #[error("refused: {0}")]
    Refused(String),
    /// `create` found a file where the new database should go.
    #[error("{} already exists; refusing to create a database over it", .0.display())]
    AlreadyExists(PathBuf),
    /// `open` found no database file.
    #[error("no database at {}", .0.display())]
    NotFound(PathBuf),
    /// `create_postgres` found invsync tables in the database (a site, or what is left of one).
    /// The URL is shown without its password.
    #[error(
        "the PostgreSQL database {url} already holds invsync tables ({tables}); refusing to create a site in it (use an empty database, or open this one)"
    )]
    PgNotEmpty { url: String, tables: String },
    /// `open_postgres` found no invsync schema in the database.
    #[error("the PostgreSQL database {url} is not an invsync database: {reason}")]
    PgNotInvsync { url: String, reason: String },
    /// The PostgreSQL URL is malformed, or the server cannot be reached or refused the login.
    /// The URL is shown without its password.
    #[error("cannot connect to PostgreSQL at {url}: {reason}")]
    PgConnect { url: String, reason: String },
    /// The writer thread has stopped, so no write can be made durable.
    #[error("the store is closed")]
    Closed,
    /// A write the database refused (disk full, read-only file, PostgreSQL down): the store is
    /// unwritable until a write succeeds again (`health`). Logged once by the store, so the
    /// site answers it with 503 without logging it again.
    #[error("the database refuses writes ({operation}): {error}")]
    Unwritable {
        operation: &'static str,
        error: String,
    },
    /// Anything the database itself reported. The site maps it to a 500 and logs it.
    #[error("database error: {0}")]
    Database(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Database(e.to_string())
    }
}

impl From<rusqlite::types::FromSqlError> for StoreError {
    fn from(e: rusqlite::types::FromSqlError) -> StoreError {
        StoreError::Database(format!("unexpected value in the database: {e}"))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        match e {
            // The pool is closed only when the store is dropped.
            sqlx::Error::PoolClosed => StoreError::Closed,
            other => StoreError::Database(other.to_string()),
        }
    }
}
