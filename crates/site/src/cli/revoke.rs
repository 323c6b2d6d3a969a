//! `invsite revoke CLIENT`: make a client's key useless at once. Its inventory stays; the
//! machine can enroll again only with the enrollment secret (rotate it with `invsite
//! enroll-secret --rotate` to keep it out).

use anyhow::Result;
use invsync_proto::ClientName;
use invsync_proto::exit::{Code, Exit};
use invsync_store::StoreError;

use super::DataDirArg;
use crate::datadir::open_store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Client name
    #[arg(value_name = "CLIENT")]
    pub client: ClientName,
    #[command(flatten)]
    pub data_dir: DataDirArg,
}

pub async fn apply(args: Args) -> Result<()> {
    let dir = args.data_dir.dir();
    let config = dir.config()?;
    // Only the site's administrator (who can read the admin token) may revoke.
    dir.admin_token()?;
    // Straight to the database, running server or not: every request the server authenticates
    // reads the key hash from it, so the revocation holds from the next request on.
    let store = open_store(&dir, &config).await?;
    store.revoke(&args.client).await.map_err(|e| match e {
        StoreError::UnknownClient { .. } => Exit::new(
            Code::UnknownClient,
            format!(
                "unknown client {} at site {}; `invsite clients` lists them",
                args.client, config.site_code
            ),
        )
        .into(),
        other => anyhow::Error::new(other),
    })?;
    crate::audit::record(
        &store,
        &crate::audit::Actor::local(),
        invsync_proto::wire::AuditAction::Revoke,
        Some(args.client.to_string()),
        None,
    )
    .await;
    invsync_proto::outln!(
        "Revoked the key of {}: its agent is refused from its next request on. To keep the machine \
         from enrolling again, rotate the secret: invsite enroll-secret --rotate",
        args.client
    )?;
    Ok(())
}
