//! `invsite delete CLIENT [--site CODE] [--json]`: delete (retire) one of this site's clients:
//! its key is revoked, its snapshots and pending requests go, the sites above forget it once
//! the tombstone is forwarded, and its history stays for the retention period (`invsite history
//! CLIENT --deleted`). Through the running server's admin API, else in the database; another
//! site's client exits 5 naming where to run it, an unknown one 4.

use anyhow::Result;
use invsync_proto::ClientName;

use super::DataDirArg;
use crate::access::{AccessOptions, SiteAccess};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Client name
    #[arg(value_name = "CLIENT")]
    pub client: ClientName,
    /// The owning site's code; deleting is done at the owning site, so another code exits 5
    /// with the command to run there
    #[arg(long, value_name = "CODE")]
    pub site: Option<invsync_proto::SiteCode>,
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Print JSON: { "client", "id", "site", "deleted_at" }
    #[arg(long)]
    pub json: bool,
}

pub fn apply(args: Args) -> Result<()> {
    let options = AccessOptions {
        tool: "invsite delete",
        note_fallback: false,
    };
    let mut site = SiteAccess::open(options, args.data_dir.data_dir.as_deref())?;
    let deleted = site.delete_client(&args.client, args.site.as_ref())?;
    if args.json {
        invsync_proto::outln!("{}", serde_json::to_string_pretty(&deleted)?)?;
    } else {
        invsync_proto::outln!(
            "Deleted {} (client id {}) at site {}: its key is revoked, its inventory and pending \
             requests are gone, and the sites above forget it once it is forwarded. Its history \
             is kept for the retention period: invsite history {} --deleted",
            deleted.client,
            deleted.id,
            deleted.site,
            deleted.client
        )?;
    }
    Ok(())
}
