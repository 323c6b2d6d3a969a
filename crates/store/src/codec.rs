//! Encodings the store shares between backends: items prepared once per report (digest and
//! stored form computed once and reused for the hash check and for interning), the compact
//! stored forms of an item's attributes and of a snapshot's item list, and the numeric codes of
//! inventory classes.
//!
//! Both stored forms exist for the storage budget of SPEC section 10 (32 KB per client with
//! 1,500 packages): the items a client does not share with others and its item list are most of
//! what a client costs.
//!
//! * **Attributes** are stored as a sequence of (name, value) pairs in name order, each name a
//!   one-byte code from [`ATTR_NAMES`] (or 0 and the name spelled out) and each value a LEB128
//!   length and its bytes. Against the canonical JSON this drops the quotes, colons, commas and
//!   repeated attribute names, about 45 of the ~100 bytes of a package item. The canonical JSON
//!   is still what the item digest is computed from.
//! * **Item lists** are the item ids in ascending key order, each written as the zigzag-encoded
//!   difference to the previous id in LEB128. Items a client shares with others were usually
//!   interned in key order by the first client that had them, so neighbouring ids differ by
//!   small numbers and most entries take one or two bytes instead of the three a plain varint of
//!   the id would take.

use invsync_proto::inventory::{Attrs, item_digest};
use invsync_proto::{Class, Digest, Items};

use crate::error::StoreError;

/// Attribute names stored as a one-byte code (index + 1): those of SPEC section 4 and a few
/// more the collectors emit. Databases hold these codes, so this list may only ever grow at its
/// end; a name not in it is stored spelled out.
const ATTR_NAMES: &[&str] = &[
    "addresses",
    "arch",
    "cores",
    "date",
    "free_bytes",
    "kernel",
    "mac",
    "mhz",
    "model",
    "name",
    "product",
    "rotational",
    "serial",
    "size_bytes",
    "sockets",
    "source",
    "speed_mbps",
    "threads",
    "total_bytes",
    "type",
    "uuid",
    "vendor",
    "version",
    "locator",
    "speed_mts",
    "manufacturer",
    "part_number",
    "driver",
    "mtu",
    "state",
    "device",
    "options",
    "release",
    "id",
    "codename",
];

/// One item of a report, ready to be hashed, compared and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PreparedItem {
    pub key: String,
    /// The stored form of the attributes ([`encode_attrs`]): what `items.attrs` holds.
    pub attrs: Vec<u8>,
    pub digest: Digest,
}

impl PreparedItem {
    pub fn new(key: &str, attrs: &Attrs) -> PreparedItem {
        PreparedItem {
            key: key.to_string(),
            attrs: encode_attrs(attrs),
            digest: item_digest(key, attrs),
        }
    }
}

/// Prepares every item of a snapshot, in ascending key order.
pub(crate) fn prepare_items(items: &Items) -> Vec<PreparedItem> {
    items.iter().map(|(k, a)| PreparedItem::new(k, a)).collect()
}

/// The snapshot hash of `invsync_proto::inventory::hash_of_digests`, computed over one
/// contiguous buffer: fed 32 bytes at a time BLAKE3 works through the input one chunk after
/// another, while a whole buffer lets it hash many chunks in parallel with SIMD, several times
/// faster for the 48 KB of a 1,500-item snapshot. Every delta pays this hash.
pub(crate) fn snapshot_hash<'a>(digests: impl IntoIterator<Item = &'a Digest>) -> Digest {
    let digests = digests.into_iter();
    let mut buf = Vec::with_capacity(digests.size_hint().0 * 32);
    for d in digests {
        buf.extend_from_slice(&d.0);
    }
    snapshot_hash_of_bytes(&buf)
}

/// [`snapshot_hash`] of digests already laid end to end in key order (a delta's merge writes
/// them there as it goes).
pub(crate) fn snapshot_hash_of_bytes(digests: &[u8]) -> Digest {
    Digest(*blake3::hash(digests).as_bytes())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Reads a LEB128 varint at `*pos`, or `None` when it is truncated or overlong.
fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn get_str<'a>(bytes: &'a [u8], pos: &mut usize) -> Option<&'a str> {
    let len = usize::try_from(get_varint(bytes, pos)?).ok()?;
    let s = bytes.get(*pos..pos.checked_add(len)?)?;
    *pos += len;
    std::str::from_utf8(s).ok()
}

/// The stored form of an item's attributes (see the module documentation).
pub(crate) fn encode_attrs(attrs: &Attrs) -> Vec<u8> {
    encode_attr_pairs(attrs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
}

/// [`encode_attrs`] of (name, value) pairs in ascending name order without repeats.
pub(crate) fn encode_attr_pairs<'a>(
    attrs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    for (name, value) in attrs {
        // Comparing lengths first leaves one string comparison per attribute, not dozens.
        match ATTR_NAMES
            .iter()
            .position(|n| n.len() == name.len() && *n == name)
        {
            Some(i) => out.push(i as u8 + 1),
            None => {
                out.push(0);
                put_str(&mut out, name);
            }
        }
        put_str(&mut out, value);
    }
    out
}

/// Calls `f` with each (name, value) pair of what [`encode_attrs`] wrote, borrowing them: a
/// scan over every stored item reads a few attributes of each and keeps none of the rest.
pub(crate) fn for_each_attr<'a>(
    bytes: &'a [u8],
    mut f: impl FnMut(&'a str, &'a str),
) -> Result<(), StoreError> {
    let corrupt = || StoreError::Database("stored item attributes are corrupt".to_string());
    let mut pos = 0;
    while pos < bytes.len() {
        let code = bytes[pos];
        pos += 1;
        let name = match code {
            0 => get_str(bytes, &mut pos).ok_or_else(corrupt)?,
            c => ATTR_NAMES
                .get(usize::from(c) - 1)
                .copied()
                .ok_or_else(corrupt)?,
        };
        f(name, get_str(bytes, &mut pos).ok_or_else(corrupt)?);
    }
    Ok(())
}

/// Reads what [`encode_attrs`] wrote.
pub(crate) fn decode_attrs(bytes: &[u8]) -> Result<Attrs, StoreError> {
    let mut attrs = Attrs::new();
    for_each_attr(bytes, |name, value| {
        attrs.insert(name.to_string(), value.to_string());
    })?;
    Ok(attrs)
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
        other => Err(StoreError::Database(format!(
            "unknown class code {other} in the database"
        ))),
    }
}

/// Encodes item ids (in the snapshot's key order) as zigzag LEB128 differences.
pub(crate) fn encode_ids(ids: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * 2);
    let mut prev = 0i64;
    for &id in ids {
        let diff = id.wrapping_sub(prev);
        prev = id;
        put_varint(&mut out, ((diff << 1) ^ (diff >> 63)) as u64);
    }
    out
}

/// Calls `f` with every id of a stored item list, without building the list.
///
/// Nearly every entry of a list is one or two bytes long (`codec::encode_ids`), in no
/// predictable order, and a decoder that branches on each byte's length mispredicts about every
/// other entry; this one reads two bytes and computes the entry's value and length without a
/// branch, leaving a branch only for the rare longer entries. A scan decodes every installed
/// package of every client, so this loop is most of a software query's time.
pub(crate) fn for_each_id(bytes: &[u8], mut f: impl FnMut(i64)) -> Result<(), StoreError> {
    let corrupt = || StoreError::Database("a stored snapshot item list is corrupt".to_string());
    let mut prev = 0i64;
    let mut pos = 0;
    let mut emit = |z: u64| {
        prev = prev.wrapping_add(((z >> 1) as i64) ^ -((z & 1) as i64));
        f(prev);
    };
    while pos < bytes.len() {
        let b0 = u64::from(bytes[pos]);
        let b1 = u64::from(bytes.get(pos + 1).copied().unwrap_or(0));
        let long = b0 >> 7; // 1 when the entry continues into the next byte
        if long & (b1 >> 7) == 0 {
            // One byte, or two whose second ends the entry (a list's last byte always ends
            // one, so reading 0 past the end is never taken for a continuation).
            if long == 1 && pos + 1 >= bytes.len() {
                return Err(corrupt());
            }
            emit((b0 & 0x7f) | (((b1 & 0x7f) << 7) * long));
            pos += 1 + long as usize;
            continue;
        }
        let mut z = 0u64;
        let mut shift = 0;
        loop {
            let b = *bytes.get(pos).ok_or_else(corrupt)?;
            pos += 1;
            z |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift >= 64 {
                return Err(corrupt());
            }
        }
        emit(z);
    }
    Ok(())
}

/// Decodes what [`encode_ids`] wrote; a truncated or overlong encoding is a corrupt database.
pub(crate) fn decode_ids(bytes: &[u8]) -> Result<Vec<i64>, StoreError> {
    let mut out = Vec::with_capacity(bytes.len());
    for_each_id(bytes, |id| out.push(id))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_hash_matches_the_protocol() {
        let digests: Vec<Digest> = (0..3_000u32)
            .map(|i| item_digest(&i.to_string(), &Attrs::new()))
            .collect();
        for n in [0, 1, 31, 32, 33, 1_500, 3_000] {
            assert_eq!(
                snapshot_hash(&digests[..n]),
                invsync_proto::inventory::hash_of_digests(&digests[..n]),
                "{n}"
            );
        }
    }

    #[test]
    fn attrs_round_trip_with_known_and_unknown_names() {
        let mut attrs = Attrs::new();
        attrs.insert("version".into(), "1.0 \"quoted\" \\ é \u{1}".into());
        attrs.insert("name".into(), "bash".into());
        attrs.insert("x-unlisted".into(), String::new());
        attrs.insert(String::new(), "empty name".into());
        let stored = encode_attrs(&attrs);
        assert_eq!(decode_attrs(&stored).unwrap(), attrs);
        assert_eq!(decode_attrs(&[]).unwrap(), Attrs::new());
    }

    #[test]
    fn package_attrs_take_about_half_their_json() {
        let attrs: Attrs = [
            ("arch", "amd64"),
            ("name", "libssl3"),
            ("size_bytes", "6291456"),
            ("source", "dpkg"),
            ("version", "3.0.11-1~deb12u2"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let json = serde_json::to_string(&attrs).unwrap();
        let stored = encode_attrs(&attrs);
        assert!(
            stored.len() * 2 <= json.len() + 10,
            "{} stored bytes for {} of JSON",
            stored.len(),
            json.len()
        );
    }

    #[test]
    fn corrupt_attrs_are_refused() {
        for bad in [&[200u8, 0][..], &[1, 5, b'a'], &[0], &[1, 2, 0xff, 0xfe]] {
            assert!(decode_attrs(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn attr_names_are_unique_and_fit_a_byte() {
        let set: std::collections::HashSet<_> = ATTR_NAMES.iter().collect();
        assert_eq!(set.len(), ATTR_NAMES.len());
        assert!(ATTR_NAMES.len() < 255);
    }

    #[test]
    fn prepared_items_carry_the_protocol_digest() {
        let mut attrs = Attrs::new();
        attrs.insert("name".into(), "bash".into());
        let p = PreparedItem::new("dpkg/bash/amd64", &attrs);
        assert_eq!(p.digest, item_digest("dpkg/bash/amd64", &attrs));
        assert_eq!(decode_attrs(&p.attrs).unwrap(), attrs);
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
