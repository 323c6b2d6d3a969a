//! `POST /site/v1/forward`: a batch of changes a child site accepted (for its own clients and
//! for those of the sites below it), in its outbox order. Each is applied with the version and
//! hash checks of SPEC section 5; a gap answers *resync required* for that client and class.
//! The answer also carries the resync requests routed down to sites in that child's branch
//! (`invsync --via-child`), again every 30 s until the report that completes one comes up.
//! Audit entries of the child's branch ride on the batch too, so this site's audit shows who
//! did what at each site below it.
//!
//! The entries' items are read straight into the form the store hashes and stores
//! ([`invsync_store::PreparedBody`]), as a report's are: each forwarded body is prepared once,
//! without building maps of strings first.

use axum::Json;
use axum::extract::State;
use invsync_proto::Timestamp;
use invsync_proto::wire::{AuditEntry, ForwardBatchOf, ForwardOutcome, ForwardResult, SiteStatus};
use invsync_store::PreparedBody;

use super::check_sender;
use crate::api::auth::Child;
use crate::api::body::Body;
use crate::api::error::ApiError;
use crate::state::AppState;

/// More than a forwarder ever sends at once; bounds the work one request can ask for.
pub const MAX_ENTRIES: usize = 10_000;
/// The most audit entries one batch may carry (a forwarder sends at most `parent::AUDIT_BATCH`).
pub const MAX_AUDIT: usize = 10_000;

pub async fn apply(
    State(state): State<AppState>,
    child: Child,
    Body(batch): Body<ForwardBatchOf<PreparedBody>>,
) -> Result<Json<ForwardResult>, ApiError> {
    check_sender(&child, &batch.from)?;
    if batch.entries.len() > MAX_ENTRIES {
        return Err(ApiError::BadInput(format!(
            "a batch holds at most {MAX_ENTRIES} entries"
        )));
    }
    if batch.audit.len() > MAX_AUDIT {
        return Err(ApiError::BadInput(format!(
            "a batch holds at most {MAX_AUDIT} audit entries"
        )));
    }
    let now = Timestamp::now();
    state
        .store
        .record_site_status(&child.code, std::slice::from_ref(&batch.from), now)
        .await?;
    // One site below that claims a code already used elsewhere in the tree must not stop its
    // whole branch from forwarding: its status is skipped here, and its clients' changes are
    // refused one by one by the store (their owner is not reached through this child).
    for status in &batch.below {
        match state
            .store
            .record_site_status(&child.code, std::slice::from_ref(status), now)
            .await
        {
            Err(invsync_store::StoreError::CodeInUse(reason)) => {
                tracing::warn!(child = %child.code, code = %status.code, reason = %reason, "Ignored a site below a child: its code is in use elsewhere.");
            }
            other => other?,
        }
    }
    // One call for each run of changes shares group commits; a failure part-way is safe
    // because the child resends and applied entries then count as duplicates. A tombstone (a
    // client deleted at its owner) is applied on its own, in its place in the order, so the
    // changes before it are stored before the client is forgotten.
    let mut outcomes = Vec::with_capacity(batch.entries.len());
    let mut changes = Vec::new();
    for entry in batch.entries {
        if entry.deleted.is_none() {
            changes.push(entry);
            continue;
        }
        if !changes.is_empty() {
            let run = std::mem::take(&mut changes);
            outcomes.extend(
                state
                    .store
                    .apply_incoming_forwarded_batch(&child.code, run, now)
                    .await?,
            );
        }
        outcomes.push(
            state
                .store
                .apply_tombstone(&child.code, &entry, now)
                .await?,
        );
    }
    if !changes.is_empty() {
        outcomes.extend(
            state
                .store
                .apply_incoming_forwarded_batch(&child.code, changes, now)
                .await?,
        );
    }
    let applied = outcomes
        .iter()
        .filter(|o| matches!(o, ForwardOutcome::Applied { .. }))
        .count();
    if applied > 0 {
        tracing::debug!(child = %child.code, applied, "Applied forwarded changes.");
        state.forward_wake.notify_one();
    }
    // Requests routed down (`invsync --via-child`) ride on the answer, so they reach a child
    // behind NAT or a firewall as readily as its changes reach this site.
    let requests = state
        .store
        .deliver_routed_requests(&child.code, now)
        .await?;
    if !requests.is_empty() {
        tracing::info!(child = %child.code, count = requests.len(), "Handed routed resync requests to a child on their way to the owning sites.");
    }
    let audit_upto = take_audit(&state, &child, &batch.from, &batch.below, batch.audit).await?;
    // How far up the tree the changes completing requests below travelled since the child
    // was last told, so `invsync --wait` at the owning site follows them to the top.
    let hops = state.store.deliver_hops(&child.code).await?;
    Ok(Json(ForwardResult {
        outcomes,
        requests,
        audit_upto,
        hops,
    }))
}

/// Stores the audit entries a child forwarded, each as done at its own site: the child's, or a
/// site of its branch (one it reports below it). An entry naming another site is not the
/// child's to tell, and is dropped with a warning. The answer is the last entry's number,
/// which the child no longer sends.
async fn take_audit(
    state: &AppState,
    child: &Child,
    from: &SiteStatus,
    below: &[SiteStatus],
    entries: Vec<AuditEntry>,
) -> Result<Option<i64>, ApiError> {
    let upto = entries.iter().map(|e| e.id).max();
    let (branch, foreign): (Vec<AuditEntry>, Vec<AuditEntry>) = entries
        .into_iter()
        .partition(|e| e.site == from.code || below.iter().any(|s| s.code == e.site));
    if !foreign.is_empty() {
        tracing::warn!(child = %child.code, count = foreign.len(), "Dropped forwarded audit entries of sites outside the child's branch.");
    }
    let new = state
        .store
        .record_forwarded_audit(&child.code, &branch)
        .await?;
    if new > 0 {
        tracing::debug!(child = %child.code, new, "Stored audit entries a child forwarded.");
        // They go further up from here, as this site's own entries do.
        state.forward_wake.notify_one();
    }
    Ok(upto)
}
