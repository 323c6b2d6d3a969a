//! `invsync_collect::hw::parse_passwd`, `parse_group`, `groups_of` and `parse_login_defs` on
//! arbitrary bytes, decoded as the collector decodes a file. The input is split at its first
//! NUL byte: before it `etc/passwd`, after it `etc/group` (and `etc/login.defs`).
//!
//! Besides "no panic": names are unique, non-empty, free of `:`, whitespace and `/`, and
//! slices of the input; home and shell hold no `:` or newline; written back as a passwd file
//! the entries parse to themselves; a user's groups are sorted, unique and all named in the
//! group file.

#![no_main]

use invsync_collect::hw::{groups_of, parse_group, parse_login_defs, parse_passwd};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let passwd = String::from_utf8_lossy(&data[..split]);
    let group = String::from_utf8_lossy(data.get(split + 1..).unwrap_or_default());
    let users = parse_passwd(&passwd);
    let groups = parse_group(&group);
    let _ = parse_login_defs(&group);
    let mut names: Vec<&str> = users.iter().map(|u| u.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), users.len(), "duplicate names");
    let mut again = String::new();
    for u in &users {
        assert!(!u.name.is_empty());
        assert!(
            !u.name
                .contains(|c: char| c == ':' || c == '/' || c.is_whitespace())
        );
        for f in [u.home, u.shell] {
            assert!(!f.contains([':', '\n']), "{u:?}");
        }
        again.push_str(&format!(
            "{}:x:{}:{}::{}:{}\n",
            u.name, u.uid, u.gid, u.home, u.shell
        ));
        let mine = groups_of(u, &groups);
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
        assert!(mine.iter().all(|g| groups.iter().any(|e| e.name == *g)));
    }
    assert_eq!(parse_passwd(&again), users, "re-rendered passwd:\n{again}");
});
