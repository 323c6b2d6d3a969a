//! `invsite serve`: run the site until SIGTERM or SIGINT, then shut down gracefully.
//!
//! Each setting comes from the command line, else the environment (`INVSITE_DIR`,
//! `INVSITE_LISTEN`, `INVSITE_INSECURE_HTTP`, `INVSITE_TLS_CERT`, `INVSITE_TLS_KEY`,
//! `INVSITE_CAP_DIR`), else the
//! configuration file (`--config`, `INVSITE_CONFIG`, else `/etc/invsite/site.toml` when it
//! exists; keys `data_dir`, `listen`, `insecure_http`, `tls_cert`, `tls_key`, `cap_dir`), else its
//! default; `invsite config --show` prints them with where each came from. What the site is
//! (its code, database, parent, limits) lives in its data directory's `config.json`, made by
//! `invsite init` and changed by `invsite config`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::ArgMatches;
use clap::parser::ValueSource;
use invsync_proto::exit::Exit;
use invsync_proto::settings::{FileValues, Setting, Source, given, layer, path};

use super::DataDirArg;
use crate::datadir::SiteDir;
use crate::server::{BindOptions, Server, shutdown_signal};

/// Where `invsite serve` looks for its configuration file when none is given.
pub const DEFAULT_CONFIG: &str = "/etc/invsite/site.toml";

/// The keys of the configuration file: the long flags of `invsite serve`.
const KEYS: [&str; 6] = [
    "data_dir",
    "listen",
    "insecure_http",
    "tls_cert",
    "tls_key",
    "cap_dir",
];

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    #[command(flatten)]
    pub flags: ServeFlags,
}

/// The flags of `invsite serve` besides `--data-dir` (`invsite config --show` takes them too).
#[derive(Debug, clap::Args)]
pub struct ServeFlags {
    /// Configuration file (TOML; keys data_dir, listen, insecure_http, tls_cert, tls_key, cap_dir)
    /// [default: /etc/invsite/site.toml when it exists]
    #[arg(long, value_name = "FILE", env = "INVSITE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen here instead of the configured address (e.g. 127.0.0.1:0 for any free port)
    #[arg(long, value_name = "ADDR", env = "INVSITE_LISTEN")]
    pub listen: Option<String>,
    /// Allow plain HTTP on an address other than loopback
    #[arg(long, env = "INVSITE_INSECURE_HTTP")]
    pub insecure_http: bool,
    /// Serve TLS with this certificate chain (PEM) instead of the configured one
    #[arg(
        long,
        value_name = "FILE",
        env = "INVSITE_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert
    #[arg(
        long,
        value_name = "FILE",
        env = "INVSITE_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Keep this file-share CAP directory synchronized, as `invsite cap-sync DIR` does: when
    /// files arrive, when requests are queued, and at least every 60 s
    #[arg(long, value_name = "DIR", env = "INVSITE_CAP_DIR")]
    pub cap_dir: Option<PathBuf>,
}

/// The settings of `invsite serve`, each with its source.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub config_file: Option<PathBuf>,
    pub data_dir: Setting<PathBuf>,
    /// `None`: the address in the site's `config.json`.
    pub listen: Setting<Option<String>>,
    pub insecure_http: Setting<bool>,
    pub tls_cert: Setting<Option<PathBuf>>,
    pub tls_key: Setting<Option<PathBuf>>,
    pub cap_dir: Setting<Option<PathBuf>>,
}

fn boolean(raw: &str) -> Result<bool, String> {
    raw.parse::<bool>()
        .map_err(|_| format!("{raw:?} is not true or false"))
}

impl ServeConfig {
    pub fn resolve(
        data_dir: &DataDirArg,
        flags: &ServeFlags,
        matches: Option<&ArgMatches>,
    ) -> Result<ServeConfig, Exit> {
        let file = FileValues::load(flags.config.as_deref(), Path::new(DEFAULT_CONFIG), &KEYS)?;
        // `--data-dir`'s environment variable is read by hand (the site's other commands share
        // the flag and read it the same way, in `SiteDir::resolve`).
        let dir_given = match (
            &data_dir.data_dir,
            std::env::var_os("INVSITE_DIR").filter(|v| !v.is_empty()),
        ) {
            (Some(d), _) => Some((d.clone(), Source::CommandLine)),
            (None, Some(env)) => Some((PathBuf::from(env), Source::Environment("INVSITE_DIR"))),
            (None, None) => None,
        };
        let insecure_given = matches
            .and_then(|m| m.value_source("insecure_http"))
            .filter(|s| *s != ValueSource::DefaultValue)
            .and_then(|_| {
                given(
                    &Some(flags.insecure_http),
                    matches,
                    "insecure_http",
                    "INVSITE_INSECURE_HTTP",
                )
            });
        let optional = |value: &Option<PathBuf>, id: &str, var: &'static str| {
            given(value, matches, id, var).map(|(v, source)| (Some(v), source))
        };
        let config = ServeConfig {
            config_file: file.path.clone(),
            data_dir: layer(dir_given, &file, "data_dir", path, || {
                PathBuf::from(crate::datadir::DEFAULT_DIR)
            })?,
            listen: layer(
                given(&flags.listen, matches, "listen", "INVSITE_LISTEN")
                    .map(|(l, source)| (Some(l), source)),
                &file,
                "listen",
                |raw| Ok(Some(raw.to_string())),
                || None,
            )?,
            insecure_http: layer(insecure_given, &file, "insecure_http", boolean, || false)?,
            tls_cert: layer(
                optional(&flags.tls_cert, "tls_cert", "INVSITE_TLS_CERT"),
                &file,
                "tls_cert",
                |r| path(r).map(Some),
                || None,
            )?,
            tls_key: layer(
                optional(&flags.tls_key, "tls_key", "INVSITE_TLS_KEY"),
                &file,
                "tls_key",
                |r| path(r).map(Some),
                || None,
            )?,
            cap_dir: layer(
                optional(&flags.cap_dir, "cap_dir", "INVSITE_CAP_DIR"),
                &file,
                "cap_dir",
                |r| path(r).map(Some),
                || None,
            )?,
        };
        if config.tls_cert.value.is_some() != config.tls_key.value.is_some() {
            return Err(Exit::usage(format!(
                "tls_cert ({}) and tls_key ({}) go together: give both or neither",
                config.tls_cert.source, config.tls_key.source
            )));
        }
        Ok(config)
    }

    /// One line per key, `key = value   # source`, and the file read.
    pub fn lines(&self) -> Vec<String> {
        let quoted = |p: &Option<PathBuf>| {
            p.as_ref().map_or("(none)".to_string(), |p| {
                format!("{:?}", p.display().to_string())
            })
        };
        let rows = [
            (
                "data_dir",
                format!("{:?}", self.data_dir.value.display().to_string()),
                self.data_dir.source.to_string(),
            ),
            (
                "listen",
                self.listen
                    .value
                    .as_ref()
                    .map_or("(the site's configured address)".to_string(), |l| {
                        format!("{l:?}")
                    }),
                self.listen.source.to_string(),
            ),
            (
                "insecure_http",
                self.insecure_http.value.to_string(),
                self.insecure_http.source.to_string(),
            ),
            (
                "tls_cert",
                quoted(&self.tls_cert.value),
                self.tls_cert.source.to_string(),
            ),
            (
                "tls_key",
                quoted(&self.tls_key.value),
                self.tls_key.source.to_string(),
            ),
            (
                "cap_dir",
                quoted(&self.cap_dir.value),
                self.cap_dir.source.to_string(),
            ),
        ];
        let mut out: Vec<String> = rows
            .iter()
            .map(|(k, v, s)| format!("{k} = {v:<32} # {s}"))
            .collect();
        out.push(match &self.config_file {
            Some(p) => format!("# configuration file: {}", p.display()),
            None => format!("# configuration file: none ({DEFAULT_CONFIG} does not exist)"),
        });
        out
    }
}

pub async fn apply(args: Args, matches: Option<&ArgMatches>) -> Result<()> {
    let config = ServeConfig::resolve(&args.data_dir, &args.flags, matches)?;
    let dir = SiteDir {
        root: config.data_dir.value,
    };
    let tls = config.tls_cert.value.zip(config.tls_key.value);
    let opts = BindOptions {
        listen: config.listen.value,
        insecure_http: config.insecure_http.value,
        tls,
        cap_dir: config.cap_dir.value,
    };
    let server = Server::bind(&dir, &opts).await?;
    let shutdown = shutdown_signal();
    // Printed on stdout so scripts (and tests) that start on port 0 learn the address.
    invsync_proto::outln!(
        "invsite {} serving on {}",
        server.state().site_code,
        server.url()
    )?;
    // Under systemd (`Type=notify`, the packaged invsite.service) the unit counts as started
    // only now, with the database open and the listener bound, so units ordered after it and
    // `systemctl start` itself wait for a site that answers. Without $NOTIFY_SOCKET this does
    // nothing; a failure to tell systemd is not a reason to stop serving (systemd would time
    // the start out and say so).
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "Could not tell systemd that the site is ready.");
    }
    server
        .serve(async move {
            shutdown.await;
            // The graceful shutdown that follows can take a while (connections finish);
            // systemd shows the unit as deactivating meanwhile instead of active.
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        })
        .await
}
