//! `invagent enroll --from-file FILE`: enrolling from the enrollment file `invsite
//! offline-enroll` wrote, with no network at all.
//!
//! The file carries the client's credential and the site's public key; the agent copies them
//! into its state like an HTTP enrollment's answer, with no site URL (the agent then reports
//! only through a CAP directory, `State::has_network`). As with HTTP enrollment nothing is
//! written until the file has been read and checked, and an existing state is replaced
//! entirely. The file holds a key, so one that other users can read is used but warned about.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use invsync_proto::offline::enrollment::{EnrollmentFile, MAX_ENROLLMENT_BYTES};
use invsync_proto::wire::EnrollResponse;

use crate::enroll::machine_id;
use crate::error::AgentError;
use crate::state::State;

/// What `invagent enroll --from-file` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEnrollOptions {
    pub data_dir: PathBuf,
    /// The enrollment file from `invsite offline-enroll CLIENT --out FILE`.
    pub file: PathBuf,
    /// The root the machine id is read under.
    pub root: PathBuf,
}

/// Enrolls from an enrollment file and writes the state. Returns what an HTTP enrollment
/// would have answered (never `reenrolled`: without the site the agent cannot tell).
pub fn enroll_from_file(opts: &FileEnrollOptions) -> Result<EnrollResponse, AgentError> {
    let file = read_enrollment_file(&opts.file)?;
    let machine = machine_id(&opts.root, &opts.data_dir);

    let mut state = State::new(
        "",
        file.client_id,
        &file.token,
        file.name.clone(),
        file.site.clone(),
    );
    state.site_public_key = Some(file.site_public_key);
    crate::enroll::replace_state(&opts.data_dir, &machine, &state)?;
    tracing::info!(
        name = %file.name,
        client_id = %file.client_id,
        site = %file.site,
        machine_id = %machine.id,
        "Enrolled from an enrollment file; this agent reports through a CAP directory."
    );
    Ok(EnrollResponse {
        client_id: file.client_id,
        token: file.token,
        name: file.name,
        site: file.site,
        reenrolled: false,
        site_public_key: Some(file.site_public_key),
    })
}

/// Reads and checks an enrollment file: a regular file within the size limit, in the
/// format this agent reads, whose token is its client's.
pub fn read_enrollment_file(path: &Path) -> Result<EnrollmentFile, AgentError> {
    let refuse = |reason: String| AgentError::EnrollmentFile {
        path: path.to_path_buf(),
        reason,
    };
    // O_NONBLOCK: a FIFO given by mistake is refused below instead of hanging.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| refuse(format!("it cannot be read: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| refuse(format!("it cannot be read: {e}")))?;
    if !meta.is_file() {
        return Err(refuse("it is not a regular file".to_string()));
    }
    if meta.len() > MAX_ENROLLMENT_BYTES {
        return Err(refuse(format!(
            "it is {} bytes, and an enrollment file is at most {MAX_ENROLLMENT_BYTES}; is it \
             the file `invsite offline-enroll` wrote?",
            meta.len()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{mode:04o}"),
            "The enrollment file can be read by other users and holds the client's key; delete it after enrolling, or make it mode 0600."
        );
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_ENROLLMENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refuse(format!("it cannot be read: {e}")))?;
    EnrollmentFile::decode(&bytes).map_err(|e| refuse(e.to_string()))
}
