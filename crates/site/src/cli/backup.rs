//! `invsite backup --to FILE` and `invsite restore --from FILE`: a consistent copy of an
//! SQLite site's database, taken while the site serves, and putting one back while it is
//! stopped. After a restore the agents heal the site in one cycle: a delta against a version
//! the restored database does not hold is answered "resync required", and the full report
//! that follows brings the client up to date (SPEC section 5).
//!
//! Only the database is copied: the data directory's other files (`config.json`, the admin
//! token, the enrollment secret, `tls/`) change only when an administrator changes them, and
//! are backed up with the directory. A PostgreSQL site is backed up with `pg_dump` (README).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use invsync_proto::exit::{Code, Exit};
use invsync_store::{Store, StoreError, redact_url};

use super::DataDirArg;
use crate::datadir::open_store;
use crate::datadir::{Database, SiteDir};

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// The file to write the copy to; it must not exist
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// A file `invsite backup` wrote for this site
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
}

/// The site's SQLite database, or the sentence for a PostgreSQL site.
fn sqlite_only(dir: &SiteDir, what: &str) -> Result<()> {
    let config = dir.config()?;
    // Only the site's administrator (who can read the admin token) may copy its database.
    dir.admin_token()?;
    match Database::parse(&config.db)
        .map_err(|e| anyhow::anyhow!("{}: db {e}", dir.config_path().display()))?
    {
        Database::Sqlite => Ok(()),
        Database::Postgres(url) => Err(Exit::usage(format!(
            "site {} keeps its inventory in PostgreSQL ({}); {what} it with PostgreSQL's tools: \
             pg_dump --format=custom --file FILE URL, and pg_restore --clean --dbname URL FILE \
             (the README's section on backups)",
            config.site_code,
            redact_url(&url)
        ))
        .into()),
    }
}

pub async fn apply_backup(args: BackupArgs) -> Result<()> {
    let dir = args.data_dir.dir();
    sqlite_only(&dir, "back up")?;
    let to = &args.to;
    if to.exists() {
        return Err(Exit::usage(format!(
            "--to {}: the file exists; give a new file name",
            to.display()
        ))
        .into());
    }
    // Written under a temporary name beside the target and renamed: a backup cut short is
    // never taken for a whole one.
    let partial = with_suffix(to, ".partial");
    let _ = fs::remove_file(&partial);
    let store = open_store(&dir, &dir.config()?).await?;
    let site = store.site().await?;
    let copied = store.backup_to(&partial).await;
    drop(store);
    if let Err(e) = copied {
        let _ = fs::remove_file(&partial);
        return Err(
            anyhow::Error::new(e).context(format!("cannot write the backup {}", partial.display()))
        );
    }
    finish_file(&partial, to)?;
    let size = fs::metadata(to).map(|m| m.len()).unwrap_or(0);
    invsync_proto::outln!(
        "Backed up site {} to {} ({size} bytes).",
        site.code,
        to.display()
    )?;
    Ok(())
}

pub async fn apply_restore(args: RestoreArgs) -> Result<()> {
    let dir = args.data_dir.dir();
    sqlite_only(&dir, "restore")?;
    let config = dir.config()?;
    if server_answers(&dir) {
        return Err(Exit::new(
            Code::Failure,
            format!(
                "invsite serve is running on {}; stop it first (systemctl stop invsite, or Ctrl-C), then restore",
                dir.root.display()
            ),
        )
        .into());
    }
    let from = &args.from;
    if !from.is_file() {
        return Err(Exit::usage(format!("--from {}: no such file", from.display())).into());
    }
    // The copy is checked (an invsync database of this site, migrated if an older release
    // wrote it) under a temporary name in the data directory, then renamed over site.db.
    let restoring = dir.root.join(".site.db.restoring");
    let _ = fs::remove_file(&restoring);
    fs::copy(from, &restoring)
        .with_context(|| format!("cannot copy {} into {}", from.display(), dir.root.display()))?;
    let checked = check_backup(&restoring, &config.site_code).await;
    for suffix in ["-wal", "-shm"] {
        let _ = fs::remove_file(with_suffix(&restoring, suffix));
    }
    if let Err(e) = checked {
        let _ = fs::remove_file(&restoring);
        return Err(e.context(format!(
            "--from {} is not a backup of this site",
            from.display()
        )));
    }
    fs::set_permissions(
        &restoring,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    fs::File::open(&restoring)?.sync_all()?;
    // The old database's write-ahead log belongs to it: replayed onto the restored file it
    // would corrupt it. A stopped site has none; a crashed one's goes with its database.
    let db = dir.sqlite_path();
    for suffix in ["-wal", "-shm"] {
        let _ = fs::remove_file(with_suffix(&db, suffix));
    }
    fs::rename(&restoring, &db).with_context(|| format!("cannot replace {}", db.display()))?;
    if let Ok(d) = fs::File::open(&dir.root) {
        let _ = d.sync_all();
    }
    invsync_proto::outln!(
        "Restored site {} from {}. Start invsite serve; each agent brings its client up to date at its next cycle.",
        config.site_code,
        from.display()
    )?;
    Ok(())
}

/// Opens the copy as a site database (which migrates it when an older release wrote it) and
/// checks that it belongs to `code`.
async fn check_backup(path: &Path, code: &invsync_proto::SiteCode) -> Result<()> {
    let store = Store::open_sqlite(path).await.map_err(|e| match e {
        StoreError::Database(m) => anyhow::anyhow!("not an invsync site database: {m}"),
        other => anyhow::Error::new(other),
    })?;
    let site = store.site().await?;
    drop(store);
    if &site.code != code {
        return Err(Exit::usage(format!(
            "it is a backup of site {}, and this is site {code}",
            site.code
        ))
        .into());
    }
    Ok(())
}

/// Whether an `invsite serve` of this directory answers: `serve.addr` names its address while
/// it serves (a stale file after a crash names an address nobody answers on).
fn server_answers(dir: &SiteDir) -> bool {
    let Ok(text) = fs::read_to_string(dir.serve_addr_path()) else {
        return false;
    };
    let addr = text.trim();
    let addr = addr.split_once("://").map_or(addr, |(_, a)| a);
    addr.parse::<std::net::SocketAddr>().is_ok_and(|a| {
        std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).is_ok()
    })
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Makes the finished copy private (it holds every client's inventory and key hashes),
/// durable, and visible under its name.
fn finish_file(partial: &Path, to: &Path) -> Result<()> {
    fs::set_permissions(partial, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    fs::File::open(partial)?.sync_all()?;
    fs::rename(partial, to)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), to.display()))?;
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(d) = fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}
