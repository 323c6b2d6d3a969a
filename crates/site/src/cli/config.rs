//! `invsite config`: show or change the settings of an existing site that may change after
//! `invsite init`. Today that is one: whether the site queues resync requests its parent routes
//! down (`invsync --via-child` at a site above), off unless the administrator of this site turns
//! it on, since it lets administrators of sites above act on this site's clients. A running
//! server reads its configuration when it starts, so a change takes effect at its next start;
//! the parent learns of it from the status the site reports then.

use anyhow::Result;

use super::DataDirArg;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Queue resync requests the parent routes down (`invsync --via-child` there): true or false
    #[arg(long, value_name = "true|false")]
    pub accept_parent_requests: Option<bool>,
}

fn on_off(v: bool) -> &'static str {
    if v { "on" } else { "off" }
}

pub fn apply(args: Args) -> Result<()> {
    let dir = args.data_dir.dir();
    let mut config = dir.config()?;
    let Some(accept) = args.accept_parent_requests else {
        println!("site {}: accept-parent-requests {}", config.site_code, on_off(config.accept_parent_requests));
        return Ok(());
    };
    if config.accept_parent_requests == accept {
        println!("site {}: accept-parent-requests is already {}.", config.site_code, on_off(accept));
        return Ok(());
    }
    config.accept_parent_requests = accept;
    dir.write_config(&config)?;
    tracing::info!(site = %config.site_code, accept, "Changed whether the site accepts requests from its parent.");
    println!("site {}: accept-parent-requests is now {}.", config.site_code, on_off(accept));
    if dir.serve_addr_path().exists() {
        println!("The running `invsite serve` uses it once restarted.");
    }
    Ok(())
}
