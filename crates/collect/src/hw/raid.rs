//! The `raid/<md device>` items: Linux software RAID arrays from `proc/mdstat`, refined by
//! `sys/block/<md>/md/` and `sys/block/<md>/size`: `level` (`raid1`, `raid5`, ...),
//! `devices` (the member devices, sorted), `failed` and `spares` (members marked `(F)` and
//! `(S)`, only when there are some), `degraded` (the number of missing members), `state`
//! and `size_bytes`.
//!
//! Resync, recovery and check progress is never reported: it changes every second. `state`
//! is the kernel's `array_state` with the words that only say whether a write is in flight
//! (`clean`, `active`, `active-idle`, `write-pending`) all reported as `active`, since an
//! idle array flips between them; `readonly`, `read-auto`, `inactive`, `broken` and the
//! others are kept, as they say something an administrator must act on. Without sysfs the
//! state comes from mdstat's `active`/`inactive` and its read-only marks.

use invsync_proto::{Attrs, Items};

use crate::read::{Reader, value};

/// One array of `proc/mdstat`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MdArray<'a> {
    pub name: &'a str,
    /// `active`, `inactive`, `readonly` or `read-auto`.
    pub state: &'a str,
    pub level: Option<&'a str>,
    pub members: Vec<MdMember<'a>>,
    /// The size in 1 KiB blocks.
    pub blocks: Option<u64>,
    /// `[n/m]`: devices the array should have and has working.
    pub raid_disks: Option<(u32, u32)>,
}

/// One member of an array: `sda1[0]`, `sdb1[1](F)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdMember<'a> {
    pub name: &'a str,
    pub faulty: bool,
    pub spare: bool,
}

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    let Some(text) = r.read_optional("proc/mdstat") else {
        return;
    };
    for array in parse_mdstat(&text) {
        let md = format!("sys/block/{}", array.name);
        let sys = |r: &Reader<'_>, file: &str| {
            r.read_quiet(&format!("{md}/{file}"))
                .as_deref()
                .and_then(value)
                .map(str::to_string)
        };
        let mut attrs = Attrs::new();
        if let Some(level) = sys(r, "md/level").or_else(|| array.level.map(str::to_string)) {
            attrs.insert("level".into(), level);
        }
        let state = sys(r, "md/array_state")
            .map(|s| stable_state(&s).to_string())
            .unwrap_or_else(|| array.state.to_string());
        attrs.insert("state".into(), state);
        let list = |pick: fn(&MdMember<'_>) -> bool| {
            let mut v: Vec<&str> = array
                .members
                .iter()
                .filter(|m| pick(m))
                .map(|m| m.name)
                .collect();
            v.sort_unstable();
            v.dedup();
            v.join(",")
        };
        attrs.insert("devices".into(), list(|_| true));
        for (attr, pick) in [
            ("failed", (|m| m.faulty) as fn(&MdMember<'_>) -> bool),
            ("spares", |m| m.spare),
        ] {
            let v = list(pick);
            if !v.is_empty() {
                attrs.insert(attr.into(), v);
            }
        }
        let degraded = sys(r, "md/degraded")
            .and_then(|d| d.parse::<u32>().ok())
            .or_else(|| array.raid_disks.map(|(n, m)| n.saturating_sub(m)));
        if let Some(d) = degraded {
            attrs.insert("degraded".into(), d.to_string());
        }
        let size = sys(r, "size")
            .and_then(|s| s.parse::<u64>().ok())
            .map(|sectors| sectors.saturating_mul(512))
            .or_else(|| array.blocks.map(|b| b.saturating_mul(1024)))
            .filter(|s| *s > 0);
        if let Some(s) = size {
            attrs.insert("size_bytes".into(), s.to_string());
        }
        items.insert(format!("raid/{}", array.name), attrs);
    }
}

/// `array_state` without the words that only tell whether a write is in flight.
pub fn stable_state(state: &str) -> &str {
    match state {
        "clean" | "active" | "active-idle" | "write-pending" => "active",
        s => s,
    }
}

/// Parses `proc/mdstat`. An array starts with `<name> : <active|inactive> [(read-only) |
/// (auto-read-only)] [level] member[role](flags)...`; the next line gives the size in
/// blocks and, for redundant levels, `[n/m]`; progress and bitmap lines are skipped.
pub fn parse_mdstat(text: &str) -> Vec<MdArray<'_>> {
    let mut arrays: Vec<MdArray<'_>> = Vec::new();
    let mut current: Option<MdArray<'_>> = None;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            arrays.extend(current.take());
            let Some((name, rest)) = line.split_once(" : ") else {
                continue;
            };
            let name = name.trim();
            if !name.starts_with("md") || name.contains('/') || name.contains(' ') {
                continue;
            }
            current = Some(parse_head(name, rest));
        } else if let Some(array) = current.as_mut() {
            let words: Vec<&str> = line.split_ascii_whitespace().collect();
            if let [n, "blocks", ..] = words[..]
                && array.blocks.is_none()
                && let Ok(blocks) = n.parse()
            {
                array.blocks = Some(blocks);
                array.raid_disks = words.iter().find_map(|w| parse_disks(w));
            }
        }
    }
    arrays.extend(current);
    arrays
}

fn parse_head<'a>(name: &'a str, rest: &'a str) -> MdArray<'a> {
    let mut words = rest.split_ascii_whitespace().peekable();
    let mut state = match words.next() {
        Some("inactive") => "inactive",
        _ => "active",
    };
    match words.peek() {
        Some(&"(read-only)") => {
            state = "readonly";
            words.next();
        }
        Some(&"(auto-read-only)") => {
            state = "read-auto";
            words.next();
        }
        _ => {}
    }
    let mut level = None;
    let mut members = Vec::new();
    for w in words {
        match parse_member(w) {
            Some(m) => members.push(m),
            None if level.is_none() && members.is_empty() => level = Some(w),
            None => {}
        }
    }
    MdArray {
        name,
        state,
        level,
        members,
        ..MdArray::default()
    }
}

/// `sda1[0]`, `sdb1[1](F)`, `sdc[2](S)(W)`: the device name before the role in brackets.
fn parse_member(word: &str) -> Option<MdMember<'_>> {
    let open = word.find('[')?;
    let close = open + word[open..].find(']')?;
    let name = &word[..open];
    if name.is_empty() || word[open + 1..close].parse::<u32>().is_err() {
        return None;
    }
    let flags = &word[close + 1..];
    Some(MdMember {
        name,
        faulty: flags.contains("(F)"),
        spare: flags.contains("(S)"),
    })
}

/// `[2/1]`: raid disks and working disks.
fn parse_disks(word: &str) -> Option<(u32, u32)> {
    let inner = word.strip_prefix('[')?.strip_suffix(']')?;
    let (n, m) = inner.split_once('/')?;
    Some((n.parse().ok()?, m.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MDSTAT: &str = "Personalities : [raid1] [raid6] [raid5] [raid4] [linear]\n\
md1 : active raid5 sdd1[3] sdc1[1] sdb1[0](F) sde1[4](S)\n      \
      209584128 blocks super 1.2 level 5, 512k chunk, algorithm 2 [3/2] [_UU]\n      \
      [=>...................]  recovery =  8.5% (8912896/104792064) finish=9.8min speed=162002K/sec\n      \
      bitmap: 1/1 pages [4KB], 65536KB chunk\n\
\n\
md0 : active (auto-read-only) raid1 sdb2[1] sda2[0]\n      \
      1046528 blocks super 1.2 [2/2] [UU]\n\
\n\
md127 : inactive sdf[0](S)\n      \
      976630488 blocks super 1.2\n\
\n\
unused devices: <none>\n";

    #[test]
    fn mdstat() {
        let a = parse_mdstat(MDSTAT);
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].name, "md1");
        assert_eq!(a[0].state, "active");
        assert_eq!(a[0].level, Some("raid5"));
        assert_eq!(a[0].blocks, Some(209584128));
        assert_eq!(a[0].raid_disks, Some((3, 2)));
        let names: Vec<&str> = a[0].members.iter().map(|m| m.name).collect();
        assert_eq!(names, ["sdd1", "sdc1", "sdb1", "sde1"]);
        assert!(a[0].members[2].faulty && a[0].members[3].spare);
        assert_eq!(a[1].state, "read-auto");
        assert_eq!(a[1].level, Some("raid1"));
        assert_eq!(a[2].state, "inactive");
        assert_eq!(a[2].level, None);
        assert_eq!(a[2].raid_disks, None);
        assert!(a[2].members[0].spare);
        assert!(parse_mdstat("").is_empty());
        assert!(parse_mdstat("Personalities : \nunused devices: <none>\n").is_empty());
    }

    #[test]
    fn states() {
        assert_eq!(stable_state("clean"), "active");
        assert_eq!(stable_state("write-pending"), "active");
        assert_eq!(stable_state("read-auto"), "read-auto");
        assert_eq!(stable_state("inactive"), "inactive");
    }

    #[test]
    fn items_from_mdstat_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("proc")).unwrap();
        std::fs::write(dir.path().join("proc/mdstat"), MDSTAT).unwrap();
        let mut r = Reader::new(dir.path(), "hw");
        let mut items = Items::new();
        collect(&mut r, &mut items);
        let md1 = &items["raid/md1"];
        assert_eq!(md1["devices"], "sdb1,sdc1,sdd1,sde1");
        assert_eq!(md1["failed"], "sdb1");
        assert_eq!(md1["spares"], "sde1");
        assert_eq!(md1["degraded"], "1");
        assert_eq!(md1["size_bytes"], (209584128u64 * 1024).to_string());
        assert_eq!(items["raid/md0"]["state"], "read-auto");
        assert!(!items["raid/md0"].contains_key("failed"));
        assert!(!items["raid/md127"].contains_key("level"));
        assert!(r.into_warnings().is_empty());
    }
}
