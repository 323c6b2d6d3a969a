//! Reaching a site from a command-line tool on the site server (`invsync`, `setevnt`,
//! `invsite show`, `invsite clients`): the admin API over HTTP when `invsite serve` runs, else
//! the site's database directly. Both paths run the same store operations, so a request queued
//! either way is the same durable row, and reads through a running server see what it holds in
//! memory (last-seen times are written in batches). A server that serves TLS is reached over
//! `https://` trusting the site's own CA certificate (`tls.ca` in its configuration).

use std::path::Path;

use crate::audit::{self, Actor};
use crate::datadir::open_store;
use crate::datadir::{Config, SiteDir};
use crate::ownership::{self, OwnershipError};
use anyhow::{Context, Result};
use invsync_client::{Answer, Client, ClientOptions, Encoding, Failure, Timeouts};
use invsync_proto::exit::{Code, Exit};
use invsync_proto::wire::{
    self, AuditAction, ClientSummary, ClientView, EventRequestBody, HistoryEntry, HistoryQuery,
    Queued, RequestQuery, RequestState, RequestView, ResyncRequestBody, SitesView,
};
use invsync_proto::{Class, ClientName, SiteCode, Timestamp};
use invsync_store::{Store, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A site the tool talks to.
pub struct SiteAccess {
    pub dir: SiteDir,
    pub config: Config,
    base_url: String,
    http: Client,
    options: AccessOptions,
    /// Set once the server turned out not to be running.
    direct: Option<(tokio::runtime::Runtime, Store)>,
}

/// How a tool reaches its site.
#[derive(Debug, Clone)]
pub struct AccessOptions {
    /// The tool's name, for the "runs only on a site server" message.
    pub tool: &'static str,
    /// Say on stderr when the server is not running and the database is used instead; tools
    /// that queue something say it, because the delivery waits for the server.
    pub note_fallback: bool,
}

impl SiteAccess {
    /// Opens the site in `data_dir` (or `$INVSITE_DIR`, or the default), exiting 3 when this
    /// machine is not a site server.
    pub fn open(options: AccessOptions, data_dir: Option<&Path>) -> Result<SiteAccess> {
        let tool = options.tool;
        let dir = SiteDir::resolve(data_dir);
        let config = dir.config().map_err(|e| match e.downcast::<Exit>() {
            Ok(exit) if exit.code == Code::NotSiteServer => Exit::new(
                Code::NotSiteServer,
                format!(
                    "{tool} runs only on a site server: no site data directory at {} \
                     (give --data-dir or set INVSITE_DIR)",
                    dir.root.display()
                ),
            )
            .into(),
            Ok(exit) => exit.into(),
            Err(e) => e,
        })?;
        let token = dir.admin_token()?;
        let base_url = dir.base_url(&config);
        let ca = dir.tls_ca(&config);
        let http = Client::new(&ClientOptions {
            url: &base_url,
            ca: ca.as_deref(),
            timeouts: Timeouts::TOOLS,
            user_agent: None,
            token: Some(&token),
        })
        .map_err(|e| anyhow::anyhow!("cannot reach the site server over TLS: {e}"))?
        // The site records what this tool asks for as the local user's, not the token's.
        .with_actor(wire::ACTOR_HEADER, audit::local_name());
        Ok(SiteAccess {
            dir,
            config,
            base_url,
            http,
            options,
            direct: None,
        })
    }

    pub fn code(&self) -> &SiteCode {
        &self.config.site_code
    }

    /// True once the tool fell back to the database because the server was not running.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    pub fn request_resync(&mut self, name: &ClientName, class: Class) -> Result<Queued> {
        let path = wire::api_client_requests(name);
        if let Some(q) = self.post(
            &path,
            &ResyncRequestBody {
                class,
                via_child: false,
                site: None,
            },
        )? {
            return Ok(q);
        }
        let command = format!("invsync {class} {name}");
        let queued = self.run_direct(|store, own| async move {
            match store.request_resync(name, class, Timestamp::now()).await {
                Err(StoreError::UnknownClient { .. }) => {
                    Err(ownership::not_own(&store, &own, name, &command).await)
                }
                other => Ok(other?),
            }
        })?;
        self.audit_direct(AuditAction::Request, &queued, class.to_string())?;
        Ok(queued)
    }

    /// `invsync --via-child`: a resync request queued for this site's own client, or routed
    /// down to the owning site below (`site` picks it among several).
    pub fn request_resync_via_child(
        &mut self,
        name: &ClientName,
        class: Class,
        site: Option<&SiteCode>,
    ) -> Result<Queued> {
        let path = wire::api_client_requests(name);
        let body = ResyncRequestBody {
            class,
            via_child: true,
            site: site.cloned(),
        };
        if let Some(q) = self.post(&path, &body)? {
            return Ok(q);
        }
        let queued = self.run_direct(|store, own| async move {
            ownership::route_resync(&store, &own, name, class, site, Timestamp::now()).await
        })?;
        self.audit_direct(AuditAction::Request, &queued, class.to_string())?;
        Ok(queued)
    }

    pub fn request_event(&mut self, name: &ClientName, event: wire::Event) -> Result<Queued> {
        let path = wire::api_client_events(name);
        if let Some(q) = self.post(&path, &EventRequestBody { event })? {
            return Ok(q);
        }
        let command = format!("setevnt {name} {}", event.as_str());
        let queued = self.run_direct(|store, own| async move {
            match store.request_event(name, event, Timestamp::now()).await {
                Err(StoreError::UnknownClient { .. }) => {
                    Err(ownership::not_own(&store, &own, name, &command).await)
                }
                other => Ok(other?),
            }
        })?;
        self.audit_direct(AuditAction::Event, &queued, event.as_str().to_string())?;
        Ok(queued)
    }

    pub fn request_state(&mut self, id: i64) -> Result<Option<RequestView>> {
        match self.get(&format!("/api/v1/requests/{id}"))? {
            Some(found) => Ok(found),
            None => self.run_direct(|store, _| async move { Ok(store.request_state(id).await?) }),
        }
    }

    /// `invsync cancel`: cancels a pending resync request through the running site's admin API,
    /// else in its database. Exit 4 for an unknown id, 5 for a request routed down to a site
    /// below (cancel it there), 1 for one already picked up or complete.
    pub fn cancel_request(&mut self, id: i64) -> Result<wire::Cancelled> {
        if self.direct.is_none() {
            match self.http.delete(&format!("/api/v1/requests/{id}"), true) {
                Ok(answer) if answer.status() == 409 => {
                    let message = answer.refusal().unwrap_or_else(|| "HTTP 409".to_string());
                    return Err(Exit::new(Code::Failure, message).into());
                }
                Ok(answer) => return decode(&answer),
                Err(e) => self.failed(e)?,
            }
        }
        let (rt, store) = self.direct()?;
        match rt.block_on(store.cancel_request(id, Timestamp::now())) {
            Ok(cancelled) => {
                let already = if cancelled.already_cancelled {
                    " (already cancelled)"
                } else {
                    ""
                };
                let details = format!(
                    "{} request of {}{already}",
                    cancelled.request.class, cancelled.client
                );
                rt.block_on(audit::record(
                    store,
                    &Actor::local(),
                    AuditAction::Cancel,
                    Some(id.to_string()),
                    Some(details),
                ));
                Ok(cancelled)
            }
            Err(e @ StoreError::UnknownRequest { .. }) => {
                Err(Exit::new(Code::UnknownClient, e.to_string()).into())
            }
            Err(e @ StoreError::OtherSite(_)) => {
                Err(Exit::new(Code::OtherSite, e.to_string()).into())
            }
            Err(e @ StoreError::NotCancellable(_)) => {
                Err(Exit::new(Code::Failure, e.to_string()).into())
            }
            Err(e) => Err(anyhow::Error::new(e).context("the site database refused the cancel")),
        }
    }

    /// The clients holding a pending resync request of `class` (not picked up, not expired),
    /// each with its owning site: the API's request list in pages of the largest size, else
    /// the database's.
    pub fn pending_requests(&mut self, class: Class) -> Result<Vec<wire::ClientRequest>> {
        let mut all: Vec<wire::ClientRequest> = Vec::new();
        loop {
            let query = RequestQuery {
                state: Some(RequestState::Pending),
                class: Some(class),
                limit: wire::MAX_PAGE_LIMIT,
                offset: all.len() as u64,
            };
            let path = format!(
                "/api/v1/requests?state=pending&class={class}&limit={}&offset={}",
                query.limit, query.offset
            );
            let page = match self.get::<wire::RequestPage>(&path)? {
                Some(Some(page)) => page,
                Some(None) => {
                    return Err(anyhow::anyhow!(
                        "the site has no request list endpoint; is it an invsync site?"
                    ));
                }
                None => self
                    .run_direct(|store, _| async move { Ok(store.requests_page(&query).await?) })?,
            };
            let done =
                page.requests.is_empty() || (all.len() + page.requests.len()) as u64 >= page.total;
            all.extend(page.requests);
            if done {
                return Ok(all);
            }
        }
    }

    /// `invsite delete`: deletes a client of this site through the running site's admin API,
    /// else in its database, both through [`crate::lifecycle::delete_client`]. Exit 4 for an
    /// unknown client, 5 for another site's.
    pub fn delete_client(
        &mut self,
        name: &ClientName,
        site: Option<&SiteCode>,
    ) -> Result<wire::Deleted> {
        if self.direct.is_none() {
            let mut path = wire::api_client(name);
            if let Some(code) = site {
                path = format!("{path}?site={code}");
            }
            match self.http.delete(&path, true) {
                Ok(answer) => return decode(&answer),
                Err(e) => self.failed(e)?,
            }
        }
        self.run_direct(|store, own| async move {
            let actor = crate::audit::Actor::local();
            crate::lifecycle::delete_client(&store, &actor, &own, name, site).await
        })
    }

    /// `invsite history CLIENT --deleted`: the deleted clients once named `name`, read from the
    /// database (the admin API serves live clients only).
    pub fn deleted_history(
        &mut self,
        name: &ClientName,
        query: &HistoryQuery,
    ) -> Result<Vec<invsync_store::DeletedHistory>> {
        let (rt, store) = self.direct()?;
        Ok(rt.block_on(store.deleted_history(name, query))?)
    }

    /// Every client, sorted by name: the API's pages of the largest size in turn (a client
    /// enrolled meanwhile may shift one page's window; the next call sees it).
    /// `stale`: only the stale ones.
    pub fn clients(&mut self, stale: bool) -> Result<Vec<ClientSummary>> {
        let mut all = Vec::new();
        let filter = if stale { "&stale=true" } else { "" };
        loop {
            let path = format!(
                "{}?limit={}&offset={}{filter}",
                wire::API_CLIENTS,
                wire::MAX_PAGE_LIMIT,
                all.len()
            );
            match self.get::<wire::ClientPage>(&path)? {
                Some(Some(page)) => {
                    let done = page.clients.is_empty()
                        || (all.len() + page.clients.len()) as u64 >= page.total;
                    all.extend(page.clients);
                    if done {
                        return Ok(all);
                    }
                }
                Some(None) => {
                    return Err(anyhow::anyhow!(
                        "the site has no client list endpoint; is it an invsync site?"
                    ));
                }
                // Not running (from the first page on): the database holds them all.
                None => {
                    return self.run_direct(|store, _| async move {
                        let mut all = store.clients().await?;
                        all.retain(|c| c.stale || !stale);
                        Ok(all)
                    });
                }
            }
        }
    }

    /// This site and the sites below it.
    pub fn sites(&mut self) -> Result<SitesView> {
        match self.get(wire::API_SITES)? {
            Some(Some(view)) => Ok(view),
            Some(None) => Err(anyhow::anyhow!(
                "the site has no sites endpoint; is it an invsync site?"
            )),
            None => {
                let url = self.config.url.clone();
                let accepts = self.config.accept_parent_requests;
                self.run_direct(|store, _| async move {
                    let site = crate::parent::status_of(&store, None, url, accepts).await?;
                    let below = store.sites().await?;
                    Ok(SitesView { site, below })
                })
            }
        }
    }

    /// One client this site holds (own, or of a site below; `site` narrows it), or exit 4
    /// when there is none and 2 when the name is ambiguous.
    pub fn client_view(
        &mut self,
        name: &ClientName,
        site: Option<&SiteCode>,
    ) -> Result<ClientView> {
        let mut path = wire::api_client(name);
        if let Some(code) = site {
            path = format!("{path}?site={code}");
        }
        match self.get(&path)? {
            Some(Some(view)) => Ok(view),
            Some(None) => Err(ownership_exit(OwnershipError::Unknown {
                name: name.clone(),
                site: site.unwrap_or(&self.config.site_code).clone(),
            })),
            None => self.run_direct(|store, own| async move {
                ownership::view(&store, &own, name, site).await
            }),
        }
    }

    /// A client's history, or exit 4 when the site has no such client.
    pub fn history(
        &mut self,
        name: &ClientName,
        site: Option<&SiteCode>,
        query: &HistoryQuery,
    ) -> Result<Vec<HistoryEntry>> {
        let mut path = wire::api_client_history(name);
        let mut params = Vec::new();
        if let Some(c) = query.class {
            params.push(format!("class={c}"));
        }
        if let Some(t) = query.since {
            params.push(format!("since={}", t.rfc3339()));
        }
        if let Some(l) = query.limit {
            params.push(format!("limit={l}"));
        }
        if let Some(code) = site {
            params.push(format!("site={code}"));
        }
        if !params.is_empty() {
            path = format!("{path}?{}", params.join("&"));
        }
        match self.get(&path)? {
            Some(Some(entries)) => Ok(entries),
            Some(None) => Err(ownership_exit(OwnershipError::Unknown {
                name: name.clone(),
                site: self.config.site_code.clone(),
            })),
            None => self.run_direct(|store, own| async move {
                ownership::history(&store, &own, name, site, query).await
            }),
        }
    }

    /// GETs from the admin API. `Ok(None)` means the server is not running; `Ok(Some(None))`
    /// means it answered 404.
    fn get<T: DeserializeOwned>(&mut self, path: &str) -> Result<Option<Option<T>>> {
        if self.direct.is_some() {
            return Ok(None);
        }
        match self.http.get(path, true) {
            Ok(answer) if answer.status() == 404 => Ok(Some(None)),
            Ok(answer) => decode(&answer).map(|v| Some(Some(v))),
            Err(e) => self.failed(e).map(|()| None),
        }
    }

    /// POSTs to the admin API. `Ok(None)` means the server is not running and the caller
    /// should use the database.
    fn post<B: Serialize, T: DeserializeOwned>(
        &mut self,
        path: &str,
        body: &B,
    ) -> Result<Option<T>> {
        if self.direct.is_some() {
            return Ok(None);
        }
        match self.http.post(path, body, Encoding::Json, true) {
            Ok(answer) => decode(&answer).map(Some),
            Err(e) => self.failed(e).map(|()| None),
        }
    }

    /// A request that got no answer: an error, or `Ok` once the tool has fallen back to the
    /// database because no server is running.
    fn failed(&mut self, e: Failure) -> Result<()> {
        if e.tls().is_some() {
            return Err(self.tls_error(&e));
        }
        if e.no_server() {
            return self.go_direct();
        }
        Err(e).with_context(|| format!("talking to the site at {}", self.base_url))
    }

    /// A running server whose certificate the tool does not trust: an error, not a reason to
    /// use the database behind its back.
    fn tls_error(&self, e: &Failure) -> anyhow::Error {
        let reason = e.tls().unwrap_or_else(|| e.to_string());
        let trusted = match self.dir.tls_ca(&self.config) {
            Some(ca) => format!("the CA certificate {}", ca.display()),
            None => "the built-in Mozilla roots (the configuration names no tls.ca)".to_string(),
        };
        anyhow::anyhow!(
            "cannot talk to the site server at {}: {reason}; the tools trust {trusted}, and the \
             certificate must name the address they connect to",
            self.base_url
        )
    }

    fn go_direct(&mut self) -> Result<()> {
        if self.options.note_fallback {
            eprintln!(
                "note: the site server at {} is not running; queuing in its database instead \
                 (it is delivered once `invsite serve` runs)",
                self.base_url
            );
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let store = rt.block_on(open_store(&self.dir, &self.config))?;
        self.direct = Some((rt, store));
        Ok(())
    }

    fn direct(&mut self) -> Result<&(tokio::runtime::Runtime, Store)> {
        if self.direct.is_none() {
            self.go_direct()?;
        }
        Ok(self.direct.as_ref().expect("set by go_direct"))
    }

    /// Records in the audit, as `local:<unix user>`, a request or event this tool queued in the
    /// database itself (through the API, the site records it).
    fn audit_direct(&mut self, action: AuditAction, q: &Queued, what: String) -> Result<()> {
        let details = match (&q.routed_to, q.created) {
            (Some(owner), _) => format!("{what}, id {}, routed to {owner}", q.id),
            (None, true) => format!("{what}, id {}", q.id),
            (None, false) => format!("{what}, id {} (already pending)", q.id),
        };
        let (rt, store) = self.direct()?;
        rt.block_on(audit::record(
            store,
            &Actor::local(),
            action,
            Some(q.client.to_string()),
            Some(details),
        ));
        Ok(())
    }

    /// Runs a store operation when the server is not running. Ownership errors become the
    /// exit codes of SPEC section 7.
    fn run_direct<'a, T, F, Fut>(&'a mut self, f: F) -> Result<T>
    where
        F: FnOnce(Store, SiteCode) -> Fut,
        Fut: std::future::Future<Output = Result<T, OwnershipError>> + 'a,
    {
        let own = self.config.site_code.clone();
        let (rt, store) = self.direct()?;
        rt.block_on(f(store.clone(), own)).map_err(ownership_exit)
    }
}

/// The exit code of SPEC section 7 for an ownership answer: 4 unknown, 5 another site's
/// client, 2 an ambiguous name (say `--site`).
fn ownership_exit(e: OwnershipError) -> anyhow::Error {
    let code = match &e {
        OwnershipError::Unknown { .. } => Code::UnknownClient,
        OwnershipError::Elsewhere { .. } | OwnershipError::NotAccepting { .. } => Code::OtherSite,
        OwnershipError::Ambiguous { .. } => Code::Usage,
        OwnershipError::Store(_) => {
            return anyhow::Error::new(e).context("the site database refused the request");
        }
    };
    Exit::new(code, e.to_string()).into()
}

/// Turns an admin API response into a value or the exit code SPEC section 7 gives its error.
fn decode<T: DeserializeOwned>(answer: &Answer) -> Result<T> {
    let status = answer.status();
    if answer.is_success() {
        return answer
            .json::<T>()
            .context("the site sent an answer this tool cannot read");
    }
    let message = answer.refusal().unwrap_or_else(|| format!("HTTP {status}"));
    let code = match status {
        404 => Code::UnknownClient,
        421 => Code::OtherSite,
        400 | 409 | 413 => Code::Usage,
        401 => {
            return Err(Exit::new(
                Code::Failure,
                format!("the site refused the admin token ({message}); is the data directory the running site's?"),
            )
            .into());
        }
        _ => Code::Failure,
    };
    let message = if code == Code::Failure {
        format!("the site could not do it: {message} (HTTP {status}); see the site's log")
    } else {
        message
    };
    Err(Exit::new(code, message).into())
}
