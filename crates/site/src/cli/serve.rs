//! `invsite serve`: run the site until SIGTERM or SIGINT, then shut down gracefully.

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
}

pub async fn apply(args: Args) -> Result<()> {
    let dir = args.data_dir.dir();
    let opts = BindOptions { listen: args.listen, insecure_http: args.insecure_http };
    let server = Server::bind(&dir, &opts).await?;
    // Printed on stdout so scripts (and tests) that start on port 0 learn the address.
    println!("invsite {} serving on http://{}", server.state().site_code, server.local_addr());
    server.serve(shutdown_signal()).await
}
