//! Requests end in the console (issue 20, item 4, leftovers): the client page's Cancel button
//! on a pending request does what `invsync cancel` does, behind the session and its CSRF token;
//! the client list's pending count leaves cancelled requests out.

use crate::common::*;
use crate::console::{Console, csrf_of};

crate::on_each_db!(the_client_page_cancels_a_pending_request);
fn the_client_page_cancels_a_pending_request(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init_on(tmp.path(), "S01", db, &[]);
    site.start();
    Agent::enroll(tmp.path(), &site, "minimal", "web1");
    let dir = site.data_dir().to_string();
    let out = run_ok_stdout("invsync", &["hw", "web1", "--json", "--data-dir", &dir]);
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_eq!(site.clients()[0]["pending_requests"], 1);

    let mut c = Console::new(&site);
    c.login(&site.admin_token());
    let page = c.get("/console/clients/WEB1");
    assert!(
        page.body.contains(&format!(r#"id="cancel-{id}""#)),
        "{}",
        page.body
    );
    let csrf = csrf_of(&page.body);
    let path = format!("/console/clients/WEB1/requests/{id}/cancel");
    // Without the CSRF token, or with a request id that is none: refused, nothing changes.
    assert_eq!(c.post(&path, &[], &[]).status, 403);
    let bad = c.post(
        "/console/clients/WEB1/requests/abc/cancel",
        &[("csrf", &csrf)],
        &[],
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("not a request id"), "{}", bad.body);
    assert_eq!(site.show("web1")["requests"][0]["state"], "pending");

    let a = c.post(&path, &[("csrf", &csrf)], &[]);
    assert_eq!(
        (a.status, a.location.as_str()),
        (303, "/console/clients/WEB1")
    );
    let page = c.get("/console/clients/WEB1");
    assert!(
        page.body
            .contains(&format!("Cancelled request {id} (hw for WEB1)")),
        "{}",
        page.body
    );
    assert!(!page.body.contains(&format!(r#"id="cancel-{id}""#)));
    assert_eq!(site.show("web1")["requests"][0]["state"], "cancelled");
    assert_eq!(site.clients()[0]["pending_requests"], 0);
    // Again: said so, not an error.
    c.post(&path, &[("csrf", &csrf)], &[]);
    let page = c.get("/console/clients/WEB1");
    assert!(
        page.body
            .contains(&format!("Request {id} was already cancelled")),
        "{}",
        page.body
    );
}
