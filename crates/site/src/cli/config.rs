//! `invsite config`: show or change the settings of an existing site that may change after
//! `invsite init`: whether the site queues resync requests its parent routes down (`invsync
//! --via-child` at a site above), off unless the administrator of this site turns it on, since
//! it lets administrators of sites above act on this site's clients; the request and
//! connection limits; whether enrollments of known machines take their records over
//! (`--merge-duplicates`); and the oldest agent version not flagged (`--min-agent-version`). A running
//! server reads its configuration when it starts, so a change takes effect at its next start;
//! the parent learns of it from the status the site reports then.

use anyhow::Result;

use super::DataDirArg;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Queue resync requests the parent routes down (`invsync --via-child` there): true or false
    #[arg(long, value_name = "true|false")]
    pub accept_parent_requests: Option<bool>,
    /// Largest request body as sent, in bytes
    #[arg(long, value_name = "BYTES", value_parser = positive)]
    pub max_body_bytes: Option<usize>,
    /// Largest request body after decompression, in bytes
    #[arg(long, value_name = "BYTES", value_parser = positive)]
    pub max_decoded_bytes: Option<usize>,
    /// Most items in one report
    #[arg(long, value_name = "N", value_parser = positive)]
    pub max_items: Option<usize>,
    /// Most attributes of one item
    #[arg(long, value_name = "N", value_parser = positive)]
    pub max_attrs: Option<usize>,
    /// Longest item key or attribute name, in bytes
    #[arg(long, value_name = "BYTES", value_parser = positive)]
    pub max_key_len: Option<usize>,
    /// Longest attribute value, in bytes
    #[arg(long, value_name = "BYTES", value_parser = positive)]
    pub max_value_len: Option<usize>,
    /// Most large compressed bodies decoded at once (each may hold max-decoded-bytes)
    #[arg(long, value_name = "N", value_parser = positive)]
    pub max_parallel_decodes: Option<usize>,
    /// Failed credential checks one remote address may make per minute before it is answered 429
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_failures_per_minute: Option<u32>,
    /// Seconds a client has to send a request's head, and again its body
    #[arg(long, value_name = "SECONDS", value_parser = positive)]
    pub request_timeout: Option<usize>,
    /// Bytes per second a long request body must keep up on average
    #[arg(long, value_name = "BYTES", value_parser = positive)]
    pub min_body_rate: Option<usize>,
    /// Open connections at most
    #[arg(long, value_name = "N", value_parser = positive)]
    pub max_connections: Option<usize>,
    /// Connections one address may hold before any of its requests authenticated (0: no bound)
    #[arg(long, value_name = "N")]
    pub max_unauthenticated_per_address: Option<usize>,
    /// Seconds a stopping server waits for in-flight requests
    #[arg(long, value_name = "SECONDS", value_parser = positive)]
    pub shutdown_grace: Option<usize>,
    /// The time between cycles this site asks its agents for (4h, 30m, …), sent in check-in
    /// answers; an agent whose interval was set on its machine keeps its own; `none` leaves it
    /// to each agent again
    #[arg(long, value_name = "DURATION|none", value_parser = agent_interval)]
    pub agent_interval: Option<AgentInterval>,
    /// How long a resync request may wait to be picked up before it expires (30d, 12h, …;
    /// default 30d): an expired request is no longer handed to its agent and shows as `expired`
    #[arg(long, value_name = "DURATION", value_parser = request_expiry)]
    pub request_expiry: Option<u64>,
    /// Whether an agent enrolling from a machine the site already holds a client of (same
    /// machine id, or a new machine id with the same DMI serial and product UUID) takes that
    /// client's record over, keeping its id and history under the new name: true or false
    /// (default true)
    #[arg(long, value_name = "true|false")]
    pub merge_duplicates: Option<bool>,
    /// Flag clients whose agent is older than this version (`agent_outdated: true` in
    /// `invsite clients --json` and `show --json`); `none` flags none
    #[arg(long, value_name = "VERSION|none", value_parser = min_agent_version)]
    pub min_agent_version: Option<MinAgentVersion>,
    /// How long a client may go unseen before it is stale (30d, 12h, …; default 30d): listed
    /// with `stale: true`, filtered by `invsite clients --stale`, counted in /metrics
    #[arg(long, value_name = "DURATION", value_parser = lifecycle_duration)]
    pub stale_after: Option<u64>,
    /// Delete clients not seen for this long (180d, …), as `invsite delete` does, from a task of
    /// `invsite serve`; `off` (the default) keeps them
    #[arg(long, value_name = "DURATION|off", value_parser = delete_after)]
    pub delete_after: Option<DeleteAfter>,
    /// Prune history (and ended requests, and deleted clients) older than this (400d, …;
    /// default 400d), in small batches, from a task of `invsite serve`
    #[arg(long, value_name = "DURATION", value_parser = lifecycle_duration)]
    pub history_retention: Option<u64>,
    /// Print the settings `invsite serve` would use, each with where it came from (command
    /// line, environment, configuration file or default), then this site's settings
    #[arg(long)]
    pub show: bool,
    #[command(flatten)]
    pub serve: super::serve::ServeFlags,
}

/// `--agent-interval`: a duration, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentInterval(pub Option<u64>);

fn agent_interval(raw: &str) -> Result<AgentInterval, String> {
    if raw == "none" {
        return Ok(AgentInterval(None));
    }
    let d = humantime::parse_duration(raw).map_err(|e| format!("{e} (try 4h, 30m or none)"))?;
    if d.as_secs() < 1 {
        return Err("the interval must be at least 1s (or none)".to_string());
    }
    Ok(AgentInterval(Some(d.as_secs())))
}

/// `--min-agent-version`: a version, or `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinAgentVersion(pub Option<invsync_proto::AgentVersion>);

fn min_agent_version(raw: &str) -> Result<MinAgentVersion, String> {
    if raw == "none" {
        return Ok(MinAgentVersion(None));
    }
    raw.parse().map(|v| MinAgentVersion(Some(v)))
}

/// `--request-expiry`: a duration of at least a second, in seconds.
fn request_expiry(raw: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(raw).map_err(|e| format!("{e} (try 30d, 12h)"))?;
    if d.as_secs() < 1 {
        return Err("the expiry must be at least 1s".to_string());
    }
    Ok(d.as_secs())
}

/// `--stale-after`, `--history-retention`: a duration of at least a second, in seconds.
fn lifecycle_duration(raw: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(raw).map_err(|e| format!("{e} (try 30d, 12h)"))?;
    if d.as_secs() < 1 {
        return Err("the duration must be at least 1s".to_string());
    }
    Ok(d.as_secs())
}

/// `--delete-after`: a duration, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct DeleteAfter(Option<u64>);

fn delete_after(raw: &str) -> Result<DeleteAfter, String> {
    if raw.eq_ignore_ascii_case("off") {
        return Ok(DeleteAfter(None));
    }
    lifecycle_duration(raw).map(|secs| DeleteAfter(Some(secs)))
}

fn positive(raw: &str) -> Result<usize, String> {
    match raw.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{raw:?} is not a whole number above zero")),
    }
}

fn show(config: &crate::datadir::Config) -> std::io::Result<()> {
    let l = &config.limits;
    invsync_proto::outln!("site {}:", config.site_code)?;
    invsync_proto::outln!(
        "  accept-parent-requests {}",
        on_off(config.accept_parent_requests)
    )?;
    invsync_proto::outln!("  max-body-bytes {}", l.max_body_bytes)?;
    invsync_proto::outln!("  max-decoded-bytes {}", l.max_decoded_bytes)?;
    invsync_proto::outln!("  max-items {}", l.max_items)?;
    invsync_proto::outln!("  max-attrs {}", l.max_attrs)?;
    invsync_proto::outln!("  max-key-len {}", l.max_key_len)?;
    invsync_proto::outln!("  max-value-len {}", l.max_value_len)?;
    invsync_proto::outln!("  max-parallel-decodes {}", l.max_parallel_decodes)?;
    invsync_proto::outln!("  auth-failures-per-minute {}", l.auth_failures_per_minute)?;
    invsync_proto::outln!("  request-timeout {}", l.request_timeout_secs)?;
    invsync_proto::outln!("  min-body-rate {}", l.min_body_rate)?;
    invsync_proto::outln!("  max-connections {}", l.max_connections)?;
    invsync_proto::outln!(
        "  max-unauthenticated-per-address {}",
        l.max_unauthenticated_per_address
    )?;
    invsync_proto::outln!("  shutdown-grace {}", l.shutdown_grace_secs)?;
    match config.agent_interval_secs {
        Some(secs) => invsync_proto::outln!(
            "  agent-interval {}",
            humantime::format_duration(std::time::Duration::from_secs(secs))
        )?,
        None => invsync_proto::outln!("  agent-interval none (each agent's own)")?,
    }
    invsync_proto::outln!(
        "  request-expiry {}",
        humantime::format_duration(config.request_expiry())
    )?;
    invsync_proto::outln!("  merge-duplicates {}", on_off(config.merge_duplicates()))?;
    match &config.min_agent_version {
        Some(v) => invsync_proto::outln!("  min-agent-version {v}")?,
        None => invsync_proto::outln!("  min-agent-version none")?,
    }
    invsync_proto::outln!(
        "  stale-after {}",
        humantime::format_duration(config.stale_after())
    )?;
    match config.delete_after() {
        Some(d) => invsync_proto::outln!("  delete-after {}", humantime::format_duration(d))?,
        None => invsync_proto::outln!("  delete-after off")?,
    }
    invsync_proto::outln!(
        "  history-retention {}",
        humantime::format_duration(config.history_retention())
    )?;
    Ok(())
}

/// Records the change in the audit, as `local:<unix user>`: each setting that changed, with
/// its old and new value.
fn record_change(
    dir: &crate::datadir::SiteDir,
    before: &crate::datadir::Config,
    after: &crate::datadir::Config,
) -> Result<()> {
    let changed = changed_settings(
        &serde_json::to_value(before)?,
        &serde_json::to_value(after)?,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // The change is saved already; a database that cannot be opened now is said, not fatal
        // (`audit::record` treats a failed write the same way).
        let store = match crate::datadir::open_store(dir, after).await {
            Ok(store) => store,
            Err(e) => {
                tracing::error!(error = %e, "The configuration changed, but the change could not be recorded in the audit.");
                return anyhow::Ok(());
            }
        };
        crate::audit::record(
            &store,
            &crate::audit::Actor::local(),
            invsync_proto::wire::AuditAction::Config,
            Some(
                changed
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            Some(
                changed
                    .iter()
                    .map(|(_, v)| v.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        )
        .await;
        anyhow::Ok(())
    })
}

/// The settings (dotted paths) whose values differ, each with `path old -> new`. The database
/// URL and the parent's settings are named without their values: they may hold a password or
/// a token, and the audit is readable by every role.
fn changed_settings(a: &serde_json::Value, b: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(
        path: &str,
        a: &serde_json::Value,
        b: &serde_json::Value,
        out: &mut Vec<(String, String)>,
    ) {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                let null = serde_json::Value::Null;
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(
                        &p,
                        x.get(k).unwrap_or(&null),
                        y.get(k).unwrap_or(&null),
                        out,
                    );
                }
            }
            (x, y) if x != y && (path == "db" || path.starts_with("parent")) => {
                out.push((path.to_string(), format!("{path} changed")))
            }
            (x, y) if x != y => out.push((path.to_string(), format!("{path} {x} -> {y}"))),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", a, b, &mut out);
    out
}

fn on_off(v: bool) -> &'static str {
    if v { "on" } else { "off" }
}

pub fn apply(args: Args, matches: Option<&clap::ArgMatches>) -> Result<()> {
    if args.show {
        let serve = super::serve::ServeConfig::resolve(&args.data_dir, &args.serve, matches)?;
        for line in serve.lines() {
            invsync_proto::outln!("{line}")?;
        }
        let dir = crate::datadir::SiteDir {
            root: serve.data_dir.value.clone(),
        };
        return match dir.config() {
            Ok(config) => Ok(show(&config)?),
            Err(_) => Ok(invsync_proto::outln!(
                "# no site in {} yet (invsite init)",
                dir.root.display()
            )?),
        };
    }
    let dir = args.data_dir.dir();
    let mut config = dir.config()?;
    let before = config.clone();
    let l = &mut config.limits;
    for (value, slot) in [
        (args.max_body_bytes, &mut l.max_body_bytes),
        (args.max_decoded_bytes, &mut l.max_decoded_bytes),
        (args.max_items, &mut l.max_items),
        (args.max_attrs, &mut l.max_attrs),
        (args.max_key_len, &mut l.max_key_len),
        (args.max_value_len, &mut l.max_value_len),
        (args.max_parallel_decodes, &mut l.max_parallel_decodes),
        (args.max_connections, &mut l.max_connections),
        (
            args.max_unauthenticated_per_address,
            &mut l.max_unauthenticated_per_address,
        ),
    ] {
        if let Some(v) = value {
            *slot = v;
        }
    }
    for (value, slot) in [
        (args.request_timeout, &mut l.request_timeout_secs),
        (args.min_body_rate, &mut l.min_body_rate),
        (args.shutdown_grace, &mut l.shutdown_grace_secs),
    ] {
        if let Some(v) = value {
            *slot = v as u64;
        }
    }
    if let Some(n) = args.auth_failures_per_minute {
        l.auth_failures_per_minute = n;
    }
    if let Some(AgentInterval(secs)) = args.agent_interval {
        config.agent_interval_secs = secs;
    }
    if let Some(secs) = args.request_expiry {
        config.request_expiry_secs = Some(secs);
    }
    if let Some(merge) = args.merge_duplicates {
        config.merge_duplicates = Some(merge);
    }
    if let Some(MinAgentVersion(min)) = args.min_agent_version {
        config.min_agent_version = min.map(|v| v.to_string());
    }
    if let Some(secs) = args.stale_after {
        config.stale_after_secs = Some(secs);
    }
    if let Some(DeleteAfter(secs)) = args.delete_after {
        config.delete_after_secs = secs;
    }
    if let Some(secs) = args.history_retention {
        config.history_retention_secs = Some(secs);
    }
    if let Some(accept) = args.accept_parent_requests {
        config.accept_parent_requests = accept;
    }
    if config == before {
        show(&config)?;
        return Ok(());
    }
    dir.write_config(&config)?;
    tracing::info!(site = %config.site_code, "Changed the site's configuration.");
    record_change(&dir, &before, &config)?;
    show(&config)?;
    if dir.serve_addr_path().exists() {
        invsync_proto::outln!("The running `invsite serve` uses it once restarted.")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_names_each_setting_and_hides_secrets() {
        let before = serde_json::json!({
            "db": "postgres://u:secret@h/d",
            "limits": {"max_items": 10, "max_attrs": 5},
            "parent": {"url": "https://p", "token": "t1"},
        });
        let after = serde_json::json!({
            "db": "postgres://u:other@h/d",
            "limits": {"max_items": 20, "max_attrs": 5},
            "parent": {"url": "https://p", "token": "t2"},
            "request_expiry_secs": 604800,
        });
        let changed = changed_settings(&before, &after);
        let paths: Vec<&str> = changed.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "db",
                "limits.max_items",
                "parent.token",
                "request_expiry_secs"
            ]
        );
        let words: Vec<&str> = changed.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(words[1], "limits.max_items 10 -> 20");
        assert_eq!(words[3], "request_expiry_secs null -> 604800");
        for w in &words {
            assert!(!w.contains("secret") && !w.contains("t2"), "{w}");
        }
    }
}
