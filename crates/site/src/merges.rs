//! What the site does when an enrollment took an existing client's record over (a renamed or
//! reimaged machine, `invsite config --merge-duplicates`): the store made the change and says
//! so in [`Enrolled::merged`]; this is the one place every enrollment path reports it, so that
//! what else a merge must leave behind (a log line and an audit record) is written once.

use std::net::IpAddr;

use invsync_proto::ClientName;
use invsync_proto::wire::{AuditAction, Role};
use invsync_store::{Enrolled, Store};

use crate::audit::{self, Actor, Principal};

/// Reports an enrollment of `name` through `path` (`http`) from `peer` if it took a record
/// over. The audit's actor is the enrolling agent (`agent:<new name>`: it proved the
/// enrollment secret, not a user's token); the target is the client under its new name.
pub async fn enrolled(
    store: &Store,
    name: &ClientName,
    enrolled: &Enrolled,
    path: &str,
    peer: Option<IpAddr>,
) {
    let Some(m) = &enrolled.merged else {
        return;
    };
    let actor = Actor {
        principal: Principal {
            name: format!("agent:{name}"),
            role: Role::Viewer,
            user: None,
        },
        address: peer,
    };
    audit::record(
        store,
        &actor,
        AuditAction::Merge,
        Some(name.to_string()),
        Some(format!(
            "took over the record of {} (client id {}), matched by {}",
            m.old_name,
            enrolled.client_id,
            m.matched_by.as_str()
        )),
    )
    .await;
    tracing::info!(
        client = %name,
        id = %enrolled.client_id,
        old_name = %m.old_name,
        old_machine_id = %m.old_machine_id,
        matched_by = m.matched_by.as_str(),
        path,
        "An enrollment took over the record of the same machine."
    );
}
