//! JSON bodies and paths of the three HTTP APIs a site serves, one module each:
//!
//! * [`cap`]: the **CAP API** (`/cap/v1/…`) that agents talk to, with a client token;
//! * [`admin`]: the **admin API** (`/api/v1/…`) that `invsync`, `setevnt`, the console and other
//!   tools use, with the admin token;
//! * [`roles`]: users, roles and the audit trail of the admin API;
//! * [`site`]: the **site-to-site API** (`/site/v1/…`) a child site forwards to its parent
//!   through, with a child token.
//!
//! Every error response of any of them is an [`ErrorBody`] with a 4xx/5xx status. The types are
//! re-exported here, so `wire::Report` names the same type as `wire::cap::Report`.

use serde::{Deserialize, Serialize};

pub mod admin;
pub mod cap;
pub mod roles;
pub mod site;

pub use admin::*;
pub use cap::*;
pub use roles::*;
pub use site::*;

/// The body of every error response: one sentence a person can act on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}
