//! The project's one HTTP client, shared by the agent (its calls to the site's CAP API) and
//! the site (a child site's calls to its parent, the site tools' calls to their own server's
//! admin API). It holds what those three callers had each written for themselves: which
//! certificates an `https://` connection trusts and the sentences for a failed handshake
//! (`tls`), and one blocking ureq wrapper with the timeouts of each kind of call, bodies sent
//! as compact JSON (zstd-compressed when large), answers read whatever their status, and the
//! transport failures told apart (`http`). It depends on `invsync-proto` alone, so the site
//! and the agent are peers that both use it rather than one depending on the other.

pub mod http;
pub mod tls;

pub use http::{Answer, Client, ClientOptions, Encoding, Failure, Timeouts};
