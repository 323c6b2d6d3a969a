//! `invsite enroll-secret` and `invsite admin-token`: print the secrets kept in the data
//! directory, for the administrator to hand to agents and tools. `enroll-secret --rotate`
//! replaces the enrollment secret; enrolled clients keep their own keys, and a running site
//! reads the secret file at each enrollment, so the old secret stops working at once.

use anyhow::Result;

use super::DataDirArg;
use crate::datadir::write_private;
use crate::secret::random_hex;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub data_dir: DataDirArg,
}

#[derive(Debug, clap::Args)]
pub struct EnrollSecretArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Replace the secret with a new one (enrolled clients are not affected) and print it
    #[arg(long)]
    pub rotate: bool,
}

pub fn apply_enroll_secret(args: EnrollSecretArgs) -> Result<()> {
    let dir = args.data_dir.dir();
    dir.config()?;
    if args.rotate {
        // Reading the admin token first makes sure whoever rotates administers this site.
        dir.admin_token()?;
        let secret = random_hex();
        write_private(&dir.enroll_secret_path(), format!("{secret}\n").as_bytes())?;
        eprintln!(
            "The enrollment secret was replaced; agents enrolling from now on need the new one."
        );
        invsync_proto::outln!("{secret}")?;
        return Ok(());
    }
    invsync_proto::outln!("{}", dir.enroll_secret()?)?;
    Ok(())
}

pub fn apply_admin_token(args: Args) -> Result<()> {
    let dir = args.data_dir.dir();
    dir.config()?;
    invsync_proto::outln!("{}", dir.admin_token()?)?;
    Ok(())
}
