//! The site's counters and gauges, which `GET /metrics` (`api/metrics.rs`) shows in the
//! Prometheus text format (version 0.0.4) for an operator's Prometheus to scrape. One
//! [`Metrics`] per running site, held in the site's state; handlers count what they do, and the
//! gauges are read at scrape time. This module names no other of the site's: the connection
//! bounds, the error responses and the handlers all count here.
//!
//! What each metric means and why it exists:
//!
//! * `invsite_reports_accepted_total{class="hw|sw",kind="full|delta"}`: reports stored (a new
//!   version). Deltas are the normal traffic; a rising share of full reports means agents are
//!   resyncing (requested, or healing after a refused delta) and costs the site far more.
//! * `invsite_reports_not_applied_total{class,reason="duplicate|resync_required"}`: reports
//!   stored nothing. `duplicate` is a report sent again after a lost answer (harmless);
//!   `resync_required` is a delta against the wrong version or hash, answered with "send a
//!   full report": a steady rate points at agents and site disagreeing (restored database).
//! * `invsite_checkins_total`: agent check-ins (one per cycle). An idle fleet checks in and
//!   sends nothing, so check-ins minus accepted reports is the number of no-change cycles, the
//!   bulk of a site's load.
//! * `invsite_resyncs_requested_total{class}`: resync requests queued through the admin API
//!   (`invsync`, the console) for this site's own clients. Not counted: a request merged into
//!   an identical pending one (it is the same request), a request routed down to a site below
//!   (`--via-child`; it completes there), a request that arrives from a parent, and one that
//!   `invsync` queued in the database directly while the server was down (the server never
//!   sees it being made). So requested and completed need not match exactly.
//! * `invsite_resyncs_completed_total{class}` and `invsite_resync_latency_seconds{class}`:
//!   requests a full report answered here, and the time from request to completion (SPEC
//!   section 10: p50 ≤ 0.2 s with a connected agent; an agent without the push channel answers
//!   at its next cycle, so the buckets reach a day).
//! * `invsite_connected_agents`: agents holding the push channel's long-poll open right now;
//!   the others only learn of a request at their next cycle. An agent that vanished may be
//!   counted until its long-poll's hold time (50 s) ends, when the server did not see the
//!   connection close.
//! * `invsite_outbox_depth`, `invsite_outbox_oldest_age_seconds`: changes accepted and not yet
//!   acknowledged by the parent site, and how long the oldest has waited (0 when empty, and
//!   always at a site without a parent). A growing age means the parent is unreachable or
//!   refusing: nothing is lost, but nothing above this site is current.
//! * `invsite_clients_stale`: this site's own clients not seen for longer than `invsite config
//!   --stale-after` (default 30 days), read at scrape time: machines retired without `invsite
//!   delete`, or agents that stopped; `--delete-after` deletes them.
//! * `invsite_store_write_errors_total`: writes the database refused (disk full, a read-only
//!   file, PostgreSQL down). Any increase needs an operator: `/healthz` answers 503 while the
//!   last write failed, and the log says once what to do (see the store's `health` module).
//! * `invsite_requests_refused_total{reason}`: requests answered with an error, by the reason
//!   [`Refusal`] that `api/error.rs` gives each status (`unauthorized` counts wrong tokens, say;
//!   `rate_limited` counts the 429s of an address over its budget of failed credential checks,
//!   `crate::api::throttle`, a sign that something keeps trying wrong tokens).
//! * `invsite_zstd_bodies_decoded_total`: compressed request bodies the site set out to
//!   decompress (one whose frame headers declare more than the limit stops there). A body is
//!   decompressed only after its sender's credentials were checked, so this counts reports and
//!   forwarded batches from callers the site accepted, and never moves for a wrong key
//!   (`crate::api::decode`).
//! * `invsite_connections_open`: connections open now (agents' long-polls included), against
//!   the bound `max_connections` (`connections.rs`).
//! * `invsite_connections_refused_total{reason="limit|address"}`: connections closed as soon as
//!   they were accepted, because the site held `max_connections` (`limit`) or their address held
//!   `max_unauthenticated_per_address` connections that had not authenticated (`address`). A
//!   steady rate of `address` is one address flooding the site, or many clients behind one
//!   proxy or NAT (raise the bound then); `limit` means the site is full.
//! * `invsite_accept_errors_total`: `accept` failures other than a connection that died
//!   first, typically the process out of descriptors: an operator must look.
//! * `invsite_request_timeouts_total`: requests whose body did not arrive within the request
//!   deadline (`request_timeout_secs`, `min_body_rate`); their connections were closed.
//!
//! Labels are small fixed sets (class, kind, reason); never a client name or id, so the page
//! tells nothing about which machines a site holds and its size does not grow with them.
//!
//! `/metrics` needs no token, like `/healthz`: it holds only counts, and the alternative, the
//! admin token in Prometheus's configuration, would let the monitoring system queue requests
//! (see SECURITY.md).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::response::Response;
use invsync_proto::wire::ReportAck;
use invsync_proto::{Class, Timestamp};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds (seconds) of the resync latency buckets: a connected agent answers within a
/// second (the first five), one without the push channel at its next cycle (up to a day).
const LATENCY_BUCKETS: [f64; 15] = [
    0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
];

/// Why a request was refused: the `reason` label of `invsite_requests_refused_total`. Each
/// [`ApiError`] maps to one (`ApiError::refusal`); `Other` is an error response that did not
/// come from an `ApiError` (axum's own 405 for a wrong method).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    BadInput,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    OtherSite,
    TooLarge,
    Unsupported,
    RateLimited,
    TimedOut,
    NotImplemented,
    Internal,
    Unavailable,
    Other,
}

impl Refusal {
    pub const ALL: [Refusal; 14] = [
        Refusal::BadInput,
        Refusal::Unauthorized,
        Refusal::Forbidden,
        Refusal::NotFound,
        Refusal::Conflict,
        Refusal::OtherSite,
        Refusal::TooLarge,
        Refusal::Unsupported,
        Refusal::RateLimited,
        Refusal::TimedOut,
        Refusal::NotImplemented,
        Refusal::Internal,
        Refusal::Unavailable,
        Refusal::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::BadInput => "bad_input",
            Refusal::Unauthorized => "unauthorized",
            Refusal::Forbidden => "forbidden",
            Refusal::NotFound => "not_found",
            Refusal::Conflict => "conflict",
            Refusal::OtherSite => "other_site",
            Refusal::TooLarge => "too_large",
            Refusal::Unsupported => "unsupported",
            Refusal::RateLimited => "rate_limited",
            Refusal::TimedOut => "timed_out",
            Refusal::NotImplemented => "not_implemented",
            Refusal::Internal => "internal",
            Refusal::Unavailable => "unavailable",
            Refusal::Other => "other",
        }
    }
}

impl EncodeLabelValue for Refusal {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// Why a connection was closed as soon as it was accepted: the `reason` label of
/// `invsite_connections_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionRefusal {
    /// The site held `max_connections`.
    Limit = 0,
    /// The address held `max_unauthenticated_per_address` unauthenticated connections.
    Address = 1,
}

impl EncodeLabelValue for ConnectionRefusal {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self {
            ConnectionRefusal::Limit => "limit",
            ConnectionRefusal::Address => "address",
        })
    }
}

/// The `class` label: `hw` or `sw`, as everywhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClassLabel(pub Class);

impl EncodeLabelValue for ClassLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.0.as_str())
    }
}

/// The `kind` label of an accepted report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportKind {
    Full,
    Delta,
}

impl EncodeLabelValue for ReportKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self {
            ReportKind::Full => "full",
            ReportKind::Delta => "delta",
        })
    }
}

/// Why a report stored nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotApplied {
    Duplicate,
    ResyncRequired,
}

impl EncodeLabelValue for NotApplied {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self {
            NotApplied::Duplicate => "duplicate",
            NotApplied::ResyncRequired => "resync_required",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClassLabels {
    class: ClassLabel,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReportLabels {
    class: ClassLabel,
    kind: ReportKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct NotAppliedLabels {
    class: ClassLabel,
    reason: NotApplied,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusalLabels {
    reason: Refusal,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ConnectionRefusalLabels {
    reason: ConnectionRefusal,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The registry and a handle on every metric. Handles are atomics, so counting costs a
/// handler a few nanoseconds and takes no lock the scrape holds.
pub struct Metrics {
    registry: Registry,
    reports_accepted: Family<ReportLabels, Counter>,
    reports_not_applied: Family<NotAppliedLabels, Counter>,
    checkins: Counter,
    resyncs_requested: Family<ClassLabels, Counter>,
    resyncs_completed: Family<ClassLabels, Counter>,
    resync_latency: Family<ClassLabels, Histogram, fn() -> Histogram>,
    connected_agents: Gauge,
    outbox_depth: Gauge,
    outbox_oldest_age: Gauge<f64, AtomicU64>,
    clients_stale: Gauge,
    refused: Family<RefusalLabels, Counter>,
    store_write_errors: Counter,
    bodies_decoded: Counter,
    connections_open: Gauge,
    connections_refused: Family<ConnectionRefusalLabels, Counter>,
    accept_errors: Counter,
    request_timeouts: Counter,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::with_prefix("invsite"),
            reports_accepted: Family::default(),
            reports_not_applied: Family::default(),
            checkins: Counter::default(),
            resyncs_requested: Family::default(),
            resyncs_completed: Family::default(),
            resync_latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            connected_agents: Gauge::default(),
            outbox_depth: Gauge::default(),
            outbox_oldest_age: Gauge::default(),
            clients_stale: Gauge::default(),
            refused: Family::default(),
            store_write_errors: Counter::default(),
            bodies_decoded: Counter::default(),
            connections_open: Gauge::default(),
            connections_refused: Family::default(),
            accept_errors: Counter::default(),
            request_timeouts: Counter::default(),
        };
        m.register()
    }

    fn register(mut self) -> Metrics {
        let r = &mut self.registry;
        // Counters get their `_total` suffix and units their `_seconds` from the encoder.
        r.register(
            "reports_accepted",
            "Reports stored, by class and kind",
            self.reports_accepted.clone(),
        );
        r.register(
            "reports_not_applied",
            "Reports that stored nothing: sent again (duplicate) or a delta the site could not apply (resync_required)",
            self.reports_not_applied.clone(),
        );
        r.register(
            "checkins",
            "Agent check-ins, one per cycle",
            self.checkins.clone(),
        );
        r.register(
            "resyncs_requested",
            "Resync requests queued through the admin API for own clients",
            self.resyncs_requested.clone(),
        );
        r.register(
            "resyncs_completed",
            "Resync requests completed by a full report",
            self.resyncs_completed.clone(),
        );
        r.register_with_unit(
            "resync_latency",
            "Time from a resync request to the full report that completed it",
            Unit::Seconds,
            self.resync_latency.clone(),
        );
        r.register(
            "connected_agents",
            "Agents holding the push channel open",
            self.connected_agents.clone(),
        );
        r.register(
            "outbox_depth",
            "Accepted changes not yet acknowledged by the parent site",
            self.outbox_depth.clone(),
        );
        r.register(
            "clients_stale",
            "This site's clients not seen for longer than --stale-after",
            self.clients_stale.clone(),
        );
        r.register_with_unit(
            "outbox_oldest_age",
            "Age of the oldest change waiting for the parent site (0 when none waits)",
            Unit::Seconds,
            self.outbox_oldest_age.clone(),
        );
        r.register(
            "requests_refused",
            "Requests answered with an error, by reason",
            self.refused.clone(),
        );
        r.register(
            "store_write_errors",
            "Writes the site's database refused (disk full, read-only, database down)",
            self.store_write_errors.clone(),
        );
        r.register(
            "zstd_bodies_decoded",
            "Compressed request bodies decompressed, each after its sender's credentials were checked",
            self.bodies_decoded.clone(),
        );
        r.register(
            "connections_open",
            "Connections open now",
            self.connections_open.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed as soon as accepted: the site was full (limit) or their address held its share of unauthenticated connections (address)",
            self.connections_refused.clone(),
        );
        r.register(
            "accept_errors",
            "Failed accepts, such as the process out of descriptors",
            self.accept_errors.clone(),
        );
        r.register(
            "request_timeouts",
            "Requests whose body did not arrive within the request deadline; their connections were closed",
            self.request_timeouts.clone(),
        );
        // Every label value of the bounded sets shows from the start, at 0, so a rate() over
        // a series that has never moved is 0 rather than absent. (`get_or_create` creates the
        // series and returns a read guard on the family, dropped at once.)
        for class in [Class::Hw, Class::Sw] {
            let class = ClassLabel(class);
            for kind in [ReportKind::Full, ReportKind::Delta] {
                drop(
                    self.reports_accepted
                        .get_or_create(&ReportLabels { class, kind }),
                );
            }
            for reason in [NotApplied::Duplicate, NotApplied::ResyncRequired] {
                drop(
                    self.reports_not_applied
                        .get_or_create(&NotAppliedLabels { class, reason }),
                );
            }
            drop(self.resyncs_requested.get_or_create(&ClassLabels { class }));
            drop(self.resyncs_completed.get_or_create(&ClassLabels { class }));
            drop(self.resync_latency.get_or_create(&ClassLabels { class }));
        }
        for reason in Refusal::ALL {
            drop(self.refused.get_or_create(&RefusalLabels { reason }));
        }
        for reason in [ConnectionRefusal::Limit, ConnectionRefusal::Address] {
            drop(
                self.connections_refused
                    .get_or_create(&ConnectionRefusalLabels { reason }),
            );
        }
        self
    }

    /// What became of a report the store saw.
    pub fn report(&self, class: Class, full: bool, ack: &ReportAck) {
        let class = ClassLabel(class);
        match ack {
            ReportAck::Accepted { .. } => {
                let kind = if full {
                    ReportKind::Full
                } else {
                    ReportKind::Delta
                };
                self.reports_accepted
                    .get_or_create(&ReportLabels { class, kind })
                    .inc();
            }
            ReportAck::Duplicate { .. } => {
                self.reports_not_applied
                    .get_or_create(&NotAppliedLabels {
                        class,
                        reason: NotApplied::Duplicate,
                    })
                    .inc();
            }
            ReportAck::ResyncRequired { .. } => {
                self.reports_not_applied
                    .get_or_create(&NotAppliedLabels {
                        class,
                        reason: NotApplied::ResyncRequired,
                    })
                    .inc();
            }
        }
    }

    pub fn checkin(&self) {
        self.checkins.inc();
    }

    pub fn resync_requested(&self, class: Class) {
        self.resyncs_requested
            .get_or_create(&ClassLabels {
                class: ClassLabel(class),
            })
            .inc();
    }

    /// A request made at `requested_at` was completed at `completed_at`.
    pub fn resync_completed(&self, class: Class, requested_at: Timestamp, completed_at: Timestamp) {
        let labels = ClassLabels {
            class: ClassLabel(class),
        };
        self.resyncs_completed.get_or_create(&labels).inc();
        // Clocks are the site's own for both times; max(0) only guards a clock stepped back.
        let seconds = (completed_at.millis() - requested_at.millis()).max(0) as f64 / 1000.0;
        self.resync_latency.get_or_create(&labels).observe(seconds);
    }

    pub fn refused(&self, reason: Refusal) {
        self.refused.get_or_create(&RefusalLabels { reason }).inc();
    }

    /// Brings `invsite_store_write_errors_total` up to the store's own count (the store knows
    /// nothing of metrics; its count only grows).
    /// How many of this site's clients are stale now (read at scrape time).
    pub fn set_clients_stale(&self, n: i64) {
        self.clients_stale.set(n);
    }

    pub fn set_store_write_errors(&self, total: u64) {
        let shown = self.store_write_errors.get();
        if total > shown {
            self.store_write_errors.inc_by(total - shown);
        }
    }

    /// A compressed request body is handed to the decoder.
    pub fn body_decoded(&self) {
        self.bodies_decoded.inc();
    }

    pub fn connection_opened(&self) {
        self.connections_open.inc();
    }

    pub fn connection_closed(&self) {
        self.connections_open.dec();
    }

    pub fn connection_refused(&self, reason: ConnectionRefusal) {
        self.connections_refused
            .get_or_create(&ConnectionRefusalLabels { reason })
            .inc();
    }

    pub fn accept_failed(&self) {
        self.accept_errors.inc();
    }

    pub fn request_timed_out(&self) {
        self.request_timeouts.inc();
    }

    /// The page, with the gauges set from the values read at scrape time.
    pub fn render(
        &self,
        connected: usize,
        outbox_depth: i64,
        outbox_oldest_age_seconds: f64,
    ) -> String {
        self.connected_agents.set(connected as i64);
        self.outbox_depth.set(outbox_depth);
        self.outbox_oldest_age.set(outbox_oldest_age_seconds);
        let mut page = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut page, &self.registry);
        page
    }
}

/// Counts every error response by its reason. A middleware rather than a call inside
/// `ApiError::into_response`, because that conversion has no state to count in: the error
/// response carries its [`Refusal`] as a response extension, and this layer, which has the
/// metrics, reads it. Error responses without one (axum's own, such as 405) count as `other`.
/// It only maps responses (`map_response_with_state`): a `from_fn` middleware boxes every
/// request's future with the request, which cost each parked push-channel long-poll about
/// 2.4 KB (BENCHMARKS.md, "Idle connection memory").
pub async fn count_refusals(State(metrics): State<Arc<Metrics>>, response: Response) -> Response {
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        metrics.refused(
            response
                .extensions()
                .get::<Refusal>()
                .copied()
                .unwrap_or(Refusal::Other),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use invsync_proto::Digest;

    #[test]
    fn the_page_names_every_metric_with_its_type_and_starts_at_zero() {
        let m = Metrics::new();
        let page = m.render(0, 0, 0.0);
        for (name, kind) in [
            ("invsite_reports_accepted_total", "counter"),
            ("invsite_reports_not_applied_total", "counter"),
            ("invsite_checkins_total", "counter"),
            ("invsite_resyncs_requested_total", "counter"),
            ("invsite_resyncs_completed_total", "counter"),
            ("invsite_resync_latency_seconds", "histogram"),
            ("invsite_connected_agents", "gauge"),
            ("invsite_outbox_depth", "gauge"),
            ("invsite_clients_stale", "gauge"),
            ("invsite_outbox_oldest_age_seconds", "gauge"),
            ("invsite_requests_refused_total", "counter"),
            ("invsite_zstd_bodies_decoded_total", "counter"),
            ("invsite_store_write_errors_total", "counter"),
            ("invsite_connections_open", "gauge"),
            ("invsite_connections_refused_total", "counter"),
            ("invsite_accept_errors_total", "counter"),
            ("invsite_request_timeouts_total", "counter"),
        ] {
            assert!(
                page.contains(&format!("# TYPE {name} {kind}\n")),
                "no {name} {kind} in:\n{page}"
            );
        }
        assert!(
            page.contains("invsite_reports_accepted_total{class=\"sw\",kind=\"delta\"} 0\n"),
            "{page}"
        );
        assert!(
            page.contains("invsite_requests_refused_total{reason=\"other\"} 0\n"),
            "{page}"
        );
        assert!(
            page.contains("invsite_connections_refused_total{reason=\"address\"} 0\n"),
            "{page}"
        );
        assert!(
            page.contains("invsite_resync_latency_seconds_count{class=\"hw\"} 0\n"),
            "{page}"
        );
    }

    #[test]
    fn counts_and_latency_show_on_the_page() {
        let m = Metrics::new();
        let hash = Digest([0; 32]);
        m.report(Class::Sw, true, &ReportAck::Accepted { version: 1, hash });
        m.report(Class::Sw, false, &ReportAck::Accepted { version: 2, hash });
        m.report(Class::Sw, false, &ReportAck::Accepted { version: 3, hash });
        m.report(
            Class::Hw,
            false,
            &ReportAck::ResyncRequired { reason: "x".into() },
        );
        m.report(Class::Hw, true, &ReportAck::Duplicate { version: 1, hash });
        m.checkin();
        m.resync_requested(Class::Sw);
        m.resync_completed(Class::Sw, Timestamp(1_000), Timestamp(1_150));
        m.refused(Refusal::Unauthorized);
        let page = m.render(3, 2, 1.5);
        for line in [
            "invsite_reports_accepted_total{class=\"sw\",kind=\"full\"} 1",
            "invsite_reports_accepted_total{class=\"sw\",kind=\"delta\"} 2",
            "invsite_reports_not_applied_total{class=\"hw\",reason=\"resync_required\"} 1",
            "invsite_reports_not_applied_total{class=\"hw\",reason=\"duplicate\"} 1",
            "invsite_checkins_total 1",
            "invsite_resyncs_requested_total{class=\"sw\"} 1",
            "invsite_resyncs_completed_total{class=\"sw\"} 1",
            "invsite_resync_latency_seconds_count{class=\"sw\"} 1",
            // 0.15 s: not in the 0.1 bucket, in the 0.2 one.
            "invsite_resync_latency_seconds_bucket{class=\"sw\",le=\"0.1\"} 0",
            "invsite_resync_latency_seconds_bucket{class=\"sw\",le=\"0.2\"} 1",
            "invsite_connected_agents 3",
            "invsite_outbox_depth 2",
            "invsite_outbox_oldest_age_seconds 1.5",
            "invsite_requests_refused_total{reason=\"unauthorized\"} 1",
        ] {
            assert!(
                page.lines().any(|l| l == line),
                "no line {line:?} in:\n{page}"
            );
        }
    }
}
