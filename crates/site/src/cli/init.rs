//! `invsite init`: create a site's data directory, database, admin token and enrollment
//! secret, and with `--tls self-signed` a CA and a certificate for serving TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use invsync_proto::exit::Exit;
use invsync_proto::{SiteCode, Timestamp};
use invsync_store::{SiteMeta, Store};

use invsync_proto::wire::{ChildToken, SiteStatus};

use super::DataDirArg;
use crate::datadir::{
    Config, DEFAULT_LISTEN, Database, ParentConfig, SiteDir, TlsFiles, write_private,
};
use crate::parent::{ParentClient, ParentError};
use crate::secret::random_hex;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Site code: 3 characters of A-Z 0-9, e.g. S01
    #[arg(long, value_name = "CODE")]
    pub site_code: SiteCode,
    /// A name for people to read
    #[arg(long, value_name = "TEXT")]
    pub name: Option<String>,
    /// Address `invsite serve` listens on
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Database: `sqlite` (embedded, in the data directory) or the URL of an empty PostgreSQL
    /// database, `postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME`
    #[arg(long, value_name = "DB", default_value = "sqlite")]
    pub db: String,
    /// Make this a child site forwarding to the parent site at URL
    #[arg(long, value_name = "URL", requires = "parent_token")]
    pub parent: Option<String>,
    /// The token `invsite child-token CODE` printed at the parent
    #[arg(long, value_name = "TOKEN", requires = "parent")]
    pub parent_token: Option<String>,
    /// The CA certificate (PEM) an https:// parent's certificate chains to [default: the
    /// built-in Mozilla roots]
    #[arg(long, value_name = "FILE", requires = "parent")]
    pub parent_ca_cert: Option<PathBuf>,
    /// Serve TLS with a certificate made now: `self-signed` creates a CA and a certificate it
    /// signs in <data dir>/tls; agents enroll with `--ca-cert <data dir>/tls/ca.pem`
    #[arg(long, value_name = "MODE", value_enum, conflicts_with = "tls_cert")]
    pub tls: Option<TlsMode>,
    /// Serve TLS with this certificate chain (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The CA certificate (PEM) --tls-cert chains to, which the tools on this server trust
    /// [default: the built-in Mozilla roots]
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
    /// The URL this site announces to its parent [default: http://<its listen address>]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Queue resync requests the parent routes down (`invsync --via-child` there)
    #[arg(long)]
    pub accept_parent_requests: bool,
}

/// How `init` sets up TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsMode {
    /// A CA and a certificate it signs, made now
    SelfSigned,
}

/// The TLS a new site serves with.
#[derive(Debug, Clone)]
pub enum TlsInit {
    /// A CA and a certificate made by `init` (`--tls self-signed`).
    SelfSigned,
    /// Files the administrator has (`--tls-cert`, `--tls-key`, `--tls-ca`), absolute paths.
    Files(TlsFiles),
}

/// What `init` needs, also used by the quickstart.
pub struct InitOptions {
    pub site_code: SiteCode,
    pub name: String,
    pub listen: String,
    pub db: String,
    pub url: Option<String>,
    pub parent: Option<ParentConfig>,
    pub accept_parent_requests: bool,
    /// Plain HTTP when `None`.
    pub tls: Option<TlsInit>,
}

fn check_url(flag: &str, url: &str) -> Result<()> {
    if !(url.starts_with("http://") || url.starts_with("https://"))
        || url.len() > 2048
        || url.chars().any(char::is_control)
    {
        return Err(
            Exit::usage(format!("{flag} {url:?} is not an http:// or https:// URL")).into(),
        );
    }
    Ok(())
}

/// Checks a parent token's form and that it was issued for this site's code, before anything
/// is created.
fn check_parent(code: &SiteCode, parent: &ParentConfig) -> Result<()> {
    check_url("--parent", &parent.url)?;
    let Some(token) = ChildToken::parse(&parent.token) else {
        return Err(Exit::usage("--parent-token is not a child-site token (CODE.<64 hex digits>, from `invsite child-token CODE` at the parent)").into());
    };
    if &token.code != code {
        return Err(Exit::usage(format!(
            "--parent-token was issued for site {}, but this site is {code}; ask the parent for `invsite child-token {code}`",
            token.code
        ))
        .into());
    }
    Ok(())
}

pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
        return Err(
            Exit::usage("--name must be 1 to 80 characters without control characters").into(),
        );
    }
    Ok(())
}

pub async fn create_site(dir: &SiteDir, opts: &InitOptions) -> Result<Config> {
    check_name(&opts.name)?;
    if opts.listen.parse::<SocketAddr>().is_err() {
        return Err(Exit::usage(format!(
            "--listen {:?} is not an address like 127.0.0.1:8350",
            opts.listen
        ))
        .into());
    }
    if let Some(url) = &opts.url {
        check_url("--url", url)?;
    }
    if let Some(parent) = &opts.parent {
        check_parent(&opts.site_code, parent)?;
    }
    if let Some(TlsInit::Files(files)) = &opts.tls {
        crate::tls::server_config(&files.cert, &files.key)?;
        if let Some(ca) = &files.ca {
            invsync_client::tls::read_ca(ca).map_err(|e| Exit::usage(format!("--tls-ca: {e}")))?;
        }
    }
    let db = Database::parse(&opts.db).map_err(|e| Exit::usage(format!("--db {e}")))?;
    dir.check_free()?;
    // Everything is built in a staging directory and renamed into place at the end, so a
    // failure or a crash half-way (after a parent accepted this site, say) leaves nothing a
    // later `init` or `serve` would stumble on: running `init` again just works.
    let staging = dir.stage()?;
    let built = build_site(&staging, &db, opts).await;
    let config = match built {
        Ok(config) => config,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging.root);
            return Err(e);
        }
    };
    crate::failpoint::hit("init-before-commit");
    dir.commit(&staging)?;
    Ok(config)
}

/// Writes a whole site into `dir`, a fresh staging directory.
async fn build_site(dir: &SiteDir, db: &Database, opts: &InitOptions) -> Result<Config> {
    let config = Config {
        site_code: opts.site_code.clone(),
        name: opts.name.clone(),
        listen: opts.listen.clone(),
        db: opts.db.clone(),
        url: opts.url.clone(),
        parent: opts.parent.clone(),
        accept_parent_requests: opts.accept_parent_requests,
        limits: Default::default(),
        agent_interval_secs: None,
        request_expiry_secs: None,
        merge_duplicates: None,
        min_agent_version: None,
        stale_after_secs: None,
        delete_after_secs: None,
        history_retention_secs: None,
        tls: match &opts.tls {
            None => None,
            Some(TlsInit::Files(files)) => Some(files.clone()),
            Some(TlsInit::SelfSigned) => Some(crate::tls::create_self_signed(
                dir,
                &opts.site_code,
                &crate::tls::self_signed_names(&opts.listen, opts.url.as_deref()),
            )?),
        },
    };
    let meta = SiteMeta {
        code: opts.site_code.clone(),
        name: opts.name.clone(),
        created_at: Timestamp::now(),
    };
    let store = match db {
        Database::Sqlite => Store::create_sqlite(&dir.sqlite_path(), &meta).await,
        Database::Postgres(url) => Store::create_postgres(url, &meta).await,
    }
    .with_context(|| format!("cannot create the site's {}", db.describe(dir)))?;
    if opts.parent.is_some() {
        store.set_forwarding(true).await?;
    }
    // Dropping the last handle closes SQLite (its writer thread is joined), so the database
    // is whole on disk before the directory is renamed.
    drop(store);
    crate::failpoint::hit("init-after-store");
    write_private(
        &dir.admin_token_path(),
        format!("{}\n", random_hex()).as_bytes(),
    )?;
    write_private(
        &dir.enroll_secret_path(),
        format!("{}\n", random_hex()).as_bytes(),
    )?;
    crate::signing::create(dir)?;
    dir.write_config(&config)?;
    Ok(config)
}

pub async fn apply(args: Args) -> Result<()> {
    let dir = args.data_dir.dir();
    let name = args
        .name
        .unwrap_or_else(|| format!("Site {}", args.site_code));
    let parent = match (args.parent, args.parent_token) {
        (Some(url), Some(token)) => {
            let ca_cert = args
                .parent_ca_cert
                .as_deref()
                .map(|p| absolute("--parent-ca-cert", p))
                .transpose()?;
            if let Some(ca) = &ca_cert {
                invsync_client::tls::read_ca(ca)
                    .map_err(|e| Exit::usage(format!("--parent-ca-cert: {e}")))?;
            }
            Some(ParentConfig {
                url: url.trim_end_matches('/').to_string(),
                token,
                ca_cert,
            })
        }
        _ => None,
    };
    let tls = match (args.tls, args.tls_cert, args.tls_key) {
        (Some(TlsMode::SelfSigned), _, _) => Some(TlsInit::SelfSigned),
        (None, Some(cert), Some(key)) => Some(TlsInit::Files(TlsFiles {
            cert: absolute("--tls-cert", &cert)?,
            key: absolute("--tls-key", &key)?,
            ca: args
                .tls_ca
                .as_deref()
                .map(|p| absolute("--tls-ca", p))
                .transpose()?,
        })),
        _ => None,
    };
    let opts = InitOptions {
        site_code: args.site_code,
        name,
        listen: args.listen,
        db: args.db,
        url: args.url,
        parent,
        accept_parent_requests: args.accept_parent_requests,
        tls,
    };
    if let Some(parent) = &opts.parent {
        check_parent(&opts.site_code, parent)?;
        // A directory `init` would refuse is refused before the parent hears of this site.
        dir.check_free()?;
        hello_parent(&opts, parent).await?;
    }
    let config = create_site(&dir, &opts).await?;
    let d = dir.root.display();
    invsync_proto::outln!(
        "Created site {} ({}) in {d}.",
        config.site_code,
        config.name
    )?;
    if let Some(parent) = &config.parent {
        invsync_proto::outln!(
            "Every change this site accepts is forwarded to its parent at {}.",
            parent.url
        )?;
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let ca_flag = match dir.tls_ca(&config) {
        Some(ca) => {
            if let Some(TlsInit::SelfSigned) = opts.tls {
                let names = crate::tls::self_signed_names(&config.listen, config.url.as_deref());
                invsync_proto::outln!(
                    "Made a CA and a TLS certificate for {} in {}.",
                    names.join(", "),
                    dir.tls_dir().display()
                )?;
                invsync_proto::outln!(
                    "Agents need the CA certificate {} (give it to `invagent enroll --ca-cert`).",
                    ca.display()
                )?;
            }
            format!(" --ca-cert {}", ca.display())
        }
        None => String::new(),
    };
    invsync_proto::outln!("Next:")?;
    invsync_proto::outln!(
        "  invsite serve --data-dir {d}                 # listens on {scheme}://{}",
        config.listen
    )?;
    invsync_proto::outln!(
        "  invsite enroll-secret --data-dir {d}         # the secret agents enroll with"
    )?;
    invsync_proto::outln!(
        "  invagent enroll --site {scheme}://{} --secret <secret>{ca_flag}",
        config.listen
    )?;
    Ok(())
}

/// A path given at `init` as the absolute one the configuration keeps (`serve` may run from
/// another directory); it must exist.
fn absolute(flag: &str, path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path)
        .map_err(|e| Exit::usage(format!("{flag} {}: {e}", path.display())).into())
}

/// Asks the parent whether it accepts this site before creating anything: a wrong token, a
/// token for another code or a code already in use is refused now (exit 2), not discovered
/// later in the log. A parent that is down only earns a note: the outbox waits for it.
async fn hello_parent(opts: &InitOptions, parent: &ParentConfig) -> Result<()> {
    let status = SiteStatus {
        code: opts.site_code.clone(),
        name: opts.name.clone(),
        parent: None,
        url: opts.url.clone().or_else(|| {
            let scheme = if opts.tls.is_some() { "https" } else { "http" };
            Some(format!("{scheme}://{}", opts.listen))
        }),
        clients: 0,
        outbox_depth: 0,
        outbox_oldest: None,
        last_forwarded: None,
        accepts_parent_requests: opts.accept_parent_requests,
        reported_at: Timestamp::now(),
    };
    let client = ParentClient::new(parent)?;
    match tokio::task::spawn_blocking(move || client.hello(&status)).await? {
        Ok(welcome) => {
            invsync_proto::outln!("The parent site {} at {} accepted this site.", welcome.parent, parent.url)?;
            Ok(())
        }
        Err(ParentError::Refused(message)) => Err(Exit::usage(format!(
            "the parent site at {} refused this site: {message}",
            parent.url
        ))
        .into()),
        // A certificate the parent's CA did not sign will not become trusted by waiting.
        Err(ParentError::Unreachable { reason, .. }) if reason.contains("certificate") => Err(Exit::usage(format!(
            "cannot reach the parent site at {} over TLS: {reason}; give the CA certificate that signed \
             the parent's with --parent-ca-cert FILE",
            parent.url
        ))
        .into()),
        Err(e @ ParentError::Unreachable { .. }) => {
            eprintln!("note: {e}; this site forwards to it once it is reachable");
            Ok(())
        }
    }
}
