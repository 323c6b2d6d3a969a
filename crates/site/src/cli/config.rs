//! `invsite config`: show or change the settings of an existing site that may change after
//! `invsite init`: whether the site queues resync requests its parent routes down (`invsync
//! --via-child` at a site above), off unless the administrator of this site turns it on, since
//! it lets administrators of sites above act on this site's clients; and the request and
//! connection limits. A running
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
}

fn positive(raw: &str) -> Result<usize, String> {
    match raw.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{raw:?} is not a whole number above zero")),
    }
}

fn show(config: &crate::datadir::Config) {
    let l = &config.limits;
    println!("site {}:", config.site_code);
    println!("  accept-parent-requests {}", on_off(config.accept_parent_requests));
    println!("  max-body-bytes {}", l.max_body_bytes);
    println!("  max-decoded-bytes {}", l.max_decoded_bytes);
    println!("  max-items {}", l.max_items);
    println!("  max-attrs {}", l.max_attrs);
    println!("  max-key-len {}", l.max_key_len);
    println!("  max-value-len {}", l.max_value_len);
    println!("  request-timeout {}", l.request_timeout_secs);
    println!("  min-body-rate {}", l.min_body_rate);
    println!("  max-connections {}", l.max_connections);
    println!("  max-unauthenticated-per-address {}", l.max_unauthenticated_per_address);
    println!("  shutdown-grace {}", l.shutdown_grace_secs);
}

fn on_off(v: bool) -> &'static str {
    if v { "on" } else { "off" }
}

pub fn apply(args: Args) -> Result<()> {
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
        (args.max_connections, &mut l.max_connections),
        (args.max_unauthenticated_per_address, &mut l.max_unauthenticated_per_address),
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
    if let Some(accept) = args.accept_parent_requests {
        config.accept_parent_requests = accept;
    }
    if config == before {
        show(&config);
        return Ok(());
    }
    dir.write_config(&config)?;
    tracing::info!(site = %config.site_code, "Changed the site's configuration.");
    show(&config);
    if dir.serve_addr_path().exists() {
        println!("The running `invsite serve` uses it once restarted.");
    }
    Ok(())
}
