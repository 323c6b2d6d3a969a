//! `invagent run`: the daemon. SIGTERM and SIGINT set a flag that the loop checks, so the
//! cycle in progress finishes (its state saved) and the process exits 0; a second signal
//! kills the process at once, for an operator who does not want to wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;

use super::{DataDirArg, RootArg, exit_for};
use crate::run::{RunOptions, run};

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Time between cycles (1h, 30m, 90s, …), varied by ±10 % so agents spread out.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_interval)]
    pub interval: Duration,
    #[command(flatten)]
    pub root: RootArg,
}

/// A humantime duration that is not zero.
fn parse_interval(raw: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(raw).map_err(|e| format!("{e} (try 1h, 30m or 90s)"))?;
    if d.is_zero() {
        return Err("the interval must be longer than zero".to_string());
    }
    Ok(d)
}

/// Set by the signal handler; only the CLI uses it, so `run` itself stays free of globals.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    // SAFETY: signal() is async-signal-safe; restoring the default action makes a second
    // signal end the process immediately.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
    }
}

fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic and calls signal(), both async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
    }
}

pub fn apply(args: &RunArgs) -> anyhow::Result<()> {
    install_signal_handlers();
    let opts = RunOptions {
        cycle: crate::cycle::CycleOptions {
            data_dir: args.data_dir.data_dir.clone(),
            root: args.root.root.clone(),
        },
        interval: args.interval,
    };
    run(&opts, &STOP).map_err(exit_for)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_humantime_and_not_zero() {
        assert_eq!(parse_interval("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_interval("30s").unwrap(), Duration::from_secs(30));
        assert!(
            parse_interval("0s")
                .unwrap_err()
                .contains("longer than zero")
        );
        assert!(parse_interval("often").is_err());
    }
}
