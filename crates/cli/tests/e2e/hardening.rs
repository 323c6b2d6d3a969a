//! The connection layer against a hostile client (issue 15, items 1 and 8): bodies that stop
//! arriving are cut at the request deadline, one address cannot take the connections others
//! need, the connection bound closes what it cannot hold, a stopping site does not wait for a
//! slow client past its shutdown grace, and ambiguous or unexpected body encodings are refused.
//! Every client here speaks raw HTTP/1.1 over a socket, because these are requests a
//! well-behaved HTTP client library does not make.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// A client token that parses but names no client.
fn made_up_token() -> String {
    format!("00000000-0000-0000-0000-000000000001.{}", "ab".repeat(32))
}

/// Sets limits in the site's configuration file (what `invsite config` writes), keeping the
/// others; the server reads them when it starts.
fn set_limits(site: &Site, limits: Value) {
    let path = site.dir.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    if config.get("limits").is_none() {
        config["limits"] = json!({});
    }
    for (k, v) in limits.as_object().unwrap() {
        config["limits"][k] = v.clone();
    }
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

/// Starts `invsite serve` with its log (INFO and up) in `log`, and, when `nofile` is given,
/// that limit on its open descriptors (soft and hard, so the server cannot raise it).
fn start_logged(site: &mut Site, log: &Path, nofile: Option<u64>) {
    let mut cmd = bin("invsite");
    cmd.args(["serve", "--data-dir", site.data_dir()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    if let Some(n) = nofile {
        // SAFETY: setrlimit is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: n as libc::rlim_t,
                    rlim_max: n as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "unexpected first line from invsite serve: {line:?}"
    );
    site.url = url;
    site.child = Some(child);
}

fn addr(site: &Site) -> SocketAddr {
    site.url.trim_start_matches("http://").parse().unwrap()
}

/// A TCP connection to the site from `from` (any address of 127.0.0.0/8 is this machine's).
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::new(IpAddr::V4(from), 0).into())
        .unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

/// The slow-body request of the issue: a head promising 1,000 bytes of body, and one of them.
fn slow_body(stream: &mut TcpStream, path: &str, token: Option<&str>) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).unwrap();
}

/// Reads until the site closes the connection, for at most `secs` seconds; what it sent, or
/// None when it still held the connection then.
fn read_until_closed(stream: &mut TcpStream, secs: u64) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A reset is the site closing too.
            Err(_) => return Some(String::from_utf8_lossy(&got).into_owned()),
        }
    }
}

/// Whether the site sent something or closed the connection: writing on would only make it
/// reset the connection, which may discard its answer before the test reads it.
fn answered(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let peeked = s.peek(&mut [0u8; 1]);
    s.set_nonblocking(false).unwrap();
    !matches!(peeked, Err(e) if e.kind() == ErrorKind::WouldBlock)
}

/// The value of one series on the site's `/metrics` page.
fn metric(site: &Site, series: &str) -> f64 {
    let page = http()
        .get(&format!("{}/metrics", site.url))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    page.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no series {series} in:\n{page}"))
        .trim()
        .parse()
        .unwrap()
}

fn log_text(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// The status code of a raw HTTP response.
fn status(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_body_that_stops_arriving_is_cut_at_the_request_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    set_limits(&site, json!({ "request_timeout_secs": 2 }));
    site.start();
    let to = addr(&site);
    let token = made_up_token();
    let mut held = Vec::new();
    for _ in 0..10 {
        for (path, token) in [
            ("/cap/v1/enroll", None),
            ("/cap/v1/report", Some(&token)),
            ("/cap/v1/checkin", Some(&token)),
        ] {
            let mut s = TcpStream::connect(to).unwrap();
            slow_body(&mut s, path, token.map(String::as_str));
            held.push((path, s));
        }
    }
    // The deadline is 2 s; 60 s only bounds the wait on a loaded machine.
    for (path, mut s) in held {
        let response = read_until_closed(&mut s, 60).unwrap_or_else(|| {
            panic!("the site still held a slow-body request to {path} after 60 s")
        });
        if path == "/cap/v1/enroll" {
            assert_eq!(status(&response), 408, "{response}");
            assert!(response.contains("request_timeout_secs"), "{response}");
        } else {
            // The made-up token is refused first, as on every refused body.
            assert_eq!(status(&response), 401, "{response}");
        }
    }
    assert_eq!(metric(&site, "invsite_request_timeouts_total"), 30.0);
    assert_eq!(
        metric(
            &site,
            "invsite_requests_refused_total{reason=\"timed_out\"}"
        ),
        10.0
    );
    // A report with a right key whose body stops arriving: 408 too.
    let agent = Agent::enroll(tmp.path(), &site, "minimal", "SLOW1");
    let key = agent.token();
    let mut s = TcpStream::connect(to).unwrap();
    slow_body(&mut s, "/cap/v1/report", Some(&key));
    let response = read_until_closed(&mut s, 60).expect("the site cut the slow report within 60 s");
    assert_eq!(status(&response), 408, "{response}");
    assert_eq!(
        metric(
            &site,
            "invsite_requests_refused_total{reason=\"timed_out\"}"
        ),
        11.0
    );
    assert_eq!(
        http()
            .get(&format!("{}/healthz", site.url))
            .call()
            .unwrap()
            .status(),
        200
    );
    site.stop();
}

#[test]
fn a_long_body_at_a_steady_rate_is_read_and_a_trickle_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    // 5 s for the body, and a second more per KiB received.
    set_limits(
        &site,
        json!({ "request_timeout_secs": 5, "min_body_rate": 1024 }),
    );
    site.start();
    let to = addr(&site);
    let send = |body: &[u8], piece: usize, pause: Duration| -> String {
        let mut s = TcpStream::connect(to).unwrap();
        let head = format!(
            "POST /cap/v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        // The site may cut the trickle half-way (then writing fails, or it answered already);
        // a site that never cuts it is found out after a minute.
        let give_up = Instant::now() + Duration::from_secs(60);
        for chunk in body.chunks(piece) {
            if answered(&s) || s.write_all(chunk).is_err() || Instant::now() > give_up {
                break;
            }
            std::thread::sleep(pause);
        }
        read_until_closed(&mut s, 60).expect("the site answered and closed the connection")
    };
    // 24 KiB at about 4 KiB/s: six seconds, past the 5 s, but far above the minimum rate. The
    // enrollment is read whole and refused for its wrong secret.
    let padded = format!(
        r#"{{"secret":"wrong","name":"pc1","machine_id":"m1"{}}}"#,
        " ".repeat(24 * 1024)
    );
    let response = send(padded.as_bytes(), 1024, Duration::from_millis(250));
    assert_eq!(status(&response), 401, "{response}");
    assert!(response.contains("wrong enrollment secret"), "{response}");
    // Two bytes a second, far below it: cut once the 5 s (and a fraction of a second earned)
    // are over.
    let response = send(padded.as_bytes(), 1, Duration::from_millis(500));
    assert_eq!(status(&response), 408, "{response}");
    site.stop();
}

#[test]
fn one_address_cannot_take_the_connections_healthz_and_agents_need() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    let log = tmp.path().join("serve.log");
    // The issue's setting: 256 descriptors, and 300 connections from one address.
    start_logged(&mut site, &log, Some(256));
    let agent = Agent::enroll(tmp.path(), &site, "minimal", "pc1");
    let to = addr(&site);
    let flood: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = connect_from(Ipv4Addr::new(127, 0, 0, 2), to);
            slow_body(&mut s, "/cap/v1/enroll", None);
            s
        })
        .collect();
    // One address may hold half of what 256 descriptors leave for connections (128): 64 of
    // them are let in, the others closed as they are accepted.
    wait_until(
        60,
        "the site refused the connections over the address's bound",
        || {
            metric(
                &site,
                "invsite_connections_refused_total{reason=\"address\"}",
            ) == 236.0
        },
    );
    // Everything from other addresses still answers while the 64 are held.
    assert_eq!(
        http()
            .get(&format!("{}/healthz", site.url))
            .call()
            .unwrap()
            .status(),
        200
    );
    agent.cycle();
    run_ok("invsync", &["sw", "PC1", "--data-dir", site.data_dir()]);
    assert!(metric(&site, "invsite_connections_open") >= 64.0);
    assert_eq!(
        metric(&site, "invsite_connections_refused_total{reason=\"limit\"}"),
        0.0
    );
    let text = log_text(&log);
    assert!(
        text.contains("their address holds as many unauthenticated ones as allowed")
            && text.contains("127.0.0.2"),
        "{text}"
    );
    drop(flood);
    site.stop();
}

#[test]
fn the_connection_bound_closes_new_connections_with_a_metric_and_a_log_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    set_limits(
        &site,
        json!({ "max_connections": 8, "max_unauthenticated_per_address": 0 }),
    );
    let log = tmp.path().join("serve.log");
    start_logged(&mut site, &log, None);
    let to = addr(&site);
    let held: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(to).unwrap()).collect();
    // Connections are accepted in order: the ninth finds the site full and is closed at once,
    // with nothing sent.
    let mut ninth = TcpStream::connect(to).unwrap();
    ninth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok();
    let answer =
        read_until_closed(&mut ninth, 60).expect("the site closed the connection over its bound");
    assert_eq!(answer, "", "a refused connection gets no answer");
    drop(held);
    wait_until(
        60,
        "the site answers again once the held connections closed",
        || {
            http()
                .get(&format!("{}/healthz", site.url))
                .call()
                .is_ok_and(|r| r.status() == 200)
        },
    );
    assert!(metric(&site, "invsite_connections_refused_total{reason=\"limit\"}") >= 1.0);
    let text = log_text(&log);
    assert!(
        text.contains("the site holds as many as max_connections allows"),
        "{text}"
    );
    site.stop();
}

#[test]
fn sigterm_ends_serve_within_the_shutdown_grace_while_a_slow_client_holds_a_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    // A request deadline far beyond the test, so only the shutdown grace can end it.
    set_limits(
        &site,
        json!({ "request_timeout_secs": 3600, "shutdown_grace_secs": 1 }),
    );
    let log = tmp.path().join("serve.log");
    start_logged(&mut site, &log, None);
    let mut slow = TcpStream::connect(addr(&site)).unwrap();
    slow_body(&mut slow, "/cap/v1/enroll", None);
    // The slow connection and the scrape's own.
    wait_until(30, "the site holds the slow connection", || {
        metric(&site, "invsite_connections_open") >= 2.0
    });
    let mut child = site.child.take().unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    // The grace is 1 s; 60 s only bounds the wait on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "invsite serve still ran 60 s after SIGTERM while a slow client held a connection"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "invsite serve exited {status}");
    let text = log_text(&log);
    assert!(
        text.contains("Dropping the connections still open at the end of the shutdown grace"),
        "{text}"
    );
    // The slow client's connection went with the server.
    assert!(read_until_closed(&mut slow, 10).is_some());
}

/// Sends a raw request and returns the response, read until the site closes the connection.
fn raw(site: &Site, request: &str) -> String {
    let mut s = TcpStream::connect(addr(site)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    read_until_closed(&mut s, 60).expect("the site answered and closed within 60 s")
}

#[test]
fn a_transfer_coding_other_than_chunked_is_refused_with_501() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let body = r#"{"secret":"wrong","name":"pc1","machine_id":"m1"}"#;
    let request = |te: &str| {
        format!(
            "POST /cap/v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: {te}\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
    };
    // hyper alone reads this as plain chunked; a proxy could decode the gzip first.
    let response = raw(&site, &request("gzip, chunked"));
    assert_eq!(status(&response), 501, "{response}");
    assert!(
        response.contains("Transfer-Encoding: chunked alone"),
        "{response}"
    );
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
    // `chunked` alone is read: the wrong secret is what is refused.
    let response = raw(&site, &request("chunked"));
    assert_eq!(status(&response), 401, "{response}");
    assert_eq!(
        metric(
            &site,
            "invsite_requests_refused_total{reason=\"not_implemented\"}"
        ),
        1.0
    );
    site.stop();
}

#[test]
fn check_in_and_enrollment_refuse_a_zstd_body_with_415() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "minimal", "pc1");
    let http = http();
    let zstd_json = |v: Value| zstd::bulk::compress(v.to_string().as_bytes(), 3).unwrap();
    let post = |path: &str, token: Option<&str>, body: Vec<u8>| {
        let mut req = http
            .post(&format!("{}{path}", site.url))
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "zstd");
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req.send(&body[..]).unwrap();
        (
            resp.status().as_u16(),
            resp.body_mut().read_to_string().unwrap(),
        )
    };
    let enroll = json!({ "secret": site.secret(), "name": "pc2", "machine_id": "m2" });
    let (code, text) = post("/cap/v1/enroll", None, zstd_json(enroll));
    assert_eq!(code, 415, "{text}");
    assert!(
        text.contains("without Content-Encoding") && text.contains("zstd"),
        "{text}"
    );
    let (code, text) = post(
        "/cap/v1/checkin",
        Some(&agent.token()),
        zstd_json(json!({})),
    );
    assert_eq!(code, 415, "{text}");
    assert!(text.contains("without Content-Encoding"), "{text}");
    // A caller without a valid token learns that first.
    let (code, text) = post(
        "/cap/v1/checkin",
        Some(&made_up_token()),
        zstd_json(json!({})),
    );
    assert_eq!(code, 401, "{text}");
    // Nothing was enrolled, and the agent still checks in as before.
    assert!(try_show(&site, "pc2", &[]).is_none());
    agent.cycle();
    site.stop();
}

#[test]
fn invsite_config_shows_and_sets_the_connection_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "S01");
    let out = run_ok("invsite", &["config", "--data-dir", site.data_dir()]);
    for line in [
        "request-timeout 30",
        "min-body-rate 16384",
        "max-connections 20000",
        "max-unauthenticated-per-address 256",
        "shutdown-grace 10",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    let out = run_ok(
        "invsite",
        &[
            "config",
            "--data-dir",
            site.data_dir(),
            "--request-timeout",
            "5",
            "--min-body-rate",
            "2048",
            "--max-connections",
            "100",
            "--max-unauthenticated-per-address",
            "0",
            "--shutdown-grace",
            "3",
        ],
    );
    for line in [
        "request-timeout 5",
        "min-body-rate 2048",
        "max-connections 100",
        "max-unauthenticated-per-address 0",
        "shutdown-grace 3",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(site.dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["limits"]["request_timeout_secs"], 5);
    assert_eq!(config["limits"]["max_unauthenticated_per_address"], 0);
}

/// Sends one request on a keep-alive connection and reads its whole response (by its
/// `content-length`), leaving the connection open.
fn exchange(s: &mut TcpStream, request: &str) -> String {
    s.write_all(request.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("the site answers within 60 s");
        assert!(
            n > 0,
            "the site closed the connection; so far: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

#[test]
fn a_connection_that_authenticated_no_longer_counts_against_its_address() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    set_limits(&site, json!({ "max_unauthenticated_per_address": 2 }));
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "minimal", "pc1");
    let to = addr(&site);
    let post = |path: &str, auth: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    // Three kept-alive connections, each authenticated by its first request: the admin token,
    // a client token, the enrollment secret.
    let mut admin = TcpStream::connect(to).unwrap();
    let response = exchange(
        &mut admin,
        &format!(
            "GET /api/v1/clients HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
            site.admin_token()
        ),
    );
    assert_eq!(status(&response), 200, "{response}");
    let mut checkin = TcpStream::connect(to).unwrap();
    let response = exchange(
        &mut checkin,
        &post(
            "/cap/v1/checkin",
            &format!("Authorization: Bearer {}\r\n", agent.token()),
            "{}",
        ),
    );
    assert_eq!(status(&response), 200, "{response}");
    let mut enroll = TcpStream::connect(to).unwrap();
    let body = json!({ "secret": site.secret(), "name": "pc2", "machine_id": "m2" }).to_string();
    let response = exchange(&mut enroll, &post("/cap/v1/enroll", "", &body));
    assert_eq!(status(&response), 200, "{response}");
    // Two unauthenticated connections still fit beside them, a third does not.
    let mut idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(to).unwrap()).collect();
    let healthz = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    for s in &mut idle {
        assert_eq!(status(&exchange(s, healthz)), 200);
    }
    let mut third = TcpStream::connect(to).unwrap();
    third.write_all(healthz.as_bytes()).ok();
    let answer = read_until_closed(&mut third, 60)
        .expect("the site closed the connection over the address's bound");
    assert_eq!(answer, "", "a refused connection gets no answer");
    // The authenticated connections still serve.
    assert_eq!(status(&exchange(&mut admin, healthz)), 200);
    drop((admin, checkin, enroll, idle));
    site.stop();
}
