//! Synthetic inventories for simulated agents, deterministic per agent index so a mode can
//! rebuild an agent's snapshot instead of keeping it. Software items look like the dpkg
//! collector's (`dpkg/<name>/<arch>`, attributes `arch name size_bytes source version`); most
//! packages are shared by every agent, as on real fleets (the store interns them once), and
//! the rest are the agent's own.
//!
//! Two generators live here:
//!
//! * [`sw_items`] / [`hw_items`]: the small inventories of `connect` (`--items`, 20 packages).
//! * [`Fleet`]: the realistic ones of `enroll`, `full`, `delta` and `checkin`, fixed by a
//!   [`FleetSpec`] (seed, packages per agent, changes per delta). Every agent's software at
//!   every *round* follows from (spec, agent index, round), so 250,000 agents need no memory
//!   between runs: the agents file keeps only each agent's round and the versions the site
//!   acknowledged. See [`Fleet`] for the shape.

use std::borrow::Cow;
use std::io::Write;

use invsync_proto::inventory::{Attrs, Delta, Digest, hash_of_digests, item_digest};
use invsync_proto::wire::{Report, ReportBody};
use invsync_proto::{Class, Items, Snapshot};
use uuid::Uuid;

use crate::rng::Rng;

/// Of every ten packages, this many are shared by all agents.
const SHARED_TENTHS: usize = 9;

fn package(name: String, n: usize, version: usize) -> (String, Attrs) {
    let attrs: Attrs = [
        ("arch", "amd64".to_string()),
        ("name", name.clone()),
        ("size_bytes", ((n % 977 + 1) * 4096).to_string()),
        ("source", "dpkg".to_string()),
        ("version", format!("1.{version}.{n}-1")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    (format!("dpkg/{name}/amd64"), attrs)
}

/// `count` software packages of agent `agent`: 90 % shared by every agent, 10 % its own.
pub fn sw_items(agent: usize, count: usize) -> Items {
    let shared = count * SHARED_TENTHS / 10;
    (0..shared)
        .map(|n| package(format!("libshared{n}"), n, 1))
        .chain((shared..count).map(|n| package(format!("lg{agent}-pkg{n}"), n, 1)))
        .collect()
}

/// A small hardware inventory: the OS and one CPU.
pub fn hw_items(agent: usize) -> Items {
    let mut items = Items::new();
    items.insert(
        "os".to_string(),
        [("name", "Debian GNU/Linux"), ("version", "12")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
    );
    items.insert(
        "cpu/0".to_string(),
        [
            ("model", "Synthetic CPU".to_string()),
            ("serial", format!("LG{agent:08}")),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v))
        .collect(),
    );
    items
}

/// The items of `class` for agent `agent` with `sw_count` software packages.
pub fn items(class: Class, agent: usize, sw_count: usize) -> Items {
    match class {
        Class::Sw => sw_items(agent, sw_count),
        Class::Hw => hw_items(agent),
    }
}

/// A full report of `items` with a fresh report id, answering `answers`.
pub fn full_report(class: Class, items: Items, answers: Vec<i64>) -> Report {
    Report {
        report_id: Uuid::new_v4(),
        class,
        hash: Snapshot::new(items.clone()).hash(),
        body: ReportBody::Full { items },
        answers,
    }
}

// ---------------------------------------------------------------------------------------------
// The realistic fleet of `enroll`, `full`, `delta` and `checkin`.

/// What fixes a fleet's inventories. Chosen at `enroll` and kept in the agents file, so that
/// `full`, `delta` and `checkin` rebuild exactly the snapshots the site holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetSpec {
    pub seed: u64,
    /// Software packages of each agent at round 0.
    pub packages: usize,
    /// Packages a delta changes (distinct; upgrades, and now and then an install or removal).
    pub changes: usize,
}

/// Catalogue variants whose JSON and digest are computed once; later upgrades (many delta
/// rounds) are computed when needed, a few per delta.
const CACHED_VARIANTS: u32 = 4;
/// Of every hundred packages of an agent, this many are common to the whole fleet.
const CORE_PERCENT: usize = 60;
/// One package in a hundred (rounded up) is the agent's own (`local-…`), as on real machines.
const OWN_PER: usize = 100;
/// One slot in fifty is a package that is not installed at round 0 but may be by a delta.
const EXTRA_PER: usize = 50;
/// One optional package in this many may be removed by a delta (and installed again).
const REMOVABLE_ONE_IN: u64 = 25;

/// One item ready to send: its attributes, its JSON inside a full report's `items` object
/// (`"key":{…}`), and its digest for the snapshot hash.
#[derive(Debug, Clone)]
pub struct Item {
    pub key: String,
    pub attrs: Attrs,
    pub json: String,
    pub digest: Digest,
}

impl Item {
    fn new(key: String, attrs: Attrs) -> Item {
        // The same serde_json escaping as a whole `Items` map, so a report built from these
        // fragments is byte for byte what serialising the `Report` would give.
        let json = format!(
            "{}:{}",
            serde_json::to_string(&key).expect("a string serialises"),
            serde_json::to_string(&attrs).expect("strings serialise")
        );
        let digest = item_digest(&key, &attrs);
        Item {
            key,
            attrs,
            json,
            digest,
        }
    }
}

/// A package of the fleet's catalogue.
#[derive(Debug)]
struct CatalogPackage {
    name: String,
    arch: &'static str,
    size: u64,
    version: VersionShape,
    /// Variants 0..CACHED_VARIANTS.
    cached: Vec<Item>,
}

/// A package version as distributions write them, e.g. `1:9.2p1-2+deb12u3`; the variant
/// (older or newer builds of the same package) is the last number.
#[derive(Debug, Clone)]
struct VersionShape {
    upstream: String,
    tail: &'static str,
}

impl VersionShape {
    fn render(&self, variant: u32) -> String {
        format!("{}{}{}", self.upstream, self.tail, variant + 1)
    }
}

/// Which package a slot of an agent holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PackageRef {
    /// Position in the (key-sorted) catalogue.
    Catalog(u32),
    /// The agent's own n-th package.
    Own(u32),
}

/// One package slot of an agent: present or not at round 0, and its variant then.
#[derive(Debug, Clone, Copy)]
struct Slot {
    package: PackageRef,
    base_variant: u32,
    /// A change to this slot installs or removes it instead of upgrading it.
    removable: bool,
    present_at_0: bool,
}

/// The role of a catalogue position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Installed on every agent.
    Core,
    /// Installed on some agents.
    Optional,
    /// Not installed at round 0; some agents may install it in a delta.
    Extra,
}

/// Synthetic software and hardware inventories of a whole fleet.
///
/// * A catalogue of about 1.4 × `packages` packages with distribution-like names, versions
///   and sizes, sorted by item key. 60 % of an agent's packages are *core* (every agent has
///   them), 39 % are picked per agent from an *optional* pool twice that size, 1 % are the
///   agent's own; a fifth of the agents run an older or newer build of a given package. So
///   the site interns about `packages` × 1.4 distinct package versions × 3 plus the agents'
///   own, as on a real fleet.
/// * Round r + 1 changes `changes` distinct slots of round r: an upgrade (the version's last
///   number grows), or for one slot in 25 of the optional ones and for the extras, a removal
///   or an installation. A slot's state at round r is the number of times it was picked in
///   rounds 1..=r, so any round is rebuilt by replaying the picks, with no stored state.
/// * Hardware ([`Fleet::hw_items`]): about 40 items shaped like `crates/collect`'s (system,
///   bios, cpu, memory and DIMMs, disks, filesystems, NICs, os); it does not change.
#[derive(Debug)]
pub struct Fleet {
    spec: FleetSpec,
    catalog: Vec<CatalogPackage>,
    core: Vec<u32>,
    optional: Vec<u32>,
    extra: Vec<u32>,
    /// Per agent: core + optional chosen + own = packages.
    optional_each: usize,
    extra_each: usize,
    own_each: usize,
}

/// splitmix64's finaliser: a well-mixed hash of a 64-bit value.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash of several values, for per-(seed, agent, thing) decisions.
fn mix_all(parts: &[u64]) -> u64 {
    parts.iter().fold(0x5EED, |h, &p| mix(h ^ mix(p)))
}

const SYLLABLES: &[&str] = &[
    "ba", "ker", "lo", "mi", "zen", "tor", "gra", "phi", "sto", "vel", "ux", "net", "pro", "ssl",
    "xml", "gtk", "qt", "ar", "chi", "ve", "de", "mon", "py", "pe", "rl", "ru", "by", "se", "cur",
    "sys", "tem", "fo", "nt", "con", "fig", "ha", "rf", "bu", "zz", "ma", "gick", "pa", "ng",
    "jpe", "g", "ti", "ff", "gn", "u", "dbus", "el", "f", "ic", "u4", "c", "zl", "ib", "kr", "b5",
];
const PREFIXES: &[&str] = &[
    "",
    "",
    "",
    "",
    "lib",
    "lib",
    "lib",
    "lib",
    "lib",
    "python3-",
    "node-",
    "golang-",
    "fonts-",
    "gir1.2-",
    "r-cran-",
    "libghc-",
    "ruby-",
    "perl-",
    "texlive-",
    "gstreamer1.0-",
];
const SUFFIXES: &[&str] = &[
    "", "", "", "", "", "", "-dev", "-common", "-data", "-bin", "-doc", "t64", "-utils", "-tools",
    "-plugins", "-l10n", "-dbg", "1", "2", "6",
];
const TAILS: &[&str] = &["+deb12u", "-", "ubuntu0.22.04.", "~bpo12+", "+b", "build"];

fn package_name(seed: u64, n: u64) -> String {
    let h = mix_all(&[seed, 1, n]);
    let mut name = String::from(PREFIXES[(h % PREFIXES.len() as u64) as usize]);
    let syllables = 2 + (h >> 8) % 3;
    for s in 0..syllables {
        let i = mix_all(&[h, s]) % SYLLABLES.len() as u64;
        name.push_str(SYLLABLES[i as usize]);
    }
    if (h >> 16).is_multiple_of(4) {
        name.push_str(&format!("{}", (h >> 20) % 12));
    }
    name.push_str(SUFFIXES[((h >> 24) % SUFFIXES.len() as u64) as usize]);
    name
}

fn version_shape(seed: u64, n: u64) -> VersionShape {
    let h = mix_all(&[seed, 2, n]);
    let epoch = if h.is_multiple_of(10) { "1:" } else { "" };
    let (major, minor, patch) = ((h >> 8) % 12, (h >> 16) % 40, (h >> 24) % 20);
    let revision = 1 + (h >> 32) % 9;
    let upstream = match (h >> 40) % 4 {
        0 => format!("{epoch}{major}.{minor}.{patch}-{revision}"),
        1 => format!("{epoch}{major}.{minor}-{revision}"),
        2 => format!("{epoch}{major}.{minor}.{patch}+dfsg-{revision}"),
        _ => format!("{epoch}{major}.{minor}p{patch}-{revision}"),
    };
    VersionShape {
        upstream,
        tail: TAILS[((h >> 48) % TAILS.len() as u64) as usize],
    }
}

fn package_item(name: &str, arch: &str, size: u64, version: String) -> Item {
    let attrs: Attrs = [
        ("arch", arch.to_string()),
        ("name", name.to_string()),
        ("size_bytes", size.to_string()),
        ("source", "dpkg".to_string()),
        ("version", version),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Item::new(format!("dpkg/{name}/{arch}"), attrs)
}

/// Picks `want` of `pool` (kept in order), each subset equally likely (Knuth's algorithm S).
fn choose(pool: &[u32], want: usize, rng: &mut Rng) -> Vec<u32> {
    let mut out = Vec::with_capacity(want);
    for (seen, &p) in pool.iter().enumerate() {
        let left = pool.len() - seen;
        if rng.below(left) < want - out.len() {
            out.push(p);
            if out.len() == want {
                break;
            }
        }
    }
    out
}

impl Fleet {
    pub fn new(spec: FleetSpec) -> Fleet {
        let packages = spec.packages;
        let own_each = packages.div_ceil(OWN_PER);
        let core_n = packages * CORE_PERCENT / 100;
        let optional_each = packages - core_n - own_each.min(packages - core_n);
        let own_each = packages - core_n - optional_each;
        let extra_each = if packages >= EXTRA_PER {
            packages / EXTRA_PER
        } else {
            0
        };
        let optional_n = 2 * optional_each;
        let extra_n = 2 * extra_each;

        // Names, made unique (two syllable draws can spell the same word), sorted by key.
        let total = core_n + optional_n + extra_n;
        let mut seen = std::collections::HashSet::new();
        let mut catalog: Vec<CatalogPackage> = Vec::with_capacity(total);
        let mut n = 0u64;
        while catalog.len() < total {
            let name = package_name(spec.seed, n);
            let h = mix_all(&[spec.seed, 3, n]);
            n += 1;
            if !seen.insert(name.clone()) {
                continue;
            }
            let arch = match h % 100 {
                0..=84 => "amd64",
                85..=97 => "all",
                _ => "i386",
            };
            // Log-uniform from 4 KiB to about 256 MiB, in whole KiB like dpkg's Installed-Size.
            let size = (1u64 << (12 + (h >> 8) % 16)) + ((h >> 32) % 4096) * 1024;
            let version = version_shape(spec.seed, n);
            let cached = (0..CACHED_VARIANTS)
                .map(|v| package_item(&name, arch, size + v as u64 * 1024, version.render(v)))
                .collect();
            catalog.push(CatalogPackage {
                name,
                arch,
                size,
                version,
                cached,
            });
        }
        catalog.sort_by(|a, b| a.cached[0].key.cmp(&b.cached[0].key));

        // Roles spread over the sorted catalogue, so core packages are not all `a…`.
        let mut roles: Vec<Role> = std::iter::repeat_n(Role::Core, core_n)
            .chain(std::iter::repeat_n(Role::Optional, optional_n))
            .chain(std::iter::repeat_n(Role::Extra, extra_n))
            .collect();
        let mut rng = Rng::new(mix_all(&[spec.seed, 4]));
        for i in (1..roles.len()).rev() {
            roles.swap(i, rng.below(i + 1));
        }
        let positions = |role: Role| -> Vec<u32> {
            (0..roles.len() as u32)
                .filter(|&i| roles[i as usize] == role)
                .collect()
        };
        Fleet {
            spec,
            core: positions(Role::Core),
            optional: positions(Role::Optional),
            extra: positions(Role::Extra),
            catalog,
            optional_each,
            extra_each,
            own_each,
        }
    }

    pub fn spec(&self) -> FleetSpec {
        self.spec
    }

    /// The package slots of agent `agent` in item-key order.
    fn slots(&self, agent: usize) -> Vec<Slot> {
        let seed = self.spec.seed;
        let a = agent as u64;
        let mut rng = Rng::new(mix_all(&[seed, 5, a]));
        let optional = choose(&self.optional, self.optional_each, &mut rng);
        let extra = choose(&self.extra, self.extra_each, &mut rng);
        let mut positions: Vec<(u32, Role)> = self
            .core
            .iter()
            .map(|&p| (p, Role::Core))
            .chain(optional.into_iter().map(|p| (p, Role::Optional)))
            .chain(extra.into_iter().map(|p| (p, Role::Extra)))
            .collect();
        // Three sorted runs of catalogue positions; an unstable sort of ~1,500 integers is
        // a few microseconds.
        positions.sort_unstable_by_key(|&(p, _)| p);
        let mut slots: Vec<Slot> = positions
            .into_iter()
            .map(|(p, role)| {
                let h = mix_all(&[seed, 6, a, p as u64]);
                // A fifth of the fleet runs another build of a given package.
                let base_variant = match h % 20 {
                    0..=15 => 0,
                    16..=18 => 1,
                    _ => 2,
                };
                Slot {
                    package: PackageRef::Catalog(p),
                    base_variant,
                    removable: role == Role::Extra
                        || (role == Role::Optional && (h >> 8).is_multiple_of(REMOVABLE_ONE_IN)),
                    present_at_0: role != Role::Extra,
                }
            })
            .collect();
        // The agent's own packages, merged in by key.
        for n in 0..self.own_each as u32 {
            let key = self.own_item(agent, n, 0).key;
            let at = slots.partition_point(|s| self.slot_key(agent, s).as_ref() < key.as_str());
            slots.insert(
                at,
                Slot {
                    package: PackageRef::Own(n),
                    base_variant: 0,
                    removable: false,
                    present_at_0: true,
                },
            );
        }
        slots
    }

    fn slot_key<'a>(&'a self, agent: usize, slot: &Slot) -> Cow<'a, str> {
        match slot.package {
            PackageRef::Catalog(p) => Cow::Borrowed(&self.catalog[p as usize].cached[0].key),
            PackageRef::Own(n) => Cow::Owned(self.own_item(agent, n, 0).key),
        }
    }

    fn own_item(&self, agent: usize, n: u32, variant: u32) -> Item {
        let h = mix_all(&[self.spec.seed, 7, agent as u64, n as u64]);
        let word = SYLLABLES[(h % SYLLABLES.len() as u64) as usize];
        let name = format!("local-{word}{}-{agent}-{n}", (h >> 8) % 100);
        let version = format!(
            "{}.{}.{}-local{}",
            (h >> 16) % 5,
            (h >> 24) % 30,
            variant,
            agent
        );
        package_item(&name, "amd64", 65_536 + (h >> 32) % 1_000_000, version)
    }

    /// The item of `slot` at `variant`: borrowed from the catalogue when cached.
    fn item(&self, agent: usize, slot: &Slot, variant: u32) -> Cow<'_, Item> {
        match slot.package {
            PackageRef::Catalog(p) => {
                let c = &self.catalog[p as usize];
                match c.cached.get(variant as usize) {
                    Some(item) => Cow::Borrowed(item),
                    None => Cow::Owned(package_item(
                        &c.name,
                        c.arch,
                        c.size + variant as u64 * 1024,
                        c.version.render(variant),
                    )),
                }
            }
            PackageRef::Own(n) => Cow::Owned(self.own_item(agent, n, variant)),
        }
    }

    /// The slots (positions in the agent's slot list) round `round` (≥ 1) changes.
    fn picks(&self, agent: usize, round: u64, slots: usize) -> Vec<usize> {
        let want = self.spec.changes.min(slots);
        let mut rng = Rng::new(mix_all(&[self.spec.seed, 8, agent as u64, round]));
        let mut picked = Vec::with_capacity(want);
        while picked.len() < want {
            let s = rng.below(slots);
            if !picked.contains(&s) {
                picked.push(s);
            }
        }
        picked
    }

    /// Agent `agent`'s software at round `round`.
    pub fn sw(&self, agent: usize, round: u64) -> SwState<'_> {
        let slots = self.slots(agent);
        let mut picked = vec![0u32; slots.len()];
        for r in 1..=round {
            for s in self.picks(agent, r, slots.len()) {
                picked[s] += 1;
            }
        }
        SwState {
            fleet: self,
            agent,
            round,
            slots,
            picked,
        }
    }

    /// The report that takes agent `agent` from round `round` to `round + 1`, against the
    /// site's version `base_version` of it; returns it with the snapshot hash after it.
    pub fn delta(&self, agent: usize, round: u64, base_version: i64) -> Report {
        let mut state = self.sw(agent, round);
        let picks = self.picks(agent, round + 1, state.slots.len());
        let mut delta = Delta::default();
        for &s in &picks {
            state.picked[s] += 1;
            let slot = state.slots[s];
            match state.variant(s) {
                Some(v) => {
                    let item = self.item(agent, &slot, v);
                    delta.upsert.insert(item.key.clone(), item.attrs.clone());
                }
                None => delta.remove.push(self.slot_key(agent, &slot).into_owned()),
            }
        }
        delta.remove.sort();
        state.round += 1;
        Report {
            report_id: Uuid::new_v4(),
            class: Class::Sw,
            hash: state.hash(),
            body: ReportBody::Delta {
                base_version,
                delta,
            },
            answers: Vec::new(),
        }
    }

    /// About 40 hardware items like `crates/collect`'s, varied per agent; they do not change.
    pub fn hw_items(&self, agent: usize) -> Items {
        let h = mix_all(&[self.spec.seed, 9, agent as u64]);
        let mut items = Items::new();
        let mut put = |key: String, pairs: Vec<(&str, String)>| {
            items.insert(
                key,
                pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            );
        };
        let vendors = ["Dell Inc.", "LENOVO", "HP", "Supermicro", "QEMU"];
        let vendor = vendors[(h % vendors.len() as u64) as usize];
        put(
            "system".into(),
            vec![
                ("vendor", vendor.into()),
                ("product", format!("Model {}", (h >> 8) % 900 + 100)),
                ("serial", format!("LG{:010X}", mix(h) & 0xFF_FFFF_FFFF)),
                (
                    "uuid",
                    Uuid::from_u64_pair(mix(h ^ 1), mix(h ^ 2)).to_string(),
                ),
            ],
        );
        put(
            "bios".into(),
            vec![
                ("vendor", vendor.into()),
                (
                    "version",
                    format!(
                        "{}.{}.{}",
                        (h >> 12) % 3 + 1,
                        (h >> 16) % 20,
                        (h >> 20) % 10
                    ),
                ),
                (
                    "date",
                    format!(
                        "{:02}/{:02}/20{}",
                        (h >> 24) % 12 + 1,
                        (h >> 28) % 28 + 1,
                        18 + (h >> 32) % 7
                    ),
                ),
            ],
        );
        let cores = [4u64, 8, 16, 32][((h >> 36) % 4) as usize];
        put(
            "cpu".into(),
            vec![
                (
                    "model",
                    format!(
                        "Intel(R) Xeon(R) CPU E5-26{}0 v{} @ 2.{}0GHz",
                        (h >> 40) % 9 + 1,
                        (h >> 44) % 4 + 1,
                        (h >> 48) % 9
                    ),
                ),
                ("sockets", "1".into()),
                ("cores", cores.to_string()),
                ("threads", (2 * cores).to_string()),
                ("mhz", format!("2{}00", (h >> 48) % 9)),
            ],
        );
        let dimms = [4u64, 8][((h >> 52) % 2) as usize];
        let dimm_gib = [8u64, 16, 32][((h >> 54) % 3) as usize];
        put(
            "memory".into(),
            vec![("total_bytes", ((dimms * dimm_gib) << 30).to_string())],
        );
        for d in 0..dimms {
            put(
                format!("dimm/DIMM_{}{}", (b'A' + (d / 2) as u8) as char, d % 2 + 1),
                vec![
                    ("size_bytes", (dimm_gib << 30).to_string()),
                    ("speed_mts", "3200".into()),
                    ("manufacturer", "Samsung".into()),
                    ("part_number", format!("M393A{}G40AB3-CWE", dimm_gib / 4)),
                    ("serial", format!("{:08X}", mix(h ^ (100 + d)) as u32)),
                    ("type", "DDR4".into()),
                ],
            );
        }
        let disks = 2 + (h >> 56) % 3;
        for d in 0..disks {
            let (name, model, rotational) = if d < 2 {
                (format!("nvme{d}n1"), "Samsung SSD 980 PRO 1TB", "false")
            } else {
                (
                    format!("sd{}", (b'a' + d as u8 - 2) as char),
                    "ST4000NM0035-1V4107",
                    "true",
                )
            };
            put(
                format!("disk/{name}"),
                vec![
                    ("model", model.into()),
                    ("size_bytes", (1_000_204_886_016u64 * (d + 1)).to_string()),
                    ("rotational", rotational.into()),
                ],
            );
        }
        let mounts = [
            "/",
            "/boot",
            "/boot/efi",
            "/home",
            "/var",
            "/tmp",
            "/srv",
            "/opt",
            "/var/log",
            "/var/lib/docker",
            "/data",
            "/backup",
        ];
        let fs_n = 8 + (h >> 58) % 5;
        for (i, m) in mounts.iter().take(fs_n as usize).enumerate() {
            let size = (20u64 << 30) * (i as u64 + 1);
            let free_pct = mix_all(&[h, 10, i as u64]) % 90 + 5;
            put(
                format!("fs/{m}"),
                vec![
                    (
                        "type",
                        if *m == "/boot/efi" { "vfat" } else { "ext4" }.into(),
                    ),
                    ("size_bytes", size.to_string()),
                    ("free_bytes", (size / 100 * free_pct).to_string()),
                ],
            );
        }
        let nics = [
            "eno1", "eno2", "enp3s0f0", "enp3s0f1", "bond0", "docker0", "br0", "virbr0", "wg0",
        ];
        let nic_n = 6 + (h >> 60) % 4;
        for (i, n) in nics.iter().take(nic_n as usize).enumerate() {
            let mac = mix_all(&[h, 11, i as u64]);
            let physical = i < 4;
            put(
                format!("nic/{n}"),
                vec![
                    (
                        "mac",
                        format!(
                            "52:54:00:{:02x}:{:02x}:{:02x}",
                            mac as u8,
                            (mac >> 8) as u8,
                            (mac >> 16) as u8
                        ),
                    ),
                    ("speed_mbps", if physical { "10000" } else { "-1" }.into()),
                    ("mtu", "1500".into()),
                    ("virtual", (!physical).to_string()),
                    (
                        "addresses",
                        format!(
                            "10.{}.{}.{}/16,fe80::{:x}/64",
                            i,
                            (agent >> 8) % 256,
                            agent % 256,
                            mac & 0xffff
                        ),
                    ),
                ],
            );
        }
        put(
            "os".into(),
            vec![
                ("name", "Debian GNU/Linux".into()),
                ("version", "12".into()),
                ("kernel", format!("6.1.0-{}-amd64", 18 + (h >> 61) % 8)),
                ("arch", "x86_64".into()),
            ],
        );
        items
    }
}

/// One agent's software at one round.
#[derive(Debug, Clone)]
pub struct SwState<'a> {
    fleet: &'a Fleet,
    agent: usize,
    pub round: u64,
    slots: Vec<Slot>,
    /// Per slot: times it was changed in rounds 1..=round.
    picked: Vec<u32>,
}

impl SwState<'_> {
    /// The variant of slot `s`, `None` when the package is not installed.
    fn variant(&self, s: usize) -> Option<u32> {
        let (slot, n) = (&self.slots[s], self.picked[s]);
        if slot.removable {
            (slot.present_at_0 ^ (n % 2 == 1)).then_some(slot.base_variant)
        } else {
            Some(slot.base_variant + n)
        }
    }

    fn each_item(&self, mut f: impl FnMut(&Item)) {
        for s in 0..self.slots.len() {
            if let Some(v) = self.variant(s) {
                f(&self.fleet.item(self.agent, &self.slots[s], v));
            }
        }
    }

    /// Installed packages.
    pub fn len(&self) -> usize {
        (0..self.slots.len())
            .filter(|&s| self.variant(s).is_some())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn items(&self) -> Items {
        let mut items = Items::new();
        self.each_item(|i| {
            items.insert(i.key.clone(), i.attrs.clone());
        });
        items
    }

    /// The snapshot hash, from the cached item digests (no item is serialised again).
    pub fn hash(&self) -> Digest {
        let mut digests = Vec::with_capacity(self.slots.len());
        self.each_item(|i| digests.push(i.digest));
        hash_of_digests(&digests)
    }

    /// The JSON of a full report of this state, as serialising the [`Report`] would give it,
    /// from the cached item fragments. Returns the JSON and the snapshot hash.
    pub fn full_report_json(&self, report_id: Uuid) -> (Vec<u8>, Digest) {
        let hash = self.hash();
        let mut out = Vec::with_capacity(self.slots.len() * 140 + 200);
        write!(
            out,
            r#"{{"report_id":"{report_id}","class":"sw","hash":"{hash}","kind":"full","items":{{"#
        )
        .expect("writing to a Vec");
        let mut first = true;
        self.each_item(|i| {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(i.json.as_bytes());
        });
        out.extend_from_slice(b"}}");
        (out, hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let a = sw_items(1, 20);
        let b = sw_items(2, 20);
        assert_eq!(a.len(), 20);
        assert_eq!(a.keys().filter(|k| b.contains_key(*k)).count(), 18);
        assert_eq!(sw_items(1, 20), a, "deterministic");
        assert!(a.contains_key("dpkg/libshared0/amd64"));
    }

    fn fleet(packages: usize) -> Fleet {
        Fleet::new(FleetSpec {
            seed: 42,
            packages,
            changes: 3,
        })
    }

    #[test]
    fn fleet_sizes_and_variety() {
        let f = fleet(1500);
        let a = f.sw(1, 0).items();
        let b = f.sw(2, 0).items();
        assert_eq!(a.len(), 1500, "packages as advertised");
        assert_eq!(b.len(), 1500);
        let shared = a.keys().filter(|k| b.contains_key(*k)).count();
        assert!((1000..1400).contains(&shared), "shared {shared}");
        let same_version = a.iter().filter(|(k, v)| b.get(*k) == Some(v)).count();
        assert!(same_version < shared, "versions differ between agents");
        assert_eq!(
            a.keys().filter(|k| k.starts_with("dpkg/local-")).count(),
            15
        );
        // Realistic sizes: a 1,500-package report is a couple of hundred KB of JSON.
        let (json, _) = f.sw(1, 0).full_report_json(Uuid::nil());
        assert!((120_000..400_000).contains(&json.len()), "{}", json.len());
        let hw = f.hw_items(1);
        assert!((30..=50).contains(&hw.len()), "{} hw items", hw.len());
        for key in ["system", "bios", "cpu", "memory", "os", "fs//", "nic/eno1"] {
            assert!(hw.contains_key(key), "{key}");
        }
        assert_ne!(f.hw_items(2), hw);
        for small in [0, 1, 20, 50] {
            assert_eq!(fleet(small).sw(3, 0).len(), small);
        }
    }

    #[test]
    fn fleet_is_deterministic() {
        let (f, g) = (fleet(200), fleet(200));
        assert_eq!(f.sw(7, 5).items(), g.sw(7, 5).items());
        assert_eq!(f.hw_items(7), g.hw_items(7));
        let other = Fleet::new(FleetSpec {
            seed: 43,
            ..f.spec()
        });
        assert_ne!(other.sw(7, 0).items(), f.sw(7, 0).items());
    }

    #[test]
    fn hashes_and_bodies_match_what_the_site_computes() {
        let f = fleet(300);
        for round in [0, 1, 2, 40] {
            let s = f.sw(5, round);
            let items = s.items();
            assert_eq!(s.hash(), Snapshot::new(items.clone()).hash());
            // The hand-assembled full report is what serialising the Report gives.
            let id = Uuid::new_v4();
            let (json, hash) = s.full_report_json(id);
            let report = Report {
                report_id: id,
                class: Class::Sw,
                hash,
                body: ReportBody::Full { items },
                answers: Vec::new(),
            };
            assert_eq!(
                String::from_utf8(json).unwrap(),
                serde_json::to_string(&report).unwrap()
            );
        }
    }

    #[test]
    fn deltas_lead_from_one_round_to_the_next() {
        let f = fleet(300);
        let mut snap = Snapshot::new(f.sw(9, 0).items());
        let mut removed_or_added = 0;
        for round in 0..60 {
            let r = f.delta(9, round, 10 + round as i64);
            let ReportBody::Delta {
                base_version,
                delta,
            } = &r.body
            else {
                panic!("not a delta")
            };
            assert_eq!(*base_version, 10 + round as i64);
            assert_eq!(delta.upsert.len() + delta.remove.len(), 3);
            removed_or_added += delta.remove.len()
                + delta
                    .upsert
                    .keys()
                    .filter(|k| !snap.items.contains_key(*k))
                    .count();
            snap.apply(delta);
            assert_eq!(snap.hash(), r.hash, "round {}", round + 1);
            assert_eq!(snap.items, f.sw(9, round + 1).items());
        }
        assert!(
            removed_or_added > 0,
            "some deltas install or remove packages"
        );
        assert!((290..=310).contains(&snap.items.len()));
    }
}
