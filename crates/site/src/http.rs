//! The site's HTTP/1.1 connection loop: accepts connections from a listener (plain TCP, or
//! the TLS listener of [`crate::tls`]) within the bounds of [`crate::connections`], and serves
//! each with hyper's HTTP/1.1 server, until shutdown, then lets in-flight requests finish for at
//! most the shutdown grace.
//!
//! This replaces `axum::serve` for one reason, memory per idle connection (SPEC section 10:
//! at most 20 KB for a connected agent). `axum::serve` first reads a few bytes to tell HTTP/1
//! from HTTP/2 and then serves through a rewinding wrapper, and hyper's read buffer there grew
//! to 16 KB per connection; agents and browsers speak HTTP/1.1 to the site (agents always; a
//! browser over plain HTTP always, over TLS it falls back to HTTP/1.1 when ALPN offers only
//! that, which is what the TLS configuration offers). Here hyper's HTTP/1.1 server sees the
//! socket directly, and its read buffer is bounded.
//!
//! Before a request reaches the router, this layer refuses framing a proxy in front could read
//! differently (a transfer coding other than `chunked`: 501), tells the request which
//! connection it came on (so a valid credential can mark it authenticated), and puts a deadline
//! on its body: the head must arrive within the request timeout (hyper's header timeout), and
//! the body within the request timeout after the head plus a second per `min_body_rate` bytes
//! received. A client that stops sending is cut; one that sends a large body at a reasonable
//! rate is not; and a parked long-poll is not, since its body arrived long before. Each request
//! runs inside a span of its own (`request`, at DEBUG: method, path, peer, a request id, and the
//! client's id once its credentials are checked).

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::header::{CONNECTION, TRANSFER_ENCODING};
use axum::http::{HeaderMap, HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};
use tracing::Instrument;
use tracing::instrument::Instrumented;

use crate::api::error::{ApiError, BodyTimeout};
use crate::connections::{Admitted, ConnectionHandle, Connections};
use crate::datadir::Limits;
use crate::metrics::Metrics;

/// The largest read buffer of a connection. hyper reads a request head into it (the site's
/// longest heads are a few hundred bytes) and reads bodies through it in pieces of at most this
/// size. hyper's own default lets it grow to about 400 KB; its minimum is 8 KB.
const MAX_READ_BUFFER: usize = 16 * 1024;

/// The deadlines of the connection loop, from the site's [`Limits`].
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// For a request's head, and again for its body after the head.
    pub request: Duration,
    /// Bytes per second a body earns an extra second with.
    pub min_body_rate: u64,
    /// How long a shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}

impl Deadlines {
    pub fn from_limits(limits: &Limits) -> Deadlines {
        Deadlines {
            request: Duration::from_secs(limits.request_timeout_secs.max(1)),
            min_body_rate: limits.min_body_rate.max(1),
            shutdown_grace: Duration::from_secs(limits.shutdown_grace_secs),
        }
    }
}

/// Where the connection loop takes its connections from: each arrives admitted by the
/// connection bounds.
pub trait Accept: Send {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&mut self) -> impl Future<Output = (Self::Io, Admitted)> + Send;
}

/// Plain TCP connections.
pub struct PlainListener {
    pub listener: TcpListener,
    pub connections: Arc<Connections>,
}

impl Accept for PlainListener {
    type Io = tokio::net::TcpStream;

    async fn accept(&mut self) -> (Self::Io, Admitted) {
        let (tcp, admitted) = self.connections.accept(&self.listener).await;
        let _ = tcp.set_nodelay(true);
        (tcp, admitted)
    }
}

/// Serves `app` on connections from `listener` until `shutdown` completes; then stops
/// accepting, asks every open connection to close after its current request, and returns
/// once they all did or the shutdown grace passed. Connections still open then are dropped
/// with the runtime that runs their tasks, when `invsite serve` returns.
pub async fn serve<L: Accept>(
    mut listener: L,
    app: Router,
    metrics: Arc<Metrics>,
    connections: Arc<Connections>,
    deadlines: Deadlines,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // A slow-loris client cannot hold a connection's task forever with a head that never
        // ends. hyper also times an idle keep-alive connection's wait for its next head.
        .header_read_timeout(deadlines.request)
        .max_buf_size(MAX_READ_BUFFER)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, admitted) = tokio::select! {
            conn = listener.accept() => conn,
            () = &mut shutdown => break,
        };
        let service = SiteService {
            app: TowerToHyperService::new(app.clone()),
            connection: admitted.handle(),
            metrics: metrics.clone(),
            deadlines,
        };
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // A client that went away mid-request, sent something that is not HTTP, or was
                // too slow: its own side sees the error.
                tracing::debug!(peer = %admitted.peer, error = %e, "A connection ended with an error.");
            }
            // The connection no longer counts once its task ends.
            drop(admitted);
        });
    }
    // Accept nothing more (the TLS listener stops its handshakes when dropped).
    drop(listener);
    let grace = deadlines.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.open(),
            grace_secs = grace.as_secs(),
            "Dropping the connections still open at the end of the shutdown grace."
        );
    }
}

/// The router's service for one connection: refuses ambiguous framing, and hands the router
/// each request with the connection's handle and its body under the request deadline.
#[derive(Clone)]
struct SiteService {
    app: TowerToHyperService<Router>,
    connection: ConnectionHandle,
    metrics: Arc<Metrics>,
    deadlines: Deadlines,
}

type RouterFuture = Instrumented<
    <TowerToHyperService<Router> as hyper::service::Service<Request<DeadlineBody>>>::Future,
>;

/// Numbers the requests of this process for their spans' `id`: short, and unique until the
/// site restarts, which is all a reader of the log needs to tell two requests apart.
static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

impl hyper::service::Service<Request<Incoming>> for SiteService {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, RouterFuture>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        // One span per request, around everything the router does for it, so the events of a
        // request (a report's outcome, a refusal) carry who asked for what; the credential
        // extractors add the client's id once it is checked (`api::auth`). At DEBUG: under
        // the default filter (`info`) it is disabled, which costs a check of the callsite's
        // interest and evaluates none of the fields, so a site's request rate does not pay for
        // it; `RUST_LOG=invsync_site=debug` turns it on with the events it wraps.
        let span = tracing::debug_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            peer = %self.connection.ip(),
            id = REQUEST_IDS.fetch_add(1, Ordering::Relaxed),
            client_id = tracing::field::Empty,
        );
        if let Err(refused) = check_framing(req.headers()) {
            // Outside the router, so counted here rather than by its refusal layer.
            self.metrics.refused(refused.refusal());
            let mut response = span.in_scope(|| refused.into_response());
            // The body was not read, and where it ends is the question: never read another
            // request from this connection.
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            return Either::Left(ready(Ok(response)));
        }
        req.extensions_mut().insert(self.connection.clone());
        let deadlines = self.deadlines;
        let metrics = self.metrics.clone();
        let req = req.map(|body| DeadlineBody::new(body, deadlines, metrics));
        let routed = span.in_scope(|| hyper::service::Service::call(&self.app, req));
        Either::Right(routed.instrument(span))
    }
}

/// Refuses a transfer coding other than `chunked` alone. hyper reads `gzip, chunked` as plain
/// chunked (it only checks that `chunked` comes last) and would hand the router the gzip bytes;
/// a proxy that decodes it, or one that reads the header differently, would disagree with the
/// site about where the request ends, which is how requests are smuggled past a proxy.
fn check_framing(headers: &HeaderMap) -> Result<(), ApiError> {
    let values = headers.get_all(TRANSFER_ENCODING);
    if values.iter().next().is_none() {
        return Ok(());
    }
    let mut codings = values
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(str::trim);
    let only_chunked = codings
        .next()
        .is_some_and(|c| c.eq_ignore_ascii_case("chunked"))
        && codings.next().is_none();
    if only_chunked {
        return Ok(());
    }
    let sent: Vec<&str> = values.iter().map(|v| v.to_str().unwrap_or("?")).collect();
    let mut sent = sent.join(", ");
    sent.truncate(sent.floor_char_boundary(64));
    Err(ApiError::NotImplemented(format!(
        "Transfer-Encoding {sent:?} is not supported; send the body with Content-Length, or with \
         Transfer-Encoding: chunked alone"
    )))
}

/// A request body under the request deadline: it must end within `deadlines.request` of the
/// head's arrival plus one second per `min_body_rate` bytes received so far. The timer exists
/// only while a reader waits for more of the body, so a request whose body was read (a parked
/// long-poll) carries none.
pub struct DeadlineBody {
    inner: Incoming,
    start: Instant,
    received: u64,
    deadlines: Deadlines,
    sleep: Option<Pin<Box<Sleep>>>,
    metrics: Arc<Metrics>,
    expired: bool,
}

impl DeadlineBody {
    fn new(inner: Incoming, deadlines: Deadlines, metrics: Arc<Metrics>) -> DeadlineBody {
        DeadlineBody {
            inner,
            start: Instant::now(),
            received: 0,
            deadlines,
            sleep: None,
            metrics,
            expired: false,
        }
    }

    fn deadline(&self) -> Instant {
        let earned = Duration::from_millis(
            self.received.saturating_mul(1000) / self.deadlines.min_body_rate,
        );
        self.start + self.deadlines.request + earned
    }

    fn timeout(&self) -> axum::BoxError {
        Box::new(BodyTimeout {
            timeout_secs: self.deadlines.request.as_secs(),
            min_body_rate: self.deadlines.min_body_rate,
        })
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Some(Err(this.timeout())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.sleep = None;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        let deadline = this.deadline();
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.expired = true;
        this.sleep = None;
        this.metrics.request_timed_out();
        tracing::debug!(
            received = this.received,
            "Cut a request whose body did not arrive in time."
        );
        Poll::Ready(Some(Err(this.timeout())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(te: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in te {
            h.append(TRANSFER_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_chunked_alone_is_a_transfer_coding() {
        assert!(check_framing(&headers(&[])).is_ok());
        assert!(check_framing(&headers(&["chunked"])).is_ok());
        assert!(check_framing(&headers(&[" Chunked "])).is_ok());
        for bad in [
            &["gzip, chunked"][..],
            &["gzip", "chunked"],
            &["chunked, chunked"],
            &["identity"],
            &["chunked", "chunked"],
        ] {
            let e = check_framing(&headers(bad)).unwrap_err();
            assert!(matches!(e, ApiError::NotImplemented(_)), "{bad:?}");
            assert!(e.to_string().contains("chunked alone"), "{e}");
        }
    }
}
