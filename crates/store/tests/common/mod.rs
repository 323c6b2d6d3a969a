//! Fixtures for the store's integration tests: one store per backend, so the contract tests
//! run unchanged against every backend, and builders for reports and synthetic inventories.
//!
//! SQLite runs on a temporary directory. PostgreSQL runs when `INVSYNC_TEST_POSTGRES` holds the
//! URL of a database the tests may use: each fixture gets a schema of its own in it (the URL's
//! `options=-c search_path=…` selects it), so tests running in parallel never see each other's
//! data. The schemas are left behind; the CI script drops the whole database after the run.
//!
//! A contract test is written once and declared with [`on_each_backend!`], which makes it two
//! tests, `NAME::sqlite` and `NAME::postgresql`; without `INVSYNC_TEST_POSTGRES` the second is
//! ignored with the reason (the `invsync_postgres` cfg of `build.rs`), so a run says what it
//! did not test.

#![allow(dead_code)] // Each test file uses a different part of this module.

use std::path::PathBuf;

use invsync_proto::inventory::Attrs;
use invsync_proto::wire::{Event, Report, ReportAck, ReportBody};
use invsync_proto::{Class, ClientName, Delta, Digest, Items, SiteCode, Snapshot, Timestamp};
use invsync_store::{Enrollment, SiteMeta, Store};
use tempfile::TempDir;
use uuid::Uuid;

/// A store under test and what is needed to open it again.
pub struct Fixture {
    pub backend: String,
    pub store: Store,
    location: Location,
    _dir: TempDir,
}

enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

/// What the newer schema steps added, as statements that take it out again, so that a
/// migration test rebuilds an older database from a current one (newest step first; both
/// dialects read them): the lifecycle (SQLite 9, PostgreSQL 6), duplicates and agent versions
/// (8, 5), then roles and the audit (7, 4; PostgreSQL also has the trigger's function).
pub const UNDO_LIFECYCLE: &str = "DROP INDEX clients_deleted; DROP INDEX history_at;
     DROP INDEX requests_done;
     ALTER TABLE clients DROP COLUMN deleted_at; ALTER TABLE outbox DROP COLUMN deleted_at;";
pub const UNDO_MERGES: &str = "DROP TABLE client_merges;
     DROP INDEX requests_hops_pending;
     ALTER TABLE requests DROP COLUMN hops_pending;
     ALTER TABLE requests DROP COLUMN hops_top;
     ALTER TABLE requests DROP COLUMN hops;
     DROP INDEX clients_hardware;
     DROP INDEX clients_machine;
     ALTER TABLE clients DROP COLUMN agent_version;
     ALTER TABLE clients DROP COLUMN dmi_uuid;
     ALTER TABLE clients DROP COLUMN dmi_serial;";
pub const UNDO_ROLES_SQLITE: &str = "DROP TABLE audit; DROP TABLE users;";
pub const UNDO_ROLES_POSTGRES: &str =
    "DROP TABLE audit; DROP TABLE users; DROP FUNCTION audit_append_only();";

/// The statements that make a current database one of SQLite version `sqlite` and PostgreSQL
/// version `postgres`, for [`Fixture::reopen_after`]: they take out the steps above 6 (and 3)
/// listed here; a test going further back first takes out the older steps it knows of.
pub fn back_to(sqlite: i64, postgres: i64) -> (String, String) {
    let mut lite = String::new();
    let mut pg = String::new();
    for (step, undo_lite, undo_pg) in [
        (9, UNDO_LIFECYCLE, UNDO_LIFECYCLE),
        (8, UNDO_MERGES, UNDO_MERGES),
        (7, UNDO_ROLES_SQLITE, UNDO_ROLES_POSTGRES),
    ] {
        if step > sqlite {
            lite.push_str(undo_lite);
            pg.push_str(undo_pg);
        }
    }
    assert_eq!(
        sqlite - postgres,
        3,
        "the two dialects' versions differ by 3"
    );
    let set = |v: i64| format!(" UPDATE meta SET value = '{v}' WHERE key = 'schema_version';");
    (lite + &set(sqlite), pg + &set(postgres))
}

/// The environment variable naming the PostgreSQL database the tests may use.
pub const POSTGRES_ENV: &str = "INVSYNC_TEST_POSTGRES";

/// The URL of the PostgreSQL database the tests may use, if one was given.
pub fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES_ENV)
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// Creates a fresh, empty schema in the test database and returns a URL whose connections use
/// it (and only it) as their search path.
pub async fn fresh_pg_schema(base: &str) -> String {
    use sqlx::Connection;
    let schema = format!("t_{}", Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_ENV}: {e}"));
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .expect("create a test schema");
    let _ = conn.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

impl Fixture {
    /// Closes the store (every handle to it) and opens the same database again.
    pub async fn reopen(self) -> Fixture {
        let Fixture {
            backend,
            store,
            location,
            _dir,
        } = self;
        drop(store);
        let store = match &location {
            Location::Sqlite(path) => Store::open_sqlite(path)
                .await
                .expect("reopen the SQLite store"),
            Location::Postgres(url) => Store::open_postgres(url)
                .await
                .expect("reopen the PostgreSQL store"),
        };
        Fixture {
            backend,
            store,
            location,
            _dir,
        }
    }

    /// Runs `sqlite` or `postgres` (whichever database this fixture has) on the database as
    /// another program would, then closes the store and opens it again: how a test makes a
    /// database of an older schema version for the store to migrate.
    pub async fn reopen_after(self, sqlite: &str, postgres: &str) -> Fixture {
        match &self.location {
            Location::Sqlite(path) => rusqlite::Connection::open(path)
                .and_then(|c| c.execute_batch(sqlite))
                .expect("run SQL on the SQLite database"),
            Location::Postgres(url) => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
                sqlx::raw_sql(postgres)
                    .execute(&mut conn)
                    .await
                    .expect("run SQL on the PostgreSQL database");
                let _ = conn.close().await;
            }
        }
        self.reopen().await
    }

    /// Runs `sqlite` or `postgres` on the database as another program would, and says whether
    /// the database refused it (with its message): for the rules the schema itself enforces.
    pub async fn try_sql(&self, sqlite: &str, postgres: &str) -> Result<(), String> {
        match &self.location {
            Location::Sqlite(path) => rusqlite::Connection::open(path)
                .and_then(|c| c.execute_batch(sqlite))
                .map_err(|e| e.to_string()),
            Location::Postgres(url) => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
                let result = sqlx::raw_sql(postgres)
                    .execute(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                let _ = conn.close().await;
                result
            }
        }
    }

    /// A second, independent store on the same database, as another process would have.
    pub async fn second_handle(&self) -> Store {
        match &self.location {
            Location::Sqlite(path) => Store::open_sqlite(path)
                .await
                .expect("open a second handle"),
            Location::Postgres(url) => Store::open_postgres(url)
                .await
                .expect("open a second PostgreSQL handle"),
        }
    }
}

pub fn site() -> SiteMeta {
    site_at("S01")
}

/// The metadata of a test site with this code.
pub fn site_at(code: &str) -> SiteMeta {
    SiteMeta {
        code: SiteCode::parse(code).unwrap(),
        name: if code == "S01" {
            "Test site".to_string()
        } else {
            format!("Site {code}")
        },
        created_at: Timestamp(1_000),
    }
}

/// The backend a test made by [`on_each_backend!`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

tokio::task_local! {
    /// Set by the tests [`on_each_backend!`] makes: [`stores`] then returns that backend only.
    pub static BACKEND: Backend;
}

/// Declares the test `async fn $name()` (written with `for f in stores().await`) as two tests,
/// `$name::sqlite` and `$name::postgresql`, each with the given test attribute (the runtime
/// flavour the test needs). The PostgreSQL one is ignored, with the reason, when the build had
/// no `INVSYNC_TEST_POSTGRES`.
#[macro_export]
macro_rules! on_each_backend {
    (#[$test:meta] $name:ident) => {
        mod $name {
            use $crate::common::{BACKEND, Backend};

            #[$test]
            async fn sqlite() {
                BACKEND.scope(Backend::Sqlite, super::$name()).await
            }

            #[$test]
            #[cfg_attr(
                not(invsync_postgres),
                ignore = "INVSYNC_TEST_POSTGRES is not set: PostgreSQL not tested"
            )]
            async fn postgresql() {
                BACKEND.scope(Backend::Postgres, super::$name()).await
            }
        }
    };
}

/// One fresh store: of the backend the test runs on (see [`on_each_backend!`]), or outside such
/// a test of every backend available.
pub async fn stores() -> Vec<Fixture> {
    stores_at("S01").await
}

/// [`stores`] for the site with this code (hierarchy tests need several sites).
pub async fn stores_at(code: &str) -> Vec<Fixture> {
    let only = BACKEND.try_with(|b| *b).ok();
    let mut out = Vec::new();
    if only != Some(Backend::Postgres) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("site.db");
        let store = Store::create_sqlite(&path, &site_at(code))
            .await
            .expect("create the SQLite store");
        out.push(Fixture {
            backend: "sqlite".to_string(),
            store,
            location: Location::Sqlite(path),
            _dir: dir,
        });
    }
    if only == Some(Backend::Postgres) && postgres_url().is_none() {
        // Only when an ignored test is run by hand (`--ignored`) or the build and the run saw
        // different environments.
        panic!("{POSTGRES_ENV} is not set: this test needs a PostgreSQL database");
    }
    if let (None | Some(Backend::Postgres), Some(base)) = (only, postgres_url()) {
        let url = fresh_pg_schema(&base).await;
        let store = Store::create_postgres(&url, &site_at(code))
            .await
            .expect("create the PostgreSQL store");
        out.push(Fixture {
            backend: "postgresql".to_string(),
            store,
            location: Location::Postgres(url),
            _dir: tempfile::tempdir().expect("temporary directory"),
        });
    }
    out
}

pub fn name(raw: &str) -> ClientName {
    ClientName::parse(raw).unwrap()
}

pub fn key_hash(n: u8) -> Digest {
    Digest([n; 32])
}

/// Enrolls a client with machine id `<name>-machine` and returns its id.
pub async fn enroll(store: &Store, raw: &str) -> Uuid {
    let e = Enrollment {
        name: name(raw),
        machine_id: format!("{raw}-machine"),
        key_hash: key_hash(1),
        now: Timestamp(2_000),
        hardware: None,
        agent_version: None,
    };
    store.enroll(&e).await.expect("enroll").client_id
}

pub fn attrs(pairs: &[(&str, &str)]) -> Attrs {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A small hardware inventory.
pub fn hw_items(serial: &str) -> Items {
    let mut items = Items::new();
    items.insert(
        "system".into(),
        attrs(&[
            ("vendor", "ACME"),
            ("product", "Box 9000"),
            ("serial", serial),
        ]),
    );
    items.insert(
        "cpu".into(),
        attrs(&[
            ("model", "Xeon"),
            ("cores", "8"),
            ("threads", "16"),
            ("mhz", "2400"),
        ]),
    );
    items.insert("memory".into(), attrs(&[("total_bytes", "17179869184")]));
    items
}

/// A software package item as the dpkg collector produces it.
pub fn package(name: &str, version: &str, size: u64) -> (String, Attrs) {
    (
        format!("dpkg/{name}/amd64"),
        attrs(&[
            ("arch", "amd64"),
            ("name", name),
            ("size_bytes", &size.to_string()),
            ("source", "dpkg"),
            ("version", version),
        ]),
    )
}

pub fn full(class: Class, items: &Items) -> Report {
    Report {
        report_id: Uuid::new_v4(),
        class,
        hash: Snapshot::new(items.clone()).hash(),
        body: ReportBody::Full {
            items: items.clone(),
        },
        answers: vec![],
    }
}

/// A delta from `from` to `to` against `base_version`.
pub fn delta(class: Class, base_version: i64, from: &Items, to: &Items) -> Report {
    let from = Snapshot::new(from.clone());
    let to = Snapshot::new(to.clone());
    let d: Delta = from.diff(&to);
    Report {
        report_id: Uuid::new_v4(),
        class,
        hash: to.hash(),
        body: ReportBody::Delta {
            base_version,
            delta: d,
        },
        answers: vec![],
    }
}

/// A hardware inventory like a small server's, with the values that differ between machines.
fn server_hw(client: usize, round: usize) -> Items {
    let mut items = Items::new();
    let c = client;
    items.insert(
        "system".into(),
        attrs(&[
            ("vendor", "Dell Inc."),
            ("product", "PowerEdge R640"),
            ("serial", &format!("SRV{c:05}X")),
            ("uuid", &format!("4c4c4544-0042-3510-8052-{c:012}")),
        ]),
    );
    items.insert(
        "bios".into(),
        attrs(&[
            ("vendor", "Dell Inc."),
            ("version", "2.17.1"),
            ("date", "03/15/2023"),
        ]),
    );
    items.insert(
        "cpu".into(),
        attrs(&[
            ("model", "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz"),
            ("sockets", "2"),
            ("cores", "40"),
            ("threads", "80"),
            ("mhz", "2100"),
        ]),
    );
    items.insert("memory".into(), attrs(&[("total_bytes", "202779942912")]));
    for d in 0..4 {
        items.insert(
            format!("dimm/DIMM_A{d}"),
            attrs(&[
                ("size_bytes", "51539607552"),
                ("type", "DDR4"),
                ("speed_mts", "2933"),
            ]),
        );
    }
    for (d, model) in [
        ("sda", "PERC H730P"),
        ("nvme0n1", "Samsung SSD 980 PRO 1TB"),
    ] {
        items.insert(
            format!("disk/{d}"),
            attrs(&[
                ("model", model),
                ("size_bytes", "1000204886016"),
                ("rotational", "0"),
            ]),
        );
    }
    for (i, mp) in ["/", "/boot", "/var", "/home", "/srv"].iter().enumerate() {
        let free = (c * 7 + i * 13 + round) % 100;
        items.insert(
            format!("fs{mp}"),
            attrs(&[
                ("type", "ext4"),
                ("size_bytes", "107374182400"),
                ("free_bytes", &format!("{}", free * 1_073_741_824)),
            ]),
        );
    }
    for n in 0..3 {
        items.insert(
            format!("nic/eno{n}"),
            attrs(&[
                (
                    "mac",
                    &format!("b0:26:28:{:02x}:{:02x}:{n:02x}", c / 256, c % 256),
                ),
                ("speed_mbps", "10000"),
                (
                    "addresses",
                    &format!(
                        "10.{n}.{}.{},fe80::b226:28ff:fe{:02x}:{:02x}{n:02x}",
                        c / 256,
                        c % 256,
                        c / 256,
                        c % 256
                    ),
                ),
            ]),
        );
    }
    items.insert(
        "os".into(),
        attrs(&[
            ("name", "Debian GNU/Linux"),
            ("version", "12"),
            ("kernel", "6.1.0-18-amd64"),
            ("arch", "x86_64"),
        ]),
    );
    items
}

/// A plausible Debian package name for number `n`, 13 to 16 characters long: a little longer
/// than the 12.3 characters of an average Debian 12 package name.
fn package_name(n: usize) -> String {
    const STEMS: [&str; 8] = [
        "libssl", "python3-", "libgtk", "fonts-", "libx11-", "perl-", "libc", "gir1.2-",
    ];
    const SUFFIXES: [&str; 4] = ["-dev", "-bin", "", "-data"];
    format!("{}{n}{}", STEMS[n % 8], SUFFIXES[n % 4])
}

/// Debian-like versions of 12 to 15 characters (`3.0.11-1+deb12u2`; Debian 12 averages 11.4).
fn package_version(n: usize, bump: usize) -> String {
    format!(
        "{}.{}.{}-{}+deb12u{}",
        n % 7 + 1,
        n % 23,
        (n * 31) % 97,
        n % 5 + 1,
        bump
    )
}

/// A client's 1,500 packages: 90 % from the site-wide common set, 10 % its own.
fn client_packages(client: usize, upgraded: usize) -> Items {
    let mut items = Items::new();
    for n in 0..1_350 {
        let bump = usize::from(n < upgraded);
        let (k, a) = package(
            &package_name(n),
            &package_version(n, bump + 1),
            (n as u64 * 7_919) % 9_000_000 + 1_000,
        );
        items.insert(k, a);
    }
    for n in 0..150 {
        let id = 100_000 + client * 1_000 + n;
        let (k, a) = package(
            &package_name(id),
            &package_version(id, 1),
            (id as u64 * 7_919) % 9_000_000 + 1_000,
        );
        items.insert(k, a);
    }
    items
}

/// The life of `clients` clients for the storage budget (SPEC section 10): first inventories
/// (1,500 packages, 90 % shared), then a month of package upgrades, hardware changes, resyncs
/// and events. Shared by every backend's storage test.
pub async fn budget_workload(store: &Store, clients: usize) {
    let mut ids = Vec::new();
    for c in 0..clients {
        ids.push(enroll(store, &format!("host{c:04}")).await);
    }
    // The first inventories, then a month of life: a round of package upgrades (the same new
    // versions everywhere, as from one mirror), two hardware changes, resyncs and events.
    for (c, id) in ids.iter().enumerate() {
        let hw = server_hw(c, 0);
        store
            .store_report(*id, &full(Class::Hw, &hw), Timestamp(10_000))
            .await
            .unwrap();
        store
            .store_report(
                *id,
                &full(Class::Sw, &client_packages(c, 0)),
                Timestamp(10_000),
            )
            .await
            .unwrap();
    }
    for (c, id) in ids.iter().enumerate() {
        let n = format!("host{c:04}");
        for (version, round) in (1..).zip(1..=2) {
            let ack = store
                .store_report(
                    *id,
                    &delta(
                        Class::Hw,
                        version,
                        &server_hw(c, round - 1),
                        &server_hw(c, round),
                    ),
                    Timestamp(20_000),
                )
                .await
                .unwrap();
            assert!(matches!(ack, ReportAck::Accepted { .. }), "{ack:?}");
        }
        let q = store
            .request_resync(&name(&n), Class::Sw, Timestamp(30_000))
            .await
            .unwrap();
        store
            .request_event(&name(&n), Event::Sinv, Timestamp(30_000))
            .await
            .unwrap();
        store.checkin(*id, Timestamp(31_000)).await.unwrap();
        let mut r = full(Class::Sw, &client_packages(c, 40));
        r.answers = vec![q.id];
        let ack = store
            .store_report(*id, &r, Timestamp(32_000))
            .await
            .unwrap();
        assert!(
            matches!(ack, ReportAck::Accepted { version: 2, .. }),
            "{ack:?}"
        );
        assert_eq!(
            store
                .history(&name(&n), 1_000)
                .await
                .unwrap()
                .unwrap()
                .len(),
            40 + 2 * 5
        );
    }
}
