//! A child site's connection to its parent: the site-to-site API client (`/site/v1/hello`,
//! `/site/v1/forward`) and the forwarder task that drains the outbox to the parent in order,
//! retrying with backoff while the parent is unreachable. The outbox is durable, so a parent
//! that is down for hours loses nothing: the entries wait until acknowledged. The parent's
//! answers carry resync requests routed down to this site or through it
//! (`invsync --via-child`), which the forwarder takes in.

use std::sync::Arc;
use std::time::Duration;

use invsync_client::{Client, ClientOptions, Encoding, Timeouts};
use invsync_proto::Timestamp;
use invsync_proto::wire::{
    self, ChildHello, ChildWelcome, DownRequest, ForwardBatch, ForwardOutcome, ForwardResult,
    SiteStatus,
};
use invsync_store::{DownAccepted, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::datadir::ParentConfig;

/// Why talking to the parent failed.
#[derive(Debug, thiserror::Error)]
pub enum ParentError {
    /// The parent answered and refused (wrong token, code in use…): retrying will not help.
    #[error("the parent site refused: {0}")]
    Refused(String),
    /// The parent could not be reached or failed; the outbox waits.
    #[error("the parent site at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
}

/// The HTTP client for the parent's site-to-site API.
#[derive(Clone)]
pub struct ParentClient {
    http: Client,
}

impl ParentClient {
    /// A client for the parent `config` names; an `https://` parent's certificate must chain
    /// to `config.ca_cert` (`init --parent-ca-cert`), else to the built-in Mozilla roots.
    pub fn new(config: &ParentConfig) -> anyhow::Result<ParentClient> {
        let http = Client::new(&ClientOptions {
            url: &config.url,
            ca: config.ca_cert.as_deref(),
            timeouts: Timeouts::PARENT,
            user_agent: None,
            token: Some(&config.token),
        })
        .map_err(|e| anyhow::anyhow!("--parent-ca-cert: {e}"))?;
        Ok(ParentClient { http })
    }

    pub fn url(&self) -> &str {
        self.http.base_url()
    }

    pub fn hello(&self, status: &SiteStatus) -> Result<ChildWelcome, ParentError> {
        self.post(
            wire::SITE_HELLO,
            &ChildHello {
                status: status.clone(),
            },
        )
    }

    pub fn forward(&self, batch: &ForwardBatch) -> Result<ForwardResult, ParentError> {
        self.post(wire::SITE_FORWARD, batch)
    }

    fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ParentError> {
        let unreachable = |reason: String| ParentError::Unreachable {
            url: self.url().to_string(),
            reason,
        };
        // Forward batches carry full snapshots after a gap; they compress about tenfold.
        let answer = self
            .http
            .post(path, body, Encoding::Zstd, true)
            .map_err(|e| unreachable(e.sentence(self.url())))?;
        let status = answer.status();
        if answer.is_success() {
            return answer
                .json::<T>()
                .map_err(|e| unreachable(format!("unreadable answer: {e}")));
        }
        let message = answer.refusal().unwrap_or_else(|| format!("HTTP {status}"));
        if (400..500).contains(&status) {
            Err(ParentError::Refused(message))
        } else {
            Err(unreachable(format!("HTTP {status}: {message}")))
        }
    }
}

/// This site's status as it reports it upward and shows it in `invsite sites`.
pub async fn own_status(
    state: &crate::state::AppState,
) -> Result<SiteStatus, invsync_store::StoreError> {
    status_of(
        &state.store,
        state.parent_code(),
        state.public_url(),
        state.accept_parent_requests,
    )
    .await
}

/// A site's status from its store and what the caller knows of its parent and URL.
pub async fn status_of(
    store: &Store,
    parent: Option<invsync_proto::SiteCode>,
    url: Option<String>,
    accepts_parent_requests: bool,
) -> Result<SiteStatus, invsync_store::StoreError> {
    let meta = store.site().await?;
    let stats = store.outbox_stats().await?;
    // Counted by the database: a parent holds the clients of every site below it too, and
    // this runs on every forward batch and heartbeat.
    let own = store.own_clients().await?;
    Ok(SiteStatus {
        code: meta.code,
        name: meta.name,
        parent,
        url,
        clients: own,
        outbox_depth: stats.depth,
        outbox_oldest: stats.oldest,
        last_forwarded: stats.last_forwarded,
        accepts_parent_requests,
        reported_at: Timestamp::now(),
    })
}

/// How many outbox entries go in one batch: large enough to amortise a round trip, small
/// enough that one batch of full snapshots stays a few megabytes.
const BATCH: usize = 200;
/// Audit entries per forward batch: small rows; a backlog drains a thousand per round trip.
pub const AUDIT_BATCH: usize = 1_000;
/// How often an idle child reports its status (an empty batch) and collects requests routed
/// down to it: short enough that `invsync --via-child` reaches a grandchild in seconds, long
/// enough that a hundred idle children cost the parent fifty small requests a second.
const HEARTBEAT: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Drains the outbox to the parent until `stop` is notified. Woken by `wake` whenever a change
/// is accepted, so forwarding lag is one round trip when the parent is up.
pub async fn forwarder(
    state: crate::state::AppState,
    client: ParentClient,
    wake: Arc<Notify>,
    stop: Arc<Notify>,
) {
    let mut backoff = Duration::from_millis(250);
    let mut said_unreachable = false;
    let mut ignored = Ignored::default();
    loop {
        match forward_once(&state, &client, &mut ignored).await {
            Ok(more) => {
                if said_unreachable {
                    tracing::info!(
                        parent = client.url(),
                        "The parent site is reachable again; forwarding."
                    );
                    said_unreachable = false;
                }
                backoff = Duration::from_millis(250);
                if more {
                    continue;
                }
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(HEARTBEAT) => {}
                    _ = stop.notified() => return,
                }
            }
            Err(e) => {
                if !said_unreachable {
                    // WARN, not ERROR: the outbox keeps everything and forwarding resumes by
                    // itself; an operator only needs to act if it lasts.
                    tracing::warn!(parent = client.url(), error = %e, "Cannot forward to the parent site; retrying with backoff.");
                    said_unreachable = true;
                }
                let jitter = Duration::from_millis(u64::from(crate::secret::random_bytes()[0]) * 2);
                tokio::select! {
                    _ = tokio::time::sleep(backoff + jitter) => {}
                    _ = stop.notified() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Sends one batch (possibly empty: a heartbeat) and applies the outcomes. Returns whether
/// more entries are waiting.
async fn forward_once(
    state: &crate::state::AppState,
    client: &ParentClient,
    ignored: &mut Ignored,
) -> Result<bool, ParentError> {
    let store_err = |e: invsync_store::StoreError| ParentError::Unreachable {
        url: "the local store".into(),
        reason: e.to_string(),
    };
    if state.parent_code().is_none() {
        // The first contact checks the credential and tells this site its parent's code.
        let status = own_status(state).await.map_err(store_err)?;
        let parent = client.clone();
        let welcome = tokio::task::spawn_blocking(move || parent.hello(&status))
            .await
            .map_err(|e| ParentError::Unreachable {
                url: client.url().to_string(),
                reason: e.to_string(),
            })??;
        tracing::info!(parent = %welcome.parent, url = client.url(), "Connected to the parent site.");
        state.set_parent_code(welcome.parent);
    }
    let entries = state.store.outbox_batch(BATCH).await.map_err(store_err)?;
    let audit = state
        .store
        .audit_to_forward(AUDIT_BATCH)
        .await
        .map_err(store_err)?;
    let full = entries.len() == BATCH || audit.len() == AUDIT_BATCH;
    let batch = ForwardBatch {
        from: own_status(state).await.map_err(store_err)?,
        below: state.store.sites().await.map_err(store_err)?,
        entries,
        audit,
    };
    let parent = client.clone();
    let result = tokio::task::spawn_blocking(move || parent.forward(&batch))
        .await
        .map_err(|e| ParentError::Unreachable {
            url: client.url().to_string(),
            reason: e.to_string(),
        })??;
    let mut done = Vec::new();
    let mut refused = Vec::new();
    let mut resynced = std::collections::HashSet::new();
    for outcome in &result.outcomes {
        match outcome {
            ForwardOutcome::Applied { seq } | ForwardOutcome::Duplicate { seq } => done.push(*seq),
            ForwardOutcome::ResyncRequired {
                seq,
                client,
                class,
                reason,
            } => {
                // Later deltas of the same client and class in this batch fail the same way;
                // one full snapshot replaces them all.
                if resynced.insert((*client, *class)) {
                    tracing::info!(seq, client = %client, class = %class, reason = %reason, "The parent found a gap; sending the full snapshot.");
                    state
                        .store
                        .outbox_resync(*client, *class)
                        .await
                        .map_err(store_err)?;
                }
            }
            ForwardOutcome::Refused { seq, reason } => {
                // Resending a refused change cannot succeed; keeping it would block the
                // outbox for good. An operator must look at why the parent refused it.
                tracing::error!(seq, reason = %reason, "The parent refused a forwarded change; dropped it from the outbox.");
                refused.push(*seq);
            }
        }
    }
    // The parent now holds the stored changes, so the requests they completed are marked
    // forwarded to it (`invsync --wait` waits for that); a refused change was not stored there.
    let parent_code = state.parent_code();
    state
        .store
        .outbox_done(&done, &refused, parent_code.as_ref(), Timestamp::now())
        .await
        .map_err(store_err)?;
    if let Some(upto) = result.audit_upto {
        state
            .store
            .audit_forwarded_upto(upto)
            .await
            .map_err(store_err)?;
    }
    // After `outbox_done`, which marked the requests forwarded: what the parent says of the
    // sites above it applies to them.
    state
        .store
        .record_hops(&result.hops)
        .await
        .map_err(store_err)?;
    for request in &result.requests {
        take_down_request(state, request, ignored)
            .await
            .map_err(store_err)?;
    }
    Ok(full)
}

/// Origins of routed requests this site ignored and already logged at WARN. The parent hands
/// such a request over again every 30 s until it completes, which it never will here: once per
/// origin in the log tells an operator, every 30 s would bury everything else.
#[derive(Default)]
struct Ignored {
    warned: std::collections::HashSet<String>,
}

impl Ignored {
    /// Whether `origin` is new (and now remembered). Bounded: after many, it forgets them all,
    /// which costs one more WARN each.
    fn first(&mut self, origin: &str) -> bool {
        if self.warned.len() >= 10_000 {
            self.warned.clear();
        }
        self.warned.insert(origin.to_string())
    }
}

/// Takes in a resync request the parent routed down (`invsync --via-child` at a site above):
/// queued for this site's agent when the client is this site's and the site accepts requests
/// from its parent, routed on when the client belongs to a site below. The parent delivers a
/// request again until it completes, so a repeat is a no-op, logged at DEBUG only.
async fn take_down_request(
    state: &crate::state::AppState,
    req: &DownRequest,
    ignored: &mut Ignored,
) -> Result<(), invsync_store::StoreError> {
    let origin = req.origin();
    let (client, class) = (req.client, req.class);
    let why = match state
        .store
        .accept_down_request(req, state.accept_parent_requests, Timestamp::now())
        .await?
    {
        DownAccepted::Queued {
            id,
            client: name,
            created: true,
        } => {
            tracing::info!(%origin, %client, %class, id, "Queued a resync request routed down from a parent site.");
            // Who asked is in the audit of the site it was asked at (and above); here the actor
            // is that site.
            let actor = crate::audit::Actor {
                principal: crate::audit::Principal::site_token(Some(format!(
                    "site:{}",
                    req.origin_site
                ))),
                address: None,
            };
            crate::audit::record(
                &state.store,
                &actor,
                invsync_proto::wire::AuditAction::Request,
                Some(name.to_string()),
                Some(format!("{class}, id {id}, routed down from {origin}")),
            )
            .await;
            // An agent on the push channel picks it up at once, as it would a local request.
            state.hub.wake(&name);
            return Ok(());
        }
        DownAccepted::Relayed {
            id,
            route,
            created: true,
        } => {
            tracing::info!(%origin, %client, %class, id, owner = %route, "Routing a resync request from a parent site on to the owning site below.");
            return Ok(());
        }
        DownAccepted::Queued { id, .. } | DownAccepted::Relayed { id, .. } => {
            tracing::debug!(%origin, id, "A routed resync request arrived again; it is already queued.");
            return Ok(());
        }
        DownAccepted::NotAccepted => "this site does not accept requests from its parent \
            (enable it with `invsite config --accept-parent-requests true` and restart the server)"
            .to_string(),
        DownAccepted::UnknownClient => "no client with that id is held here".to_string(),
        DownAccepted::Refused(reason) => reason,
    };
    if ignored.first(&origin) {
        tracing::warn!(%origin, %client, %class, reason = %why, "Ignored a resync request routed down from a parent site; it stays pending where it was made.");
    } else {
        tracing::debug!(%origin, reason = %why, "Ignored a routed resync request again.");
    }
    Ok(())
}
