//! The agent's local state: the modern form of the original client's "inventory keys".
//!
//! One JSON file, `state.json` in the data directory, holds the credentials from enrollment,
//! the last snapshot of each class the site acknowledged (with its items, so the agent can
//! compute deltas against it), the instructions received and not yet finished, and the outbox
//! of reports built but not yet acknowledged. It is written atomically (temporary file, fsync,
//! rename, fsync of the directory) so that a crash at any point leaves either the old or the
//! new state, never a torn one; instructions are saved before they are acted on for the same
//! reason. The file holds a credential, so it is mode 0600 inside a 0700 directory.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use invsync_proto::offline::sign::PublicKey;
use invsync_proto::wire::{Event, Report};
use invsync_proto::{Class, ClientName, Digest, Items, SiteCode, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{AgentError, StateError};

/// The state file's name inside the data directory.
pub const STATE_FILE: &str = "state.json";
/// Where a generated machine id is kept when the root has no `etc/machine-id`.
pub const MACHINE_ID_FILE: &str = "machine-id";
/// The lock file that serialises cycles and enrollments using one data directory.
pub const LOCK_FILE: &str = "state.lock";
/// The version of the state file's layout; a different one is refused with advice to re-enroll.
pub const STATE_FORMAT: u32 = 1;

/// Everything the agent remembers between cycles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Always [`STATE_FORMAT`]; checked before the rest is parsed.
    pub format: u32,
    /// The site URL without a trailing `/`; empty for an agent enrolled from an enrollment file
    /// (`invagent enroll --from-file`), which has no network site and reports only through a
    /// file-share CAP directory (see [`State::has_network`]).
    #[serde(default)]
    pub site_url: String,
    /// The CA certificate file (PEM, an absolute path) an `https://` site's certificate must
    /// chain to, from `invagent enroll --ca-cert`; absent: the built-in Mozilla roots. Kept as
    /// a path, so replacing the file (a renewed CA) takes effect at the next cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    pub client_id: Uuid,
    /// The client token as sent in `Authorization: Bearer …` (`ClientToken::encode`).
    pub token: String,
    pub name: ClientName,
    pub site: SiteCode,
    pub enrolled_at: Timestamp,
    /// Per class, the last snapshot the site acknowledged.
    #[serde(default)]
    pub acked: BTreeMap<Class, AckedSnapshot>,
    /// Resync instructions received and not yet answered by an acknowledged full report.
    #[serde(default)]
    pub resyncs: Vec<PendingResync>,
    /// Event instructions received and not yet acknowledged to the site.
    #[serde(default)]
    pub events: Vec<PendingEvent>,
    /// Reports built but not yet acknowledged, in the order they were built.
    #[serde(default)]
    pub outbox: Vec<Report>,
    /// The public half of the site's signing key, which every `.cfg` of a file-share CAP must
    /// be signed with: from the enrollment answer or the enrollment file; absent for an agent
    /// that enrolled at a site older than the file-share CAP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_public_key: Option<PublicKey>,
    /// What the agent did through a file-share CAP directory; empty for an agent that never
    /// used one.
    #[serde(default, skip_serializing_if = "CapState::is_empty")]
    pub cap: CapState,
}

/// The agent's record of the file-share CAP (issue 18): which `.cfg` it last acted on and
/// which of its outbox reports travel as `.inv` files, so that each report is settled exactly
/// once, by whichever way the site's answer comes back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapState {
    /// The `issued_at` of the last `.cfg` acted on: an older one is a replay and does nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cfg_issued_at: Option<Timestamp>,
    /// Outbox reports written to the CAP directory and not yet settled, in the order written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub written: Vec<Uuid>,
    /// Event ids listed as done in a file written to the CAP directory: such an event is done
    /// once the site's `.cfg` no longer lists it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events_written: Vec<i64>,
    /// The file name of the last check-in written, replaced by the next one so unimported
    /// check-ins do not pile up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkin: Option<String>,
    /// The `written_at` of the last file written: the site imports a client's files in that
    /// order, so each file gets a later time than the one before, even within a millisecond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_written_at: Option<Timestamp>,
    /// The CAP directory the files were written to, so that a report the site later
    /// acknowledges over HTTP can have its `.inv` copy removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}

impl CapState {
    pub fn is_empty(&self) -> bool {
        self == &CapState::default()
    }
}

/// A snapshot the site has stored, as the agent recorded it from the site's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckedSnapshot {
    pub version: i64,
    pub hash: Digest,
    pub items: Items,
}

/// A resync instruction waiting for its full report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingResync {
    pub id: i64,
    pub class: Class,
    pub received_at: Timestamp,
}

/// A Set Client Event wake-up waiting to be acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingEvent {
    pub id: i64,
    pub event: Event,
    pub received_at: Timestamp,
}

/// Just the format field, read first so that an unknown layout gets its own message instead of
/// whichever field happens to fail to parse.
#[derive(Deserialize)]
struct FormatProbe {
    format: Option<serde_json::Value>,
}

impl State {
    /// A fresh state right after enrollment: credentials only, nothing acknowledged yet.
    pub fn new(
        site_url: &str,
        client_id: Uuid,
        token: &str,
        name: ClientName,
        site: SiteCode,
    ) -> State {
        State {
            format: STATE_FORMAT,
            site_url: site_url.to_string(),
            ca_cert: None,
            client_id,
            token: token.to_string(),
            name,
            site,
            enrolled_at: Timestamp::now(),
            acked: BTreeMap::new(),
            resyncs: Vec::new(),
            events: Vec::new(),
            outbox: Vec::new(),
            site_public_key: None,
            cap: CapState::default(),
        }
    }

    /// Whether the agent has a network site to talk to; an agent enrolled from an enrollment
    /// file has none and reports only through a CAP directory.
    pub fn has_network(&self) -> bool {
        !self.site_url.is_empty()
    }

    /// The path of the state file in `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(STATE_FILE)
    }

    /// Loads the state, or says that the agent is not enrolled, or that the file is unusable
    /// and how to replace it.
    pub fn load(data_dir: &Path) -> Result<State, AgentError> {
        let path = State::path(data_dir);
        let raw = match fs::read(&path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(AgentError::NotEnrolled {
                    data_dir: data_dir.to_path_buf(),
                });
            }
            Err(e) => {
                return Err(corrupt(data_dir, &path, format!("cannot read it: {e}")).into());
            }
        };
        let probe: FormatProbe = serde_json::from_slice(&raw)
            .map_err(|e| corrupt(data_dir, &path, format!("not JSON: {e}")))?;
        match probe.format.as_ref().and_then(|v| v.as_u64()) {
            Some(f) if f == u64::from(STATE_FORMAT) => {}
            Some(found) => {
                return Err(StateError::UnknownFormat {
                    path,
                    data_dir: data_dir.to_path_buf(),
                    found,
                    expected: STATE_FORMAT,
                }
                .into());
            }
            None => {
                return Err(corrupt(data_dir, &path, "no \"format\" field".to_string()).into());
            }
        }
        let state: State =
            serde_json::from_slice(&raw).map_err(|e| corrupt(data_dir, &path, e.to_string()))?;
        Ok(state)
    }

    /// Saves the state atomically: a reader (or a crash) sees the old file or the new one.
    pub fn save(&self, data_dir: &Path) -> Result<(), StateError> {
        let path = State::path(data_dir);
        // Compact JSON: the file can hold a thousand-package snapshot twice (acknowledged and
        // in the outbox) and is rewritten several times in a busy cycle.
        let bytes = serde_json::to_vec(self).map_err(|e| StateError::Write {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(data_dir, STATE_FILE, &bytes).map_err(|e| StateError::Write {
            path,
            reason: e.to_string(),
        })
    }

    /// Ids of the pending resync instructions for `class`, oldest first.
    pub fn pending_resyncs(&self, class: Class) -> Vec<i64> {
        self.resyncs
            .iter()
            .filter(|r| r.class == class)
            .map(|r| r.id)
            .collect()
    }

    /// Whether an instruction with this id is already recorded.
    pub fn knows_instruction(&self, id: i64) -> bool {
        self.resyncs.iter().any(|r| r.id == id) || self.events.iter().any(|e| e.id == id)
    }
}

fn corrupt(data_dir: &Path, path: &Path, reason: String) -> StateError {
    StateError::Corrupt {
        path: path.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
        reason,
    }
}

/// Creates the data directory with mode 0700 if it does not exist. An existing directory is
/// left as it is: an administrator may have chosen its permissions on purpose.
pub fn ensure_data_dir(data_dir: &Path) -> Result<(), AgentError> {
    if data_dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .map_err(|e| AgentError::io(format!("could not create {}", parent.display()), &e))?;
    }
    match DirBuilder::new().mode(0o700).create(data_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists && data_dir.is_dir() => Ok(()),
        Err(e) => Err(AgentError::io(
            format!("could not create the data directory {}", data_dir.display()),
            &e,
        )),
    }
}

/// Writes `name` in `dir` atomically with mode 0600: a temporary file, fsync, rename over the
/// old file, fsync of the directory so the rename itself survives a power cut.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dest = dir.join(name);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // A leftover temporary file keeps its old mode, which `mode` does not change.
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &dest)?;
    File::open(dir)?.sync_all()
}

/// An exclusive lock on a data directory, held while a cycle or an enrollment reads and
/// rewrites the state, so `invagent cycle` run by hand while the daemon is mid-cycle waits
/// instead of losing one of the two updates. Released when dropped (the file is closed).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Waits for the lock on `data_dir` (which must exist).
    pub fn acquire(data_dir: &Path) -> Result<StateLock, AgentError> {
        let path = data_dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| AgentError::io(format!("could not open {}", path.display()), &e))?;
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is shared with the call.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(StateLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != ErrorKind::Interrupted {
                return Err(AgentError::io(
                    format!("could not lock {}", path.display()),
                    &err,
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use invsync_proto::wire::ReportBody;

    fn sample() -> State {
        let mut s = State::new(
            "http://127.0.0.1:8350",
            Uuid::new_v4(),
            "tok",
            ClientName::parse("web01").unwrap(),
            SiteCode::parse("S01").unwrap(),
        );
        let mut items = Items::new();
        items.insert(
            "os".into(),
            [("name".to_string(), "Debian".to_string())].into(),
        );
        let hash = invsync_proto::Snapshot::new(items.clone()).hash();
        s.acked.insert(
            Class::Hw,
            AckedSnapshot {
                version: 3,
                hash,
                items: items.clone(),
            },
        );
        s.resyncs.push(PendingResync {
            id: 5,
            class: Class::Sw,
            received_at: Timestamp(1),
        });
        s.events.push(PendingEvent {
            id: 6,
            event: Event::Hinv,
            received_at: Timestamp(2),
        });
        s.outbox.push(Report {
            report_id: Uuid::new_v4(),
            class: Class::Hw,
            hash,
            body: ReportBody::Full { items },
            answers: vec![5],
        });
        s
    }

    #[test]
    fn save_load_round_trip_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("agent");
        ensure_data_dir(&dir).unwrap();
        let s = sample();
        s.save(&dir).unwrap();
        assert_eq!(State::load(&dir).unwrap(), s);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&State::path(&dir)), 0o600);
        assert!(
            !dir.join("state.json.tmp").exists(),
            "the temporary file was renamed away"
        );
        // Saving again replaces the file rather than appending or failing.
        let mut s2 = s.clone();
        s2.outbox.clear();
        s2.save(&dir).unwrap();
        assert_eq!(State::load(&dir).unwrap(), s2);
    }

    #[test]
    fn old_states_read_unchanged_and_a_file_enrolled_one_has_no_network() {
        // A state that never used the file-share CAP is written as before: old agents and
        // old files read the same.
        let s = sample();
        let json: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert!(json.get("cap").is_none() && json.get("site_public_key").is_none());
        assert!(s.has_network());

        let tmp = tempfile::tempdir().unwrap();
        let mut offline = sample();
        offline.site_url = String::new();
        offline.site_public_key = Some(PublicKey([4; 32]));
        offline.cap = CapState {
            cfg_issued_at: Some(Timestamp(5)),
            written: vec![offline.outbox[0].report_id],
            events_written: vec![6],
            last_checkin: Some("WEB01-x.inv".into()),
            last_written_at: Some(Timestamp(6)),
            dir: Some("/mnt/cap".into()),
        };
        offline.save(tmp.path()).unwrap();
        let loaded = State::load(tmp.path()).unwrap();
        assert_eq!(loaded, offline);
        assert!(!loaded.has_network());
    }

    #[test]
    fn missing_state_means_not_enrolled() {
        let tmp = tempfile::tempdir().unwrap();
        let err = State::load(tmp.path()).unwrap_err();
        assert!(matches!(err, AgentError::NotEnrolled { .. }), "{err:?}");
        assert!(
            err.to_string().contains("invagent enroll --data-dir"),
            "{err}"
        );
    }

    #[test]
    fn corrupt_state_tells_the_user_to_re_enroll() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in [&b"{not json"[..], b"{\"format\":1}", b"[]", b"{}"] {
            fs::write(State::path(tmp.path()), bad).unwrap();
            let err = State::load(tmp.path()).unwrap_err();
            assert!(
                matches!(err, AgentError::State(StateError::Corrupt { .. })),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains("enroll again") && msg.contains("invagent enroll"),
                "{msg}"
            );
        }
        fs::write(State::path(tmp.path()), b"{\"format\":99}").unwrap();
        let err = State::load(tmp.path()).unwrap_err();
        assert!(matches!(
            err,
            AgentError::State(StateError::UnknownFormat { found: 99, .. })
        ));
        assert!(err.to_string().contains("enroll again"), "{err}");
    }

    #[test]
    fn lock_can_be_taken_again_after_release() {
        let tmp = tempfile::tempdir().unwrap();
        drop(StateLock::acquire(tmp.path()).unwrap());
        let _again = StateLock::acquire(tmp.path()).unwrap();
    }
}
