//! `Clidata.box/<CLIENT>.cfg`: what the site has for one client, signed by the site.
//!
//! The file is two lines: the [`Cfg`] as one line of JSON, then `ed25519 <128 hex digits>`, the
//! site's signature of exactly the bytes of the first line. An administrator can read it with
//! `cat`; an agent acts on it only when the signature is the site's and the file is newer than
//! the last one it acted on (`issued_at`, the site's clock), so an altered, forged or replayed
//! file does nothing.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::FileError;
use super::sign::{PublicKey, SiteKey};
use crate::name::{ClientName, SiteCode};
use crate::time::Timestamp;
use crate::wire::CheckinResponse;

/// The layout this program writes and reads.
pub const CFG_FORMAT: u32 = 1;
/// A `.cfg` larger than this is refused unread (one client's open requests are a few hundred
/// bytes; the site repeats at most [`MAX_REFUSED`] refusals).
pub const MAX_CFG_BYTES: u64 = 256 * 1024;
/// The most refused reports one `.cfg` lists.
pub const MAX_REFUSED: usize = 32;
/// The signature context: a `.cfg` signature is good for nothing else.
const CONTEXT: &[u8] = b"invsync .cfg v1";

/// The site's instructions and state for one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cfg {
    /// Always [`CFG_FORMAT`].
    pub format: u32,
    pub site: SiteCode,
    pub client: ClientName,
    pub client_id: Uuid,
    /// When the site wrote the file, by the site's clock; an agent acts only on a newer file
    /// than the last one it acted on.
    pub issued_at: Timestamp,
    /// What a network check-in would have answered: the open instructions, the version and
    /// hash the site holds per class, the agent interval the site asks for.
    pub checkin: CheckinResponse,
    /// Reports of this client the site refused (moved to `Inventry.box/bad/`), newest first:
    /// an agent waiting for one of them stops waiting and sends a full report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refused>,
}

/// A report the site refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub report_id: Uuid,
    pub reason: String,
}

impl Cfg {
    /// The file's bytes, signed with `key`.
    pub fn encode(&self, key: &SiteKey) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("a Cfg always serializes");
        let sig = key.sign(CONTEXT, &out);
        out.extend_from_slice(b"\ned25519 ");
        out.extend_from_slice(hex::encode(sig).as_bytes());
        out.push(b'\n');
        out
    }

    /// Reads a `.cfg` for `client_id`, refusing it unless `site` signed exactly these bytes.
    pub fn decode(bytes: &[u8], site: &PublicKey, client_id: Uuid) -> Result<Cfg, FileError> {
        if bytes.len() as u64 > MAX_CFG_BYTES {
            return Err(FileError::TooLarge {
                len: bytes.len() as u64,
                limit: MAX_CFG_BYTES,
            });
        }
        let malformed = |reason: &str| FileError::Malformed {
            what: ".cfg",
            reason: reason.to_string(),
        };
        let body = bytes
            .strip_suffix(b"\n")
            .ok_or_else(|| malformed("it does not end with a line break"))?;
        let split = body
            .iter()
            .rposition(|b| *b == b'\n')
            .ok_or_else(|| malformed("it has no signature line"))?;
        let (payload, sig_line) = (&body[..split], &body[split + 1..]);
        let sig_hex = sig_line
            .strip_prefix(b"ed25519 ")
            .ok_or_else(|| malformed("its last line is not `ed25519 <signature>`"))?;
        let mut sig = [0u8; 64];
        hex::decode_to_slice(sig_hex, &mut sig)
            .map_err(|_| malformed("its signature is not 128 hex digits"))?;
        // The signature is checked before the payload is parsed: nothing unauthenticated is
        // interpreted.
        if !site.verify(CONTEXT, payload, &sig) {
            return Err(FileError::BadSignature {
                site: site_of(payload).unwrap_or_else(|| "the site".to_string()),
            });
        }
        let format: FormatProbe = serde_json::from_slice(payload)
            .map_err(|e| malformed(&format!("its first line is not JSON: {e}")))?;
        if format.format != Some(u64::from(CFG_FORMAT)) {
            return Err(FileError::UnknownFormat {
                what: ".cfg",
                found: format.format.unwrap_or(0),
                expected: CFG_FORMAT,
            });
        }
        let cfg: Cfg = serde_json::from_slice(payload).map_err(|e| malformed(&e.to_string()))?;
        if cfg.client_id != client_id {
            return Err(FileError::WrongClient {
                expected: client_id.to_string(),
                found: format!("{} ({})", cfg.client, cfg.client_id),
            });
        }
        Ok(cfg)
    }
}

impl Cfg {
    /// The payload of a `.cfg` WITHOUT checking its signature: only for the site to compare
    /// what a file says with what it would write (it then re-signs and compares bytes, since
    /// Ed25519 signatures are deterministic), never for acting on anything.
    pub fn peek_unverified(bytes: &[u8]) -> Option<Cfg> {
        if bytes.len() as u64 > MAX_CFG_BYTES {
            return None;
        }
        let end = bytes.iter().position(|b| *b == b'\n')?;
        serde_json::from_slice(&bytes[..end]).ok()
    }
}

#[derive(Deserialize)]
struct FormatProbe {
    format: Option<u64>,
}

/// The site code an unverified payload claims, for the refusal's sentence only.
fn site_of(payload: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        site: SiteCode,
    }
    let probe: Probe = serde_json::from_slice(payload).ok()?;
    Some(probe.site.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Class, Digest};
    use crate::wire::{ClassState, Instruction, InstructionKind};

    fn sample() -> Cfg {
        let mut checkin = CheckinResponse::default();
        checkin.instructions.push(Instruction {
            id: 7,
            kind: InstructionKind::Resync { class: Class::Hw },
        });
        checkin.classes.insert(
            Class::Sw,
            ClassState {
                version: 3,
                hash: Digest([9; 32]),
            },
        );
        Cfg {
            format: CFG_FORMAT,
            site: SiteCode::parse("S01").unwrap(),
            client: ClientName::parse("WEB01").unwrap(),
            client_id: Uuid::from_u128(1),
            issued_at: Timestamp(1_700_000_000_000),
            checkin,
            refused: vec![],
        }
    }

    #[test]
    fn a_signed_cfg_reads_back_and_any_change_is_refused() {
        let (key, _) = SiteKey::generate().unwrap();
        let cfg = sample();
        let bytes = cfg.encode(&key);
        assert_eq!(
            Cfg::decode(&bytes, &key.public(), cfg.client_id),
            Ok(cfg.clone())
        );

        // Every single-byte change of the payload or the signature is refused.
        for i in 0..bytes.len() - 1 {
            let mut altered = bytes.clone();
            altered[i] ^= 0x01;
            assert!(
                Cfg::decode(&altered, &key.public(), cfg.client_id).is_err(),
                "byte {i} changed and the file was still accepted"
            );
        }
        let (other, _) = SiteKey::generate().unwrap();
        assert_eq!(
            Cfg::decode(&cfg.encode(&other), &key.public(), cfg.client_id),
            Err(FileError::BadSignature {
                site: "S01".to_string()
            })
        );
        assert!(matches!(
            Cfg::decode(&bytes, &key.public(), Uuid::from_u128(2)),
            Err(FileError::WrongClient { .. })
        ));
        for cut in [0, 10, bytes.len() - 1] {
            assert!(matches!(
                Cfg::decode(&bytes[..cut], &key.public(), cfg.client_id),
                Err(FileError::Malformed { .. })
            ));
        }
        let huge = vec![b' '; MAX_CFG_BYTES as usize + 1];
        assert!(matches!(
            Cfg::decode(&huge, &key.public(), cfg.client_id),
            Err(FileError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_peek_reads_the_payload_and_re_signing_it_gives_the_same_bytes() {
        let (key, _) = SiteKey::generate().unwrap();
        let bytes = sample().encode(&key);
        let peeked = Cfg::peek_unverified(&bytes).unwrap();
        assert_eq!(peeked, sample());
        // Deterministic signatures: what the site uses to tell its own unchanged file.
        assert_eq!(peeked.encode(&key), bytes);
        assert_eq!(Cfg::peek_unverified(b"not json\n"), None);
    }

    #[test]
    fn the_file_is_two_readable_lines() {
        let (key, _) = SiteKey::generate().unwrap();
        let text = String::from_utf8(sample().encode(&key)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with(r#"{"format":1,"site":"S01","client":"WEB01""#));
        assert!(lines[1].starts_with("ed25519 ") && lines[1].len() == 8 + 128);
    }
}
