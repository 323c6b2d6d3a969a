//! `invsite init`: create a site's data directory, database, admin token and enrollment
//! secret.

use std::net::SocketAddr;

use anyhow::Result;
use invsync_proto::exit::Exit;
use invsync_proto::{SiteCode, Timestamp};
use invsync_store::{SiteMeta, Store};

use super::DataDirArg;
use crate::datadir::{write_private, Config, SiteDir, DEFAULT_LISTEN};
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
    /// Database: `sqlite` (embedded, in the data directory)
    #[arg(long, value_name = "DB", default_value = "sqlite")]
    pub db: String,
}

/// What `init` needs, also used by the quickstart.
pub struct InitOptions {
    pub site_code: SiteCode,
    pub name: String,
    pub listen: String,
    pub db: String,
}

pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
        return Err(Exit::usage("--name must be 1 to 80 characters without control characters").into());
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
    if opts.db != "sqlite" {
        return Err(Exit::usage(format!(
            "--db {:?}: this build supports `sqlite` only (PostgreSQL comes with a later release)",
            opts.db
        ))
        .into());
    }
    dir.create()?;
    let config = Config {
        site_code: opts.site_code.clone(),
        name: opts.name.clone(),
        listen: opts.listen.clone(),
        db: opts.db.clone(),
    };
    let meta = SiteMeta { code: opts.site_code.clone(), name: opts.name.clone(), created_at: Timestamp::now() };
    Store::create_sqlite(&dir.sqlite_path(), &meta).await?;
    write_private(&dir.admin_token_path(), format!("{}\n", random_hex()).as_bytes())?;
    write_private(&dir.enroll_secret_path(), format!("{}\n", random_hex()).as_bytes())?;
    // The configuration goes last: its presence is what makes the directory a site, so a
    // failed init leaves no half-made site behind that later commands would trust.
    dir.write_config(&config)?;
    Ok(config)
}

pub async fn apply(args: Args) -> Result<()> {
    let dir = args.data_dir.dir();
    let name = args.name.unwrap_or_else(|| format!("Site {}", args.site_code));
    let opts = InitOptions { site_code: args.site_code, name, listen: args.listen, db: args.db };
    let config = create_site(&dir, &opts).await?;
    let d = dir.root.display();
    println!("Created site {} ({}) in {d}.", config.site_code, config.name);
    println!("Next:");
    println!("  invsite serve --data-dir {d}                 # listens on {}", config.listen);
    println!("  invsite enroll-secret --data-dir {d}         # the secret agents enroll with");
    println!("  invagent enroll --site http://{} --secret <secret>", config.listen);
    Ok(())
}
