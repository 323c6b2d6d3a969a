//! `GET /console/clients/{name}[?site=CODE&filter=TEXT]`: one client (as `invsite show` and
//! `GET /api/v1/clients/{name}` resolve it) with its hardware (a section per kind: System,
//! CPU, ..., Other, as `invsite show` groups it, `kinds.rs`), its software (a section per
//! source, filtered on the server by `filter`, so it works without JavaScript), its latest
//! history, its requests and events with their states, and the buttons that queue requests
//! (`queue.rs`).

use askama::Template;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::Html;
use invsync_proto::wire::{ClientView, HistoryQuery, SnapshotView};
use invsync_proto::{Attrs, SiteCode};
use serde::Deserialize;

use super::session::Session;
use super::{Chrome, ConsoleError, ago, render, when};
use crate::api::admin::client_name;
use crate::kinds;
use crate::state::AppState;

/// History entries shown; `invsite history` lists more.
const HISTORY: usize = 100;

#[derive(Debug, Deserialize)]
pub struct ClientQuery {
    pub site: Option<SiteCode>,
    #[serde(default)]
    pub filter: String,
}

#[derive(Template)]
#[template(path = "console/client.html")]
struct ClientPage {
    chrome: Chrome,
    name: String,
    id: String,
    site: String,
    own: bool,
    machine_id: String,
    enrolled: String,
    last_seen: String,
    /// The agent's version (`-` when unknown) and whether it is older than the site's minimum.
    agent: String,
    outdated: bool,
    /// The names the client had before enrollments of the same machine took it over.
    former_names: String,
    hw: Option<Class>,
    sw: Option<Class>,
    sw_total: usize,
    filter: String,
    requests: Vec<Line>,
    events: Vec<Line>,
    history: Vec<Change>,
}

struct Class {
    version: i64,
    updated: String,
    full: String,
    /// Items shown (all of them, or those the filter matches).
    shown: usize,
    groups: Vec<Group>,
}

/// A kind of hardware item or a software source: its heading, its anchor and its items
/// (key, attributes) in key order.
struct Group {
    id: String,
    label: String,
    items: Vec<(String, String)>,
}

/// A request or event and its state.
struct Line {
    id: i64,
    what: String,
    state: &'static str,
    requested: String,
    picked_up: String,
    completed: String,
    note: String,
}

struct Change {
    at: String,
    class: String,
    key: String,
    old: String,
    new: String,
}

fn attrs(a: &Attrs) -> String {
    a.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The snapshot's items that `filter` matches (key or attributes, ignoring case).
fn matching(s: &SnapshotView, filter: &str) -> Vec<(String, String)> {
    let filter = filter.to_lowercase();
    s.items
        .iter()
        .map(|(k, a)| (k.clone(), attrs(a)))
        .filter(|(k, a)| {
            filter.is_empty()
                || k.to_lowercase().contains(&filter)
                || a.to_lowercase().contains(&filter)
        })
        .collect()
}

fn class(s: &SnapshotView, groups: Vec<Group>) -> Class {
    Class {
        version: s.version,
        updated: format!("{} ({})", when(Some(s.updated_at)), ago(Some(s.updated_at))),
        full: when(Some(s.full_at)),
        shown: groups.iter().map(|g| g.items.len()).sum(),
        groups,
    }
}

/// Hardware: a group per kind, in the kinds' order.
fn hw_class(s: &SnapshotView) -> Class {
    let groups = kinds::by_kind(matching(s, ""), |(k, _)| k.as_str())
        .into_iter()
        .map(|(kind, items)| Group {
            id: format!("hw-{}", kind.slug()),
            label: kind.label().to_string(),
            items,
        })
        .collect();
    class(s, groups)
}

/// Software: a group per source (dpkg, rpm, ...), of the packages `filter` matches.
fn sw_class(s: &SnapshotView, filter: &str) -> Class {
    let groups = kinds::by_source(matching(s, filter), |(k, _)| k.as_str())
        .into_iter()
        .map(|(source, items)| Group {
            // An anchor from the agent's source name: letters and digits kept, the rest `-`.
            id: format!(
                "sw-{}",
                source
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect::<String>()
            ),
            label: source,
            items,
        })
        .collect();
    class(s, groups)
}

fn lines(view: &ClientView) -> (Vec<Line>, Vec<Line>) {
    let requests = view
        .requests
        .iter()
        .map(|r| Line {
            id: r.id,
            what: format!("resync {}", r.class),
            state: r.state.as_str(),
            requested: when(Some(r.requested_at)),
            picked_up: when(r.picked_up_at),
            completed: when(r.completed_at),
            note: match (&r.route, &r.origin) {
                (Some(route), _) => format!("routed to {route}"),
                (None, Some(origin)) => format!("from {origin}"),
                (None, None) => String::new(),
            },
        })
        .collect();
    let events = view
        .events
        .iter()
        .map(|e| Line {
            id: e.id,
            what: e.event.as_str().to_string(),
            state: e.state.as_str(),
            requested: when(Some(e.requested_at)),
            picked_up: when(e.picked_up_at),
            completed: when(e.completed_at),
            note: String::new(),
        })
        .collect();
    (requests, events)
}

pub async fn apply(
    State(state): State<AppState>,
    session: Session,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ClientQuery>, QueryRejection>,
) -> Result<Html<String>, ConsoleError> {
    let Path(raw) = path.map_err(|r| ConsoleError::BadInput(r.body_text()))?;
    let Query(q) = query.map_err(|r| ConsoleError::BadInput(r.body_text()))?;
    let name = client_name(&raw)?;
    let view =
        crate::ownership::view(&state.store, &state.site_code, &name, q.site.as_ref()).await?;
    let hq = HistoryQuery {
        limit: Some(HISTORY),
        ..HistoryQuery::default()
    };
    let history =
        crate::ownership::history(&state.store, &state.site_code, &name, Some(&view.site), &hq)
            .await?;
    let (requests, events) = lines(&view);
    let own = view.site == state.site_code;
    let page = ClientPage {
        chrome: Chrome::new(&state, &session),
        name: view.name.to_string(),
        id: view.id.to_string(),
        site: view.site.to_string(),
        own,
        machine_id: view.machine_id.clone(),
        enrolled: when(Some(view.enrolled_at)),
        last_seen: format!("{} ({})", when(view.last_seen), ago(view.last_seen)),
        agent: view
            .agent_version
            .clone()
            .unwrap_or_else(|| "-".to_string()),
        outdated: view.agent_outdated,
        former_names: view
            .former_names
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        hw: view.hw.as_ref().map(hw_class),
        sw_total: view.sw.as_ref().map_or(0, |s| s.items.len()),
        sw: view.sw.as_ref().map(|s| sw_class(s, &q.filter)),
        filter: q.filter,
        requests,
        events,
        history: history
            .into_iter()
            .map(|h| Change {
                at: when(Some(h.at)),
                class: h.class.to_string(),
                key: h.key,
                old: h.old.as_ref().map(attrs).unwrap_or_default(),
                new: h.new.as_ref().map(attrs).unwrap_or_default(),
            })
            .collect(),
    };
    render(&page)
}
