//! `POST /cap/v1/enroll`: an agent presents the enrollment secret, its name and machine id,
//! and receives a client id and a fresh 256-bit key. The site keeps only the key's hash.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use invsync_proto::Timestamp;
use invsync_proto::wire::{ClientToken, EnrollRequest, EnrollResponse};
use invsync_store::Enrollment;

use crate::api::error::ApiError;
use crate::api::plain::Plain;
use crate::api::throttle::Peer;
use crate::connections::ConnectionHandle;
use crate::secret::{ct_eq, random_bytes};
use crate::state::AppState;

/// Machine ids are 32 hex digits on systemd hosts; allow a little more for other systems but
/// nothing that could smuggle odd bytes into logs or the database.
fn check_machine_id(raw: &str) -> Result<(), ApiError> {
    let ok = !raw.is_empty()
        && raw.len() <= 128
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadInput(
            "machine_id must be 1 to 128 characters of A-Z a-z 0-9 '-'".to_string(),
        ))
    }
}

pub async fn apply(
    State(state): State<AppState>,
    Peer(peer): Peer,
    connection: Option<Extension<ConnectionHandle>>,
    _plain: Plain,
    headers: axum::http::HeaderMap,
    body: Result<Json<EnrollRequest>, JsonRejection>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let Json(req) = body?;
    let secret = state
        .dir
        .enroll_secret()
        .map_err(|e| ApiError::Internal(format!("cannot read the enrollment secret: {e:#}")))?;
    if !ct_eq(req.secret.as_bytes(), secret.as_bytes()) {
        return Err(state.auth_failures.refuse(
            peer,
            ApiError::Unauthorized(
                "wrong enrollment secret; ask the site administrator for `invsite enroll-secret`"
                    .to_string(),
            ),
        ));
    }
    // The secret is a credential: the connection no longer counts against its address.
    if let Some(Extension(c)) = connection {
        c.authenticated();
    }
    check_machine_id(&req.machine_id)?;
    let key = random_bytes();
    let enrollment = Enrollment {
        name: req.name.clone(),
        machine_id: req.machine_id.clone(),
        key_hash: ClientToken {
            client_id: uuid::Uuid::nil(),
            key,
        }
        .key_hash(),
        now: Timestamp::now(),
        // Values that identify no machine (firmware placeholders) are dropped, not refused:
        // the agent cannot do better, and the machine id still identifies it.
        hardware: req.hardware.as_ref().and_then(|h| h.checked()),
        agent_version: super::agent_version(&headers),
    };
    let enrolled = state.store.enroll(&enrollment).await?;
    crate::merges::enrolled(&state.store, &req.name, &enrolled, "http", peer).await;
    tracing::info!(client = %req.name, id = %enrolled.client_id, reenrolled = enrolled.reenrolled, "Enrolled a client.");
    Ok(Json(EnrollResponse {
        client_id: enrolled.client_id,
        token: ClientToken {
            client_id: enrolled.client_id,
            key,
        }
        .encode(),
        name: req.name,
        site: state.site_code.clone(),
        reenrolled: enrolled.reenrolled,
        site_public_key: Some(state.site_key.public()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ids() {
        assert!(check_machine_id("0123456789abcdef0123456789abcdef").is_ok());
        assert!(check_machine_id("").is_err());
        assert!(check_machine_id("../etc").is_err());
        assert!(check_machine_id(&"a".repeat(129)).is_err());
    }
}
