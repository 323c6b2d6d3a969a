//! `invagent enroll`: enroll this machine at a site, over the network with the site's URL and
//! enrollment secret, or from an enrollment file (`--from-file`) with no network.

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use invsync_proto::ClientName;

use super::{DataDirArg, RootArg, exit_for, print_lines};
use crate::enroll::{EnrollOptions, enroll_with_ca};
use crate::offline::enroll::{FileEnrollOptions, enroll_from_file};
use invsync_proto::exit::Exit;

#[derive(Debug, Clone, Args)]
pub struct EnrollArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// The site's URL, e.g. http://site.example:8350.
    #[arg(long, value_name = "URL", required_unless_present = "from_file")]
    pub site: Option<String>,
    /// The site's enrollment secret (`invsite enroll-secret`). Taking it from the environment
    /// keeps it out of the process list.
    #[arg(
        long,
        value_name = "S",
        env = "INVAGENT_SECRET",
        hide_env_values = true,
        required_unless_present = "from_file"
    )]
    pub secret: Option<String>,
    /// The CA certificate (PEM) the site's certificate must chain to, for an https:// site:
    /// its `tls/ca.pem` when it was made with `invsite init --tls self-signed`. Without it,
    /// the built-in Mozilla roots. Remembered for later cycles.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// The client name (1-15 of A-Z 0-9 - _); by default the host name's first label.
    #[arg(long, value_name = "NAME")]
    pub name: Option<ClientName>,
    /// Enroll from the enrollment file `invsite offline-enroll CLIENT --out FILE` wrote, with
    /// no network: the agent then reports through a CAP directory (`--cap-dir`). The file
    /// holds the client's key; delete it once enrolled.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["site", "ca_cert", "name"]
    )]
    pub from_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub root: RootArg,
}

/// Enrolls and prints who the agent now is.
pub fn apply(args: &EnrollArgs, matches: Option<&ArgMatches>) -> anyhow::Result<()> {
    if let Some(file) = &args.from_file {
        // `--secret` conflicts only when typed: an INVAGENT_SECRET left in the environment of
        // a provisioning script must not stop an enrollment that does not use it.
        let typed = matches
            .and_then(|m| m.value_source("secret"))
            .is_some_and(|s| s == ValueSource::CommandLine);
        if typed || (matches.is_none() && args.secret.is_some()) {
            return Err(Exit::usage(
                "the argument '--from-file <FILE>' cannot be used with '--secret <S>': the \
                 enrollment file holds the credential",
            )
            .into());
        }
        let opts = FileEnrollOptions {
            data_dir: args.data_dir.data_dir.clone(),
            file: file.clone(),
            root: args.root.root.clone(),
        };
        let response = enroll_from_file(&opts).map_err(exit_for)?;
        return print_lines([format!(
            "enrolled as {} (client id {}) at site {} from {}; this agent reports through a CAP \
             directory (--cap-dir)",
            response.name,
            response.client_id,
            response.site,
            file.display()
        )]);
    }
    // clap requires both without --from-file; this refusal is for callers that build the
    // arguments by hand.
    let (Some(site), Some(secret)) = (&args.site, &args.secret) else {
        return Err(Exit::usage("give --site URL and --secret S, or --from-file FILE").into());
    };
    let opts = EnrollOptions {
        data_dir: args.data_dir.data_dir.clone(),
        site_url: site.clone(),
        secret: secret.clone(),
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
