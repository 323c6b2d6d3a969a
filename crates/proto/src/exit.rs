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
        Exit { code, message: message.into() }
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
