//! Software across clients (`GET /api/v1/software`, the console's software page): which
//! clients have a package, and every package with how many clients have each version. The
//! backends find the candidate items and stream every client's software item list; what to do
//! with them is here, the same for both.
//!
//! There is deliberately no per-package index (package → clients). Such rows would cost about
//! 20 KB per client with 1,500 packages, more than half the storage budget of SPEC section 10,
//! and a random page write for every package a delta changes. A query instead decodes the
//! compact item lists (about 3 KB per client, `codec::decode_ids`) and looks each id up in a
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
use crate::codec::decode_attrs;
use crate::error::StoreError;

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
        let mut a = decode_attrs(attrs)?;
        let (Some(name), Some(version), Some(source)) =
            (a.remove("name"), a.remove("version"), a.remove("source"))
        else {
            return Ok(None);
        };
        Ok(Some(Package { name, version, source, arch: a.remove("arch").unwrap_or_default() }))
    }
}

/// The owner of one software item list.
pub(crate) struct ListOwner {
    pub name: ClientName,
    pub id: Uuid,
    pub site: SiteCode,
}

/// Calls `f` with every id of a stored item list, without building the list.
pub(crate) fn for_each_id(bytes: &[u8], mut f: impl FnMut(i64)) -> Result<(), StoreError> {
    let corrupt = || StoreError::Database("a stored snapshot item list is corrupt".to_string());
    let mut prev = 0i64;
    let mut pos = 0;
    while pos < bytes.len() {
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
        prev = prev.wrapping_add(((z >> 1) as i64) ^ -((z & 1) as i64));
        f(prev);
    }
    Ok(())
}

/// The clients having one package: candidates are the items named so (and in the range).
pub(crate) struct HolderScan<'q> {
    query: &'q SoftwareQuery,
    candidates: FastMap<i64, usize>,
    packages: Vec<Package>,
    rows: Vec<SoftwareHolder>,
}

impl<'q> HolderScan<'q> {
    pub fn new(query: &'q SoftwareQuery) -> HolderScan<'q> {
        HolderScan { query, candidates: FastMap::default(), packages: Vec::new(), rows: Vec::new() }
    }

    /// The needle a backend looks for in item keys (`<source>/<name>/<arch>`) to find the
    /// candidates; [`HolderScan::candidate`] checks each exactly.
    pub fn key_needle(&self) -> String {
        format!("/{}/", self.query.name)
    }

    /// Offers a stored item whose key contains the needle.
    pub fn candidate(&mut self, id: i64, attrs: &[u8]) -> Result<(), StoreError> {
        let Some(p) = Package::from_stored(attrs)? else { return Ok(()) };
        let in_range = self.query.version.as_ref().is_none_or(|r: &VersionRange| r.matches(&p.version));
        if p.name == self.query.name && in_range {
            self.candidates.insert(id, self.packages.len());
            self.packages.push(p);
        }
        Ok(())
    }

    /// Whether any item matched; with none, no item list needs to be read.
    pub fn has_candidates(&self) -> bool {
        !self.candidates.is_empty()
    }

    /// Offers one client's software item list.
    pub fn list(&mut self, owner: &ListOwner, items: &[u8]) -> Result<(), StoreError> {
        let mut hits = Vec::new();
        for_each_id(items, |id| {
            if let Some(&i) = self.candidates.get(&id) {
                hits.push(i);
            }
        })?;
        for i in hits {
            let p = &self.packages[i];
            self.rows.push(SoftwareHolder {
                client: owner.name.clone(),
                client_id: owner.id,
                site: owner.site.clone(),
                name: p.name.clone(),
                version: p.version.clone(),
                arch: p.arch.clone(),
                source: p.source.clone(),
            });
        }
        Ok(())
    }

    /// The requested page, rows sorted by client name, site, then version (dpkg's order) and
    /// architecture.
    pub fn page(mut self) -> SoftwarePage {
        self.rows.sort_by(|a, b| {
            a.client
                .as_str()
                .cmp(b.client.as_str())
                .then_with(|| a.site.as_str().cmp(b.site.as_str()))
                .then_with(|| compare(&a.version, &b.version))
                .then_with(|| a.arch.cmp(&b.arch))
                .then_with(|| a.source.cmp(&b.source))
        });
        let total = self.rows.len() as u64;
        let holders = self
            .rows
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
    /// Candidate item id → (name index, version index).
    candidates: FastMap<i64, (usize, usize)>,
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
            candidates: FastMap::default(),
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
        let Some(p) = Package::from_stored(attrs)? else { return Ok(()) };
        if self.search.as_ref().is_some_and(|s| !p.name.to_lowercase().contains(s.as_str())) {
            return Ok(());
        }
        let n = self.intern(&p.name);
        // Versions of one name are few; a linear search over them is cheapest.
        let known = self.name_versions[n].iter().copied().find(|&v| self.versions[v].1.text == p.version);
        let v = match known {
            Some(v) => v,
            None => {
                self.versions.push((n, Counted { text: p.version, clients: 0, last: 0 }));
                self.name_versions[n].push(self.versions.len() - 1);
                self.versions.len() - 1
            }
        };
        self.candidates.insert(id, (n, v));
        Ok(())
    }

    pub fn has_candidates(&self) -> bool {
        !self.candidates.is_empty()
    }

    /// Offers one client's software item list.
    pub fn list(&mut self, items: &[u8]) -> Result<(), StoreError> {
        self.list_no += 1;
        let no = self.list_no;
        let (candidates, names, versions) = (&self.candidates, &mut self.names, &mut self.versions);
        for_each_id(items, |id| {
            if let Some(&(n, v)) = candidates.get(&id) {
                for c in [&mut names[n], &mut versions[v].1] {
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
        let ids = [5, 3, 1_000_000, 1_000_001, 7];
        let mut got = Vec::new();
        for_each_id(&encode_ids(&ids), |id| got.push(id)).unwrap();
        assert_eq!(got, ids);
        assert!(for_each_id(&[0x80], |_| ()).is_err(), "truncated");
        assert!(for_each_id(&[0xff; 11], |_| ()).is_err(), "overlong");
    }
}
