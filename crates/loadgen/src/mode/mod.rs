//! The modes, one file each, and the arguments they share. `connect` has its own arguments
//! ([`CommonArgs`]); `enroll`, `full`, `delta` and `checkin` share an agents file and the
//! driver in `drive.rs`; `verify` reads the agents file and checks the site against it.

pub mod cap_files;
pub mod checkin;
pub mod connect;
pub mod delta;
pub mod drive;
pub mod enroll;
pub mod full;
pub mod verify;

use std::path::PathBuf;
use std::time::Duration;

/// Arguments every mode takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// The site, as http://127.0.0.1:PORT (no other host is accepted)
    #[arg(long, value_name = "URL")]
    pub site: String,
    /// The site's data directory, for enroll.secret and admin.token
    #[arg(long, value_name = "DIR")]
    pub site_dir: PathBuf,
    /// Requests in flight at once while enrolling and opening connections
    #[arg(long, value_name = "C", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Simulated agents are named <PREFIX>00001, <PREFIX>00002, …
    #[arg(long, value_name = "PREFIX", default_value = "LG")]
    pub prefix: String,
    /// Software items in each simulated agent's inventory
    #[arg(long, value_name = "COUNT", default_value_t = 20)]
    pub items: usize,
    /// How long one request may take before it counts as failed
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Give up after this long in all
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = humantime::parse_duration)]
    pub time_limit: Duration,
    /// Print the results as JSON
    #[arg(long)]
    pub json: bool,
}
