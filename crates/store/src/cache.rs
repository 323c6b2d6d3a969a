//! An in-memory map between interned items and their ids, shared by every thread of a store.
//!
//! Checking a delta means hashing the digests of every item of the resulting snapshot (1,500
//! for a typical software inventory), and storing a full report means finding the id of every
//! item. Asking the database for each would cost milliseconds per report and miss the budgets
//! of SPEC section 10, so the store remembers items it has seen.
//!
//! The cache only ever holds facts that cannot change: an item row is never updated or
//! deleted, so a (digest, id) pair that was committed stays true. Entries therefore come only
//! from committed data: from the read connections, or from the writer after its COMMIT
//! succeeded. Rows a rolled-back savepoint inserted never reach it (their ids may be reused).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, RwLock};

use invsync_proto::Digest;

/// The most items kept, in two generations of half as many (see [`ItemCache::insert`]). An
/// entry costs about 145 bytes (its digest and key, and its place in both maps), so this
/// bounds the cache near 290 MB. A fleet's distinct packages usually number in the tens of
/// thousands; the load generator's fleet of 10,000 agents has about 318,000 (and each delta
/// adds a few), and with a quarter of a million cached (the earlier bound, reached by starting
/// afresh) the first round of deltas cost 190 µs of site CPU each instead of 130.
const DEFAULT_CAPACITY: usize = 2_000_000;

/// What the cache knows of one item.
#[derive(Debug, Clone)]
pub(crate) struct CachedItem {
    pub key: Arc<str>,
    pub digest: Digest,
}

/// A hasher for keys that are already random (digests) or small integers (ids): the default
/// SipHash would cost more than the rest of a lookup.
#[derive(Default)]
pub(crate) struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // The keys hashed through here are digests, which are uniformly random, so their first
        // eight bytes make a good hash.
        let mut b = [0u8; 8];
        let n = bytes.len().min(8);
        b[..n].copy_from_slice(&bytes[..n]);
        self.write_u64(u64::from_le_bytes(b));
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0 ^ i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }

    fn write_usize(&mut self, _len: usize) {
        // Slices hash their length first; every digest has the same length.
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Items by id are kept in pages of consecutive ids rather than in a hash map: item ids are
/// row ids handed out in sequence, and a client's items were mostly interned together, so a
/// snapshot's ids fall into few pages and walking them reads memory nearly in order. A delta
/// reads the digest of every item of the snapshot; through a hash map that was one cache miss
/// per item, a tenth of a delta's time. Pages are small (128 ids, 6 KB) because a page is
/// allocated whole for its first cached item: a client's own items are consecutive ids, but
/// clients far apart in the id range leave most of a large page empty.
const PAGE_BITS: u32 = 7;
const PAGE_LEN: usize = 1 << PAGE_BITS;
/// Ids at or past this are not cached (the page table would grow with the id, not with the
/// number of items); they are looked up in the database. No site interns a trillion items.
const MAX_CACHED_ID: i64 = 1 << 40;

type Page = Box<[Option<CachedItem>]>;

#[derive(Default)]
struct Maps {
    by_digest: FastMap<Digest, i64>,
    pages: Vec<Option<Page>>,
    len: usize,
}

impl Maps {
    fn get(&self, id: i64) -> Option<&CachedItem> {
        if !(0..MAX_CACHED_ID).contains(&id) {
            return None;
        }
        let page = self.pages.get((id >> PAGE_BITS) as usize)?.as_ref()?;
        page[(id as usize) & (PAGE_LEN - 1)].as_ref()
    }

    fn put(&mut self, id: i64, item: CachedItem) {
        if !(0..MAX_CACHED_ID).contains(&id) {
            return;
        }
        let p = (id >> PAGE_BITS) as usize;
        if self.pages.len() <= p {
            self.pages.resize_with(p + 1, || None);
        }
        let page = self.pages[p].get_or_insert_with(|| vec![None; PAGE_LEN].into_boxed_slice());
        let slot = &mut page[(id as usize) & (PAGE_LEN - 1)];
        if slot.is_none() {
            self.len += 1;
        }
        self.by_digest.insert(item.digest, id);
        *slot = Some(item);
    }
}

/// The cache's two generations: items are added to `current`; when it is full it becomes
/// `previous` (dropping the one before) and a new `current` starts. Lookups ask both.
#[derive(Default)]
struct Generations {
    current: Maps,
    previous: Maps,
}

impl Generations {
    fn get(&self, id: i64) -> Option<&CachedItem> {
        self.current.get(id).or_else(|| self.previous.get(id))
    }

    fn id(&self, digest: &Digest) -> Option<i64> {
        (self.current.by_digest.get(digest))
            .or_else(|| self.previous.by_digest.get(digest))
            .copied()
    }
}

/// See the module documentation.
pub(crate) struct ItemCache {
    maps: RwLock<Generations>,
    capacity: usize,
}

impl Default for ItemCache {
    fn default() -> ItemCache {
        ItemCache::with_capacity(DEFAULT_CAPACITY)
    }
}

impl ItemCache {
    pub fn with_capacity(capacity: usize) -> ItemCache {
        ItemCache {
            maps: RwLock::new(Generations::default()),
            capacity,
        }
    }

    /// The ids of items by digest, `None` where the cache does not know one.
    pub fn ids<'a>(&self, digests: impl IntoIterator<Item = &'a Digest>) -> Vec<Option<i64>> {
        let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
        digests.into_iter().map(|d| maps.id(d)).collect()
    }

    /// How many items the cache holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Items by id, `None` where the cache does not know one.
    pub fn items(&self, ids: &[i64]) -> Vec<Option<CachedItem>> {
        let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
        ids.iter().map(|&id| maps.get(id).cloned()).collect()
    }

    /// Runs `f` with a lookup of cached items by id, under the read lock and without copying
    /// them: a delta looks at the digest of every item of a snapshot, and copying 1,500 keys
    /// per delta would cost more than the rest of the check.
    pub fn with_lookup<R>(
        &self,
        f: impl for<'m> FnOnce(&'m dyn Fn(i64) -> Option<&'m CachedItem>) -> R,
    ) -> R {
        let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
        f(&|id| maps.get(id))
    }

    /// Remembers committed items. When the current generation holds half the capacity it
    /// becomes the previous one and the generation before is dropped: what was used since the
    /// last turn stays, instead of the whole cache starting afresh and every delta after that
    /// going to the database for its items.
    pub fn insert(&self, items: impl IntoIterator<Item = (i64, CachedItem)>) {
        let mut maps = self.maps.write().unwrap_or_else(|p| p.into_inner());
        for (id, item) in items {
            if maps.current.len >= self.capacity / 2 {
                tracing::debug!(
                    capacity = self.capacity,
                    "Item cache generation is full; dropping the older one."
                );
                maps.previous = std::mem::take(&mut maps.current);
            }
            maps.current.put(id, item);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
        maps.current.len + maps.previous.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u8) -> CachedItem {
        CachedItem {
            key: Arc::from(format!("k{n}")),
            digest: Digest([n; 32]),
        }
    }

    #[test]
    fn finds_what_it_was_given() {
        let c = ItemCache::default();
        c.insert([(1, item(1)), (2, item(2))]);
        assert_eq!(
            c.ids([&Digest([2; 32]), &Digest([3; 32])]),
            vec![Some(2), None]
        );
        let got = c.items(&[1, 5, -1, MAX_CACHED_ID]);
        assert_eq!(&*got[0].as_ref().unwrap().key, "k1");
        assert!(got[1..].iter().all(Option::is_none));
        // Ids far apart land on pages of their own.
        c.insert([(5_000_000, item(7))]);
        c.with_lookup(|get| {
            assert_eq!(get(5_000_000).unwrap().digest, Digest([7; 32]));
            assert!(get(5_000_001).is_none() && get(2).is_some());
        });
        // An id the cache does not keep is simply not cached.
        c.insert([(MAX_CACHED_ID, item(8))]);
        assert_eq!(c.ids([&Digest([8; 32])]), vec![None]);
    }

    #[test]
    fn keeps_two_generations_when_full() {
        let c = ItemCache::with_capacity(4);
        c.insert([(1, item(1)), (2, item(2)), (3, item(3))]);
        // Generations of two: {1, 2} turned into the previous one when 3 came.
        assert_eq!(c.len(), 3);
        let all = [&Digest([1; 32]), &Digest([2; 32]), &Digest([3; 32])];
        assert_eq!(c.ids(all), vec![Some(1), Some(2), Some(3)]);
        c.insert([(4, item(4)), (5, item(5))]);
        // {3, 4} is now the previous generation and {1, 2} is gone.
        assert_eq!(c.len(), 3);
        assert_eq!(c.ids(all), vec![None, None, Some(3)]);
        c.with_lookup(|get| {
            assert!(get(1).is_none() && get(3).is_some() && get(5).is_some());
        });
        assert!(
            c.items(&[2, 4])
                .iter()
                .map(Option::is_some)
                .eq([false, true])
        );
    }
}
