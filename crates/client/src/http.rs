//! The one ureq wrapper every HTTP client of the project goes through: a [`Client`] for one
//! server's base URL, sending compact JSON bodies (zstd-compressed when they may be large)
//! with an optional bearer token, and returning every answer as an [`Answer`] whatever its
//! status, because a 4xx carries an `ErrorBody` whose sentence is the most useful thing to
//! show. A request that got no answer is a [`Failure`], which says whether it was a TLS
//! handshake, a server that is not there, or something else; each caller turns these into
//! its own errors, with the same sentences.
//!
//! Blocking on purpose: the agent has no async runtime (SPEC section 10 gives it 10 MB of
//! RSS), and the site calls it from `spawn_blocking` or from its command-line tools.

use std::path::Path;
use std::time::Duration;

use invsync_proto::wire::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;
use ureq::tls::TlsConfig;

use crate::tls;

/// How long a call may wait to connect, and how long it may take from its start to the end of
/// the answer's body, so that a hung server cannot stall its caller forever. One preset per
/// kind of call, so the timeouts of the whole project are read in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

impl Timeouts {
    /// The agent's calls to its site's CAP API: the site may be far away and a full report
    /// large.
    pub const AGENT: Timeouts = Timeouts {
        connect: Duration::from_secs(10),
        request: Duration::from_secs(60),
    };
    /// The agent's push-channel long-poll: the site's hold time (50 s) plus a margin.
    pub const PUSH: Timeouts = Timeouts {
        connect: Duration::from_secs(10),
        request: Duration::from_secs(75),
    };
    /// The site tools' calls to the admin API of their own server, on the same machine: a
    /// server that does not answer soon is treated as not running.
    pub const TOOLS: Timeouts = Timeouts {
        connect: Duration::from_secs(5),
        request: Duration::from_secs(30),
    };
    /// A child site's calls to its parent: forward batches carry full snapshots after a gap.
    pub const PARENT: Timeouts = Timeouts {
        connect: Duration::from_secs(5),
        request: Duration::from_secs(60),
    };
}

/// How one of the project's HTTP clients is set up.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions<'a> {
    /// The server's base URL (a trailing `/` is dropped); TLS is configured only for
    /// `https://`.
    pub url: &'a str,
    /// The CA certificates to trust (see [`tls::client_config`]).
    pub ca: Option<&'a Path>,
    pub timeouts: Timeouts,
    pub user_agent: Option<&'a str>,
    /// Presented as `Authorization: Bearer …` on every call that asks for it.
    pub token: Option<&'a str>,
}

/// How a request body travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Compact JSON: small bodies (check-ins, acknowledgements, admin requests), for which
    /// zstd's frame would cost more than it saves.
    Json,
    /// Compact JSON compressed with zstd at level 3: reports and forward batches, which
    /// compress about tenfold (a full report of 1,500 packages is ~250 KB of JSON and ~25 KB
    /// compressed; level 3 costs about a millisecond).
    Zstd,
}

/// A client for one server.
#[derive(Debug, Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
    /// A header sent with the token (its name and value): who the caller acts for.
    actor: Option<(&'static str, String)>,
}

impl Client {
    /// A client for `opts.url`: TLS trusting `opts.ca` for an `https://` URL (the CA file is
    /// never read for a plain one). Fails with a sentence when the CA file cannot be used.
    pub fn new(opts: &ClientOptions<'_>) -> Result<Client, String> {
        let tls = if opts.url.starts_with("https://") {
            tls::client_config(opts.ca)?
        } else {
            TlsConfig::default()
        };
        let mut builder = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_connect(Some(opts.timeouts.connect))
            .timeout_global(Some(opts.timeouts.request));
        if let Some(ua) = opts.user_agent {
            builder = builder.user_agent(ua);
        }
        Ok(Client {
            agent: builder.build().into(),
            base: opts.url.trim_end_matches('/').to_string(),
            token: opts.token.map(str::to_string),
            actor: None,
        })
    }

    /// Sends `name: value` with the token on every authenticated call: a tool on the site
    /// server names the local user it acts for, which the site records in its audit.
    pub fn with_actor(mut self, name: &'static str, value: String) -> Client {
        self.actor = Some((name, value));
        self
    }

    /// The server's base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET base + path`, with the token when `authenticated`.
    pub fn get(&self, path: &str, authenticated: bool) -> Result<Answer, Failure> {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let (true, Some(token)) = (authenticated, &self.token) {
            request = request.header("Authorization", format!("Bearer {token}"));
            if let Some((name, value)) = &self.actor {
                request = request.header(*name, value);
            }
        }
        Answer::read(request.call())
    }

    /// `DELETE base + path`, with the token when `authenticated`.
    pub fn delete(&self, path: &str, authenticated: bool) -> Result<Answer, Failure> {
        let mut request = self.agent.delete(format!("{}{path}", self.base));
        if let (true, Some(token)) = (authenticated, &self.token) {
            request = request.header("Authorization", format!("Bearer {token}"));
            if let Some((name, value)) = &self.actor {
                request = request.header(*name, value);
            }
        }
        Answer::read(request.call())
    }

    /// `POST base + path` with `body` as JSON in `encoding`, with the token when
    /// `authenticated`.
    pub fn post<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
        encoding: Encoding,
        authenticated: bool,
    ) -> Result<Answer, Failure> {
        // Compact JSON, not ureq's `send_json`, which pretty-prints: indentation would be a
        // third of a thousand-package report and most of a no-change check-in.
        let json = serde_json::to_vec(body).map_err(|e| Failure::Encode {
            context: format!("could not encode the request to {path}"),
            reason: e.to_string(),
        })?;
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json");
        if let (true, Some(token)) = (authenticated, &self.token) {
            request = request.header("Authorization", format!("Bearer {token}"));
            if let Some((name, value)) = &self.actor {
                request = request.header(*name, value);
            }
        }
        let sent = match encoding {
            Encoding::Json => request.send(&json[..]),
            Encoding::Zstd => {
                let packed = zstd::bulk::compress(&json, 3).map_err(|e| Failure::Encode {
                    context: format!("could not compress the request to {path}"),
                    reason: e.to_string(),
                })?;
                request.header("Content-Encoding", "zstd").send(&packed[..])
            }
        };
        Answer::read(sent)
    }
}

/// A server's answer, whatever its status, with its body read.
#[derive(Debug, Clone)]
pub struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    /// Reads the body of a response: for a 2xx answer a body that breaks off is a failure
    /// (the answer is needed); for an error status it reads as empty, and the status alone
    /// tells what went wrong.
    fn read(
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer, Failure> {
        let response = sent.map_err(|error| Failure::Transport {
            error,
            answered: false,
        })?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let body = if (200..300).contains(&status) {
            body.read_to_string().map_err(|error| Failure::Transport {
                error,
                answered: true,
            })?
        } else {
            body.read_to_string().unwrap_or_default()
        };
        Ok(Answer { status, body })
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON. An empty body (a 204 to an acknowledgement, say) reads as `null`,
    /// which `serde::de::IgnoredAny` accepts and every real answer type refuses.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        let text = if self.body.trim().is_empty() {
            "null"
        } else {
            self.body.as_str()
        };
        serde_json::from_str(text)
    }

    /// The `error` sentence of an `ErrorBody` answer, if the body is one.
    pub fn refusal(&self) -> Option<String> {
        serde_json::from_str::<ErrorBody>(&self.body)
            .ok()
            .map(|e| e.error)
    }

    /// The sentence of an error answer: the `ErrorBody`'s `error` when there is one, else the
    /// start of whatever the body was (a proxy's HTML page, say), else the bare status.
    pub fn message(&self) -> String {
        if let Some(error) = self.refusal() {
            return error;
        }
        let trimmed = self.body.trim();
        if trimmed.is_empty() {
            return format!("HTTP {} without a message", self.status);
        }
        // The body is untrusted: keep it short and render control characters visibly.
        let cut: String = trimmed.chars().take(200).collect();
        cut.escape_debug().to_string()
    }
}

/// A request that got no usable answer.
#[derive(Debug)]
pub enum Failure {
    /// The body could not be encoded or compressed; nothing was sent.
    Encode { context: String, reason: String },
    /// The connection failed (refused, DNS, timeout, TLS) or broke off; `answered` tells a
    /// 2xx answer whose body broke off from no answer at all.
    Transport { error: ureq::Error, answered: bool },
}

/// A transport failure shows as ureq's own error, causes included, as if it were that error
/// (thiserror's `transparent` wants a single field).
impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Encode { context, reason } => write!(f, "{context}: {reason}"),
            Failure::Transport { error, .. } => error.fmt(f),
        }
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Failure::Encode { .. } => None,
            Failure::Transport { error, .. } => std::error::Error::source(error),
        }
    }
}

impl Failure {
    /// Why the TLS handshake failed, as a sentence starting with "TLS:", when it did.
    pub fn tls(&self) -> Option<String> {
        match self {
            Failure::Transport { error, .. } => tls::failure(error),
            Failure::Encode { .. } => None,
        }
    }

    /// Whether no server answered at the URL (connection refused, an unknown host, a
    /// connection that failed before any answer): for the site tools, the sign that
    /// `invsite serve` is not running.
    pub fn no_server(&self) -> bool {
        matches!(
            self,
            Failure::Transport {
                error: ureq::Error::ConnectionFailed
                    | ureq::Error::Io(_)
                    | ureq::Error::HostNotFound,
                answered: false,
            }
        )
    }

    /// The failure as a sentence for a client of `url`: the TLS reason of a failed handshake;
    /// for a plain `http://` request that looks sent to a TLS port, ureq's message with the
    /// hint that such a URL starts with https://; else ureq's message.
    pub fn sentence(&self, url: &str) -> String {
        if let Some(reason) = self.tls() {
            return reason;
        }
        match self {
            Failure::Transport { error, .. } if tls::looks_like_tls_port(url, error) => {
                format!("{error} (if the site serves TLS, its URL starts with https://)")
            }
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.to_string(),
        }
    }

    #[test]
    fn error_messages_prefer_the_error_body() {
        assert_eq!(
            answer(401, r#"{"error":"wrong secret"}"#).message(),
            "wrong secret"
        );
        assert_eq!(answer(502, "").message(), "HTTP 502 without a message");
        assert_eq!(
            answer(502, "bad\u{1b}gateway").message(),
            "bad\\u{1b}gateway"
        );
        assert_eq!(answer(502, "<html>").refusal(), None);
    }

    #[test]
    fn an_empty_answer_reads_as_null() {
        let _: serde::de::IgnoredAny = answer(204, "").json().unwrap();
        assert!(answer(204, "").json::<ErrorBody>().is_err());
    }

    #[test]
    fn a_refused_connection_is_no_server_and_not_tls() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let f = Failure::Transport {
            error: ureq::Error::Io(refused),
            answered: false,
        };
        assert!(f.no_server());
        assert_eq!(f.tls(), None);
        assert_eq!(f.sentence("http://h"), f.to_string());
        let broken = Failure::Transport {
            error: ureq::Error::Io(std::io::ErrorKind::UnexpectedEof.into()),
            answered: true,
        };
        assert!(!broken.no_server());
        assert!(
            broken
                .sentence("http://h")
                .ends_with("its URL starts with https://)")
        );
    }
}
