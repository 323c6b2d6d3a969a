//! TLS end to end (SPEC section 8): a site made with `invsite init --tls self-signed` serves
//! HTTPS; agents enroll with `--ca-cert` and then cycle, keep the push channel and answer
//! `invsync --wait` over it; the tools on the site server reach it with the site's own CA; a
//! child site forwards to a TLS parent with `--parent-ca-cert`. A client trusting another CA
//! (a second site's), or none, refuses to connect and nothing is stored; plain `http://` to
//! the TLS port fails cleanly.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

/// `invsite init --tls self-signed` in `<tmp>/site-<code>` on any free loopback port.
fn init_tls(tmp: &Path, code: &str) -> Site {
    let dir = tmp.join(format!("site-{code}"));
    let out = run_ok(
        "invsite",
        &[
            "init",
            "--data-dir",
            s(&dir),
            "--site-code",
            code,
            "--listen",
            "127.0.0.1:0",
            "--tls",
            "self-signed",
        ],
    );
    let ca = dir.join("tls/ca.pem");
    assert!(
        out.contains(&format!("--ca-cert {}", ca.display())),
        "init names the CA agents need:\n{out}"
    );
    Site {
        dir,
        child: None,
        url: String::new(),
        pg: None,
    }
}

fn ca_of(site: &Site) -> PathBuf {
    site.dir.join("tls/ca.pem")
}

/// The site's `invsite_connected_agents` gauge over HTTPS, trusting the site's own CA.
fn connected_agents(url: &str, ca: &Path) -> Option<u64> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let pem = std::fs::read(ca).unwrap();
    let cert = Certificate::from_pem(&pem).unwrap().to_owned();
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::Specific(std::sync::Arc::new(vec![cert])))
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let text = agent
        .get(&format!("{url}/metrics"))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("invsite_connected_agents "))
        .and_then(|v| v.trim().parse().ok())
}

/// `invagent enroll` with extra arguments (`--ca-cert …`), returning the process output.
fn enroll(
    tmp: &Path,
    url: &str,
    secret: &str,
    name: &str,
    extra: &[&str],
) -> (Agent, std::process::Output) {
    let dir = tmp.join(format!("agent-{name}"));
    let root = fixture_copy("minimal", &tmp.join(format!("roots-{name}")));
    let mut args = vec![
        "enroll",
        "--data-dir",
        s(&dir),
        "--site",
        url,
        "--secret",
        secret,
        "--name",
        name,
        "--root",
        s(&root),
    ];
    args.extend_from_slice(extra);
    let out = run("invagent", &args);
    (Agent { dir, root }, out)
}

#[test]
fn tls_end_to_end_with_a_generated_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = init_tls(tmp.path(), "S01");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&site.dir.join("tls/key.pem")), 0o600);
    assert!(site.dir.join("tls/cert.pem").is_file());
    site.start();
    assert!(site.url.starts_with("https://127.0.0.1:"), "{}", site.url);

    let ca = ca_of(&site);
    let (agent, out) = enroll(
        tmp.path(),
        &site.url,
        &site.secret(),
        "secure",
        &["--ca-cert", s(&ca)],
    );
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(agent.dir.join("state.json")).unwrap())
            .unwrap();
    assert_eq!(
        state["ca_cert"],
        s(&std::fs::canonicalize(&ca).unwrap()),
        "the state remembers the CA"
    );
    let out = agent.cycle();
    assert!(out.contains("hw:") && out.contains("sw:"), "{out}");

    // The tools on the site server go through the running server, over TLS with its own CA.
    let addr_file = site.dir.join("serve.addr");
    wait_until(10, "serve.addr names the https:// URL", || {
        std::fs::read_to_string(&addr_file).is_ok_and(|a| a.trim() == site.url)
    });
    let shown = site.show("SECURE");
    assert_eq!(shown["hw"]["version"], 1, "{shown}");
    assert_eq!(shown["sw"]["version"], 1, "{shown}");

    // The push channel over TLS: a connected agent (its interval an hour) answers
    // `invsync --wait` once its long-poll is parked.
    let daemon = Daemon::start(&agent);
    wait_until(30, "the agent's long-poll is parked", || {
        connected_agents(&site.url, &ca) == Some(1)
    });
    let o = run(
        "invsync",
        &[
            "sw",
            "SECURE",
            "--data-dir",
            site.data_dir(),
            "--wait",
            "--timeout",
            "60s",
        ],
    );
    let out = stdout(&o) + &stderr(&o);
    assert_eq!(code(&o), 0, "{out}");
    assert!(out.contains("complete"), "{out}");
    assert!(
        !out.contains("not running"),
        "invsync used the database instead of the server: {out}"
    );
    assert_eq!(site.show("SECURE")["sw"]["version"], 2);

    // A graceful stop does not wait for the agent's long-poll parked on a TLS connection: it
    // would take the rest of the 50 s hold time. Well short of that, on any machine, is a
    // stop that ended the poll (the bound is the hold time's, not a speed).
    let t = Instant::now();
    site.stop();
    assert!(
        t.elapsed() < Duration::from_secs(40),
        "the TLS site took {:?} to stop",
        t.elapsed()
    );
    assert!(
        !site.dir.join("serve.addr").exists(),
        "serve.addr is removed at shutdown"
    );
    daemon.stop();
}

#[test]
fn a_client_with_the_wrong_ca_refuses_to_connect_and_nothing_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = init_tls(tmp.path(), "S01");
    site.start();
    // Another site's CA: a real CA, but not the one that signed this site's certificate.
    let other = init_tls(tmp.path(), "S02");
    let secret = site.secret();

    for (name, extra) in [
        ("wrongca", vec!["--ca-cert", s(&ca_of(&other))]),
        ("noca", vec![]),
    ] {
        let (agent, out) = enroll(tmp.path(), &site.url, &secret, name, &extra);
        let text = stdout(&out) + &stderr(&out);
        assert_eq!(code(&out), 1, "{text}");
        assert!(text.contains("could not reach the site"), "{text}");
        assert!(
            text.contains("TLS: certificate not trusted") && text.contains("--ca-cert"),
            "{text}"
        );
        assert!(
            !agent.dir.join("state.json").exists(),
            "a refused enrollment stores nothing"
        );
    }
    // Plain HTTP to the TLS port fails cleanly, with a hint.
    let plain = site.url.replacen("https://", "http://", 1);
    let (agent, out) = enroll(tmp.path(), &plain, &secret, "plain", &[]);
    let text = stdout(&out) + &stderr(&out);
    assert_eq!(code(&out), 1, "{text}");
    assert!(
        text.contains("could not reach the site") && text.contains("https://"),
        "{text}"
    );
    assert!(!agent.dir.join("state.json").exists());
    // And https:// to a plain HTTP site says so.
    let mut plain_site = Site::init(tmp.path(), "S03");
    plain_site.start();
    let (_, out) = enroll(
        tmp.path(),
        &plain_site.url.replacen("http://", "https://", 1),
        &plain_site.secret(),
        "nottls",
        &[],
    );
    let text = stdout(&out) + &stderr(&out);
    assert_eq!(code(&out), 1, "{text}");
    assert!(text.contains("did not answer in TLS"), "{text}");
    // A CA file that holds no certificate is a bad argument.
    let (_, out) = enroll(
        tmp.path(),
        &site.url,
        &secret,
        "badfile",
        &["--ca-cert", site.data_dir()],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));

    // The site stored nothing; the right CA then enrolls.
    assert_eq!(site.clients(), serde_json::json!([]));
    let (_, out) = enroll(
        tmp.path(),
        &site.url,
        &secret,
        "rightca",
        &["--ca-cert", s(&ca_of(&site))],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(site.clients().as_array().unwrap().len(), 1);
    site.stop();
    plain_site.stop();
}

#[test]
fn with_tls_any_address_is_allowed_and_serve_takes_a_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = init_tls(tmp.path(), "S01");
    // Beyond loopback plain HTTP is refused (security.rs); with TLS it is served.
    let mut child = bin("invsite")
        .args([
            "serve",
            "--data-dir",
            site.data_dir(),
            "--listen",
            "0.0.0.0:0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Dropping the site kills the server should an assertion fail.
    site.child = Some(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    assert!(
        line.starts_with("invsite S01 serving on https://0.0.0.0:"),
        "{line:?}"
    );
    let port = line.trim().rsplit(':').next().unwrap().to_string();
    // The tools connect on loopback, which the certificate names.
    let url = format!("https://127.0.0.1:{port}");
    let addr_file = site.dir.join("serve.addr");
    wait_until(10, "serve.addr is written", || {
        std::fs::read_to_string(&addr_file).is_ok_and(|a| a.trim() == url)
    });
    let (_, out) = enroll(
        tmp.path(),
        &url,
        &site.secret(),
        "anyaddr",
        &["--ca-cert", s(&ca_of(&site))],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let o = run("invsync", &["hw", "ANYADDR", "--data-dir", site.data_dir()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!stderr(&o).contains("not running"), "{}", stderr(&o));
    site.stop();

    // `serve --tls-cert/--tls-key` serves a site made without TLS with the given files.
    let mut plain = Site::init(tmp.path(), "S02");
    plain.start_with(&[
        "--tls-cert",
        s(&site.dir.join("tls/cert.pem")),
        "--tls-key",
        s(&site.dir.join("tls/key.pem")),
    ]);
    assert!(plain.url.starts_with("https://"), "{}", plain.url);
    let (_, out) = enroll(
        tmp.path(),
        &plain.url,
        &plain.secret(),
        "given",
        &["--ca-cert", s(&ca_of(&site))],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    plain.stop();
}

#[test]
fn a_child_site_forwards_to_a_tls_parent_with_parent_ca_cert() {
    let tmp = tempfile::tempdir().unwrap();
    let mut parent = init_tls(tmp.path(), "P01");
    parent.start();
    let other = init_tls(tmp.path(), "X01");

    // The wrong CA is refused at init, before anything is created.
    let token = parent.child_token("C02");
    let dir = tmp.path().join("site-C02");
    let out = run_expect(
        "invsite",
        &[
            "init",
            "--data-dir",
            s(&dir),
            "--site-code",
            "C02",
            "--listen",
            "127.0.0.1:0",
            "--parent",
            &parent.url,
            "--parent-token",
            &token,
            "--parent-ca-cert",
            s(&ca_of(&other)),
        ],
        2,
    );
    assert!(
        out.contains("--parent-ca-cert") && out.contains("certificate"),
        "{out}"
    );
    assert!(!dir.join("config.json").exists());

    let token = parent.child_token("C01");
    let dir = tmp.path().join("site-C01");
    let out = run_ok(
        "invsite",
        &[
            "init",
            "--data-dir",
            s(&dir),
            "--site-code",
            "C01",
            "--listen",
            "127.0.0.1:0",
            "--parent",
            &parent.url,
            "--parent-token",
            &token,
            "--parent-ca-cert",
            s(&ca_of(&parent)),
        ],
    );
    assert!(out.contains("accepted this site"), "{out}");
    let mut child = Site {
        dir,
        child: None,
        url: String::new(),
        pg: None,
    };
    child.start();
    let agent = Agent::enroll(tmp.path(), &child, "minimal", "below");
    agent.cycle();
    wait_until(15, "the TLS parent holds BELOW", || {
        try_show(&parent, "BELOW", &[]).is_some_and(|v| v["hw"]["version"] == 1)
    });
    child.stop();
    parent.stop();
}
