//! What the four thin binaries share: logging to stderr and turning the result of a
//! `try_main` into the exit codes of SPEC section 7. Also `invsite quickstart` (`quickstart`),
//! the one command that runs both a site and an agent, which is why it lives in this crate.

pub mod quickstart;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use invsync_proto::exit::{Code, Exit};

/// Sends tracing events to stderr; `RUST_LOG` overrides the level (`info` by default). When
/// stderr is the journal (a systemd unit), events carry no timestamp of their own: journald
/// stamps every line already, and `journalctl` would show two times on each.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if stderr_is_journal() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

/// Whether stderr is the journal's stream. systemd sets `JOURNAL_STREAM=DEVICE:INODE` for a
/// unit whose output goes to journald; the variable is inherited by children whose stderr
/// may be redirected elsewhere (a file, a pipe), so it counts only when it names the file
/// stderr is now, as sd_journal_stream_fd(3) advises.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // fstat(2) on stderr through a duplicate of the descriptor (std has no fstat on a borrowed fd).
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// Prints an error as `<tool>: <message>` and returns its exit code: the code of an [`Exit`]
/// anywhere in the chain, else 1. A write to stdout whose reader went away
/// (`invsite clients --json | head -c 10`) ends quietly with 0, as ripgrep does: the reader
/// has what it wanted.
pub fn finish(tool: &str, result: anyhow::Result<()>) -> ExitCode {
    let Err(err) = result else {
        return ExitCode::SUCCESS;
    };
    if err.chain().any(invsync_proto::exit::is_broken_pipe) {
        return ExitCode::SUCCESS;
    }
    let exit = err.chain().find_map(|e| e.downcast_ref::<Exit>());
    let code = exit.map(|e| e.code).unwrap_or(Code::Failure);
    let message = if code == Code::Usage && exit.is_some_and(|e| e.message.starts_with("error:")) {
        // clap's messages already start with "error:" and end with a usage hint.
        exit.map(|e| e.message.clone()).unwrap_or_default()
    } else {
        format!("{tool}: {err:#}")
    };
    // Not `eprintln!`, which panics when stderr is closed too.
    let _ = writeln!(std::io::stderr(), "{}", without_control_chars(&message));
    ExitCode::from(code as u8)
}

/// Messages can quote what a user typed (clap repeats a refused value verbatim); control
/// characters other than line breaks and tabs are shown escaped so a hostile argument cannot
/// drive the terminal.
pub fn without_control_chars(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            without_control_chars("a\u{1b}[2J\nb\tc"),
            "a\\u{1b}[2J\nb\tc"
        );
    }
}
