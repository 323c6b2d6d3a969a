//! `invagent inventory hw|sw --out FILE`: one class of inventory taken on a machine that was
//! never enrolled, written as the import file `invsite import` reads (the injector of GLPI and
//! OCS).
//!
//! The file names the machine by its machine id, because an agent enrolling later on it
//! presents that id and takes the imported record over; a machine without one is refused
//! rather than given an id nothing else will ever present.

use std::path::{Path, PathBuf};

use invsync_proto::offline::import::{IMPORT_FORMAT, ImportFile};
use invsync_proto::{Class, ClientName, Timestamp};

use crate::enroll::name_from_hostname;
use crate::error::AgentError;
use crate::plan::snapshot_hash;
use crate::state::write_atomic;

/// What `invagent inventory CLASS --out FILE` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    pub class: Class,
    /// The root the collectors read through; the host name and machine id come from it too.
    pub root: PathBuf,
    /// The client name; from the host name under the root when `None`.
    pub name: Option<ClientName>,
}

/// Collects one class and returns it as an import file.
pub fn import_file(opts: &ImportOptions) -> Result<ImportFile, AgentError> {
    let name = match &opts.name {
        Some(name) => name.clone(),
        None => name_from_hostname(&opts.root)?,
    };
    let machine_id =
        invsync_collect::machine_id(&opts.root).ok_or_else(|| AgentError::NoMachineId {
            path: opts.root.join("etc/machine-id"),
        })?;
    let collected = invsync_collect::collect(opts.class, &opts.root);
    Ok(ImportFile {
        format: IMPORT_FORMAT,
        name,
        machine_id,
        collected_at: Timestamp::now(),
        class: opts.class,
        hash: snapshot_hash(&collected.items),
        items: collected.items,
        warnings: collected.warnings,
    })
}

/// Writes `file` to `out` atomically with mode 0600 (it is a machine's inventory, for the
/// administrator who carries it to the site).
pub fn write_import_file(out: &Path, file: &ImportFile) -> Result<(), AgentError> {
    let failed = |reason: String| AgentError::Io {
        context: format!("could not write {}", out.display()),
        reason,
    };
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| failed("--out must name a file".to_string()))?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    write_atomic(dir, name, &file.encode()).map_err(|e| failed(e.to_string()))
}
