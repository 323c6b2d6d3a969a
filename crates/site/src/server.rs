//! Running the HTTP service: load the site's state (`state.rs`), bind the listener, serve the
//! router (`api::router`) through the connection loop (`http.rs`) until a shutdown signal, then
//! finish in-flight requests. Used by `invsite serve`, the quickstart and tests. This module
//! only composes: the handlers never name it, so nothing they use may live here.
//! With a certificate and key (`--tls-cert/--tls-key`, or the configuration's) it serves
//! HTTPS (rustls, see `tls.rs`) on any address; without, plain HTTP on loopback only unless
//! `--insecure-http`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use invsync_proto::exit::Exit;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::datadir::{Limits, SiteDir};
use crate::state::AppState;

/// How `invsite serve` (or the quickstart) binds.
#[derive(Debug, Clone, Default)]
pub struct BindOptions {
    /// Listen here instead of the configured address.
    pub listen: Option<String>,
    /// Serve plain HTTP on an address other than loopback.
    pub insecure_http: bool,
    /// Serve TLS with this certificate chain and key (PEM files) instead of the configured
    /// ones.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// A file-share CAP directory to keep synchronized (`--cap-dir`).
    pub cap_dir: Option<PathBuf>,
}

/// Tokens and inventories travel in clear over plain HTTP, which is acceptable only on the
/// machine itself; anything else needs `--insecure-http`, said on purpose.
pub fn check_plain_http(addr: &str, insecure_http: bool) -> Result<()> {
    let loopback = match addr.parse::<SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => addr.starts_with("localhost:"),
    };
    if loopback || insecure_http {
        return Ok(());
    }
    Err(Exit::usage(format!(
        "refusing to serve plain HTTP on {addr}, which is not a loopback address: tokens and \
         inventories would cross the network in clear. Listen on 127.0.0.1, or give \
         --insecure-http if a TLS proxy in front of the site or a trusted network makes that safe"
    ))
    .into())
}

/// A bound, not yet serving, site server.
pub struct Server {
    listener: TcpListener,
    /// Present when it serves HTTPS.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// The client for the parent site, when this is a child site.
    parent: Option<crate::parent::ParentClient>,
    state: AppState,
    dir: SiteDir,
    /// The file-share CAP directory, checked at bind.
    cap: Option<crate::offline::CapDir>,
}

impl Server {
    /// Loads the site in `dir` and binds `listen` (or the configured address).
    pub async fn bind(dir: &SiteDir, opts: &BindOptions) -> Result<Server> {
        let config = dir.config()?;
        let mut state = AppState::load(dir).await?;
        let addr = opts.listen.as_deref().unwrap_or(&config.listen);
        let tls_files = match (&opts.tls, &config.tls) {
            (Some((cert, key)), _) => Some((cert.clone(), key.clone())),
            (None, Some(files)) => Some((dir.path_of(&files.cert), dir.path_of(&files.key))),
            (None, None) => None,
        };
        let tls = match tls_files {
            Some((cert, key)) => Some(crate::tls::server_config(&cert, &key)?),
            // Tokens and inventories would travel in clear.
            None => {
                check_plain_http(addr, opts.insecure_http)?;
                None
            }
        };
        // The console's cookies are `Secure` exactly when browsers reach the site over TLS.
        state.console = Arc::new(crate::console::session::Sessions::new(tls.is_some()));
        // 10,000 connected agents need more descriptors than the usual soft limit of 1,024.
        let descriptors = crate::connections::raise_descriptor_limit();
        state.connections = Arc::new(crate::connections::Connections::new(
            &config.limits,
            descriptors,
            state.metrics.clone(),
        ));
        let max_open = state.connections.max_open();
        if max_open < config.limits.max_connections
            && config.limits.max_connections != Limits::default().max_connections
        {
            // Said only when the administrator chose the bound; the default one is capped by
            // whatever the machine allows, as intended.
            tracing::warn!(
                max_connections = config.limits.max_connections,
                descriptors,
                max_open,
                "The descriptor limit allows fewer connections than max_connections; raise LimitNOFILE to serve that many."
            );
        }
        tracing::info!(
            descriptors,
            max_connections = max_open,
            max_unauthenticated_per_address = state.connections.max_unauthenticated_per_address(),
            "Connection bounds."
        );
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                "; another process listens there: stop it or give --listen 127.0.0.1:0 for any free port"
            } else {
                ""
            };
            Exit::usage(format!("cannot listen on {addr}: {e}{hint}"))
        })?;
        // Made now, so a parent CA file that cannot be read stops the start, not the forwarder.
        let parent = config
            .parent
            .as_ref()
            .map(crate::parent::ParentClient::new)
            .transpose()?;
        // Checked now, so a CAP directory that is not there (a share not mounted) stops the
        // start with the reason instead of a warning a minute later.
        let cap = opts
            .cap_dir
            .as_deref()
            .map(crate::offline::CapDir::open)
            .transpose()
            .map_err(|e| {
                Exit::new(
                    invsync_proto::exit::Code::Failure,
                    format!("--cap-dir: {e}"),
                )
            })?;
        Ok(Server {
            listener,
            tls,
            parent,
            state,
            dir: dir.clone(),
            cap,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// `https` when it serves TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The URL it serves on, e.g. `https://127.0.0.1:8350`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.local_addr())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish. While it
    /// serves, `serve.addr` in the data directory names the bound address (as an `https://`
    /// URL on the loopback address when it serves TLS, a name the certificate can hold), so
    /// tools find a server started on port 0.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let addr = self.local_addr();
        let scheme = self.scheme();
        let addr_file = self.dir.serve_addr_path();
        let written = if self.tls.is_some() {
            format!(
                "https://{}",
                crate::datadir::local_address(&addr.to_string())
            )
        } else {
            addr.to_string()
        };
        std::fs::write(&addr_file, format!("{written}\n"))
            .with_context(|| format!("cannot write {}", addr_file.display()))?;
        tracing::info!(%addr, scheme, site = %self.state.site_code, "Serving.");
        self.state.default_public_url(format!("{scheme}://{addr}"));
        let stop_forwarder = Arc::new(Notify::new());
        let forwarder = self.parent.map(|client| {
            tracing::info!(
                parent = client.url(),
                "Forwarding accepted changes to the parent site."
            );
            tokio::spawn(crate::parent::forwarder(
                self.state.clone(),
                client,
                self.state.forward_wake.clone(),
                stop_forwarder.clone(),
            ))
        });
        let (stop_cap, cap_stopped) = tokio::sync::watch::channel(false);
        let cap_task = self.cap.map(|dir| {
            tracing::info!(dir = %dir.root.display(), "Synchronizing the CAP directory.");
            let ctx = crate::offline::SyncContext {
                store: self.state.store.clone(),
                key: self.state.site_key.clone(),
                site: self.state.site_code.clone(),
                limits: self.state.limits,
                agent_interval_secs: self.state.agent_interval_secs,
                concurrency: crate::offline::sync::DEFAULT_CONCURRENCY,
                forward_wake: Some(self.state.forward_wake.clone()),
            };
            tokio::spawn(crate::offline::watch::serve(
                ctx,
                dir,
                self.state.hub.queued(),
                cap_stopped,
            ))
        });
        let hub = self.state.hub.clone();
        let store = self.state.store.clone();
        let probe = tokio::spawn(crate::api::health::probe_loop(store.clone()));
        let stop_lifecycle = Arc::new(Notify::new());
        let lifecycle = tokio::spawn(crate::lifecycle::maintain(
            store.clone(),
            self.state.site_code.clone(),
            self.state.lifecycle,
            self.state.forward_wake.clone(),
            stop_lifecycle.clone(),
        ));
        let metrics = self.state.metrics.clone();
        let connections = self.state.connections.clone();
        let deadlines = crate::http::Deadlines::from_limits(&self.state.limits);
        let app = crate::api::router(self.state);
        // Parked long-polls would hold a graceful shutdown for their whole hold time; the hub
        // answers them all as soon as shutdown begins.
        let shutdown = async move {
            shutdown.await;
            hub.close();
        };
        match self.tls {
            Some(config) => {
                let listener =
                    crate::tls::TlsListener::new(self.listener, config, connections.clone());
                crate::http::serve(listener, app, metrics, connections, deadlines, shutdown).await;
            }
            None => {
                let listener = crate::http::PlainListener {
                    listener: self.listener,
                    connections: connections.clone(),
                };
                crate::http::serve(listener, app, metrics, connections, deadlines, shutdown).await;
            }
        }
        probe.abort();
        // notify_one stores a permit: the task stops at its next wait, after a pass it is in.
        stop_lifecycle.notify_one();
        let _ = lifecycle.await;
        let _ = stop_cap.send(true);
        if let Some(task) = cap_task {
            let _ = task.await;
        }
        if let Some(task) = forwarder {
            // notify_one stores a permit, so the forwarder stops even if it is mid-batch now.
            stop_forwarder.notify_one();
            let _ = task.await;
        }
        if let Err(e) = store.flush().await {
            tracing::warn!(error = %e, "Could not write the last last-seen times before stopping.");
        }
        // Removing the file tells tools the server is gone; a stale one after a crash only
        // costs them a refused connection, after which they fall back to the database.
        let _ = std::fs::remove_file(&addr_file);
        tracing::info!(%addr, "Stopped serving.");
        Ok(())
    }
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is called, not when
/// the future is first polled: `invsite serve` prints its address before it serves, and a
/// SIGTERM sent as soon as that line is read must stop it gracefully, not kill it.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received; shutting down."),
            _ = int.recv() => tracing::info!("SIGINT received; shutting down."),
        }
    }
}
