//! The arguments of `invsite quickstart`, which creates a site on SQLite under
//! `./invsync-quickstart/site` (or reuses it), serves it, enrolls this machine's own agent,
//! runs its first cycle and keeps both running until Ctrl-C. They stay in `invsite`'s clap
//! tree so its command line, help and man page are the site's; the command itself runs a site
//! and an agent, so it lives where both are dependencies: `crates/cli/src/quickstart.rs`,
//! which `invsite`'s `main` hands these arguments to (see [`super::try_main`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::datadir::DEFAULT_LISTEN;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder for the site and the agent
    #[arg(long, value_name = "DIR", default_value = "invsync-quickstart")]
    pub dir: PathBuf,
    /// Address to serve on
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// How often the local agent cycles
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime_duration)]
    pub interval: Duration,
    /// Root the local agent collects under
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

fn humantime_duration(raw: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(raw).map_err(|e| format!("{e} (e.g. 30s, 5m, 1h)"))?;
    if d.is_zero() {
        return Err("must be longer than zero".to_string());
    }
    Ok(d)
}
