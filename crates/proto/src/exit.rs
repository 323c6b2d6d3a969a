//! The exit codes of SPEC section 7, shared by every binary, and the error that carries one.

use std::fmt;

/// An exit code of SPEC section 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 1: anything else; the message says what to do.
    Failure = 1,
    /// 2: bad usage or bad input; the message says which argument and why.
    Usage = 2,
    /// 3: not a site server (no site data directory or admin token readable).
    NotSiteServer = 3,
    /// 4: unknown client.
    UnknownClient = 4,
    /// 5: client owned by another site.
    OtherSite = 5,
    /// 6: timed out waiting.
    TimedOut = 6,
}

/// An error that ends a command with a specific exit code. Binaries wrap these in `anyhow` and
/// `main` looks for one in the chain; any other error exits 1.
#[derive(Debug)]
pub struct Exit {
    pub code: Code,
    pub message: String,
}

impl Exit {
    pub fn new(code: Code, message: impl Into<String>) -> Exit {
        Exit {
            code,
            message: message.into(),
        }
    }
    pub fn usage(message: impl Into<String>) -> Exit {
        Exit::new(Code::Usage, message)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// Writes a line to stdout and returns the write's result, where `println!` would panic:
/// `invsite clients --json | head -c 10` closes the pipe before the output ends, and the
/// binaries' `finish` turns the [`std::io::ErrorKind::BrokenPipe`] that comes back into a quiet
/// exit, as ripgrep does. Used with `?` in commands that return `anyhow::Result`.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        writeln!(::std::io::stdout().lock(), $($arg)*)
    }};
}

/// [`outln!`] without the line break.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        write!(::std::io::stdout().lock(), $($arg)*)
    }};
}

/// Whether an error (or anything in its chain) is a write to a pipe whose reader has gone: the
/// reader has what it wanted, so the command ends quietly and successfully.
pub fn is_broken_pipe(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        next = e.source();
    }
    false
}
