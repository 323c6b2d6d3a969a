//! Reports read straight from their JSON into the form the store hashes and stores.
//!
//! A full report of 1,500 packages, read into [`invsync_proto::Items`] first, is 1,500 maps
//! and some 9,000 strings built and dropped again, and every item then written out once more
//! in its canonical form to be hashed: profiling the site under full reports put more than a
//! third of its CPU time there. [`PreparedItems`] deserializes the `items` (or `upsert`) object
//! item by item instead: the key and attribute strings are borrowed from the request body
//! where JSON allows it (no escapes), sorted if the sender did not sort them, and each item is
//! hashed and encoded at once, leaving one [`PreparedItem`] per item. What the items look like
//! against the site's limits is recorded on the way ([`Shape`]), so the site can refuse a
//! report over its limits with the same sentences as before without a second pass.
//!
//! Unlike maps, which keep the last of two equal keys, a repeated item key or attribute name
//! refuses the report: no agent sends one, and a silent choice would hide a sender's bug.

use std::borrow::Cow;
use std::fmt;

use invsync_proto::inventory::item_digest_of;
use invsync_proto::wire::{ReportBodyOf, ReportOf};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use crate::codec::{PreparedItem, encode_attr_pairs};
use crate::error::StoreError;
use crate::plan::{InputBody, ReportInput};

/// A report as the site receives it, items already prepared.
pub type IncomingReport = ReportOf<PreparedItems>;

/// The items of a report (a full report's `items`, a delta's `upsert`), prepared as they were
/// read, in ascending key order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PreparedItems {
    pub(crate) items: Vec<PreparedItem>,
    shape: Shape,
}

/// The extremes of a set of items that the site's limits bound: for each, the largest value
/// seen and the item (and attribute) it was seen in, which is what a refusal names.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Shape {
    /// The longest item key, in bytes.
    pub longest_key: usize,
    /// The first key that is empty or holds a control character.
    pub bad_key: Option<String>,
    /// The most attributes of one item, and that item's key.
    pub most_attrs: Option<(usize, String)>,
    /// The longest attribute name in bytes, and its item's key.
    pub longest_name: Option<(usize, String)>,
    /// The key of the first item with an empty attribute name.
    pub empty_name: Option<String>,
    /// The longest attribute value in bytes, its item's key and the attribute's name.
    pub longest_value: Option<(usize, String, String)>,
}

impl PreparedItems {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// What the site's limits are checked against.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }
}

impl Shape {
    fn record<S: AsRef<str>>(&mut self, key: &str, pairs: &[(S, S)]) {
        self.longest_key = self.longest_key.max(key.len());
        if self.bad_key.is_none() && (key.is_empty() || key.chars().any(char::is_control)) {
            self.bad_key = Some(key.to_string());
        }
        if self
            .most_attrs
            .as_ref()
            .is_none_or(|(n, _)| pairs.len() > *n)
        {
            self.most_attrs = Some((pairs.len(), key.to_string()));
        }
        for (name, value) in pairs {
            let (name, value) = (name.as_ref(), value.as_ref());
            if name.is_empty() && self.empty_name.is_none() {
                self.empty_name = Some(key.to_string());
            }
            if self
                .longest_name
                .as_ref()
                .is_none_or(|(n, _)| name.len() > *n)
            {
                self.longest_name = Some((name.len(), key.to_string()));
            }
            if self
                .longest_value
                .as_ref()
                .is_none_or(|(n, _, _)| value.len() > *n)
            {
                self.longest_value = Some((value.len(), key.to_string(), name.to_string()));
            }
        }
    }
}

/// One item's stored form and digest from its attribute pairs in ascending name order.
fn prepare<S: AsRef<str>>(key: &str, pairs: &[(S, S)]) -> PreparedItem {
    let pairs = || pairs.iter().map(|(n, v)| (n.as_ref(), v.as_ref()));
    PreparedItem {
        key: key.to_string(),
        attrs: encode_attr_pairs(pairs()),
        digest: item_digest_of(key, pairs()),
    }
}

/// A string borrowed from the request body when it holds no escapes, else unescaped into a
/// string of its own.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_string())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Reads one item's attribute object into `pairs`.
struct AttrsSeed<'p, 'de>(&'p mut Vec<(Cow<'de, str>, Cow<'de, str>)>);

impl<'de> DeserializeSeed<'de> for AttrsSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AttrsSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of string attributes")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Text(name)) = map.next_key()? {
            let Text(value) = map.next_value()?;
            self.0.push((name, value));
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for PreparedItems {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PreparedItems, D::Error> {
        d.deserialize_map(ItemsVisitor)
    }
}

struct ItemsVisitor;

impl<'de> Visitor<'de> for ItemsVisitor {
    type Value = PreparedItems;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of items")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PreparedItems, A::Error> {
        let mut out = PreparedItems::default();
        out.items.reserve(map.size_hint().unwrap_or(0));
        // One vector of pairs for every item of the report; its strings borrow the body.
        let mut pairs: Vec<(Cow<'de, str>, Cow<'de, str>)> = Vec::new();
        let mut sorted = true;
        while let Some(Text(key)) = map.next_key()? {
            pairs.clear();
            map.next_value_seed(AttrsSeed(&mut pairs))?;
            // Agents send attributes sorted (they come from maps); sorting costs nothing then.
            if !pairs.is_sorted_by(|a, b| a.0 < b.0) {
                pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
                    return Err(de::Error::custom(format!(
                        "item {key:?} has the attribute {:?} twice",
                        w[0].0
                    )));
                }
            }
            out.shape.record(&key, &pairs);
            if sorted
                && out
                    .items
                    .last()
                    .is_some_and(|last| last.key.as_str() >= &*key)
            {
                sorted = false;
            }
            out.items.push(prepare(&key, &pairs));
        }
        if !sorted {
            out.items.sort_unstable_by(|a, b| a.key.cmp(&b.key));
            if let Some(w) = out.items.windows(2).find(|w| w[0].key == w[1].key) {
                return Err(de::Error::custom(format!(
                    "item {:?} appears twice",
                    w[0].key
                )));
            }
        }
        Ok(out)
    }
}

impl ReportInput {
    /// A report whose items were prepared as they were read, refusing a full report whose
    /// items do not hash to its hash.
    pub(crate) fn from_incoming(report: IncomingReport) -> Result<ReportInput, StoreError> {
        let body = match report.body {
            ReportBodyOf::Full { items } => {
                InputBody::full(report.class, report.hash, items.items)?
            }
            ReportBodyOf::Delta {
                base_version,
                upsert,
                remove,
            } => InputBody::Delta {
                base_version,
                upsert: upsert.items,
                remove,
            },
        };
        Ok(ReportInput {
            report_id: report.report_id,
            class: report.class,
            hash: report.hash,
            answers: report.answers,
            body,
            not_past: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use invsync_proto::Items;
    use invsync_proto::wire::Report;
    use proptest::prelude::*;

    use super::*;
    use crate::codec::prepare_items;

    /// What reading `items` as JSON must give: each item prepared from its map, in key order.
    fn from_items(items: &Items) -> PreparedItems {
        let mut out = PreparedItems::default();
        for (key, attrs) in items {
            let pairs: Vec<(&str, &str)> = attrs
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            out.shape.record(key, &pairs);
            out.items.push(prepare(key, &pairs));
        }
        out
    }

    fn parse(json: &str) -> Result<PreparedItems, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn items_are_prepared_as_from_maps_whatever_their_order() {
        let sorted = r#"{"a":{"name":"x","version":"1"},"b\u00e9":{"v":"q\"uote"},"c":{}}"#;
        let shuffled = r#"{"c":{},"b\u00e9":{"v":"q\"uote"},"a":{"version":"1","name":"x"}}"#;
        let items: Items = serde_json::from_str(sorted).unwrap();
        let want = prepare_items(&items);
        assert_eq!(parse(sorted).unwrap().items, want);
        assert_eq!(parse(shuffled).unwrap().items, want);
        assert_eq!(from_items(&items).items, want);
    }

    #[test]
    fn repeated_keys_and_names_are_refused() {
        let e = parse(r#"{"a":{},"b":{},"a":{}}"#).unwrap_err();
        assert!(e.contains(r#"item "a" appears twice"#), "{e}");
        let e = parse(r#"{"a":{"v":"1","n":"2","v":"3"}}"#).unwrap_err();
        assert!(e.contains(r#"item "a" has the attribute "v" twice"#), "{e}");
        assert!(
            parse(r#"{"a":{"v":1}}"#).is_err(),
            "a number is not an attribute value"
        );
        assert!(parse(r#"["a"]"#).is_err());
    }

    #[test]
    fn shape_names_the_extremes() {
        let items =
            parse(r#"{"k1":{"a":"12345","bb":"1"},"\u0001":{"ccc":"","":"x","d":"1"}}"#).unwrap();
        let s = items.shape();
        assert_eq!(s.longest_key, 2);
        assert_eq!(s.bad_key.as_deref(), Some("\u{1}"));
        assert_eq!(s.most_attrs, Some((3, "\u{1}".to_string())));
        assert_eq!(s.longest_name, Some((3, "\u{1}".to_string())));
        assert_eq!(s.empty_name.as_deref(), Some("\u{1}"));
        assert_eq!(
            s.longest_value,
            Some((5, "k1".to_string(), "a".to_string()))
        );
        assert_eq!(PreparedItems::default().shape(), &Shape::default());
    }

    #[test]
    fn a_full_report_is_checked_against_its_hash() {
        let items: Items = serde_json::from_str(r#"{"a":{"v":"1"}}"#).unwrap();
        let report = Report {
            report_id: uuid::Uuid::from_u128(7),
            class: invsync_proto::Class::Sw,
            hash: invsync_proto::inventory::Snapshot::new(items.clone()).hash(),
            body: invsync_proto::wire::ReportBody::Full { items },
            answers: vec![3],
        };
        let json = serde_json::to_string(&report).unwrap();
        let incoming: IncomingReport = serde_json::from_str(&json).unwrap();
        let input = ReportInput::from_incoming(incoming).unwrap();
        assert_eq!(input.answers, vec![3]);
        let wrong = json.replace(r#""v":"1""#, r#""v":"2""#);
        let e = ReportInput::from_incoming(serde_json::from_str(&wrong).unwrap()).unwrap_err();
        assert!(e.to_string().contains("its 1 items hash to"), "{e}");
    }

    fn arb_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z/._-]{0,6}",
            any::<String>(),
            "[\"\\\\\u{0}-\u{1f}é]{0,4}"
        ]
    }

    proptest! {
        /// Reading JSON straight into prepared items gives what maps gave, for any strings
        /// (escaped or not, so borrowed or not) in any order.
        #[test]
        fn reading_json_equals_preparing_maps(
            items in prop::collection::btree_map(
                arb_text(),
                prop::collection::btree_map(arb_text(), arb_text(), 0..4),
                0..8,
            ),
            reverse in any::<bool>(),
        ) {
            let mut json = serde_json::to_string(&items).unwrap();
            if reverse {
                // The same object with its members in reverse order.
                let members: Vec<String> = items
                    .iter()
                    .rev()
                    .map(|(k, a)| {
                        let attrs: BTreeMap<_, _> = a.iter().collect();
                        let inner: Vec<String> = attrs.iter().rev()
                            .map(|(n, v)| format!("{}:{}", serde_json::to_string(n).unwrap(), serde_json::to_string(v).unwrap()))
                            .collect();
                        format!("{}:{{{}}}", serde_json::to_string(k).unwrap(), inner.join(","))
                    })
                    .collect();
                json = format!("{{{}}}", members.join(","));
            }
            let parsed = parse(&json).unwrap();
            prop_assert_eq!(&parsed.items, &prepare_items(&items));
            if !reverse {
                // Which item a refusal names depends on the order items were read in.
                prop_assert_eq!(parsed, from_items(&items));
            }
        }
    }
}
