//! The enrollment file of `invsite offline-enroll CLIENT --out FILE`, read by `invagent enroll
//! --from-file FILE`: a client's credential carried to a machine the site cannot reach.
//!
//! It holds the client key, so whoever holds the file can report as the client until the key
//! is revoked: the site writes it with mode 0600, and the agent copies what it needs into its
//! own state (mode 0600 in a 0700 directory); the file can be destroyed after enrolling.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::FileError;
use super::sign::PublicKey;
use crate::name::{ClientName, SiteCode};
use crate::time::Timestamp;
use crate::wire::ClientToken;

/// The layout this program writes and reads.
pub const ENROLLMENT_FORMAT: u32 = 1;
/// An enrollment file is a few hundred bytes; anything much larger is not one.
pub const MAX_ENROLLMENT_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentFile {
    /// Always [`ENROLLMENT_FORMAT`].
    pub format: u32,
    pub client_id: Uuid,
    /// The client token ([`ClientToken::encode`]).
    pub token: String,
    pub name: ClientName,
    pub site: SiteCode,
    /// The public half of the site's key, which every `.cfg` must be signed with.
    pub site_public_key: PublicKey,
    pub created_at: Timestamp,
}

impl EnrollmentFile {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("an EnrollmentFile serializes");
        out.push(b'\n');
        out
    }

    /// Reads an enrollment file, refusing one whose token does not belong to its client id.
    pub fn decode(bytes: &[u8]) -> Result<EnrollmentFile, FileError> {
        if bytes.len() as u64 > MAX_ENROLLMENT_BYTES {
            return Err(FileError::TooLarge {
                len: bytes.len() as u64,
                limit: MAX_ENROLLMENT_BYTES,
            });
        }
        let malformed = |reason: String| FileError::Malformed {
            what: "enrollment",
            reason,
        };
        let probe: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| malformed(format!("not JSON: {e}")))?;
        match probe.get("format").and_then(|f| f.as_u64()) {
            Some(f) if f == u64::from(ENROLLMENT_FORMAT) => {}
            found => {
                return Err(FileError::UnknownFormat {
                    what: "enrollment",
                    found: found.unwrap_or(0),
                    expected: ENROLLMENT_FORMAT,
                });
            }
        }
        let file: EnrollmentFile =
            serde_json::from_value(probe).map_err(|e| malformed(e.to_string()))?;
        match ClientToken::parse(&file.token) {
            Some(t) if t.client_id == file.client_id => Ok(file),
            _ => Err(malformed(
                "its token is not a client token of its client id".to_string(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EnrollmentFile {
        let token = ClientToken {
            client_id: Uuid::from_u128(5),
            key: [3; 32],
        };
        EnrollmentFile {
            format: ENROLLMENT_FORMAT,
            client_id: token.client_id,
            token: token.encode(),
            name: ClientName::parse("PLC07").unwrap(),
            site: SiteCode::parse("S01").unwrap(),
            site_public_key: PublicKey([1; 32]),
            created_at: Timestamp(1),
        }
    }

    #[test]
    fn reads_back_and_refuses_a_foreign_token_or_format() {
        let file = sample();
        assert_eq!(EnrollmentFile::decode(&file.encode()), Ok(file.clone()));
        let mut other = file.clone();
        other.client_id = Uuid::from_u128(6);
        assert!(matches!(
            EnrollmentFile::decode(&other.encode()),
            Err(FileError::Malformed { .. })
        ));
        let mut future = file.clone();
        future.format = 9;
        assert!(matches!(
            EnrollmentFile::decode(&future.encode()),
            Err(FileError::UnknownFormat { found: 9, .. })
        ));
        assert!(EnrollmentFile::decode(b"{\"format\":1").is_err());
        assert!(EnrollmentFile::decode(&[b' '; 70_000]).is_err());
    }
}
