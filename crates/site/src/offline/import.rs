//! Importing one `.inv` file into the store with the checks of the HTTP path: the file's
//! name, header and MAC first (nothing else of an unauthenticated file is read), then the
//! body within the site's limits (declared size, decoded size, the zstd window), the report's
//! shape (`api::cap::report::check_report`), and the store's own checks (report id, base
//! version, hash, and for a full report the `not_past` guard against an old file put back).
//!
//! A file either changes the store and goes to `done/`, or changes nothing and goes to `bad/`
//! with the sentence returned here; only a failure of the store itself (which the next run
//! retries) leaves it where it is.

use invsync_proto::offline::inv::InvFile;
use invsync_proto::offline::mac_key;
use invsync_proto::wire::ReportAck;
use invsync_proto::{Class, ClientName, Timestamp};
use invsync_store::{Authenticated, CapCheckin, ClientAuth, IncomingReport, Store, StoreError};
use uuid::Uuid;

use crate::api::cap::report::check_report;
use crate::datadir::Limits;

/// What became of a file that was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A report was stored.
    Stored {
        client: ClientName,
        class: Class,
        full: bool,
        version: i64,
    },
    /// The report had been stored before (the same file imported again, or sent over HTTP
    /// too): nothing changed.
    Duplicate {
        client: ClientName,
        class: Class,
        version: i64,
    },
    /// A check-in without a report: the client was seen, its events acknowledged.
    CheckedIn { client: ClientName },
    /// Nothing was stored, for this reason.
    Refused(String),
}

/// A file read and authenticated, its report (if any) decoded and checked: ready for the
/// store. Built on a blocking thread ([`prepare`]); only the store work remains.
pub struct Prepared {
    client: ClientName,
    auth: ClientAuth,
    checkin: CapCheckin,
    report: Option<(IncomingReport, Option<i64>)>,
}

/// Checks what can be checked without the client's key.
pub fn header_of(bytes: &[u8], client: &ClientName, id: Uuid) -> Result<Uuid, String> {
    let file = InvFile::parse(bytes).map_err(|e| e.to_string())?;
    let h = &file.header;
    if h.client != *client {
        return Err(format!(
            "the file is named for {client} and its header is for {}",
            h.client
        ));
    }
    if h.file_id != id {
        return Err(format!(
            "the file is named with id {id} and its header has id {}",
            h.file_id
        ));
    }
    Ok(h.client_id)
}

/// Authenticates the file with the client's key and decodes and checks its report. CPU work:
/// run it on a blocking thread for large files.
pub fn prepare(bytes: &[u8], auth: ClientAuth, limits: &Limits) -> Result<Prepared, String> {
    let file = InvFile::parse(bytes).map_err(|e| e.to_string())?;
    if auth.name != file.header.client {
        return Err(format!(
            "client id {} is {} at this site, not {}",
            auth.client_id, auth.name, file.header.client
        ));
    }
    if let Some(at) = auth.deleted_at {
        return Err(format!(
            "{} was deleted at this site at {at} (invsite delete); enroll the machine again \
             (invsite offline-enroll) to inventory it again",
            auth.name
        ));
    }
    if auth.is_revoked() {
        return Err(format!(
            "{}'s key was revoked; enroll the machine again (invsite offline-enroll)",
            auth.name
        ));
    }
    file.verify(&mac_key(&auth.key_hash))
        .map_err(|e| e.to_string())?;
    let h = &file.header;
    let report = match &h.report {
        None => None,
        Some(meta) => {
            let limit = limits.max_decoded_bytes;
            if meta.bytes > limit as u64 {
                return Err(format!(
                    "the report declares {} bytes; the limit max_decoded_bytes is {limit}",
                    meta.bytes
                ));
            }
            // Decoded within the declared size: a body that decodes to more is refused as soon
            // as it passes it, whatever its frames claim.
            let json = crate::api::decode::decode_zstd(file.body, meta.bytes as usize)
                .map_err(|e| e.to_string())?;
            if json.len() as u64 != meta.bytes {
                return Err(format!(
                    "the report declares {} bytes and decodes to {}",
                    meta.bytes,
                    json.len()
                ));
            }
            let report: IncomingReport = serde_json::from_slice(&json)
                .map_err(|e| format!("the report is not valid: {e}"))?;
            drop(json);
            if report.report_id != h.file_id {
                return Err(format!(
                    "the file's id is {} and its report's id is {}",
                    h.file_id, report.report_id
                ));
            }
            if report.class != meta.class {
                return Err(format!(
                    "the header says a {} report and the body holds a {} report",
                    meta.class, report.class
                ));
            }
            check_report(&report, limits).map_err(|e| e.to_string())?;
            let not_past = if report.body.is_full() {
                meta.not_past
            } else {
                None
            };
            Some((report, not_past))
        }
    };
    Ok(Prepared {
        client: h.client.clone(),
        checkin: CapCheckin {
            machine_id: h.machine_id.clone(),
            seen_at: h.written_at,
            seen: h.seen.clone(),
            done_events: h.done_events.clone(),
        },
        auth,
        report,
    })
}

/// The store's part: the check-in (instructions seen, events done, last seen) and the report.
/// `Err` only when the store itself failed.
///
/// The two are independent writes (a check-in changes nothing a report is planned against), so
/// they are handed to the store together and share one commit instead of waiting for one each:
/// half the commits of a run of deltas. A failure of either leaves the file for the next run,
/// where the report is a duplicate and the check-in changes nothing twice.
pub async fn store(
    store: &Store,
    prepared: Prepared,
    now: Timestamp,
) -> Result<Outcome, StoreError> {
    let Prepared {
        client,
        auth,
        checkin,
        report,
    } = prepared;
    let Some((report, not_past)) = report else {
        store.cap_checkin(auth.client_id, &checkin, now).await?;
        return Ok(Outcome::CheckedIn { client });
    };
    let (class, full) = (report.class, report.body.is_full());
    let (checked_in, found) = tokio::join!(
        store.cap_checkin(auth.client_id, &checkin, now),
        store.store_incoming_guarded(auth.client_id, &auth.key_hash, report, not_past, now)
    );
    checked_in?;
    let ack = match found {
        Ok(Authenticated::Client(_, ack)) => ack,
        Ok(Authenticated::Unknown) => {
            return Ok(Outcome::Refused(format!(
                "{client}'s key changed while the file was imported; enroll again"
            )));
        }
        Ok(Authenticated::Revoked(_)) => {
            return Ok(Outcome::Refused(format!("{client}'s key was revoked")));
        }
        Err(StoreError::BadReport(reason)) => return Ok(Outcome::Refused(reason)),
        Err(e) => return Err(e),
    };
    Ok(match ack {
        ReportAck::Accepted { version, .. } => Outcome::Stored {
            client,
            class,
            full,
            version,
        },
        ReportAck::Duplicate { version, .. } => Outcome::Duplicate {
            client,
            class,
            version,
        },
        ReportAck::ResyncRequired { reason } => {
            Outcome::Refused(format!("the site stored nothing: {reason}"))
        }
    })
}

/// The sentence for a file refused before its key was known.
pub fn unknown_client(client: &ClientName, id: Uuid) -> String {
    format!(
        "no client of this site has id {id} (the file says it is {client}); enroll it with invsite offline-enroll"
    )
}
