//! What a hostile caller costs the site: a zstd bomb is never decoded for a wrong key and is
//! refused at `max_decoded_bytes` for a right one; a report refused for its key before its
//! body was read still reaches its sender as a 401; wrong credentials from one address are
//! answered 429 with `Retry-After` once its budget is spent (admin token, client key,
//! enrollment secret, console login), while right credentials from that same address pass.

use std::io::Write;

use crate::common::*;
use crate::console::csrf_of;
use crate::metrics::{sample, scrape};

const DECODED: &str = "invsite_zstd_bodies_decoded_total";
const RATE_LIMITED: &str = "invsite_requests_refused_total{reason=\"rate_limited\"}";

/// A client token of the right form that no site issued.
const MADE_UP: &str = "6f1e1a3c-0000-4000-8000-00000000b0b0.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// `len` zeros compressed as a stream, so the frame does not say how large it decodes.
fn bomb(len: usize, window_log: u32) -> Vec<u8> {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    encoder.include_contentsize(false).unwrap();
    encoder.window_log(window_log).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..len >> 20 {
        encoder.write_all(&chunk).unwrap();
    }
    encoder.finish().unwrap()
}

/// `POST /cap/v1/report` with a compressed body: the status and the answer's text.
fn post_report(site: &Site, token: &str, body: &[u8]) -> (u16, String) {
    let mut resp = http()
        .post(&format!("{}/cap/v1/report", site.url))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "zstd")
        .send(body)
        .unwrap();
    (
        resp.status().as_u16(),
        resp.body_mut().read_to_string().unwrap_or_default(),
    )
}

#[test]
fn a_zstd_bomb_is_decoded_only_after_the_key_is_checked_and_only_up_to_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    run_ok(
        "invsite",
        &[
            "config",
            "--max-decoded-bytes",
            "1048576",
            "--data-dir",
            site.data_dir(),
        ],
    );
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "minimal", "bomber");
    agent.cycle();
    let token = agent.token();
    let decoded = sample(&scrape(&site), DECODED);
    assert!(
        decoded >= 1.0,
        "the agent's compressed reports were decoded"
    );

    // 64 MiB of zeros in a few kilobytes.
    let bomb = bomb(64 << 20, 20);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    let (id, _) = token.split_once('.').unwrap();
    let wrong_key = format!("{id}.{}", "ab".repeat(32));
    for bad in [MADE_UP, wrong_key.as_str(), "not-a-token"] {
        let (status, text) = post_report(&site, bad, &bomb);
        assert_eq!(status, 401, "{bad}: {text}");
    }
    assert_eq!(
        sample(&scrape(&site), DECODED),
        decoded,
        "a body was decoded for a wrong key"
    );

    // The right key: decoded, and refused at the limit, naming it.
    let (status, text) = post_report(&site, &token, &bomb);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("max_decoded_bytes (1048576 bytes)"), "{text}");
    // A frame that asks for a 128 MiB window is refused before decoding into it.
    let (status, text) = post_report(&site, &token, &self::bomb(1 << 20, 27));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("invalid zstd body"), "{text}");
    assert_eq!(sample(&scrape(&site), DECODED), decoded + 2.0);
    // The client still reports normally.
    agent.cycle();
    site.stop();
}

#[test]
fn a_large_report_with_a_wrong_key_is_refused_unread_and_its_sender_still_reads_the_401() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    // Just under max_body_bytes: the site refuses it before reading it, then reads and drops
    // the rest, so the sender still writing it reads the refusal rather than a reset
    // connection (a broken pipe, before the site discarded refused bodies).
    let body = vec![b' '; 15 << 20];
    for _ in 0..3 {
        let resp = http()
            .post(&format!("{}/cap/v1/report", site.url))
            .header("Authorization", &format!("Bearer {MADE_UP}"))
            .header("Content-Type", "application/json")
            .send(&body[..]);
        let mut resp =
            resp.unwrap_or_else(|e| panic!("the refusal of a large report was lost: {e}"));
        assert_eq!(resp.status(), 401);
        let text = resp.body_mut().read_to_string().unwrap();
        assert!(text.contains("re-enroll"), "{text}");
    }
    site.stop();
}

/// `GET /api/v1/clients` with this admin token: the status and `Retry-After`.
fn admin_get(site: &Site, token: &str) -> (u16, Option<u64>) {
    let resp = http()
        .get(&format!("{}/api/v1/clients", site.url))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    (resp.status().as_u16(), retry_after(&resp))
}

fn retry_after(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    resp.headers().get("retry-after").map(|v| {
        v.to_str()
            .unwrap()
            .parse()
            .expect("Retry-After in whole seconds")
    })
}

/// Calls `attempt` until it answers 429, at most 10 times (one unit of the budget comes back
/// every 20 s, so a slow machine may see a 401 or 403 first); returns `Retry-After`.
fn until_limited(what: &str, mut attempt: impl FnMut() -> (u16, Option<u64>), refused: u16) -> u64 {
    for _ in 0..10 {
        match attempt() {
            (429, Some(secs)) => {
                assert!(
                    (1..=20).contains(&secs),
                    "{what}: Retry-After {secs} with a budget of 3 a minute"
                );
                return secs;
            }
            (429, None) => panic!("{what}: 429 without Retry-After"),
            (status, _) => assert_eq!(status, refused, "{what}"),
        }
    }
    panic!("{what}: no 429 after 10 wrong attempts");
}

/// A login form posted with `token`, as a browser would (the form's CSRF value and cookie):
/// the status and `Retry-After`.
fn console_login(site: &Site, token: &str) -> (u16, Option<u64>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let mut page = agent
        .get(format!("{}/console/login", site.url))
        .call()
        .unwrap();
    let cookie = page
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = csrf_of(&page.body_mut().read_to_string().unwrap());
    let resp = agent
        .post(format!("{}/console/login", site.url))
        .header("Cookie", &cookie)
        .send_form([("csrf", csrf.as_str()), ("token", token)])
        .unwrap();
    (resp.status().as_u16(), retry_after(&resp))
}

/// `POST /cap/v1/enroll` with this secret: the status and `Retry-After`.
fn enroll(site: &Site, secret: &str) -> (u16, Option<u64>) {
    let body = serde_json::json!({ "secret": secret, "name": "late", "machine_id": "0123456789abcdef0123456789abcdef" });
    let resp = http()
        .post(&format!("{}/cap/v1/enroll", site.url))
        .send_json(&body)
        .unwrap();
    (resp.status().as_u16(), retry_after(&resp))
}

#[test]
fn wrong_credentials_from_one_address_get_429_while_right_ones_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    let out = run_ok(
        "invsite",
        &[
            "config",
            "--auth-failures-per-minute",
            "3",
            "--data-dir",
            site.data_dir(),
        ],
    );
    assert!(out.contains("auth-failures-per-minute 3"), "{out}");
    run_expect(
        "invsite",
        &[
            "config",
            "--auth-failures-per-minute",
            "0",
            "--data-dir",
            site.data_dir(),
        ],
        2,
    );
    site.start();
    let admin = site.admin_token();
    let agent = Agent::enroll(tmp.path(), &site, "minimal", "steady");
    agent.cycle();

    // The admin API: the budget's three wrong tokens are refused as wrong, then 429.
    for _ in 0..3 {
        assert_eq!(admin_get(&site, "wrong").0, 401);
    }
    until_limited("admin API", || admin_get(&site, "wrong"), 401);
    // From the same address, right credentials pass at once: the admin token, the agent's key.
    assert_eq!(admin_get(&site, &admin), (200, None));
    agent.cycle();

    // Client keys, the enrollment secret and console logins share the address's budget.
    let checkin = || {
        let resp = http()
            .post(&format!("{}/cap/v1/checkin", site.url))
            .header("Authorization", &format!("Bearer {MADE_UP}"))
            .send_json(serde_json::json!({}))
            .unwrap();
        (resp.status().as_u16(), retry_after(&resp))
    };
    until_limited("client key", checkin, 401);
    until_limited("enrollment secret", || enroll(&site, "wrong"), 401);
    assert_eq!(enroll(&site, &site.secret()).0, 200);
    until_limited("console login", || console_login(&site, "wrong"), 403);
    assert_eq!(
        console_login(&site, &admin).0,
        303,
        "the right token logs in"
    );

    let limited = sample(&scrape(&site), RATE_LIMITED);
    assert!(limited >= 4.0, "{RATE_LIMITED} is {limited}");
    site.stop();
}
