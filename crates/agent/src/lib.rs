//! The invsync client agent (`invagent`): the local state that stands in for the original
//! client's "inventory keys", the one HTTP client that talks to the site's CAP, the pure
//! planning of what to report, and the cycle and daemon loop built from them (SPEC sections 2,
//! 5 and 7). The binary is a thin `main` in another crate that calls [`cli::try_main`]; the
//! library functions [`enroll()`], [`cycle()`] and [`run()`] are public so `invsite
//! quickstart` (in the cli crate) can drive an agent in a thread without a second process.
//! HTTP and TLS come from `invsync-client`, which the site uses too.

pub mod cap;
pub mod cli;
mod collect;
pub mod cycle;
pub mod enroll;
pub mod error;
pub mod fallback;
pub mod jitter;
pub mod offline;
pub mod plan;
pub mod push;
pub mod run;
pub mod state;
pub mod trigger;

pub use cycle::{ClassOutcome, CycleOptions, CycleSummary, ReportKind, SentReport, cycle};
pub use enroll::{EnrollOptions, enroll, enroll_with_ca};
pub use error::{AgentError, StateError};
pub use fallback::cycle_via;
pub use offline::enroll::{FileEnrollOptions, enroll_from_file};
pub use plan::{PlanReason, PlannedReport, plan};
pub use run::{RunOptions, run, run_via};
pub use state::State;

/// The agent's version, sent in the User-Agent header of every request so a site can tell old
/// agents apart.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
