//! What the load generator asks of the operating system: a file-descriptor limit high enough
//! for one socket per simulated agent, and the site process's resident memory and limits
//! from `/proc` (Linux).

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};

/// The file-descriptor limit after raising the soft limit to the hard one.
#[derive(Debug, Clone, Copy)]
pub struct FdLimit {
    pub soft: u64,
    pub hard: u64,
}

/// Raises `RLIMIT_NOFILE`'s soft limit to its hard limit and returns both.
pub fn raise_fd_limit() -> Result<FdLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Ok(FdLimit {
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
    })
}

fn proc_file(pid: u32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{name}"))
}

/// The process's resident set size (`VmRSS` of `/proc/PID/status`) in bytes.
pub fn vm_rss(pid: u32) -> Result<u64> {
    let path = proc_file(pid, "status");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (is process {pid} still running?)",
            path.display()
        )
    })?;
    parse_status_kb(&text, "VmRSS")
        .map(|kb| kb * 1024)
        .ok_or_else(|| anyhow!("no VmRSS in {}", path.display()))
}

/// A `kB` field of `/proc/PID/status`.
pub fn parse_status_kb(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// The process's command name (`/proc/PID/comm`).
pub fn comm(pid: u32) -> Result<String> {
    let path = proc_file(pid, "comm");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}: no process {pid}?", path.display()))?
        .trim()
        .to_string())
}

/// The process's soft limit of open files (`Max open files` of `/proc/PID/limits`), if
/// readable and not unlimited.
pub fn open_files_limit(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(proc_file(pid, "limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let s = "Name:\tinvsite\nVmHWM:\t   20000 kB\nVmRSS:\t   12345 kB\n";
        assert_eq!(parse_status_kb(s, "VmRSS"), Some(12345));
        assert_eq!(parse_status_kb(s, "VmSwap"), None);
    }

    #[test]
    fn own_process() {
        let me = std::process::id();
        assert!(vm_rss(me).unwrap() > 0);
        assert!(open_files_limit(me).is_some());
        assert!(raise_fd_limit().unwrap().soft > 0);
    }
}
