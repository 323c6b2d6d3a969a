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

/// What the caller knows of a client's `.cfg` before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Nothing: the file is read, and rewritten only if what it says changed.
    Nothing,
    /// This run stored a report of the client, so the file's versions are behind and it is
    /// rewritten without being compared. It is still read when it may hold a later issue time.
    Stale,
}

/// One client's `.cfg` to write.
pub struct CfgOf {
    pub client_id: Uuid,
    pub client: ClientName,
    /// The client's refused reports, newest first.
    pub refused: Vec<Refused>,
    pub known: Known,
}

/// Writes the client's `.cfg` if what it says changed.
pub async fn write(
    ctx: &Arc<CfgContext>,
    store: &Store,
    dir: &CapDir,
    of: CfgOf,
    now: Timestamp,
) -> Result<Written, SyncError> {
    let Some(mut checkin) = store.cfg_view(of.client_id).await? else {
        return Ok(Written::Gone);
    };
    checkin.agent_interval_secs = ctx.agent_interval_secs;
    let path = dir.clidata.join(cfg_file_name(&of.client));
    let cfg = Cfg {
        format: CFG_FORMAT,
        site: ctx.site.clone(),
        client: of.client,
        client_id: of.client_id,
        issued_at: now,
        checkin,
        refused: of.refused,
    };
    write_file(&ctx.key, &path, cfg, of.known)
}

/// The file part of [`write`]: `cfg` is what the file should say, issued now.
fn write_file(
    key: &SiteKey,
    path: &Path,
    mut cfg: Cfg,
    known: Known,
) -> Result<Written, SyncError> {
    // A file last modified before this run's time was issued before it (the site writes a
    // `.cfg` after taking its issue time, on the same clock), so it can neither hold the time
    // back nor, when it is stale, say what the new one says: one `lstat` instead of a read and
    // a parse per client. A file whose time was set back by hand only makes the agent wait
    // for its clock to pass the old issue time; its signature is what it cannot forge.
    let skip_read = known == Known::Stale && modified_before(path, cfg.issued_at);
    if let Some(bytes) = (!skip_read).then(|| read_bounded(path)).flatten() {
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

/// Whether `path` is missing, or was last modified before `t` (milliseconds).
fn modified_before(path: &Path, t: Timestamp) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return true;
    };
    meta.modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .is_some_and(|d| (d.as_millis() as i64) < t.0)
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
            write_file(&key, &path, cfg(1_000), Known::Nothing).unwrap(),
            Written::Written
        );
        let first = fs::read(&path).unwrap();
        assert_eq!(
            write_file(&key, &path, cfg(2_000), Known::Nothing).unwrap(),
            Written::Unchanged
        );
        assert_eq!(fs::read(&path).unwrap(), first);

        // A change written with a clock that stepped back still issues later than the last.
        let mut changed = cfg(500);
        changed.refused.push(Refused {
            report_id: Uuid::from_u128(9),
            reason: "stale".into(),
        });
        assert_eq!(
            write_file(&key, &path, changed, Known::Nothing).unwrap(),
            Written::Written
        );
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
        assert_eq!(
            write_file(&key, &path, same, Known::Nothing).unwrap(),
            Written::Written
        );
        let after =
            Cfg::decode(&fs::read(&path).unwrap(), &key.public(), Uuid::from_u128(1)).unwrap();
        assert_eq!(after.issued_at, Timestamp(3_000));
    }

    /// A stale `.cfg` last modified before the run's time is rewritten without being read; one
    /// modified at or after it is read, and a valid later issue time still holds the new one
    /// back.
    #[test]
    fn a_stale_file_is_read_only_when_it_may_hold_a_later_issue_time() {
        let tmp = tempfile::tempdir().unwrap();
        let (key, _) = SiteKey::generate().unwrap();
        let path = tmp.path().join("PLC01.cfg");
        let issued = |p: &Path| {
            Cfg::decode(&fs::read(p).unwrap(), &key.public(), Uuid::from_u128(1))
                .unwrap()
                .issued_at
        };
        // Written now, saying it was issued in an hour (a site clock that stepped back since).
        let in_an_hour = Timestamp::now().0 + 3_600_000;
        write_file(&key, &path, cfg(in_an_hour), Known::Nothing).unwrap();
        // What the caller knows is stale says something new (here: a refused report).
        let changed = |now: i64, n: u128| {
            let mut c = cfg(now);
            c.refused.push(Refused {
                report_id: Uuid::from_u128(n),
                reason: "stale".into(),
            });
            c
        };
        // Its modification time is after the run's time (earlier than now): read, and honoured.
        assert_eq!(
            write_file(&key, &path, changed(5_000, 1), Known::Stale).unwrap(),
            Written::Written
        );
        assert_eq!(issued(&path), Timestamp(in_an_hour + 1));
        // A run whose time is after the file's modification: not read, issued at its time.
        let later = Timestamp::now().0 + 60_000;
        assert!(modified_before(&path, Timestamp(later)));
        write_file(&key, &path, changed(later, 2), Known::Stale).unwrap();
        assert_eq!(issued(&path), Timestamp(later));
        // Missing: nothing to read.
        assert!(modified_before(&tmp.path().join("NONE.cfg"), Timestamp(0)));
    }
}
