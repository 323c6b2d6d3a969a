//! The errors of the agent library. Every message is one sentence an operator can act on,
//! and carries its cause inline rather than as a chained `source`, so that however the binary
//! prints it (`{}` or `{:#}`) the user sees the cause exactly once. The CLI maps these to the
//! exit codes of SPEC section 7 in one place (`cli::exit_for`).

use std::path::PathBuf;

use invsync_proto::Class;

/// Why an agent operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// There is no state file: the agent was never enrolled with this data directory.
    #[error(
        "this agent is not enrolled: run `invagent enroll --data-dir {} --site URL --secret S`",
        data_dir.display()
    )]
    NotEnrolled { data_dir: PathBuf },

    /// The site answered 4xx with an `ErrorBody` (a wrong secret, a taken name, a report it
    /// will not store). These are bad input, so the CLI exits 2.
    #[error("the site refused the request (HTTP {status}): {message}")]
    Refused { status: u16, message: String },

    /// The site no longer knows this agent's credentials (its database was replaced, or the
    /// client was deleted). Only enrolling again helps.
    #[error(
        "the site at {url} no longer accepts this agent's credentials ({message}); \
         enroll again with `invagent enroll --site {url} --secret S`"
    )]
    Unauthorized { url: String, message: String },

    /// The site could not be reached at all: connection refused, DNS, timeout, a dropped
    /// connection.
    #[error("could not reach the site at {url}: {reason}; is `invsite serve` running there?")]
    Unreachable { url: String, reason: String },

    /// The TLS handshake with an `https://` site failed: its certificate is not signed by the
    /// CA the agent trusts, names another host, or the port does not speak TLS. Retrying does
    /// not help until someone fixes the URL or the CA.
    #[error("could not reach the site at {url}: {reason}")]
    Tls { url: String, reason: String },

    /// The CA certificate file (`--ca-cert`) cannot be read or holds no certificate.
    #[error(
        "{reason}; give the site's CA certificate as a PEM file with `invagent enroll --ca-cert FILE`"
    )]
    BadCaCert { reason: String },

    /// The site answered 5xx.
    #[error(
        "the site at {url} failed (HTTP {status}): {message}; the agent retries on its next \
         cycle, and if this persists the site's log says why"
    )]
    SiteFailed {
        url: String,
        status: u16,
        message: String,
    },

    /// The site answered 2xx with a body this agent does not understand (a different
    /// protocol version, or not an invsync site at all).
    #[error(
        "the site at {url} sent an answer this agent does not understand ({reason}); \
         check that the URL points at an invsite server of the same version"
    )]
    BadResponse { url: String, reason: String },

    /// `--site` is not an `http://` or `https://` URL.
    #[error("--site {url:?} is not a site URL; give one like http://site.example:8350")]
    BadSiteUrl { url: String },

    /// Without `--name` the name comes from the host name, which may be missing or unusable.
    #[error("cannot derive a client name from the host name ({reason}); give one with --name NAME")]
    NoName { reason: String },

    /// The site asked for a full report again right after receiving one. Sending more in the
    /// same cycle would loop, so the cycle stops and the next one tries again.
    #[error(
        "the site asked again for a full {class} report right after receiving one ({reason}); \
         the next cycle retries"
    )]
    ResyncLoop { class: Class, reason: String },

    /// An agent enrolled from an enrollment file has no network site, so a cycle needs the
    /// file-share CAP directory.
    #[error(
        "this agent was enrolled from an enrollment file and reports only through a CAP \
         directory; give it with --cap-dir DIR (or INVAGENT_CAP_DIR, or `cap_dir` in \
         /etc/invagent/agent.toml for `invagent run`)"
    )]
    NeedsCapDir,

    /// The CAP directory cannot take the agent's files: its `Inventry.box` is missing, not a
    /// directory, or not writable.
    #[error("cannot use the CAP directory: {reason}")]
    CapDir { reason: String },

    /// The state holds no public key of the site, so no `.cfg` can be checked.
    #[error(
        "this agent has no public key of its site to check the CAP directory's .cfg files with \
         (it enrolled at a site older than the file-share CAP); enroll again (`invagent enroll \
         --site URL --secret S`, or `--from-file FILE` from `invsite offline-enroll`) to get it"
    )]
    NoSiteKey,

    /// `invagent enroll --from-file` was given a file it cannot use.
    #[error("cannot enroll from {}: {reason}", path.display())]
    EnrollmentFile { path: PathBuf, reason: String },

    /// `invagent inventory --out` needs the machine id the site will know the machine by.
    #[error(
        "no machine id in {}: an import file needs the id an agent enrolling later on this \
         machine will present; create it (`systemd-machine-id-setup`) or run this on the machine \
         itself",
        path.display()
    )]
    NoMachineId { path: PathBuf },

    /// The local state file is missing pieces, corrupt, or cannot be written.
    #[error(transparent)]
    State(#[from] StateError),

    /// Any other local I/O failure, with what the agent was doing.
    #[error("{context}: {reason}")]
    Io { context: String, reason: String },
}

impl AgentError {
    /// Whether retrying is pointless until someone acts (re-enrolls, fixes the state file or
    /// the disk). The daemon logs these at ERROR and everything else at WARN.
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            AgentError::NotEnrolled { .. }
                | AgentError::Unauthorized { .. }
                | AgentError::Tls { .. }
                | AgentError::BadCaCert { .. }
                | AgentError::State(_)
                | AgentError::Refused { .. }
                | AgentError::NeedsCapDir
                | AgentError::NoSiteKey
                | AgentError::EnrollmentFile { .. }
        )
    }

    /// An [`AgentError::Io`] from what was being done and the error that stopped it.
    pub fn io(context: impl Into<String>, err: &std::io::Error) -> AgentError {
        AgentError::Io {
            context: context.into(),
            reason: err.to_string(),
        }
    }
}

/// Why the state file (the "inventory keys") could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file exists but is not a state this agent can read. Enrolling again rewrites it.
    #[error(
        "the agent state {} is unreadable ({reason}); enroll again with \
         `invagent enroll --data-dir {} --site URL --secret S` to replace it",
        path.display(), data_dir.display()
    )]
    Corrupt {
        path: PathBuf,
        data_dir: PathBuf,
        reason: String,
    },

    /// The file was written by an agent with a state format this one does not know.
    #[error(
        "the agent state {} has format {found}, which this agent (format {expected}) does not \
         know; enroll again with `invagent enroll --data-dir {} --site URL --secret S`",
        path.display(), data_dir.display()
    )]
    UnknownFormat {
        path: PathBuf,
        data_dir: PathBuf,
        found: u64,
        expected: u32,
    },

    /// Writing, syncing or renaming the state failed (disk full, read-only file system).
    #[error("could not save the agent state {}: {reason}; check the disk and the directory's permissions", path.display())]
    Write { path: PathBuf, reason: String },
}
