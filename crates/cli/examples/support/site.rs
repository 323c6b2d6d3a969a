//! What the measuring examples share: finding the release binaries next to the example,
//! running a tool to completion, and a real `invsite serve` child process that announces its
//! address and is stopped with SIGTERM. Included by each example with
//! `#[path = "support/site.rs"] mod site;` (a folder without `main.rs` is not an example).

// Each example compiles its own copy and not every example uses every piece.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};

/// `invsite` (or another binary) in `target/release`, next to `target/release/examples/`.
pub fn sibling_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("could not find this example's executable")?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("{} has no grandparent directory", exe.display()))?;
    let bin = dir.join(name);
    if !bin.is_file() {
        bail!(
            "{} is missing: build the binaries first with `cargo build --release -p invsync-cli --bins --examples`",
            bin.display()
        );
    }
    Ok(bin)
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// Runs a tool to completion and returns its stdout; a failure carries its stderr.
pub fn run_tool(bin: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin)
        .args(args)
        .env_remove("INVSITE_DIR")
        .output()
        .with_context(|| format!("could not run {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "`{} {}` failed ({}): {}",
            bin.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A running `invsite serve`; SIGTERM'd (graceful shutdown) when stopped or dropped.
pub struct Server {
    pub code: &'static str,
    child: Option<Child>,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    pub fn start(
        invsite: &Path,
        code: &'static str,
        data_dir: &Path,
        log: &Path,
    ) -> Result<Server> {
        let log_file = fs::File::create(log).context("could not create the server's log file")?;
        let mut child = Command::new(invsite)
            .args(["serve", "--data-dir", s(data_dir)])
            .env_remove("INVSITE_DIR")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("could not start {} serve", invsite.display()))?;
        let mut out = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        out.read_line(&mut line)
            .context("could not read invsite serve's first line")?;
        // Keep draining stdout so the server never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let mut server = Server {
            code,
            child: Some(child),
            addr: "0.0.0.0:0".parse()?,
            log: log.to_path_buf(),
        };
        // `invsite P01 serving on http://127.0.0.1:PORT`
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|u| u.strip_prefix("http://"))
            .and_then(|a| a.parse::<SocketAddr>().ok());
        match addr {
            Some(addr) => server.addr = addr,
            None => bail!(
                "invsite serve ({code}) did not announce its address (first line {line:?}); its log:\n{}",
                server.stop_and_log()
            ),
        }
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stop(mut self) -> Result<()> {
        // A match, not a let chain: the workspace's rust-version is 1.85.
        match self.terminate() {
            Some(status) if !status.success() => bail!(
                "invsite serve ({}) exited with {status} after SIGTERM; its log:\n{}",
                self.code,
                self.read_log()
            ),
            _ => Ok(()),
        }
    }

    pub fn stop_and_log(mut self) -> String {
        self.terminate();
        self.read_log()
    }

    fn read_log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SIGTERM, not SIGKILL: the server shuts down gracefully and its exit status means
        // something.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        child.wait().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate();
    }
}
