//! The site's data directory: `config.json` (what `invsite init` chose), the admin token and
//! enrollment secret (mode 0600), the SQLite database, and `serve.addr`, the address a running
//! `invsite serve` actually bound (so `--listen 127.0.0.1:0` works for tools and tests), and
//! `tls/` with the certificate `invsite init --tls self-signed` made (`ca.pem`, `cert.pem`,
//! `key.pem` mode 0600). [`open_store`] opens the database the configuration names.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use invsync_proto::SiteCode;
use invsync_proto::exit::{Code, Exit};
use invsync_store::{Store, redact_url};
use serde::{Deserialize, Serialize};

pub const DEFAULT_DIR: &str = "/var/lib/invsite";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8350";

/// What `invsite init` recorded; read by every later command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub site_code: SiteCode,
    pub name: String,
    pub listen: String,
    /// `sqlite` (the embedded database in this directory) or a `postgres://` URL; see
    /// [`Database`]. The URL may hold a password, which is one reason this file is mode 0600.
    pub db: String,
    /// The URL this site announces to its parent (so `invsync` at the parent can name it);
    /// when absent, `http://<the address it serves on>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The parent this site forwards every accepted change to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentConfig>,
    /// Whether resync requests routed down by the parent (`invsync --via-child`) are queued.
    #[serde(default)]
    pub accept_parent_requests: bool,
    /// The certificate and key `invsite serve` serves TLS with (unless given on its command
    /// line); absent: plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// Bounds on what one request may make the site read and store.
    #[serde(default)]
    pub limits: Limits,
    /// The time between cycles this site asks its agents for, in seconds (`invsite config
    /// --agent-interval`); absent: each agent's own. An agent whose interval was set on its
    /// machine keeps that one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_interval_secs: Option<u64>,
    /// How long a resync request may wait to be picked up before it expires, in seconds
    /// (`invsite config --request-expiry`); absent: 30 days
    /// ([`invsync_store::DEFAULT_REQUEST_EXPIRY`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_expiry_secs: Option<u64>,
    /// Whether an enrollment of a machine the site already holds a client of takes that
    /// record over (`invsite config --merge-duplicates`); absent: on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_duplicates: Option<bool>,
    /// Agents older than this are flagged (`invsite config --min-agent-version`); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_agent_version: Option<String>,
    /// How long a client may go unseen before it is stale, in seconds (`invsite config
    /// --stale-after`); absent: 30 days ([`invsync_store::DEFAULT_STALE_AFTER`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_after_secs: Option<u64>,
    /// Delete clients not seen for this many seconds (`--delete-after`); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_after_secs: Option<u64>,
    /// Prune history older than this many seconds (`--history-retention`); absent: 400 days
    /// ([`crate::lifecycle::DEFAULT_RETENTION`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_retention_secs: Option<u64>,
}

impl Config {
    /// How long a client may go unseen before it is stale.
    pub fn stale_after(&self) -> std::time::Duration {
        self.stale_after_secs
            .map(std::time::Duration::from_secs)
            .unwrap_or(invsync_store::DEFAULT_STALE_AFTER)
    }

    /// After how long unseen a client is deleted, when the site deletes them at all.
    pub fn delete_after(&self) -> Option<std::time::Duration> {
        self.delete_after_secs.map(std::time::Duration::from_secs)
    }

    /// How long history (and ended requests, and deleted clients) is kept.
    pub fn history_retention(&self) -> std::time::Duration {
        self.history_retention_secs
            .map(std::time::Duration::from_secs)
            .unwrap_or(crate::lifecycle::DEFAULT_RETENTION)
    }

    /// How long a resync request may wait to be picked up before it expires.
    pub fn request_expiry(&self) -> std::time::Duration {
        self.request_expiry_secs
            .map(std::time::Duration::from_secs)
            .unwrap_or(invsync_store::DEFAULT_REQUEST_EXPIRY)
    }

    /// Whether enrollments of known machines take their records over (on unless turned off).
    pub fn merge_duplicates(&self) -> bool {
        self.merge_duplicates.unwrap_or(true)
    }

    /// The oldest agent version not flagged, if one is set. A value that does not parse (the
    /// file edited by hand) is refused with the file's name rather than ignored.
    pub fn min_agent_version(&self) -> Result<Option<invsync_proto::AgentVersion>> {
        self.min_agent_version
            .as_deref()
            .map(|raw| {
                raw.parse()
                    .map_err(|e: String| anyhow!("config.json: min_agent_version: {e}"))
            })
            .transpose()
    }
}

/// Bounds on requests, each refused with a 4xx naming the limit, before anything is stored,
/// and on the connections requests arrive on (SECURITY.md, "Connection limits").
/// The defaults are far above any real host (a Debian host with everything installed has about
/// 6,000 packages, ~1.2 MB of report JSON) and far below what would hurt the site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Request body as sent (compressed or not).
    pub max_body_bytes: usize,
    /// Request body after decompression.
    pub max_decoded_bytes: usize,
    /// Items in one report (or upserted plus removed in one delta).
    pub max_items: usize,
    /// Attributes of one item.
    pub max_attrs: usize,
    /// Length of an item key or attribute name, in bytes.
    pub max_key_len: usize,
    /// Length of an attribute value, in bytes.
    pub max_value_len: usize,
    /// Compressed bodies of more than `api::decode::INLINE_MAX` decoded bytes decoded at once,
    /// each on a thread of its own; each holds up to `max_decoded_bytes` while it is decoded
    /// and parsed, so this bounds their memory (decoding is CPU work: more threads than cores
    /// gain nothing).
    pub max_parallel_decodes: usize,
    /// Failed credential checks (wrong tokens, keys, secrets, console logins) one remote
    /// address may make per minute before its refusals become 429 (`api::throttle`).
    pub auth_failures_per_minute: u32,
    /// Seconds a client has to send a request's head, and again to send its body once the
    /// head arrived (plus a second for every `min_body_rate` bytes of body it sent); a
    /// connection over it is closed. A parked long-poll is not cut: its request arrived.
    pub request_timeout_secs: u64,
    /// Bytes per second that a body too long to arrive within `request_timeout_secs` must keep
    /// up on average.
    pub min_body_rate: u64,
    /// Open connections at most; further ones are closed as soon as they are accepted. Never
    /// more than the descriptor limit leaves after a reserve for the database and log files.
    pub max_connections: usize,
    /// Connections one remote address may hold open while none of their requests has
    /// authenticated yet (an agent's, child site's or administrator's token, the enrollment
    /// secret, a console session), and never more than half of the connection bound; 0: no
    /// bound.
    pub max_unauthenticated_per_address: usize,
    /// Seconds a stopping server waits for in-flight requests before it drops their
    /// connections.
    pub shutdown_grace_secs: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 16 * 1024 * 1024,
            max_decoded_bytes: 64 * 1024 * 1024,
            max_items: 100_000,
            max_attrs: 64,
            max_key_len: 512,
            max_value_len: 4096,
            max_parallel_decodes: 2,
            auth_failures_per_minute: 60,
            request_timeout_secs: 30,
            // An agent's full report, ~1.2 MB of JSON uncompressed, arrives within the timeout
            // plus 75 s at this rate: a slow link is served, a trickle is not.
            min_body_rate: 16 * 1024,
            // SPEC section 10: 10,000 connected agents, with room for their reconnections, the
            // administrators and the monitoring.
            max_connections: 20_000,
            // A browser opens about six; a NAT of agents, or the load generator, rarely has more
            // than a few dozen connecting at the same instant (each authenticates with its
            // first request); a flood from one address holds no more than this, for no longer
            // than the request deadline.
            max_unauthenticated_per_address: 256,
            shutdown_grace_secs: 10,
        }
    }
}

/// Where a child site forwards to, and the token it presents there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentConfig {
    pub url: String,
    pub token: String,
    /// The CA certificate (PEM, absolute path) an `https://` parent's certificate must chain
    /// to (`invsite init --parent-ca-cert`); absent: the built-in Mozilla roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

/// A site's TLS files. Relative paths are relative to the data directory (what
/// `init --tls self-signed` writes, so the directory can move); `init --tls-cert` stores
/// absolute ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFiles {
    /// The certificate chain (PEM), the site's certificate first.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA certificate (PEM) clients must trust: `tls/ca.pem` of a self-signed setup, or
    /// `init --tls-ca`. The tools on the site server use it; absent: the Mozilla roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

/// The database a site keeps its inventory in, as `Config::db` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// `site.db` in the data directory.
    Sqlite,
    /// A PostgreSQL database, by its `postgres://` or `postgresql://` URL.
    Postgres(String),
}

impl Database {
    /// Parses `--db` / `Config::db`, refusing anything but `sqlite` and a PostgreSQL URL.
    pub fn parse(db: &str) -> Result<Database, String> {
        if db == "sqlite" {
            return Ok(Database::Sqlite);
        }
        if (db.starts_with("postgres://") || db.starts_with("postgresql://"))
            && db.len() <= 2048
            && !db.chars().any(char::is_control)
        {
            return Ok(Database::Postgres(db.to_string()));
        }
        Err(format!(
            "{:?} is neither `sqlite` nor a PostgreSQL URL like postgres://user@host:5432/dbname",
            redact_url(db)
        ))
    }

    /// What to call the database in messages: the file, or the URL without its password.
    pub fn describe(&self, dir: &SiteDir) -> String {
        match self {
            Database::Sqlite => format!("SQLite database {}", dir.sqlite_path().display()),
            Database::Postgres(url) => format!("PostgreSQL database {}", redact_url(url)),
        }
    }
}

/// Opens the store a site's configuration names: `invsite serve`, and the tools that reach the
/// database directly while the server is down.
pub async fn open_store(dir: &SiteDir, config: &Config) -> Result<Store> {
    let db = Database::parse(&config.db)
        .map_err(|e| anyhow!("{}: db {e}", dir.config_path().display()))?;
    let opened = match &db {
        Database::Sqlite => Store::open_sqlite(&dir.sqlite_path()).await,
        Database::Postgres(url) => Store::open_postgres(url).await,
    };
    let store = opened.with_context(|| format!("cannot open the site's {}", db.describe(dir)))?;
    store.set_request_expiry(config.request_expiry());
    store.set_merge_duplicates(config.merge_duplicates());
    store.set_min_agent_version(config.min_agent_version()?);
    store.set_stale_after(config.stale_after());
    Ok(store)
}

/// Paths inside one site data directory.
#[derive(Debug, Clone)]
pub struct SiteDir {
    pub root: PathBuf,
}

impl SiteDir {
    /// The directory from `--data-dir`, else `$INVSITE_DIR`, else `/var/lib/invsite`.
    pub fn resolve(flag: Option<&Path>) -> SiteDir {
        let root = match flag {
            Some(p) => p.to_path_buf(),
            None => std::env::var_os("INVSITE_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR)),
        };
        SiteDir { root }
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }
    pub fn admin_token_path(&self) -> PathBuf {
        self.root.join("admin.token")
    }
    pub fn enroll_secret_path(&self) -> PathBuf {
        self.root.join("enroll.secret")
    }
    pub fn sqlite_path(&self) -> PathBuf {
        self.root.join("site.db")
    }
    /// `cap-signing.key`: the site's Ed25519 key for the file-share CAP (`crate::signing`).
    pub fn signing_key_path(&self) -> PathBuf {
        self.root.join("cap-signing.key")
    }
    pub fn serve_addr_path(&self) -> PathBuf {
        self.root.join("serve.addr")
    }
    /// `tls/`, where `init --tls self-signed` keeps the site's CA, certificate and key.
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }
    /// A path from the configuration: relative ones are below the data directory.
    pub fn path_of(&self, path: &Path) -> PathBuf {
        self.root.join(path)
    }
    /// The CA certificate the tools trust when the site serves TLS, if the configuration names
    /// one.
    pub fn tls_ca(&self, config: &Config) -> Option<PathBuf> {
        config
            .tls
            .as_ref()
            .and_then(|t| t.ca.as_deref())
            .map(|p| self.path_of(p))
    }

    /// Refuses, before `init` does anything (or asks a parent anything), a data directory that
    /// already holds a site, or anything at all: `init` puts a whole site there in one rename
    /// ([`SiteDir::stage`], [`SiteDir::commit`]), which the system allows only over nothing or
    /// an empty directory. An earlier version's failed `init` could leave `site.db` alone
    /// there; it is not removed here, since a site whose `config.json` was deleted by mistake
    /// looks the same.
    pub fn check_free(&self) -> Result<()> {
        if self.config_path().exists() {
            return Err(Exit::usage(format!(
                "{} already holds a site; choose another --data-dir or remove it first",
                self.root.display()
            ))
            .into());
        }
        match fs::read_dir(&self.root) {
            Ok(mut entries) => {
                if let Some(entry) = entries.next() {
                    let first = entry
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .unwrap_or_default();
                    return Err(Exit::usage(format!(
                        "{} is not empty (it holds {first:?}) but holds no site configuration; \
                         `invsite init` creates a site only in a new or empty directory: choose another \
                         --data-dir, or remove what is there if it is not needed",
                        self.root.display()
                    ))
                    .into());
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(Exit::usage(format!(
                "{} is a file, not a directory; choose another --data-dir",
                self.root.display()
            ))
            .into()),
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("cannot read {}", self.root.display())))
            }
        }
    }

    /// A new, empty directory (mode 0700) beside this one where `init` builds the site, so that
    /// a crash or a failure half-way leaves no half-made site at the data directory: `serve`
    /// would call it "not a site server" and a second `init` would refuse it. A staging
    /// directory left by an earlier failed `init` is removed first (nothing refers to it).
    pub fn stage(&self) -> Result<SiteDir> {
        let name = self.root.file_name().ok_or_else(|| {
            Exit::usage(format!(
                "--data-dir {} names no directory",
                self.root.display()
            ))
        })?;
        let staging = self
            .root
            .with_file_name(format!(".{}.init-partial", name.to_string_lossy()));
        match fs::remove_dir_all(&staging) {
            Ok(()) => {
                tracing::info!(dir = %staging.display(), "Removed what an earlier failed init left.")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("cannot remove {}", staging.display()))
                );
            }
        }
        if let Some(parent) = staging.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .with_context(|| format!("cannot create the data directory {}", staging.display()))?;
        fs::set_permissions(&staging, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set mode 0700 on {}", staging.display()))?;
        Ok(SiteDir { root: staging })
    }

    /// Moves a site built in `staging` ([`SiteDir::stage`]) to this directory in one rename:
    /// before it there is no site here, after it a whole one. The rename replaces an empty
    /// directory (one made for the site in advance) and fails over anything else.
    pub fn commit(&self, staging: &SiteDir) -> Result<()> {
        fs::rename(&staging.root, &self.root).map_err(|e| {
            let _ = fs::remove_dir_all(&staging.root);
            anyhow::Error::new(e).context(format!(
                "cannot move the new site into {} (did something else create it meanwhile?)",
                self.root.display()
            ))
        })?;
        // The rename is durable once the directory that holds it is synced.
        if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty())
            && let Ok(d) = fs::File::open(parent)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Reads `config.json`, or says this is not a site server (exit 3).
    pub fn config(&self) -> Result<Config> {
        let path = self.config_path();
        let raw = fs::read_to_string(&path).map_err(|e| {
            Exit::new(
                Code::NotSiteServer,
                format!(
                    "this is not a site server: no site data directory at {} ({}); \
                     give --data-dir or set INVSITE_DIR, or create a site with `invsite init`",
                    self.root.display(),
                    short_io(&e)
                ),
            )
        })?;
        serde_json::from_str(&raw)
            .with_context(|| format!("{} is not a valid site configuration", path.display()))
    }

    pub fn write_config(&self, config: &Config) -> Result<()> {
        let json = serde_json::to_string_pretty(config)?;
        write_private(&self.config_path(), json.as_bytes())
    }

    /// The admin token, or exit 3 when it cannot be read (only a site server's administrator
    /// can read it, which is why `invsync` and `setevnt` run only on a site server).
    pub fn admin_token(&self) -> Result<String> {
        read_secret(&self.admin_token_path()).map_err(|e| {
            Exit::new(
                Code::NotSiteServer,
                format!(
                    "cannot read the admin token {} ({}); run this on the site server as its administrator",
                    self.admin_token_path().display(),
                    short_io(&e)
                ),
            )
            .into()
        })
    }

    /// Refuses a data directory or secret file that others can read: the admin token and the
    /// enrollment secret are the keys to the site, and the configuration holds the parent
    /// token.
    pub fn check_permissions(&self) -> Result<()> {
        let mut loose = Vec::new();
        for (path, wanted) in [
            (self.root.clone(), 0o700),
            (self.admin_token_path(), 0o600),
            (self.enroll_secret_path(), 0o600),
            (self.config_path(), 0o600),
            (self.tls_dir(), 0o700),
            (self.tls_dir().join("key.pem"), 0o600),
            (self.signing_key_path(), 0o600),
        ] {
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                loose.push(format!(
                    "chmod {wanted:o} {}   # is {mode:o}",
                    path.display()
                ));
            }
        }
        if loose.is_empty() {
            return Ok(());
        }
        Err(Exit::new(
            Code::Failure,
            format!(
                "refusing to start: other users can read the site's secrets. Fix it with:\n  {}",
                loose.join("\n  ")
            ),
        )
        .into())
    }

    pub fn enroll_secret(&self) -> Result<String> {
        read_secret(&self.enroll_secret_path()).with_context(|| {
            format!(
                "cannot read the enrollment secret {}",
                self.enroll_secret_path().display()
            )
        })
    }

    /// The URL of the running server: `serve.addr` when a server wrote it (a URL when it
    /// serves TLS, else the bare address), else the configured listen address, with
    /// `https://` when the configuration has TLS.
    pub fn base_url(&self, config: &Config) -> String {
        let written = fs::read_to_string(self.serve_addr_path())
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        match written {
            Some(url) if url.contains("://") => url,
            Some(addr) => format!("http://{addr}"),
            None => {
                let scheme = if config.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}", local_address(&config.listen))
            }
        }
    }
}

/// The address a tool on the site server connects to for a listen address: the loopback
/// address instead of "any" (0.0.0.0 or ::), which a certificate cannot name.
pub fn local_address(listen: &str) -> String {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            let ip: std::net::IpAddr = if a.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            std::net::SocketAddr::new(ip, a.port()).to_string()
        }
        _ => listen.to_string(),
    }
}

fn short_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "not found".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

fn read_secret(path: &Path) -> std::io::Result<String> {
    let s = fs::read_to_string(path)?;
    let s = s.trim().to_string();
    if s.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "file is empty",
        ));
    }
    Ok(s)
}

/// Writes a file readable only by its owner (mode 0600), atomically: a reader never sees a
/// half-written token.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_sqlite_or_a_postgres_url() {
        assert_eq!(Database::parse("sqlite"), Ok(Database::Sqlite));
        let url = "postgres://inv@db.example:5432/inventory";
        assert_eq!(
            Database::parse(url),
            Ok(Database::Postgres(url.to_string()))
        );
        assert!(Database::parse("postgresql://localhost/inv").is_ok());
        for bad in [
            "",
            "SQLite",
            "mysql://root@localhost/x",
            "postgres://a\nb",
            "/var/lib/site.db",
        ] {
            let err = Database::parse(bad).unwrap_err();
            assert!(
                err.contains("neither `sqlite` nor a PostgreSQL URL"),
                "{bad}: {err}"
            );
        }
        // A refused URL is echoed without its password.
        let err = Database::parse("postgres://inv:hunter2@db/x\n").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn redact_url_hides_only_the_password() {
        assert_eq!(
            redact_url("postgres://inv:s3cr3t@db:5432/x"),
            "postgres://inv:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://inv@db/x"), "postgres://inv@db/x");
        assert_eq!(
            redact_url("postgres://db/x?user=a"),
            "postgres://db/x?user=a"
        );
        // An '@' in the password: the userinfo ends at the last '@' of the authority.
        assert_eq!(
            redact_url("postgres://u:p@ss@db/x"),
            "postgres://u:***@db/x"
        );
        assert_eq!(redact_url("sqlite"), "sqlite");
    }

    #[test]
    fn missing_directory_is_not_a_site_server() {
        let dir = SiteDir {
            root: PathBuf::from("/nonexistent-invsite-dir"),
        };
        let err = dir.config().unwrap_err();
        let exit = err.downcast_ref::<Exit>().unwrap();
        assert_eq!(exit.code, Code::NotSiteServer);
        assert!(
            exit.message.contains("/nonexistent-invsite-dir"),
            "{}",
            exit.message
        );
    }

    #[test]
    fn private_files_are_0600() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.token");
        write_private(&p, b"secret\n").unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_secret(&p).unwrap(), "secret");
    }
}
