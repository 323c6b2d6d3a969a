//! Types shared by every part of invsync: validated names, the inventory snapshot and its
//! canonical hash, deltas, the JSON bodies of the CAP and admin HTTP APIs, timestamps and the
//! exit codes of SPEC section 7. Only types from this crate cross the wire, so a change here is
//! a change of protocol.

pub mod agent_version;
pub mod exit;
pub mod inventory;
pub mod name;
pub mod offline;
#[cfg(feature = "openapi")]
mod openapi;
pub mod query;
pub mod settings;
pub mod time;
pub mod version;
pub mod wire;

pub use agent_version::AgentVersion;
pub use inventory::{Attrs, Class, Delta, Digest, Items, Snapshot};
pub use name::{ClientName, NameError, SiteCode};
pub use time::Timestamp;
