//! Named points where a debug build can be made to crash on purpose, so end-to-end tests can
//! prove that a command killed half-way leaves nothing behind (`invsite init` after the parent
//! accepted the site, for one). `INVSITE_FAILPOINT=<name>` aborts the process at the point of
//! that name, as `kill -9` would: no destructor, no cleanup. `<name>:sleep:<ms>` instead holds
//! the process there that long, so a test can make a race happen in the order it wants (another
//! process acting in between). Release builds compile it to nothing, so no environment variable
//! can crash or slow an installed site.

/// Aborts the process when `INVSITE_FAILPOINT` names this point, or sleeps there when it says
/// `<name>:sleep:<ms>` (debug builds only).
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    if let Some(v) = std::env::var_os("INVSITE_FAILPOINT").and_then(|v| v.into_string().ok()) {
        if v == name {
            eprintln!("failpoint {name}: aborting on purpose");
            std::process::abort();
        }
        let ms = v
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(":sleep:"))
            .and_then(|ms| ms.parse::<u64>().ok());
        if let Some(ms) = ms {
            eprintln!("failpoint {name}: sleeping {ms} ms on purpose");
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
