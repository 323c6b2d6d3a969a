//! The file-share CAP at the site (issue 18): a directory, shared with agents the site cannot
//! reach over the network, where the site writes each CAP client's signed `.cfg`
//! (`Clidata.box/`) and imports the agents' `.inv` files (`Inventry.box/`) with the checks of
//! the HTTP path. `invsite cap-sync DIR` runs [`sync::run`] once; `invsite serve --cap-dir DIR`
//! runs it in a loop ([`watch`]).
//!
//! `dir` knows the directory (and trusts nothing in it), `import` one file against the store,
//! `cfg` one client's `.cfg`, `sync` a whole run over them. The file formats are
//! `invsync_proto::offline`'s.

pub mod cfg;
pub mod dir;
pub mod import;
pub mod sync;
pub mod watch;

pub use dir::CapDir;
pub use sync::{SyncContext, SyncSummary};

/// Why a run stopped before its end. Files not finished stay where they are for the next run.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The directory cannot be read or written.
    #[error("{0}")]
    Dir(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] invsync_store::StoreError),
}

impl From<dir::DirError> for SyncError {
    fn from(e: dir::DirError) -> SyncError {
        SyncError::Dir(e.0)
    }
}
