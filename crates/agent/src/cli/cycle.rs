//! `invagent cycle`: run one cycle now and print what it did, one fact per line.

use clap::Args;

use super::{DataDirArg, RootArg, exit_for, print_lines};
use crate::cycle::{CycleOptions, cycle};

#[derive(Debug, Clone, Args)]
pub struct CycleArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    #[command(flatten)]
    pub root: RootArg,
}

impl CycleArgs {
    pub fn options(&self) -> CycleOptions {
        CycleOptions {
            data_dir: self.data_dir.data_dir.clone(),
            root: self.root.root.clone(),
        }
    }
}

pub fn apply(args: &CycleArgs) -> anyhow::Result<()> {
    let summary = cycle(&args.options()).map_err(exit_for)?;
    print_lines(summary.lines())
}
