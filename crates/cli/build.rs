//! Tells the test targets whether PostgreSQL is to be tested: with `INVSYNC_TEST_POSTGRES` set
//! (to a database URL), the cfg `invsync_postgres` is on; without it, every PostgreSQL test is
//! compiled as ignored, with the reason, so a local run lists what it did not cover instead of
//! passing it in silence. Cargo runs this again, and recompiles, when the variable changes.
//!
//! Under CI the variable is required; the test `ci_tests_postgresql` fails without it (a check
//! here would fail every build with `CI=true`, packaging included, not only test runs).

fn main() {
    println!("cargo::rerun-if-env-changed=INVSYNC_TEST_POSTGRES");
    println!("cargo::rustc-check-cfg=cfg(invsync_postgres)");
    if std::env::var("INVSYNC_TEST_POSTGRES").is_ok_and(|url| !url.trim().is_empty()) {
        println!("cargo::rustc-cfg=invsync_postgres");
    }
}
