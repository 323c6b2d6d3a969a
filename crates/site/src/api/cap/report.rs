//! `POST /cap/v1/report`: one class's inventory, full or delta, from the client that owns it.
//! Bounds on the report's shape (the site's configured [`Limits`]) are checked before the
//! store sees it, so a refused report stores nothing. The body is read, decompressed and
//! parsed only once the client's key is vouched for (`crate::api::body`, `crate::api::known_keys`).

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use invsync_proto::wire::{ReportAck, ReportBodyOf};
use invsync_proto::{Class, Timestamp};
use invsync_store::{IncomingReport, PreparedItems};

use crate::api::auth::ClientCredentials;
use crate::api::body::RawBody;
use crate::api::error::ApiError;
use crate::datadir::Limits;
use crate::state::AppState;

/// Refuses items over the site's limits. The items were measured as they were read
/// ([`invsync_store::Shape`]); each sentence names the limit and the item over it.
fn check_items(items: &PreparedItems, limits: &Limits) -> Result<(), ApiError> {
    if items.len() > limits.max_items {
        return Err(ApiError::BadInput(format!(
            "report has {} items; the limit max_items is {}",
            items.len(),
            limits.max_items
        )));
    }
    let shape = items.shape();
    if let Some(key) = &shape.bad_key {
        check_key(key, limits)?;
    }
    if shape.longest_key > limits.max_key_len {
        return Err(bad_key(shape.longest_key, limits));
    }
    if let Some((n, key)) = &shape.most_attrs
        && *n > limits.max_attrs
    {
        return Err(ApiError::BadInput(format!(
            "item {key:?} has {n} attributes; the limit max_attrs is {}",
            limits.max_attrs
        )));
    }
    let name_error = |len: usize, key: &str| {
        ApiError::BadInput(format!(
            "item {key:?} has an attribute name of {len} bytes; the limit max_key_len is {} (and names may not be empty)",
            limits.max_key_len
        ))
    };
    if let Some(key) = &shape.empty_name {
        return Err(name_error(0, key));
    }
    if let Some((len, key)) = &shape.longest_name
        && *len > limits.max_key_len
    {
        return Err(name_error(*len, key));
    }
    if let Some((len, key, name)) = &shape.longest_value
        && *len > limits.max_value_len
    {
        return Err(ApiError::BadInput(format!(
            "item {key:?} attribute {name:?} has a value of {len} bytes; the limit max_value_len is {}",
            limits.max_value_len
        )));
    }
    Ok(())
}

fn check_key(key: &str, limits: &Limits) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > limits.max_key_len || key.chars().any(char::is_control) {
        return Err(bad_key(key.len(), limits));
    }
    Ok(())
}

fn bad_key(len: usize, limits: &Limits) -> ApiError {
    ApiError::BadInput(format!(
        "an item key of {len} bytes: the limit max_key_len is {}, and keys may not be empty or hold control characters",
        limits.max_key_len
    ))
}

/// Refuses a report over the site's limits.
pub(crate) fn check_report(report: &IncomingReport, limits: &Limits) -> Result<(), ApiError> {
    match &report.body {
        ReportBodyOf::Full { items } => check_items(items, limits),
        ReportBodyOf::Delta { upsert, remove, .. } => {
            check_items(upsert, limits)?;
            if upsert.len() + remove.len() > limits.max_items {
                return Err(ApiError::BadInput(format!(
                    "delta touches {} items; the limit max_items is {}",
                    upsert.len() + remove.len(),
                    limits.max_items
                )));
            }
            remove.iter().try_for_each(|k| check_key(k, limits))
        }
    }
}

pub async fn apply(
    State(state): State<AppState>,
    token: ClientCredentials,
    request: Request,
) -> Result<Json<ReportAck>, ApiError> {
    // Nothing of the body is read before the key is vouched for: a key this site accepted
    // lately is, and any other is checked on its own first, so a wrong key costs one read and
    // its body is never held, decompressed or parsed (a zstd bomb sent with a made-up key is
    // refused before its first byte is decoded); it is only read and dropped after the refusal,
    // so that its sender reads the answer.
    if !state.known_keys.vouch(token.client_id, &token.key_hash)
        && let Err(refusal) = token.check(&state).await
    {
        crate::api::body::discard(request, &state).await;
        return Err(refusal);
    }
    let body = match RawBody::from_request(request, &state).await {
        Ok(raw) => raw.parse::<IncomingReport>(&state).await,
        Err(refusal) => Err(refusal),
    };
    // The credentials are checked again in the same read as the report's plan. A report
    // refused before that (unreadable, or over the limits) stores nothing, but a caller without
    // a valid token (a vouched-for key revoked since) is told that first, as every other CAP
    // route does.
    let checked = body.and_then(|report| check_report(&report, &state.limits).map(|()| report));
    let report = match checked {
        Ok(report) => report,
        Err(refusal) => {
            token.check(&state).await?;
            return Err(refusal);
        }
    };
    let now = Timestamp::now();
    let (class, full, report_id) = (report.class, report.body.is_full(), report.report_id);
    let answers = if full {
        report.answers.clone()
    } else {
        Vec::new()
    };
    let found = state
        .store
        .store_incoming_with_key(token.client_id, &token.key_hash, report, now)
        .await?;
    let (client, ack) = token.accept(&state, found)?;
    if matches!(ack, ReportAck::Accepted { .. }) {
        state.forward_wake.notify_one();
    }
    state.metrics.report(class, full, &ack);
    if matches!(ack, ReportAck::Accepted { .. }) && !answers.is_empty() {
        count_completed(&state, class, &answers, now).await;
    }
    // Every outcome at DEBUG, inside the request's span: at 10,000 agents a line per report at
    // INFO was the bulk of a site's log, and `/metrics` counts them by outcome anyway.
    // `RUST_LOG=invsync_site=debug` shows each with its request (method, path, peer, id).
    match &ack {
        ReportAck::Accepted { version, .. } => tracing::debug!(
            client = %client.name, class = %class, version, full, "Stored a report."
        ),
        ReportAck::Duplicate { .. } => tracing::debug!(
            client = %client.name, report = %report_id, "Received a report again; stored it once."
        ),
        ReportAck::ResyncRequired { reason } => tracing::debug!(
            client = %client.name, class = %class, reason = %reason, "Asked for a full report."
        ),
    }
    Ok(Json(ack))
}

/// How many of a report's `answers` are looked up for the latency: an agent answers the one or
/// two requests pending for a class, and a client naming thousands of ids must not turn one
/// report into thousands of reads.
const MAX_ANSWERS_TIMED: usize = 16;

/// Counts the resync requests a just-accepted full report completed, with their latency. The
/// store completes only this client's requests of the report's class that are still open, at
/// `now`, and does not say which; each answered id is read back and counted when it is of that
/// class and completed at exactly `now`. A failed read costs the metric, never the report.
async fn count_completed(state: &AppState, class: Class, answers: &[i64], now: Timestamp) {
    for &id in answers.iter().take(MAX_ANSWERS_TIMED) {
        match state.store.request_state(id).await {
            Ok(Some(r)) if r.class == class && r.completed_at == Some(now) => {
                state.metrics.resync_completed(class, r.requested_at, now);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(request = id, error = %e, "Could not read a completed request back; the resync metrics miss it.")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(json: &str) -> PreparedItems {
        serde_json::from_str(json).unwrap()
    }

    fn refusal(json: &str, limits: &Limits) -> String {
        check_items(&items(json), limits).unwrap_err().to_string()
    }

    #[test]
    fn limits() {
        let limits = Limits::default();
        assert!(check_items(&items(r#"{"ok":{}}"#), &limits).is_ok());
        let e = refusal(r#"{"ok":{},"bad\u0000":{}}"#, &limits);
        assert!(
            e.contains("keys may not be empty or hold control characters"),
            "{e}"
        );
        assert!(refusal(r#"{"":{}}"#, &limits).contains("max_key_len"));
        let long_value = format!(
            r#"{{"k":{{"v":"{}"}}}}"#,
            "x".repeat(limits.max_value_len + 1)
        );
        let e = refusal(&long_value, &limits);
        assert!(
            e.contains(r#"item "k" attribute "v" has a value of"#) && e.contains("max_value_len"),
            "{e}"
        );
        let small = Limits {
            max_items: 1,
            ..limits
        };
        let e = refusal(r#"{"a":{},"b":{}}"#, &small);
        assert!(e.contains("max_items is 1"), "{e}");
        let few = Limits {
            max_attrs: 1,
            max_key_len: 3,
            ..limits
        };
        let e = refusal(r#"{"a":{"x":"1","y":"2"}}"#, &few);
        assert!(
            e.contains(r#"item "a" has 2 attributes; the limit max_attrs is 1"#),
            "{e}"
        );
        let e = refusal(r#"{"a":{"long":"1"}}"#, &few);
        assert!(
            e.contains("attribute name of 4 bytes; the limit max_key_len is 3"),
            "{e}"
        );
        let e = refusal(r#"{"a":{"":"1"}}"#, &few);
        assert!(e.contains("attribute name of 0 bytes"), "{e}");
        let e = refusal(r#"{"abcd":{}}"#, &few);
        assert!(
            e.contains("an item key of 4 bytes: the limit max_key_len is 3"),
            "{e}"
        );
    }
}
