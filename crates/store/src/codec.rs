//! Encodings the store shares between backends: the canonical text and digest of an item
//! (computed once per report and reused for the hash check and for interning), the compact
//! encoding of a snapshot's item list, and the numeric codes of inventory classes.
//!
//! The item list of a snapshot is the main per-client cost of the database, so it is encoded
//! tightly: the item ids in ascending key order, each written as the zigzag-encoded difference
//! to the previous id in LEB128. Items a client shares with others were usually interned in key
//! order by the first client that had them, so neighbouring ids differ by small numbers and
//! most entries take one or two bytes instead of the three a plain varint of the id would take.

use invsync_proto::inventory::Attrs;
use invsync_proto::{Class, Digest, Items};

use crate::error::StoreError;

/// One item of a report, ready to be hashed, compared and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PreparedItem {
    pub key: String,
    /// The canonical JSON of the attributes (`{"a":"b",…}`, sorted, compact): what the
    /// `items.attrs` column holds.
    pub attrs_json: String,
    pub digest: Digest,
}

impl PreparedItem {
    pub fn new(key: &str, attrs: &Attrs) -> PreparedItem {
        let attrs_json = serde_json::to_string(attrs).expect("serialising strings cannot fail");
        let digest = item_digest_of_text(key, &attrs_json);
        PreparedItem { key: key.to_string(), attrs_json, digest }
    }
}

/// Prepares every item of a snapshot, in ascending key order.
pub(crate) fn prepare_items(items: &Items) -> Vec<PreparedItem> {
    items.iter().map(|(k, a)| PreparedItem::new(k, a)).collect()
}

/// The item digest of `invsync_proto::inventory::item_digest`, computed from the stored
/// attribute JSON so that an item read back from the database need not be parsed and
/// re-serialised. The canonical item JSON is `[<key as JSON string>,<attrs JSON>]`.
pub(crate) fn item_digest_of_text(key: &str, attrs_json: &str) -> Digest {
    let key_json = serde_json::to_string(key).expect("serialising a string cannot fail");
    let mut h = blake3::Hasher::new();
    h.update(b"[");
    h.update(key_json.as_bytes());
    h.update(b",");
    h.update(attrs_json.as_bytes());
    h.update(b"]");
    Digest(*h.finalize().as_bytes())
}

/// Parses the attribute JSON of a stored item.
pub(crate) fn parse_attrs(attrs_json: &str) -> Result<Attrs, StoreError> {
    serde_json::from_str(attrs_json)
        .map_err(|e| StoreError::Database(format!("stored item attributes are not valid: {e}")))
}

/// The 64-bit prefix of an item digest that the SQLite backend indexes items by. Only a prefix
/// is stored because a full 32-byte digest in the row and again in a unique index would cost
/// about 70 bytes per item, a third of the per-client storage budget; a lookup compares the key
/// and attributes of the (practically always single) candidate row, so a prefix collision can
/// never merge two different items.
pub(crate) fn digest_prefix(d: &Digest) -> i64 {
    i64::from_le_bytes(d.0[..8].try_into().expect("a digest has 32 bytes"))
}

/// The number the database stores for a class.
pub(crate) fn class_code(c: Class) -> i64 {
    match c {
        Class::Hw => 0,
        Class::Sw => 1,
    }
}

pub(crate) fn class_from_code(code: i64) -> Result<Class, StoreError> {
    match code {
        0 => Ok(Class::Hw),
        1 => Ok(Class::Sw),
        other => Err(StoreError::Database(format!("unknown class code {other} in the database"))),
    }
}

/// Encodes item ids (in the snapshot's key order) as zigzag LEB128 differences.
pub(crate) fn encode_ids(ids: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * 2);
    let mut prev = 0i64;
    for &id in ids {
        let diff = id.wrapping_sub(prev);
        prev = id;
        let mut z = ((diff << 1) ^ (diff >> 63)) as u64;
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    out
}

/// Decodes what [`encode_ids`] wrote; a truncated or overlong encoding is a corrupt database.
pub(crate) fn decode_ids(bytes: &[u8]) -> Result<Vec<i64>, StoreError> {
    let corrupt = || StoreError::Database("a stored snapshot item list is corrupt".to_string());
    let mut out = Vec::with_capacity(bytes.len());
    let mut prev = 0i64;
    let mut z = 0u64;
    let mut shift = 0u32;
    for &b in bytes {
        if shift >= 64 {
            return Err(corrupt());
        }
        z |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            let diff = ((z >> 1) as i64) ^ -((z & 1) as i64);
            prev = prev.wrapping_add(diff);
            out.push(prev);
            z = 0;
            shift = 0;
        } else {
            shift += 7;
        }
    }
    if shift != 0 {
        return Err(corrupt());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use invsync_proto::inventory::item_digest;

    #[test]
    fn digest_of_text_matches_the_protocol() {
        let mut attrs = Attrs::new();
        attrs.insert("version".into(), "1.0 \"quoted\" \\ é \u{1}".into());
        attrs.insert("name".into(), "bash".into());
        let key = "dpkg/bash/amd64 \"odd\"";
        assert_eq!(PreparedItem::new(key, &attrs).digest, item_digest(key, &attrs));
        assert_eq!(parse_attrs(&PreparedItem::new(key, &attrs).attrs_json).unwrap(), attrs);
    }

    #[test]
    fn id_lists_round_trip() {
        let cases: Vec<Vec<i64>> = vec![
            vec![],
            vec![1],
            vec![1, 2, 3, 4, 100, 99, 5, 16_000, 16_001, 2],
            vec![i64::MAX, 0, i64::MIN, -1, 1],
        ];
        for ids in cases {
            assert_eq!(decode_ids(&encode_ids(&ids)).unwrap(), ids);
        }
        // Consecutive ids take one byte each.
        assert_eq!(encode_ids(&[1, 2, 3, 4]).len(), 4);
    }

    #[test]
    fn corrupt_id_lists_are_refused() {
        assert!(decode_ids(&[0x80]).is_err());
        assert!(decode_ids(&[0xff; 11]).is_err());
    }

    #[test]
    fn class_codes_round_trip() {
        for c in Class::ALL {
            assert_eq!(class_from_code(class_code(c)).unwrap(), c);
        }
        assert!(class_from_code(7).is_err());
    }
}
