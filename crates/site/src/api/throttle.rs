//! The budget of failed credential checks per remote address: a wrong admin token (API or
//! console login), client key, child-site token or enrollment secret costs the address one
//! unit of `auth_failures_per_minute`, refilled evenly over a minute; an address that spent it
//! all is answered 429 with `Retry-After` instead of 401 or 403 until a unit is back.
//!
//! Only failures count, and credentials are always checked: a caller that presents a right
//! credential is served at once, even from an address that is over its budget (an agent
//! behind the same NAT as a misconfigured one, or the site's own TLS proxy on loopback). The
//! budget therefore does not stop anyone from presenting guesses: every credential is a random
//! 256-bit value, which no rate of guessing would find. It tells a well-behaved client that
//! keeps presenting a wrong credential (an agent with a key from before a restored database, a
//! script with an old token) to back off, makes a flood of wrong tokens visible
//! (`invsite_requests_refused_total{reason="rate_limited"}`), and keeps the log from being
//! flooded: an address over its budget is logged once per minute, not per request.
//!
//! Addresses are keyed by IPv4 address and by IPv6 /64 prefix (one host usually holds a whole
//! /64). The state is GCRA's one timestamp per address that failed lately (`governor`); idle
//! addresses are dropped every [`SWEEP_EVERY`] failures, so the table holds only the addresses
//! that failed in the last minute.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use crate::connections::ConnectionHandle;

/// How many failures pass between two sweeps of idle addresses out of the table.
const SWEEP_EVERY: u64 = 4096;

/// The remote address of a request, from the connection handle the connection loop
/// (`crate::http`) gives every request; `None` only for a request that did not come through it.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<IpAddr>);

impl Peer {
    pub fn of(parts: &Parts) -> Peer {
        Peer(
            parts
                .extensions
                .get::<ConnectionHandle>()
                .map(ConnectionHandle::ip),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Peer, Self::Rejection> {
        Ok(Peer::of(parts))
    }
}

/// The key an address is counted under: IPv4 addresses as they are (also when mapped into
/// IPv6), IPv6 addresses by their /64.
fn key(peer: Option<IpAddr>) -> IpAddr {
    match peer.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V6(v6)) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        Some(v4) => v4,
        // Requests that did not come through the connection loop share one budget.
        None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// The site's table of recent failures per address.
pub struct AuthFailures {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    failures: AtomicU64,
    /// When an address last went over its budget was logged, in seconds since the table was
    /// made; one log line a minute at most.
    last_logged: AtomicU64,
    started: std::time::Instant,
}

impl AuthFailures {
    /// A budget of `per_minute` failures per address (at least one), refilled evenly.
    pub fn new(per_minute: u32) -> AuthFailures {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        let clock = DefaultClock::default();
        AuthFailures {
            limiter: RateLimiter::dashmap_with_clock(quota, clock.clone()),
            clock,
            failures: AtomicU64::new(0),
            last_logged: AtomicU64::new(u64::MAX),
            started: std::time::Instant::now(),
        }
    }

    /// Counts a failed credential check from `peer`, whose answer is `refusal`: that answer
    /// while the address is within its budget, 429 once it is over it.
    pub fn refuse(&self, peer: Option<IpAddr>, refusal: ApiError) -> ApiError {
        if self.failures.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        let key = key(peer);
        match self.limiter.check_key(&key) {
            Ok(()) => refusal,
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                // Whole seconds, rounded up: a client that waits that long is within budget.
                let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let retry_after_secs = retry_after_secs.max(1);
                self.log_over_budget(key);
                ApiError::TooManyRequests {
                    message: format!(
                        "too many failed credential checks from this address; try again in {retry_after_secs} s \
                         with the right credential ({refusal})"
                    ),
                    retry_after_secs,
                }
            }
        }
    }

    fn log_over_budget(&self, key: IpAddr) {
        let now = self.started.elapsed().as_secs();
        let last = self.last_logged.load(Ordering::Relaxed);
        let due = last == u64::MAX || now >= last + 60;
        if due
            && self
                .last_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                address = %key,
                "An address is over its budget of failed credential checks; its wrong tokens are answered 429 (logged once a minute)."
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unauthorized() -> ApiError {
        ApiError::Unauthorized("wrong admin token".to_string())
    }

    #[test]
    fn an_address_over_its_budget_gets_429_and_others_do_not() {
        let failures = AuthFailures::new(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(matches!(
                failures.refuse(Some(a), unauthorized()),
                ApiError::Unauthorized(_)
            ));
        }
        match failures.refuse(Some(a), unauthorized()) {
            ApiError::TooManyRequests {
                message,
                retry_after_secs,
            } => {
                // One unit comes back every 20 s.
                assert!((1..=20).contains(&retry_after_secs), "{retry_after_secs}");
                assert!(message.contains("wrong admin token"), "{message}");
            }
            other => panic!("expected 429, got {other:?}"),
        }
        assert!(matches!(
            failures.refuse(Some(b), unauthorized()),
            ApiError::Unauthorized(_)
        ));
    }

    #[test]
    fn ipv6_addresses_share_their_64_and_mapped_ipv4_is_ipv4() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let two: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(key(Some(one)), key(Some(two)));
        assert_ne!(key(Some(one)), key(Some(other)));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(key(Some(mapped)), "192.0.2.7".parse::<IpAddr>().unwrap());
        let failures = AuthFailures::new(1);
        assert!(matches!(
            failures.refuse(Some(one), unauthorized()),
            ApiError::Unauthorized(_)
        ));
        assert!(matches!(
            failures.refuse(Some(two), unauthorized()),
            ApiError::TooManyRequests { .. }
        ));
        assert!(matches!(
            failures.refuse(Some(other), unauthorized()),
            ApiError::Unauthorized(_)
        ));
    }
}
