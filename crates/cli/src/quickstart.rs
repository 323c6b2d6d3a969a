//! `invsite quickstart`: the whole seed flow on one machine in one command. It creates a site
//! on SQLite under `./invsync-quickstart/site` (or reuses it), serves it, enrolls this
//! machine's own agent (`./invsync-quickstart/agent`), runs its first cycle, prints the
//! commands to try next, and keeps serving with the agent cycling until Ctrl-C.
//!
//! It is the one command that runs both a site and an agent, so it lives in this crate, which
//! depends on both, rather than in the site (which would then depend on the agent). Its
//! arguments are part of `invsite`'s clap tree (`invsync_site::cli::QuickstartArgs`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use invsync_agent::{CycleOptions, EnrollOptions, RunOptions};
use invsync_proto::SiteCode;
use invsync_site::SiteDir;
use invsync_site::cli::{InitOptions, QuickstartArgs as Args, create_site};
use invsync_site::server::{BindOptions, Server, shutdown_signal};

/// Runs `invsite quickstart` to its end (Ctrl-C) on a runtime of its own.
pub fn run(args: Args) -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(apply(args))
}

/// How to show a sibling binary: relative to the current directory when it is below it,
/// so the printed commands can be pasted as they are.
fn sibling_command(name: &str) -> String {
    let Ok(exe) = std::env::current_exe() else {
        return name.to_string();
    };
    let Some(bin_dir) = exe.parent() else {
        return name.to_string();
    };
    let path = bin_dir.join(name);
    if !path.exists() {
        // Started with `cargo run --bin invsite`, which builds only invsite: a printed path
        // would not exist, so the command is printed as cargo would run it.
        let release = if bin_dir.ends_with("release") {
            " --release"
        } else {
            ""
        };
        return format!("cargo run -q{release} --bin {name} --");
    }
    let shown = std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(|p| Path::new(".").join(p)))
        .unwrap_or(path);
    shown.display().to_string()
}

async fn apply(args: Args) -> Result<()> {
    let base = std::env::current_dir()?.join(&args.dir);
    let site_dir = SiteDir {
        root: base.join("site"),
    };
    let agent_dir = base.join("agent");
    let shown_site = args.dir.join("site");

    if site_dir.config_path().exists() {
        invsync_proto::outln!("Using the site in {}.", shown_site.display())?;
    } else {
        let opts = InitOptions {
            site_code: SiteCode::parse("S01").expect("a valid literal"),
            name: "Quickstart site".to_string(),
            listen: args.listen.clone(),
            db: "sqlite".to_string(),
            url: None,
            parent: None,
            accept_parent_requests: false,
            tls: None,
        };
        create_site(&site_dir, &opts).await?;
        invsync_proto::outln!("Created site S01 on SQLite in {}.", shown_site.display())?;
    }

    let opts = BindOptions {
        listen: Some(args.listen.clone()),
        insecure_http: false,
        tls: None,
        cap_dir: None,
    };
    let server = Server::bind(&site_dir, &opts).await?;
    let url = server.url();
    // A reused site may serve TLS (made with `invsite init --tls self-signed`): the agent
    // trusts its CA.
    let ca_cert = site_dir.tls_ca(&site_dir.config()?);
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    invsync_proto::outln!("Serving on {url}.")?;

    // Enrolling again on every start is harmless (the same machine keeps its client id) and
    // keeps the agent pointed at the address served now.
    let secret = site_dir.enroll_secret()?;
    let enroll = EnrollOptions {
        data_dir: agent_dir.clone(),
        site_url: url.clone(),
        secret,
        name: None,
        root: args.root.clone(),
    };
    let enrolled = tokio::task::spawn_blocking(move || {
        invsync_agent::enroll_with_ca(&enroll, ca_cert.as_deref())
    })
    .await?
    .context("the local agent could not enroll")?;
    invsync_proto::outln!(
        "Enrolled this machine's agent as {} (client id {}).",
        enrolled.name,
        enrolled.client_id
    )?;

    let cycle = CycleOptions {
        data_dir: agent_dir.clone(),
        root: args.root.clone(),
    };
    let first = cycle.clone();
    let summary = tokio::task::spawn_blocking(move || invsync_agent::cycle(&first))
        .await?
        .context("the local agent's first cycle failed")?;
    invsync_proto::outln!("First cycle done:\n{summary}")?;

    // Ctrl-C is caught from here on, before "Press Ctrl-C" is printed.
    let shutdown = shutdown_signal();
    let stop = Arc::new(AtomicBool::new(false));
    // No splay: this one agent is the whole fleet, and the person trying it waits for it.
    let run_opts = RunOptions {
        cycle,
        interval: args.interval,
        site_interval_applies: false,
        splay: Duration::ZERO,
    };
    let agent_stop = stop.clone();
    let agent = std::thread::spawn(move || invsync_agent::run(&run_opts, &agent_stop));

    let name = enrolled.name;
    let d = shown_site.display();
    invsync_proto::outln!()?;
    invsync_proto::outln!(
        "The agent cycles every {} and, through its push channel, at once when something is queued for it.",
        humantime::format_duration(args.interval)
    )?;
    invsync_proto::outln!("Try, in another terminal:")?;
    invsync_proto::outln!(
        "  {} sw {name} --data-dir {d} --wait   # a software resync, followed to completion",
        sibling_command("invsync")
    )?;
    invsync_proto::outln!(
        "  {} {name} cycle --data-dir {d}       # make the agent cycle now",
        sibling_command("setevnt")
    )?;
    invsync_proto::outln!(
        "  {} show {name} --data-dir {d}        # see versions, items and requests",
        sibling_command("invsite")
    )?;
    invsync_proto::outln!("  {} clients --data-dir {d}", sibling_command("invsite"))?;
    invsync_proto::outln!("Press Ctrl-C to stop.")?;

    shutdown.await;
    // The agent stops first, its cycle in progress finished, while its site still answers;
    // then the server.
    stop.store(true, Ordering::SeqCst);
    tokio::task::spawn_blocking(move || agent.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the local agent's thread panicked"))?
        .context("the local agent stopped with an error")?;
    let _ = stop_server.send(());
    serving.await??;
    Ok(())
}
