//! `POST /cap/v1/report`: one class's inventory, full or delta, from the client that owns it.
//! Bounds on the report's shape are checked before the store sees it, so a refused report
//! stores nothing.

use axum::extract::State;
use axum::Json;
use invsync_proto::wire::{Report, ReportAck, ReportBody};
use invsync_proto::{Items, Timestamp};

use crate::api::auth::Client;
use crate::api::body::Body;
use crate::api::error::ApiError;
use crate::server::AppState;

/// Bounds on one report. A Debian host with everything installed has ~6,000 packages; the
/// limits are far above any real host and far below what would hurt the site.
pub const MAX_ITEMS: usize = 100_000;
pub const MAX_KEY_LEN: usize = 512;
pub const MAX_ATTRS: usize = 64;
pub const MAX_VALUE_LEN: usize = 4096;

fn check_items(items: &Items) -> Result<(), ApiError> {
    if items.len() > MAX_ITEMS {
        return Err(ApiError::BadInput(format!(
            "report has {} items; at most {MAX_ITEMS} are accepted",
            items.len()
        )));
    }
    for (key, attrs) in items {
        check_key(key)?;
        if attrs.len() > MAX_ATTRS {
            return Err(ApiError::BadInput(format!(
                "item {key:?} has {} attributes; at most {MAX_ATTRS} are accepted",
                attrs.len()
            )));
        }
        for (name, value) in attrs {
            if name.is_empty() || name.len() > MAX_KEY_LEN || value.len() > MAX_VALUE_LEN {
                return Err(ApiError::BadInput(format!(
                    "item {key:?} has an attribute name or value outside the limits \
                     (name 1-{MAX_KEY_LEN} bytes, value at most {MAX_VALUE_LEN} bytes)"
                )));
            }
        }
    }
    Ok(())
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
        return Err(ApiError::BadInput(format!(
            "item key must be 1-{MAX_KEY_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

pub async fn apply(
    State(state): State<AppState>,
    client: Client,
    Body(report): Body<Report>,
) -> Result<Json<ReportAck>, ApiError> {
    match &report.body {
        ReportBody::Full { items } => check_items(items)?,
        ReportBody::Delta { delta, .. } => {
            check_items(&delta.upsert)?;
            if delta.remove.len() > MAX_ITEMS {
                return Err(ApiError::BadInput("delta removes too many items".to_string()));
            }
            delta.remove.iter().try_for_each(|k| check_key(k))?;
        }
    }
    let ack = state.store.store_report(client.id, &report, Timestamp::now()).await?;
    if matches!(ack, ReportAck::Accepted { .. }) {
        state.forward_wake.notify_one();
    }
    match &ack {
        ReportAck::Accepted { version, .. } => tracing::info!(
            client = %client.name, class = %report.class, version, full = report.body.is_full(),
            "Stored a report."
        ),
        ReportAck::Duplicate { .. } => tracing::debug!(
            client = %client.name, report = %report.report_id, "Received a report again; stored it once."
        ),
        ReportAck::ResyncRequired { reason } => tracing::info!(
            client = %client.name, class = %report.class, reason = %reason, "Asked for a full report."
        ),
    }
    Ok(Json(ack))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        let mut items = Items::new();
        items.insert("ok".into(), Default::default());
        assert!(check_items(&items).is_ok());
        items.insert("bad\u{0}".into(), Default::default());
        assert!(check_items(&items).is_err());
        let mut items = Items::new();
        items.insert("k".into(), [("v".to_string(), "x".repeat(MAX_VALUE_LEN + 1))].into());
        assert!(check_items(&items).is_err());
    }
}
