//! The `service/<unit>` items: systemd units an administrator enabled, read from the links
//! `systemctl enable` makes in `etc/systemd/system/<unit>.wants/` and `.requires/`.
//!
//! `target` is the unit whose directory holds the link (`multi-user.target`), several sorted
//! and comma-separated. The links are only looked at, never followed: their targets are
//! absolute paths that, on a fake root, would name the host's files. A unit that is also
//! masked (`etc/systemd/system/<unit>` linked to `/dev/null`) is reported with `enabled`
//! `false` and `masked` `true`, as systemd will not start it. Units shipped enabled by the
//! distribution under `usr/lib/systemd` are not configuration of this machine and are left
//! out.

use std::collections::BTreeMap;
use std::path::Path;

use invsync_proto::{Attrs, Items};

use crate::read::Reader;

const DIR: &str = "etc/systemd/system";

/// The suffixes of unit names (`systemd.unit(5)`).
const UNIT_SUFFIXES: [&str; 11] = [
    ".service",
    ".socket",
    ".target",
    ".timer",
    ".path",
    ".mount",
    ".automount",
    ".swap",
    ".device",
    ".slice",
    ".scope",
];

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    let Some(entries) = r.list_dir(DIR) else {
        return;
    };
    // unit → the units wanting or requiring it.
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in &entries {
        let Some(owner) = dependency_dir(entry) else {
            continue;
        };
        let dir = format!("{DIR}/{entry}");
        if !r.is_dir(&dir) {
            continue;
        }
        for unit in r.list_dir(&dir).unwrap_or_default() {
            if is_unit_name(&unit) {
                wanted.entry(unit).or_default().push(owner.to_string());
            }
        }
    }
    for (unit, mut targets) in wanted {
        targets.sort_unstable();
        targets.dedup();
        let masked = r
            .link_target(&format!("{DIR}/{unit}"))
            .is_some_and(|t| t == Path::new("/dev/null"));
        let mut attrs = Attrs::new();
        attrs.insert("enabled".into(), (!masked).to_string());
        if masked {
            attrs.insert("masked".into(), "true".into());
        }
        attrs.insert("target".into(), targets.join(","));
        items.insert(format!("service/{unit}"), attrs);
    }
}

/// The unit a dependency directory belongs to: `multi-user.target.wants` → `multi-user.target`.
pub fn dependency_dir(name: &str) -> Option<&str> {
    name.strip_suffix(".wants")
        .or_else(|| name.strip_suffix(".requires"))
        .filter(|u| is_unit_name(u))
}

/// Whether `name` is a unit name: a known suffix after a non-empty name without `/`.
pub fn is_unit_name(name: &str) -> bool {
    !name.contains('/')
        && UNIT_SUFFIXES
            .iter()
            .any(|s| name.strip_suffix(s).is_some_and(|n| !n.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn names() {
        assert_eq!(
            dependency_dir("multi-user.target.wants"),
            Some("multi-user.target")
        );
        assert_eq!(dependency_dir("ssh.service.requires"), Some("ssh.service"));
        assert_eq!(dependency_dir("ssh.service.d"), None);
        assert_eq!(dependency_dir(".target.wants"), None);
        assert!(is_unit_name("getty@tty1.service"));
        assert!(!is_unit_name("README"));
        assert!(!is_unit_name(".service"));
    }

    #[test]
    fn links_give_units_and_masks_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join(DIR);
        for d in [
            "multi-user.target.wants",
            "sockets.target.wants",
            "x.service.d",
        ] {
            std::fs::create_dir_all(sys.join(d)).unwrap();
        }
        symlink(
            "/lib/systemd/system/ssh.service",
            sys.join("multi-user.target.wants/ssh.service"),
        )
        .unwrap();
        symlink(
            "/lib/systemd/system/cron.service",
            sys.join("multi-user.target.wants/cron.service"),
        )
        .unwrap();
        symlink(
            "/lib/systemd/system/ssh.socket",
            sys.join("sockets.target.wants/ssh.socket"),
        )
        .unwrap();
        symlink("/dev/null", sys.join("cron.service")).unwrap();
        std::fs::write(sys.join("x.service.d/override.conf"), "").unwrap();
        let mut r = Reader::new(dir.path(), "hw");
        let mut items = Items::new();
        collect(&mut r, &mut items);
        let keys: Vec<&str> = items.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "service/cron.service",
                "service/ssh.service",
                "service/ssh.socket"
            ]
        );
        assert_eq!(items["service/ssh.service"]["enabled"], "true");
        assert_eq!(items["service/ssh.service"]["target"], "multi-user.target");
        assert_eq!(items["service/cron.service"]["enabled"], "false");
        assert_eq!(items["service/cron.service"]["masked"], "true");
        assert!(r.into_warnings().is_empty());
    }
}
