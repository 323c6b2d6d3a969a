//! `invsite enroll-secret` and `invsite admin-token`: print the secrets kept in the data
//! directory, for the administrator to hand to agents and tools.

use anyhow::Result;

use super::DataDirArg;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub data_dir: DataDirArg,
}

pub fn apply_enroll_secret(args: Args) -> Result<()> {
    let dir = args.data_dir.dir();
    dir.config()?;
    println!("{}", dir.enroll_secret()?);
    Ok(())
}

pub fn apply_admin_token(args: Args) -> Result<()> {
    let dir = args.data_dir.dir();
    dir.config()?;
    println!("{}", dir.admin_token()?);
    Ok(())
}
