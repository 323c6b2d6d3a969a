//! All HTTP the agent does: a small synchronous client for the site's CAP API, over the
//! project's one HTTP client (`invsync_client`).
//!
//! Blocking ureq with the agent's timeouts (`Timeouts::AGENT`: connect 10 s, 60 s overall; the
//! push channel's long-poll `Timeouts::PUSH`), so a hung site cannot stall the daemon forever.
//! HTTP statuses are not turned into transport errors because a 4xx carries an `ErrorBody`
//! whose sentence is the most useful thing to show the user. Every call except enroll
//! presents the client token as `Authorization: Bearer …`. An `https://` site is reached with
//! rustls, trusting the `--ca-cert` the agent enrolled with (`invsync_client::tls`).

use std::path::Path;

use invsync_client::{Answer, Client, ClientOptions, Encoding, Failure, Timeouts};
use invsync_proto::wire::{
    self, AckRequest, CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse, Report,
    ReportAck, WaitResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::AgentError;

/// A client for one site's CAP API.
#[derive(Debug, Clone)]
pub struct CapClient {
    http: Client,
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
        CapClient::with_timeouts(site_url, token, ca, Timeouts::AGENT)
    }

    /// A client for the push channel, whose long-polls the site holds for up to 50 s.
    pub fn for_push(
        site_url: &str,
        token: &str,
        ca: Option<&Path>,
    ) -> Result<CapClient, AgentError> {
        CapClient::with_timeouts(site_url, Some(token), ca, Timeouts::PUSH)
    }

    fn with_timeouts(
        site_url: &str,
        token: Option<&str>,
        ca: Option<&Path>,
        timeouts: Timeouts,
    ) -> Result<CapClient, AgentError> {
        let base = normalise_site_url(site_url)?;
        let user_agent = format!("invagent/{}", crate::AGENT_VERSION);
        let http = Client::new(&ClientOptions {
            url: &base,
            ca,
            timeouts,
            user_agent: Some(&user_agent),
            token,
        })
        .map_err(|reason| AgentError::BadCaCert { reason })?;
        Ok(CapClient { http })
    }

    /// The site URL this client talks to, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        self.http.base_url()
    }

    /// `POST /cap/v1/enroll`.
    pub fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, AgentError> {
        self.post(wire::CAP_ENROLL, req, Encoding::Json, false)
    }

    /// `POST /cap/v1/checkin`.
    pub fn checkin(&self, req: &CheckinRequest) -> Result<CheckinResponse, AgentError> {
        self.post(wire::CAP_CHECKIN, req, Encoding::Json, true)
    }

    /// `POST /cap/v1/report`: the only large bodies, so compressed.
    pub fn report(&self, report: &Report) -> Result<ReportAck, AgentError> {
        self.post(wire::CAP_REPORT, report, Encoding::Zstd, true)
    }

    /// `GET /healthz`: whether the site answers at all (the push channel's probe after a lost
    /// connection, since a long-poll would only tell after its hold time).
    pub fn healthy(&self) -> Result<(), AgentError> {
        let answer = self
            .http
            .get("/healthz", false)
            .map_err(|e| self.transport_error(e))?;
        if answer.is_success() {
            Ok(())
        } else {
            Err(AgentError::SiteFailed {
                url: self.base_url().to_string(),
                status: answer.status(),
                message: "the site is not healthy".to_string(),
            })
        }
    }

    /// `POST /cap/v1/wait`: blocks until the site wakes this client (true), or the hold time
    /// passes or the site shuts down (false).
    pub fn wait(&self) -> Result<bool, AgentError> {
        let answer: WaitResponse =
            self.post(wire::CAP_WAIT, &serde_json::json!({}), Encoding::Json, true)?;
        Ok(answer.wake)
    }

    /// `POST /cap/v1/ack`. The body of the answer is not needed: a 2xx means the events are
    /// done.
    pub fn ack(&self, req: &AckRequest) -> Result<(), AgentError> {
        let _: serde::de::IgnoredAny = self.post(wire::CAP_ACK, req, Encoding::Json, true)?;
        Ok(())
    }

    fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        encoding: Encoding,
        authenticated: bool,
    ) -> Result<R, AgentError> {
        let answer = self
            .http
            .post(path, body, encoding, authenticated)
            .map_err(|e| self.transport_error(e))?;
        if answer.is_success() {
            return answer.json().map_err(|e| AgentError::BadResponse {
                url: format!("{}{path}", self.base_url()),
                reason: format!("{path}: {e}"),
            });
        }
        Err(self.refusal(&answer, path, authenticated))
    }

    /// The error for an answer with an error status.
    fn refusal(&self, answer: &Answer, path: &str, authenticated: bool) -> AgentError {
        let status = answer.status();
        let message = answer.message();
        let url = format!("{}{path}", self.base_url());
        tracing::debug!(%url, status, message = %message, "The site refused a request.");
        match status {
            401 if authenticated => AgentError::Unauthorized {
                url: self.base_url().to_string(),
                message,
            },
            400..=499 => AgentError::Refused { status, message },
            _ => AgentError::SiteFailed {
                url: self.base_url().to_string(),
                status,
                message,
            },
        }
    }

    /// The error for a request that got no HTTP answer: a failed TLS handshake (with what to
    /// do about it) or an unreachable site.
    fn transport_error(&self, e: Failure) -> AgentError {
        let url = self.base_url().to_string();
        if let Failure::Encode { context, reason } = e {
            return AgentError::Io { context, reason };
        }
        if let Some(reason) = e.tls() {
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
        let reason = e.sentence(&url);
        AgentError::Unreachable { url, reason }
    }
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
}
