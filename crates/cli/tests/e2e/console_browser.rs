//! The web console in a real browser: headless Chromium driven over the W3C WebDriver protocol
//! by chromedriver (Debian's `chromium` and `chromium-driver`, installed by
//! `scripts/install-browser.sh`, which `.ci/run` calls). The WebDriver calls are a few JSON
//! requests made with ureq, like every other HTTP client here: fantoccini's rustls option
//! pulls in aws-lc-rs, which this workspace keeps out of Cargo.lock.
//!
//! It logs in, finds a client, presses "Resync software", runs an agent cycle and waits for the
//! request to show complete; the client page's screenshot is saved to
//! `target/test-artifacts/console-client.png`. A second test has an admin add a user on the
//! users page, who logs in with its token, sees what its role allows and reads the audit page.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Agent, Site};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The key W3C WebDriver names element references by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session in it; both end when dropped.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: ureq::Agent,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        for (path, what) in [(CHROMEDRIVER, "chromedriver"), (CHROMIUM, "chromium")] {
            assert!(
                Path::new(path).exists(),
                "{what} is not installed at {path}: run scripts/install-browser.sh (apt-get install chromium chromium-driver) before this test"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http
                .get(format!("{base}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok());
            if ready.is_some_and(|v| v["value"]["ready"] == true) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--no-first-run".to_string(),
            // The machine's network is closed; without these Chromium waits on lookups.
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--window-size=1280,1000".to_string(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        b
    }

    /// One WebDriver command; its `value`, or a panic naming the error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let resp = match (method, body) {
            ("GET", _) => self.http.get(&url).call(),
            ("DELETE", _) => self.http.delete(&url).call(),
            (_, body) => self
                .http
                .post(&url)
                .send_json(body.unwrap_or_else(|| json!({}))),
        };
        let mut resp = resp.unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = resp.status().as_u16();
        let v: Value = resp.body_mut().read_json().unwrap();
        assert!(
            status < 400,
            "WebDriver {method} {path} answered {status}: {v}"
        );
        v["value"].clone()
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    fn go(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({ "url": url })));
    }

    fn source(&self) -> String {
        self.call("GET", &self.s("/source"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The element a CSS selector finds, waiting for it (pages load and htmx swaps).
    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let resp = self
                .http
                .post(format!("{}{}", self.base, self.s("/element")))
                .send_json(json!({"using": "css selector", "value": css}));
            // 404 "no such element" while the page is still loading: try again.
            if let Ok(mut r) = resp.map_err(drop).and_then(|r| {
                if r.status().as_u16() == 200 {
                    Ok(r)
                } else {
                    Err(())
                }
            }) {
                let v: Value = r.body_mut().read_json().unwrap();
                return v["value"][ELEMENT]
                    .as_str()
                    .unwrap_or_else(|| panic!("no element reference in {v}"))
                    .to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no element {css} on the page: {}",
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn click(&self, css: &str) {
        let id = self.find(css);
        self.call(
            "POST",
            &self.s(&format!("/element/{id}/click")),
            Some(json!({})),
        );
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call(
            "POST",
            &self.s(&format!("/element/{id}/value")),
            Some(json!({ "text": text })),
        );
    }

    /// Waits until the page's source contains `text`, reloading it first when `reload`.
    fn wait_for(&self, text: &str, reload: bool, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if reload {
                self.call("POST", &self.s("/refresh"), Some(json!({})));
            }
            if self.source().contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {text:?}: {}",
                self.source()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn screenshot(&self) -> Vec<u8> {
        let b64 = self.call("GET", &self.s("/screenshot"), None);
        base64_decode(b64.as_str().expect("a screenshot is a base64 string"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .http
                .delete(format!("{}/session/{}", self.base, self.session))
                .call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (with padding), as WebDriver sends screenshots; small enough not to be a
/// dependency.
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let n = data
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | (value(c) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..data.len()]);
    }
    out
}

/// `target/test-artifacts/`, beside the build output.
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn browser_logs_in_resyncs_software_and_sees_it_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "web01");
    let other = Agent::enroll(tmp.path(), &site, "debian", "db01");
    agent.cycle();
    other.cycle();

    let b = Browser::start();
    b.go(&format!("{}/console/", site.url));
    b.type_into("#token", &site.admin_token());
    b.click("#login");
    b.wait_for("Clients held", false, 15);

    b.go(&format!("{}/console/clients", site.url));
    b.wait_for("2 clients", false, 15);
    // Typing is enough: htmx fetches the list and swaps the table in place.
    b.type_into("#search", "web");
    b.wait_for("1 clients", false, 15);
    assert!(!b.source().contains("DB01"), "the search left DB01 out");
    b.click("a.client");
    b.wait_for("Resync software", false, 15);
    b.click("#resync-sw");
    b.wait_for("Queued software resync request", false, 15);
    assert_eq!(site.show("WEB01")["requests"][0]["state"], "pending");

    agent.cycle();
    b.wait_for(r#"<td class="state">complete</td>"#, true, 20);
    assert_eq!(site.show("WEB01")["requests"][0]["state"], "complete");

    let png = b.screenshot();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "not a PNG screenshot ({} bytes)",
        png.len()
    );
    let path = artifacts_dir().join("console-client.png");
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot of the client page: {}", path.display());
    drop(b);
    site.stop();
}

#[test]
fn browser_admin_adds_a_user_who_sees_its_role_and_the_audit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "web01");
    agent.cycle();

    // The site's admin token is an admin: it has the users page and adds an operator.
    let admin = Browser::start();
    admin.go(&format!("{}/console/", site.url));
    admin.type_into("#token", &site.admin_token());
    admin.click("#login");
    admin.wait_for("Clients held", false, 15);
    admin.click("#nav-users");
    admin.wait_for("Add a user", false, 15);
    admin.type_into("#new-name", "otto");
    admin.type_into("#new-expires", "30d");
    admin.click("#add");
    admin.wait_for(r#"<code id="issued-token">invu.otto."#, false, 15);
    let source = admin.source();
    let token = source
        .split(r#"<code id="issued-token">"#)
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap()
        .to_string();
    assert!(
        source.contains(r#"<td class="role">operator</td>"#),
        "{source}"
    );

    // The operator logs in with its token, sees the buttons but no users page, and queues.
    let op = Browser::start();
    op.go(&format!("{}/console/", site.url));
    op.type_into("#token", &token);
    op.click("#login");
    op.wait_for("otto (operator)", false, 15);
    assert!(!op.source().contains(r#"id="nav-users""#));
    op.go(&format!("{}/console/clients/WEB01", site.url));
    op.click("#resync-hw");
    op.wait_for("Queued hardware resync request", false, 15);

    // The audit page shows both, under their names.
    op.go(&format!("{}/console/audit", site.url));
    op.wait_for(r#"<td class="actor">otto</td>"#, false, 15);
    let audit = op.source();
    for action in ["login", "request", "user_add"] {
        assert!(
            audit.contains(&format!(r#"<td class="action">{action}</td>"#)),
            "{action}: {audit}"
        );
    }
    assert!(
        audit.contains(r#"<td class="actor">site-token</td>"#),
        "{audit}"
    );
    drop(op);
    drop(admin);
    site.stop();
}

#[test]
fn browser_filters_stale_clients_and_deletes_one_after_confirming() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    let dir = site.data_dir().to_string();
    crate::common::run_ok(
        "invsite",
        &["config", "--stale-after", "10s", "--data-dir", &dir],
    );
    site.start();
    let quiet = Agent::enroll(tmp.path(), &site, "debian", "web1");
    quiet.cycle();
    let busy = Agent::enroll(tmp.path(), &site, "debian", "web2");
    busy.cycle();

    let b = Browser::start();
    b.go(&format!("{}/console/", site.url));
    b.type_into("#token", &site.admin_token());
    b.click("#login");
    b.wait_for("Clients held", false, 15);
    // WEB1 says nothing for longer than --stale-after; WEB2 checks in just before the list
    // (the window is wide enough for a loaded machine to show the list within it).
    std::thread::sleep(Duration::from_millis(10_500));
    busy.cycle();

    // The "Stale only" box lists WEB1 alone, marked stale.
    b.go(&format!("{}/console/clients", site.url));
    b.wait_for("2 clients", false, 15);
    b.click("#stale");
    b.click("#search-button");
    b.wait_for("1 clients", false, 15);
    let list = b.source();
    assert!(list.contains("WEB1") && !list.contains("WEB2"), "{list}");
    assert!(
        list.contains(r#"<span class="stale">stale</span>"#),
        "{list}"
    );

    // The client page's Delete… asks first; only the confirmation deletes.
    b.go(&format!("{}/console/clients/WEB1", site.url));
    b.click("#delete");
    b.wait_for("Delete WEB1", false, 15);
    assert_eq!(
        site.show("WEB1")["name"],
        "WEB1",
        "not deleted before confirming"
    );
    b.click("#confirm-delete");
    b.wait_for("Deleted WEB1", false, 15);
    let clients =
        crate::common::run_ok_stdout("invsite", &["clients", "--json", "--data-dir", &dir]);
    let clients: Value = serde_json::from_str(&clients).unwrap();
    let names: Vec<&str> = clients
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["WEB2"]);
    drop(b);
    site.stop();
}
