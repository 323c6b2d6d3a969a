//! `Inventry.box/<CLIENT>-<id>.inv`: one report, or a report-less check-in, from one agent.
//!
//! The layout is `invsync-inv 1\n`, an [`InvHeader`] as one line of JSON, the report's JSON as
//! one zstd frame (empty for a check-in), then 32 bytes of MAC: the keyed BLAKE3 hash of
//! everything before it, under [`super::mac_key`] of the client's key. The header comes first
//! and in clear so that the site can find whose key to check with and refuse an oversized body
//! without decompressing anything; nothing else in the file is interpreted before the MAC is
//! checked.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::FileError;
use crate::inventory::Class;
use crate::name::ClientName;
use crate::time::Timestamp;

/// The first line of every `.inv`.
pub const MAGIC: &[u8] = b"invsync-inv 1\n";
/// A header line longer than this is refused unread.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The MAC's length at the end of the file.
pub const MAC_LEN: usize = 32;

/// What the site needs to know before it opens the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvHeader {
    pub client: ClientName,
    pub client_id: Uuid,
    /// The file's id, as in its name; the report's id when it carries one.
    pub file_id: Uuid,
    /// When the agent wrote it, by the agent's clock. For a check-in this is the time the site
    /// records as last seen (never later than the import, never earlier than what it has), so
    /// an old check-in put back in the directory changes nothing.
    pub written_at: Timestamp,
    /// The agent's machine id (the site records it for a client enrolled offline).
    pub machine_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// The report in the body, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<InvReport>,
    /// Instruction ids the agent has received from the `.cfg` (the site marks them picked up).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen: Vec<i64>,
    /// Event ids the agent has acted on (the site completes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub done_events: Vec<i64>,
}

/// The report an `.inv` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvReport {
    pub class: Class,
    /// The report's JSON size once decompressed; a body that decompresses to more is refused,
    /// and a size over the site's limit is refused before decompressing.
    pub bytes: u64,
    /// For a full report: the highest version the site may hold for the class when the report
    /// is applied (what the agent knew the site held, plus the reports it had queued before
    /// this one). A full report needs no base, so without this an old one put back in the
    /// directory would roll the snapshot back; with it, the site refuses it as stale. A delta
    /// carries its base version instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_past: Option<i64>,
}

/// An `.inv` file read but not yet authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvFile<'a> {
    pub header: InvHeader,
    /// The zstd frame of the report's JSON; empty for a check-in.
    pub body: &'a [u8],
    signed: &'a [u8],
    mac: [u8; MAC_LEN],
}

/// The bytes of an `.inv` file: `body` is the report's JSON already zstd-compressed (empty for
/// a check-in), `mac_key` the client's [`super::mac_key`].
pub fn encode(header: &InvHeader, body: &[u8], mac_key: &[u8; 32]) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("an InvHeader always serializes");
    let mut out = Vec::with_capacity(MAGIC.len() + json.len() + 1 + body.len() + MAC_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&json);
    out.push(b'\n');
    out.extend_from_slice(body);
    let mac = blake3::keyed_hash(mac_key, &out);
    out.extend_from_slice(mac.as_bytes());
    out
}

impl<'a> InvFile<'a> {
    /// Splits a file into header, body and MAC. Only the header is parsed.
    pub fn parse(bytes: &'a [u8]) -> Result<InvFile<'a>, FileError> {
        let malformed = |reason: String| FileError::Malformed {
            what: ".inv",
            reason,
        };
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| malformed("it does not start with `invsync-inv 1`".to_string()))?;
        let window = &rest[..rest.len().min(MAX_HEADER_BYTES + 1)];
        let end = window.iter().position(|b| *b == b'\n').ok_or_else(|| {
            malformed(format!(
                "no header line within its first {MAX_HEADER_BYTES} bytes"
            ))
        })?;
        let header: InvHeader = serde_json::from_slice(&rest[..end])
            .map_err(|e| malformed(format!("its header is not valid: {e}")))?;
        let after = &rest[end + 1..];
        if after.len() < MAC_LEN {
            return Err(malformed(format!("it ends before its {MAC_LEN}-byte MAC")));
        }
        let (body, mac_bytes) = after.split_at(after.len() - MAC_LEN);
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(mac_bytes);
        if header.report.is_some() == body.is_empty() {
            return Err(malformed(if body.is_empty() {
                "its header announces a report and it has no body".to_string()
            } else {
                "it has a body and its header announces no report".to_string()
            }));
        }
        Ok(InvFile {
            header,
            body,
            signed: &bytes[..bytes.len() - MAC_LEN],
            mac,
        })
    }

    /// Checks the MAC with the client's [`super::mac_key`], in constant time.
    pub fn verify(&self, mac_key: &[u8; 32]) -> Result<(), FileError> {
        if blake3::keyed_hash(mac_key, self.signed) == blake3::Hash::from_bytes(self.mac) {
            Ok(())
        } else {
            Err(FileError::BadMac {
                client: self.header.client.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(report: Option<InvReport>) -> InvHeader {
        InvHeader {
            client: ClientName::parse("WEB01").unwrap(),
            client_id: Uuid::from_u128(1),
            file_id: Uuid::from_u128(2),
            written_at: Timestamp(1_700_000_000_000),
            machine_id: "abc".to_string(),
            agent_version: None,
            report,
            seen: vec![4],
            done_events: vec![],
        }
    }

    #[test]
    fn a_file_reads_back_and_any_change_fails_its_mac() {
        let key = [7u8; 32];
        let report = InvReport {
            class: Class::Hw,
            bytes: 5,
            not_past: Some(3),
        };
        let bytes = encode(&header(Some(report)), b"zstd!", &key);
        let file = InvFile::parse(&bytes).unwrap();
        assert_eq!(file.header, header(Some(report)));
        assert_eq!(file.body, b"zstd!");
        file.verify(&key).unwrap();
        assert_eq!(
            file.verify(&[8u8; 32]),
            Err(FileError::BadMac {
                client: "WEB01".to_string()
            })
        );
        for i in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[i] ^= 0x20;
            if let Ok(f) = InvFile::parse(&altered) {
                assert!(
                    f.verify(&key).is_err(),
                    "byte {i} changed and still verified"
                );
            }
        }
        for cut in 0..bytes.len() {
            if let Ok(f) = InvFile::parse(&bytes[..cut]) {
                assert!(f.verify(&key).is_err(), "cut at {cut} still verified");
            }
        }
    }

    #[test]
    fn a_check_in_has_no_body_and_a_report_needs_one() {
        let key = [7u8; 32];
        let checkin = encode(&header(None), b"", &key);
        let file = InvFile::parse(&checkin).unwrap();
        assert!(file.body.is_empty());
        file.verify(&key).unwrap();
        assert_eq!(
            checkin.len(),
            MAGIC.len() + file_header_len(&header(None)) + MAC_LEN
        );

        let report = InvReport {
            class: Class::Sw,
            bytes: 1,
            not_past: None,
        };
        let no_body = encode(&header(Some(report)), b"", &key);
        assert!(matches!(
            InvFile::parse(&no_body),
            Err(FileError::Malformed { .. })
        ));
        let stray_body = encode(&header(None), b"x", &key);
        assert!(matches!(
            InvFile::parse(&stray_body),
            Err(FileError::Malformed { .. })
        ));
    }

    #[test]
    fn an_endless_header_is_refused_without_reading_it_all() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(std::iter::repeat_n(b'{', MAX_HEADER_BYTES + 10));
        assert!(matches!(
            InvFile::parse(&bytes),
            Err(FileError::Malformed { reason, .. }) if reason.contains("no header line")
        ));
    }

    fn file_header_len(h: &InvHeader) -> usize {
        serde_json::to_vec(h).unwrap().len() + 1
    }
}
