//! The daemons' settings (issue 16, items 4 and 5): every flag of `invagent run` and `invsite
//! serve` from the command line, else the environment, else a TOML configuration file, else
//! its default; `invagent config` and `invsite config --show` say where each came from; a bad
//! key or value is refused naming the file, line and key; the site's agent interval replaces
//! an agent's default interval but not one set on its machine; the splay.

use std::path::Path;

use serde_json::Value;

use crate::common::*;

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    s(path).to_string()
}

fn agent_config(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = bin("invagent");
    cmd.arg("config")
        .args(args)
        .env_remove("INVAGENT_DIR")
        .env_remove("INVAGENT_INTERVAL")
        .env_remove("INVAGENT_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    (code(&o), stdout(&o), stderr(&o))
}

#[test]
fn agent_settings_come_from_the_command_line_then_the_environment_then_the_file_then_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(
        &tmp.path().join("agent.toml"),
        "# the fleet's settings\ndata_dir = \"/srv/agent\"\n\ninterval = \"2h\"\nsplay = \"0s\"\n",
    );

    let (c, out, err) = agent_config(&["--config", &file, "--json"], &[]);
    assert_eq!(c, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["data_dir"],
        serde_json::json!({ "value": "/srv/agent", "source": format!("{file}:2") })
    );
    assert_eq!(
        v["interval"],
        serde_json::json!({ "value": "2h", "source": format!("{file}:4") })
    );
    assert_eq!(
        v["splay"],
        serde_json::json!({ "value": "0s", "source": format!("{file}:5") })
    );
    assert_eq!(
        v["root"],
        serde_json::json!({ "value": "/", "source": "default" })
    );
    assert_eq!(v["config_file"], file.as_str());

    // The environment beats the file, the command line beats both.
    let (_, out, _) = agent_config(
        &["--config", &file, "--json"],
        &[("INVAGENT_INTERVAL", "3h")],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["interval"],
        serde_json::json!({ "value": "3h", "source": "environment INVAGENT_INTERVAL" })
    );
    let (_, out, _) = agent_config(
        &["--config", &file, "--interval", "4h", "--json"],
        &[("INVAGENT_INTERVAL", "3h")],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["interval"],
        serde_json::json!({ "value": "4h", "source": "command line" })
    );
    // The configuration file itself from the environment.
    let (_, out, _) = agent_config(&["--json"], &[("INVAGENT_CONFIG", &file)]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data_dir"]["value"], "/srv/agent");

    // The human form says the same.
    let (_, out, _) = agent_config(&["--config", &file, "--root", "/mnt"], &[]);
    assert!(
        out.contains(&format!("# {file}:4"))
            && out.contains("root = \"/mnt\"")
            && out.contains("# command line"),
        "{out}"
    );
}

#[test]
fn a_bad_configuration_file_is_refused_naming_the_file_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let typo = write(
        &tmp.path().join("typo.toml"),
        "data_dir = \"/srv/a\"\n\nintervall = \"2h\"\n",
    );
    let (c, _, err) = agent_config(&["--config", &typo], &[]);
    assert_eq!(c, 2, "{err}");
    assert!(err.contains(&format!("{typo}:3: unknown key `intervall`; the keys are `data_dir`, `interval`, `root`, `splay`")), "{err}");
    let bad = write(&tmp.path().join("bad.toml"), "interval = \"soon\"\n");
    let (c, _, err) = agent_config(&["--config", &bad], &[]);
    assert_eq!(c, 2);
    assert!(err.contains(&format!("{bad}:1: key `interval`: ")), "{err}");
    let zero = write(&tmp.path().join("zero.toml"), "\n\ninterval = \"0s\"\n");
    let (c, _, err) = agent_config(&["--config", &zero], &[]);
    assert_eq!(c, 2);
    assert!(
        err.contains(&format!(
            "{zero}:3: key `interval`: the interval must be longer than zero"
        )),
        "{err}"
    );
    let broken = write(
        &tmp.path().join("broken.toml"),
        "root = \"/\"\ninterval = \n",
    );
    let (c, _, err) = agent_config(&["--config", &broken], &[]);
    assert_eq!(c, 2);
    assert!(err.contains(&format!("{broken}:2: ")), "{err}");
    let (c, _, err) = agent_config(&["--config", "/nonexistent/agent.toml"], &[]);
    assert_eq!(c, 2);
    assert!(
        err.contains("cannot read the configuration file /nonexistent/agent.toml"),
        "{err}"
    );
    // The daemon refuses it before doing anything.
    let out = run_expect(
        "invagent",
        &["run", "--config", &typo, "--data-dir", "/nonexistent"],
        2,
    );
    assert!(out.contains("unknown key `intervall`"), "{out}");

    // The site's file the same way.
    let site_typo = write(
        &tmp.path().join("site.toml"),
        "listen = \"127.0.0.1:0\"\nlisten_addr = \"x\"\n",
    );
    let out = run_expect("invsite", &["serve", "--config", &site_typo], 2);
    assert!(
        out.contains(&format!("{site_typo}:2: unknown key `listen_addr`")),
        "{out}"
    );
    let site_bad = write(
        &tmp.path().join("site-bad.toml"),
        "insecure_http = \"maybe\"\n",
    );
    let out = run_expect("invsite", &["config", "--show", "--config", &site_bad], 2);
    assert!(
        out.contains(&format!(
            "{site_bad}:1: key `insecure_http`: \"maybe\" is not true or false"
        )),
        "{out}"
    );
}

#[test]
fn invsite_serve_takes_its_settings_from_a_file_and_config_show_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "S01");
    let file = write(
        &tmp.path().join("site.toml"),
        &format!(
            "# site settings\ndata_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\n",
            site.data_dir()
        ),
    );
    let out = run_ok("invsite", &["config", "--show", "--config", &file]);
    assert!(
        out.contains(&format!("data_dir = \"{}\"", site.data_dir()))
            && out.contains(&format!("# {file}:2")),
        "{out}"
    );
    assert!(
        out.contains("listen = \"127.0.0.1:0\"") && out.contains(&format!("# {file}:3")),
        "{out}"
    );
    assert!(
        out.contains("insecure_http = false") && out.contains("# default"),
        "{out}"
    );
    assert!(
        out.contains("site S01:"),
        "the site's own settings follow: {out}"
    );
    let out = bin("invsite")
        .args(["config", "--show", "--config", &file])
        .env("INVSITE_LISTEN", "127.0.0.1:9")
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("listen = \"127.0.0.1:9\"")
            && stdout(&out).contains("# environment INVSITE_LISTEN"),
        "{}",
        stdout(&out)
    );

    // `invsite serve --config FILE` serves the data directory the file names.
    let mut serve = bin("invsite")
        .args(["serve", "--config", &file])
        .env_remove("INVSITE_DIR")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let line = Lines::of(serve.stdout.take().unwrap())
        .next_within(30)
        .expect("the server printed its address within 30 s");
    assert!(
        line.starts_with("invsite S01 serving on http://127.0.0.1:"),
        "{line:?}"
    );
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    assert!(exit_within(&mut serve, 30, "invsite serve after SIGTERM").success());
}

#[test]
fn the_site_sets_the_agents_interval_unless_the_machine_set_one() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    let out = run_ok(
        "invsite",
        &[
            "config",
            "--data-dir",
            site.data_dir(),
            "--agent-interval",
            "1s",
        ],
    );
    assert!(out.contains("agent-interval 1s"), "{out}");
    let out = run_expect(
        "invsite",
        &[
            "config",
            "--data-dir",
            site.data_dir(),
            "--agent-interval",
            "soon",
        ],
        2,
    );
    assert!(out.contains("--agent-interval"), "{out}");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "WEB1");

    // No interval set on the machine: the site's second applies.
    let daemon = Daemon::start_with(&agent, &["--splay", "0s"]);
    wait_until(30, "three cycles a second apart", || daemon.cycles() >= 3);
    assert!(
        daemon
            .log_text()
            .contains("The site sets the interval between cycles.")
    );
    daemon.stop();

    // Set on the machine: an hour, whatever the site says. Four seconds after the cycle at
    // start hold no other (the site's interval would have made three or more).
    let daemon = Daemon::start_with(&agent, &["--splay", "0s", "--interval", "1h"]);
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(4) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(daemon.cycles(), 1, "{}", daemon.log_text());
    daemon.stop();

    // `none` leaves it to the agents again.
    let out = run_ok(
        "invsite",
        &[
            "config",
            "--data-dir",
            site.data_dir(),
            "--agent-interval",
            "none",
        ],
    );
    assert!(out.contains("agent-interval none"), "{out}");
}

#[test]
fn the_daemon_waits_for_its_splay_unless_asked_to_cycle() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "WEB1");
    let log = agent.dir.with_extension("log");
    let mut child = bin("invagent")
        .args([
            "run",
            "--data-dir",
            s(&agent.dir),
            "--root",
            s(&agent.root),
            "--splay",
            "1d",
        ])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_until(10, "the daemon says it waits", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("(the splay)")
    });
    assert!(
        try_show(&site, "WEB1", &[]).is_some_and(|v| v["sw"].is_null()),
        "no report before the splay ends"
    );
    // A local trigger does not wait for the splay.
    agent.cycle();
    assert!(site.show("WEB1")["sw"]["version"].as_i64().is_some());
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(exit_within(&mut child, 30, "invagent run after SIGTERM").success());
}

/// The configuration files the packages install parse, as shipped and with every key that is
/// commented out turned on: a key renamed in the code cannot leave a conffile that stops the
/// daemon at start.
#[test]
fn the_packaged_configuration_files_are_valid_with_every_key_on() {
    let tmp = tempfile::tempdir().unwrap();
    let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging");
    for (file, tool, args) in [
        ("agent/agent.toml", "invagent", &["config", "--config"][..]),
        (
            "site/site.toml",
            "invsite",
            &["config", "--show", "--config"][..],
        ),
    ] {
        let shipped = packaging.join(file);
        let text = std::fs::read_to_string(&shipped).unwrap();
        let all_on: String = text
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(all_on, text, "{file} has keys commented out to turn on");
        let on = tmp.path().join(file.replace('/', "-"));
        std::fs::write(&on, &all_on).unwrap();
        for path in [s(&shipped), s(&on)] {
            let mut a = args.to_vec();
            a.push(path);
            let out = run_ok(tool, &a);
            assert!(
                out.contains(&format!("# {path}:")),
                "{tool} read {path}:\n{out}"
            );
        }
    }
}
