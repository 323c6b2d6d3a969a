//! Fixtures for the store's integration tests: one store per backend, so the contract tests
//! run unchanged against every backend, and builders for reports and synthetic inventories.
//!
//! SQLite runs on a temporary directory. PostgreSQL runs when `INVSYNC_TEST_POSTGRES` holds the
//! URL of a database the tests may use: each fixture gets a schema of its own in it (the URL's
//! `options=-c search_path=…` selects it), so tests running in parallel never see each other's
//! data. The schemas are left behind; the CI script drops the whole database after the run.

#![allow(dead_code)] // Each test file uses a different part of this module.

use std::path::PathBuf;

use invsync_proto::inventory::Attrs;
use invsync_proto::wire::{Report, ReportBody};
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

/// The environment variable naming the PostgreSQL database the tests may use.
pub const POSTGRES_ENV: &str = "INVSYNC_TEST_POSTGRES";

/// The URL of the PostgreSQL database the tests may use, if one was given.
pub fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES_ENV).ok().filter(|u| !u.trim().is_empty())
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

/// One fresh store per backend.
pub async fn stores() -> Vec<Fixture> {
    stores_at("S01").await
}

/// One fresh store per backend for the site with this code (hierarchy tests need several sites).
pub async fn stores_at(code: &str) -> Vec<Fixture> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("site.db");
    let store = Store::create_sqlite(&path, &site_at(code))
        .await
        .expect("create the SQLite store");
    let mut out = vec![Fixture {
        backend: "sqlite".to_string(),
        store,
        location: Location::Sqlite(path),
        _dir: dir,
    }];
    if let Some(base) = postgres_url() {
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
