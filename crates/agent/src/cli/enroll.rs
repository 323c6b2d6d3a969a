//! `invagent enroll`: enroll this machine at a site.

use clap::Args;
use invsync_proto::ClientName;

use super::{DataDirArg, RootArg, exit_for, print_lines};
use crate::enroll::{EnrollOptions, enroll_with_ca};

#[derive(Debug, Clone, Args)]
pub struct EnrollArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// The site's URL, e.g. http://site.example:8350.
    #[arg(long, value_name = "URL")]
    pub site: String,
    /// The site's enrollment secret (`invsite enroll-secret`). Taking it from the environment
    /// keeps it out of the process list.
    #[arg(
        long,
        value_name = "S",
        env = "INVAGENT_SECRET",
        hide_env_values = true
    )]
    pub secret: String,
    /// The CA certificate (PEM) the site's certificate must chain to, for an https:// site:
    /// its `tls/ca.pem` when it was made with `invsite init --tls self-signed`. Without it,
    /// the built-in Mozilla roots. Remembered for later cycles.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// The client name (1-15 of A-Z 0-9 - _); by default the host name's first label.
    #[arg(long, value_name = "NAME")]
    pub name: Option<ClientName>,
    #[command(flatten)]
    pub root: RootArg,
}

/// Enrolls and prints who the agent now is.
pub fn apply(args: &EnrollArgs) -> anyhow::Result<()> {
    let opts = EnrollOptions {
        data_dir: args.data_dir.data_dir.clone(),
        site_url: args.site.clone(),
        secret: args.secret.clone(),
        name: args.name.clone(),
        root: args.root.root.clone(),
    };
    let response = enroll_with_ca(&opts, args.ca_cert.as_deref()).map_err(exit_for)?;
    let verb = if response.reenrolled {
        "re-enrolled"
    } else {
        "enrolled"
    };
    print_lines([format!(
        "{verb} as {} (client id {}) at site {}",
        response.name, response.client_id, response.site
    )])
}
