//! `invsync cancel REQUEST_ID`: cancel a resync request that is still pending, so the client's
//! agent never receives it (state `cancelled`). A request already picked up completes as usual
//! (exit 1, saying so); cancelling twice is harmless (exit 0, saying it already was); an unknown
//! id exits 4; a request routed down to a site below (`invsync --via-child`) is held by the
//! owning site, where it is cancelled (exit 5, naming it).

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use invsync_proto::wire::{Cancelled, RequestState};

use invsync_site::access::{AccessOptions, SiteAccess};

#[derive(Debug, Parser)]
#[command(
    name = "invsync cancel",
    version,
    about = "Cancel a resync request that is still pending (not yet picked up by its client)",
    after_help = "`invsite show CLIENT` and `invsync hw|sw CLIENT` show request ids."
)]
pub struct Args {
    /// The word `cancel`
    #[arg(value_name = "cancel", value_parser = clap::builder::PossibleValuesParser::new(["cancel"]), hide = true)]
    pub command: String,
    /// The request id at this site (a whole number above zero)
    #[arg(value_name = "REQUEST_ID", value_parser = parse_id)]
    pub id: i64,
    /// Site data directory [default: $INVSITE_DIR, else /var/lib/invsite]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print the cancelled request as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn parse_id(raw: &str) -> Result<i64, String> {
    match raw.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(format!(
            "{raw:?} is not a request id; give the whole number above zero that `invsync` or `invsite show` printed"
        )),
    }
}

pub fn apply(args: &Args) -> Result<()> {
    let mut site = SiteAccess::open(
        AccessOptions {
            tool: "invsync",
            note_fallback: false,
        },
        args.data_dir.as_deref(),
    )?;
    let cancelled = site.cancel_request(args.id)?;
    if args.json {
        invsync_proto::outln!("{}", serde_json::to_string(&cancelled)?)?;
    } else {
        invsync_proto::outln!("{}", describe(&cancelled))?;
    }
    Ok(())
}

pub fn describe(c: &Cancelled) -> String {
    let r = &c.request;
    let at = r
        .completed_at
        .map(|t| t.rfc3339())
        .unwrap_or_else(|| "-".to_string());
    match (r.state, c.already_cancelled) {
        (RequestState::Expired, _) => format!(
            "Request {} ({} for {}) had already expired without being picked up; {} will not receive it.",
            r.id, r.class, c.client, c.client
        ),
        (_, true) => format!(
            "Request {} ({} for {}) was already cancelled (at {at}); nothing to do.",
            r.id, r.class, c.client
        ),
        (_, false) => format!(
            "Cancelled request {} ({} for {}); {} will not receive it.",
            r.id, r.class, c.client, c.client
        ),
    }
}
