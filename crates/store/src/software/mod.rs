//! Software across clients (`GET /api/v1/software`, the console's software page): which
//! clients have a package, and every package with how many clients have each version.
//!
//! Both are answered from an in-memory index ([`index::Index`]: package item → the clients
//! holding it) instead of reading every client's item list, which took 1.4 s for one package
//! and 6.9 s for every package at 100,000 clients. A per-package table in the database would
//! have answered too, but at a random page write per changed package per delta and about
//! 20 KB per client, against the delta and storage budgets of SPEC section 10; the index
//! costs neither, only memory and a build when the site starts.
//!
//! Keeping it exact is the whole difficulty, and works like this:
//!
//! * Every write that changes a client's software snapshot (a report, a forwarded change, the
//!   removal of a client) describes the change as a [`SwChange`] inside its transaction, and
//!   hands it to [`SoftwareIndex::apply`] after its commit. A change names the snapshot version
//!   it replaces, so changes of one client that reach the index out of order (PostgreSQL
//!   commits transactions in parallel) are applied in order all the same.
//! * A build reads the items and every software snapshot in one read transaction, while
//!   writes go on. The changes committed after that snapshot are queued and applied once the
//!   build is done. That "after" is exact because of the [`SoftwareIndex::gate`]: every
//!   writer holds it shared from before its transaction until its changes are handed over, and
//!   the build takes it exclusively for the moment it starts its snapshot and begins queueing.
//! * Items first stored after the build's snapshot are described to the index by the write
//!   that names them (on SQLite read back in its own transaction, on PostgreSQL just after its
//!   commit) or, for queued changes, by the build.
//! * A writer never waits for a query reading the index: its changes wait in a queue that the
//!   next writer or query applies first ([`SoftwareIndex::apply`]).
//! * Should the index ever find a change it cannot place (a bug), it says so in the log, drops
//!   itself and is rebuilt at the next query, rather than answer wrongly.
//!
//! The index is built when the site starts serving ([`crate::Store::warm_software_index`]) or
//! at the first software query; a query waits for the build.

mod index;

use invsync_proto::version::{Scheme, VersionRange};
use invsync_proto::wire::{
    PackagePage, PackageQuery, PackageSummary, SoftwareHolder, SoftwarePage, SoftwareQuery,
    VersionCount,
};
use invsync_proto::{ClientName, SiteCode};
use roaring::RoaringBitmap;
use uuid::Uuid;

use crate::cache::FastMap;
use crate::codec::{for_each_attr, for_each_id};
use crate::error::StoreError;
pub(crate) use index::{Index, client_no};

/// A stored item that is an installed package (it has `name`, `version` and `source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub source: String,
}

impl Package {
    /// The package an item's stored attributes describe, if they describe one. Hardware items
    /// have no `source`, so the `os` item (which has a name and version) is not a package.
    pub fn from_stored(attrs: &[u8]) -> Result<Option<Package>, StoreError> {
        let (mut name, mut version, mut arch, mut source) = (None, None, "", None);
        for_each_attr(attrs, |k, v| match k {
            "name" => name = Some(v),
            "version" => version = Some(v),
            "arch" => arch = v,
            "source" => source = Some(v),
            _ => {}
        })?;
        Ok(match (name, version, source) {
            (Some(name), Some(version), Some(source)) => Some(Package {
                name: name.to_string(),
                version: version.to_string(),
                arch: arch.to_string(),
                source: source.to_string(),
            }),
            _ => None,
        })
    }
}

/// The owner of a software snapshot, as a page of holders shows it.
#[derive(Debug, Clone)]
pub(crate) struct ListOwner {
    pub name: ClientName,
    pub id: Uuid,
    pub site: SiteCode,
}

/// One committed change of a client's software snapshot, as the index needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SwChange {
    /// The client's row.
    pub client: u32,
    /// The snapshot version replaced (`None`: the client had no software snapshot).
    pub from: Option<i64>,
    /// The version written (`None`: the client was removed).
    pub to: Option<i64>,
    /// Item ids no longer in the snapshot.
    pub removed: Vec<i64>,
    /// Item ids now in the snapshot.
    pub added: Vec<i64>,
    /// What the added items the index did not know are (`None`: not a package).
    pub described: Vec<(i64, Option<Package>)>,
}

/// Where the index is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Not built, and no build running.
    Idle,
    Building,
    Ready,
    /// The last build failed for this reason; the next query tries again.
    Failed(String),
}

enum State {
    /// No index: writers hand over nothing.
    Idle,
    /// A build runs; committed changes wait here in commit order.
    Building {
        queue: Vec<SwChange>,
    },
    Ready(Box<Index>),
}

/// The index with its life cycle; one per open store.
pub(crate) struct SoftwareIndex {
    /// Held shared by every write that may change a software snapshot, from before its
    /// transaction until its changes are handed to [`SoftwareIndex::apply`]; held exclusively
    /// by a build while it starts its snapshot. See the module documentation.
    pub gate: tokio::sync::RwLock<()>,
    state: std::sync::RwLock<State>,
    /// Committed changes not yet in `state`, in commit order. A query holds `state` shared for
    /// as long as it computes (tens of milliseconds for the package list at 100,000 clients),
    /// and the SQLite writer must not wait for it between two groups of writes; so changes
    /// wait here and whoever next holds `state` exclusively applies them (see `drain`), a query
    /// always before it reads.
    pending: std::sync::Mutex<Vec<SwChange>>,
    /// Whether `state` is not `Idle`, readable without its lock.
    active: std::sync::atomic::AtomicBool,
    phase: tokio::sync::watch::Sender<Phase>,
}

impl Default for SoftwareIndex {
    fn default() -> SoftwareIndex {
        SoftwareIndex {
            gate: tokio::sync::RwLock::new(()),
            state: std::sync::RwLock::new(State::Idle),
            pending: std::sync::Mutex::new(Vec::new()),
            active: std::sync::atomic::AtomicBool::new(false),
            phase: tokio::sync::watch::Sender::new(Phase::Idle),
        }
    }
}

impl SoftwareIndex {
    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn state_mut(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<SwChange>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_idle(&self, state: &mut State) {
        *state = State::Idle;
        self.active
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether writers must describe their changes (a build runs or the index is ready). Asked
    /// with the gate held shared, so the answer holds until the changes are handed over.
    pub fn collecting(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Of `ids` (item ids a change adds), those the ready index does not know, which the
    /// writer must describe; while a build runs, none (the build describes them). Should a
    /// query be using the index, all of them: describing a known item is harmless, and the
    /// writer does not wait.
    pub fn to_describe(&self, ids: &[i64]) -> Vec<i64> {
        let state = match self.state.try_read() {
            Ok(state) => state,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return ids.to_vec(),
        };
        match &*state {
            State::Ready(ix) => ids.iter().copied().filter(|&id| !ix.knows(id)).collect(),
            _ => Vec::new(),
        }
    }

    /// Hands over committed changes, in commit order. They are applied now if nothing is
    /// using the index, and otherwise by the next one to hold it exclusively.
    pub fn apply(&self, changes: Vec<SwChange>) {
        if changes.is_empty() {
            return;
        }
        self.pending().extend(changes);
        let state = match self.state.try_write() {
            Ok(state) => state,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        drop(self.drain(state));
    }

    /// Applies the pending changes to `state`, which the caller holds exclusively.
    fn drain<'a>(
        &'a self,
        mut state: std::sync::RwLockWriteGuard<'a, State>,
    ) -> std::sync::RwLockWriteGuard<'a, State> {
        let changes = std::mem::take(&mut *self.pending());
        match &mut *state {
            State::Idle => {}
            State::Building { queue } => queue.extend(changes),
            State::Ready(ix) => {
                for change in changes {
                    if let Err(e) = ix.apply(change) {
                        tracing::warn!(problem = %e, "The software index lost track of the database; it is dropped and will be rebuilt at the next software query. This is a bug.");
                        // The next query claims a build (`claim_build`).
                        self.set_idle(&mut state);
                        self.phase.send_replace(Phase::Idle);
                        break;
                    }
                }
            }
        }
        state
    }

    /// Starts the claimed build: from now on changes are queued. The caller holds the gate
    /// exclusively (so no write is between its commit and handing its changes over) and
    /// starts its read snapshot before releasing it. What is still pending was committed
    /// before that snapshot, which holds it already.
    pub fn begin_build(&self) {
        let mut state = self.state_mut();
        self.pending().clear();
        *state = State::Building { queue: Vec::new() };
        self.active.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Claims the next build for the caller, which must then run one: true when the index is
    /// neither ready nor being built (never built, dropped, or its last build failed).
    pub fn claim_build(&self) -> bool {
        self.phase.send_if_modified(|p| match p {
            Phase::Idle | Phase::Failed(_) => {
                *p = Phase::Building;
                true
            }
            _ => false,
        })
    }

    /// Item ids that changes queued since `build.checked` add and the build does not know;
    /// the build describes them from the database before [`SoftwareIndex::try_finish`].
    pub fn queued_unknown(&self, build: &mut Build) -> Vec<i64> {
        let state = self.state();
        let State::Building { queue } = &*state else {
            return Vec::new();
        };
        let mut ids: Vec<i64> = queue[build.checked.min(queue.len())..]
            .iter()
            .flat_map(|c| build.index.unknown_in(c))
            .collect();
        build.checked = queue.len();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Makes the built index the live one, after the queued changes, unless changes arrived
    /// since [`SoftwareIndex::queued_unknown`] last looked (then the build is handed back, to
    /// describe their items first).
    pub fn try_finish(&self, mut build: Box<Build>) -> Result<(), Box<Build>> {
        build.flush();
        // Sorted now, outside the lock, so that neither writers nor the first query wait for
        // it; the few names the queued changes add are merged in by the first query.
        build.index.sort_names();
        let mut state = self.drain(self.state_mut());
        let State::Building { queue } = &mut *state else {
            // Nothing else ends a build; keep whatever is there.
            return Ok(());
        };
        if queue.len() > build.checked {
            return Err(build);
        }
        for change in std::mem::take(queue) {
            if let Err(e) = build.index.apply(change) {
                drop(state);
                self.fail_build(&format!(
                    "a change committed during the build could not be applied: {e}"
                ));
                return Ok(());
            }
        }
        build.index.shrink();
        let (packages, names, clients) = build.index.sizes();
        tracing::info!(
            packages,
            names,
            clients,
            memory_mb = build.index.heap_bytes() / (1 << 20),
            elapsed_ms = build.started.elapsed().as_millis() as u64,
            "Built the software index."
        );
        *state = State::Ready(Box::new(build.index));
        self.phase.send_replace(Phase::Ready);
        Ok(())
    }

    /// Ends a build that failed; the next query starts another.
    pub fn fail_build(&self, reason: &str) {
        tracing::warn!(
            reason,
            "Could not build the software index; software queries fail until a build succeeds."
        );
        self.set_idle(&mut self.state_mut());
        self.phase.send_replace(Phase::Failed(reason.to_string()));
    }

    /// Waits until the index is ready, first claiming a build and running it with `start`
    /// (which spawns it) when none runs.
    pub async fn ready(&self, start: impl Fn()) -> Result<(), StoreError> {
        let mut rx = self.phase.subscribe();
        loop {
            if self.claim_build() {
                start();
            }
            let phase = rx
                .wait_for(|p| !matches!(p, Phase::Building))
                .await
                .map_err(|_| StoreError::Closed)?
                .clone();
            match phase {
                Phase::Failed(reason) => {
                    return Err(StoreError::Database(format!(
                        "the software index could not be built: {reason}"
                    )));
                }
                // Dropped (see `apply`) before this query got to it: build again.
                Phase::Idle => continue,
                _ => return Ok(()),
            }
        }
    }

    /// Runs `f` on the ready index (after [`SoftwareIndex::ready`]).
    pub fn read<T>(&self, f: impl FnOnce(&Index) -> T) -> Result<T, StoreError> {
        if !self.pending().is_empty() {
            drop(self.drain(self.state_mut()));
        }
        match &*self.state() {
            State::Ready(ix) => Ok(f(ix)),
            _ => Err(StoreError::Database(
                "the software index is being rebuilt; try again in a moment".to_string(),
            )),
        }
    }
}

/// An index being built from one read snapshot: items first, then every software snapshot.
pub(crate) struct Build {
    index: Index,
    /// How many queued changes [`SoftwareIndex::queued_unknown`] has looked at.
    checked: usize,
    started: std::time::Instant,
    ids: Vec<i64>,
    /// (package, client) pairs of the snapshots read since the last [`Build::flush`].
    pairs: Vec<(u32, u32)>,
    spare: Vec<(u32, u32)>,
    run: Vec<u32>,
}

/// Pairs gathered before they are handed to the index, package by package: 8 MB.
const BUILD_BLOCK: usize = 1 << 20;

impl Build {
    pub fn new() -> Box<Build> {
        Box::new(Build {
            index: Index::default(),
            checked: 0,
            started: std::time::Instant::now(),
            ids: Vec::new(),
            pairs: Vec::with_capacity(BUILD_BLOCK + 4096),
            spare: Vec::new(),
            run: Vec::new(),
        })
    }

    /// A stored item (every item, or any that a change names).
    pub fn item(&mut self, id: i64, attrs: &[u8]) -> Result<(), StoreError> {
        if !self.index.knows(id) {
            self.index
                .describe(id, Package::from_stored(attrs)?.as_ref());
        }
        Ok(())
    }

    /// The software snapshot of the client with row `client`.
    pub fn list(&mut self, client: i64, version: i64, items: &[u8]) -> Result<(), StoreError> {
        let ids = &mut self.ids;
        ids.clear();
        for_each_id(items, |id| ids.push(id))?;
        let row = client_no(client).map_err(|e| StoreError::Database(e.to_string()))?;
        for &id in &self.ids {
            let p = self.index.package_of(id).map_err(|e| {
                StoreError::Database(format!("software snapshot of client row {client}: {e}"))
            })?;
            if let Some(p) = p {
                self.pairs.push((p, row));
            }
        }
        self.index.set_version(row, version);
        if self.pairs.len() >= BUILD_BLOCK {
            self.flush();
        }
        Ok(())
    }

    /// Hands the gathered pairs to the index grouped by package: a stable radix sort on the
    /// package keeps each package's clients in the order they were read.
    fn flush(&mut self) {
        if self.pairs.is_empty() {
            return;
        }
        let max = self.pairs.iter().map(|p| p.0).max().unwrap_or(0);
        let mut shift = 0;
        while shift == 0 || (shift < 32 && max >> shift != 0) {
            let mut counts = [0usize; 2049];
            for &(p, _) in &self.pairs {
                counts[((p >> shift) & 2047) as usize + 1] += 1;
            }
            for i in 1..counts.len() {
                counts[i] += counts[i - 1];
            }
            self.spare.clear();
            self.spare.resize(self.pairs.len(), (0, 0));
            for &pair in &self.pairs {
                let b = ((pair.0 >> shift) & 2047) as usize;
                self.spare[counts[b]] = pair;
                counts[b] += 1;
            }
            std::mem::swap(&mut self.pairs, &mut self.spare);
            shift += 11;
        }
        let mut i = 0;
        while i < self.pairs.len() {
            let p = self.pairs[i].0;
            self.run.clear();
            while i < self.pairs.len() && self.pairs[i].0 == p {
                self.run.push(self.pairs[i].1);
                i += 1;
            }
            self.index.add_holders(p, &self.run);
        }
        self.pairs.clear();
    }
}

/// A change of client `client`'s software snapshot from `from` to `to`: what a write hands to
/// the index. `removed` and `added` are the item ids that left and entered the snapshot.
pub(crate) fn change(
    client: i64,
    from: Option<i64>,
    to: Option<i64>,
    removed: Vec<i64>,
    added: Vec<i64>,
) -> Result<SwChange, StoreError> {
    Ok(SwChange {
        client: client_no(client).map_err(|e| StoreError::Database(e.to_string()))?,
        from,
        to,
        removed,
        added,
        described: Vec::new(),
    })
}

/// Above this many holders, a page of them is found by walking the clients in name order
/// (stopping once the page is full) rather than by looking each holder up and sorting.
pub(crate) const DIRECT_HOLDERS: u64 = 2_000;

/// The holders of one package as an index lookup found them; the backend supplies the
/// clients' names, by row ([`Holders::rows`]) or in name order ([`Holders::collector`]).
pub(crate) struct Holders {
    packages: Vec<index::PackageHolders>,
    union: RoaringBitmap,
    total: u64,
    offset: u64,
    limit: u32,
}

impl Holders {
    /// Looks `q` up; `site` is the set of the rows of `q.site`'s clients when it names one.
    pub fn find(ix: &Index, q: &SoftwareQuery, site: Option<&RoaringBitmap>) -> Holders {
        let packages = ix.holders(
            &q.name,
            |v, source| {
                q.version
                    .as_ref()
                    .is_none_or(|r: &VersionRange| r.matches_in(Scheme::of(source), v))
            },
            site,
        );
        let mut union = RoaringBitmap::new();
        for p in &packages {
            union |= &p.clients;
        }
        let total = packages.iter().map(|p| p.clients.len()).sum();
        Holders {
            packages,
            union,
            total,
            offset: q.offset,
            limit: q.limit,
        }
    }

    /// The rows of every holder, when they are few enough to look up one by one
    /// ([`DIRECT_HOLDERS`]); `None` means walk the clients in name order instead.
    pub fn rows(&self, direct_limit: u64) -> Option<Vec<i64>> {
        (self.union.len() <= direct_limit).then(|| self.union.iter().map(i64::from).collect())
    }

    /// The page, from the holders' owners by row (after [`Holders::rows`]).
    pub fn page_from(self, owners: &FastMap<i64, ListOwner>) -> SoftwarePage {
        let mut found: Vec<(&ListOwner, u32)> = self
            .union
            .iter()
            .filter_map(|r| owners.get(&i64::from(r)).map(|o| (o, r)))
            .collect();
        found.sort_by(|a, b| {
            a.0.name
                .as_str()
                .cmp(b.0.name.as_str())
                .then_with(|| a.0.site.as_str().cmp(b.0.site.as_str()))
        });
        let mut c = self.collector();
        for (owner, row) in found {
            if !c.offer(i64::from(row), owner) {
                break;
            }
        }
        c.finish()
    }

    /// Takes clients in name order (then site) and keeps the requested page of rows.
    pub fn collector(self) -> Collector {
        Collector {
            skip: self.offset,
            rows: Vec::new(),
            holders: self,
        }
    }
}

/// See [`Holders::collector`].
pub(crate) struct Collector {
    holders: Holders,
    skip: u64,
    rows: Vec<SoftwareHolder>,
}

impl Collector {
    /// Offers the next client in name order; false once the page is full.
    pub fn offer(&mut self, row: i64, owner: &ListOwner) -> bool {
        let Ok(r) = u32::try_from(row) else {
            return true;
        };
        if !self.holders.union.contains(r) {
            return true;
        }
        for p in &self.holders.packages {
            if !p.clients.contains(r) {
                continue;
            }
            if self.skip > 0 {
                self.skip -= 1;
                continue;
            }
            if self.rows.len() >= self.holders.limit as usize {
                return false;
            }
            self.rows.push(SoftwareHolder {
                client: owner.name.clone(),
                client_id: owner.id,
                site: owner.site.clone(),
                name: p.package.name.clone(),
                version: p.package.version.clone(),
                arch: p.package.arch.clone(),
                source: p.package.source.clone(),
            });
        }
        self.rows.len() < self.holders.limit as usize
    }

    pub fn finish(self) -> SoftwarePage {
        SoftwarePage {
            total: self.holders.total,
            offset: self.holders.offset,
            holders: self.rows,
        }
    }
}

/// A package-name search, ignoring case. Package names are nearly always lower-case ASCII,
/// which are searched as they are, with one searcher built per query; only the others are
/// lower-cased first. (At 100,000 clients a search visits a million names, and setting up a
/// `str::contains` search per name took a quarter of a second.)
struct Search {
    needle: String,
    finder: memchr::memmem::Finder<'static>,
}

impl Search {
    fn new(text: &str) -> Search {
        let needle = text.to_lowercase();
        Search {
            finder: memchr::memmem::Finder::new(needle.as_bytes()).into_owned(),
            needle,
        }
    }

    fn matches(&self, name: &str) -> bool {
        if !name.is_ascii() {
            name.to_lowercase().contains(&self.needle)
        } else if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.finder
                .find(name.to_ascii_lowercase().as_bytes())
                .is_some()
        } else {
            self.finder.find(name.as_bytes()).is_some()
        }
    }
}

/// Every package (whose name contains the search) with its client counts, one page of them.
pub(crate) fn packages_page(
    ix: &Index,
    q: &PackageQuery,
    site: Option<&RoaringBitmap>,
) -> PackagePage {
    let search = q
        .search
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(Search::new);
    let keep = search.as_ref().map(|s| move |name: &str| s.matches(name));
    let (total, names) = ix.names_held(
        site,
        keep.as_ref().map(|k| k as &dyn Fn(&str) -> bool),
        q.offset,
        q.limit,
    );
    let packages = names
        .into_iter()
        .map(|name| {
            let (clients, versions) = ix.counts(&name, site);
            let versions = versions
                .into_iter()
                .map(|(version, clients)| VersionCount { version, clients })
                .collect();
            PackageSummary {
                name,
                clients,
                versions,
            }
        })
        .collect();
    PackagePage {
        total,
        offset: q.offset,
        packages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_ids;
    use invsync_proto::version::compare;

    #[test]
    fn for_each_id_reads_what_encode_ids_wrote_and_refuses_garbage() {
        // Entries of one, two and three bytes, in every order.
        let ids = [
            5, 3, 1_000_000, 1_000_001, 7, 70, 8_000, 8_001, 200_000, 1, 2,
        ];
        let mut got = Vec::new();
        for_each_id(&encode_ids(&ids), |id| got.push(id)).unwrap();
        assert_eq!(got, ids);
        assert!(
            for_each_id(&[0x05, 0x80], |_| ()).is_err(),
            "truncated after a whole entry"
        );
        assert!(for_each_id(&[0x80], |_| ()).is_err(), "truncated");
        assert!(for_each_id(&[0xff; 11], |_| ()).is_err(), "overlong");
    }

    #[test]
    fn a_change_committed_while_a_query_reads_is_applied_before_the_next_query() {
        let sw = SoftwareIndex::default();
        assert!(!sw.collecting());
        assert!(sw.claim_build());
        sw.begin_build();
        assert!(sw.collecting());
        let mut build = Build::new();
        let bash = Package {
            name: "bash".into(),
            version: "5.2-1".into(),
            arch: "amd64".into(),
            source: "dpkg".into(),
        };
        build.index.describe(1, Some(&bash));
        sw.try_finish(build)
            .map_err(|_| "more to describe")
            .unwrap();
        let holders = |ix: &Index| ix.holders("bash", |_, _| true, None).len();
        let added = SwChange {
            client: 7,
            from: None,
            to: Some(1),
            removed: vec![],
            added: vec![1],
            described: vec![],
        };
        let during = sw
            .read(|ix| {
                // The writer neither waits for the query nor changes what it reads, and asks
                // to describe what it cannot look up.
                sw.apply(vec![added.clone()]);
                assert_eq!(sw.to_describe(&[1, 2]), vec![2]);
                holders(ix)
            })
            .unwrap();
        assert_eq!(during, 0);
        assert_eq!(
            sw.read(holders).unwrap(),
            1,
            "applied before the next query reads"
        );
        // While the index is held exclusively (another drain), a writer that cannot look
        // describes everything.
        let _held = sw.state.write().unwrap();
        assert_eq!(sw.to_describe(&[1, 2]), vec![1, 2]);
    }

    #[test]
    fn search_ignores_case_in_and_out_of_ascii() {
        assert!(Search::new("Manager").matches("NetworkManager"));
        assert!(Search::new("SSL").matches("libssl3"));
        assert!(!Search::new("tls").matches("libssl3"));
        assert!(Search::new("").matches("anything"));
        assert!(Search::new("äpfel").matches("ÄPFEL-utils"));
        assert!(!Search::new("äpfel").matches("apfel"));
    }

    /// An index of `clients` clients (rows 1..) holding random versions and architectures of
    /// one package, and their owners with names that sort in another order than their rows.
    fn holders_fixture(clients: u32, seed: u64) -> (Index, FastMap<i64, ListOwner>) {
        let mut ix = Index::default();
        let versions = ["1.0-1", "1.2-1", "1.10-1"];
        let mut id = 0;
        for v in versions {
            for arch in ["amd64", "i386"] {
                id += 1;
                ix.describe(
                    id,
                    Some(&Package {
                        name: "p".into(),
                        version: v.into(),
                        arch: arch.into(),
                        source: "dpkg".into(),
                    }),
                );
            }
        }
        let mut owners = FastMap::default();
        let mut state = seed | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for row in 1..=clients {
            let held: Vec<i64> = (1..=id).filter(|_| next() % 3 == 0).collect();
            ix.apply(SwChange {
                client: row,
                from: None,
                to: Some(1),
                removed: vec![],
                added: held,
                described: vec![],
            })
            .unwrap();
            // Names are unique per site, in another order than the rows (7919 and 307 are
            // prime, so this numbering is a permutation); each client of site S02 has the name
            // of the S01 client before it, so the site breaks ties.
            let (site, named_as) = if row % 5 == 0 {
                ("S02", row - 1)
            } else {
                ("S01", row)
            };
            owners.insert(
                i64::from(row),
                ListOwner {
                    name: ClientName::parse(&format!("C{:05}", (named_as * 7919) % 307)).unwrap(),
                    id: Uuid::from_u128(u128::from(row)),
                    site: SiteCode::parse(site).unwrap(),
                },
            );
        }
        (ix, owners)
    }

    #[test]
    fn pages_by_looking_holders_up_and_by_walking_clients_in_name_order_agree() {
        let (ix, owners) = holders_fixture(300, 42);
        let mut by_name: Vec<(&i64, &ListOwner)> = owners.iter().collect();
        by_name.sort_by(|a, b| {
            a.1.name
                .as_str()
                .cmp(b.1.name.as_str())
                .then_with(|| a.1.site.as_str().cmp(b.1.site.as_str()))
        });
        let show = |p: &SoftwarePage| -> Vec<String> {
            p.holders
                .iter()
                .map(|h| format!("{} {} {} {}", h.client, h.site, h.version, h.arch))
                .collect()
        };
        for version in [None, Some(">=1.2-1")] {
            let q = SoftwareQuery {
                name: "p".into(),
                version: version.map(|v| VersionRange::parse(v).unwrap()),
                site: None,
                limit: u32::MAX,
                offset: 0,
            };
            let all = Holders::find(&ix, &q, None).page_from(&owners);
            assert!(
                all.total > 300,
                "the fixture holds many rows: {}",
                all.total
            );
            assert_eq!(all.holders.len() as u64, all.total);
            let mut sorted = all.holders.clone();
            sorted.sort_by(|a, b| {
                a.client
                    .as_str()
                    .cmp(b.client.as_str())
                    .then_with(|| a.site.as_str().cmp(b.site.as_str()))
                    .then_with(|| compare(&a.version, &b.version))
                    .then_with(|| a.arch.cmp(&b.arch))
            });
            assert_eq!(
                show(&all),
                show(&SoftwarePage {
                    holders: sorted,
                    ..all.clone()
                }),
                "sorted by client, site, version, arch"
            );
            for (offset, limit) in [
                (0, 1),
                (0, 50),
                (17, 50),
                (all.total - 3, 50),
                (all.total, 10),
                (all.total + 5, 10),
            ] {
                let q = SoftwareQuery {
                    offset,
                    limit,
                    ..q.clone()
                };
                let direct = Holders::find(&ix, &q, None);
                assert!(direct.rows(u64::MAX).is_some());
                let direct = direct.page_from(&owners);
                let mut walk = Holders::find(&ix, &q, None).collector();
                for (row, owner) in &by_name {
                    if !walk.offer(**row, owner) {
                        break;
                    }
                }
                let walked = walk.finish();
                assert_eq!((walked.total, walked.offset), (direct.total, direct.offset));
                assert_eq!(
                    show(&walked),
                    show(&direct),
                    "offset {offset} limit {limit}"
                );
                let start = usize::try_from(offset).unwrap().min(all.holders.len());
                let end = (start + limit as usize).min(all.holders.len());
                assert_eq!(
                    show(&direct),
                    show(&all)[start..end],
                    "offset {offset} limit {limit}"
                );
            }
        }
        // Above the direct limit the backend walks instead.
        let q = SoftwareQuery {
            name: "p".into(),
            version: None,
            site: None,
            limit: 10,
            offset: 0,
        };
        assert!(Holders::find(&ix, &q, None).rows(10).is_none());
        // A site filter keeps that site's clients only, in the total too.
        let s02: RoaringBitmap = (1..=300).filter(|r| r % 5 == 0).collect();
        let page = Holders::find(
            &ix,
            &SoftwareQuery {
                limit: u32::MAX,
                ..q
            },
            Some(&s02),
        )
        .page_from(&owners);
        assert!(page.total > 0 && page.holders.iter().all(|h| h.site.as_str() == "S02"));
        assert_eq!(page.holders.len() as u64, page.total);
    }

    proptest::proptest! {
        #[test]
        fn for_each_id_reads_back_any_list(ids in proptest::collection::vec(-5_000_000i64..5_000_000, 0..300)) {
            let bytes = encode_ids(&ids);
            let mut got = Vec::new();
            for_each_id(&bytes, |id| got.push(id)).unwrap();
            proptest::prop_assert_eq!(got, ids);
        }
    }
}
