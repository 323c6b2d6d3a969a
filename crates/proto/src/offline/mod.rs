//! The file-share CAP: the files that carry the CAP protocol where the agent cannot reach the
//! site over the network (SPEC section 1's `CAP_<SiteCode>\Clidata.box`, issue 18).
//!
//! A CAP directory holds `Clidata.box/<CLIENT>.cfg`, the site's instructions for one client
//! signed with the site's Ed25519 key ([`cfg`], [`sign`]), and `Inventry.box/<CLIENT>-<id>.inv`,
//! one report (or a report-less check-in) from one agent, zstd-compressed and authenticated
//! with a keyed BLAKE3 MAC derived from the client's key ([`inv`]). Besides those, an
//! enrollment file carries a client's credential from `invsite offline-enroll` to `invagent
//! enroll --from-file` ([`enrollment`]), and an import file carries one class of inventory from
//! a machine that was never enrolled to `invsite import` ([`import`]).
//!
//! These types only encode, decode, sign and check; reading and writing the directories (and
//! the decisions about what a file means) belong to the agent and the site.

pub mod cfg;
pub mod enrollment;
pub mod import;
pub mod inv;
pub mod sign;

use uuid::Uuid;

use crate::inventory::Digest;
use crate::name::ClientName;

/// The directory of `.cfg` files, one per client, that the site writes.
pub const CLIDATA_BOX: &str = "Clidata.box";
/// The directory the agents drop their `.inv` files in.
pub const INVENTRY_BOX: &str = "Inventry.box";
/// Under [`INVENTRY_BOX`]: the files imported (or found to be already imported).
pub const DONE_DIR: &str = "done";
/// Under [`INVENTRY_BOX`]: the files refused, each beside a `.reason` file (the original's
/// BADMIFS).
pub const BAD_DIR: &str = "bad";

/// `<CLIENT>.cfg`.
pub fn cfg_file_name(client: &ClientName) -> String {
    format!("{client}.cfg")
}

/// `<CLIENT>-<id>.inv`.
pub fn inv_file_name(client: &ClientName, id: Uuid) -> String {
    format!("{client}-{}.inv", id.hyphenated())
}

/// The client name and file id of an `.inv` file name, or `None` for any other name (a
/// temporary file being written, a stray file, a name with a path in it).
pub fn parse_inv_file_name(file: &str) -> Option<(ClientName, Uuid)> {
    let stem = file.strip_suffix(".inv")?;
    // The id is the last 36 characters (a hyphenated UUID), after a '-'.
    let split = stem.len().checked_sub(37)?;
    if !stem.is_char_boundary(split) {
        return None;
    }
    let (name, rest) = stem.split_at(split);
    let id_text = rest.strip_prefix('-')?;
    let id = Uuid::try_parse(id_text).ok()?;
    // One spelling per id (lower-case, hyphenated), so one report has one file name.
    if id.hyphenated().to_string() != id_text {
        return None;
    }
    let name = ClientName::parse(name).ok()?;
    // Names are held upper-case; a file named in lower case is someone else's spelling, and
    // on a case-insensitive share it could shadow the real client's file.
    (name.as_str() == &stem[..split]).then_some((name, id))
}

/// The key a client's `.inv` files are authenticated with, derived from the hash of its key:
/// the site keeps only that hash (the key itself is shown once, at enrollment), so a key it
/// can verify with must come from the hash. What this means for a copy of the site's database
/// is in SECURITY.md.
pub fn mac_key(key_hash: &Digest) -> [u8; 32] {
    blake3::derive_key("invsync 2026-12 file-share CAP .inv MAC", &key_hash.0)
}

/// Why a CAP file was refused. The sentences end up in `.reason` files and in the agent's log,
/// where an administrator reads them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("the file is {len} bytes; at most {limit} are accepted")]
    TooLarge { len: u64, limit: u64 },
    #[error("the file is truncated or not a {what} file: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error(
        "the file does not carry a valid signature of site {site}: it was altered, or written by someone else"
    )]
    BadSignature { site: String },
    #[error(
        "the file is not authenticated by {client}'s key: it was altered, forged, or written with an older key"
    )]
    BadMac { client: String },
    #[error("the file is for {found}, not {expected}")]
    WrongClient { expected: String, found: String },
    #[error("unknown {what} format {found}; this program reads format {expected}")]
    UnknownFormat {
        what: &'static str,
        found: u64,
        expected: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inv_file_names_round_trip_and_refuse_anything_else() {
        let name = ClientName::parse("WEB-01").unwrap();
        let id = Uuid::new_v4();
        let file = inv_file_name(&name, id);
        assert_eq!(parse_inv_file_name(&file), Some((name.clone(), id)));
        for bad in [
            format!(".{file}.tmp"),
            format!("{file}.tmp"),
            format!("web-01-{id}.inv"),
            format!("../WEB01-{id}.inv"),
            format!("WEB01{id}.inv"),
            format!("-{id}.inv"),
            format!("WEB01-{}.inv", id.simple()),
            format!("WEB01-{}.inv", id.hyphenated().to_string().to_uppercase()),
            "WEB01.cfg".to_string(),
            "é-x.inv".to_string(),
        ] {
            assert_eq!(parse_inv_file_name(&bad), None, "{bad}");
        }
    }

    #[test]
    fn mac_keys_differ_per_key_hash() {
        assert_ne!(mac_key(&Digest([1; 32])), mac_key(&Digest([2; 32])));
        // The MAC key is not the key hash itself.
        assert_ne!(mac_key(&Digest([1; 32])), [1; 32]);
    }
}
