//! The site server, `invsite`: its data directory, the HTTP service (the CAP API that agents
//! talk to, the admin API that `invsync`, `setevnt` and the console use, `/healthz`,
//! `/metrics`, the web console under `/console/`), and the `invsite` subcommands. Storage lives in `invsync-store`; this crate is
//! the only one that knows about HTTP on the server side.

pub mod access;
pub mod api;
pub mod cli;
pub mod connections;
pub mod console;
pub mod datadir;
pub mod failpoint;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod ownership;
pub mod parent;
pub mod secret;
pub mod server;
pub mod state;
pub mod tls;

pub use datadir::{Config, SiteDir};
pub use server::Server;
pub use state::AppState;
