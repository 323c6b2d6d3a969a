//! Item lookups a plan needs, answered before the plan runs. `plan::plan` asks its
//! `ItemSource` synchronously; a backend that cannot block on its database there (PostgreSQL's
//! async driver) first makes every lookup the plan can ask, batched, and plans against
//! [`Prefetched`] alone. This module decides which lookups those are and keeps their answers,
//! the shared item cache first; the backend only runs the two statements.

use std::collections::HashSet;
use std::sync::Arc;

use invsync_proto::Digest;
use invsync_proto::inventory::item_digest;

use crate::cache::{CachedItem, FastMap, ItemCache};
use crate::codec::{PreparedItem, decode_attrs};
use crate::error::StoreError;
use crate::plan::{Current, InputBody, ItemSource, ReportInput};
use crate::rows::corrupt;

/// The answers to every lookup one plan makes.
#[derive(Default)]
pub(crate) struct Prefetched {
    by_digest: FastMap<Digest, i64>,
    by_id: FastMap<i64, CachedItem>,
}

/// What the plan of a report asks of the database, in two steps: the ids of some of its items,
/// then stored items by id.
pub(crate) enum Lookups<'a> {
    /// Nothing: the plan refuses or shortcuts before any lookup.
    None,
    /// The ids of a full report's items, then the stored items it no longer has.
    Full(&'a [PreparedItem]),
    /// The ids of a delta's upserted items and the stored snapshot's items.
    Delta(&'a [PreparedItem], &'a [i64]),
}

/// The lookups `plan::plan` makes for `input` against `current`.
pub(crate) fn lookups<'a>(input: &'a ReportInput, current: Option<&'a Current>) -> Lookups<'a> {
    match (&input.body, current) {
        // A re-sent unchanged snapshot needs no lookups (plan_full's shortcut).
        (InputBody::Full { .. }, Some(c)) if c.hash == input.hash => Lookups::None,
        (InputBody::Full { items }, _) => Lookups::Full(items),
        // plan_delta refuses these before any lookup.
        (InputBody::Delta { .. }, None) => Lookups::None,
        (InputBody::Delta { base_version, .. }, Some(c)) if c.version != *base_version => {
            Lookups::None
        }
        (InputBody::Delta { upsert, .. }, Some(c)) => Lookups::Delta(upsert, &c.ids),
    }
}

impl ItemSource for Prefetched {
    fn find(&self, items: &[&PreparedItem]) -> Result<Vec<Option<i64>>, StoreError> {
        Ok(items
            .iter()
            .map(|i| self.by_digest.get(&i.digest).copied())
            .collect())
    }

    fn load(&self, ids: &[i64]) -> Result<Vec<CachedItem>, StoreError> {
        ids.iter()
            .map(|id| {
                self.by_id
                    .get(id)
                    .cloned()
                    .ok_or_else(|| corrupt("item reference"))
            })
            .collect()
    }
}

impl Prefetched {
    /// Takes the ids the cache knows of these items; the digests of the others, to look up.
    pub fn ids_from_cache<'a>(
        &mut self,
        cache: &ItemCache,
        items: &'a [PreparedItem],
    ) -> Vec<&'a [u8]> {
        let known = cache.ids(items.iter().map(|i| &i.digest));
        let mut missing = Vec::new();
        for (item, id) in items.iter().zip(known) {
            match id {
                Some(id) => {
                    self.by_digest.insert(item.digest, id);
                }
                None => missing.push(item.digest.0.as_slice()),
            }
        }
        missing
    }

    /// Takes the database's (id, digest) answers. They enter the cache too: items are
    /// committed before anyone can read them.
    pub fn learn_ids(
        &mut self,
        cache: &ItemCache,
        items: &[PreparedItem],
        rows: Vec<(i64, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let mut learned = Vec::with_capacity(rows.len());
        let by_digest: FastMap<Digest, &PreparedItem> =
            items.iter().map(|i| (i.digest, i)).collect();
        for (id, raw) in rows {
            let digest = Digest::from_slice(&raw).ok_or_else(|| corrupt("item digest"))?;
            self.by_digest.insert(digest, id);
            if let Some(item) = by_digest.get(&digest) {
                learned.push((
                    id,
                    CachedItem {
                        key: Arc::from(item.key.as_str()),
                        digest,
                    },
                ));
            }
        }
        cache.insert(learned);
        Ok(())
    }

    /// The stored items of a full report's `current` snapshot that the report does not have
    /// (plan_full loads them), once the report's ids are known.
    pub fn gone(&self, current: Option<&Current>) -> Vec<i64> {
        let kept: HashSet<i64> = self.by_digest.values().copied().collect();
        current
            .map(|c| {
                c.ids
                    .iter()
                    .copied()
                    .filter(|id| !kept.contains(id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Takes the items the cache knows of these ids; the ids of the others, to load.
    pub fn items_from_cache(&mut self, cache: &ItemCache, ids: &[i64]) -> Vec<i64> {
        let mut missing = Vec::new();
        for (id, item) in ids.iter().zip(cache.items(ids)) {
            match item {
                Some(item) => {
                    self.by_id.insert(*id, item);
                }
                None => missing.push(*id),
            }
        }
        missing
    }

    /// Takes the database's (id, key, attributes) answers, into the cache too.
    pub fn learn_items(
        &mut self,
        cache: &ItemCache,
        rows: Vec<(i64, String, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let mut learned = Vec::with_capacity(rows.len());
        for (id, key, attrs) in rows {
            let attrs = decode_attrs(&attrs)?;
            let item = CachedItem {
                digest: item_digest(&key, &attrs),
                key: Arc::from(key),
            };
            self.by_id.insert(id, item.clone());
            learned.push((id, item));
        }
        cache.insert(learned);
        Ok(())
    }
}
