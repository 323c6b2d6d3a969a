//! `/metrics` end to end: a real site, a real agent and `invsync`, then the exact counts on the
//! page a Prometheus scrape would read, the page's format, refusals counted by reason, and the
//! connected-agents gauge following a daemon's push channel.

use std::collections::BTreeSet;

use crate::common::*;

/// `GET /metrics` without a token (it needs none), checked for the content type Prometheus
/// expects of the text format.
pub fn scrape(site: &Site) -> String {
    let mut resp = http().get(&format!("{}/metrics", site.url)).call().unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "content type {content_type:?}"
    );
    resp.body_mut().read_to_string().unwrap()
}

/// One sample's value, by its exact name and labels as they appear on the page.
pub fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no sample {series} on the page:\n{page}"))
        .parse()
        .unwrap()
}

/// The Prometheus text format (0.0.4), as far as a scraper relies on it: comments are `# HELP`
/// or `# TYPE`, every other line is `name{label="value",…} value`, and every sample belongs to a
/// family declared by a `# TYPE` line before it (a histogram's `_bucket`, `_sum`, `_count`).
fn check_exposition_format(page: &str) {
    assert!(page.ends_with('\n'), "the page must end with a newline");
    let mut typed = BTreeSet::new();
    for line in page.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let (keyword, name, rest) = (
                words.next().unwrap(),
                words.next().unwrap_or(""),
                words.next().unwrap_or(""),
            );
            assert!(valid_name(name), "bad metric name in {line:?}");
            match keyword {
                "HELP" => {}
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&rest),
                        "bad type in {line:?}"
                    );
                    typed.insert(name.to_string());
                }
                _ => panic!("a comment that is neither HELP nor TYPE: {line:?}"),
            }
            continue;
        }
        assert!(!line.is_empty(), "an empty line on the page");
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        assert!(
            value.parse::<f64>().is_ok(),
            "value {value:?} in {line:?} is not a number"
        );
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                for pair in labels.split(',') {
                    let (key, value) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("bad label {pair:?} in {line:?}"));
                    assert!(
                        valid_name(key) && !key.contains(':'),
                        "bad label name {key:?} in {line:?}"
                    );
                    assert!(
                        value.len() >= 2 && value.starts_with('"') && value.ends_with('"'),
                        "unquoted label value in {line:?}"
                    );
                }
                name
            }
            None => series,
        };
        assert!(valid_name(name), "bad metric name in {line:?}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)));
        assert!(
            typed.contains(name) || family.is_some(),
            "no # TYPE line before {line:?}"
        );
    }
    assert!(!typed.is_empty(), "no # TYPE lines at all");
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[test]
fn metrics_count_reports_resyncs_and_refusals_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();

    // A fresh site: every series there, at zero.
    let page = scrape(&site);
    check_exposition_format(&page);
    assert_eq!(
        sample(
            &page,
            r#"invsite_reports_accepted_total{class="sw",kind="full"}"#
        ),
        0.0
    );
    assert_eq!(sample(&page, "invsite_checkins_total"), 0.0);

    let agent = Agent::enroll(tmp.path(), &site, "debian", "metered");
    // First cycle: the site holds nothing, so one full report per class.
    agent.cycle();
    run_ok("invsync", &["sw", "METERED", "--data-dir", site.data_dir()]);
    // Second cycle: the request arrives with the check-in and a full sw report answers it;
    // hw has not changed, so it costs nothing.
    agent.cycle();
    assert_eq!(site.show("METERED")["requests"][0]["state"], "complete");

    let page = scrape(&site);
    check_exposition_format(&page);
    for (series, expected) in [
        (
            r#"invsite_reports_accepted_total{class="hw",kind="full"}"#,
            1.0,
        ),
        (
            r#"invsite_reports_accepted_total{class="hw",kind="delta"}"#,
            0.0,
        ),
        (
            r#"invsite_reports_accepted_total{class="sw",kind="full"}"#,
            2.0,
        ),
        (
            r#"invsite_reports_accepted_total{class="sw",kind="delta"}"#,
            0.0,
        ),
        (
            r#"invsite_reports_not_applied_total{class="sw",reason="duplicate"}"#,
            0.0,
        ),
        (
            r#"invsite_reports_not_applied_total{class="sw",reason="resync_required"}"#,
            0.0,
        ),
        ("invsite_checkins_total", 2.0),
        (r#"invsite_resyncs_requested_total{class="sw"}"#, 1.0),
        (r#"invsite_resyncs_requested_total{class="hw"}"#, 0.0),
        (r#"invsite_resyncs_completed_total{class="sw"}"#, 1.0),
        (r#"invsite_resyncs_completed_total{class="hw"}"#, 0.0),
        (r#"invsite_resync_latency_seconds_count{class="sw"}"#, 1.0),
        (
            r#"invsite_resync_latency_seconds_bucket{class="sw",le="+Inf"}"#,
            1.0,
        ),
        (r#"invsite_resync_latency_seconds_count{class="hw"}"#, 0.0),
        ("invsite_connected_agents", 0.0),
        ("invsite_outbox_depth", 0.0),
        ("invsite_outbox_oldest_age_seconds", 0.0),
        (
            r#"invsite_requests_refused_total{reason="unauthorized"}"#,
            0.0,
        ),
    ] {
        assert_eq!(
            sample(&page, series),
            expected,
            "{series} on the page:\n{page}"
        );
    }
    // The latency is the time between `invsync` and the second cycle: positive, and well under
    // the time the whole test may take.
    let latency = sample(&page, r#"invsite_resync_latency_seconds_sum{class="sw"}"#);
    assert!(latency > 0.0 && latency < 60.0, "latency sum {latency}");
    // Labels are bounded sets: no client's name or id ever shows.
    assert!(
        !page.contains("METERED") && !page.to_lowercase().contains("metered"),
        "{page}"
    );

    // Refusals, by the reason error.rs gives them: a wrong client token and a wrong admin
    // token are `unauthorized`; axum's own 405 (no ApiError behind it) is `other`.
    let http = http();
    let resp = http
        .post(&format!("{}/cap/v1/checkin", site.url))
        .header("Authorization", "Bearer not-a-token")
        .send_json(serde_json::json!({}))
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .get(&format!("{}/api/v1/clients", site.url))
        .header("Authorization", "Bearer wrong")
        .call()
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .get(&format!("{}/api/v1/clients/NOBODY", site.url))
        .header("Authorization", &format!("Bearer {}", site.admin_token()))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = http
        .get(&format!("{}/cap/v1/checkin", site.url))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 405);
    let page = scrape(&site);
    check_exposition_format(&page);
    assert_eq!(
        sample(
            &page,
            r#"invsite_requests_refused_total{reason="unauthorized"}"#
        ),
        2.0,
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            r#"invsite_requests_refused_total{reason="not_found"}"#
        ),
        1.0,
        "{page}"
    );
    assert_eq!(
        sample(&page, r#"invsite_requests_refused_total{reason="other"}"#),
        1.0,
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            r#"invsite_requests_refused_total{reason="bad_input"}"#
        ),
        0.0,
        "{page}"
    );
    // The refused check-in did not count as a check-in.
    assert_eq!(sample(&page, "invsite_checkins_total"), 2.0);

    // A daemon holds the push channel open: the gauge, read at scrape time, counts it. (Not
    // checked: its fall back to 0 after the daemon stops, which may take the long-poll's whole
    // hold time when the server does not notice the closed connection sooner.)
    let daemon = Daemon::start(&agent);
    wait_until(10, "the daemon's long-poll is counted", || {
        sample(&scrape(&site), "invsite_connected_agents") == 1.0
    });
    daemon.stop();
    site.stop();
}
