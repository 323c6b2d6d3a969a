//! The `user/<name>` items: local accounts from `etc/passwd`, with their groups from
//! `etc/group` and whether they are system accounts by `etc/login.defs`. `etc/shadow` is never
//! read: password hashes and ageing are not inventory.
//!
//! An account is a system account (`system` = `true`) when its uid is below `UID_MIN`
//! (default 1000) or above `UID_MAX` (default 60000), the range `useradd` gives people, so
//! `root` and `nobody` (65534) are both system accounts. `groups` is the primary group's name
//! and every group listing the user as a member, sorted and comma-separated (empty when
//! there is none). NIS compatibility lines (`+`, `-`) and malformed lines are skipped.

use std::collections::BTreeSet;

use invsync_proto::{Attrs, Items};

use crate::read::Reader;

/// One line of `etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry<'a> {
    pub name: &'a str,
    pub uid: u32,
    pub gid: u32,
    pub home: &'a str,
    pub shell: &'a str,
}

/// One line of `etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry<'a> {
    pub name: &'a str,
    pub gid: u32,
    pub members: Vec<&'a str>,
}

/// The range of uids `useradd` gives people, from `etc/login.defs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    pub min: u32,
    pub max: u32,
}

impl Default for UidRange {
    fn default() -> UidRange {
        UidRange {
            min: 1000,
            max: 60000,
        }
    }
}

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    let Some(passwd) = r.read_optional("etc/passwd") else {
        return;
    };
    let group = r.read_optional("etc/group").unwrap_or_default();
    let range = r
        .read_optional("etc/login.defs")
        .map_or_else(UidRange::default, |t| parse_login_defs(&t));
    let groups = parse_group(&group);
    for user in parse_passwd(&passwd) {
        let mut attrs = Attrs::new();
        attrs.insert("uid".into(), user.uid.to_string());
        attrs.insert("gid".into(), user.gid.to_string());
        attrs.insert("home".into(), user.home.to_string());
        attrs.insert("shell".into(), user.shell.to_string());
        let system = user.uid < range.min || user.uid > range.max;
        attrs.insert("system".into(), system.to_string());
        attrs.insert("groups".into(), groups_of(&user, &groups).join(","));
        items.insert(format!("user/{}", user.name), attrs);
    }
}

/// Parses `etc/passwd` (`name:password:uid:gid:gecos:home:shell`). A name that appears twice
/// keeps its first line, as `getpwnam` does.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry<'_>> {
    let mut seen = BTreeSet::new();
    text.lines()
        .filter_map(|line| {
            // A file edited on Windows ends its lines in CR LF; the CR is not the shell's.
            let f: Vec<&str> = line.trim_end_matches('\r').split(':').collect();
            let [name, _, uid, gid, _, home, shell] = f[..] else {
                return None;
            };
            if !valid_name(name) {
                return None;
            }
            Some(PasswdEntry {
                name,
                uid: uid.parse().ok()?,
                gid: gid.parse().ok()?,
                home,
                shell,
            })
        })
        .filter(|e| seen.insert(e.name))
        .collect()
}

/// Parses `etc/group` (`name:password:gid:member,member`).
pub fn parse_group(text: &str) -> Vec<GroupEntry<'_>> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim_end_matches('\r').split(':').collect();
            let [name, _, gid, members] = f[..] else {
                return None;
            };
            if !valid_name(name) {
                return None;
            }
            Some(GroupEntry {
                name,
                gid: gid.parse().ok()?,
                members: members
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .collect(),
            })
        })
        .collect()
}

/// `UID_MIN` and `UID_MAX` of `etc/login.defs` (decimal, `0x` hexadecimal or `0` octal, as
/// shadow's `getdef` reads them); a missing or unreadable value keeps its default.
pub fn parse_login_defs(text: &str) -> UidRange {
    let mut range = UidRange::default();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let (Some(key), Some(v)) = (words.next(), words.next()) else {
            continue;
        };
        let Some(n) = parse_number(v) else {
            continue;
        };
        match key {
            "UID_MIN" => range.min = n,
            "UID_MAX" => range.max = n,
            _ => {}
        }
    }
    range
}

fn parse_number(v: &str) -> Option<u32> {
    if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()
    } else if v.len() > 1
        && let Some(oct) = v.strip_prefix('0')
    {
        u32::from_str_radix(oct, 8).ok()
    } else {
        v.parse().ok()
    }
}

/// The user's groups: the primary group by gid and every group naming the user, sorted and
/// without duplicates.
pub fn groups_of<'a>(user: &PasswdEntry<'_>, groups: &[GroupEntry<'a>]) -> Vec<&'a str> {
    let set: BTreeSet<&str> = groups
        .iter()
        .filter(|g| g.gid == user.gid || g.members.contains(&user.name))
        .map(|g| g.name)
        .collect();
    set.into_iter().collect()
}

/// A name that can be an account: not empty, not a comment, not NIS compatibility syntax
/// (`+name`, `-name`), no whitespace or `/` (the item key would be ambiguous).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['#', '+', '-'])
        && !name.contains(|c: char| c.is_whitespace() || c.is_control() || c == '/')
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        # a comment\n\
        alice:x:1000:1000:Alice,,,:/home/alice:/bin/zsh\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
        broken:x:notanumber:1:::\n\
        short:x:1:1\n\
        +@netgroup::::::\n\
        alice:x:1001:1001::/tmp:/bin/sh\n";

    #[test]
    fn passwd() {
        let users = parse_passwd(PASSWD);
        let names: Vec<&str> = users.iter().map(|u| u.name).collect();
        assert_eq!(names, ["root", "daemon", "alice", "nobody"]);
        assert_eq!(
            users[2],
            PasswdEntry {
                name: "alice",
                uid: 1000,
                gid: 1000,
                home: "/home/alice",
                shell: "/bin/zsh"
            }
        );
        assert!(parse_passwd("").is_empty());
    }

    #[test]
    fn groups() {
        let text = "root:x:0:\nsudo:x:27:alice, bob\nalice:x:1000:\nusers:x:100:alice,alice\n\
                    bad:x:z:alice\n";
        let groups = parse_group(text);
        assert_eq!(groups.len(), 4);
        assert_eq!(groups[1].members, ["alice", "bob"]);
        let users = parse_passwd(PASSWD);
        assert_eq!(groups_of(&users[2], &groups), ["alice", "sudo", "users"]);
        assert_eq!(groups_of(&users[0], &groups), ["root"]);
        assert!(groups_of(&users[1], &groups).is_empty());
    }

    #[test]
    fn login_defs() {
        assert_eq!(parse_login_defs(""), UidRange::default());
        let t = "# UID_MIN 5\nUID_MIN\t\t\t  500\nUID_MAX 0xEA60\nSYS_UID_MIN 101\nUID_MIN\n";
        assert_eq!(
            parse_login_defs(t),
            UidRange {
                min: 500,
                max: 60000
            }
        );
        assert_eq!(parse_login_defs("UID_MIN 01750\n").min, 1000);
        assert_eq!(parse_login_defs("UID_MIN 0\n").min, 0);
        assert_eq!(parse_login_defs("UID_MIN -5\n").min, 1000);
    }

    #[test]
    fn items() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "alice:x:1000:\nsudo:x:27:alice\n",
        )
        .unwrap();
        let mut r = Reader::new(dir.path(), "hw");
        let mut items = Items::new();
        collect(&mut r, &mut items);
        assert_eq!(items.len(), 4);
        let alice = &items["user/alice"];
        assert_eq!(alice["system"], "false");
        assert_eq!(alice["groups"], "alice,sudo");
        assert_eq!(alice["uid"], "1000");
        assert_eq!(items["user/nobody"]["system"], "true");
        assert_eq!(items["user/root"]["system"], "true");
        assert_eq!(items["user/root"]["groups"], "");
        assert!(r.into_warnings().is_empty());
    }
}
