//! Tests of the system facts of issue 19 on the machine running them (root `/`), compared
//! with what the system's own tools and files say: `virt` with `systemd-detect-virt`, `user/`
//! items with `/etc/passwd` and `/etc/group` parsed here independently, `kmod/` items with
//! `/proc/modules`, `net` with the kernel's host name. They hold on any Linux machine: where a
//! tool or file is missing, the test checks what the collector must then report instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use invsync_collect::collect;
use invsync_proto::{Class, Items};

fn hw() -> Items {
    collect(Class::Hw, Path::new("/")).items
}

/// `systemd-detect-virt <flag>`'s answer, or `None` when the tool is not installed. It
/// exits 1 when it prints `none`, which is an answer, not a failure.
fn detect_virt(flag: &str) -> Option<String> {
    let out = Command::new("systemd-detect-virt")
        .arg(flag)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() || text == "none",
        "systemd-detect-virt {flag} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(text)
}

#[test]
fn virt_equals_systemd_detect_virt() {
    let items = hw();
    let virt = &items["virt"];
    match detect_virt("--vm") {
        Some(vm) => assert_eq!(virt["hypervisor"], vm),
        None => assert!(!virt["hypervisor"].is_empty()),
    }
    match detect_virt("--container") {
        Some(c) => assert_eq!(virt["container"], c),
        // Without the tool, the files a container manager leaves decide what must be said,
        // when no stronger statement (`run/systemd/container`, ...) overrides them.
        None => {
            let stronger = ["/run/host/container-manager", "/run/systemd/container"]
                .iter()
                .any(|p| Path::new(p).exists());
            if !stronger && Path::new("/run/.containerenv").exists() {
                assert_eq!(virt["container"], "podman");
            } else if !stronger && Path::new("/.dockerenv").exists() {
                assert_eq!(virt["container"], "docker");
            } else {
                assert!(!virt["container"].is_empty());
            }
        }
    }
}

/// (name, uid, gid, home, shell) of every account, parsed from `/etc/passwd` here.
fn passwd() -> BTreeMap<String, [String; 4]> {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() != 7 || f[0].is_empty() || f[0].starts_with(['#', '+', '-']) {
            continue;
        }
        if f[2].parse::<u32>().is_err() || f[3].parse::<u32>().is_err() {
            continue;
        }
        out.entry(f[0].to_string())
            .or_insert([f[2], f[3], f[5], f[6]].map(str::to_string));
    }
    out
}

#[test]
fn users_equal_etc_passwd() {
    let items = hw();
    let theirs = passwd();
    let ours: BTreeMap<String, [String; 4]> = items
        .iter()
        .filter_map(|(k, a)| {
            let name = k.strip_prefix("user/")?;
            Some((
                name.to_string(),
                ["uid", "gid", "home", "shell"].map(|f| a[f].clone()),
            ))
        })
        .collect();
    assert_eq!(ours, theirs);
    // Every account's groups: its primary group by gid and the groups naming it.
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    for (name, [_, gid, _, _]) in &theirs {
        let mut expected: BTreeSet<&str> = BTreeSet::new();
        for line in group.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() == 4
                && (f[2] == gid || f[3].split(',').any(|m| m.trim() == name))
                && !f[0].starts_with(['#', '+', '-'])
            {
                expected.insert(f[0]);
            }
        }
        let expected: Vec<&str> = expected.into_iter().collect();
        assert_eq!(
            items[&format!("user/{name}")]["groups"],
            expected.join(","),
            "{name}"
        );
    }
    if theirs.contains_key("root") {
        assert_eq!(items["user/root"]["system"], "true");
        assert_eq!(items["user/root"]["uid"], "0");
    }
}

#[test]
fn kmods_equal_proc_modules() {
    let items = hw();
    let ours: BTreeMap<&str, &str> = items
        .iter()
        .filter_map(|(k, a)| Some((k.strip_prefix("kmod/")?, a["size"].as_str())))
        .collect();
    let Ok(text) = std::fs::read_to_string("/proc/modules") else {
        // A kernel without loadable modules (or a sandbox hiding them) has none to report.
        assert!(ours.is_empty(), "{ours:?}");
        return;
    };
    let theirs: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.next()?))
        })
        .collect();
    assert_eq!(ours, theirs);
}

#[test]
fn net_names_the_kernel_host_name() {
    let items = hw();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(items["net"]["hostname"], host.trim());
}

/// Two runs give the same system facts: nothing volatile is inventoried.
#[test]
fn system_facts_are_stable() {
    let pick = |items: Items| -> Items {
        items
            .into_iter()
            .filter(|(k, _)| {
                [
                    "virt", "net", "user/", "service/", "kmod/", "raid/", "lvm/", "dm/", "printer/",
                ]
                .iter()
                .any(|p| k.starts_with(p))
            })
            .collect()
    };
    assert_eq!(pick(hw()), pick(hw()));
}
