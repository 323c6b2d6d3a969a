//! All HTTP the agent does: a small synchronous client for the site's CAP API.
//!
//! The agent has no async runtime (SPEC section 10 gives it 10 MB of RSS), so this is ureq,
//! blocking, with a connect timeout of 10 s and an overall one of 60 s so a hung site cannot
//! stall the daemon forever. HTTP statuses are not turned into transport errors because a 4xx
//! carries an `ErrorBody` whose sentence is the most useful thing to show the user. Every call
//! except enroll presents the client token as `Authorization: Bearer …`. An `https://` site
//! is reached with rustls, trusting the `--ca-cert` the agent enrolled with (see `tls.rs`).

use std::path::Path;
use std::time::Duration;

use invsync_proto::wire::{
    self, AckRequest, CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse, ErrorBody,
    Report, ReportAck, WaitResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::AgentError;

/// How long to wait for a TCP connection to the site.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take from start to the end of the response body.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a push-channel long-poll may take: the site's hold time (50 s) plus a margin.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(75);

/// A client for one site's CAP API.
#[derive(Debug, Clone)]
pub struct CapClient {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl CapClient {
    /// A client for the site at `site_url` (a trailing `/` is ignored). `token` is the client
    /// token; it is `None` only for enrolling. `ca` is the PEM file of the CA certificates an
    /// `https://` site's certificate must chain to; without it, the built-in Mozilla roots.
    pub fn new(
        site_url: &str,
        token: Option<&str>,
        ca: Option<&Path>,
    ) -> Result<CapClient, AgentError> {
        CapClient::with_timeout(site_url, token, ca, REQUEST_TIMEOUT)
    }

    /// A client for the push channel, whose long-polls the site holds for up to 50 s.
    pub fn for_push(
        site_url: &str,
        token: &str,
        ca: Option<&Path>,
    ) -> Result<CapClient, AgentError> {
        CapClient::with_timeout(site_url, Some(token), ca, PUSH_TIMEOUT)
    }

    fn with_timeout(
        site_url: &str,
        token: Option<&str>,
        ca: Option<&Path>,
        timeout: Duration,
    ) -> Result<CapClient, AgentError> {
        let base = normalise_site_url(site_url)?;
        let user_agent = format!("invagent/{}", crate::AGENT_VERSION);
        let agent = crate::tls::http_agent(&crate::tls::ClientOptions {
            url: &base,
            ca,
            connect_timeout: CONNECT_TIMEOUT,
            timeout,
            user_agent: Some(&user_agent),
        })
        .map_err(|reason| AgentError::BadCaCert { reason })?;
        Ok(CapClient {
            agent,
            base,
            token: token.map(str::to_string),
        })
    }

    /// The site URL this client talks to, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /cap/v1/enroll`.
    pub fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, AgentError> {
        self.post(wire::CAP_ENROLL, req, Body::Json, false)
    }

    /// `POST /cap/v1/checkin`.
    pub fn checkin(&self, req: &CheckinRequest) -> Result<CheckinResponse, AgentError> {
        self.post(wire::CAP_CHECKIN, req, Body::Json, true)
    }

    /// `POST /cap/v1/report`.
    pub fn report(&self, report: &Report) -> Result<ReportAck, AgentError> {
        self.post(wire::CAP_REPORT, report, Body::Zstd, true)
    }

    /// `GET /healthz`: whether the site answers at all (the push channel's probe after a lost
    /// connection, since a long-poll would only tell after its hold time).
    pub fn healthy(&self) -> Result<(), AgentError> {
        let url = format!("{}/healthz", self.base);
        let resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| self.transport_error(e))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(AgentError::SiteFailed {
                url: self.base.clone(),
                status: resp.status().as_u16(),
                message: "the site is not healthy".to_string(),
            })
        }
    }

    /// `POST /cap/v1/wait`: blocks until the site wakes this client (true), or the hold time
    /// passes or the site shuts down (false).
    pub fn wait(&self) -> Result<bool, AgentError> {
        let answer: WaitResponse =
            self.post(wire::CAP_WAIT, &serde_json::json!({}), Body::Json, true)?;
        Ok(answer.wake)
    }

    /// `POST /cap/v1/ack`. The body of the answer is not needed: a 2xx means the events are
    /// done.
    pub fn ack(&self, req: &AckRequest) -> Result<(), AgentError> {
        let _: serde::de::IgnoredAny = self.post(wire::CAP_ACK, req, Body::Json, true)?;
        Ok(())
    }

    fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        encoding: Body,
        authenticated: bool,
    ) -> Result<R, AgentError> {
        let url = format!("{}{}", self.base, path);
        let mut request = self.agent.post(&url);
        if let (true, Some(token)) = (authenticated, &self.token) {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let unreachable = |e: ureq::Error| self.transport_error(e);
        // Compact JSON, not ureq's `send_json`, which pretty-prints: indentation would be a
        // third of a thousand-package report and most of a no-change check-in.
        let bytes = serde_json::to_vec(body).map_err(|e| AgentError::Io {
            context: format!("could not encode the request to {path}"),
            reason: e.to_string(),
        })?;
        let request = request.header("Content-Type", "application/json");
        let response = match encoding {
            Body::Json => request.send(&bytes[..]),
            Body::Zstd => {
                // A full sw report of 1,500 packages is ~250 KB of JSON and ~25 KB compressed;
                // level 3 costs about a millisecond here.
                let packed = zstd::bulk::compress(&bytes, 3).map_err(|e| AgentError::Io {
                    context: format!("could not compress the request to {path}"),
                    reason: e.to_string(),
                })?;
                request.header("Content-Encoding", "zstd").send(&packed[..])
            }
        }
        .map_err(unreachable)?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        if (200..300).contains(&status) {
            // An empty 2xx body (e.g. 204 to an ack) reads as JSON `null`, which `IgnoredAny`
            // accepts and every real answer type refuses.
            let text = body.read_to_string().map_err(unreachable)?;
            let text = if text.trim().is_empty() {
                "null"
            } else {
                text.as_str()
            };
            return serde_json::from_str(text).map_err(|e| AgentError::BadResponse {
                url: url.clone(),
                reason: format!("{path}: {e}"),
            });
        }
        let text = body.read_to_string().unwrap_or_default();
        let message = error_message(&text, status);
        tracing::debug!(%url, status, message = %message, "The site refused a request.");
        match status {
            401 if authenticated => Err(AgentError::Unauthorized {
                url: self.base.clone(),
                message,
            }),
            400..=499 => Err(AgentError::Refused { status, message }),
            _ => Err(AgentError::SiteFailed {
                url: self.base.clone(),
                status,
                message,
            }),
        }
    }
}

impl CapClient {
    /// The error for a request that got no HTTP answer: a failed TLS handshake (with what to
    /// do about it) or an unreachable site.
    fn transport_error(&self, e: ureq::Error) -> AgentError {
        let url = self.base.clone();
        if let Some(reason) = crate::tls::failure(&e) {
            let hint = if reason.starts_with("TLS: certificate not trusted") {
                "; give --ca-cert FILE, the CA certificate that signed the site's (`tls/ca.pem` in \
                 the data directory of a site made with `invsite init --tls self-signed`), to \
                 `invagent enroll`"
            } else if reason.contains("does not name") {
                "; use a site URL whose host name or address the certificate holds"
            } else {
                ""
            };
            return AgentError::Tls {
                url,
                reason: format!("{reason}{hint}"),
            };
        }
        if crate::tls::looks_like_tls_port(&self.base, &e) {
            return AgentError::Unreachable {
                url,
                reason: format!("{e} (if the site serves TLS, its URL starts with https://)"),
            };
        }
        AgentError::Unreachable {
            url,
            reason: e.to_string(),
        }
    }
}

/// How a request body travels: reports are compressed (they are the only large bodies); the
/// small check-ins and acknowledgements are not, because zstd's frame would cost more than it
/// saves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Json,
    Zstd,
}

/// The sentence of an error response: the `ErrorBody`'s `error` when there is one, else the
/// start of whatever the body was (a proxy's HTML page, say), else the bare status.
fn error_message(body: &str, status: u16) -> String {
    if let Ok(e) = serde_json::from_str::<ErrorBody>(body) {
        return e.error;
    }
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return format!("HTTP {status} without a message");
    }
    // The body is untrusted: keep it short and render control characters visibly.
    let cut: String = trimmed.chars().take(200).collect();
    cut.escape_debug().to_string()
}

/// Checks that `raw` looks like a site URL and drops trailing slashes, so paths can be
/// appended to it.
pub fn normalise_site_url(raw: &str) -> Result<String, AgentError> {
    let trimmed = raw.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"))
        .unwrap_or("");
    if rest.is_empty() || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AgentError::BadSiteUrl {
            url: raw.to_string(),
        });
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_urls_lose_trailing_slashes_and_need_a_scheme() {
        assert_eq!(
            normalise_site_url("http://h:8350/").unwrap(),
            "http://h:8350"
        );
        assert_eq!(normalise_site_url("https://h//").unwrap(), "https://h");
        for bad in ["", "h:8350", "http://", "ftp://h", "http://a b"] {
            assert!(normalise_site_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn error_messages_prefer_the_error_body() {
        assert_eq!(
            error_message(r#"{"error":"wrong secret"}"#, 401),
            "wrong secret"
        );
        assert_eq!(error_message("", 502), "HTTP 502 without a message");
        assert_eq!(error_message("bad\u{1b}gateway", 502), "bad\\u{1b}gateway");
    }
}
