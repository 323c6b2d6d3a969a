//! The admin API (`/api/v1/…`): what `invsync`, `setevnt`, the console and other tools call with
//! an API token. Every handler takes the extractor of the role it needs
//! ([`Viewer`](super::auth::Viewer) to read, [`Operator`](super::auth::Operator) to queue or
//! cancel, [`Admin`](super::auth::Admin) to manage users), and every state-changing one records
//! what it did with `crate::audit::record`.

pub mod audit;
pub mod client;
pub mod client_delete;
pub mod clients;
pub mod events;
pub mod history;
pub mod request_cancel;
pub mod request_list;
pub mod request_state;
pub mod requests;
pub mod site;
pub mod sites;
pub mod software;
pub mod users;

use invsync_proto::ClientName;

use super::error::ApiError;

/// Parses a client name from a URL path segment with the one shared rule set.
pub fn client_name(raw: &str) -> Result<ClientName, ApiError> {
    Ok(ClientName::parse(raw)?)
}
