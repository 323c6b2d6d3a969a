//! Inventory snapshots, their canonical form and hash, and deltas between them (SPEC 4 and 5).
//!
//! A snapshot is a map from item key to a flat map of string attributes. Its identity is a
//! BLAKE3 hash defined in two steps so that a site can check a delta without re-serialising
//! a whole snapshot:
//!
//! 1. The **item digest** is BLAKE3 of the item's canonical JSON: the compact JSON array
//!    `["<key>",{"<attr>":"<value>",…}]` with attributes sorted by name (serde_json escaping).
//! 2. The **snapshot hash** is BLAKE3 of the concatenation of the 32-byte item digests in
//!    ascending key order. The empty snapshot hashes to BLAKE3 of nothing.
//!
//! Both are independent of the order in which items and attributes were collected, because
//! both maps are ordered.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The attributes of one item, sorted by name.
pub type Attrs = BTreeMap<String, String>;
/// The items of a snapshot, sorted by key.
pub type Items = BTreeMap<String, Attrs>;

/// The two inventory classes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Hw,
    Sw,
}

impl Class {
    pub const ALL: [Class; 2] = [Class::Hw, Class::Sw];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Hw => "hw",
            Class::Sw => "sw",
        }
    }

    pub fn parse(raw: &str) -> Option<Class> {
        match raw {
            "hw" => Some(Class::Hw),
            "sw" => Some(Class::Sw),
            _ => None,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A 32-byte BLAKE3 digest, shown and serialised as lower-case hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Compares in time independent of where the digests differ, for digests of secrets (a
    /// client key's hash) that an attacker could otherwise guess byte by byte.
    pub fn ct_eq(&self, other: &Digest) -> bool {
        ct_eq(&self.0, &other.0)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Digest> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Digest(out))
    }

    pub fn from_slice(b: &[u8]) -> Option<Digest> {
        Some(Digest(b.try_into().ok()?))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Digest::from_hex(&raw)
            .ok_or_else(|| serde::de::Error::custom("expected 64 lower-case hex digits"))
    }
}

/// Compares two byte strings in time that depends only on their lengths, so that a wrong
/// secret or key reveals nothing about how much of it was right.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

/// The canonical JSON of one item: `["<key>",{"<attr>":"<value>",…}]`.
pub fn item_canonical_json(key: &str, attrs: &Attrs) -> String {
    let mut out = Vec::new();
    write_canonical_item(
        &mut out,
        key,
        attrs.iter().map(|(n, v)| (n.as_str(), v.as_str())),
    );
    String::from_utf8(out).expect("the canonical form of strings is UTF-8")
}

/// Appends the canonical JSON of one item to `out`; `attrs` must come in ascending name order
/// without repeats, as a map gives them. This is the one writer of the canonical form: the
/// agent, the site and the load generator all hash what it writes.
///
/// It writes what `serde_json::to_writer(&(key, attrs))` writes, byte for byte (a property
/// test holds it to that), without serde's machinery: a site writes 1,500 of these per full
/// report, and most strings need no escaping at all, so they are copied in one piece.
pub fn write_canonical_item<'a>(
    out: &mut Vec<u8>,
    key: &str,
    attrs: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    out.extend_from_slice(b"[");
    write_json_str(out, key);
    out.extend_from_slice(b",{");
    for (i, (name, value)) in attrs.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(out, name);
        out.push(b':');
        write_json_str(out, value);
    }
    out.extend_from_slice(b"}]");
}

/// A JSON string as serde_json writes it: `"` and `\` escaped, the control characters below
/// 0x20 as `\b \t \n \f \r` or `\u00XX`, everything else (including `/` and non-ASCII)
/// as it is.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Almost no inventory string needs escaping. This test of every byte has no early exit, so
    // the compiler turns it into a few vector instructions; the loop below, one branch per
    // byte, runs only for the rare string that needs it.
    let plain = bytes
        .iter()
        .fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The digest of one item (step 1 of the snapshot hash).
pub fn item_digest(key: &str, attrs: &Attrs) -> Digest {
    item_digest_of(key, attrs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
}

/// [`item_digest`] of attributes given as (name, value) pairs in ascending name order without
/// repeats, for callers that do not hold them in a map.
pub fn item_digest_of<'a>(
    key: &str,
    attrs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Digest {
    // The canonical form is written into a buffer kept per thread: a site checks 1,500 items
    // per full report, and a fresh string for each was one of its most frequent allocations.
    thread_local! {
        static CANONICAL: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    CANONICAL.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        write_canonical_item(&mut buf, key, attrs);
        Digest(*blake3::hash(&buf).as_bytes())
    })
}

/// The snapshot hash from item digests already in ascending key order (step 2).
pub fn hash_of_digests<'a>(digests: impl IntoIterator<Item = &'a Digest>) -> Digest {
    let mut h = blake3::Hasher::new();
    for d in digests {
        h.update(&d.0);
    }
    Digest(*h.finalize().as_bytes())
}

/// The delta that turns the items `from` into the items `to`.
pub fn diff(from: &Items, to: &Items) -> Delta {
    let mut upsert = Items::new();
    let mut remove = Vec::new();
    for (k, a) in to {
        if from.get(k) != Some(a) {
            upsert.insert(k.clone(), a.clone());
        }
    }
    for k in from.keys() {
        if !to.contains_key(k) {
            remove.push(k.clone());
        }
    }
    Delta { upsert, remove }
}

/// A full snapshot of one class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub items: Items,
}

impl Snapshot {
    pub fn new(items: Items) -> Snapshot {
        Snapshot { items }
    }

    /// The snapshot hash (see the module documentation).
    pub fn hash(&self) -> Digest {
        let digests: Vec<Digest> = self.items.iter().map(|(k, a)| item_digest(k, a)).collect();
        hash_of_digests(&digests)
    }

    /// The delta that turns `self` into `to`.
    pub fn diff(&self, to: &Snapshot) -> Delta {
        diff(&self.items, &to.items)
    }

    /// Applies a delta in place: removed keys go, upserted items replace whole items.
    pub fn apply(&mut self, delta: &Delta) {
        for k in &delta.remove {
            self.items.remove(k);
        }
        for (k, a) in &delta.upsert {
            self.items.insert(k.clone(), a.clone());
        }
    }
}

/// The difference between two snapshots: items added or changed (whole) and keys removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upsert: Items,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.upsert.is_empty() && self.remove.is_empty()
    }
}

/// What `invagent inventory hw|sw --json` prints: a collected snapshot with its hash and the
/// warnings of the collectors (files that were missing or unreadable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub class: Class,
    pub hash: Digest,
    pub items: Items,
    pub warnings: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn attrs(pairs: &[(&str, &str)]) -> Attrs {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn canonical_item_json_is_compact_and_sorted() {
        let a = attrs(&[("version", "1.0"), ("name", "bash")]);
        assert_eq!(
            item_canonical_json("dpkg/bash/amd64", &a),
            r#"["dpkg/bash/amd64",{"name":"bash","version":"1.0"}]"#
        );
    }

    #[test]
    fn item_digest_is_blake3_of_the_canonical_json_with_the_buffer_reused() {
        // A long item then a short one: the per-thread buffer must not keep the first's tail.
        let long = attrs(&[
            ("name", "a \"quoted\" \u{1} value"),
            ("version", &"9".repeat(500)),
        ]);
        let short = attrs(&[("name", "x")]);
        for (key, a) in [("k/long", &long), ("k", &short), ("k/long", &long)] {
            let want = blake3::hash(serde_json::to_string(&(key, a)).unwrap().as_bytes());
            assert_eq!(item_digest(key, a).0, *want.as_bytes(), "{key}");
        }
    }

    #[test]
    fn empty_snapshot_hash_is_blake3_of_nothing() {
        assert_eq!(Snapshot::default().hash().0, *blake3::hash(b"").as_bytes());
    }

    #[test]
    fn digest_hex_round_trip() {
        let d = Snapshot::default().hash();
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest::from_hex("zz"), None);
    }

    fn arb_items() -> impl Strategy<Value = Items> {
        prop::collection::btree_map(
            "[a-z]{1,3}(/[a-z0-9]{1,3})?",
            prop::collection::btree_map("[a-z_]{1,6}", "[ -~]{0,8}", 0..4),
            0..12,
        )
    }

    /// Any string, with the characters that need escaping (quotes, backslashes, every control
    /// character, DEL) and multi-byte ones much more likely than at random.
    fn arb_text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just('"'),
                Just('\\'),
                Just('/'),
                Just('\u{7f}'),
                Just('é'),
                Just('\u{2028}'),
                (0u8..0x20).prop_map(char::from),
                any::<char>(),
                "[ -~]".prop_map(|s| s.chars().next().unwrap()),
            ],
            0..12,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    proptest! {
        /// The hand-written canonical writer is serde_json's compact output, byte for byte:
        /// the digests of every agent and site ever deployed depend on it.
        #[test]
        fn canonical_writer_is_serde_json(
            key in arb_text(),
            a in prop::collection::btree_map(arb_text(), arb_text(), 0..5),
        ) {
            let want = serde_json::to_string(&(&key, &a)).unwrap();
            prop_assert_eq!(item_canonical_json(&key, &a), want.clone());
            prop_assert_eq!(item_digest(&key, &a).0, *blake3::hash(want.as_bytes()).as_bytes());
        }

        #[test]
        fn applying_diff_gives_target(a in arb_items(), b in arb_items()) {
            let (a, b) = (Snapshot::new(a), Snapshot::new(b));
            let d = a.diff(&b);
            let mut c = a.clone();
            c.apply(&d);
            prop_assert_eq!(&c, &b);
            prop_assert_eq!(c.hash(), b.hash());
            prop_assert_eq!(a.diff(&a).is_empty(), true);
        }

        /// The snapshot hash is BLAKE3 of the item digests in ascending key order, each the
        /// BLAKE3 of serde_json's form of the item: computed here from those definitions alone.
        #[test]
        fn hash_is_blake3_of_the_item_digests_in_key_order(a in arb_items()) {
            let mut keys: Vec<&String> = a.keys().collect();
            keys.sort();
            let mut h = blake3::Hasher::new();
            for k in keys {
                h.update(blake3::hash(serde_json::to_string(&(k, &a[k])).unwrap().as_bytes()).as_bytes());
            }
            prop_assert_eq!(Snapshot::new(a).hash().0, *h.finalize().as_bytes());
        }
    }

    /// A non-empty snapshot's hash, pinned: every agent and site ever deployed agrees on it, so
    /// a change to the canonical form or the hash must fail here. The value was computed outside
    /// this code base (Python's `json.dumps` with compact separators and the `blake3` package).
    #[test]
    fn a_known_snapshot_has_a_known_hash() {
        let mut items = Items::new();
        items.insert("os".into(), Attrs::new());
        items.insert(
            "dpkg/bash/amd64".into(),
            attrs(&[
                ("version", "5.2.15-2+b8"),
                ("name", "bash"),
                ("arch", "amd64"),
            ]),
        );
        items.insert(
            "cpu".into(),
            attrs(&[("model", "Xeon \"Gold\""), ("cores", "8")]),
        );
        assert_eq!(
            Snapshot::new(items).hash().to_hex(),
            "944ede6794714451a68c261c63d34f3cab2c26506bfeb87d53321d721bd4f312"
        );
    }
}
