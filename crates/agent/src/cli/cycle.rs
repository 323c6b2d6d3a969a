//! `invagent cycle`: run one cycle now and print what it did, one fact per line. When the
//! daemon (`invagent run`) is running on the same data directory, it is the daemon that cycles
//! (through its own CAP directory, if it has one). With `--cap-dir`, an agent enrolled from an
//! enrollment file cycles through that directory, and one with a network site falls back to it
//! when the site is unreachable.

use clap::Args;

use super::{DataDirArg, RootArg, exit_for, print_lines};
use std::path::PathBuf;

use crate::cycle::CycleOptions;
use crate::fallback::cycle_via;

#[derive(Debug, Clone, Args)]
pub struct CycleArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    #[command(flatten)]
    pub root: RootArg,
    /// A file-share CAP directory (holding Clidata.box and Inventry.box): the only way to the
    /// site for an agent enrolled from an enrollment file, the fallback when the site is
    /// unreachable for one enrolled over the network.
    #[arg(long, value_name = "DIR", env = "INVAGENT_CAP_DIR")]
    pub cap_dir: Option<PathBuf>,
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
    let summary = cycle_via(&args.options(), args.cap_dir.as_deref()).map_err(exit_for)?;
    print_lines(summary.lines())
}
