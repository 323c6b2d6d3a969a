//! Writing `Clidata.box/<CLIENT>.cfg` for a client of a CAP directory: what a network check-in
//! would answer (read without marking anything picked up: the agent has not seen it yet), the
//! reports of the client refused into `bad/`, signed with the site's key.
//!
//! A file is rewritten only when what it says changed, so a run over thousands of quiet
//! clients writes nothing, and an agent sees a new `issued_at` only when there is something
//! new. Ed25519 signatures are deterministic, so "unchanged" is decided by re-signing the
//! file's own payload and comparing bytes: equal bytes are this site's file, unaltered. When a
//! file must be written, `issued_at` still grows past a valid previous one even if the site's
//! clock stepped back, because agents ignore a `.cfg` not newer than the last they acted on.
//! The file work (a read, a signature, a write and a swap of names: tens of microseconds) runs
//! on the calling task, as the rest of an import's file work does: `cap-sync` runs a task per
//! client on every worker, and a hand-off to a blocking thread and back cost more than it.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use invsync_proto::offline::cfg::{CFG_FORMAT, Cfg, MAX_CFG_BYTES, Refused};
use invsync_proto::offline::cfg_file_name;
use invsync_proto::offline::sign::SiteKey;
use invsync_proto::wire::CheckinResponse;
use invsync_proto::{ClientName, SiteCode, Timestamp};
use invsync_store::Store;
use uuid::Uuid;

use super::SyncError;
use super::dir::{CapDir, replace_file};

/// What writing one client's `.cfg` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Written,
    Unchanged,
    /// The client is no longer one of this site's.
    Gone,
}

/// What a `.cfg` needs besides the store.
pub struct CfgContext {
    pub key: Arc<SiteKey>,
    pub site: SiteCode,
    pub agent_interval_secs: Option<u64>,
}

/// Writes the client's `.cfg` if what it says changed.
pub async fn write(
    ctx: &Arc<CfgContext>,
    store: &Store,
    dir: &CapDir,
    client_id: Uuid,
    client: ClientName,
    refused: Vec<Refused>,
    now: Timestamp,
) -> Result<Written, SyncError> {
    let Some(mut checkin) = store.cfg_view(client_id).await? else {
        return Ok(Written::Gone);
    };
    checkin.agent_interval_secs = ctx.agent_interval_secs;
    let path = dir.clidata.join(cfg_file_name(&client));
    let cfg = Cfg {
        format: CFG_FORMAT,
        site: ctx.site.clone(),
        client,
        client_id,
        issued_at: now,
        checkin,
        refused,
    };
    write_file(&ctx.key, &path, cfg)
}

/// The file part of [`write`]: `cfg` is what the file should say, issued now.
fn write_file(key: &SiteKey, path: &Path, mut cfg: Cfg) -> Result<Written, SyncError> {
    if let Some(bytes) = read_bounded(path) {
        let peeked = Cfg::peek_unverified(&bytes);
        if let Some(previous) = &peeked
            && same_content(previous, &cfg)
        {
            let mut again = cfg.clone();
            again.issued_at = previous.issued_at;
            if again.encode(key) == bytes {
                return Ok(Written::Unchanged);
            }
        }
        // Only a valid previous file may hold the time back: an altered one could otherwise
        // push every later `.cfg` into the future. A file that says it was issued before now
        // cannot hold it back whatever its signature, so the signature is checked (a few tens
        // of microseconds per client) only when the site's clock seems to have stepped back.
        let earlier = peeked.is_some_and(|p| p.issued_at < cfg.issued_at);
        if !earlier
            && let Ok(previous) = Cfg::decode(&bytes, &key.public(), cfg.client_id)
            && previous.issued_at >= cfg.issued_at
        {
            cfg.issued_at = Timestamp(previous.issued_at.0 + 1);
        }
    }
    replace_file(path, &cfg.encode(key))
        .map_err(|e| SyncError::Dir(format!("cannot write {}: {e}", path.display())))?;
    Ok(Written::Written)
}

/// Whether two `.cfg` payloads say the same thing (their issue time aside).
fn same_content(a: &Cfg, b: &Cfg) -> bool {
    let say = |c: &Cfg| -> (
        u32,
        SiteCode,
        ClientName,
        Uuid,
        CheckinResponse,
        Vec<Refused>,
    ) {
        (
            c.format,
            c.site.clone(),
            c.client.clone(),
            c.client_id,
            c.checkin.clone(),
            c.refused.clone(),
        )
    };
    say(a) == say(b)
}

/// A regular file's bytes (not through a symlink), when it is small enough to be a `.cfg`.
fn read_bounded(path: &Path) -> Option<Vec<u8>> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_CFG_BYTES {
        return None;
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_CFG_BYTES).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn cfg(now: i64) -> Cfg {
        Cfg {
            format: CFG_FORMAT,
            site: SiteCode::parse("S01").unwrap(),
            client: ClientName::parse("PLC01").unwrap(),
            client_id: Uuid::from_u128(1),
            issued_at: Timestamp(now),
            checkin: CheckinResponse::default(),
            refused: vec![],
        }
    }

    #[test]
    fn an_unchanged_file_is_left_and_issue_times_only_grow() {
        let tmp = tempfile::tempdir().unwrap();
        let (key, _) = SiteKey::generate().unwrap();
        let path = tmp.path().join("PLC01.cfg");
        assert_eq!(
            write_file(&key, &path, cfg(1_000)).unwrap(),
            Written::Written
        );
        let first = fs::read(&path).unwrap();
        assert_eq!(
            write_file(&key, &path, cfg(2_000)).unwrap(),
            Written::Unchanged
        );
        assert_eq!(fs::read(&path).unwrap(), first);

        // A change written with a clock that stepped back still issues later than the last.
        let mut changed = cfg(500);
        changed.refused.push(Refused {
            report_id: Uuid::from_u128(9),
            reason: "stale".into(),
        });
        assert_eq!(write_file(&key, &path, changed).unwrap(), Written::Written);
        let now =
            Cfg::decode(&fs::read(&path).unwrap(), &key.public(), Uuid::from_u128(1)).unwrap();
        assert_eq!(now.issued_at, Timestamp(1_001));

        // Same content with a forged signature is rewritten, and its time is not trusted.
        let mut forged = fs::read(&path).unwrap();
        let at = forged.len() - 10;
        forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
        let mut future = Cfg::peek_unverified(&forged).unwrap();
        future.issued_at = Timestamp(9_999_999);
        let (other, _) = SiteKey::generate().unwrap();
        fs::write(&path, future.encode(&other)).unwrap();
        let mut same = cfg(3_000);
        same.refused = now.refused.clone();
        assert_eq!(write_file(&key, &path, same).unwrap(), Written::Written);
        let after =
            Cfg::decode(&fs::read(&path).unwrap(), &key.public(), Uuid::from_u128(1)).unwrap();
        assert_eq!(after.issued_at, Timestamp(3_000));
    }
}
