//! `GET /console/clients?q=&site=&stale=&sort=&desc=&offset=`: one page of the clients this site
//! holds, searched by name, only the stale ones (`stale=1`: not seen for longer than `invsite
//! config --stale-after`) when asked, sorted by a column, counted and paged in the store
//! (`Store::clients_page`, indexed), so it stays fast with 100,000 clients. Plain links and a
//! GET form; htmx only swaps the table in place while typing.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Html;
use invsync_proto::SiteCode;
use invsync_proto::wire::{ClientQuery, ClientSort};
use serde::Deserialize;

use super::session::Session;
use super::{Chrome, ConsoleError, ago, render};
use crate::state::AppState;

/// Clients per page.
const PAGE: u32 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    site: String,
    #[serde(default)]
    sort: Option<ClientSort>,
    #[serde(default)]
    desc: Option<String>,
    /// `1`: only the stale clients.
    #[serde(default)]
    stale: Option<String>,
    #[serde(default)]
    offset: u64,
}

#[derive(Template)]
#[template(path = "console/clients.html")]
struct ClientsPage {
    chrome: Chrome,
    q: String,
    site: String,
    sort: &'static str,
    desc: bool,
    stale: bool,
    total: u64,
    first: u64,
    last: u64,
    prev: Option<String>,
    next: Option<String>,
    columns: Vec<Column>,
    rows: Vec<Row>,
}

struct Column {
    title: &'static str,
    href: String,
    /// "▲"/"▼" on the sorted column.
    mark: &'static str,
}

struct Row {
    name: String,
    href: String,
    site: String,
    last_seen: String,
    hw: String,
    sw: String,
    pending: i64,
    /// The agent's version, `-` when unknown, marked when older than the site's minimum.
    agent: String,
    outdated: bool,
    stale: bool,
}

fn sort_name(s: ClientSort) -> &'static str {
    match s {
        ClientSort::Name => "name",
        ClientSort::LastSeen => "last_seen",
        ClientSort::HwUpdated => "hw_updated",
        ClientSort::SwUpdated => "sw_updated",
    }
}

/// What a link to this list keeps of the search: the name, the site, the stale filter.
struct Search<'a> {
    q: &'a str,
    site: &'a str,
    stale: bool,
}

/// A link to this list with the same search and another sort or offset.
fn link(search: &Search<'_>, sort: ClientSort, desc: bool, offset: u64) -> String {
    let params = [
        ("q", search.q.to_string()),
        ("site", search.site.to_string()),
        ("stale", if search.stale { "1" } else { "" }.to_string()),
        ("sort", sort_name(sort).to_string()),
        ("desc", if desc { "1" } else { "" }.to_string()),
        ("offset", offset.to_string()),
    ];
    let kept: Vec<(&str, String)> = params
        .into_iter()
        .filter(|(_, v)| !v.is_empty() && v != "0")
        .collect();
    format!(
        "/console/clients?{}",
        serde_urlencoded::to_string(kept).unwrap_or_default()
    )
}

pub async fn apply(
    State(state): State<AppState>,
    session: Session,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Html<String>, ConsoleError> {
    let Query(lq) = query.map_err(|r| ConsoleError::BadInput(r.body_text()))?;
    let sort = lq.sort.unwrap_or_default();
    let desc = lq
        .desc
        .as_deref()
        .is_some_and(|d| !d.is_empty() && d != "0");
    let stale = match lq.stale.as_deref().unwrap_or("") {
        "" | "0" => false,
        "1" | "on" | "true" => true,
        other => {
            return Err(ConsoleError::BadInput(format!(
                "stale={other:?}: use 1 for the stale clients only"
            )));
        }
    };
    let site = match lq.site.trim() {
        "" => None,
        s => Some(SiteCode::parse(s).map_err(|e| ConsoleError::BadInput(e.to_string()))?),
    };
    let search = lq.q.trim().to_string();
    let cq = ClientQuery {
        search: (!search.is_empty()).then(|| search.clone()),
        site,
        stale: stale.then_some(true),
        sort,
        descending: desc,
        limit: PAGE,
        offset: lq.offset,
    };
    let page = state.store.clients_page(&cq).await?;
    let kept = Search {
        q: &search,
        site: &lq.site,
        stale,
    };
    let shown = page.clients.len() as u64;
    let columns = [
        ("Name", ClientSort::Name),
        ("Last seen", ClientSort::LastSeen),
        ("Hardware updated", ClientSort::HwUpdated),
        ("Software updated", ClientSort::SwUpdated),
    ]
    .into_iter()
    .map(|(title, s)| {
        let active = s == sort;
        Column {
            title,
            // The sorted column's header flips the direction; another column sorts ascending.
            href: link(&kept, s, active && !desc, 0),
            mark: match (active, desc) {
                (false, _) => "",
                (true, false) => "▲",
                (true, true) => "▼",
            },
        }
    })
    .collect();
    let rows = page
        .clients
        .into_iter()
        .map(|c| Row {
            href: super::client_href(&c.name, &c.site, &state.site_code),
            name: c.name.to_string(),
            site: c.site.to_string(),
            last_seen: ago(c.last_seen),
            hw: c.hw_version.map_or_else(
                || "none".to_string(),
                |v| format!("v{v}, {}", ago(c.hw_updated_at)),
            ),
            sw: c.sw_version.map_or_else(
                || "none".to_string(),
                |v| format!("v{v}, {}", ago(c.sw_updated_at)),
            ),
            pending: c.pending_requests,
            agent: c.agent_version.clone().unwrap_or_else(|| "-".to_string()),
            outdated: c.agent_outdated,
            stale: c.stale,
        })
        .collect();
    let prev =
        (lq.offset > 0).then(|| link(&kept, sort, desc, lq.offset.saturating_sub(PAGE as u64)));
    let next = (lq.offset + shown < page.total).then(|| link(&kept, sort, desc, lq.offset + shown));
    let view = ClientsPage {
        chrome: Chrome::new(&state, &session),
        q: search,
        site: lq.site,
        sort: sort_name(sort),
        desc,
        stale,
        total: page.total,
        first: if shown == 0 { 0 } else { lq.offset + 1 },
        last: lq.offset + shown,
        prev,
        next,
        columns,
        rows,
    };
    render(&view)
}
