//! Enrollment: presenting the site's enrollment secret, the client name, the machine id (and
//! the DMI serial and product UUID where readable) at
//! the CAP, and keeping the credential it returns in the state file (SPEC sections 3 and 8).
//!
//! Nothing is written until the site has said yes, so a wrong secret or a taken name leaves
//! the data directory as it was. Enrolling into a data directory that already holds a state
//! replaces it entirely: the new credential may belong to another site, or to a site whose
//! database no longer has our snapshots, so what we recorded as acknowledged must be
//! forgotten (the next cycle then sends full reports).

use std::path::{Path, PathBuf};

use invsync_proto::ClientName;
use invsync_proto::wire::{ClientToken, EnrollRequest, EnrollResponse, HardwareId};

use crate::cap::CapClient;
use crate::error::AgentError;
use crate::state::{self, MACHINE_ID_FILE, State, StateLock};

/// What `invagent enroll` needs.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    pub data_dir: PathBuf,
    /// The site's URL, e.g. `http://site.example:8350`.
    pub site_url: String,
    /// The site's enrollment secret (`invsite enroll-secret`).
    pub secret: String,
    /// The client name; derived from the host name under `root` when `None`.
    pub name: Option<ClientName>,
    /// The root the collectors read through; the host name and machine id come from it too.
    pub root: PathBuf,
}

/// Enrolls at the site and writes the state file. Returns the site's answer (name, client id,
/// site code, whether this machine was already enrolled).
pub fn enroll(opts: &EnrollOptions) -> Result<EnrollResponse, AgentError> {
    enroll_with_ca(opts, None)
}

/// [`enroll`] at an `https://` site whose certificate chains to the CA certificates in the
/// PEM file `ca_cert` (`None`: the built-in Mozilla roots). The state remembers the file for
/// later cycles and the push channel.
pub fn enroll_with_ca(
    opts: &EnrollOptions,
    ca_cert: Option<&Path>,
) -> Result<EnrollResponse, AgentError> {
    let ca_cert = match ca_cert {
        Some(path) => Some(ca_cert_path(path, &opts.site_url)?),
        None => None,
    };
    let cap = CapClient::new(&opts.site_url, None, ca_cert.as_deref())?;
    let name = match &opts.name {
        Some(name) => name.clone(),
        None => name_from_hostname(&opts.root)?,
    };
    let machine = machine_id(&opts.root, &opts.data_dir);
    let request = EnrollRequest {
        secret: opts.secret.clone(),
        name,
        machine_id: machine.id.clone(),
        // The hardware's identity, which survives a reimage that gives the machine a new
        // machine id; sent when readable (root only), judged by the site.
        hardware: invsync_collect::dmi_identity(&opts.root)
            .map(|(serial, uuid)| HardwareId { serial, uuid }),
    };
    let response = cap.enroll(&request)?;
    match ClientToken::parse(&response.token) {
        Some(t) if t.client_id == response.client_id => {}
        _ => {
            return Err(AgentError::BadResponse {
                url: cap.base_url().to_string(),
                reason: "the enrollment answer holds no valid client token".to_string(),
            });
        }
    }

    let mut state = State::new(
        cap.base_url(),
        response.client_id,
        &response.token,
        response.name.clone(),
        response.site.clone(),
    );
    state.ca_cert = ca_cert;
    // Kept for a file-share CAP the agent may fall back to (`invagent cycle --cap-dir`).
    state.site_public_key = response.site_public_key;
    replace_state(&opts.data_dir, &machine, &state)?;
    tracing::info!(
        name = %response.name,
        client_id = %response.client_id,
        site = %response.site,
        reenrolled = response.reenrolled,
        "Enrolled at the site."
    );
    Ok(response)
}

/// Writes a new enrollment's state in place of whatever the data directory held (and the
/// machine id, when it was generated for it), under the data directory's lock. Shared by the
/// enrollment at a site and the one from an enrollment file.
pub(crate) fn replace_state(
    data_dir: &Path,
    machine: &MachineId,
    state: &State,
) -> Result<(), AgentError> {
    state::ensure_data_dir(data_dir)?;
    let _lock = StateLock::acquire(data_dir)?;
    machine.keep(data_dir)?;
    match State::load(data_dir) {
        Ok(old) => tracing::info!(
            previous_site = %old.site_url,
            previous_client_id = %old.client_id,
            "Replacing the previous enrollment; its acknowledged snapshots and outbox are dropped."
        ),
        Err(AgentError::NotEnrolled { .. }) => {}
        Err(e) => tracing::info!(error = %e, "Replacing an unreadable state file."),
    }
    state.save(data_dir)?;
    Ok(())
}

/// `--ca-cert` as the absolute path the state keeps (later cycles may run from another
/// directory); only for an `https://` site, and only a file that holds a certificate.
fn ca_cert_path(path: &Path, site_url: &str) -> Result<PathBuf, AgentError> {
    if !site_url.trim().starts_with("https://") {
        return Err(AgentError::BadCaCert {
            reason: format!("--ca-cert is for an https:// site, and {site_url} is not one"),
        });
    }
    let absolute = std::fs::canonicalize(path).map_err(|e| AgentError::BadCaCert {
        reason: format!("cannot read the CA certificate {}: {e}", path.display()),
    })?;
    invsync_client::tls::read_ca(&absolute).map_err(|reason| AgentError::BadCaCert { reason })?;
    Ok(absolute)
}

/// The client name the agent uses without `--name`: the host name's first label, upper-cased
/// and cut to 15 characters.
pub fn name_from_hostname(root: &Path) -> Result<ClientName, AgentError> {
    let host = invsync_collect::hostname(root).ok_or_else(|| AgentError::NoName {
        reason: format!(
            "no host name in {} or {}",
            root.join("proc/sys/kernel/hostname").display(),
            root.join("etc/hostname").display()
        ),
    })?;
    ClientName::from_hostname(&host).map_err(|e| AgentError::NoName {
        reason: e.to_string(),
    })
}

/// A machine id, and whether it was generated just now (and so must be saved once the site
/// has accepted it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineId {
    pub id: String,
    pub generated: bool,
}

impl MachineId {
    /// Saves a generated id in the data directory, so the machine keeps it from then on
    /// ([`machine_id`] reads it back); an id read from the root needs nothing.
    pub fn keep(&self, data_dir: &Path) -> Result<(), AgentError> {
        if self.generated {
            state::write_atomic(
                data_dir,
                MACHINE_ID_FILE,
                format!("{}\n", self.id).as_bytes(),
            )
            .map_err(|e| AgentError::io("could not save the generated machine id", &e))?;
        }
        Ok(())
    }
}

/// The machine id: `etc/machine-id` under the root, else the one generated earlier and kept in
/// the data directory, else a new random one. The site uses it to tell a re-enrolling machine
/// (which keeps its client id) from another machine claiming a taken name, so a generated id
/// must stay the same for the life of the data directory.
pub fn machine_id(root: &Path, data_dir: &Path) -> MachineId {
    if let Some(id) = invsync_collect::machine_id(root) {
        return MachineId {
            id,
            generated: false,
        };
    }
    let kept = std::fs::read_to_string(data_dir.join(MACHINE_ID_FILE))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    if let Some(id) = kept {
        return MachineId {
            id,
            generated: false,
        };
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    tracing::warn!(
        root = %root.display(),
        machine_id = %id,
        "No etc/machine-id under the root; using a generated machine id kept in the data directory."
    );
    MachineId {
        id,
        generated: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_id_prefers_the_root_then_the_kept_one() {
        let root = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let generated = machine_id(root.path(), data.path());
        assert!(generated.generated);
        assert_eq!(generated.id.len(), 32);
        assert!(generated.id.bytes().all(|b| b.is_ascii_hexdigit()));

        std::fs::write(
            data.path().join(MACHINE_ID_FILE),
            format!("{}\n", generated.id),
        )
        .unwrap();
        assert_eq!(
            machine_id(root.path(), data.path()),
            MachineId {
                id: generated.id.clone(),
                generated: false
            }
        );

        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/machine-id"), "abc123\n").unwrap();
        assert_eq!(machine_id(root.path(), data.path()).id, "abc123");
    }

    #[test]
    fn names_come_from_the_host_name() {
        let root = tempfile::tempdir().unwrap();
        let err = name_from_hostname(root.path()).unwrap_err();
        assert!(err.to_string().contains("--name"), "{err}");
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/hostname"), "web01.example.com\n").unwrap();
        assert_eq!(name_from_hostname(root.path()).unwrap().as_str(), "WEB01");
    }
}
