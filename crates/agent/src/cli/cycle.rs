//! `invagent cycle`: run one cycle now and print what it did, one fact per line. When the
//! daemon (`invagent run`) is running on the same data directory, it is the daemon that cycles.

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
    // With the daemon running, ask it to cycle: two cycles on one state file would only wait
    // for each other's lock, and the daemon's result is the one that counts.
    if let Some(answer) = crate::trigger::ask_daemon(&args.data_dir.data_dir) {
        return match answer {
            Ok(lines) => print_lines(lines),
            Err(message) => Err(anyhow::anyhow!(
                "the running agent's cycle failed: {message}"
            )),
        };
    }
    let summary = cycle(&args.options()).map_err(exit_for)?;
    print_lines(summary.lines())
}
