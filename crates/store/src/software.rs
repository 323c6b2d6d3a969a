//! Software across clients (`GET /api/v1/software`, the console's software page): which
//! clients have a package, and every package with how many clients have each version. The
//! backends find the candidate items and stream every client's software item list; what to do
//! with them is here, the same for both.
//!
//! There is deliberately no per-package index (package → clients). Such rows would cost about
//! 20 KB per client with 1,500 packages, more than half the storage budget of SPEC section 10,
//! and a random page write for every package a delta changes. A query instead decodes the
//! compact item lists (about 3 KB per client, `codec::for_each_id`) and looks each id up in a
//! small table of candidate items: about 1.5 ns per installed package (BENCHMARKS.md,
//! "Software queries").

use invsync_proto::version::{VersionRange, compare};
use invsync_proto::wire::{
    PackagePage, PackageQuery, PackageSummary, SoftwareHolder, SoftwarePage, SoftwareQuery,
    VersionCount,
};
use invsync_proto::{ClientName, SiteCode};
use uuid::Uuid;

use crate::cache::FastMap;
use crate::codec::{for_each_attr, for_each_id};
use crate::error::StoreError;

/// A stored item that is an installed package (it has `name`, `version` and `source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub source: String,
}

/// [`Package`] borrowing the stored attributes.
struct PackageRef<'a> {
    name: &'a str,
    version: &'a str,
    arch: &'a str,
    source: &'a str,
}

impl<'a> PackageRef<'a> {
    fn to_package(&self) -> Package {
        Package {
            name: self.name.to_string(),
            version: self.version.to_string(),
            arch: self.arch.to_string(),
            source: self.source.to_string(),
        }
    }

    /// The package an item's stored attributes describe, if they describe one. Hardware items
    /// have no `source`, so the `os` item (which has a name and version) is not a package.
    fn from_stored(attrs: &'a [u8]) -> Result<Option<PackageRef<'a>>, StoreError> {
        let (mut name, mut version, mut arch, mut source) = (None, None, "", None);
        for_each_attr(attrs, |k, v| match k {
            "name" => name = Some(v),
            "version" => version = Some(v),
            "arch" => arch = v,
            "source" => source = Some(v),
            _ => {}
        })?;
        Ok(match (name, version, source) {
            (Some(name), Some(version), Some(source)) => Some(PackageRef { name, version, arch, source }),
            _ => None,
        })
    }
}

/// The owner of one software item list.
pub(crate) struct ListOwner {
    pub name: ClientName,
    pub id: Uuid,
    pub site: SiteCode,
}

/// Candidate items by id, in tables indexed by id rather than a hash map: a scan looks up
/// every installed package of every client (150 million lookups at 100,000 clients), and an
/// array index is the cheapest lookup there is. Item ids are row ids handed out in sequence, so
/// the tables are as long as the site's largest candidate id. A bit per id answers "not a
/// candidate" (nearly every lookup of a one-package query) from a table small enough to stay
/// in the CPU's cache: 40 KB for 320,000 items, against 1.3 MB for the index table.
struct Candidates {
    bits: Vec<u64>,
    /// `slot[id]` is the candidate's index.
    slot: Vec<u32>,
}

impl Candidates {
    fn new() -> Candidates {
        Candidates { bits: Vec::new(), slot: Vec::new() }
    }

    fn insert(&mut self, id: i64, index: usize) {
        let Ok(i) = usize::try_from(id) else { return };
        if self.slot.len() <= i {
            self.slot.resize(i + 1, 0);
            self.bits.resize(i / 64 + 1, 0);
        }
        self.slot[i] = u32::try_from(index).expect("fewer than 4 billion candidates");
        self.bits[i / 64] |= 1 << (i % 64);
    }

    #[inline]
    fn get(&self, id: i64) -> Option<usize> {
        let i = usize::try_from(id).ok()?;
        let word = *self.bits.get(i / 64)?;
        (word & (1 << (i % 64)) != 0).then(|| self.slot[i] as usize)
    }

    fn is_empty(&self) -> bool {
        self.slot.is_empty()
    }
}

/// The clients having one package: candidates are the items named so (and in the range).
pub(crate) struct HolderScan<'q> {
    query: &'q SoftwareQuery,
    candidates: Candidates,
    packages: Vec<Package>,
    /// (client row, package index) of every hit.
    hits: Vec<(i64, usize)>,
}

impl<'q> HolderScan<'q> {
    pub fn new(query: &'q SoftwareQuery) -> HolderScan<'q> {
        HolderScan { query, candidates: Candidates::new(), packages: Vec::new(), hits: Vec::new() }
    }

    /// The needle a backend looks for in item keys (`<source>/<name>/<arch>`) to find the
    /// candidates; [`HolderScan::candidate`] checks each exactly.
    pub fn key_needle(&self) -> String {
        format!("/{}/", self.query.name)
    }

    /// Offers a stored item whose key contains the needle.
    pub fn candidate(&mut self, id: i64, attrs: &[u8]) -> Result<(), StoreError> {
        let Some(p) = PackageRef::from_stored(attrs)? else { return Ok(()) };
        let in_range = self.query.version.as_ref().is_none_or(|r: &VersionRange| r.matches(p.version));
        if p.name == self.query.name && in_range {
            self.candidates.insert(id, self.packages.len());
            self.packages.push(p.to_package());
        }
        Ok(())
    }

    /// Whether any item matched; with none, no item list needs to be read.
    pub fn has_candidates(&self) -> bool {
        !self.candidates.is_empty()
    }

    /// Offers the software item list of the client with internal row `client`.
    pub fn list(&mut self, client: i64, items: &[u8]) -> Result<(), StoreError> {
        let (candidates, hits) = (&self.candidates, &mut self.hits);
        for_each_id(items, |id| {
            if let Some(i) = candidates.get(id) {
                hits.push((client, i));
            }
        })
    }

    /// The internal rows of the clients that have the package, for the backend to look up.
    pub fn hit_clients(&self) -> Vec<i64> {
        let mut rows: Vec<i64> = self.hits.iter().map(|(c, _)| *c).collect();
        rows.sort_unstable();
        rows.dedup();
        rows
    }

    /// The requested page, rows sorted by client name, site, then version (dpkg's order) and
    /// architecture; `owners` maps the rows of [`HolderScan::hit_clients`] to their clients.
    pub fn page(self, owners: &FastMap<i64, ListOwner>) -> SoftwarePage {
        let mut rows: Vec<SoftwareHolder> = self
            .hits
            .iter()
            .filter_map(|&(client, i)| {
                // A client missing here was deleted between the two reads of a backend that
                // does not read in one snapshot; it no longer has the package.
                let owner = owners.get(&client)?;
                let p = &self.packages[i];
                Some(SoftwareHolder {
                    client: owner.name.clone(),
                    client_id: owner.id,
                    site: owner.site.clone(),
                    name: p.name.clone(),
                    version: p.version.clone(),
                    arch: p.arch.clone(),
                    source: p.source.clone(),
                })
            })
            .collect();
        rows.sort_by(|a, b| {
            a.client
                .as_str()
                .cmp(b.client.as_str())
                .then_with(|| a.site.as_str().cmp(b.site.as_str()))
                .then_with(|| compare(&a.version, &b.version))
                .then_with(|| a.arch.cmp(&b.arch))
                .then_with(|| a.source.cmp(&b.source))
        });
        let total = rows.len() as u64;
        let holders = rows
            .into_iter()
            .skip(usize::try_from(self.query.offset).unwrap_or(usize::MAX))
            .take(self.query.limit as usize)
            .collect();
        SoftwarePage { total, offset: self.query.offset, holders }
    }
}

/// Every package (whose name contains the search) with its client counts.
pub(crate) struct PackageScan<'q> {
    query: &'q PackageQuery,
    search: Option<String>,
    /// Candidate → (name index, version index), by candidate index.
    kinds: Vec<(u32, u32)>,
    candidates: Candidates,
    names: Vec<Counted>,
    /// Each version with the index of its name.
    versions: Vec<(usize, Counted)>,
    /// Name → its index in `names`.
    name_index: std::collections::HashMap<String, usize>,
    /// For each name, the indices of its versions in `versions`.
    name_versions: Vec<Vec<usize>>,
    list_no: u32,
}

/// A name or a version with the number of clients having it; `last` is the last list that
/// counted it, so a client with two architectures of one version counts once.
struct Counted {
    text: String,
    clients: u64,
    last: u32,
}

impl<'q> PackageScan<'q> {
    pub fn new(query: &'q PackageQuery) -> PackageScan<'q> {
        PackageScan {
            query,
            search: query.search.as_deref().filter(|s| !s.is_empty()).map(str::to_lowercase),
            kinds: Vec::new(),
            candidates: Candidates::new(),
            names: Vec::new(),
            versions: Vec::new(),
            name_index: std::collections::HashMap::new(),
            name_versions: Vec::new(),
            list_no: 0,
        }
    }

    /// The needle a backend looks for (case-insensitively) in item keys, if any.
    pub fn key_needle(&self) -> Option<&str> {
        self.search.as_deref()
    }

    fn intern(&mut self, name: &str) -> usize {
        if let Some(&i) = self.name_index.get(name) {
            return i;
        }
        let i = self.names.len();
        self.name_index.insert(name.to_string(), i);
        self.names.push(Counted { text: name.to_string(), clients: 0, last: 0 });
        self.name_versions.push(Vec::new());
        i
    }

    /// Offers a stored item (whose key contains the needle, when there is one).
    pub fn candidate(&mut self, id: i64, attrs: &[u8]) -> Result<(), StoreError> {
        let Some(p) = PackageRef::from_stored(attrs)? else { return Ok(()) };
        if self.search.as_ref().is_some_and(|s| !p.name.to_lowercase().contains(s.as_str())) {
            return Ok(());
        }
        let n = self.intern(p.name);
        // Versions of one name are few; a linear search over them is cheapest.
        let known = self.name_versions[n].iter().copied().find(|&v| self.versions[v].1.text == p.version);
        let v = match known {
            Some(v) => v,
            None => {
                self.versions.push((n, Counted { text: p.version.to_string(), clients: 0, last: 0 }));
                self.name_versions[n].push(self.versions.len() - 1);
                self.versions.len() - 1
            }
        };
        self.candidates.insert(id, self.kinds.len());
        self.kinds.push((n as u32, v as u32));
        Ok(())
    }

    pub fn has_candidates(&self) -> bool {
        !self.candidates.is_empty()
    }

    /// Offers one client's software item list.
    pub fn list(&mut self, items: &[u8]) -> Result<(), StoreError> {
        self.list_no += 1;
        let no = self.list_no;
        let (candidates, kinds, names, versions) =
            (&self.candidates, &self.kinds, &mut self.names, &mut self.versions);
        for_each_id(items, |id| {
            if let Some(i) = candidates.get(id) {
                let (n, v) = kinds[i];
                for c in [&mut names[n as usize], &mut versions[v as usize].1] {
                    if c.last != no {
                        c.last = no;
                        c.clients += 1;
                    }
                }
            }
        })
    }

    /// The requested page of packages that some client has, sorted by name.
    pub fn page(self) -> PackagePage {
        let mut by_name: Vec<(usize, &Counted)> =
            self.names.iter().enumerate().filter(|(_, c)| c.clients > 0).collect();
        by_name.sort_by(|a, b| a.1.text.cmp(&b.1.text));
        let total = by_name.len() as u64;
        let packages = by_name
            .into_iter()
            .skip(usize::try_from(self.query.offset).unwrap_or(usize::MAX))
            .take(self.query.limit as usize)
            .map(|(n, c)| {
                let mut versions: Vec<VersionCount> = self.name_versions[n]
                    .iter()
                    .map(|&v| &self.versions[v].1)
                    .filter(|vc| vc.clients > 0)
                    .map(|vc| VersionCount { version: vc.text.clone(), clients: vc.clients })
                    .collect();
                versions.sort_by(|a, b| compare(&a.version, &b.version));
                PackageSummary { name: c.text.clone(), clients: c.clients, versions }
            })
            .collect();
        PackagePage { total, offset: self.query.offset, packages }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_ids;

    #[test]
    fn for_each_id_reads_what_encode_ids_wrote_and_refuses_garbage() {
        // Entries of one, two and three bytes, in every order.
        let ids = [5, 3, 1_000_000, 1_000_001, 7, 70, 8_000, 8_001, 200_000, 1, 2];
        let mut got = Vec::new();
        for_each_id(&encode_ids(&ids), |id| got.push(id)).unwrap();
        assert_eq!(got, ids);
        assert!(for_each_id(&[0x05, 0x80], |_| ()).is_err(), "truncated after a whole entry");
        assert!(for_each_id(&[0x80], |_| ()).is_err(), "truncated");
        assert!(for_each_id(&[0xff; 11], |_| ()).is_err(), "overlong");
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
