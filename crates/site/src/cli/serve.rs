//! `invsite serve`: run the site until SIGTERM or SIGINT, then shut down gracefully.

use std::path::PathBuf;

use anyhow::Result;

use super::DataDirArg;
use crate::server::{shutdown_signal, BindOptions, Server};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Listen here instead of the configured address (e.g. 127.0.0.1:0 for any free port)
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Allow plain HTTP on an address other than loopback
    #[arg(long)]
    pub insecure_http: bool,
    /// Serve TLS with this certificate chain (PEM) instead of the configured one
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

pub async fn apply(args: Args) -> Result<()> {
    let dir = args.data_dir.dir();
    let tls = args.tls_cert.zip(args.tls_key);
    let opts = BindOptions { listen: args.listen, insecure_http: args.insecure_http, tls };
    let server = Server::bind(&dir, &opts).await?;
    // Printed on stdout so scripts (and tests) that start on port 0 learn the address.
    invsync_proto::outln!("invsite {} serving on {}", server.state().site_code, server.url())?;
    // Under systemd (`Type=notify`, the packaged invsite.service) the unit counts as started
    // only now, with the database open and the listener bound, so units ordered after it and
    // `systemctl start` itself wait for a site that answers. Without $NOTIFY_SOCKET this does
    // nothing; a failure to tell systemd is not a reason to stop serving (systemd would time
    // the start out and say so).
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "Could not tell systemd that the site is ready.");
    }
    server
        .serve(async {
            shutdown_signal().await;
            // The graceful shutdown that follows can take a while (connections finish);
            // systemd shows the unit as deactivating meanwhile instead of active.
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        })
        .await
}
