//! The web console over plain HTTP (no redirects followed): pages need a session, the login
//! refuses a wrong token and a form from elsewhere, the session cookie is HttpOnly and
//! SameSite=Strict, every POST needs the session's CSRF token, the buttons queue exactly what
//! `invsync`/`setevnt` queue, and a client of a child site is refused with the ownership
//! module's explanation and nothing stored.

use serde_json::Value;

use crate::common::{http, try_show, wait_until, Agent, Site};

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
        Console { base: site.url.clone(), agent, cookies: Vec::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    /// Keeps cookies as a browser would: a new value replaces the old, Max-Age=0 deletes.
    fn answer(&mut self, mut resp: ureq::http::Response<ureq::Body>) -> Answer {
        let set_cookies: Vec<String> =
            resp.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
        for c in &set_cookies {
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !attrs.contains("Max-Age=0") {
                self.cookies.push((k.to_string(), v.to_string()));
            }
        }
        let location = resp.headers().get("location").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        Answer { status: resp.status().as_u16(), location, set_cookies, body: resp.body_mut().read_to_string().unwrap() }
    }

    pub fn get(&mut self, path: &str) -> Answer {
        let resp = self.agent.get(format!("{}{path}", self.base)).header("Cookie", self.cookie_header()).call().unwrap();
        self.answer(resp)
    }

    pub fn post(&mut self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Answer {
        let mut req = self.agent.post(format!("{}{path}", self.base)).header("Cookie", self.cookie_header());
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
    let at = html.find(marker).unwrap_or_else(|| panic!("no csrf field in {html}")) + marker.len();
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
        assert_eq!((a.status, a.location.as_str()), (303, "/console/login"), "{path}");
    }
    let a = c.post("/console/clients/WEB01/resync-sw", &[("csrf", "x")], &[]);
    assert_eq!((a.status, a.location.as_str()), (303, "/console/login"));
    // htmx (search while typing) is told to go to the login page instead of swapping it in.
    let resp = http().get(format!("{}/console/clients?q=w", site.url)).header("HX-Request", "true").call().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("hx-redirect").unwrap(), "/console/login");
    assert!(requests(&site, "WEB01").is_empty());

    // A wrong token is refused and starts no session.
    let a = c.login("not-the-token");
    assert_eq!(a.status, 403);
    assert!(a.body.contains("wrong admin token"), "{}", a.body);
    assert!(!a.set_cookies.iter().any(|s| s.starts_with("invsite_session=")), "{:?}", a.set_cookies);
    assert!(!c.has_session());

    // A login form posted from elsewhere (no login cookie, so no matching CSRF value) is
    // refused even with the right token.
    let mut other = Console::new(&site);
    let a = other.post("/console/login", &[("csrf", "0123"), ("token", &token)], &[]);
    assert_eq!(a.status, 403);
    assert!(a.body.contains("CSRF"), "{}", a.body);
    assert!(!other.has_session());

    // The right token: a session cookie a script cannot read and no other site's form sends.
    let a = c.login(&token);
    assert_eq!((a.status, a.location.as_str()), (303, "/console/"), "{}", a.body);
    let cookie = a.set_cookies.iter().find(|s| s.starts_with("invsite_session=")).expect("a session cookie");
    let value = cookie.split(';').next().unwrap().trim_start_matches("invsite_session=");
    assert_eq!(value.len(), 64, "256 random bits in hex: {cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP on loopback: a Secure cookie would never come back");

    let overview = c.get("/console/");
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("Site S01"), "{}", overview.body);
    let list = c.get("/console/clients?q=web&sort=last_seen&desc=1");
    assert_eq!(list.status, 200);
    assert!(list.body.contains("WEB01") && list.body.contains("1 clients"), "{}", list.body);
    assert!(c.get("/console/clients?q=nomatch").body.contains("0 clients"));
    let page = c.get("/console/clients/WEB01?filter=bash");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("dpkg/bash/"), "the filtered package list shows bash");
    assert!(!page.body.contains("dpkg/gzip/"), "and not what the filter leaves out");
    let csrf = csrf_of(&page.body);

    // A button without the session's CSRF token, or with another, is refused; nothing is stored.
    let a = c.post("/console/clients/WEB01/resync-sw", &[], &[]);
    assert_eq!(a.status, 403);
    assert!(a.body.contains("CSRF token"), "{}", a.body);
    let a = c.post("/console/clients/WEB01/resync-sw", &[("csrf", &"0".repeat(64))], &[]);
    assert_eq!(a.status, 403);
    assert!(requests(&site, "WEB01").is_empty(), "a refused form stores nothing");

    // With it: the same request `invsync sw WEB01` makes, then back to the page with a message.
    let a = c.post("/console/clients/WEB01/resync-sw", &[("csrf", &csrf)], &[]);
    assert_eq!((a.status, a.location.as_str()), (303, "/console/clients/WEB01"), "{}", a.body);
    let stored = requests(&site, "WEB01");
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0]["class"].as_str(), stored[0]["state"].as_str()), (Some("sw"), Some("pending")));
    let page = c.get("/console/clients/WEB01");
    assert!(page.body.contains("Queued software resync request"), "{}", page.body);
    let overview = c.get("/console/");
    assert!(overview.body.contains("Resync requests pending</th><td>1</td>"), "{}", overview.body);
    assert!(overview.body.contains(r#"<a href="/console/clients/WEB01">WEB01</a>"#), "listed as pending");
    // htmx sends the token in a header instead of the form.
    let a = c.post("/console/clients/WEB01/cycle", &[], &[("X-CSRF-Token", &csrf)]);
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(site.show("WEB01")["events"][0]["event"], "cycle");

    agent.cycle();
    wait_until(10, "the console shows the request complete", || {
        c.get("/console/clients/WEB01").body.contains(r#"<td class="state">complete</td>"#)
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
    wait_until(15, "the parent holds DB01", || try_show(&parent, "DB01", &[]).is_some());

    let mut c = Console::new(&parent);
    assert_eq!(c.login(&parent.admin_token()).status, 303);
    let list = c.get("/console/clients?q=db01");
    assert!(list.body.contains("/console/clients/DB01?site=C01"), "{}", list.body);
    let page = c.get("/console/clients/DB01?site=C01");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("a site below this one"));
    let csrf = csrf_of(&page.body);

    for action in ["resync-sw", "resync-hw", "cycle"] {
        let a = c.post(&format!("/console/clients/DB01/{action}"), &[("csrf", &csrf), ("site", "C01")], &[]);
        assert_eq!((a.status, a.location.as_str()), (303, "/console/clients/DB01?site=C01"), "{}", a.body);
        let page = c.get("/console/clients/DB01?site=C01");
        // The ownership module's sentence, as `invsync`/`setevnt` print it.
        assert!(page.body.contains("belongs to site C01"), "{action}: {}", page.body);
        assert!(page.body.contains("not to this site P01"), "{action}");
        assert!(page.body.contains("run it on the owning site"), "{action}");
    }
    let held = try_show(&parent, "DB01", &[]).unwrap();
    assert!(held["requests"].as_array().unwrap().is_empty(), "{held}");
    assert!(held["events"].as_array().unwrap().is_empty(), "{held}");
    assert!(child.show("DB01")["requests"].as_array().unwrap().is_empty());
    child.stop();
    parent.stop();
}
