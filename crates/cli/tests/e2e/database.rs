//! `invsite init --db`: SQLite or PostgreSQL, and every refusal with a clear message that
//! leaves no site behind. The flows themselves run on both backends in `seed_flow`, `deltas`
//! `hierarchy` and `api` (see `on_each_db!`).

use crate::common::*;

#[test]
fn init_refuses_a_db_that_is_neither_sqlite_nor_a_postgres_url() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    for bad in [
        "mysql://root@localhost/inv",
        "sqlite3",
        "postgres:/missing-slash",
        "",
    ] {
        let out = run_expect(
            "invsite",
            &[
                "init",
                "--data-dir",
                s(&dir),
                "--site-code",
                "S01",
                "--db",
                bad,
            ],
            2,
        );
        assert!(
            out.contains("neither `sqlite` nor a PostgreSQL URL"),
            "--db {bad:?}: {out}"
        );
        assert!(
            !dir.join("config.json").exists(),
            "--db {bad:?} left a site behind"
        );
    }
}

#[test]
fn init_on_an_unreachable_postgres_fails_without_a_site_or_the_password_in_the_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let url = "postgres://inv:hunter2@127.0.0.1:1/inventory";
    let o = run(
        "invsite",
        &[
            "init",
            "--data-dir",
            s(&dir),
            "--site-code",
            "S01",
            "--db",
            url,
        ],
    );
    let out = stdout(&o) + &stderr(&o);
    assert_eq!(code(&o), 1, "{out}");
    assert!(
        out.contains(
            "cannot create the site's PostgreSQL database postgres://inv:***@127.0.0.1:1/inventory"
        ),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "the password leaked: {out}");
    assert!(
        !dir.join("config.json").exists(),
        "a failed init left a site behind"
    );
}

/// A green CI run must mean PostgreSQL was tested: without `INVSYNC_TEST_POSTGRES` every
/// PostgreSQL test is ignored, which the summary line shows but a CI status does not.
#[test]
fn ci_tests_postgresql() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !ci || cfg!(invsync_postgres),
        "CI=true but INVSYNC_TEST_POSTGRES was not set when the tests were built: the PostgreSQL tests did not run"
    );
}

#[test]
#[cfg_attr(
    not(invsync_postgres),
    ignore = "INVSYNC_TEST_POSTGRES is not set: PostgreSQL not tested"
)]
fn a_postgres_database_holds_one_site_and_the_tools_work_on_it_without_a_server() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init_on(tmp.path(), "S01", Db::Postgres, &[]);
    let url = site.pg.as_ref().unwrap().url.clone();
    let config = std::fs::read_to_string(site.dir.join("config.json")).unwrap();
    assert!(
        config.contains(&url),
        "config.json names the database: {config}"
    );
    assert!(
        !site.dir.join("site.db").exists(),
        "no SQLite file next to a PostgreSQL site"
    );

    // A second site on the same database is refused; the first is untouched.
    let other = tmp.path().join("other");
    let out = run_expect(
        "invsite",
        &[
            "init",
            "--data-dir",
            s(&other),
            "--site-code",
            "S02",
            "--db",
            &url,
        ],
        1,
    );
    assert!(out.contains("S01") || out.contains("already"), "{out}");
    assert!(!other.join("config.json").exists());

    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "pgcli1");
    agent.cycle();
    site.stop();
    // With the server down, the tools reach the same PostgreSQL database directly.
    let out = run_ok("invsync", &["sw", "PGCLI1", "--data-dir", site.data_dir()]);
    assert!(out.contains("Queued"), "{out}");
    let v = site.show("PGCLI1");
    assert_eq!(v["sw"]["version"], 1);
    assert_eq!(v["requests"][0]["state"], "pending", "{v}");
    site.restart();
    agent.cycle();
    assert_eq!(site.show("PGCLI1")["requests"][0]["state"], "complete");
    site.stop();
}
