//! `POST /cap/v1/report`: one class's inventory, full or delta, from the client that owns it.
//! Bounds on the report's shape (the site's configured [`Limits`]) are checked before the
//! store sees it, so a refused report stores nothing.

use axum::extract::State;
use axum::Json;
use invsync_proto::wire::{Report, ReportAck, ReportBody};
use invsync_proto::{Items, Timestamp};

use crate::api::auth::Client;
use crate::api::body::Body;
use crate::api::error::ApiError;
use crate::datadir::Limits;
use crate::server::AppState;

fn check_items(items: &Items, limits: &Limits) -> Result<(), ApiError> {
    if items.len() > limits.max_items {
        return Err(ApiError::BadInput(format!(
            "report has {} items; the limit max_items is {}",
            items.len(),
            limits.max_items
        )));
    }
    for (key, attrs) in items {
        check_key(key, limits)?;
        if attrs.len() > limits.max_attrs {
            return Err(ApiError::BadInput(format!(
                "item {key:?} has {} attributes; the limit max_attrs is {}",
                attrs.len(),
                limits.max_attrs
            )));
        }
        for (name, value) in attrs {
            if name.is_empty() || name.len() > limits.max_key_len {
                return Err(ApiError::BadInput(format!(
                    "item {key:?} has an attribute name of {} bytes; the limit max_key_len is {} (and names may not be empty)",
                    name.len(),
                    limits.max_key_len
                )));
            }
            if value.len() > limits.max_value_len {
                return Err(ApiError::BadInput(format!(
                    "item {key:?} attribute {name:?} has a value of {} bytes; the limit max_value_len is {}",
                    value.len(),
                    limits.max_value_len
                )));
            }
        }
    }
    Ok(())
}

fn check_key(key: &str, limits: &Limits) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > limits.max_key_len || key.chars().any(char::is_control) {
        return Err(ApiError::BadInput(format!(
            "an item key of {} bytes: the limit max_key_len is {}, and keys may not be empty or hold control characters",
            key.len(),
            limits.max_key_len
        )));
    }
    Ok(())
}

pub async fn apply(
    State(state): State<AppState>,
    client: Client,
    Body(report): Body<Report>,
) -> Result<Json<ReportAck>, ApiError> {
    let limits = &state.limits;
    match &report.body {
        ReportBody::Full { items } => check_items(items, limits)?,
        ReportBody::Delta { delta, .. } => {
            check_items(&delta.upsert, limits)?;
            if delta.upsert.len() + delta.remove.len() > limits.max_items {
                return Err(ApiError::BadInput(format!(
                    "delta touches {} items; the limit max_items is {}",
                    delta.upsert.len() + delta.remove.len(),
                    limits.max_items
                )));
            }
            delta.remove.iter().try_for_each(|k| check_key(k, limits))?;
        }
    }
    let now = Timestamp::now();
    let ack = state.store.store_report(client.id, &report, now).await?;
    if matches!(ack, ReportAck::Accepted { .. }) {
        state.forward_wake.notify_one();
    }
    state.metrics.report(report.class, report.body.is_full(), &ack);
    if matches!(ack, ReportAck::Accepted { .. }) && report.body.is_full() && !report.answers.is_empty() {
        crate::metrics::count_completed(&state, report.class, &report.answers, now).await;
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
        let limits = Limits::default();
        let mut items = Items::new();
        items.insert("ok".into(), Default::default());
        assert!(check_items(&items, &limits).is_ok());
        items.insert("bad\u{0}".into(), Default::default());
        assert!(check_items(&items, &limits).is_err());
        let mut items = Items::new();
        items.insert("k".into(), [("v".to_string(), "x".repeat(limits.max_value_len + 1))].into());
        let e = check_items(&items, &limits).unwrap_err().to_string();
        assert!(e.contains("max_value_len"), "{e}");
        let small = Limits { max_items: 1, ..limits };
        let mut items = Items::new();
        items.insert("a".into(), Default::default());
        items.insert("b".into(), Default::default());
        let e = check_items(&items, &small).unwrap_err().to_string();
        assert!(e.contains("max_items is 1"), "{e}");
    }
}
