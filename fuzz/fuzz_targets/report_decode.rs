//! The site's decoding of `POST /cap/v1/report` bodies, as the request-body extractor
//! `invsync_site::api::body::Body<Report>` does it: for `Content-Encoding: zstd`,
//! `decode_zstd` with the site's default limit (`Limits::default().max_decoded_bytes`), then
//! `serde_json::from_slice` into `invsync_proto::wire::Report` (what the extractor's private
//! `parse` does). The extractor itself is not driven: it needs an `AppState`, which opens a
//! store.
//!
//! The first input byte picks how the rest travels:
//! - 0: plain JSON (no Content-Encoding, or `identity`);
//! - 1: zstd, the rest taken as the compressed frame (malformed frames, bombs, truncation);
//! - 2: zstd, the rest compressed here first, so that mutations of the JSON reach the parser
//!   through the decompressor as an agent's reports do.
//!
//! Invariants besides "no panic":
//! - `decode_zstd` never returns more than its limit, gives back what was compressed, and
//!   agrees with a smaller limit on where the limit lies;
//! - a decoded report serialises back to JSON that decodes to the same report;
//! - for a report within the site's default limits (`max_items`, `max_attrs`, `max_key_len`,
//!   `max_value_len`: the checks of the private `check_items` in `api/cap/report.rs`, mirrored
//!   here): applying `a.diff(b)` to `a` gives `b` with the same hash, both ways, for a full
//!   report's items against a variant of them; a delta applied to a base holds its upserts and
//!   drops its removals, and the round trip holds between the base and the result.

#![no_main]

use invsync_proto::inventory::{hash_of_digests, item_digest};
use invsync_proto::wire::{Report, ReportBody};
use invsync_proto::{Attrs, Delta, Items, Snapshot};
use invsync_site::api::decode::decode_zstd;
use invsync_site::api::error::ApiError;
use invsync_site::datadir::Limits;
use libfuzzer_sys::fuzz_target;

/// A limit small enough that fuzz inputs cross it, to check the limit logic of `decode_zstd`.
const SMALL_LIMIT: usize = 1024;

/// The site's bounds on a report's items (mirrors the private `check_items`).
fn items_within_limits(items: &Items, l: &Limits) -> bool {
    items.len() <= l.max_items
        && items.iter().all(|(key, attrs)| {
            key_within_limits(key, l)
                && attrs.len() <= l.max_attrs
                && attrs.iter().all(|(n, v)| {
                    !n.is_empty() && n.len() <= l.max_key_len && v.len() <= l.max_value_len
                })
        })
}

fn key_within_limits(key: &str, l: &Limits) -> bool {
    !key.is_empty() && key.len() <= l.max_key_len && !key.chars().any(char::is_control)
}

fn within_limits(report: &Report, l: &Limits) -> bool {
    match &report.body {
        ReportBody::Full { items } => items_within_limits(items, l),
        ReportBody::Delta { delta, .. } => {
            items_within_limits(&delta.upsert, l)
                && delta.upsert.len() + delta.remove.len() <= l.max_items
                && delta.remove.iter().all(|k| key_within_limits(k, l))
        }
    }
}

/// `a.diff(b)` applied to `a` is `b`, with `b`'s hash.
fn check_diff_apply(a: &Snapshot, b: &Snapshot) {
    let d = a.diff(b);
    let mut c = a.clone();
    c.apply(&d);
    assert_eq!(&c, b, "a.diff(b) applied to a is not b; delta {d:?}");
    assert_eq!(c.hash(), b.hash());
    assert_eq!(d.is_empty(), a == b);
    // A delta travels as JSON too.
    let d2: Delta = serde_json::from_slice(&serde_json::to_vec(&d).unwrap()).unwrap();
    assert_eq!(d2, d);
}

fn check_hash(s: &Snapshot) {
    let digests: Vec<_> = s.items.iter().map(|(k, a)| item_digest(k, a)).collect();
    assert_eq!(s.hash(), hash_of_digests(&digests));
    // Independent of insertion order.
    let rebuilt: Items = s.items.iter().rev().map(|(k, a)| (k.clone(), a.clone())).collect();
    assert_eq!(Snapshot::new(rebuilt).hash(), s.hash());
    assert!(s.diff(s).is_empty());
}

/// Another snapshot near `a`: every third item dropped, every third changed, one added.
fn variant(a: &Snapshot) -> Snapshot {
    let mut items = Items::new();
    for (i, (k, attrs)) in a.items.iter().enumerate() {
        match i % 3 {
            0 => {}
            1 => {
                let mut changed = attrs.clone();
                changed.insert("fuzz".into(), format!("{i}"));
                items.insert(k.clone(), changed);
            }
            _ => {
                items.insert(k.clone(), attrs.clone());
            }
        }
    }
    items.insert("fuzz/added".into(), Attrs::from([("name".into(), "added".into())]));
    Snapshot::new(items)
}

fn check_snapshots(report: &Report) {
    match &report.body {
        ReportBody::Full { items } => {
            let a = Snapshot::new(items.clone());
            let b = variant(&a);
            check_hash(&a);
            check_diff_apply(&a, &b);
            check_diff_apply(&b, &a);
            check_diff_apply(&a, &Snapshot::default());
            check_diff_apply(&Snapshot::default(), &a);
        }
        ReportBody::Delta { delta, .. } => {
            // A base that holds the removed keys and, alternately, stale or no versions of
            // the upserted ones.
            let mut base = Items::new();
            for k in &delta.remove {
                base.insert(k.clone(), Attrs::from([("stale".into(), "1".into())]));
            }
            for (i, k) in delta.upsert.keys().enumerate() {
                if i % 2 == 0 {
                    base.insert(k.clone(), Attrs::from([("stale".into(), "2".into())]));
                }
            }
            let base = Snapshot::new(base);
            let mut after = base.clone();
            after.apply(delta);
            for (k, attrs) in &delta.upsert {
                assert_eq!(after.items.get(k), Some(attrs), "upsert of {k:?} lost");
            }
            for k in &delta.remove {
                if !delta.upsert.contains_key(k) {
                    assert!(!after.items.contains_key(k), "removal of {k:?} lost");
                }
            }
            check_hash(&after);
            check_diff_apply(&base, &after);
            check_diff_apply(&after, &base);
        }
    }
}

/// `decode_zstd` with the site's limit, checked against a small limit.
fn decode(body: &[u8], limit: usize) -> Option<Vec<u8>> {
    let full = decode_zstd(body, limit);
    match decode_zstd(body, SMALL_LIMIT) {
        Ok(out) => {
            assert!(out.len() <= SMALL_LIMIT);
            assert_eq!(full.as_ref().ok(), Some(&out), "the limits disagree");
        }
        Err(ApiError::TooLarge(_)) => {
            if let Ok(out) = &full {
                assert!(out.len() > SMALL_LIMIT, "refused {} bytes", out.len());
            }
        }
        Err(ApiError::BadInput(_)) => {
            // Corrupt within the first SMALL_LIMIT bytes is corrupt for any limit.
            assert!(full.is_err(), "only the small limit refused the frame");
        }
        Err(e) => panic!("unexpected decode error {e:?}"),
    }
    match full {
        Ok(out) => {
            assert!(out.len() <= limit);
            Some(out)
        }
        Err(ApiError::TooLarge(_) | ApiError::BadInput(_)) => None,
        Err(e) => panic!("unexpected decode error {e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let limits = Limits::default();
    let json = match mode % 3 {
        0 => Some(rest.to_vec()),
        1 => decode(rest, limits.max_decoded_bytes),
        _ => {
            let packed = zstd::bulk::compress(rest, 1).expect("compressing in memory");
            let out = decode(&packed, limits.max_decoded_bytes);
            assert_eq!(out.as_deref(), Some(rest), "zstd round trip");
            out
        }
    };
    let Some(report) = json.and_then(|j| serde_json::from_slice::<Report>(&j).ok()) else {
        return;
    };
    let again: Report = serde_json::from_slice(&serde_json::to_vec(&report).unwrap())
        .expect("a decoded report re-encodes to a decodable one");
    assert_eq!(again, report, "JSON round trip");
    if within_limits(&report, &limits) {
        check_snapshots(&report);
    }
});
