//! `invsite user add|list|remove|rotate`: the site's administrators and their roles (issue 20,
//! item 6). Straight to the database, running server or not (every API request reads the
//! user's row, so a change holds from the next request on), as `local:<unix user>` in the
//! audit; only a user who can read the admin token may run it. A bad name, role or duration is
//! refused by clap (exit 2) before anything is opened. `add` and `rotate` print the token on
//! stdout (the explanation on stderr), so a script can capture it; it is never shown again.

use anyhow::Result;
use clap::Subcommand;
use invsync_proto::exit::{Code, Exit};
use invsync_proto::wire::{Role, UserIssued, UserName, UserView};
use invsync_proto::{Timestamp, outln};
use invsync_store::StoreError;

use super::DataDirArg;
use crate::audit::Actor;
use crate::datadir::open_store;
use crate::users::UserError;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user with a role and print its personal API token (shown only now).
    Add(AddArgs),
    /// List the users, their roles and when their tokens expire.
    List(ListArgs),
    /// Remove a user: its token stops working at once.
    Remove(NameArgs),
    /// Issue a user a new token (the old one stops working at once) and print it.
    Rotate(RotateArgs),
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// User name: 1 to 32 characters of a-z 0-9 - _, starting with a letter
    #[arg(value_name = "NAME")]
    pub name: UserName,
    /// viewer (reads everything), operator (also queues requests and events), admin (also
    /// deletes clients, manages users, changes configuration)
    #[arg(long, value_name = "viewer|operator|admin", value_parser = Role::parse)]
    pub role: Role,
    /// How long the token works (90d, 12h, …); without, it does not expire
    #[arg(long, value_name = "DURATION", value_parser = lifetime)]
    pub expires: Option<String>,
    /// Print JSON: {"user": {"name", "role", "created_at", "token_issued_at", "expires_at",
    /// "expired"}, "token"}
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data_dir: DataDirArg,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print JSON: [{"name", "role", "created_at", "token_issued_at", "expires_at", "expired"}]
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data_dir: DataDirArg,
}

#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// User name
    #[arg(value_name = "NAME")]
    pub name: UserName,
    #[command(flatten)]
    pub data_dir: DataDirArg,
}

#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// User name
    #[arg(value_name = "NAME")]
    pub name: UserName,
    /// How long the new token works (90d, 12h, …); without, as long as the old one did
    #[arg(long, value_name = "DURATION", value_parser = lifetime)]
    pub expires: Option<String>,
    /// Print JSON, as `add --json` does
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data_dir: DataDirArg,
}

/// Checks `--expires` while clap parses, so a bad one exits 2 before anything is opened.
fn lifetime(raw: &str) -> Result<String, String> {
    crate::users::parse_lifetime(raw).map(|_| raw.to_string())
}

fn refusal(e: UserError) -> anyhow::Error {
    match e {
        UserError::BadInput(m) => Exit::usage(m).into(),
        UserError::Store(s @ (StoreError::UserExists(_) | StoreError::UnknownUser(_))) => {
            Exit::new(Code::Failure, s.to_string()).into()
        }
        UserError::Store(s) => anyhow::Error::new(s),
    }
}

fn data_dir(command: &UserCommand) -> &DataDirArg {
    match command {
        UserCommand::Add(a) => &a.data_dir,
        UserCommand::List(a) => &a.data_dir,
        UserCommand::Remove(a) => &a.data_dir,
        UserCommand::Rotate(a) => &a.data_dir,
    }
}

pub async fn apply(args: Args) -> Result<()> {
    let dir = data_dir(&args.command).dir();
    let config = dir.config()?;
    // Only the site's administrator (who can read the admin token) manages users.
    dir.admin_token()?;
    let store = open_store(&dir, &config).await?;
    let actor = Actor::local();
    match args.command {
        UserCommand::Add(a) => {
            let issued = crate::users::add(
                &store,
                &actor,
                a.name.as_str(),
                a.role,
                a.expires.as_deref(),
            )
            .await
            .map_err(refusal)?;
            print_issued(&issued, a.json, "Added")
        }
        UserCommand::Rotate(a) => {
            let issued =
                crate::users::rotate(&store, &actor, a.name.as_str(), a.expires.as_deref())
                    .await
                    .map_err(refusal)?;
            print_issued(&issued, a.json, "Issued a new token to")
        }
        UserCommand::Remove(a) => {
            let name = crate::users::remove(&store, &actor, a.name.as_str())
                .await
                .map_err(refusal)?;
            outln!("Removed user {name}: its token no longer works.")?;
            Ok(())
        }
        UserCommand::List(a) => {
            let users = store.users(Timestamp::now()).await?;
            if a.json {
                outln!("{}", serde_json::to_string_pretty(&users)?)?;
            } else {
                invsync_proto::out!("{}", render(&users))?;
            }
            Ok(())
        }
    }
}

fn print_issued(issued: &UserIssued, json: bool, done: &str) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(issued)?)?;
        return Ok(());
    }
    let u = &issued.user;
    let expiry = match u.expires_at {
        Some(t) => format!("it expires {}", t.rfc3339()),
        None => "it does not expire".to_string(),
    };
    eprintln!(
        "{done} user {} ({}); {expiry}. Its token, shown only now (the site keeps only its hash), \
         goes in `Authorization: Bearer …` or the console's login:",
        u.name, u.role
    );
    outln!("{}", issued.token)?;
    Ok(())
}

pub fn render(users: &[UserView]) -> String {
    let mut out = format!(
        "{:<32}  {:<8}  {:<24}  {}\n",
        "NAME", "ROLE", "CREATED", "EXPIRES"
    );
    for u in users {
        let expires = match (u.expires_at, u.expired) {
            (Some(t), true) => format!("{} (expired)", t.rfc3339()),
            (Some(t), false) => t.rfc3339(),
            (None, _) => "never".to_string(),
        };
        out.push_str(&format!(
            "{:<32}  {:<8}  {:<24}  {}\n",
            u.name.as_str(),
            u.role.as_str(),
            u.created_at.rfc3339(),
            expires
        ));
    }
    out
}
