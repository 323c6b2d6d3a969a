//! Named points where a debug build can be made to crash on purpose, so end-to-end tests can
//! prove that a command killed half-way leaves nothing behind (`invsite init` after the parent
//! accepted the site, for one). `INVSITE_FAILPOINT=<name>` aborts the process at the point of
//! that name, as `kill -9` would: no destructor, no cleanup. Release builds compile it to
//! nothing, so no environment variable can crash an installed site.

/// Aborts the process when `INVSITE_FAILPOINT` names this point (debug builds only).
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("INVSITE_FAILPOINT").is_some_and(|v| v == name) {
        eprintln!("failpoint {name}: aborting on purpose");
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
