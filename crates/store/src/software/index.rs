//! The in-memory software index: for every package item the site has stored, which clients
//! hold it now. It answers both software queries (one package's holders, every package with
//! its counts) without reading any client's item list, and is kept up to date by the changes
//! the backends hand it after each commit ([`SwChange`]).
//!
//! Size. A package item's own entry is 28 bytes; its holders are a single client inline while
//! there is one (most of a fleet's own packages), and a compressed bitmap beyond that (about a
//! bit per client for a package most clients have). Names, versions, architectures and sources
//! are interned into one string arena. On the load generator's 100,000-client fleet (1.5
//! million package items under nearly as many names) the whole index is about 300 MB
//! resident, mostly the names and the per-item tables (BENCHMARKS.md).

use std::sync::Mutex;

use hashbrown::HashTable;
use invsync_proto::version::{Scheme, compare_across};
use roaring::RoaringBitmap;

use super::{Package, SwChange};
use crate::cache::FastMap;

/// `item_pkg` of an id the index has not seen.
const UNKNOWN: u32 = u32::MAX;
/// `item_pkg` of an item that is not a package (no name, version or source).
const NOT_PACKAGE: u32 = u32::MAX - 1;
/// End of a list of packages of one name.
const NONE: u32 = u32::MAX;

/// Strings stored once, by index: names, versions, architectures and sources.
#[derive(Default)]
struct Interner {
    text: String,
    spans: Vec<(u32, u32)>,
    table: HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Interner {
    fn get(&self, i: u32) -> &str {
        let (start, len) = self.spans[i as usize];
        &self.text[start as usize..(start + len) as usize]
    }

    fn hash(&self, s: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(s)
    }

    fn find(&self, s: &str) -> Option<u32> {
        let h = self.hash(s);
        self.table.find(h, |&i| self.get(i) == s).copied()
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(i) = self.find(s) {
            return i;
        }
        let i = u32::try_from(self.spans.len()).expect("fewer than 4 billion strings");
        let start = u32::try_from(self.text.len()).expect("less than 4 GB of package strings");
        self.text.push_str(s);
        self.spans.push((start, s.len() as u32));
        let h = self.hash(s);
        let (text, spans, hasher) = (&self.text, &self.spans, &self.hasher);
        self.table.insert_unique(h, i, |&j| {
            use std::hash::BuildHasher;
            let (start, len) = spans[j as usize];
            hasher.hash_one(&text[start as usize..(start + len) as usize])
        });
        i
    }
}

/// One package item: its interned attributes and its holders.
#[derive(Clone, Copy)]
struct Pkg {
    name: u32,
    version: u32,
    arch: u32,
    source: u32,
    /// The next package of the same name, or [`NONE`].
    next: u32,
    /// How many clients hold it.
    count: u32,
    /// With `count` 1 the one client; with more, the index of its bitmap in `sets`.
    holder: u32,
}

/// Which clients hold each package; see the module documentation.
pub(crate) struct Index {
    /// Item id → index in `pkgs`, [`NOT_PACKAGE`] or [`UNKNOWN`]. Item ids are row ids handed
    /// out in sequence, so a table indexed by id is as long as the largest id and the cheapest
    /// lookup there is.
    item_pkg: Vec<u32>,
    pkgs: Vec<Pkg>,
    strings: Interner,
    /// Name string → its first package ([`NONE`] for strings that are not names).
    first_of_name: Vec<u32>,
    /// Every name string, in the order they were first seen.
    names: Vec<u32>,
    /// Names in byte order, extended lazily by queries (see [`NameOrder`]).
    order: Mutex<NameOrder>,
    sets: Vec<RoaringBitmap>,
    free_sets: Vec<u32>,
    /// Client row → the version of its software snapshot that the index reflects.
    versions: FastMap<u32, i64>,
    /// Changes that arrived before the change they follow (see [`Index::apply`]).
    parked: FastMap<u32, Vec<SwChange>>,
    /// Clients whose whole software snapshot went (deleted clients) while their bits are
    /// still in the bitmaps of the packages they held: counted out of [`Pkg::count`] at once,
    /// left out of every answer, and removed from the bitmaps in one pass ([`Index::compact`])
    /// when enough have gone. Removing a client from its 1,500 packages' bitmaps one by one
    /// cost about a millisecond (an array container shifts its tail on every removal), on the
    /// writer's thread: deleting clients held the other clients' reports back.
    gone: RoaringBitmap,
}

/// Gone clients below which [`Index::compact`] waits for more (see [`Index::retire`]).
const COMPACT_FROM: u64 = 1_024;

/// What [`Index::remove_holder`] does with the client's bit in a package's bitmap.
#[derive(Clone, Copy)]
enum Removal {
    /// Removes it (and counts the client out only if it was there).
    Now,
    /// Leaves it for [`Index::compact`]: the change removes the client's whole snapshot, the
    /// one the index holds for it (`Index::apply` checked the version), each item once, so
    /// the bit is set.
    Later,
}

/// The names sorted by text: `sorted` holds the first `merged` of `Index::names`.
#[derive(Default)]
struct NameOrder {
    sorted: Vec<u32>,
    merged: usize,
}

/// Why the index no longer reflects the database; it is then dropped and rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inconsistent {
    /// A change named an item the index never saw, without describing it.
    UnknownItem(i64),
    /// Changes of one client wait for one that never came.
    LostChange { client: u32 },
    /// A row id too large for the index's 32-bit client numbers.
    ClientRow(i64),
}

impl std::fmt::Display for Inconsistent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inconsistent::UnknownItem(id) => {
                write!(f, "a change named item {id}, which the index does not know")
            }
            Inconsistent::LostChange { client } => {
                write!(
                    f,
                    "changes of client row {client} wait for an earlier change that never came"
                )
            }
            Inconsistent::ClientRow(row) => write!(f, "client row {row} does not fit in 32 bits"),
        }
    }
}

/// Parked changes of one client beyond which one is taken to be lost.
const MAX_PARKED: usize = 64;

/// One package's holders as a query needs them.
pub(crate) struct PackageHolders {
    pub package: Package,
    pub clients: RoaringBitmap,
}

impl Default for Index {
    fn default() -> Index {
        Index {
            item_pkg: Vec::new(),
            pkgs: Vec::new(),
            strings: Interner::default(),
            first_of_name: Vec::new(),
            names: Vec::new(),
            order: Mutex::new(NameOrder::default()),
            sets: Vec::new(),
            free_sets: Vec::new(),
            versions: FastMap::default(),
            parked: FastMap::default(),
            gone: RoaringBitmap::new(),
        }
    }
}

/// A client row as the index numbers clients.
pub(crate) fn client_no(row: i64) -> Result<u32, Inconsistent> {
    u32::try_from(row).map_err(|_| Inconsistent::ClientRow(row))
}

impl Index {
    /// Whether the index knows what item `id` is (a package or not).
    pub fn knows(&self, id: i64) -> bool {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.item_pkg.get(i))
            .is_some_and(|&p| p != UNKNOWN)
    }

    /// Records what item `id` is: `Some` package or `None` for an item that is not one. An id
    /// already known keeps what it was (an item never changes).
    pub fn describe(&mut self, id: i64, package: Option<&Package>) {
        let Ok(i) = usize::try_from(id) else { return };
        if self.item_pkg.len() <= i {
            self.item_pkg.resize(i + 1, UNKNOWN);
        }
        if self.item_pkg[i] != UNKNOWN {
            return;
        }
        self.item_pkg[i] = match package {
            None => NOT_PACKAGE,
            Some(p) => self.add_package(p),
        };
    }

    fn add_package(&mut self, p: &Package) -> u32 {
        let name = self.strings.intern(&p.name);
        let (version, arch, source) = (
            self.strings.intern(&p.version),
            self.strings.intern(&p.arch),
            self.strings.intern(&p.source),
        );
        if self.first_of_name.len() < self.strings.spans.len() {
            self.first_of_name.resize(self.strings.spans.len(), NONE);
        }
        let first = self.first_of_name[name as usize];
        if first == NONE {
            self.names.push(name);
        }
        let index = u32::try_from(self.pkgs.len()).expect("fewer than 4 billion packages");
        self.pkgs.push(Pkg {
            name,
            version,
            arch,
            source,
            next: first,
            count: 0,
            holder: 0,
        });
        self.first_of_name[name as usize] = index;
        index
    }

    /// Records that the index reflects version `version` of client `client`'s snapshot (a
    /// build, after handing its holders to [`Index::add_holders`]).
    pub fn set_version(&mut self, client: u32, version: i64) {
        self.versions.insert(client, version);
    }

    /// Adds `clients` (ascending, distinct, none a holder yet) as holders of package `p`: a
    /// build's way, which touches each package's bitmap once per block of clients instead of
    /// once per client (at 100,000 clients, inserting one holder at a time spent most of a
    /// 14-second build waiting for memory).
    pub fn add_holders(&mut self, p: u32, clients: &[u32]) {
        debug_assert!(self.gone.is_empty(), "a build starts from an empty index");
        let pkg = self.pkgs[p as usize];
        if let (0, [one]) = (pkg.count, clients) {
            let pkg = &mut self.pkgs[p as usize];
            pkg.holder = *one;
            pkg.count = 1;
            return;
        }
        let (mut set, slot) = match pkg.count {
            0 => (RoaringBitmap::new(), None),
            1 => (std::iter::once(pkg.holder).collect(), None),
            _ => (
                std::mem::take(&mut self.sets[pkg.holder as usize]),
                Some(pkg.holder),
            ),
        };
        if set.append(clients.iter().copied()).is_err() {
            // Not above every holder so far (the build read clients out of row order).
            set.extend(clients.iter().copied());
        }
        let count = u32::try_from(set.len()).expect("fewer than 4 billion clients");
        let slot = match slot {
            Some(s) => {
                self.sets[s as usize] = set;
                s
            }
            None => self.store_set(set),
        };
        let pkg = &mut self.pkgs[p as usize];
        pkg.holder = slot;
        pkg.count = count;
    }

    /// Keeps a bitmap of holders in a free slot of `sets` (or a new one) and returns the slot.
    fn store_set(&mut self, set: RoaringBitmap) -> u32 {
        match self.free_sets.pop() {
            Some(s) => {
                self.sets[s as usize] = set;
                s
            }
            None => {
                self.sets.push(set);
                (self.sets.len() - 1) as u32
            }
        }
    }

    /// The package index of item `id`, if it is a package.
    pub fn package_of(&self, id: i64) -> Result<Option<u32>, Inconsistent> {
        let p = usize::try_from(id)
            .ok()
            .and_then(|i| self.item_pkg.get(i).copied())
            .unwrap_or(UNKNOWN);
        match p {
            UNKNOWN => Err(Inconsistent::UnknownItem(id)),
            NOT_PACKAGE => Ok(None),
            p => Ok(Some(p)),
        }
    }

    fn add_holder(&mut self, id: i64, client: u32) -> Result<(), Inconsistent> {
        let Some(p) = self.package_of(id)? else {
            return Ok(());
        };
        let p = p as usize;
        let pkg = &mut self.pkgs[p];
        match pkg.count {
            0 => {
                pkg.holder = client;
                pkg.count = 1;
            }
            1 if pkg.holder == client => {}
            1 => {
                let pair = [pkg.holder, client].into_iter().collect();
                let slot = self.store_set(pair);
                let pkg = &mut self.pkgs[p];
                pkg.holder = slot;
                pkg.count = 2;
            }
            _ => {
                if self.sets[pkg.holder as usize].insert(client) {
                    pkg.count += 1;
                }
            }
        }
        Ok(())
    }

    fn remove_holder(&mut self, id: i64, client: u32, how: Removal) -> Result<(), Inconsistent> {
        let Some(p) = self.package_of(id)? else {
            return Ok(());
        };
        let pkg = &mut self.pkgs[p as usize];
        match pkg.count {
            0 => {}
            1 => {
                if pkg.holder == client {
                    pkg.count = 0;
                }
            }
            _ => {
                let held = match how {
                    Removal::Now => self.sets[pkg.holder as usize].remove(client),
                    // Not looked up: the bit is set (see `Removal::Later`). The lookups (a
                    // binary search in a cold 8 KB container per package) were 40 % of a
                    // deletion's CPU.
                    Removal::Later => true,
                };
                if held {
                    pkg.count -= 1;
                    if pkg.count == 1 {
                        self.down_to_one_holder(p, client);
                    }
                }
            }
        }
        Ok(())
    }

    /// Package `p`, down to one holder now that `leaving` left it, keeps that holder inline
    /// and gives its bitmap's slot back. The bitmap may still hold `leaving` and gone clients.
    fn down_to_one_holder(&mut self, p: u32, leaving: u32) {
        let slot = self.pkgs[p as usize].holder;
        let mut set = std::mem::take(&mut self.sets[slot as usize]);
        set.remove(leaving);
        // One pass over both bitmaps: a lookup in `gone` per bit was most of a deletion's CPU
        // once the bitmaps held many gone clients.
        set -= &self.gone;
        let only = set.min().expect("one holder left");
        self.free_sets.push(slot);
        self.pkgs[p as usize].holder = only;
    }

    /// Client `client`'s whole snapshot went (`removed`: the package items of the snapshot
    /// version the index reflects for it, each once): it is counted out of each package at
    /// once and added to [`Index::gone`]; its bits leave the bitmaps at the next
    /// [`Index::compact`], which runs once the gone clients are an eighth of the clients (and
    /// at least [`COMPACT_FROM`]), so that its pass over every bitmap is paid once per many
    /// deletions and the stale bits stay a small part of the index.
    fn retire(&mut self, client: u32, removed: &[i64]) -> Result<(), Inconsistent> {
        for &id in removed {
            self.remove_holder(id, client, Removal::Later)?;
        }
        self.gone.insert(client);
        if self.gone.len() >= COMPACT_FROM.max(self.versions.len() as u64 / 8) {
            self.compact();
        }
        Ok(())
    }

    /// Removes the gone clients' bits from every bitmap.
    fn compact(&mut self) {
        let started = std::time::Instant::now();
        let gone = std::mem::take(&mut self.gone);
        for set in &mut self.sets {
            if !set.is_empty() {
                *set -= &gone;
            }
        }
        tracing::debug!(
            gone = gone.len(),
            bitmaps = self.sets.len(),
            took_ms = started.elapsed().as_secs_f64() * 1e3,
            "Removed deleted clients from the software index's bitmaps."
        );
    }

    /// Applies a committed change. Changes of one client must be applied in the order they
    /// were committed; a change that arrives before the one it follows (PostgreSQL commits
    /// in parallel, so two changes of one client can reach the index in either order) waits
    /// until its predecessor has been applied: a change says which version it replaces.
    pub fn apply(&mut self, change: SwChange) -> Result<(), Inconsistent> {
        for (id, package) in &change.described {
            self.describe(*id, package.as_ref());
        }
        let client = change.client;
        if self.versions.get(&client).copied() != change.from {
            let parked = self.parked.entry(client).or_default();
            parked.push(change);
            if parked.len() > MAX_PARKED {
                return Err(Inconsistent::LostChange { client });
            }
            return Ok(());
        }
        self.apply_in_order(change)?;
        // The changes it unblocks, in turn.
        while let Some(waiting) = self.parked.get_mut(&client) {
            let current = self.versions.get(&client).copied();
            let Some(i) = waiting.iter().position(|c| c.from == current) else {
                break;
            };
            let next = waiting.swap_remove(i);
            if waiting.is_empty() {
                self.parked.remove(&client);
            }
            self.apply_in_order(next)?;
        }
        Ok(())
    }

    fn apply_in_order(&mut self, change: SwChange) -> Result<(), Inconsistent> {
        // A gone client's row holding packages again (a row id handed out anew): its old bits
        // must not count for it.
        if self.gone.contains(change.client) {
            self.compact();
        }
        if change.to.is_none() && change.added.is_empty() {
            self.retire(change.client, &change.removed)?;
            self.versions.remove(&change.client);
            return Ok(());
        }
        for &id in &change.removed {
            self.remove_holder(id, change.client, Removal::Now)?;
        }
        for &id in &change.added {
            self.add_holder(id, change.client)?;
        }
        match change.to {
            Some(v) => self.versions.insert(change.client, v),
            None => self.versions.remove(&change.client),
        };
        Ok(())
    }

    /// The item ids `change` adds that the index does not know.
    pub fn unknown_in<'c>(&'c self, change: &'c SwChange) -> impl Iterator<Item = i64> + 'c {
        change.added.iter().copied().filter(|&id| !self.knows(id))
    }

    fn package(&self, p: &Pkg) -> Package {
        Package {
            name: self.strings.get(p.name).to_string(),
            version: self.strings.get(p.version).to_string(),
            arch: self.strings.get(p.arch).to_string(),
            source: self.strings.get(p.source).to_string(),
        }
    }

    fn holders_of(&self, p: &Pkg) -> RoaringBitmap {
        match p.count {
            0 => RoaringBitmap::new(),
            1 => std::iter::once(p.holder).collect(),
            _ => {
                let mut set = self.sets[p.holder as usize].clone();
                if !self.gone.is_empty() {
                    set -= &self.gone;
                }
                set
            }
        }
    }

    /// Whether a package has a holder among `site` (any holder for `None`).
    fn held(&self, p: &Pkg, site: Option<&RoaringBitmap>) -> bool {
        match (p.count, site) {
            (0, _) => false,
            (_, None) => true,
            (1, Some(s)) => s.contains(p.holder),
            (_, Some(s)) if self.gone.is_empty() => !self.sets[p.holder as usize].is_disjoint(s),
            (_, Some(s)) => !(&self.sets[p.holder as usize] & s).is_subset(&self.gone),
        }
    }

    fn packages_named(&self, name: u32) -> impl Iterator<Item = &Pkg> {
        let mut next = self
            .first_of_name
            .get(name as usize)
            .copied()
            .unwrap_or(NONE);
        std::iter::from_fn(move || {
            (next != NONE).then(|| {
                let p = &self.pkgs[next as usize];
                next = p.next;
                p
            })
        })
    }

    /// The packages named exactly `name` whose version `keep` accepts (it is given the
    /// version and the package's source, whose rules compare it), each with its holders
    /// (among `site` when given), sorted by version (each source's own order, see
    /// [`compare_across`]), architecture and source. Packages no client holds are left out.
    pub fn holders(
        &self,
        name: &str,
        keep: impl Fn(&str, &str) -> bool,
        site: Option<&RoaringBitmap>,
    ) -> Vec<PackageHolders> {
        let Some(n) = self.strings.find(name) else {
            return Vec::new();
        };
        let mut out: Vec<PackageHolders> = self
            .packages_named(n)
            .filter(|p| {
                p.count > 0 && keep(self.strings.get(p.version), self.strings.get(p.source))
            })
            .filter_map(|p| {
                let mut clients = self.holders_of(p);
                if let Some(s) = site {
                    clients &= s;
                }
                (!clients.is_empty()).then(|| PackageHolders {
                    package: self.package(p),
                    clients,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            let (pa, pb) = (&a.package, &b.package);
            compare_across(&pa.source, &pa.version, &pb.source, &pb.version)
                .then_with(|| a.package.arch.cmp(&b.package.arch))
                .then_with(|| a.package.source.cmp(&b.package.source))
        });
        out
    }

    /// Brings the name order up to date with the names seen since it was last sorted: those
    /// are sorted alone and merged in, rather than sorting all again.
    pub fn sort_names(&self) {
        let mut order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        if order.merged == self.names.len() {
            return;
        }
        let mut fresh = self.names[order.merged..].to_vec();
        fresh.sort_unstable_by(|&a, &b| self.strings.get(a).cmp(self.strings.get(b)));
        let old = std::mem::take(&mut order.sorted);
        let mut merged = Vec::with_capacity(old.len() + fresh.len());
        let (mut i, mut j) = (0, 0);
        while i < old.len() && j < fresh.len() {
            if self.strings.get(old[i]) <= self.strings.get(fresh[j]) {
                merged.push(old[i]);
                i += 1;
            } else {
                merged.push(fresh[j]);
                j += 1;
            }
        }
        merged.extend_from_slice(&old[i..]);
        merged.extend_from_slice(&fresh[j..]);
        order.sorted = merged;
        order.merged = self.names.len();
    }

    /// The package names that some client (of `site`) holds and that `keep` accepts (all for
    /// `None`): how many, and the texts of `limit` of them from `offset` on, in byte order.
    ///
    /// Walking the names in sorted order reads their texts in no order at all, a cache miss
    /// each (a quarter of a second for a million names); so `keep` is first asked of every
    /// name in the order the texts lie in memory, and only the page's texts are read in order.
    pub fn names_held(
        &self,
        site: Option<&RoaringBitmap>,
        keep: Option<&dyn Fn(&str) -> bool>,
        offset: u64,
        limit: u32,
    ) -> (u64, Vec<String>) {
        self.sort_names();
        let kept: Option<Vec<bool>> = keep.map(|keep| {
            let mut kept = vec![false; self.strings.spans.len()];
            for &n in &self.names {
                kept[n as usize] = keep(self.strings.get(n));
            }
            kept
        });
        let order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        let (mut total, mut page) = (0u64, Vec::new());
        for &n in &order.sorted {
            if kept.as_ref().is_none_or(|k| k[n as usize])
                && self.packages_named(n).any(|p| self.held(p, site))
            {
                if total >= offset && page.len() < limit as usize {
                    page.push(self.strings.get(n).to_string());
                }
                total += 1;
            }
        }
        (total, page)
    }

    /// How many clients (of `site`) hold package `name`, in all and per version, versions in
    /// their sources' order ([`compare_across`]; a version string held from packages of two
    /// sources is one entry, placed by the first rules in [`Scheme`]'s order among them). A
    /// client holding two architectures of a version counts once.
    pub fn counts(&self, name: &str, site: Option<&RoaringBitmap>) -> (u64, Vec<(String, u64)>) {
        let Some(n) = self.strings.find(name) else {
            return (0, Vec::new());
        };
        let held: Vec<&Pkg> = self
            .packages_named(n)
            .filter(|p| self.held(p, site))
            .collect();
        let count = |ps: &[&Pkg]| -> u64 {
            if let [p] = ps
                && site.is_none()
            {
                return u64::from(p.count);
            }
            let mut all = RoaringBitmap::new();
            for p in ps {
                all |= self.holders_of(p);
            }
            match site {
                Some(s) => all.intersection_len(s),
                None => all.len(),
            }
        };
        let mut by_version: Vec<(u32, Scheme, Vec<&Pkg>)> = Vec::new();
        for &p in &held {
            let scheme = Scheme::of(self.strings.get(p.source));
            match by_version.iter_mut().find(|(v, _, _)| *v == p.version) {
                Some((_, s, ps)) => {
                    *s = (*s).min(scheme);
                    ps.push(p);
                }
                None => by_version.push((p.version, scheme, vec![p])),
            }
        }
        by_version.sort_by(|(va, sa, _), (vb, sb, _)| {
            sa.cmp(sb)
                .then_with(|| sa.compare(self.strings.get(*va), self.strings.get(*vb)))
        });
        let versions: Vec<(String, u64)> = by_version
            .iter()
            .map(|(v, _, ps)| (self.strings.get(*v).to_string(), count(ps)))
            .collect();
        (count(&held), versions)
    }

    /// Gives back the room a build's growing tables left over (up to half of each).
    pub fn shrink(&mut self) {
        self.item_pkg.shrink_to_fit();
        self.pkgs.shrink_to_fit();
        self.strings.text.shrink_to_fit();
        self.strings.spans.shrink_to_fit();
        self.first_of_name.shrink_to_fit();
        self.names.shrink_to_fit();
        self.sets.shrink_to_fit();
    }

    /// Rough heap bytes the index holds, for its log line and BENCHMARKS.md.
    pub fn heap_bytes(&self) -> usize {
        let sets: usize = self.sets.iter().map(|s| s.serialized_size() + 48).sum();
        self.item_pkg.capacity() * 4
            + self.pkgs.capacity() * std::mem::size_of::<Pkg>()
            + self.strings.text.capacity()
            + self.strings.spans.capacity() * 8
            + self.strings.table.capacity() * 5
            + self.first_of_name.capacity() * 4
            + self.names.capacity() * 4
            + self.order.lock().map_or(0, |o| o.sorted.capacity() * 4)
            + sets
            + self.versions.capacity() * 16
            + self.gone.serialized_size()
    }

    /// Counts for the log line: package items, names and clients.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.pkgs.len(), self.names.len(), self.versions.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str, arch: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
            source: "dpkg".into(),
        }
    }

    fn change(
        client: u32,
        from: Option<i64>,
        to: Option<i64>,
        removed: &[i64],
        added: &[i64],
    ) -> SwChange {
        SwChange {
            client,
            from,
            to,
            removed: removed.to_vec(),
            added: added.to_vec(),
            described: Vec::new(),
        }
    }

    fn holders(ix: &Index, name: &str) -> Vec<(String, Vec<u32>)> {
        ix.holders(name, |_, _| true, None)
            .into_iter()
            .map(|h| {
                (
                    format!("{} {}", h.package.version, h.package.arch),
                    h.clients.iter().collect(),
                )
            })
            .collect()
    }

    fn index() -> Index {
        let mut ix = Index::default();
        ix.describe(1, Some(&pkg("bash", "5.2-1", "amd64")));
        ix.describe(2, Some(&pkg("bash", "5.1-1", "amd64")));
        ix.describe(3, Some(&pkg("openssl", "3.0.11-1", "amd64")));
        ix.describe(4, Some(&pkg("openssl", "3.0.11-1", "i386")));
        ix.describe(5, None);
        ix
    }

    #[test]
    fn versions_sort_and_count_by_their_sources_rules() {
        let mut ix = Index::default();
        let sourced = |version: &str, source: &str| Package {
            name: "tool".into(),
            version: version.into(),
            arch: "x86_64".into(),
            source: source.into(),
        };
        ix.describe(1, Some(&sourced("1.0.1", "rpm")));
        ix.describe(2, Some(&sourced("1.0^git1", "rpm")));
        ix.describe(3, Some(&sourced("1.0", "apk")));
        ix.describe(4, Some(&sourced("1.0_rc1", "apk")));
        ix.describe(5, Some(&sourced("1.0~rc1", "dpkg")));
        ix.describe(6, Some(&sourced("1.0^git1", "dpkg")));
        ix.apply(change(7, None, Some(1), &[], &[1, 2, 3, 4, 5, 6]))
            .unwrap();
        ix.apply(change(8, None, Some(1), &[], &[2, 4])).unwrap();
        let listed: Vec<String> = ix
            .holders("tool", |_, _| true, None)
            .iter()
            .map(|h| format!("{} {}", h.package.source, h.package.version))
            .collect();
        // dpkg's rules first (`^` above `~`, nothing special), then rpm's, then apk's.
        assert_eq!(
            listed,
            [
                "dpkg 1.0~rc1",
                "dpkg 1.0^git1",
                "rpm 1.0^git1",
                "rpm 1.0.1",
                "apk 1.0_rc1",
                "apk 1.0"
            ]
        );
        let below = invsync_proto::version::VersionRange::parse("<1.0.1").unwrap();
        let kept: Vec<String> = ix
            .holders("tool", |v, s| below.matches_in(Scheme::of(s), v), None)
            .iter()
            .map(|h| format!("{} {}", h.package.source, h.package.version))
            .collect();
        // dpkg's `1.0^git1` is above `1.0.1` (`^` weighs more than `.`), rpm's is below.
        assert_eq!(
            kept,
            ["dpkg 1.0~rc1", "rpm 1.0^git1", "apk 1.0_rc1", "apk 1.0"]
        );
        let (clients, versions) = ix.counts("tool", None);
        assert_eq!(clients, 2);
        // `1.0^git1` is held from dpkg and rpm: one entry, placed by dpkg's rules.
        assert_eq!(
            versions,
            [
                ("1.0~rc1".to_string(), 1),
                ("1.0^git1".to_string(), 2),
                ("1.0.1".to_string(), 1),
                ("1.0_rc1".to_string(), 2),
                ("1.0".to_string(), 1)
            ]
        );
    }

    #[test]
    fn holders_move_from_inline_to_bitmap_and_back() {
        let mut ix = index();
        ix.apply(change(7, None, Some(1), &[], &[1, 5])).unwrap();
        assert_eq!(holders(&ix, "bash"), [("5.2-1 amd64".to_string(), vec![7])]);
        ix.apply(change(8, None, Some(1), &[], &[1])).unwrap();
        ix.apply(change(9, None, Some(1), &[], &[1, 2])).unwrap();
        assert_eq!(
            holders(&ix, "bash"),
            [
                ("5.1-1 amd64".to_string(), vec![9]),
                ("5.2-1 amd64".to_string(), vec![7, 8, 9])
            ]
        );
        ix.apply(change(7, Some(1), Some(2), &[1], &[])).unwrap();
        ix.apply(change(9, Some(1), Some(2), &[1], &[])).unwrap();
        assert_eq!(
            holders(&ix, "bash")[1],
            ("5.2-1 amd64".to_string(), vec![8])
        );
        assert_eq!(
            ix.free_sets.len(),
            1,
            "a set down to one holder is given back"
        );
        // The freed set is reused.
        ix.apply(change(7, Some(2), Some(3), &[], &[2])).unwrap();
        assert_eq!(
            holders(&ix, "bash")[0],
            ("5.1-1 amd64".to_string(), vec![7, 9])
        );
        assert!(ix.free_sets.is_empty());
        // Removing a holder that is not there changes nothing.
        ix.apply(change(8, Some(1), Some(2), &[3], &[])).unwrap();
        assert_eq!(
            holders(&ix, "openssl"),
            Vec::<(String, Vec<u32>)>::new(),
            "nobody holds it"
        );
    }

    #[test]
    fn a_change_that_arrives_early_waits_for_the_one_it_follows() {
        let mut ix = index();
        ix.apply(change(7, None, Some(1), &[], &[1])).unwrap();
        // Version 2 → 3 arrives before 1 → 2.
        ix.apply(change(7, Some(2), Some(3), &[2], &[3])).unwrap();
        assert_eq!(
            holders(&ix, "bash"),
            [("5.2-1 amd64".to_string(), vec![7])],
            "parked"
        );
        ix.apply(change(7, Some(1), Some(2), &[1], &[2])).unwrap();
        assert_eq!(holders(&ix, "bash"), Vec::<(String, Vec<u32>)>::new());
        assert_eq!(
            holders(&ix, "openssl"),
            [("3.0.11-1 amd64".to_string(), vec![7])]
        );
        assert!(ix.parked.is_empty());
        // A deletion, then the client created again under the same row.
        ix.apply(change(7, None, Some(1), &[], &[4])).unwrap();
        assert_eq!(ix.parked.len(), 1, "waits for the deletion");
        ix.apply(change(7, Some(3), None, &[3], &[])).unwrap();
        assert_eq!(
            holders(&ix, "openssl"),
            [("3.0.11-1 i386".to_string(), vec![7])]
        );
    }

    #[test]
    fn inconsistencies_are_reported_not_guessed() {
        let mut ix = index();
        assert_eq!(
            ix.apply(change(7, None, Some(1), &[], &[99])),
            Err(Inconsistent::UnknownItem(99))
        );
        let mut ix = index();
        let mut last = Ok(());
        for v in 0..=MAX_PARKED as i64 {
            last = ix.apply(change(7, Some(100 + v), Some(101 + v), &[], &[]));
        }
        assert_eq!(last, Err(Inconsistent::LostChange { client: 7 }));
        assert!(client_no(1 << 40).is_err());
    }

    #[test]
    fn names_come_in_byte_order_and_counts_count_clients_once() {
        let mut ix = index();
        ix.apply(change(1, None, Some(1), &[], &[3, 4, 1])).unwrap();
        ix.apply(change(2, None, Some(1), &[], &[3, 2])).unwrap();
        // A name first seen after a query is merged into the order.
        assert_eq!(
            ix.names_held(None, None, 0, 10),
            (2, vec!["bash".to_string(), "openssl".to_string()])
        );
        ix.describe(6, Some(&pkg("aaa", "1", "all")));
        ix.describe(7, Some(&pkg("zlib", "1", "amd64")));
        ix.apply(change(2, Some(1), Some(2), &[], &[6, 7])).unwrap();
        let not_zlib = |n: &str| n != "zlib";
        let (total, seen) = ix.names_held(None, Some(&not_zlib), 0, 10);
        assert_eq!(
            (total, seen),
            (3, vec!["aaa".to_string(), "bash".into(), "openssl".into()])
        );
        assert_eq!(
            ix.names_held(None, Some(&not_zlib), 1, 1),
            (3, vec!["bash".to_string()])
        );
        assert_eq!(
            ix.counts("openssl", None),
            (2, vec![("3.0.11-1".to_string(), 2)])
        );
        assert_eq!(
            ix.counts("bash", None),
            (2, vec![("5.1-1".to_string(), 1), ("5.2-1".to_string(), 1)])
        );
        let site: RoaringBitmap = [2].into_iter().collect();
        assert_eq!(
            ix.counts("bash", Some(&site)),
            (1, vec![("5.1-1".to_string(), 1)])
        );
        let only_1: RoaringBitmap = [1].into_iter().collect();
        assert_eq!(
            ix.names_held(Some(&only_1), None, 0, 10),
            (2, vec!["bash".to_string(), "openssl".to_string()])
        );
    }

    /// A deleted client's holdings leave every answer at once (holders, counts, a site's
    /// packages), though its bits stay in the bitmaps until enough clients have gone; a package
    /// down to one holder keeps the live one, never a gone client still in its bitmap; and a
    /// gone client's row holding packages again holds only its new ones.
    #[test]
    fn a_deleted_clients_holdings_leave_every_answer_before_the_bitmaps_are_compacted() {
        let mut ix = index();
        for client in [5, 10, 12] {
            ix.apply(change(client, None, Some(1), &[], &[1, 3, 5]))
                .unwrap();
        }
        ix.apply(change(11, None, Some(1), &[], &[1, 4])).unwrap();
        // Client 5 deleted: its whole snapshot goes.
        ix.apply(change(5, Some(1), None, &[1, 3, 5], &[])).unwrap();
        assert!(ix.gone.contains(5), "not compacted after one deletion");
        assert_eq!(
            holders(&ix, "bash"),
            [("5.2-1 amd64".to_string(), vec![10, 11, 12])]
        );
        assert_eq!(ix.counts("bash", None).0, 3);
        assert_eq!(
            ix.counts("openssl", None),
            (3, vec![("3.0.11-1".to_string(), 3)])
        );
        let only_5: RoaringBitmap = [5].into_iter().collect();
        assert_eq!(ix.counts("bash", Some(&only_5)).0, 0);
        assert_eq!(ix.names_held(Some(&only_5), None, 0, 10), (0, vec![]));
        // Client 12 changes openssl away, then 10: one holder left, and it is not gone 5.
        ix.apply(change(12, Some(1), Some(2), &[3], &[])).unwrap();
        assert_eq!(
            holders(&ix, "openssl"),
            [
                ("3.0.11-1 amd64".to_string(), vec![10]),
                ("3.0.11-1 i386".to_string(), vec![11])
            ]
        );
        ix.apply(change(10, Some(1), Some(2), &[3], &[])).unwrap();
        assert_eq!(ix.counts("openssl", None).0, 1);
        assert_eq!(
            holders(&ix, "openssl"),
            [("3.0.11-1 i386".to_string(), vec![11])]
        );
        ix.apply(change(11, Some(1), Some(2), &[4], &[3])).unwrap();
        assert_eq!(
            holders(&ix, "openssl"),
            [("3.0.11-1 amd64".to_string(), vec![11])]
        );
        // Row 5 handed out again, holding bash 5.1 only.
        ix.apply(change(5, None, Some(1), &[], &[2])).unwrap();
        assert!(
            ix.gone.is_empty(),
            "compacted before the row holds packages again"
        );
        assert_eq!(
            holders(&ix, "bash"),
            [
                ("5.1-1 amd64".to_string(), vec![5]),
                ("5.2-1 amd64".to_string(), vec![10, 11, 12])
            ]
        );
        assert_eq!(ix.counts("bash", None).0, 4);
    }

    /// Deleting many clients compacts the bitmaps once enough have gone, and the answers are
    /// the same before and after.
    #[test]
    fn deleting_many_clients_compacts_the_bitmaps_once_enough_have_gone() {
        let mut ix = index();
        let n = COMPACT_FROM as u32 + 10;
        for client in 1..=n {
            ix.apply(change(client, None, Some(1), &[], &[1, 3]))
                .unwrap();
        }
        for client in 1..COMPACT_FROM as u32 {
            ix.apply(change(client, Some(1), None, &[1, 3], &[]))
                .unwrap();
        }
        assert_eq!(ix.gone.len(), COMPACT_FROM - 1);
        let left: Vec<u32> = (COMPACT_FROM as u32..=n).collect();
        assert_eq!(
            holders(&ix, "bash"),
            [("5.2-1 amd64".to_string(), left.clone())]
        );
        ix.apply(change(COMPACT_FROM as u32, Some(1), None, &[1, 3], &[]))
            .unwrap();
        assert!(
            ix.gone.is_empty(),
            "compacted at {COMPACT_FROM} gone clients"
        );
        assert_eq!(
            holders(&ix, "bash"),
            [("5.2-1 amd64".to_string(), left[1..].to_vec())]
        );
        assert_eq!(
            ix.counts("openssl", None).0,
            u64::from(n - COMPACT_FROM as u32)
        );
    }
}
