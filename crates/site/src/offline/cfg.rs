//! Writing `Clidata.box/<CLIENT>.cfg` for a client that uses the CAP: what a network check-in
//! would answer (read without marking anything picked up: the agent has not seen it yet), the
//! reports of the client refused into `bad/`, signed with the site's key.
//!
//! A file is rewritten only when what it says changed, so a run over thousands of quiet
//! clients writes nothing, and an agent sees a new `issued_at` only when there is something
//! new. `issued_at` always grows per client, even if the site's clock steps back, because
//! agents ignore a `.cfg` that is not newer than the last one they acted on.

use std::fs;
use std::io::ErrorKind;

use invsync_proto::offline::cfg::{CFG_FORMAT, Cfg, MAX_CFG_BYTES, Refused};
use invsync_proto::offline::cfg_file_name;
use invsync_proto::offline::sign::SiteKey;
use invsync_proto::{ClientName, SiteCode, Timestamp};
use invsync_store::Store;
use uuid::Uuid;

use super::SyncError;
use super::dir::{CapDir, write_atomic};

/// What writing one client's `.cfg` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Written,
    Unchanged,
    /// The client is no longer one of this site's.
    Gone,
}

/// What a `.cfg` needs besides the store.
pub struct CfgContext<'a> {
    pub key: &'a SiteKey,
    pub site: &'a SiteCode,
    pub agent_interval_secs: Option<u64>,
}

/// Writes the client's `.cfg` if what it says changed.
pub async fn write(
    ctx: &CfgContext<'_>,
    store: &Store,
    dir: &CapDir,
    client_id: Uuid,
    client: &ClientName,
    refused: Vec<Refused>,
    now: Timestamp,
) -> Result<Written, SyncError> {
    let Some(mut checkin) = store.cfg_view(client_id).await? else {
        return Ok(Written::Gone);
    };
    checkin.agent_interval_secs = ctx.agent_interval_secs;
    let path = dir.clidata.join(cfg_file_name(client));
    let previous = read_ours(ctx, &path, client_id);
    if let Some(p) = &previous
        && p.checkin == checkin
        && p.refused == refused
        && p.site == *ctx.site
        && p.client == *client
    {
        return Ok(Written::Unchanged);
    }
    let issued_at = match &previous {
        Some(p) if p.issued_at >= now => Timestamp(p.issued_at.0 + 1),
        _ => now,
    };
    let cfg = Cfg {
        format: CFG_FORMAT,
        site: ctx.site.clone(),
        client: client.clone(),
        client_id,
        issued_at,
        checkin,
        refused,
    };
    write_atomic(&path, &cfg.encode(ctx.key))
        .map_err(|e| SyncError::Dir(format!("cannot write {}: {e}", path.display())))?;
    Ok(Written::Written)
}

/// The `.cfg` this site wrote for the client, if the file there is one (anything else is
/// replaced).
fn read_ours(ctx: &CfgContext<'_>, path: &std::path::Path, client_id: Uuid) -> Option<Cfg> {
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_CFG_BYTES {
        return None;
    }
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return None,
        Err(_) => return None,
    };
    Cfg::decode(&bytes, &ctx.key.public(), client_id).ok()
}
