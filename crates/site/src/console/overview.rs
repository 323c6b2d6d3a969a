//! `GET /console/`: this site, its parent, the sites below it (as each last reported), client
//! counts, the resync requests not yet complete, and the outbox's depth and age.

use askama::Template;
use axum::extract::State;
use axum::response::Html;
use invsync_proto::SiteCode;
use invsync_proto::wire::{ClientQuery, RequestQuery, RequestState};

use super::session::Session;
use super::{Chrome, ConsoleError, ago, render, when};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "console/overview.html")]
struct Overview {
    chrome: Chrome,
    code: String,
    name: String,
    /// The parent's code, once this site has contacted it.
    parent: Option<String>,
    url: Option<String>,
    accepts_parent_requests: bool,
    own_clients: u64,
    outbox_depth: i64,
    /// The configured parent URL, when this is a child site.
    parent_url: Option<String>,
    all_clients: u64,
    pending: u64,
    picked_up: u64,
    waiting: Vec<Waiting>,
    outbox_oldest: String,
    last_forwarded: String,
    below: Vec<Below>,
}

/// How many pending requests the overview lists.
const WAITING: u32 = 10;

struct Waiting {
    client: String,
    href: String,
    site: String,
    what: String,
    requested: String,
}

struct Below {
    code: String,
    name: String,
    parent: String,
    url: String,
    clients: i64,
    outbox_depth: i64,
    reported: String,
}

pub async fn apply(
    State(state): State<AppState>,
    session: Session,
) -> Result<Html<String>, ConsoleError> {
    // What `GET /api/v1/sites` shows, except that the client counts are counted pages of the
    // client list (indexed) rather than the whole list, which costs too much at 100,000.
    let meta = state.store.site().await?;
    let stats = state.store.outbox_stats().await?;
    let counted = |site: Option<SiteCode>| ClientQuery {
        site,
        limit: 1,
        ..ClientQuery::default()
    };
    let own = state
        .store
        .clients_page(&counted(Some(state.site_code.clone())))
        .await?
        .total;
    let all = state.store.clients_page(&counted(None)).await?.total;
    let below = state.store.sites().await?;
    // Resync requests not yet complete, as `GET /api/v1/requests?state=…` counts them; the
    // newest pending ones are listed.
    let requests = |state, limit| RequestQuery {
        state: Some(state),
        limit,
        ..RequestQuery::default()
    };
    let pending = state
        .store
        .requests_page(&requests(RequestState::Pending, WAITING))
        .await?;
    let picked_up = state
        .store
        .requests_page(&requests(RequestState::PickedUp, 1))
        .await?
        .total;
    let parent_url = state
        .dir
        .config()
        .ok()
        .and_then(|c| c.parent.map(|p| p.url));
    let page = Overview {
        chrome: Chrome::new(&state, &session),
        code: meta.code.to_string(),
        name: meta.name,
        parent: state.parent_code().map(|p| p.to_string()),
        url: state.public_url(),
        accepts_parent_requests: state.accept_parent_requests,
        own_clients: own,
        outbox_depth: stats.depth,
        outbox_oldest: ago(stats.oldest),
        last_forwarded: when(stats.last_forwarded),
        parent_url,
        all_clients: all,
        pending: pending.total,
        picked_up,
        waiting: pending
            .requests
            .into_iter()
            .map(|r| Waiting {
                href: super::client_href(&r.client, &r.site, &state.site_code),
                client: r.client.to_string(),
                site: r.site.to_string(),
                what: format!("resync {}", r.request.class),
                requested: ago(Some(r.request.requested_at)),
            })
            .collect(),
        below: below
            .into_iter()
            .map(|s| Below {
                code: s.code.to_string(),
                name: s.name,
                parent: s.parent.map(|p| p.to_string()).unwrap_or_default(),
                url: s.url.unwrap_or_default(),
                clients: s.clients,
                outbox_depth: s.outbox_depth,
                reported: ago(Some(s.reported_at)),
            })
            .collect(),
    };
    render(&page)
}
