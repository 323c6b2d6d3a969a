//! The site server, `invsite`: its data directory, the HTTP service (the CAP API that agents
//! talk to, the admin API that `invsync`, `setevnt` and the console use, `/healthz`,
//! `/metrics`, the web console under `/console/`), and the `invsite` subcommands. Storage lives in `invsync-store`; this crate is
//! the only one that knows about HTTP on the server side.
//!
//! How the modules lean on each other (no file imports one that imports it back; the layout
//! test in `crates/cli/tests/layout.rs` checks): `server` composes the state (`state`), the
//! router (`api::router`, which mounts `console`) and the connection loop (`http`, `tls`,
//! `connections`). The handlers in `api` and `console` and the forwarder (`parent`) name
//! `state`; `state` names only `datadir` and the parts it holds (`hub`, `metrics`,
//! `connections`, `api::{decode, known_keys, throttle}`, `console::session`), none of which
//! names the state or a handler. `cli` holds the `invsite` commands; `access` reaches a site from a tool;
//! `kinds` (which kind an item is, for `cli::show` and the console) and `merges` (what an
//! enrollment that took a record over leaves behind) name nothing of the site; `audit` (who
//! acts, and the one function that records it) names nothing of the site, and `users` (adding,
//! rotating, removing administrators) names only `audit` and `secret`; `lifecycle` (the one
//! deletion of a client, and the maintenance task) names `ownership` and `audit`.

pub mod access;
pub mod api;
pub mod audit;
pub mod cli;
pub mod connections;
pub mod console;
pub mod datadir;
pub mod failpoint;
pub mod http;
pub mod hub;
pub mod kinds;
pub mod lifecycle;
pub mod merges;
pub mod metrics;
pub mod offline;
pub mod ownership;
pub mod parent;
pub mod secret;
pub mod server;
pub mod signing;
pub mod state;
pub mod tls;
pub mod users;

pub use datadir::{Config, SiteDir};
pub use server::Server;
pub use state::AppState;
