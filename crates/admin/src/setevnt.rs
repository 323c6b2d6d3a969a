//! `setevnt CLIENT cycle|hinv|sinv`: the Set Client Event tool. It queues a wake-up the agent
//! acts on at its next contact with the site: `cycle` runs a cycle, `hinv` and `sinv` run the
//! hardware or software inventory.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use invsync_proto::ClientName;
use invsync_proto::wire::Event;

use crate::invsync::parse;
use invsync_site::access::{AccessOptions, SiteAccess};

#[derive(Debug, Parser)]
#[command(
    name = "setevnt",
    version,
    about = "Set Client Event: wake a client of this site now"
)]
pub struct Args {
    /// The client's NetBIOS-style name
    #[arg(value_name = "CLIENT")]
    pub client: ClientName,
    /// cycle (run a cycle), hinv (hardware inventory), sinv (software inventory)
    #[arg(value_name = "cycle|hinv|sinv", value_parser = parse_event)]
    pub event: Event,
    /// Site data directory [default: $INVSITE_DIR, else /var/lib/invsite]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print the queued event as JSON
    #[arg(long)]
    pub json: bool,
}

fn parse_event(raw: &str) -> Result<Event, String> {
    Event::parse(raw).ok_or_else(|| format!("{raw:?} is not an event; use cycle, hinv or sinv"))
}

/// The clap definition of `setevnt`, for the man page and shell completions the packages ship.
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

pub fn try_main() -> Result<()> {
    match parse::<Args>()? {
        Some(args) => apply(&args),
        None => Ok(()),
    }
}

pub fn apply(args: &Args) -> Result<()> {
    let mut site = SiteAccess::open(
        AccessOptions {
            tool: "setevnt",
            note_fallback: true,
        },
        args.data_dir.as_deref(),
    )?;
    let queued = site.request_event(&args.client, args.event)?;
    if args.json {
        invsync_proto::outln!("{}", serde_json::to_string(&queued)?)?;
    } else if queued.created {
        invsync_proto::outln!(
            "Queued event {} for {} (event {}); the agent acts on it at its next contact with site {}.",
            args.event.as_str(),
            queued.client,
            queued.id,
            site.code()
        )?;
    } else {
        invsync_proto::outln!(
            "Event {} for {} is already pending (event {}, queued {}); this is the same one.",
            args.event.as_str(),
            queued.client,
            queued.id,
            queued.requested_at
        )?;
    }
    Ok(())
}
