//! Tests of what is particular to the PostgreSQL backend: creating and opening a database
//! (refusals, clear errors without passwords), that the contract suite really ran on
//! PostgreSQL, and the storage a client costs.
//!
//! The tests that need a server use the database `INVSYNC_TEST_POSTGRES` names; without it
//! they are ignored with that reason (see `build.rs`), so the run lists them as not run, and
//! under CI (`CI=true`) `ci_tests_postgresql` fails. The URL tests need no server and always run.

mod common;

use common::*;
use invsync_store::{Store, StoreError};
use sqlx::Connection;

/// The test database's URL; the tests that call this are ignored when the build had none.
fn pg() -> String {
    postgres_url().unwrap_or_else(|| {
        panic!("{POSTGRES_ENV} is not set: this test needs a PostgreSQL database")
    })
}

/// A green CI run must mean PostgreSQL was tested: without the variable every test above it is
/// ignored, which a summary line shows but a CI status does not.
#[test]
fn ci_tests_postgresql() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !ci || cfg!(invsync_postgres),
        "CI=true but {POSTGRES_ENV} was not set when the tests were built: the PostgreSQL tests did not run"
    );
}

/// Runs SQL in the schema `url` selects.
async fn exec(url: &str, sql: &str) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    let _ = conn.close().await;
}

#[tokio::test]
#[cfg_attr(
    not(invsync_postgres),
    ignore = "INVSYNC_TEST_POSTGRES is not set: PostgreSQL not tested"
)]
async fn the_contract_suite_runs_on_both_backends_when_postgres_is_given() {
    pg();
    let fixtures = stores().await;
    let names: Vec<&str> = fixtures.iter().map(|f| f.store.backend_name()).collect();
    assert_eq!(names, ["sqlite", "postgresql"]);
    let labels: Vec<&str> = fixtures.iter().map(|f| f.backend.as_str()).collect();
    assert_eq!(labels, names);
}

#[tokio::test]
#[cfg_attr(
    not(invsync_postgres),
    ignore = "INVSYNC_TEST_POSTGRES is not set: PostgreSQL not tested"
)]
async fn create_refuses_a_database_that_holds_a_site_or_invsync_tables() {
    let base = pg();
    let url = fresh_pg_schema(&base).await;
    let store = Store::create_postgres(&url, &site()).await.unwrap();
    enroll(&store, "cli1").await;
    let err = Store::create_postgres(&url, &site_at("S02"))
        .await
        .err()
        .expect("create over a site fails");
    assert!(
        matches!(&err, StoreError::PgNotEmpty { tables, .. } if tables.contains("clients") && tables.contains("meta")),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("already holds invsync tables"),
        "{err}"
    );
    // The refused create changed nothing.
    assert_eq!(store.clients().await.unwrap().len(), 1);
    assert_eq!(store.site().await.unwrap(), site());
    drop(store);
    let reopened = Store::open_postgres(&url).await.unwrap();
    assert_eq!(reopened.site().await.unwrap(), site());
    assert_eq!(reopened.clients().await.unwrap().len(), 1);

    // What is left of a site (one of its tables) is refused too.
    let partial = fresh_pg_schema(&base).await;
    exec(&partial, "CREATE TABLE items (id bigint)").await;
    let err = Store::create_postgres(&partial, &site())
        .await
        .err()
        .expect("create over invsync tables fails");
    assert!(
        matches!(&err, StoreError::PgNotEmpty { tables, .. } if tables == "items"),
        "{err:?}"
    );
}

#[tokio::test]
#[cfg_attr(
    not(invsync_postgres),
    ignore = "INVSYNC_TEST_POSTGRES is not set: PostgreSQL not tested"
)]
async fn open_refuses_a_database_that_is_not_an_invsync_database() {
    let base = pg();
    let empty = fresh_pg_schema(&base).await;
    let err = Store::open_postgres(&empty)
        .await
        .err()
        .expect("an empty database is refused");
    assert!(matches!(&err, StoreError::PgNotInvsync { .. }), "{err:?}");
    assert!(err.to_string().contains("not an invsync database"), "{err}");

    // Another application's tables, even one called `meta`, are not a site, and stay as they are.
    let other = fresh_pg_schema(&base).await;
    exec(
        &other,
        "CREATE TABLE meta (k text, v text); CREATE TABLE orders (id int)",
    )
    .await;
    let err = Store::open_postgres(&other)
        .await
        .err()
        .expect("a foreign database is refused");
    assert!(matches!(&err, StoreError::PgNotInvsync { .. }), "{err:?}");
    let mut conn = sqlx::PgConnection::connect(&other).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, 2, "a refused database is left alone");
}

#[tokio::test]
async fn a_bad_url_is_a_clear_error_that_never_shows_the_password() {
    // No server needed: nothing listens on port 1, and the other URLs never get that far.
    for (url, says) in [
        ("mysql://inv:hunter2@127.0.0.1/inv", "not a PostgreSQL URL"),
        ("postgres://inv:hunter2@127.0.0.1:1/inv", "cannot connect"),
        (
            "postgres://inv:hunter2@127.0.0.1:notaport/inv",
            "cannot connect",
        ),
    ] {
        for result in [
            Store::create_postgres(url, &site()).await.err(),
            Store::open_postgres(url).await.err(),
        ] {
            let err = result.expect("a bad URL fails");
            let text = err.to_string();
            assert!(
                matches!(&err, StoreError::PgConnect { .. }),
                "{url}: {err:?}"
            );
            assert!(text.contains(says), "{url}: {text}");
            assert!(!text.contains("hunter2"), "the password leaked: {text}");
            assert!(text.contains("inv:***@127.0.0.1"), "{text}");
        }
    }
}

#[tokio::test]
#[cfg_attr(
    not(invsync_postgres),
    ignore = "INVSYNC_TEST_POSTGRES is not set: PostgreSQL not tested"
)]
async fn a_wrong_password_is_refused_with_the_servers_reason() {
    let base = pg();
    // A role that does not exist: refused at login whatever the server's authentication.
    let rest = &base[base.find("://").expect("a URL") + 3..];
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let url = format!("postgres://no_such_role_invsync:pw-secret@{host}");
    let err = Store::open_postgres(&url)
        .await
        .err()
        .expect("login refused");
    let text = err.to_string();
    assert!(matches!(&err, StoreError::PgConnect { .. }), "{err:?}");
    assert!(!text.contains("pw-secret"), "{text}");
}

/// The storage a client costs on PostgreSQL with the workload of the SQLite budget test. The
/// SPEC's 32 KB budget is SQLite's; PostgreSQL stores more per row (24-byte tuple headers,
/// the full item digests in a unique index, page fill), so the bound here is looser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(invsync_postgres),
    ignore = "INVSYNC_TEST_POSTGRES is not set: PostgreSQL not tested"
)]
async fn a_client_with_1500_packages_hardware_and_history_costs_at_most_96_kb() {
    const CLIENTS: usize = 100;
    let base = pg();
    let url = fresh_pg_schema(&base).await;
    let store = Store::create_postgres(&url, &site()).await.unwrap();
    budget_workload(&store, CLIENTS).await;
    drop(store);
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    // Every table of the site with its indexes and TOAST, as written (no VACUUM FULL), like
    // the SQLite test's file size.
    let bytes: i64 = sqlx::query_scalar(
        "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind = 'r'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let per_client = bytes as u64 / CLIENTS as u64;
    eprintln!("postgresql: {bytes} bytes for {CLIENTS} clients = {per_client} bytes per client");
    assert!(
        per_client <= 96 * 1024,
        "{per_client} bytes per client exceeds 96 KB"
    );
}
