//! `GET /api/v1/clients?search=&site=&stale=&sort=&desc=&limit=&offset=`: one page of the clients
//! this site holds (its own and those of the sites below it) and how many match in all;
//! `stale=true` keeps only the clients not seen for longer than `--stale-after`, `false` the others. Sorted by
//! name unless `sort` says `last_seen`, `hw_updated` or `sw_updated`; `limit` is 1 to 1000
//! (100 when absent). The command-line tools page through it.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use invsync_proto::wire::{ClientPage, ClientQuery, ClientSort, DEFAULT_PAGE_LIMIT};

use crate::api::auth::Viewer;
use crate::api::error::ApiError;
use crate::state::AppState;
use invsync_proto::wire::ErrorBody;

#[utoipa::path(
    get,
    path = "/api/v1/clients",
    tag = "clients",
    summary = "One page of the clients this site holds",
    params(Params),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of clients and how many match", body = ClientPage),
        (status = 400, description = "A malformed or invalid parameter; the message names it", body = ErrorBody),
        (status = 401, description = "No API token, a wrong one, or an expired one", body = ErrorBody),
        (status = 500, description = "Internal error (detail in the site's log)", body = ErrorBody)
    )
)]
pub async fn apply(
    State(state): State<AppState>,
    _: Viewer,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Json<ClientPage>, ApiError> {
    let Query(p) = query.map_err(|r| ApiError::BadInput(r.body_text()))?;
    let q = p.into_query();
    // Refused here with the store's own sentence, so the caller learns it as a 400.
    if let Some(problem) = q.problem() {
        return Err(ApiError::BadInput(problem));
    }
    Ok(Json(state.store.clients_page(&q).await?))
}

/// The query string; every parameter is optional.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// Only clients whose name contains this, ignoring case.
    pub search: Option<String>,
    /// Only clients owned by this site (a three-character site code).
    pub site: Option<invsync_proto::SiteCode>,
    /// `true`: only stale clients (not seen for longer than `invsite config --stale-after`);
    /// `false`: only the others.
    pub stale: Option<bool>,
    /// `name` (default), `last_seen`, `hw_updated` or `sw_updated`.
    pub sort: Option<ClientSort>,
    /// Sort descending.
    pub desc: Option<bool>,
    /// Clients per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Clients of the sorted list to skip first.
    pub offset: Option<u64>,
}

impl Params {
    pub fn into_query(self) -> ClientQuery {
        ClientQuery {
            search: self.search,
            site: self.site,
            stale: self.stale,
            sort: self.sort.unwrap_or_default(),
            descending: self.desc.unwrap_or(false),
            limit: self.limit.unwrap_or(DEFAULT_PAGE_LIMIT),
            offset: self.offset.unwrap_or(0),
        }
    }
}
