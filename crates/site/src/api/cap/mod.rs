//! The CAP API: what agents call. Enrollment needs the site's enrollment secret; everything
//! else needs the client's own token (the [`Client`](super::auth::Client) extractor), so a
//! client can only read its own instructions and write its own inventory.

pub mod ack;
pub mod checkin;
pub mod enroll;
pub mod report;
pub mod wait;

/// The agent's version from a request's `User-Agent` (`invagent/0.1.0`), normalised, when it
/// names one: what the site records per client. Anything else (another program, a header that
/// is not text, a version that does not parse) records nothing.
pub fn agent_version(headers: &axum::http::HeaderMap) -> Option<String> {
    let raw = headers.get(axum::http::header::USER_AGENT)?.to_str().ok()?;
    invsync_proto::AgentVersion::from_user_agent(raw).map(|v| v.to_string())
}
