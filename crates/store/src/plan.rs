//! Deciding what a report changes, independent of the database behind the store.
//!
//! A report is handled in two steps so that the single writer does as little as possible:
//! first a [`Plan`] is computed on any thread against the committed snapshot (hash check,
//! item lookups, the merged item list, history rows), then the writer applies it inside its
//! transaction after checking that the snapshot is still the one the plan was made against.
//! When it is not (another report for the same client and class came first), the writer plans
//! again with its own connection; both paths run the same code below.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use invsync_proto::wire::{Report, ReportBody};
use invsync_proto::{Class, Digest};
use uuid::Uuid;

use crate::cache::{CachedItem, ItemCache};
use crate::codec::{PreparedItem, prepare_items, snapshot_hash, snapshot_hash_of_bytes};
use crate::error::StoreError;

/// The snapshot a client and class has in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Current {
    pub version: i64,
    pub hash: Digest,
    /// Item ids in ascending key order.
    pub ids: Vec<i64>,
}

/// A report with every item prepared (canonical JSON and digest computed once).
#[derive(Debug)]
pub(crate) struct ReportInput {
    pub report_id: Uuid,
    pub class: Class,
    pub hash: Digest,
    pub answers: Vec<i64>,
    pub body: InputBody,
    /// For a full report that came through a file-share CAP directory: the highest version the
    /// site held when the agent wrote it. A full report is stale when the site holds a greater
    /// one (see [`stale`]); `None` everywhere else.
    pub not_past: Option<i64>,
}

#[derive(Debug)]
pub(crate) enum InputBody {
    /// Items in ascending key order.
    Full { items: Vec<PreparedItem> },
    /// Upserted items in ascending key order.
    Delta {
        base_version: i64,
        upsert: Vec<PreparedItem>,
        remove: Vec<String>,
    },
}

impl ReportInput {
    /// Prepares a report, refusing a full report whose items do not hash to its hash.
    pub fn prepare(report: &Report) -> Result<ReportInput, StoreError> {
        ReportInput::from_body(
            report.report_id,
            report.class,
            report.hash,
            report.answers.clone(),
            &report.body,
        )
    }

    /// Prepares a report given in parts: a change forwarded by a child site carries the same
    /// body as a report but no report id or answers of its own.
    pub fn from_body(
        report_id: Uuid,
        class: Class,
        hash: Digest,
        answers: Vec<i64>,
        body: &ReportBody,
    ) -> Result<ReportInput, StoreError> {
        let body = match body {
            ReportBody::Full { items } => InputBody::full(class, hash, prepare_items(items))?,
            ReportBody::Delta {
                base_version,
                delta,
            } => InputBody::Delta {
                base_version: *base_version,
                upsert: prepare_items(&delta.upsert),
                remove: delta.remove.clone(),
            },
        };
        Ok(ReportInput {
            report_id,
            class,
            hash,
            answers,
            body,
            not_past: None,
        })
    }

    pub fn is_full(&self) -> bool {
        matches!(self.body, InputBody::Full { .. })
    }
}

impl InputBody {
    /// A full report's body, refused when its items do not hash to the hash it says.
    pub fn full(
        class: Class,
        hash: Digest,
        items: Vec<PreparedItem>,
    ) -> Result<InputBody, StoreError> {
        let actual = snapshot_hash(items.iter().map(|i| &i.digest));
        if actual != hash {
            return Err(StoreError::BadReport(format!(
                "the full {class} report says hash {hash} but its {} items hash to {actual}",
                items.len(),
            )));
        }
        Ok(InputBody::Full { items })
    }
}

/// Where an item of the new snapshot comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// An item already stored, by id.
    Known(i64),
    /// An item to intern: an index into [`Change::new_items`].
    New(usize),
}

/// One history row: an item key whose item changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistoryRow {
    pub key: String,
    pub old: Option<i64>,
    pub new: Option<Slot>,
}

/// What an accepted report writes.
#[derive(Debug, Default)]
pub(crate) struct Change {
    /// The new item list in key order; `None` when the report repeats the stored snapshot.
    pub items: Option<Vec<Slot>>,
    pub new_items: Vec<PreparedItem>,
    pub history: Vec<HistoryRow>,
    /// For a delta, the slot of each upserted item in key order: what an outbox entry of the
    /// delta records, so the delta can be forwarded as it was accepted.
    pub upserts: Vec<Slot>,
}

#[derive(Debug)]
pub(crate) enum Outcome {
    /// Store nothing and ask for a full report, for this reason.
    Resync(String),
    Write(Change),
}

/// A decision about one report, valid while the snapshot is still `base`.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The version and hash the plan was computed against; `None` for no snapshot.
    pub base: Option<(i64, Digest)>,
    pub outcome: Outcome,
}

/// Item lookups a backend provides.
pub(crate) trait ItemSource {
    /// For each item, the id of the stored item with the same key and attributes.
    fn find(&self, items: &[&PreparedItem]) -> Result<Vec<Option<i64>>, StoreError>;
    /// The key and digest of stored items, in the order asked.
    fn load(&self, ids: &[i64]) -> Result<Vec<CachedItem>, StoreError>;
}

/// Item lookups through the cache first, then the database.
pub(crate) struct Resolver<'a> {
    pub cache: &'a ItemCache,
    pub db: &'a dyn ItemSource,
    /// Whether what the database answers may enter the cache: only when the connection sees
    /// committed data alone (a read connection), never inside the writer's transaction.
    pub fill_cache: bool,
}

impl Resolver<'_> {
    fn find(&self, items: &[&PreparedItem]) -> Result<Vec<Option<i64>>, StoreError> {
        let mut out = self.cache.ids(items.iter().map(|i| &i.digest));
        let missing: Vec<usize> = (0..out.len()).filter(|&i| out[i].is_none()).collect();
        if missing.is_empty() {
            return Ok(out);
        }
        let asked: Vec<&PreparedItem> = missing.iter().map(|&i| items[i]).collect();
        let found = self.db.find(&asked)?;
        let mut learned = Vec::new();
        for (&i, id) in missing.iter().zip(found) {
            if let Some(id) = id {
                out[i] = Some(id);
                let item = CachedItem {
                    key: Arc::from(items[i].key.as_str()),
                    digest: items[i].digest,
                };
                learned.push((id, item));
            }
        }
        if self.fill_cache && !learned.is_empty() {
            self.cache.insert(learned);
        }
        Ok(out)
    }

    fn load(&self, ids: &[i64]) -> Result<Vec<CachedItem>, StoreError> {
        let cached = self.cache.items(ids);
        let missing: Vec<i64> = ids
            .iter()
            .zip(&cached)
            .filter(|(_, c)| c.is_none())
            .map(|(id, _)| *id)
            .collect();
        if missing.is_empty() {
            return Ok(cached
                .into_iter()
                .map(|c| c.expect("checked above"))
                .collect());
        }
        let loaded = self.db.load(&missing)?;
        if self.fill_cache {
            self.cache
                .insert(missing.iter().copied().zip(loaded.iter().cloned()));
        }
        let mut loaded = loaded.into_iter();
        Ok(cached
            .into_iter()
            .map(|c| c.unwrap_or_else(|| loaded.next().expect("one loaded item per missing id")))
            .collect())
    }
}

/// Why a full report is stale, if it is: it came with `not_past` = `v` (the agent wrote it
/// when the site held at most version `v`) and the site now holds a greater version. Such a file
/// is an old one put back in the CAP directory, or one whose report the agent also sent over
/// HTTP: storing it would rewind the snapshot. A delta is guarded by its base version instead.
pub(crate) fn stale(input: &ReportInput, current: Option<&Current>) -> Option<String> {
    let (Some(v), Some(current)) = (input.not_past, current) else {
        return None;
    };
    (input.is_full() && current.version > v).then(|| {
        format!(
            "the full report is stale: it was written when the site held at most version {v}, \
             and the site holds version {}",
            current.version
        )
    })
}

/// Plans a report against the snapshot `current`.
pub(crate) fn plan(
    input: &ReportInput,
    current: Option<&Current>,
    r: &Resolver<'_>,
) -> Result<Plan, StoreError> {
    let base = current.map(|c| (c.version, c.hash));
    // Checked here, where every path plans (the reading half, the writer's re-plan, PostgreSQL's
    // transaction), so the check always sees the snapshot the write is made against.
    if let Some(reason) = stale(input, current) {
        return Ok(Plan {
            base,
            outcome: Outcome::Resync(reason),
        });
    }
    let outcome = match &input.body {
        InputBody::Full { items } => Outcome::Write(plan_full(input.hash, items, current, r)?),
        InputBody::Delta {
            base_version,
            upsert,
            remove,
        } => plan_delta(input, *base_version, upsert, remove, current, r)?,
    };
    Ok(Plan { base, outcome })
}

fn plan_full(
    hash: Digest,
    items: &[PreparedItem],
    current: Option<&Current>,
    r: &Resolver<'_>,
) -> Result<Change, StoreError> {
    // The hash identifies a snapshot exactly, so a re-sent unchanged snapshot needs no item
    // lookups at all: this keeps periodic full reports cheap.
    if current.is_some_and(|c| c.hash == hash) {
        return Ok(Change::default());
    }
    let refs: Vec<&PreparedItem> = items.iter().collect();
    let found = r.find(&refs)?;
    let mut new_items = Vec::new();
    let slots: Vec<Slot> = items
        .iter()
        .zip(found)
        .map(|(item, id)| match id {
            Some(id) => Slot::Known(id),
            None => {
                new_items.push(item.clone());
                Slot::New(new_items.len() - 1)
            }
        })
        .collect();
    // The first snapshot of a client and class is not a change, so it has no history rows.
    let history = match current {
        None => Vec::new(),
        Some(c) => full_history(c, items, &slots, r)?,
    };
    Ok(Change {
        items: Some(slots),
        new_items,
        history,
        upserts: Vec::new(),
    })
}

/// The history rows between a stored snapshot and a full report: an item id determines its key,
/// so only ids that are not in both lists can be changes.
fn full_history(
    current: &Current,
    items: &[PreparedItem],
    slots: &[Slot],
    r: &Resolver<'_>,
) -> Result<Vec<HistoryRow>, StoreError> {
    let old: HashSet<i64> = current.ids.iter().copied().collect();
    let kept: HashSet<i64> = slots
        .iter()
        .filter_map(|s| {
            if let Slot::Known(id) = s {
                Some(*id)
            } else {
                None
            }
        })
        .collect();
    let gone: Vec<i64> = current
        .ids
        .iter()
        .copied()
        .filter(|id| !kept.contains(id))
        .collect();
    let gone_items = r.load(&gone)?;
    let mut by_key: BTreeMap<String, (Option<i64>, Option<Slot>)> = BTreeMap::new();
    for (id, item) in gone.iter().zip(gone_items) {
        by_key.entry(item.key.to_string()).or_default().0 = Some(*id);
    }
    for (item, slot) in items.iter().zip(slots) {
        if matches!(slot, Slot::Known(id) if old.contains(id)) {
            continue;
        }
        by_key.entry(item.key.clone()).or_default().1 = Some(*slot);
    }
    Ok(by_key
        .into_iter()
        .map(|(key, (old, new))| HistoryRow { key, old, new })
        .collect())
}

fn plan_delta(
    input: &ReportInput,
    base_version: i64,
    upsert: &[PreparedItem],
    remove: &[String],
    current: Option<&Current>,
    r: &Resolver<'_>,
) -> Result<Outcome, StoreError> {
    let Some(current) = current else {
        return Ok(Outcome::Resync(format!(
            "the site holds no {} snapshot of this client to apply a delta to",
            input.class
        )));
    };
    if current.version != base_version {
        return Ok(Outcome::Resync(format!(
            "the delta is against version {base_version} but the site holds version {}",
            current.version
        )));
    }
    let refs: Vec<&PreparedItem> = upsert.iter().collect();
    let found = r.find(&refs)?;
    let ids = &current.ids;
    let merged = r.cache.with_lookup(|get| {
        merge_delta(input, current, &|pos| get(ids[pos]), upsert, &found, remove)
    });
    match merged {
        Some(outcome) => Ok(outcome),
        None => {
            // Some item of the snapshot is not cached: load them all (which fills the cache
            // when the connection may) and merge over what was loaded.
            let loaded = r.load(ids)?;
            let merged = merge_delta(
                input,
                current,
                &|pos| loaded.get(pos),
                upsert,
                &found,
                remove,
            );
            Ok(merged.expect("every item of the snapshot was loaded"))
        }
    }
}

/// What a delta does at one position of the stored item list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Edit {
    /// Upsert `j` is a new key, inserted before the stored item at this position.
    Insert(usize),
    /// Upsert `j` replaces the stored item at this position (same key).
    Replace(usize),
    /// The stored item at this position is removed.
    Remove,
}

/// Applies a delta to the stored snapshot `current`, whose item at position `p` (in key order,
/// as `current.ids`) is `item_at(p)`: the merged item list, the history rows and the hash check.
/// `None` when `item_at` does not know an item it needed.
///
/// A delta touches a few keys of a snapshot of hundreds or thousands, so it is applied as edits
/// at positions found by binary search (about eleven key comparisons per touched key for 1,500
/// items), not by comparing every stored key with the delta's: walking every key meant a
/// pointer chase per item and was most of a delta's time. Only the digests of the untouched
/// items are read, in order, for the hash.
fn merge_delta<'c>(
    input: &ReportInput,
    current: &Current,
    item_at: &dyn Fn(usize) -> Option<&'c CachedItem>,
    upsert: &[PreparedItem],
    found: &[Option<i64>],
    remove: &[String],
) -> Option<Outcome> {
    let n = current.ids.len();
    // Where `key` is among the stored items: `Ok(position)` of the item with that key, or
    // `Err(position)` it would be inserted at.
    let locate = |key: &str| -> Option<Result<usize, usize>> {
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match (*item_at(mid)?.key).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(Ok(mid)),
            }
        }
        Some(Err(lo))
    };
    let mut edits: Vec<(usize, Edit)> = Vec::with_capacity(upsert.len() + remove.len());
    for (j, item) in upsert.iter().enumerate() {
        edits.push(match locate(&item.key)? {
            Ok(p) => (p, Edit::Replace(j)),
            Err(p) => (p, Edit::Insert(j)),
        });
    }
    // Removals apply before upserts (as in `Snapshot::apply`), so a key both removed and
    // upserted is kept with the upserted item; removing a key the snapshot lacks does nothing.
    for key in remove {
        if let Ok(p) = locate(key)?
            && upsert
                .binary_search_by(|u| u.key.as_str().cmp(key))
                .is_err()
        {
            edits.push((p, Edit::Remove));
        }
    }
    // By position; at one position an insertion (before the stored item) comes first, and
    // insertions keep the upserts' key order. The same key removed twice is one removal.
    edits.sort_unstable();
    edits.dedup();

    let len = n + upsert.len();
    let mut slots = Vec::with_capacity(len);
    let mut hashed = Vec::with_capacity(len * 32);
    let mut new_items = Vec::new();
    let mut history = Vec::new();
    let mut upserts = Vec::with_capacity(upsert.len());
    let mut slot_of = |j: usize| match found[j] {
        Some(id) => Slot::Known(id),
        None => {
            new_items.push(upsert[j].clone());
            Slot::New(new_items.len() - 1)
        }
    };
    let mut next = 0;
    for (p, edit) in edits {
        for q in next..p {
            slots.push(Slot::Known(current.ids[q]));
            hashed.extend_from_slice(&item_at(q)?.digest.0);
        }
        next = p;
        match edit {
            Edit::Insert(j) => {
                let slot = slot_of(j);
                history.push(HistoryRow {
                    key: upsert[j].key.clone(),
                    old: None,
                    new: Some(slot),
                });
                slots.push(slot);
                upserts.push(slot);
                hashed.extend_from_slice(&upsert[j].digest.0);
            }
            Edit::Replace(j) => {
                let (old, slot) = (current.ids[p], slot_of(j));
                if slot != Slot::Known(old) {
                    history.push(HistoryRow {
                        key: upsert[j].key.clone(),
                        old: Some(old),
                        new: Some(slot),
                    });
                }
                slots.push(slot);
                upserts.push(slot);
                hashed.extend_from_slice(&upsert[j].digest.0);
                next = p + 1;
            }
            Edit::Remove => {
                history.push(HistoryRow {
                    key: item_at(p)?.key.to_string(),
                    old: Some(current.ids[p]),
                    new: None,
                });
                next = p + 1;
            }
        }
    }
    for q in next..n {
        slots.push(Slot::Known(current.ids[q]));
        hashed.extend_from_slice(&item_at(q)?.digest.0);
    }
    let actual = snapshot_hash_of_bytes(&hashed);
    if actual != input.hash {
        return Some(Outcome::Resync(format!(
            "applying the delta to version {} gives hash {actual}, not the reported {}",
            current.version, input.hash
        )));
    }
    Some(Outcome::Write(Change {
        items: Some(slots),
        new_items,
        history,
        upserts,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use invsync_proto::inventory::Attrs;
    use invsync_proto::wire::Report;
    use invsync_proto::{Delta, Items, Snapshot};
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// An in-memory item table.
    #[derive(Default)]
    struct Table {
        rows: RefCell<Vec<PreparedItem>>,
    }

    impl Table {
        fn intern(&self, item: &PreparedItem) -> i64 {
            let mut rows = self.rows.borrow_mut();
            if let Some(i) = rows.iter().position(|r| r == item) {
                return i as i64 + 1;
            }
            rows.push(item.clone());
            rows.len() as i64
        }
    }

    impl ItemSource for Table {
        fn find(&self, items: &[&PreparedItem]) -> Result<Vec<Option<i64>>, StoreError> {
            let rows = self.rows.borrow();
            Ok(items
                .iter()
                .map(|it| rows.iter().position(|r| r == *it).map(|i| i as i64 + 1))
                .collect())
        }
        fn load(&self, ids: &[i64]) -> Result<Vec<CachedItem>, StoreError> {
            let rows = self.rows.borrow();
            Ok(ids
                .iter()
                .map(|id| {
                    let r = &rows[*id as usize - 1];
                    CachedItem {
                        key: Arc::from(r.key.as_str()),
                        digest: r.digest,
                    }
                })
                .collect())
        }
    }

    fn items(pairs: &[(&str, &str)]) -> Items {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    Attrs::from([("v".to_string(), v.to_string())]),
                )
            })
            .collect()
    }

    /// Stores a snapshot in the table and returns it as the current state.
    fn store(t: &Table, version: i64, it: &Items) -> Current {
        let ids = prepare_items(it).iter().map(|p| t.intern(p)).collect();
        Current {
            version,
            hash: Snapshot::new(it.clone()).hash(),
            ids,
        }
    }

    fn report(hash: Digest, body: ReportBody) -> ReportInput {
        ReportInput::prepare(&Report {
            report_id: Uuid::new_v4(),
            class: Class::Sw,
            hash,
            body,
            answers: vec![],
        })
        .unwrap()
    }

    fn names(t: &Table, ids: &[i64]) -> Vec<String> {
        t.load(ids)
            .unwrap()
            .iter()
            .map(|c| c.key.to_string())
            .collect()
    }

    #[test]
    fn delta_merge_matches_snapshot_apply_for_every_case() {
        let t = Table::default();
        let cache = ItemCache::default();
        let r = Resolver {
            cache: &cache,
            db: &t,
            fill_cache: true,
        };
        let before = items(&[("a", "1"), ("b", "1"), ("c", "1"), ("e", "1")]);
        let cur = store(&t, 3, &before);
        // Change b, remove c, add d and f, remove a missing key, remove and re-add e.
        let delta = Delta {
            upsert: items(&[("b", "2"), ("d", "1"), ("e", "1"), ("f", "1")]),
            remove: vec!["c".into(), "zz".into(), "e".into()],
        };
        let mut after = Snapshot::new(before.clone());
        after.apply(&delta);
        let input = report(
            after.hash(),
            ReportBody::Delta {
                base_version: 3,
                delta,
            },
        );
        let p = plan(&input, Some(&cur), &r).unwrap();
        let Outcome::Write(change) = p.outcome else {
            panic!("delta refused: {:?}", p.outcome)
        };
        let keys: Vec<String> = change.history.iter().map(|h| h.key.clone()).collect();
        assert_eq!(keys, ["b", "c", "d", "f"]);
        assert_eq!(change.new_items.len(), 3, "b=2, d and f are new items");
        assert_eq!(change.items.unwrap().len(), 5);
    }

    /// The items a planned change stores, in order: the table's for known ids, the change's
    /// own for new ones.
    fn resolved(t: &Table, change: &Change) -> Vec<(String, Digest)> {
        let rows = t.rows.borrow();
        change
            .items
            .as_ref()
            .expect("a change with items")
            .iter()
            .map(|slot| match *slot {
                Slot::Known(id) => rows[id as usize - 1].clone(),
                Slot::New(i) => change.new_items[i].clone(),
            })
            .map(|p| (p.key, p.digest))
            .collect()
    }

    proptest::proptest! {
        /// For any snapshot and delta, the merge stores exactly the items of
        /// `Snapshot::apply`, accepts its hash, and writes history for exactly the keys whose
        /// item changed, in key order; with every item cached and with none.
        #[test]
        fn delta_merge_equals_snapshot_apply(
            before in proptest::collection::btree_map("[a-h]{1,2}", "[0-2]", 0..40),
            upsert in proptest::collection::btree_map("[a-h]{1,2}", "[0-2]", 0..8),
            remove in proptest::collection::vec("[a-h]{1,2}", 0..8),
            cached in proptest::bool::ANY,
        ) {
            let pairs = |m: &BTreeMap<String, String>| -> Items {
                m.iter().map(|(k, v)| (k.clone(), Attrs::from([("v".to_string(), v.clone())]))).collect()
            };
            let t = Table::default();
            let cache = ItemCache::default();
            let r = Resolver { cache: &cache, db: &t, fill_cache: true };
            let before = pairs(&before);
            let cur = store(&t, 1, &before);
            if cached {
                r.load(&cur.ids).unwrap();
            }
            let delta = Delta { upsert: pairs(&upsert), remove };
            let mut after = Snapshot::new(before.clone());
            after.apply(&delta);
            let input = report(after.hash(), ReportBody::Delta { base_version: 1, delta });
            let Outcome::Write(change) = plan(&input, Some(&cur), &r).unwrap().outcome else {
                panic!("a delta with the right hash was refused");
            };
            let want: Vec<(String, Digest)> =
                prepare_items(&after.items).into_iter().map(|p| (p.key, p.digest)).collect();
            proptest::prop_assert_eq!(resolved(&t, &change), want);
            let changed: Vec<String> = before
                .keys()
                .chain(after.items.keys())
                .filter(|k| before.get(*k) != after.items.get(*k))
                .cloned()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let history: Vec<String> = change.history.iter().map(|h| h.key.clone()).collect();
            proptest::prop_assert_eq!(history, changed);
        }
    }

    #[test]
    fn delta_refusals_say_why() {
        let t = Table::default();
        let cache = ItemCache::default();
        let r = Resolver {
            cache: &cache,
            db: &t,
            fill_cache: false,
        };
        let cur = store(&t, 2, &items(&[("a", "1")]));
        let delta = Delta {
            upsert: items(&[("b", "1")]),
            remove: vec![],
        };
        let wrong_base = report(
            Snapshot::default().hash(),
            ReportBody::Delta {
                base_version: 1,
                delta: delta.clone(),
            },
        );
        match plan(&wrong_base, Some(&cur), &r).unwrap().outcome {
            Outcome::Resync(why) => assert!(
                why.contains("version 1") && why.contains("version 2"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        let wrong_hash = report(
            Snapshot::default().hash(),
            ReportBody::Delta {
                base_version: 2,
                delta,
            },
        );
        match plan(&wrong_hash, Some(&cur), &r).unwrap().outcome {
            Outcome::Resync(why) => assert!(why.contains("hash"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn full_history_pairs_changes_by_key() {
        let t = Table::default();
        let cache = ItemCache::default();
        let r = Resolver {
            cache: &cache,
            db: &t,
            fill_cache: true,
        };
        let cur = store(&t, 1, &items(&[("a", "1"), ("b", "1"), ("c", "1")]));
        let next = items(&[("a", "1"), ("b", "2"), ("d", "1")]);
        let input = report(
            Snapshot::new(next.clone()).hash(),
            ReportBody::Full { items: next },
        );
        let Outcome::Write(change) = plan(&input, Some(&cur), &r).unwrap().outcome else {
            panic!()
        };
        let rows: HashMap<String, (bool, bool)> = change
            .history
            .iter()
            .map(|h| (h.key.clone(), (h.old.is_some(), h.new.is_some())))
            .collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows["b"], (true, true));
        assert_eq!(rows["c"], (true, false));
        assert_eq!(rows["d"], (false, true));
        assert_eq!(names(&t, &cur.ids), ["a", "b", "c"]);
    }

    #[test]
    fn unchanged_full_report_needs_no_lookups() {
        let t = Table::default();
        let cache = ItemCache::default();
        let r = Resolver {
            cache: &cache,
            db: &t,
            fill_cache: true,
        };
        let it = items(&[("a", "1")]);
        let cur = store(&t, 1, &it);
        let input = report(
            Snapshot::new(it.clone()).hash(),
            ReportBody::Full { items: it },
        );
        let Outcome::Write(change) = plan(&input, Some(&cur), &r).unwrap().outcome else {
            panic!()
        };
        assert!(change.items.is_none() && change.history.is_empty());
    }

    #[test]
    fn full_report_with_wrong_hash_is_bad() {
        let it = items(&[("a", "1")]);
        let r = Report {
            report_id: Uuid::new_v4(),
            class: Class::Hw,
            hash: Snapshot::default().hash(),
            body: ReportBody::Full { items: it },
            answers: vec![],
        };
        assert!(matches!(
            ReportInput::prepare(&r),
            Err(StoreError::BadReport(_))
        ));
    }
}
