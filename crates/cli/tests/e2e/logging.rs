//! The site's log: each report is logged at DEBUG inside the span of the request that carried
//! it (method, path, peer, request id, and the client's id once its key was checked), and
//! never at INFO, so a site's default log does not grow with its fleet's reports.

use std::path::Path;
use std::process::Stdio;

use crate::common::*;

/// Starts `invsite serve` with its stderr in `log`: with `RUST_LOG` set to `filter`, or without
/// `RUST_LOG`, the default filter (`info`) a systemd unit runs with. On the address it served
/// before, if it did, so an enrolled agent finds it again.
fn start_logged(site: &mut Site, log: &Path, filter: Option<&str>) {
    let mut cmd = bin("invsite");
    cmd.args(["serve", "--data-dir", site.data_dir()]);
    if let Some((_, addr)) = site.url.split_once("://") {
        cmd.args(["--listen", addr]);
    }
    cmd.stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    match filter {
        Some(f) => cmd.env("RUST_LOG", f),
        None => cmd.env_remove("RUST_LOG"),
    };
    let mut child = cmd.spawn().unwrap();
    let mut lines = Lines::of(child.stdout.take().unwrap());
    let line = lines
        .next_within(60)
        .unwrap_or_else(|| panic!("invsite serve printed no address within 60 s"));
    let url = line.trim().rsplit(' ').next().unwrap_or_default();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "unexpected first line from invsite serve: {line:?}"
    );
    site.url = url.to_string();
    site.child = Some(child);
}

/// The lines of the site's report handler that say a report was stored.
fn stored_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("invsync_site::api::cap::report") && l.contains("Stored a report."))
        .collect()
}

#[test]
fn a_report_is_logged_at_debug_in_its_request_span_and_not_at_info() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "L01");

    // RUST_LOG=debug: each stored report is one DEBUG line inside its request's span.
    let debug_log = tmp.path().join("debug.log");
    start_logged(&mut site, &debug_log, Some("debug"));
    let agent = Agent::enroll(tmp.path(), &site, "debian", "web1");
    agent.cycle();
    let client_id = site.show("WEB1")["id"].as_str().unwrap().to_string();
    let text = std::fs::read_to_string(&debug_log).unwrap();
    let stored = stored_lines(&text);
    // The first cycle sends a full report of each class.
    assert_eq!(stored.len(), 2, "{text}");
    for line in &stored {
        assert!(line.contains(" DEBUG "), "not at DEBUG: {line}");
        let span = line
            .split_once("request{")
            .and_then(|(_, rest)| rest.split_once("}:"))
            .map(|(fields, _)| fields)
            .unwrap_or_else(|| panic!("not inside a request span: {line}"));
        assert!(
            span.starts_with("method=POST path=/cap/v1/report peer=127.0.0.1 id="),
            "span fields {span:?} in {line}"
        );
        assert!(
            span.ends_with(&format!(" client_id={client_id}")),
            "span fields {span:?} in {line}"
        );
        assert!(line.contains("client=WEB1"), "{line}");
    }
    // Two reports, two requests: each span has its own id.
    let ids: std::collections::BTreeSet<&str> = stored
        .iter()
        .map(|l| l.split(" id=").nth(1).unwrap().split(' ').next().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{stored:?}");
    site.stop();

    // The default filter: the server logs at INFO, and a stored report says nothing.
    let info_log = tmp.path().join("info.log");
    start_logged(&mut site, &info_log, None);
    agent.add_package("logged-nowhere", "1.0");
    agent.cycle();
    assert_eq!(
        site.show("WEB1")["sw"]["version"],
        2,
        "the delta was stored"
    );
    site.stop();
    let text = std::fs::read_to_string(&info_log).unwrap();
    assert!(
        text.contains(" INFO ") && text.contains("Serving."),
        "{text}"
    );
    assert!(stored_lines(&text).is_empty(), "{text}");
    assert!(!text.contains(" DEBUG "), "{text}");
    assert!(!text.contains("request{"), "{text}");
}
