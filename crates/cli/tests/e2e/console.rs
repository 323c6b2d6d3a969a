//! The web console over plain HTTP (no redirects followed): pages need a session, the login
//! refuses a wrong token and a form from elsewhere, the session cookie is HttpOnly and
//! SameSite=Strict, every POST needs the session's CSRF token, the buttons queue exactly what
//! `invsync`/`setevnt` queue, a client of a child site is refused with the ownership
//! module's explanation and nothing stored, and the software pages list packages across
//! clients, narrow them by version range and export every row under the console's session; the
//! client page, like `invsite show`, groups a client's items by kind.

use invsync_proto::wire::{PackagePage, SoftwarePage};
use serde_json::Value;

use crate::common::{Agent, Site, copy_dir, http, run_ok_stdout, try_show, wait_until};

/// A browser's view of one site's console: its cookies and the HTTP client.
pub struct Console {
    base: String,
    agent: ureq::Agent,
    /// `name=value` pairs sent back as the `Cookie` header.
    cookies: Vec<(String, String)>,
}

/// What the site answered: status, `Location`, `Set-Cookie` headers, body.
pub struct Answer {
    pub status: u16,
    pub location: String,
    pub content_type: String,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl Console {
    pub fn new(site: &Site) -> Console {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(std::time::Duration::from_secs(10)))
            .build()
            .into();
        Console {
            base: site.url.clone(),
            agent,
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Keeps cookies as a browser would: a new value replaces the old, Max-Age=0 deletes.
    fn answer(&mut self, mut resp: ureq::http::Response<ureq::Body>) -> Answer {
        let set_cookies: Vec<String> = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        for c in &set_cookies {
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !attrs.contains("Max-Age=0") {
                self.cookies.push((k.to_string(), v.to_string()));
            }
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        let (location, content_type) = (header("location"), header("content-type"));
        let status = resp.status().as_u16();
        Answer {
            status,
            location,
            content_type,
            set_cookies,
            body: resp.body_mut().read_to_string().unwrap(),
        }
    }

    pub fn get(&mut self, path: &str) -> Answer {
        let resp = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .call()
            .unwrap();
        self.answer(resp)
    }

    pub fn post(&mut self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Answer {
        let mut req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send_form(form.iter().copied()).unwrap();
        self.answer(resp)
    }

    /// Opens the login page and posts `token` with the form's CSRF value.
    pub fn login(&mut self, token: &str) -> Answer {
        let page = self.get("/console/login");
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf = csrf_of(&page.body);
        self.post("/console/login", &[("csrf", &csrf), ("token", token)], &[])
    }

    pub fn has_session(&self) -> bool {
        self.cookies.iter().any(|(k, _)| k == "invsite_session")
    }
}

/// The CSRF token in a page's first hidden `csrf` field.
pub fn csrf_of(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no csrf field in {html}"))
        + marker.len();
    html[at..].split('"').next().unwrap().to_string()
}

fn requests(site: &Site, name: &str) -> Vec<Value> {
    site.show(name)["requests"].as_array().unwrap().clone()
}

#[test]
fn console_needs_a_session_a_csrf_token_and_queues_like_invsync() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "web01");
    agent.cycle();
    let token = site.admin_token();
    let mut c = Console::new(&site);

    // Without a session every page, and every button, sends the browser to the login page.
    assert_eq!(c.get("/").location, "/console/");
    for path in ["/console/", "/console/clients", "/console/clients/WEB01"] {
        let a = c.get(path);
        assert_eq!(
            (a.status, a.location.as_str()),
            (303, "/console/login"),
            "{path}"
        );
    }
    let a = c.post("/console/clients/WEB01/resync-sw", &[("csrf", "x")], &[]);
    assert_eq!((a.status, a.location.as_str()), (303, "/console/login"));
    // htmx (search while typing) is told to go to the login page instead of swapping it in.
    let resp = http()
        .get(format!("{}/console/clients?q=w", site.url))
        .header("HX-Request", "true")
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("hx-redirect").unwrap(), "/console/login");
    assert!(requests(&site, "WEB01").is_empty());

    // A wrong token is refused and starts no session.
    let a = c.login("not-the-token");
    assert_eq!(a.status, 403);
    assert!(a.body.contains("wrong API token"), "{}", a.body);
    assert!(
        !a.set_cookies
            .iter()
            .any(|s| s.starts_with("invsite_session=")),
        "{:?}",
        a.set_cookies
    );
    assert!(!c.has_session());

    // A login form posted from elsewhere (no login cookie, so no matching CSRF value) is
    // refused even with the right token.
    let mut other = Console::new(&site);
    let a = other.post(
        "/console/login",
        &[("csrf", "0123"), ("token", &token)],
        &[],
    );
    assert_eq!(a.status, 403);
    assert!(a.body.contains("CSRF"), "{}", a.body);
    assert!(!other.has_session());

    // The right token: a session cookie a script cannot read and no other site's form sends.
    let a = c.login(&token);
    assert_eq!(
        (a.status, a.location.as_str()),
        (303, "/console/"),
        "{}",
        a.body
    );
    let cookie = a
        .set_cookies
        .iter()
        .find(|s| s.starts_with("invsite_session="))
        .expect("a session cookie");
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("invsite_session=");
    assert_eq!(value.len(), 64, "256 random bits in hex: {cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: a Secure cookie would never come back"
    );

    let overview = c.get("/console/");
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("Site S01"), "{}", overview.body);
    let list = c.get("/console/clients?q=web&sort=last_seen&desc=1");
    assert_eq!(list.status, 200);
    assert!(
        list.body.contains("WEB01") && list.body.contains("1 clients"),
        "{}",
        list.body
    );
    assert!(
        c.get("/console/clients?q=nomatch")
            .body
            .contains("0 clients")
    );
    let page = c.get("/console/clients/WEB01?filter=bash");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("dpkg/bash/"),
        "the filtered package list shows bash"
    );
    assert!(
        !page.body.contains("dpkg/gzip/"),
        "and not what the filter leaves out"
    );
    let csrf = csrf_of(&page.body);

    // A button without the session's CSRF token, or with another, is refused; nothing is stored.
    let a = c.post("/console/clients/WEB01/resync-sw", &[], &[]);
    assert_eq!(a.status, 403);
    assert!(a.body.contains("CSRF token"), "{}", a.body);
    let a = c.post(
        "/console/clients/WEB01/resync-sw",
        &[("csrf", &"0".repeat(64))],
        &[],
    );
    assert_eq!(a.status, 403);
    assert!(
        requests(&site, "WEB01").is_empty(),
        "a refused form stores nothing"
    );

    // With it: the same request `invsync sw WEB01` makes, then back to the page with a message.
    let a = c.post("/console/clients/WEB01/resync-sw", &[("csrf", &csrf)], &[]);
    assert_eq!(
        (a.status, a.location.as_str()),
        (303, "/console/clients/WEB01"),
        "{}",
        a.body
    );
    let stored = requests(&site, "WEB01");
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0]["class"].as_str(), stored[0]["state"].as_str()),
        (Some("sw"), Some("pending"))
    );
    let page = c.get("/console/clients/WEB01");
    assert!(
        page.body.contains("Queued software resync request"),
        "{}",
        page.body
    );
    let overview = c.get("/console/");
    assert!(
        overview
            .body
            .contains("Resync requests pending</th><td>1</td>"),
        "{}",
        overview.body
    );
    assert!(
        overview
            .body
            .contains(r#"<a href="/console/clients/WEB01">WEB01</a>"#),
        "listed as pending"
    );
    // htmx sends the token in a header instead of the form.
    let a = c.post(
        "/console/clients/WEB01/cycle",
        &[],
        &[("X-CSRF-Token", &csrf)],
    );
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(site.show("WEB01")["events"][0]["event"], "cycle");

    agent.cycle();
    wait_until(10, "the console shows the request complete", || {
        c.get("/console/clients/WEB01")
            .body
            .contains(r#"<td class="state">complete</td>"#)
    });

    // The static files come from the binary, cached for long.
    let js = c.get("/console/assets/htmx.min.js");
    assert_eq!(js.status, 200);
    assert!(js.body.contains("htmx"));

    // Logging out ends the session at the site, not only in the browser.
    let stolen = c.cookies.clone();
    let a = c.post("/console/logout", &[("csrf", &csrf)], &[]);
    assert_eq!((a.status, a.location.as_str()), (303, "/console/login"));
    c.cookies = stolen;
    assert_eq!(c.get("/console/").status, 303);
    site.stop();
}

#[test]
fn console_refuses_a_child_sites_client_with_the_owner_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut parent = Site::init(tmp.path(), "P01");
    parent.start();
    let mut child = Site::init_child(tmp.path(), "C01", &parent);
    child.start();
    let agent = Agent::enroll(tmp.path(), &child, "debian", "db01");
    agent.cycle();
    wait_until(15, "the parent holds DB01", || {
        try_show(&parent, "DB01", &[]).is_some()
    });

    let mut c = Console::new(&parent);
    assert_eq!(c.login(&parent.admin_token()).status, 303);
    let list = c.get("/console/clients?q=db01");
    assert!(
        list.body.contains("/console/clients/DB01?site=C01"),
        "{}",
        list.body
    );
    let page = c.get("/console/clients/DB01?site=C01");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("a site below this one"));
    let csrf = csrf_of(&page.body);

    for action in ["resync-sw", "resync-hw", "cycle"] {
        let a = c.post(
            &format!("/console/clients/DB01/{action}"),
            &[("csrf", &csrf), ("site", "C01")],
            &[],
        );
        assert_eq!(
            (a.status, a.location.as_str()),
            (303, "/console/clients/DB01?site=C01"),
            "{}",
            a.body
        );
        let page = c.get("/console/clients/DB01?site=C01");
        // The ownership module's sentence, as `invsync`/`setevnt` print it.
        assert!(
            page.body.contains("belongs to site C01"),
            "{action}: {}",
            page.body
        );
        assert!(page.body.contains("not to this site P01"), "{action}");
        assert!(page.body.contains("run it on the owning site"), "{action}");
    }
    let held = try_show(&parent, "DB01", &[]).unwrap();
    assert!(held["requests"].as_array().unwrap().is_empty(), "{held}");
    assert!(held["events"].as_array().unwrap().is_empty(), "{held}");
    assert!(
        child.show("DB01")["requests"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    child.stop();
    parent.stop();
}

#[test]
fn console_software_lists_packages_across_clients_filters_versions_and_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    // Three clients of the same fixture whose software differs: libssl3 in two versions on
    // two of them and not on the third, and sixty extra packages on one, so the package list
    // has a second page the exports must still hold.
    let web01 = Agent::enroll(tmp.path(), &site, "debian", "web01");
    let web02 = Agent::enroll(tmp.path(), &site, "debian", "web02");
    let db01 = Agent::enroll(tmp.path(), &site, "debian", "db01");
    web02.set_version("libssl3", "3.1.4-1");
    db01.remove_package("libssl3");
    for i in 0..60 {
        db01.add_package(&format!("zz-extra{i:02}"), "1.0-1");
    }
    for a in [&web01, &web02, &db01] {
        a.cycle();
    }
    let web01_id = site.show("WEB01")["id"].as_str().unwrap().to_string();

    // Without a session no page or export answers anything but the way to the login page.
    let mut anon = Console::new(&site);
    for path in [
        "/console/software",
        "/console/software?q=libssl",
        "/console/software.csv",
        "/console/software.json?q=libssl",
        "/console/software/libssl3",
        "/console/software/libssl3?version=%3E%3D3.0",
        "/console/software/libssl3?version=%3E%3D",
        "/console/software/libssl3/export.csv",
        "/console/software/libssl3/export.json",
    ] {
        let a = anon.get(path);
        assert_eq!(
            (a.status, a.location.as_str()),
            (303, "/console/login"),
            "{path}"
        );
        assert!(
            !a.body.contains("libssl3") && !a.body.contains("WEB01"),
            "{path} leaks: {}",
            a.body
        );
    }

    let mut c = Console::new(&site);
    assert_eq!(c.login(&site.admin_token()).status, 303);
    assert!(
        c.get("/console/")
            .body
            .contains(r#"<a href="/console/software">Software</a>"#),
        "in the navigation"
    );

    // The package list: client counts, and each version with its own.
    let list = c.get("/console/software?q=LIBSSL");
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("1 packages"), "{}", list.body);
    assert!(
        list.body.contains(r#"<a href="/console/software/libssl3" class="package">libssl3</a></td><td class="count">2</td>"#),
        "{}",
        list.body
    );
    for version in ["3.0.19-1~deb12u2</a> (1)", "3.1.4-1</a> (1)"] {
        assert!(list.body.contains(version), "{version}: {}", list.body);
    }
    let bash = c.get("/console/software?q=bash").body;
    assert!(
        bash.contains(r#"class="package">bash</a></td><td class="count">3</td>"#),
        "{bash}"
    );
    // 50 packages a page; the next page holds the rest.
    let first = c.get("/console/software?q=zz-extra").body;
    assert!(first.contains("60 packages; 1–50 shown"), "{first}");
    assert!(
        first.contains("zz-extra49<") && !first.contains("zz-extra50<"),
        "{first}"
    );
    assert!(
        first.contains(r#"href="/console/software?q=zz-extra&#38;offset=50" rel="next""#),
        "{first}"
    );
    let second = c.get("/console/software?q=zz-extra&offset=50").body;
    assert!(
        second.contains("51–60 shown") && second.contains("zz-extra59<"),
        "{second}"
    );

    // One package: the clients having it, each linking to its page.
    let page = c.get("/console/software/libssl3");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("2 clients have it"), "{}", page.body);
    assert!(
        page.body
            .contains(r#"<a href="/console/clients/WEB01" class="client">WEB01</a>"#),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(r#"<a href="/console/clients/WEB02" class="client">WEB02</a>"#),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("DB01"),
        "DB01 has no libssl3: {}",
        page.body
    );
    // A version range narrows them, in dpkg's order.
    let narrow = c.get("/console/software/libssl3?version=%3E%3D3.0%2C%3C3.1");
    assert_eq!(narrow.status, 200, "{}", narrow.body);
    assert!(
        narrow.body.contains("1 client has it in this range"),
        "{}",
        narrow.body
    );
    assert!(
        narrow.body.contains(">WEB01</a>") && !narrow.body.contains(">WEB02</a>"),
        "{}",
        narrow.body
    );
    assert!(
        narrow
            .body
            .contains(r#"<td class="version">3.0.19-1~deb12u2</td>"#),
        "{}",
        narrow.body
    );
    let newer = c
        .get("/console/software/libssl3?version=%3E3.0.19-1~deb12u2")
        .body;
    assert!(
        newer.contains(">WEB02</a>") && !newer.contains(">WEB01</a>"),
        "{newer}"
    );
    // A malformed range: 400, the parser's sentence, the form still holding what was typed.
    let bad = c.get("/console/software/libssl3?version=%3E%3D");
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("names no version"), "{}", bad.body);
    assert!(
        bad.body
            .contains(r#"name="version" id="version" value="&#62;=""#),
        "{}",
        bad.body
    );
    assert!(!bad.body.contains(">WEB01</a>"), "no list beside the error");
    let bad = c.get("/console/software/libssl3/export.csv?version=1%202");
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("is not a version"), "{}", bad.body);

    // Exports: the same CSV as the admin API, every row, with the page's filter.
    let csv = c.get("/console/software/libssl3/export.csv?version=%3E%3D3.0%2C%3C3.1");
    assert_eq!(
        (csv.status, csv.content_type.as_str()),
        (200, "text/csv; charset=utf-8"),
        "{}",
        csv.body
    );
    assert_eq!(
        csv.body,
        format!(
            "client,client_id,site,name,version,arch,source\r\nWEB01,{web01_id},S01,libssl3,3.0.19-1~deb12u2,amd64,dpkg\r\n"
        )
    );
    let json = c.get("/console/software/libssl3/export.json");
    assert_eq!(
        (json.status, json.content_type.as_str()),
        (200, "application/json"),
        "{}",
        json.body
    );
    let holders: SoftwarePage =
        serde_json::from_str(&json.body).unwrap_or_else(|e| panic!("{e}: {}", json.body));
    let rows: Vec<(&str, &str)> = holders
        .holders
        .iter()
        .map(|h| (h.client.as_str(), h.version.as_str()))
        .collect();
    assert_eq!(
        (holders.total, rows),
        (2, vec![("WEB01", "3.0.19-1~deb12u2"), ("WEB02", "3.1.4-1")])
    );
    let csv = c.get("/console/software.csv?q=libssl");
    assert_eq!(
        csv.body,
        "name,clients,version,version_clients\r\nlibssl3,2,3.0.19-1~deb12u2,1\r\nlibssl3,2,3.1.4-1,1\r\n"
    );
    let all = c.get("/console/software.csv?q=zz-extra");
    assert_eq!(
        all.body.lines().count(),
        61,
        "a header and every package, not one page: {}",
        all.body
    );
    let json = c.get("/console/software.json?q=zz-extra");
    let packages: PackagePage =
        serde_json::from_str(&json.body).unwrap_or_else(|e| panic!("{e}: {}", json.body));
    assert_eq!((packages.total, packages.packages.len()), (60, 60));
    assert_eq!(packages.packages[0].clients, 1);
    // The page's export links carry its filter.
    assert!(
        narrow
            .body
            .contains(r#"href="/console/software/libssl3/export.csv?version=%3E%3D3.0%2C%3C3.1""#),
        "{}",
        narrow.body
    );
    assert!(
        list.body
            .contains(r#"href="/console/software.json?q=LIBSSL""#),
        "{}",
        list.body
    );
    site.stop();
}

/// A laptop's items (the `debian` fixture with the `laptop` fixture's devices and the `desktop`
/// fixture's snaps, flatpaks and pip installs): `invsite show` lists the hardware under kind
/// headings in the fixed order and counts the software per source; the console's client page
/// has a section per kind, in the same order, and one per source.
#[test]
fn show_and_the_client_page_group_items_by_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "lap01");
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    copy_dir(&fixtures.join("laptop"), &agent.root);
    for part in ["snap", "usr/local", "var/lib/flatpak"] {
        copy_dir(&fixtures.join("desktop").join(part), &agent.root.join(part));
    }
    agent.cycle();
    let hw_items = site.show("LAP01")["hw"]["items"].as_object().unwrap().len();
    let kinds = [
        "System",
        "CPU",
        "Memory",
        "Disks",
        "Filesystems",
        "Network",
        "PCI",
        "Graphics",
        "USB",
        "Monitors",
        "Batteries",
    ];

    // `invsite show`: each kind's heading with its count, then its items, one kind after another.
    let text = run_ok_stdout("invsite", &["show", "LAP01", "--data-dir", site.data_dir()]);
    let hw: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("hardware:"))
        .skip(2)
        .take_while(|l| l.starts_with("    "))
        .collect();
    let headings: Vec<&str> = hw
        .iter()
        .filter(|l| !l.starts_with("      "))
        .map(|l| l.trim().split(" (").next().unwrap())
        .collect();
    assert_eq!(headings, kinds, "{text}");
    assert_eq!(
        hw.len() - headings.len(),
        hw_items,
        "every item listed once: {text}"
    );
    let under = |heading: &str| -> Vec<&str> {
        hw.iter()
            .skip_while(|l| l.trim().split(" (").next() != Some(heading))
            .skip(1)
            .take_while(|l| l.starts_with("      "))
            .map(|l| l.trim().split(": ").next().unwrap())
            .collect()
    };
    assert_eq!(under("System"), ["bios", "os", "system", "virt"], "{text}");
    assert_eq!(under("Batteries"), ["battery/BAT0"], "{text}");
    assert_eq!(
        under("Monitors"),
        ["monitor/card0-HDMI-A-1", "monitor/card0-eDP-1"],
        "{text}"
    );
    assert!(under("PCI").iter().all(|k| k.starts_with("pci/")), "{text}");
    assert!(
        under("Graphics").iter().all(|k| k.starts_with("gpu/")),
        "{text}"
    );
    let by_source = text
        .lines()
        .skip_while(|l| !l.starts_with("software:"))
        .find_map(|l| l.strip_prefix("    by source: "))
        .unwrap_or_else(|| panic!("no count per source: {text}"));
    let sources: Vec<&str> = by_source
        .split(", ")
        .map(|s| s.split(' ').next().unwrap())
        .collect();
    assert_eq!(sources, ["dpkg", "snap", "flatpak", "pip"], "{text}");
    assert!(by_source.ends_with(", pip 2"), "{text}");

    // The console: a section per kind, in the same order, with an index of the kinds and counts.
    let mut c = Console::new(&site);
    c.login(&site.admin_token());
    let page = c.get("/console/clients/LAP01");
    assert_eq!(page.status, 200);
    let body = &page.body;
    let mut at = 0;
    for kind in kinds {
        let slug = kind.to_lowercase();
        let heading = format!(r#"<h3 id="hw-{slug}">{kind} "#);
        let found = body[at..]
            .find(&heading)
            .unwrap_or_else(|| panic!("no {heading} after the previous kind in {body}"));
        at += found + heading.len();
        assert!(
            body.contains(&format!(r##"<a href="#hw-{slug}">{kind} ("##)),
            "{kind} is in the index: {body}"
        );
    }
    assert!(!body.contains(r#"id="hw-other""#), "no empty kind: {body}");
    let battery = body.find("<td>battery/BAT0</td>").unwrap();
    assert!(
        body[..battery]
            .rfind("<h3 ")
            .map(|h| &body[h..battery])
            .unwrap()
            .starts_with(r#"<h3 id="hw-batteries">"#)
    );
    let mut at = 0;
    for source in ["dpkg", "snap", "flatpak", "pip"] {
        let heading = format!(r#"<h3 id="sw-{source}">{source} "#);
        at += body[at..]
            .find(&heading)
            .unwrap_or_else(|| panic!("no {heading} after the previous source in {body}"));
    }
    assert!(
        body.contains(r##"<a href="#sw-pip">pip (2)</a>"##),
        "{body}"
    );
    // Filtered, the sections hold only what matches, and sources with nothing are left out.
    let page = c.get("/console/clients/LAP01?filter=requests");
    assert!(page.body.contains(r#"<h3 id="sw-pip">"#), "{}", page.body);
    assert!(!page.body.contains(r#"<h3 id="sw-dpkg">"#), "{}", page.body);
    assert!(page.body.contains("1 of "), "{}", page.body);
    site.stop();
}

/// `invsite user add NAME --role ROLE`: the token it printed.
fn user_token(site: &Site, name: &str, role: &str) -> String {
    run_ok_stdout(
        "invsite",
        &[
            "user",
            "add",
            name,
            "--role",
            role,
            "--data-dir",
            site.data_dir(),
        ],
    )
    .trim()
    .to_string()
}

#[test]
fn console_shows_each_role_what_it_may_do_and_refuses_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "web01");
    agent.cycle();
    let viewer = user_token(&site, "vic", "viewer");
    let operator = user_token(&site, "otto", "operator");
    let admin = user_token(&site, "ada", "admin");

    // A viewer logs in with its own token, reads, sees no buttons, and is refused server-side.
    let mut v = Console::new(&site);
    let a = v.login(&viewer);
    assert_eq!(
        (a.status, a.location.as_str()),
        (303, "/console/"),
        "{}",
        a.body
    );
    let page = v.get("/console/clients/WEB01");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("vic (viewer)"), "{}", page.body);
    assert!(page.body.contains(r#"id="no-actions""#), "{}", page.body);
    assert!(
        !page.body.contains(r#"id="resync-hw""#),
        "no buttons for a viewer"
    );
    assert!(
        !page.body.contains(r#"id="nav-users""#),
        "no users page for a viewer"
    );
    let csrf = csrf_of(&page.body);
    let a = v.post("/console/clients/WEB01/resync-hw", &[("csrf", &csrf)], &[]);
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.contains("the operator role"), "{}", a.body);
    assert!(requests(&site, "WEB01").is_empty(), "nothing queued");
    assert_eq!(v.get("/console/users").status, 403);
    // Every role reads the audit.
    let audit = v.get("/console/audit");
    assert_eq!(audit.status, 200);
    assert!(
        audit.body.contains(r#"<td class="actor">vic</td>"#),
        "{}",
        audit.body
    );

    // An operator has the buttons, and they work, audited under its name; no users page.
    let mut o = Console::new(&site);
    o.login(&operator);
    let page = o.get("/console/clients/WEB01");
    assert!(page.body.contains(r#"id="resync-hw""#), "{}", page.body);
    let csrf = csrf_of(&page.body);
    let a = o.post("/console/clients/WEB01/resync-hw", &[("csrf", &csrf)], &[]);
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(requests(&site, "WEB01").len(), 1);
    let a = o.post(
        "/console/users",
        &[("csrf", &csrf), ("name", "eve"), ("role", "admin")],
        &[],
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.contains("the admin role"), "{}", a.body);

    // An admin manages users: add shows the token once; rotate and remove.
    let mut ad = Console::new(&site);
    ad.login(&admin);
    let users = ad.get("/console/users");
    assert_eq!(users.status, 200, "{}", users.body);
    assert!(users.body.contains(r#"id="user-otto""#), "{}", users.body);
    let csrf = csrf_of(&users.body);
    for (name, role, expires, why) in [
        ("Bad Name", "viewer", "", "user name"),
        ("eve", "root", "", "viewer, operator, admin"),
        ("eve", "viewer", "whenever", "--expires"),
    ] {
        let a = ad.post(
            "/console/users",
            &[
                ("csrf", &csrf),
                ("name", name),
                ("role", role),
                ("expires", expires),
            ],
            &[],
        );
        assert_eq!(a.status, 400, "{name}: {}", a.body);
        assert!(a.body.contains(why), "{}", a.body);
    }
    let a = ad.post(
        "/console/users",
        &[
            ("csrf", &csrf),
            ("name", "eve"),
            ("role", "viewer"),
            ("expires", "30d"),
        ],
        &[],
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert!(
        a.body.contains(r#"<code id="issued-token">invu.eve."#),
        "{}",
        a.body
    );
    let eve = a.body.split(r#"<code id="issued-token">"#).nth(1).unwrap();
    let eve = eve.split('<').next().unwrap().to_string();
    let mut e = Console::new(&site);
    assert_eq!(e.login(&eve).status, 303);
    let a = ad.post("/console/users/eve/rotate", &[("csrf", &csrf)], &[]);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("invu.eve."), "{}", a.body);
    // A rotated user's session ends at its next page; the old token logs in no more.
    assert_eq!(e.get("/console/").location, "/console/login");
    assert_eq!(Console::new(&site).login(&eve).status, 403);
    let a = ad.post("/console/users/eve/remove", &[("csrf", &csrf)], &[]);
    assert_eq!((a.status, a.location.as_str()), (303, "/console/users"));
    assert!(!ad.get("/console/users").body.contains(r#"id="user-eve""#));

    // The audit page lists logins (and the refused one), the button and the user changes.
    let audit = ad.get("/console/audit");
    for (actor, action) in [
        ("vic", "login"),
        ("otto", "login"),
        ("otto", "request"),
        ("ada", "user_add"),
        ("ada", "user_rotate"),
        ("ada", "user_remove"),
        ("eve", "login_failed"),
    ] {
        let row = format!(r#"<td class="actor">{actor}</td>"#);
        assert!(
            audit
                .body
                .split("<tr")
                .any(|r| r.contains(&row)
                    && r.contains(&format!(r#"<td class="action">{action}</td>"#))),
            "{actor} {action} missing: {}",
            audit.body
        );
    }
    let filtered = ad.get("/console/audit?user=otto&since=1h");
    assert_eq!(filtered.status, 200);
    assert!(!filtered.body.contains(r#"<td class="actor">ada</td>"#));
    assert_eq!(ad.get("/console/audit?since=yesterday").status, 400);
}
