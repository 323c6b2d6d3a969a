//! `invagent run`: the daemon, and `invagent config`, which prints the settings `run` would use
//! and where each came from. Each setting comes from the command line, else the environment
//! (`INVAGENT_DIR`, `INVAGENT_INTERVAL`, `INVAGENT_ROOT`, `INVAGENT_SPLAY`,
//! `INVAGENT_CAP_DIR`), else the
//! configuration file (`--config`, `INVAGENT_CONFIG`, else `/etc/invagent/agent.toml` when it
//! exists), else its default; the site's interval (`invsite config --agent-interval`) replaces
//! the default interval, never one set here.
//!
//! SIGTERM and SIGINT set a flag that the loop checks, so the cycle in progress finishes (its
//! state saved) and the process exits 0; a second signal kills the process at once, for an
//! operator who does not want to wait.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{ArgMatches, Args};
use invsync_proto::exit::Exit;
use invsync_proto::settings::{FileValues, Setting, Source, given, layer, layer_optional, path};

use super::exit_for;
use crate::run::{RunOptions, run_via};

/// Where `invagent run` looks for its configuration file when none is given.
pub const DEFAULT_CONFIG: &str = "/etc/invagent/agent.toml";

/// The keys of the configuration file: the long flags of `invagent run`.
const KEYS: [&str; 5] = ["data_dir", "interval", "root", "splay", "cap_dir"];

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Configuration file (TOML; keys data_dir, interval, root, splay, cap_dir) [default:
    /// /etc/invagent/agent.toml when it exists]
    #[arg(long, value_name = "FILE", env = "INVAGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// The agent's data directory (state and credential) [default: /var/lib/invagent]
    #[arg(long, value_name = "DIR", env = "INVAGENT_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Time between cycles (1h, 30m, 90s, …), varied by ±10 % so agents spread out [default:
    /// the site's setting, else 1h]
    #[arg(long, value_name = "DURATION", env = "INVAGENT_INTERVAL", value_parser = parse_interval)]
    pub interval: Option<Duration>,
    /// The root directory the collectors read through [default: /]
    #[arg(long, value_name = "DIR", env = "INVAGENT_ROOT")]
    pub root: Option<PathBuf>,
    /// The first cycle after start waits a random time up to this, so a fleet that boots at
    /// once does not reach its site at once (0s: no wait) [default: 5m]
    #[arg(long, value_name = "DURATION", env = "INVAGENT_SPLAY", value_parser = parse_splay)]
    pub splay: Option<Duration>,
    /// A file-share CAP directory (holding Clidata.box and Inventry.box): the only way to the
    /// site for an agent enrolled from an enrollment file, the fallback when the site is
    /// unreachable for one enrolled over the network [default: none]
    #[arg(long, value_name = "DIR", env = "INVAGENT_CAP_DIR")]
    pub cap_dir: Option<PathBuf>,
}

/// `invagent config`: the settings `invagent run` would use with the same arguments.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Print JSON: each key with its value and source
    #[arg(long)]
    pub json: bool,
}

/// A humantime duration that is not zero.
fn parse_interval(raw: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(raw).map_err(|e| format!("{e} (try 1h, 30m or 90s)"))?;
    if d.is_zero() {
        return Err("the interval must be longer than zero".to_string());
    }
    Ok(d)
}

/// A humantime duration, zero allowed.
fn parse_splay(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw).map_err(|e| format!("{e} (try 5m, 30s or 0s)"))
}

/// The settings of `invagent run`, each with its source.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub config_file: Option<PathBuf>,
    pub data_dir: Setting<PathBuf>,
    pub interval: Setting<Duration>,
    pub root: Setting<PathBuf>,
    pub splay: Setting<Duration>,
    /// No default: without one, only the network site.
    pub cap_dir: Option<Setting<PathBuf>>,
}

impl RunConfig {
    /// Layers the command line (`matches` tells it from the environment), the file and the
    /// defaults.
    pub fn resolve(args: &RunArgs, matches: Option<&ArgMatches>) -> Result<RunConfig, Exit> {
        let file = FileValues::load(args.config.as_deref(), Path::new(DEFAULT_CONFIG), &KEYS)?;
        Ok(RunConfig {
            config_file: file.path.clone(),
            data_dir: layer(
                given(&args.data_dir, matches, "data_dir", "INVAGENT_DIR"),
                &file,
                "data_dir",
                path,
                || PathBuf::from("/var/lib/invagent"),
            )?,
            interval: layer(
                given(&args.interval, matches, "interval", "INVAGENT_INTERVAL"),
                &file,
                "interval",
                parse_interval,
                || Duration::from_secs(3600),
            )?,
            root: layer(
                given(&args.root, matches, "root", "INVAGENT_ROOT"),
                &file,
                "root",
                path,
                || PathBuf::from("/"),
            )?,
            splay: layer(
                given(&args.splay, matches, "splay", "INVAGENT_SPLAY"),
                &file,
                "splay",
                parse_splay,
                || Duration::from_secs(300),
            )?,
            cap_dir: layer_optional(
                given(&args.cap_dir, matches, "cap_dir", "INVAGENT_CAP_DIR"),
                &file,
                "cap_dir",
                path,
            )?,
        })
    }

    /// One line per key, `key = value   # source`, and the file read.
    pub fn lines(&self) -> Vec<String> {
        let dur = |d: &Duration| humantime::format_duration(*d).to_string();
        let mut interval_source = self.interval.source.to_string();
        if self.interval.source == Source::Default {
            interval_source.push_str(" (the site's setting replaces it, when it sends one)");
        }
        let rows = [
            (
                "data_dir",
                format!("{:?}", self.data_dir.value.display().to_string()),
                self.data_dir.source.to_string(),
            ),
            (
                "interval",
                format!("{:?}", dur(&self.interval.value)),
                interval_source,
            ),
            (
                "root",
                format!("{:?}", self.root.value.display().to_string()),
                self.root.source.to_string(),
            ),
            (
                "splay",
                format!("{:?}", dur(&self.splay.value)),
                self.splay.source.to_string(),
            ),
        ];
        let mut out: Vec<String> = rows
            .iter()
            .map(|(k, v, s)| format!("{k} = {v:<24} # {s}"))
            .collect();
        out.push(match &self.cap_dir {
            Some(c) => format!(
                "cap_dir = {:<24} # {}",
                format!("{:?}", c.value.display().to_string()),
                c.source
            ),
            None => "# cap_dir: none (default): the network site only".to_string(),
        });
        out.push(match &self.config_file {
            Some(p) => format!("# configuration file: {}", p.display()),
            None => format!("# configuration file: none ({DEFAULT_CONFIG} does not exist)"),
        });
        out
    }

    /// `{ "data_dir": { "value": …, "source": … }, …, "config_file": … }`.
    pub fn json(&self) -> serde_json::Value {
        let entry = |value: String, source: &Source| serde_json::json!({ "value": value, "source": source.to_string() });
        let dur = |d: &Duration| humantime::format_duration(*d).to_string();
        serde_json::json!({
            "data_dir": entry(self.data_dir.value.display().to_string(), &self.data_dir.source),
            "interval": entry(dur(&self.interval.value), &self.interval.source),
            "root": entry(self.root.value.display().to_string(), &self.root.source),
            "splay": entry(dur(&self.splay.value), &self.splay.source),
            "cap_dir": match &self.cap_dir {
                Some(c) => entry(c.value.display().to_string(), &c.source),
                None => serde_json::json!({ "value": null, "source": Source::Default.to_string() }),
            },
            "config_file": self.config_file.as_ref().map(|p| p.display().to_string()),
        })
    }
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

pub fn apply(args: &RunArgs, matches: Option<&ArgMatches>) -> anyhow::Result<()> {
    let config = RunConfig::resolve(args, matches)?;
    install_signal_handlers();
    let opts = RunOptions {
        cycle: crate::cycle::CycleOptions {
            data_dir: config.data_dir.value,
            root: config.root.value,
        },
        interval: config.interval.value,
        site_interval_applies: config.interval.source == Source::Default,
        splay: config.splay.value,
    };
    let cap_dir = config.cap_dir.map(|c| c.value);
    run_via(&opts, cap_dir.as_deref(), &STOP).map_err(exit_for)
}

pub fn apply_config(args: &ConfigArgs, matches: Option<&ArgMatches>) -> anyhow::Result<()> {
    let config = RunConfig::resolve(&args.run, matches)?;
    if args.json {
        invsync_proto::outln!("{}", serde_json::to_string_pretty(&config.json())?)?;
    } else {
        for line in config.lines() {
            invsync_proto::outln!("{line}")?;
        }
    }
    Ok(())
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
        assert_eq!(parse_splay("0s").unwrap(), Duration::ZERO);
    }
}
