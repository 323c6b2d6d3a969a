//! `GET /console/`: this site, its parent, the sites below it (as each last reported), client
//! counts and the outbox's depth and age.

use askama::Template;
use axum::extract::State;
use axum::response::Html;
use invsync_proto::wire::{ClientQuery, SiteStatus};

use super::session::Session;
use super::{ago, render, when, Chrome, ConsoleError};
use crate::server::AppState;

#[derive(Template)]
#[template(path = "console/overview.html")]
struct Overview {
    chrome: Chrome,
    status: SiteStatus,
    /// The configured parent URL, when this is a child site.
    parent_url: Option<String>,
    all_clients: u64,
    outbox_oldest: String,
    last_forwarded: String,
    below: Vec<Below>,
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

pub async fn apply(State(state): State<AppState>, session: Session) -> Result<Html<String>, ConsoleError> {
    // What `GET /api/v1/sites` shows, plus the number of clients of the whole tree (one
    // counted page of the client list).
    let status = crate::parent::own_status(&state).await?;
    let below = state.store.sites().await?;
    let all = state.store.clients_page(&ClientQuery { limit: 1, ..ClientQuery::default() }).await?;
    let parent_url = state.dir.config().ok().and_then(|c| c.parent.map(|p| p.url));
    let page = Overview {
        chrome: Chrome::new(&state, &session),
        outbox_oldest: ago(status.outbox_oldest),
        last_forwarded: when(status.last_forwarded),
        status,
        parent_url,
        all_clients: all.total,
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
