//! Upgrades keep data (issue 16, item 8): every site data directory an earlier release wrote
//! (`tests/fixtures/upgrade/<version>/`, made by `scripts/make-upgrade-fixture.sh`) opens with
//! the current code, migrates, shows what that release showed, and takes new writes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::common::*;

/// Every field of `expected` is in `actual` with the same value (later releases may add
/// fields, never lose or change one).
fn assert_within(expected: &Value, actual: &Value, at: &str) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                let Some(av) = a.get(k) else {
                    panic!("{at}.{k} is gone (was {v})")
                };
                assert_within(v, av, &format!("{at}.{k}"));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(
                e.len(),
                a.len(),
                "{at} has {} entries, had {}",
                a.len(),
                e.len()
            );
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                assert_within(ev, av, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(expected, actual, "{at} changed"),
    }
}

/// A copy of a fixture's data directory with the modes `invsite` insists on (git keeps none).
fn copy_site(fixture: &Path, into: &Path) {
    copy_dir(&fixture.join("site"), into);
    std::fs::set_permissions(into, std::fs::Permissions::from_mode(0o700)).unwrap();
    for entry in std::fs::read_dir(into).unwrap() {
        std::fs::set_permissions(
            entry.unwrap().path(),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
}

crate::on_each_db!(every_earlier_release_s_site_opens_migrates_and_keeps_its_data);

fn every_earlier_release_s_site_opens_migrates_and_keeps_its_data(db: Db) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/upgrade");
    let mut seen = 0;
    for release in std::fs::read_dir(&fixtures).unwrap() {
        let release = release.unwrap().path();
        // The SQLite site is the release's folder itself; the PostgreSQL one its `postgres/`,
        // with the database as a plain SQL dump.
        let fixture = match db {
            Db::Sqlite => release.clone(),
            Db::Postgres => release.join("postgres"),
        };
        if !fixture.is_dir() {
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site-S01");
        copy_site(&fixture, &dir);
        let pg = (db == Db::Postgres).then(|| {
            let pg = PgDb::create();
            let o = std::process::Command::new("psql")
                .args([
                    pg.url.as_str(),
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-f",
                    s(&fixture.join("dump.sql")),
                ])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "loading {}: {}",
                fixture.display(),
                stderr(&o)
            );
            let config_path = dir.join("config.json");
            let mut config: Value =
                serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
            config["db"] = Value::String(pg.url.clone());
            std::fs::write(&config_path, config.to_string()).unwrap();
            pg
        });
        let mut site = Site {
            dir,
            child: None,
            url: String::new(),
            pg,
        };
        let expected = |name: &str| -> Value {
            serde_json::from_str(
                &std::fs::read_to_string(fixture.join("expected").join(name)).unwrap(),
            )
            .unwrap()
        };
        let at = fixture.display().to_string();
        assert_within(
            &expected("clients.json"),
            &site.clients(),
            &format!("{at}: clients"),
        );
        for name in ["WEB1", "APK1"] {
            assert_within(
                &expected(&format!("{name}.json")),
                &site.show(name),
                &format!("{at}: {name}"),
            );
        }
        // It takes new writes: an enrollment and reports, and a request for an old client.
        site.start();
        let agent = Agent::enroll(tmp.path(), &site, "debian", "NEW1");
        agent.cycle();
        assert_eq!(
            site.show("NEW1")["sw"]["hash"],
            agent.inventory("sw")["hash"]
        );
        run_ok("invsync", &["sw", "APK1", "--data-dir", site.data_dir()]);
        site.stop();
        seen += 1;
    }
    assert!(seen >= 1, "no {db:?} fixture under {}", fixtures.display());
}
