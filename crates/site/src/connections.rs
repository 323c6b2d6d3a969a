//! The bounds on the site's open connections: how many at most (configured, and never more
//! than the process's descriptor limit leaves after a reserve), and how many one remote address
//! may hold while none of their requests has authenticated. Every accepted TCP connection,
//! plain or TLS (before its handshake), is admitted here or closed at once; an admitted one
//! holds an [`Admitted`] guard until it closes, and the authentication extractors mark it
//! authenticated through the [`ConnectionHandle`] its requests carry.
//!
//! Why "not yet authenticated" rather than "per address": the connection layer cannot know who
//! is calling before a request is read, and agents behind one NAT, or every client behind a
//! reverse proxy, share an address. A connection stops counting against its address as soon as
//! one of its requests presented a valid token or console session, so 10,000 agents behind a
//! NAT each hold their long-poll, while one address that never authenticates (a slow-body
//! flood, say) holds at most `max_unauthenticated_per_address` connections and cannot take the
//! ones `/healthz`, agents and administrators elsewhere need. Whatever the configuration, one
//! address never holds more than half the connection bound.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

use crate::datadir::Limits;
use crate::metrics::{ConnectionRefusal, Metrics};

/// Descriptors kept for everything but client connections: the listener, the runtime's own,
/// the database (up to 64 PostgreSQL connections, or SQLite's files), log files and the TLS
/// files read at start. Never more than half the limit, so a tiny limit still serves.
const RESERVED_DESCRIPTORS: u64 = 128;

/// The descriptor limit assumed for a site state that does not serve (tools and tests that
/// call the router directly); `Server::bind` replaces it with the process's real limit.
pub const DEFAULT_DESCRIPTORS: u64 = 1024;

/// How long the accept loop waits after an `accept` that failed for want of descriptors or
/// memory: the waiting connection stays queued and would fail again at once.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);

/// At most one log line per kind of refusal this often; the lines in between are counted and
/// the next line says how many.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Raises the soft limit on open descriptors to the hard limit (the soft one is often 1,024,
/// far below 10,000 connected agents) and returns the limit in force.
pub fn raise_descriptor_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// The connection bound the descriptor limit allows: the limit less the reserve.
pub fn connections_allowed_by(descriptors: u64) -> usize {
    let reserve = RESERVED_DESCRIPTORS.min(descriptors / 2);
    usize::try_from(descriptors - reserve).unwrap_or(usize::MAX)
}

/// The open connections of one running site and their bounds.
pub struct Connections {
    max_open: usize,
    max_unauthenticated_per_address: usize,
    open: AtomicUsize,
    /// Connections per remote address that have not authenticated; an address leaves the map
    /// when its count reaches zero, so the map is as large as the addresses connecting now.
    unauthenticated: Mutex<HashMap<IpAddr, usize>>,
    metrics: Arc<Metrics>,
    log: [RateLimitedLog; 3],
}

impl Connections {
    /// Bounds from the configuration, the global one capped by `descriptors`.
    pub fn new(limits: &Limits, descriptors: u64, metrics: Arc<Metrics>) -> Connections {
        let max_open = limits
            .max_connections
            .min(connections_allowed_by(descriptors));
        // One address never holds more than half the site, whatever the configuration says,
        // so a small descriptor limit still leaves room for everybody else.
        let per_address = match limits.max_unauthenticated_per_address {
            0 => 0,
            n => n.min((max_open / 2).max(1)),
        };
        Connections {
            max_open,
            max_unauthenticated_per_address: per_address,
            open: AtomicUsize::new(0),
            unauthenticated: Mutex::new(HashMap::new()),
            metrics,
            log: Default::default(),
        }
    }

    /// The bound in force on open connections.
    pub fn max_open(&self) -> usize {
        self.max_open
    }

    /// The bound in force on one address's unauthenticated connections (0: none).
    pub fn max_unauthenticated_per_address(&self) -> usize {
        self.max_unauthenticated_per_address
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn unauthenticated(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Plain counts: a panic elsewhere cannot leave them half-written.
        self.unauthenticated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `peer`, or says which bound refuses it (counted and logged).
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Admitted, ConnectionRefusal> {
        let ip = canonical(peer.ip());
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max_open {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refuse(ConnectionRefusal::Limit, peer));
        }
        if self.max_unauthenticated_per_address > 0 {
            let mut map = self.unauthenticated();
            let count = map.entry(ip).or_insert(0);
            if *count >= self.max_unauthenticated_per_address {
                drop(map);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(self.refuse(ConnectionRefusal::Address, peer));
            }
            *count += 1;
        }
        self.metrics.connection_opened();
        let entry = Arc::new(Entry {
            ip,
            authenticated: AtomicBool::new(false),
            connections: self.clone(),
        });
        Ok(Admitted { peer, entry })
    }

    fn refuse(&self, reason: ConnectionRefusal, peer: SocketAddr) -> ConnectionRefusal {
        self.metrics.connection_refused(reason);
        let log = &self.log[reason as usize];
        if let Some(refused) = log.due() {
            match reason {
                ConnectionRefusal::Limit => tracing::warn!(
                    %peer,
                    max_connections = self.max_open,
                    refused,
                    "Closed new connections at once: the site holds as many as max_connections allows."
                ),
                ConnectionRefusal::Address => tracing::warn!(
                    %peer,
                    max_unauthenticated_per_address = self.max_unauthenticated_per_address,
                    refused,
                    "Closed new connections at once: their address holds as many unauthenticated ones as allowed."
                ),
            }
        }
        reason
    }

    /// One fewer connection from `ip` waits to authenticate.
    fn release_unauthenticated(&self, ip: IpAddr) {
        if self.max_unauthenticated_per_address == 0 {
            return;
        }
        let mut map = self.unauthenticated();
        if let Some(count) = map.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&ip);
            }
        }
    }

    /// Accepts the next connection that the bounds admit. An `accept` that failed for want of
    /// descriptors (or memory) is counted, logged and retried after a pause, so the loop does
    /// not spin on a connection that stays queued.
    pub async fn accept(self: &Arc<Self>, listener: &TcpListener) -> (TcpStream, Admitted) {
        loop {
            match listener.accept().await {
                Ok((tcp, peer)) => match self.admit(peer) {
                    Ok(admitted) => return (tcp, admitted),
                    // Dropping the stream closes it: the client sees the connection end at once
                    // instead of waiting in the queue for a slot.
                    Err(_) => drop(tcp),
                },
                // A connection that died before it was accepted is nothing.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused
                            | std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => {
                    self.metrics.accept_failed();
                    if let Some(failed) = self.log[2].due() {
                        // An operator must act: the process is out of descriptors or memory
                        // below the bound meant to prevent that (another process shares them,
                        // or the reserve is too small).
                        tracing::error!(
                            error = %e,
                            failed,
                            open = self.open(),
                            "Accepting connections failed; retrying after a pause."
                        );
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

/// IPv4 clients of a dual-stack listener arrive as `::ffff:a.b.c.d`; they are one address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What a connection's requests share: its address and whether one of them authenticated.
struct Entry {
    ip: IpAddr,
    authenticated: AtomicBool,
    connections: Arc<Connections>,
}

/// An admitted connection: while it lives, the connection counts as open (and, until it
/// authenticates, against its address).
pub struct Admitted {
    pub peer: SocketAddr,
    entry: Arc<Entry>,
}

impl Admitted {
    /// The handle the connection's requests carry (as a request extension).
    pub fn handle(&self) -> ConnectionHandle {
        ConnectionHandle(self.entry.clone())
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let c = &self.entry.connections;
        if !self.entry.authenticated.swap(true, Ordering::AcqRel) {
            c.release_unauthenticated(self.entry.ip);
        }
        c.open.fetch_sub(1, Ordering::AcqRel);
        c.metrics.connection_closed();
    }
}

/// The connection a request arrived on, in its extensions.
#[derive(Clone)]
pub struct ConnectionHandle(Arc<Entry>);

impl ConnectionHandle {
    /// The remote address of the connection (an IPv4 client of a dual-stack listener as IPv4).
    pub fn ip(&self) -> IpAddr {
        self.0.ip
    }

    /// A request on this connection presented valid credentials: the connection no longer
    /// counts against its address.
    pub fn authenticated(&self) {
        if !self.0.authenticated.swap(true, Ordering::AcqRel) {
            self.0.connections.release_unauthenticated(self.0.ip);
        }
    }
}

/// Marks the connection of a request (by its extensions) authenticated; a request that did not
/// come through the site's connection loop (a test calling the router) has none.
pub fn mark_authenticated(extensions: &axum::http::Extensions) {
    if let Some(handle) = extensions.get::<ConnectionHandle>() {
        handle.authenticated();
    }
}

/// Lets one log line through per [`LOG_EVERY`], counting the events in between.
struct RateLimitedLog {
    /// Milliseconds since `epoch` of the last line, plus one (0: never).
    last: AtomicU64,
    since: AtomicU64,
    epoch: Instant,
}

impl Default for RateLimitedLog {
    fn default() -> RateLimitedLog {
        RateLimitedLog {
            last: AtomicU64::new(0),
            since: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl RateLimitedLog {
    /// Counts an event; returns how many happened since the last line when a line is due.
    fn due(&self) -> Option<u64> {
        self.since.fetch_add(1, Ordering::AcqRel);
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Acquire);
        if last != 0 && now.saturating_sub(last) < LOG_EVERY.as_millis() as u64 {
            return None;
        }
        // One caller wins the line; the others keep counting for the next one.
        self.last
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        Some(self.since.swap(0, Ordering::AcqRel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connections(max_connections: usize, per_address: usize) -> Arc<Connections> {
        let limits = Limits {
            max_connections,
            max_unauthenticated_per_address: per_address,
            ..Limits::default()
        };
        Arc::new(Connections::new(&limits, 1 << 20, Arc::new(Metrics::new())))
    }

    fn peer(ip: &str, port: u16) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), port)
    }

    #[test]
    fn one_address_holds_at_most_its_unauthenticated_share() {
        let c = connections(100, 2);
        let a1 = c.admit(peer("10.0.0.1", 1)).unwrap();
        let a2 = c.admit(peer("10.0.0.1", 2)).unwrap();
        assert_eq!(
            c.admit(peer("10.0.0.1", 3)).err(),
            Some(ConnectionRefusal::Address)
        );
        // The same address over IPv6-mapped IPv4 is the same address.
        assert_eq!(
            c.admit(peer("::ffff:10.0.0.1", 4)).err(),
            Some(ConnectionRefusal::Address)
        );
        // Another address is not affected.
        let _b = c.admit(peer("10.0.0.2", 1)).unwrap();
        // An authenticated connection stops counting; a closed one too.
        a1.handle().authenticated();
        let a3 = c.admit(peer("10.0.0.1", 5)).unwrap();
        drop(a2);
        let _a4 = c.admit(peer("10.0.0.1", 6)).unwrap();
        assert_eq!(
            c.admit(peer("10.0.0.1", 7)).err(),
            Some(ConnectionRefusal::Address)
        );
        // Closing the authenticated connection does not release the address a second time.
        drop(a1);
        assert_eq!(
            c.admit(peer("10.0.0.1", 8)).err(),
            Some(ConnectionRefusal::Address)
        );
        drop(a3);
        assert_eq!(c.open(), 2);
        assert_eq!(c.unauthenticated().len(), 2);
    }

    #[test]
    fn the_global_bound_counts_every_connection() {
        let c = connections(3, 0);
        let held: Vec<_> = (0..3)
            .map(|i| c.admit(peer("10.0.0.1", i)).unwrap())
            .collect();
        held[0].handle().authenticated();
        assert_eq!(
            c.admit(peer("10.9.9.9", 1)).err(),
            Some(ConnectionRefusal::Limit)
        );
        drop(held);
        assert_eq!(c.open(), 0);
        assert!(c.admit(peer("10.9.9.9", 1)).is_ok());
    }

    #[test]
    fn descriptors_keep_a_reserve() {
        assert_eq!(connections_allowed_by(1024), 896);
        assert_eq!(connections_allowed_by(256), 128);
        assert_eq!(connections_allowed_by(100), 50);
        let limits = Limits {
            max_connections: 20_000,
            ..Limits::default()
        };
        let c = Connections::new(&limits, 1024, Arc::new(Metrics::new()));
        assert_eq!(c.max_open(), 896);
        assert_eq!(c.max_unauthenticated_per_address(), 256);
        // One address never gets more than half of what the descriptors allow.
        let c = Connections::new(&limits, 256, Arc::new(Metrics::new()));
        assert_eq!(
            (c.max_open(), c.max_unauthenticated_per_address()),
            (128, 64)
        );
    }

    #[test]
    fn log_lines_are_rate_limited_and_count_what_they_skipped() {
        let log = RateLimitedLog::default();
        assert_eq!(log.due(), Some(1));
        assert_eq!(log.due(), None);
        // A line as old as twice LOG_EVERY: the next event gets a line counting the five
        // skipped since.
        let later = RateLimitedLog {
            epoch: Instant::now() - LOG_EVERY * 2,
            ..RateLimitedLog::default()
        };
        later.last.store(1, Ordering::Release);
        later.since.store(5, Ordering::Release);
        assert_eq!(later.due(), Some(6));
    }
}
