//! Versions ordered by their own source's rules through the whole path (issue 19): real
//! agents on Alpine and Debian fixture roots report one package name from apk and dpkg, and
//! the console's software pages order and range them by each package's source.

use crate::common::{Agent, Site};
use crate::console::Console;

/// Installs `name` at `version` in an Alpine fixture root's apk database.
fn add_apk(agent: &Agent, name: &str, version: &str) {
    let path = agent.root.join("lib/apk/db/installed");
    let mut text = std::fs::read_to_string(&path).unwrap();
    if !text.ends_with("\n\n") {
        text.push('\n');
    }
    text.push_str(&format!(
        "C:Q1fixture=\nP:{name}\nV:{version}\nA:aarch64\nI:4096\nT:test package\n\n"
    ));
    std::fs::write(&path, text).unwrap();
}

#[test]
fn console_orders_and_ranges_versions_by_their_source() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let rc = Agent::enroll(tmp.path(), &site, "alpine", "alp01");
    let release = Agent::enroll(tmp.path(), &site, "alpine", "alp02");
    let deb = Agent::enroll(tmp.path(), &site, "debian", "deb01");
    add_apk(&rc, "tool", "1.0_rc1");
    add_apk(&release, "tool", "1.0");
    deb.add_package("tool", "1.0^git1");
    for a in [&rc, &release, &deb] {
        a.cycle();
    }
    let mut c = Console::new(&site);
    assert_eq!(c.login(&site.admin_token()).status, 303);

    // The package list: dpkg's versions first, then apk's, each in its own order: apk's
    // release candidate before its release (in dpkg's order `_rc1` would be above `1.0`).
    let list = c.get("/console/software?q=tool").body;
    let at = |v: &str| {
        list.find(&format!(">{v}</a> (1)"))
            .unwrap_or_else(|| panic!("{v} missing: {list}"))
    };
    assert!(at("1.0^git1") < at("1.0_rc1"), "{list}");
    assert!(at("1.0_rc1") < at("1.0"), "{list}");

    // A range compares each package by its source's rules: below 1.0 holds apk's 1.0_rc1,
    // not apk's 1.0 and not dpkg's 1.0^git1 (`^` is above the end in dpkg's order).
    let below = c.get("/console/software/tool?version=%3C1.0");
    assert_eq!(below.status, 200, "{}", below.body);
    assert!(
        below.body.contains("1 client has it in this range"),
        "{}",
        below.body
    );
    assert!(
        below.body.contains(">ALP01</a>")
            && !below.body.contains(">ALP02</a>")
            && !below.body.contains(">DEB01</a>"),
        "{}",
        below.body
    );
    assert!(
        below.body.contains(r#"<td class="version">1.0_rc1</td>"#),
        "{}",
        below.body
    );
    site.stop();
}
