//! `invsite child-token CODE`: issue the token a child site presents to this site. The site
//! keeps only the token's hash; issuing a new token for a code replaces the old one.

use anyhow::Result;
use invsync_proto::wire::ChildToken;
use invsync_proto::{SiteCode, Timestamp};

use super::DataDirArg;
use crate::datadir::open_store;
use crate::secret::random_bytes;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The child site's code
    #[arg(value_name = "CODE")]
    pub code: SiteCode,
    #[command(flatten)]
    pub data_dir: DataDirArg,
}

pub async fn apply(args: Args) -> Result<()> {
    let dir = args.data_dir.dir();
    let config = dir.config()?;
    dir.admin_token()?;
    let store = open_store(&dir, &config).await?;
    let token = ChildToken {
        code: args.code.clone(),
        key: random_bytes(),
    };
    store
        .set_child_token(&args.code, token.key_hash(), Timestamp::now())
        .await
        .map_err(|e| match e {
            invsync_store::StoreError::CodeInUse(m) => invsync_proto::exit::Exit::usage(m).into(),
            other => anyhow::Error::new(other),
        })?;
    invsync_proto::outln!("{}", token.encode())?;
    eprintln!(
        "On the child: invsite init --site-code {} --parent <this site's URL> --parent-token <the line above> …",
        args.code
    );
    Ok(())
}
