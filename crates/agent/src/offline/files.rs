//! The agent's side of a file-share CAP directory as files: finding `Inventry.box`, reading
//! this client's `Clidata.box/<CLIENT>.cfg` without trusting anything about it, writing an
//! `.inv` so that no reader ever sees half of it, and removing an `.inv` the site no longer
//! needs.
//!
//! The directory is shared with other machines (a mounted share, a sync folder, removable
//! media), so nothing found in it is followed or trusted: the `.cfg` is opened without
//! following a symbolic link and without blocking on a FIFO, read only up to its size limit,
//! and acted on only after its signature is checked; `Inventry.box` must be a real directory,
//! because an agent running as root must not be steered into writing elsewhere.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use invsync_proto::ClientName;
use invsync_proto::offline::cfg::{Cfg, MAX_CFG_BYTES};
use invsync_proto::offline::sign::PublicKey;
use invsync_proto::offline::{CLIDATA_BOX, INVENTRY_BOX, cfg_file_name, inv_file_name};
use uuid::Uuid;

use crate::error::AgentError;
use crate::state::State;

/// What reading this client's `.cfg` gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CfgRead {
    /// There is no `.cfg` for this client yet: the site has not run `cap-sync` since it was
    /// enrolled, or the share is another one.
    Absent,
    /// There is a file, and it must not be acted on; the sentence says why.
    Ignored(String),
    /// A `.cfg` the site signed, for this client.
    Read(Cfg),
}

/// `Clidata.box/<CLIENT>.cfg`, relative to the CAP directory: how the summary and the logs
/// name the file.
pub fn cfg_relative(name: &ClientName) -> String {
    format!("{CLIDATA_BOX}/{}", cfg_file_name(name))
}

/// `DIR/Inventry.box`, once checked to be a directory (not a symbolic link) this agent can
/// write into. `DIR` itself must exist: a missing one usually means the share is not mounted
/// (or the media not inserted), and files written to the empty mount point would never reach
/// the site. `Inventry.box` inside an existing `DIR` is created when missing, as the site does,
/// so a fresh directory (new media) needs no preparation on either side.
pub fn inbox(cap_dir: &Path) -> Result<PathBuf, AgentError> {
    if !cap_dir.is_dir() {
        return Err(AgentError::CapDir {
            reason: format!(
                "{} does not exist or is not a directory; mount the share (or insert the media), \
                 or create the directory",
                cap_dir.display()
            ),
        });
    }
    let inbox = cap_dir.join(INVENTRY_BOX);
    if let Err(e) = fs::create_dir(&inbox)
        && e.kind() != ErrorKind::AlreadyExists
    {
        return Err(AgentError::CapDir {
            reason: format!("cannot create {}: {e}", inbox.display()),
        });
    }
    let meta = match fs::symlink_metadata(&inbox) {
        Ok(meta) => meta,
        Err(e) => {
            return Err(AgentError::CapDir {
                reason: format!("cannot read {}: {e}", inbox.display()),
            });
        }
    };
    if !meta.is_dir() {
        let what = if meta.file_type().is_symlink() {
            "a symbolic link"
        } else {
            "not a directory"
        };
        return Err(AgentError::CapDir {
            reason: format!(
                "{} is {what}; it must be the directory itself",
                inbox.display()
            ),
        });
    }
    if !writable(&inbox) {
        return Err(AgentError::CapDir {
            reason: format!(
                "{} is not writable by this agent; give its user write permission there",
                inbox.display()
            ),
        });
    }
    Ok(inbox)
}

/// Whether the calling process may create files in `dir`.
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access() reads a NUL-terminated path we own and touches no other memory.
    unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// Reads and checks `DIR/Clidata.box/<CLIENT>.cfg`: absent, ignored with the reason, or the
/// site's signed file for `client_id`.
pub fn read_cfg(
    cap_dir: &Path,
    name: &ClientName,
    site_key: &PublicKey,
    client_id: Uuid,
) -> CfgRead {
    let path = cap_dir.join(CLIDATA_BOX).join(cfg_file_name(name));
    // O_NOFOLLOW: a symbolic link planted in the share is refused, not followed; O_NONBLOCK:
    // a FIFO does not hang the cycle waiting for a writer.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path);
    let file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return CfgRead::Absent,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return CfgRead::Ignored("it is a symbolic link".to_string());
        }
        Err(e) => return CfgRead::Ignored(format!("it cannot be read: {e}")),
    };
    match read_bounded(file) {
        Ok(bytes) => match Cfg::decode(&bytes, site_key, client_id) {
            Ok(cfg) => CfgRead::Read(cfg),
            Err(e) => CfgRead::Ignored(e.to_string()),
        },
        Err(reason) => CfgRead::Ignored(reason),
    }
}

/// The bytes of an opened `.cfg`, if it is a regular file within the size limit.
fn read_bounded(file: File) -> Result<Vec<u8>, String> {
    let meta = file
        .metadata()
        .map_err(|e| format!("it cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("it is not a regular file".to_string());
    }
    if meta.len() > MAX_CFG_BYTES {
        return Err(format!(
            "the file is {} bytes; at most {MAX_CFG_BYTES} are accepted",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow between the stat and the read; the limit holds either way, and
    // `Cfg::decode` refuses what is over it.
    file.take(MAX_CFG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("it cannot be read: {e}"))?;
    Ok(bytes)
}

/// Writes `bytes` as `inbox/file_name`: first to `.<file_name>.tmp` (a name the site skips,
/// unique per file because the file name holds the file's id), synced, then renamed, so the
/// site sees the whole file or none of it.
pub fn write_inv(inbox: &Path, file_name: &str, bytes: &[u8]) -> Result<(), AgentError> {
    let tmp = inbox.join(format!(".{file_name}.tmp"));
    let dest = inbox.join(file_name);
    let failed = |what: &str, e: std::io::Error| AgentError::CapDir {
        reason: format!("could not {what} {}: {e}", dest.display()),
    };
    {
        // O_NOFOLLOW: a symbolic link left at the temporary name is not written through.
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| failed("write", e))?;
        f.write_all(bytes).map_err(|e| failed("write", e))?;
        f.sync_all().map_err(|e| failed("sync", e))?;
    }
    fs::rename(&tmp, &dest).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        failed("rename the temporary file to", e)
    })?;
    // The directory's own sync makes the rename durable; some file systems of removable
    // media refuse it, and the file is complete either way.
    if let Err(e) = File::open(inbox).and_then(|d| d.sync_all()) {
        tracing::debug!(dir = %inbox.display(), error = %e, "Could not sync the CAP directory.");
    }
    Ok(())
}

/// Removes `inbox/file_name` if it is still there (best effort: the site may have imported
/// it already, and an `.inv` imported twice is a duplicate the site recognises). Returns
/// whether a file was removed.
pub fn remove_inv(inbox: &Path, file_name: &str) -> bool {
    let path = inbox.join(file_name);
    match fs::remove_file(&path) {
        Ok(()) => true,
        Err(e) if e.kind() == ErrorKind::NotFound => false,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "Could not remove a file from the CAP directory; the site will recognise it as a duplicate.");
            false
        }
    }
}

/// Forgets that `report_id` was written to the CAP directory, after the site settled it over
/// HTTP, and removes its `.inv` if the site has not imported it yet.
pub fn forget_cap_copy(state: &mut State, report_id: Uuid) {
    let before = state.cap.written.len();
    state.cap.written.retain(|id| *id != report_id);
    if state.cap.written.len() == before {
        return;
    }
    let Some(dir) = state.cap.dir.as_deref() else {
        return;
    };
    let file = inv_file_name(&state.name, report_id);
    if remove_inv(&dir.join(INVENTRY_BOX), &file) {
        tracing::info!(report_id = %report_id, file = %file, "The site acknowledged over HTTP a report also written to the CAP directory; removed its file there.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_inbox_must_be_a_writable_directory_in_an_existing_cap_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("not-mounted");
        let err = inbox(&missing).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "cannot use the CAP directory: {} does not exist or is not a directory; mount \
                 the share (or insert the media), or create the directory",
                missing.display()
            )
        );
        assert!(!missing.exists());
        // In an existing directory, Inventry.box is made.
        assert_eq!(inbox(tmp.path()).unwrap(), tmp.path().join(INVENTRY_BOX));
        fs::remove_dir(tmp.path().join(INVENTRY_BOX)).unwrap();

        let elsewhere = tmp.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, tmp.path().join(INVENTRY_BOX)).unwrap();
        let err = inbox(tmp.path()).unwrap_err().to_string();
        assert!(
            err.ends_with("Inventry.box is a symbolic link; it must be the directory itself"),
            "{err}"
        );

        fs::remove_file(tmp.path().join(INVENTRY_BOX)).unwrap();
        fs::create_dir(tmp.path().join(INVENTRY_BOX)).unwrap();
        assert_eq!(inbox(tmp.path()).unwrap(), tmp.path().join(INVENTRY_BOX));
    }

    #[test]
    fn an_inv_is_written_whole_under_its_name_and_removed_once() {
        let tmp = tempfile::tempdir().unwrap();
        write_inv(tmp.path(), "A-1.inv", b"first").unwrap();
        write_inv(tmp.path(), "A-1.inv", b"second").unwrap();
        assert_eq!(fs::read(tmp.path().join("A-1.inv")).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["A-1.inv"], "no temporary file is left behind");
        let mode = fs::metadata(tmp.path().join("A-1.inv"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o600, 0o600);
        assert!(remove_inv(tmp.path(), "A-1.inv"));
        assert!(!remove_inv(tmp.path(), "A-1.inv"));
    }

    #[test]
    fn a_cfg_that_is_a_link_a_fifo_or_too_large_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let name = ClientName::parse("WEB01").unwrap();
        let key = PublicKey([1; 32]);
        assert_eq!(
            read_cfg(tmp.path(), &name, &key, Uuid::nil()),
            CfgRead::Absent
        );
        let clidata = tmp.path().join(CLIDATA_BOX);
        fs::create_dir(&clidata).unwrap();
        let cfg = clidata.join("WEB01.cfg");

        fs::write(tmp.path().join("target"), b"x").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("target"), &cfg).unwrap();
        assert_eq!(
            read_cfg(tmp.path(), &name, &key, Uuid::nil()),
            CfgRead::Ignored("it is a symbolic link".to_string())
        );
        fs::remove_file(&cfg).unwrap();

        let path = std::ffi::CString::new(cfg.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path only.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        assert_eq!(
            read_cfg(tmp.path(), &name, &key, Uuid::nil()),
            CfgRead::Ignored("it is not a regular file".to_string())
        );
        fs::remove_file(&cfg).unwrap();

        fs::write(&cfg, vec![b' '; MAX_CFG_BYTES as usize + 1]).unwrap();
        assert_eq!(
            read_cfg(tmp.path(), &name, &key, Uuid::nil()),
            CfgRead::Ignored(format!(
                "the file is {} bytes; at most {MAX_CFG_BYTES} are accepted",
                MAX_CFG_BYTES + 1
            ))
        );
    }
}
