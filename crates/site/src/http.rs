//! The site's HTTP/1.1 connection loop: accepts connections from a listener (plain TCP, or
//! the TLS listener of [`crate::tls`]) and serves each with hyper's HTTP/1.1 server, until
//! shutdown, then lets in-flight requests finish.
//!
//! This replaces `axum::serve` for one reason, memory per idle connection (SPEC section 10:
//! at most 20 KB for a connected agent). `axum::serve` first reads a few bytes to tell HTTP/1
//! from HTTP/2 and then serves through a rewinding wrapper, and hyper's read buffer there grew
//! to 16 KB per connection; agents and browsers speak HTTP/1.1 to the site (agents always; a
//! browser over plain HTTP always, over TLS it falls back to HTTP/1.1 when ALPN offers only
//! that, which is what the TLS configuration offers). Here hyper's HTTP/1.1 server sees the
//! socket directly, and its read buffer is bounded.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use axum::serve::Listener;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

/// The largest read buffer of a connection. hyper reads a request head into it (the site's
/// longest heads are a few hundred bytes) and reads bodies through it in pieces of at most this
/// size. hyper's own default lets it grow to about 400 KB; its minimum is 8 KB.
const MAX_READ_BUFFER: usize = 16 * 1024;

/// How long a client may take to send a request head once it started one: a slow-loris client
/// cannot hold a connection's task forever. A parked long-poll already sent its head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on connections from `listener` until `shutdown` completes; then stops
/// accepting, asks every open connection to close after its current request, and returns
/// once they all did.
pub async fn serve<L>(mut listener: L, app: Router, shutdown: impl Future<Output = ()>)
where
    L: Listener<Addr = SocketAddr>,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_READ_BUFFER)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            conn = listener.accept() => conn,
            () = &mut shutdown => break,
        };
        // Every request carries the peer's address (axum's `ConnectInfo`), which the budget of
        // failed credential checks is kept per (`api::throttle`).
        let service = TowerToHyperService::new(app.clone());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            hyper::service::Service::call(&service, request)
        });
        let conn = builder.serve_connection(TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // A client that went away mid-request, or sent something that is not HTTP: its
                // own side sees the error.
                tracing::debug!(error = %e, "A connection ended with an error.");
            }
        });
    }
    // Accept nothing more (the TLS listener stops its handshakes when dropped).
    drop(listener);
    graceful.shutdown().await;
}
