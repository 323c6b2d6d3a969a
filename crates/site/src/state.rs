//! What every handler can reach: [`AppState`], the running site's store, configuration and the
//! in-memory parts the handlers share (the push hub, the metrics, console sessions, the body
//! decoders, the known client keys, the failed-credential budget, the connection bounds).
//!
//! It sits below the handlers and above the parts: the API, the console and the forwarder name
//! it, and it names only the modules that define its parts, none of which name it back. The
//! server (`server.rs`) builds it and hands it to the router; nothing here knows about
//! listeners, TLS or the connection loop.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use invsync_proto::SiteCode;
use invsync_proto::offline::sign::SiteKey;
use invsync_store::Store;
use tokio::sync::Notify;

use crate::api::decode::Decoders;
use crate::api::known_keys::KnownKeys;
use crate::api::throttle::AuthFailures;
use crate::connections::Connections;
use crate::console::session::Sessions;
use crate::datadir::{Limits, SiteDir, open_store};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub site_code: SiteCode,
    pub admin_token: Arc<str>,
    /// The data directory; the enrollment secret is read from it at each enrollment, so
    /// `invsite enroll-secret --rotate` takes effect without a restart.
    pub dir: SiteDir,
    pub accept_parent_requests: bool,
    pub limits: Limits,
    /// The interval between cycles sent to agents in check-in answers, if the site sets one.
    pub agent_interval_secs: Option<u64>,
    /// Notified whenever the site accepts a change, so the forwarder sends it at once.
    pub forward_wake: Arc<Notify>,
    /// The push channel: wakes connected agents when an instruction is queued for them.
    pub hub: Arc<Hub>,
    /// What `/metrics` shows: counted by handlers, one set per running site.
    pub metrics: Arc<Metrics>,
    /// The web console's login sessions, in memory: a restart logs everybody out.
    pub console: Arc<Sessions>,
    /// The threads large compressed bodies are decoded on, `max_parallel_decodes` of them.
    pub decoders: Arc<Decoders>,
    /// Client keys accepted lately: a report's body is read only once its key is vouched for.
    pub known_keys: Arc<KnownKeys>,
    /// The budget of failed credential checks per remote address.
    pub auth_failures: Arc<AuthFailures>,
    /// The key the file-share CAP's `.cfg` files are signed with; agents get its public half
    /// at enrollment.
    pub site_key: Arc<SiteKey>,

    /// The parent site's URL from the configuration, for a child site (`GET /api/v1/site`).
    pub parent_url: Option<String>,
    /// The open connections and their bounds; `Server::bind` sets them from the descriptor
    /// limit it raised.
    pub connections: Arc<Connections>,
    /// When stale clients are deleted and how long history is kept (`invsite config
    /// --delete-after`, `--history-retention`), for the maintenance task.
    pub lifecycle: crate::lifecycle::Settings,

    /// Learned at runtime: the parent's code (after the first contact) and this site's URL
    /// (configured, or the address it serves on).
    runtime: Arc<Mutex<Runtime>>,
}

#[derive(Default)]
struct Runtime {
    parent_code: Option<SiteCode>,
    public_url: Option<String>,
}

impl AppState {
    pub async fn load(dir: &SiteDir) -> Result<AppState> {
        let config = dir.config()?;
        dir.check_permissions()?;
        dir.enroll_secret()?;
        let site_key = Arc::new(crate::signing::load_or_create(dir)?);
        let store = open_store(dir, &config).await?;
        // The software pages answer from an in-memory index; building it now, in the
        // background, spares the first administrator to open them the wait.
        store.warm_software_index();
        let metrics = Arc::new(Metrics::new());
        let lifecycle = crate::lifecycle::Settings {
            delete_after: config.delete_after(),
            retention: config.history_retention(),
        };
        Ok(AppState {
            store,
            site_code: config.site_code,
            admin_token: dir.admin_token()?.into(),
            dir: dir.clone(),
            accept_parent_requests: config.accept_parent_requests,
            parent_url: config.parent.as_ref().map(|p| p.url.clone()),
            limits: config.limits,
            agent_interval_secs: config.agent_interval_secs,
            forward_wake: Arc::new(Notify::new()),
            hub: Arc::new(Hub::default()),
            // Cookies get `Secure` once `Server::bind` knows the site serves TLS.
            console: Arc::new(Sessions::new(false)),
            decoders: Arc::new(Decoders::new(config.limits.max_parallel_decodes)),
            known_keys: Arc::default(),
            auth_failures: Arc::new(AuthFailures::new(config.limits.auth_failures_per_minute)),
            site_key,
            connections: Arc::new(Connections::new(
                &config.limits,
                crate::connections::DEFAULT_DESCRIPTORS,
                metrics.clone(),
            )),
            metrics,
            lifecycle,
            runtime: Arc::new(Mutex::new(Runtime {
                parent_code: None,
                public_url: config.url.clone(),
            })),
        })
    }

    fn runtime(&self) -> std::sync::MutexGuard<'_, Runtime> {
        // The fields are plain values; a panic elsewhere cannot leave them half-written.
        self.runtime.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn parent_code(&self) -> Option<SiteCode> {
        self.runtime().parent_code.clone()
    }

    pub fn set_parent_code(&self, code: SiteCode) {
        self.runtime().parent_code = Some(code);
    }

    pub fn public_url(&self) -> Option<String> {
        self.runtime().public_url.clone()
    }

    /// Takes `url` as this site's URL unless the configuration named one: the server calls it
    /// with the address it serves on once it is bound.
    pub fn default_public_url(&self, url: String) {
        let mut rt = self.runtime();
        if rt.public_url.is_none() {
            rt.public_url = Some(url);
        }
    }
}
