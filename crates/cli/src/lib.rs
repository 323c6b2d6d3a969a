//! What the four thin binaries share: logging to stderr and turning the result of a
//! `try_main` into the exit codes of SPEC section 7.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use invsync_proto::exit::{Code, Exit};

/// Sends tracing events to stderr; `RUST_LOG` overrides the level (`info` by default).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// Prints an error as `<tool>: <message>` and returns its exit code: the code of an [`Exit`]
/// anywhere in the chain, else 1. A write to stdout whose reader went away
/// (`invsite clients --json | head -c 10`) ends quietly with 0, as ripgrep does: the reader
/// has what it wanted.
pub fn finish(tool: &str, result: anyhow::Result<()>) -> ExitCode {
    let Err(err) = result else { return ExitCode::SUCCESS };
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
        assert_eq!(without_control_chars("a\u{1b}[2J\nb\tc"), "a\\u{1b}[2J\nb\tc");
    }
}
