//! The `invsite` command line: one file per subcommand, each with its clap arguments and an
//! `apply` that does the work. `try_main` is what the thin `invsite` binary calls. The one
//! exception is `quickstart`, which runs an agent too: its arguments are here, and `try_main`
//! hands them to the function the binary gives it (`crates/cli/src/quickstart.rs`), so the
//! site does not depend on the agent.

mod audit;
mod backup;
mod cap_sync;
mod child_token;
mod clients;
mod config;
mod delete;
mod history;
mod import;
mod init;
mod offline_enroll;
mod quickstart;
mod revoke;
mod secrets;
mod serve;
mod show;
mod sites;
mod user;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use invsync_proto::exit::Exit;

use crate::datadir::SiteDir;

pub use init::{InitOptions, create_site};
pub use quickstart::Args as QuickstartArgs;

#[derive(Debug, Parser)]
#[command(
    name = "invsite",
    version,
    about = "invsync site server: CAP for agents, inventory database, admin API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The data directory flag every subcommand shares.
#[derive(Debug, clap::Args)]
pub struct DataDirArg {
    /// Site data directory [default: $INVSITE_DIR, else /var/lib/invsite]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArg {
    pub fn dir(&self) -> SiteDir {
        SiteDir::resolve(self.data_dir.as_deref())
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new site in a data directory.
    Init(init::Args),
    /// Serve the CAP and admin API until SIGTERM or SIGINT.
    Serve(serve::Args),
    /// Print the secret agents enroll with.
    EnrollSecret(secrets::EnrollSecretArgs),
    /// Print the admin token (HTTP: Authorization: Bearer …).
    AdminToken(secrets::Args),
    /// Make a client's key useless at once.
    Revoke(revoke::Args),
    /// Delete (retire) a client: revoke its key, drop its inventory and requests, and make the
    /// sites above forget it; its history stays for the retention period.
    Delete(delete::Args),
    /// Print the token a child site presents to this site.
    ChildToken(child_token::Args),
    /// Show or change settings of this site (limits, the agents' interval, whether it accepts
    /// requests from its parent); --show prints what `invsite serve` would use.
    Config(config::Args),
    /// Show this site and the tree of sites below it.
    Sites(sites::Args),
    /// List this site's clients.
    Clients(clients::Args),
    /// Show one client: inventory versions, items and requests.
    Show(show::Args),
    /// List the accepted changes of a client's inventory, newest first.
    History(history::Args),
    /// Write a consistent copy of the site's database to a file, while the site serves.
    Backup(backup::BackupArgs),
    /// Put a copy `invsite backup` wrote back in place (with the site stopped).
    Restore(backup::RestoreArgs),
    /// Create a site in ./invsync-quickstart, enroll this machine's agent, and serve.
    Quickstart(quickstart::Args),
    /// Import the agents' files from a file-share CAP directory and write their .cfg files.
    CapSync(cap_sync::Args),
    /// Enroll a client the site cannot reach: write its enrollment file for `invagent enroll
    /// --from-file`.
    OfflineEnroll(offline_enroll::Args),
    /// Import an inventory file from `invagent inventory hw|sw --out FILE` (a machine never
    /// enrolled).
    Import(import::Args),
    /// Manage the site's administrators: add (with a role and a personal API token), list,
    /// remove, rotate.
    User(user::Args),
    /// Show the audit trail: who did what, when, from where, at which site.
    Audit(audit::Args),
}

/// The clap definition of `invsite`, for the man page and shell completions the packages ship.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Parses the command line and runs the subcommand, `quickstart` through `quickstart` (which
/// runs a site and an agent, and so lives in a crate that depends on both). Usage errors come
/// back as an [`Exit`] with code 2; `--help` and `--version` print and succeed.
pub fn try_main(quickstart: impl FnOnce(QuickstartArgs) -> Result<()>) -> Result<()> {
    use clap::{CommandFactory, FromArgMatches};
    // Parsed through the matches, which also tell a value from the command line from one from
    // the environment (`invsite config --show` says which).
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (m, cli)));
    let (matches, cli) = match parsed {
        Ok(parsed) => parsed,
        Err(e) if !e.use_stderr() => {
            invsync_proto::out!("{e}")?;
            return Ok(());
        }
        Err(e) => return Err(Exit::usage(e.render().to_string().trim_end().to_string()).into()),
    };
    let sub = matches.subcommand().map(|(_, m)| m);
    match cli.command {
        Command::Init(a) => runtime()?.block_on(init::apply(a)),
        Command::Serve(a) => runtime()?.block_on(serve::apply(a, sub)),
        Command::EnrollSecret(a) => secrets::apply_enroll_secret(a),
        Command::AdminToken(a) => secrets::apply_admin_token(a),
        Command::Revoke(a) => runtime()?.block_on(revoke::apply(a)),
        Command::Delete(a) => delete::apply(a),
        Command::ChildToken(a) => runtime()?.block_on(child_token::apply(a)),
        Command::Config(a) => config::apply(a, sub),
        Command::Sites(a) => sites::apply(a),
        Command::Clients(a) => clients::apply(a),
        Command::Show(a) => show::apply(a),
        Command::History(a) => history::apply(a),
        Command::Backup(a) => runtime()?.block_on(backup::apply_backup(a)),
        Command::Restore(a) => runtime()?.block_on(backup::apply_restore(a)),
        Command::Quickstart(a) => quickstart(a),
        Command::CapSync(a) => runtime()?.block_on(cap_sync::apply(a)),
        Command::OfflineEnroll(a) => runtime()?.block_on(offline_enroll::apply(a)),
        Command::Import(a) => runtime()?.block_on(import::apply(a)),
        Command::User(a) => runtime()?.block_on(user::apply(a)),
        Command::Audit(a) => runtime()?.block_on(audit::apply(a)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
