//! `GET /api/v1/software?name=&version=&site=&limit=&offset=&format=`: the clients (of this
//! site and the sites below it) having a package, optionally only in a version range such as
//! `>=3.0,<3.1` (each package's versions in its source's order: rpm's, apk's, PEP 440 for
//! pip, dpkg's for the rest); and `GET /api/v1/software/packages?search=&site=…`:
//! every package some client has, with how many clients have each version. Both answer JSON,
//! or CSV with `format=csv`, the export of the console's software page. A CSV export without
//! a `limit` holds every matching row; JSON pages hold 1 to 1000 (100 when absent).
//!
//! Both scan every client's compact software item list (`Store::software`, `Store::packages`):
//! there is no per-package index, for the storage budget (see the store's `software` module).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use invsync_proto::SiteCode;
use invsync_proto::version::VersionRange;
use invsync_proto::wire::{
    DEFAULT_PAGE_LIMIT, ErrorBody, PackagePage, PackageQuery, SoftwarePage, SoftwareQuery,
};

use crate::api::auth::Viewer;
use crate::api::error::ApiError;
use crate::api::export::{holders_csv, packages_csv};
use crate::state::AppState;

/// How a list is answered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Csv,
}

impl Format {
    /// The page size of a list once its parameters were checked with `checked`: a CSV export
    /// that asked for no limit is every row.
    fn limit(self, asked: Option<u32>, checked: u32) -> u32 {
        match (self, asked) {
            (Format::Csv, None) => u32::MAX,
            _ => checked,
        }
    }
}

/// The query string of `GET /api/v1/software`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HolderParams {
    /// The package name, exactly as its package manager spells it (e.g. `openssl`).
    pub name: Option<String>,
    /// A version range: comparisons (`=`, `<`, `<=`, `>`, `>=`) separated by commas, all of
    /// which must hold, e.g. `>=3.0,<3.1`; a bare version means `=`. Each package's version
    /// compares by its source's rules: rpm's `rpmvercmp`, apk's, PEP 440 for pip, dpkg's for
    /// dpkg, snap, flatpak and any other source.
    pub version: Option<String>,
    /// Only clients owned by this site (a three-character site code).
    pub site: Option<SiteCode>,
    /// Rows per page, 1 to 1000 (default 100; a CSV export without it holds every row).
    pub limit: Option<u32>,
    /// Rows of the sorted list to skip first.
    pub offset: Option<u64>,
    /// `json` (default) or `csv`.
    pub format: Option<Format>,
}

impl HolderParams {
    /// The store's query, or the sentence saying what is wrong with the parameters.
    pub fn into_query(self) -> Result<(SoftwareQuery, Format), ApiError> {
        let format = self.format.unwrap_or_default();
        let version = match self.version.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(v) => Some(VersionRange::parse(v).map_err(ApiError::BadInput)?),
        };
        let q = SoftwareQuery {
            name: self.name.unwrap_or_default().trim().to_string(),
            version,
            site: self.site,
            limit: self.limit.unwrap_or(DEFAULT_PAGE_LIMIT),
            offset: self.offset.unwrap_or(0),
        };
        if let Some(problem) = q.problem() {
            return Err(ApiError::BadInput(problem));
        }
        let limit = format.limit(self.limit, q.limit);
        Ok((SoftwareQuery { limit, ..q }, format))
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/software",
    tag = "software",
    summary = "The clients having a package, optionally in a version range",
    params(HolderParams),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of clients having the package (or CSV: client,client_id,site,name,version,arch,source)", body = SoftwarePage),
        (status = 400, description = "No name, a malformed version range or another invalid parameter; the message names it", body = ErrorBody),
        (status = 401, description = "No API token, a wrong one, or an expired one", body = ErrorBody),
        (status = 500, description = "Internal error (detail in the site's log)", body = ErrorBody)
    )
)]
pub async fn holders(
    State(state): State<AppState>,
    _: Viewer,
    query: Result<Query<HolderParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = query.map_err(|r| ApiError::BadInput(r.body_text()))?;
    let (q, format) = p.into_query()?;
    let page = state.store.software(&q).await?;
    Ok(match format {
        Format::Json => Json(page).into_response(),
        Format::Csv => holders_csv(&format!("{}.csv", q.name), page),
    })
}

/// The query string of `GET /api/v1/software/packages`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PackageParams {
    /// Only packages whose name contains this, ignoring case.
    pub search: Option<String>,
    /// Only clients owned by this site count (a three-character site code).
    pub site: Option<SiteCode>,
    /// Packages per page, 1 to 1000 (default 100; a CSV export without it holds every package).
    pub limit: Option<u32>,
    /// Packages of the sorted list to skip first.
    pub offset: Option<u64>,
    /// `json` (default) or `csv`.
    pub format: Option<Format>,
}

impl PackageParams {
    /// The store's query, or the sentence saying what is wrong with the parameters.
    pub fn into_query(self) -> Result<(PackageQuery, Format), ApiError> {
        let format = self.format.unwrap_or_default();
        let q = PackageQuery {
            search: self
                .search
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            site: self.site,
            limit: self.limit.unwrap_or(DEFAULT_PAGE_LIMIT),
            offset: self.offset.unwrap_or(0),
        };
        if let Some(problem) = q.problem() {
            return Err(ApiError::BadInput(problem));
        }
        let limit = format.limit(self.limit, q.limit);
        Ok((PackageQuery { limit, ..q }, format))
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/software/packages",
    tag = "software",
    summary = "Every package some client has, with client counts per version",
    params(PackageParams),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of packages (or CSV: name,clients,version,version_clients, one row per version)", body = PackagePage),
        (status = 400, description = "A malformed or invalid parameter; the message names it", body = ErrorBody),
        (status = 401, description = "No API token, a wrong one, or an expired one", body = ErrorBody),
        (status = 500, description = "Internal error (detail in the site's log)", body = ErrorBody)
    )
)]
pub async fn packages(
    State(state): State<AppState>,
    _: Viewer,
    query: Result<Query<PackageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = query.map_err(|r| ApiError::BadInput(r.body_text()))?;
    let (q, format) = p.into_query()?;
    let page = state.store.packages(&q).await?;
    Ok(match format {
        Format::Json => Json(page).into_response(),
        Format::Csv => packages_csv("packages.csv", page),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_before_the_store_is_asked() {
        let bad = |p: HolderParams| p.into_query().unwrap_err().to_string();
        assert!(
            bad(HolderParams::default()).contains("name"),
            "a name is required"
        );
        let e = bad(HolderParams {
            name: Some("bash".into()),
            version: Some(">=".into()),
            ..Default::default()
        });
        assert!(e.contains("names no version"), "{e}");
        let e = bad(HolderParams {
            name: Some("bash".into()),
            limit: Some(0),
            ..Default::default()
        });
        assert!(e.contains("limit"), "{e}");
        let (q, f) = HolderParams {
            name: Some(" bash ".into()),
            format: Some(Format::Csv),
            ..Default::default()
        }
        .into_query()
        .unwrap();
        assert_eq!(
            (q.name.as_str(), q.limit, f),
            ("bash", u32::MAX, Format::Csv),
            "an export is every row"
        );
        let (q, _) = PackageParams {
            search: Some("  ".into()),
            ..Default::default()
        }
        .into_query()
        .unwrap();
        assert_eq!((q.search, q.limit), (None, DEFAULT_PAGE_LIMIT));
    }
}
