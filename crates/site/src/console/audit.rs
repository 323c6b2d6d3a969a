//! `GET /console/audit?user=NAME&since=AGE`: the audit trail, newest first, for every role
//! (docs/decisions.md says why). It reads through the store call the admin API's
//! `GET /api/v1/audit` makes, with the same query rules.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Html;
use invsync_proto::wire::AuditQuery;
use serde::Deserialize;

use super::session::Session;
use super::{Chrome, ConsoleError, render};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    chrome: Chrome,
    user: String,
    since: String,
    entries: Vec<Row>,
}

struct Row {
    id: i64,
    at: String,
    site: String,
    actor: String,
    address: String,
    action: String,
    target: String,
    details: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct Params {
    #[serde(default)]
    user: Option<String>,
    /// An RFC 3339 time or an age (`2d`), as `invsite audit --since`.
    #[serde(default)]
    since: Option<String>,
}

/// How many entries the page shows.
const SHOWN: u32 = 200;

pub async fn apply(
    State(state): State<AppState>,
    session: Session,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Html<String>, ConsoleError> {
    let Query(p) = query.map_err(|r| ConsoleError::BadInput(r.body_text()))?;
    let user = p.user.filter(|u| !u.trim().is_empty());
    let since_raw = p.since.filter(|s| !s.trim().is_empty());
    let since = since_raw
        .as_deref()
        .map(|s| invsync_proto::Timestamp::parse_since(s.trim()))
        .transpose()
        .map_err(ConsoleError::BadInput)?;
    let q = AuditQuery {
        since,
        user: user.clone(),
        limit: Some(SHOWN),
    };
    if let Some(problem) = q.problem() {
        return Err(ConsoleError::BadInput(problem));
    }
    let entries = state
        .store
        .audit(&q)
        .await?
        .into_iter()
        .map(|e| Row {
            id: e.id,
            at: e.at.rfc3339(),
            site: e.site.to_string(),
            actor: e.actor,
            address: e.address.unwrap_or_default(),
            action: e.action.as_str().to_string(),
            target: e.target.unwrap_or_default(),
            details: e.details.unwrap_or_default(),
        })
        .collect();
    render(&AuditPage {
        chrome: Chrome::new(&state, &session),
        user: user.unwrap_or_default(),
        since: since_raw.unwrap_or_default(),
        entries,
    })
}
