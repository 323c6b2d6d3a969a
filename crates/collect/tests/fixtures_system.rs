//! Snapshot tests of the system facts of issue 19 (`virt`, `net`, `user/`, `service/`,
//! `kmod/`, `raid/`, `lvm/`, `dm/`, `printer/`) on three fixture roots in `tests/fixtures/` of
//! the workspace: `kvm-guest` (an Ubuntu 22.04 cloud image under libvirt/KVM, whose DMI says
//! QEMU), `docker` (a Debian container on bare metal) and `server-raid` (a Debian 12
//! PowerEdge with md RAID 1 and a degraded RAID 5 in recovery, LVM on RAID, dm-crypt, CUPS,
//! people and services). The snapshots hold the whole hardware inventory and its warnings;
//! the `*_rules` tests state the facts that matter once more, so that accepting a wrong
//! snapshot cannot hide them.

use std::path::PathBuf;

use invsync_collect::{Collected, collect};
use invsync_proto::{Class, Items, Snapshot};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn json(c: &Collected) -> serde_json::Value {
    serde_json::json!({ "items": c.items, "warnings": c.warnings })
}

fn keys_with<'a>(items: &'a Items, prefix: &str) -> Vec<&'a str> {
    items
        .keys()
        .filter(|k| k.starts_with(prefix))
        .map(String::as_str)
        .collect()
}

#[test]
fn kvm_guest_hw() {
    insta::assert_json_snapshot!(
        "kvm_guest_hw",
        json(&collect(Class::Hw, &fixture("kvm-guest")))
    );
}

#[test]
fn docker_hw() {
    insta::assert_json_snapshot!("docker_hw", json(&collect(Class::Hw, &fixture("docker"))));
}

#[test]
fn server_raid_hw() {
    insta::assert_json_snapshot!(
        "server_raid_hw",
        json(&collect(Class::Hw, &fixture("server-raid")))
    );
}

#[test]
fn kvm_guest_rules() {
    let hw = collect(Class::Hw, &fixture("kvm-guest")).items;
    // DMI says QEMU, but the kvm-clock the hypervisor offers says KVM, as CPUID would.
    assert_eq!(hw["virt"]["hypervisor"], "kvm");
    assert_eq!(hw["virt"]["container"], "none");
    // The stub resolver is replaced by the servers it forwards to, read inside the root.
    assert_eq!(hw["net"]["dns_servers"], "192.168.122.1");
    assert_eq!(hw["net"]["default_gateway"], "192.168.122.1");
    assert!(!hw["net"].contains_key("default_gateway_v6"));
    assert!(!hw["net"].contains_key("domain"));
    assert_eq!(hw["user/ubuntu"]["groups"], "adm,dip,lxd,sudo,ubuntu");
    assert_eq!(hw["user/ubuntu"]["system"], "false");
    assert_eq!(hw["user/nobody"]["system"], "true");
    assert_eq!(hw["user/sshd"]["groups"], "nogroup");
    assert_eq!(keys_with(&hw, "user/").len(), 15);
    assert_eq!(hw["kmod/kvm"]["used_by"], "kvm_intel");
    assert_eq!(
        hw["kmod/cryptd"]["used_by"],
        "crypto_simd,ghash_clmulni_intel"
    );
    assert_eq!(hw["kmod/kvm"]["size"], "1032192");
    assert_eq!(keys_with(&hw, "kmod/").len(), 31);
    assert_eq!(
        hw["service/cloud-init.service"]["target"],
        "cloud-init.target"
    );
    assert!(hw.contains_key("service/getty@tty1.service"));
    // An alias beside the .wants directories is not an enabled unit.
    assert!(!hw.contains_key("service/dbus-org.freedesktop.resolve1.service"));
    assert_eq!(keys_with(&hw, "service/").len(), 13);
}

#[test]
fn docker_rules() {
    let c = collect(Class::Hw, &fixture("docker"));
    let hw = &c.items;
    assert_eq!(hw["virt"]["hypervisor"], "none");
    assert_eq!(hw["virt"]["container"], "docker");
    assert_eq!(hw["net"]["domain"], "corp.example.com");
    assert_eq!(hw["net"]["dns_servers"], "1.1.1.1,10.0.0.2");
    assert_eq!(hw["net"]["default_gateway"], "172.17.0.1");
    assert_eq!(hw["user/app"]["groups"], "app,www-data");
    assert_eq!(hw["user/app"]["system"], "false");
    assert_eq!(hw["user/app"]["uid"], "10001");
    assert!(keys_with(hw, "kmod/").is_empty());
    assert!(keys_with(hw, "service/").is_empty());
}

#[test]
fn server_raid_rules() {
    let c = collect(Class::Hw, &fixture("server-raid"));
    let hw = &c.items;
    assert_eq!(hw["virt"]["hypervisor"], "none");
    assert_eq!(hw["virt"]["container"], "none");
    assert_eq!(hw["net"]["domain"], "example.org");
    assert_eq!(hw["net"]["hostname"], "db01");
    assert_eq!(
        hw["net"]["dns_servers"],
        "10.0.0.53,10.0.1.53,2001:db8:10::53"
    );
    // Two IPv4 default routes: the lower metric wins; IPv6 likewise.
    assert_eq!(hw["net"]["default_gateway"], "10.0.0.254");
    assert_eq!(hw["net"]["default_gateway_v6"], "2001:db8:10::1");

    assert_eq!(keys_with(hw, "raid/"), ["raid/md0", "raid/md1", "raid/md2"]);
    let md0 = &hw["raid/md0"];
    assert_eq!(md0["level"], "raid1");
    assert_eq!(md0["devices"], "sda1,sdb1");
    assert_eq!(md0["state"], "active");
    assert_eq!(md0["size_bytes"], (1046528u64 * 1024).to_string());
    // `active` (a write in flight) and `clean` are one state.
    assert_eq!(hw["raid/md1"]["state"], "active");
    let md2 = &hw["raid/md2"];
    assert_eq!(md2["devices"], "sdc1,sdd1,sde1,sdf1");
    assert_eq!(md2["failed"], "sde1");
    assert_eq!(md2["spares"], "sdf1");
    assert_eq!(md2["degraded"], "1");
    assert!(md2.values().all(|v| !v.contains('%')), "{md2:?}");

    assert_eq!(
        keys_with(hw, "lvm/"),
        [
            "lvm/backup/archive",
            "lvm/server-vg/root",
            "lvm/server-vg/swap_1",
            "lvm/server-vg/var-lib-postgresql"
        ]
    );
    assert_eq!(hw["lvm/server-vg/root"]["devices"], "md1");
    assert_eq!(
        hw["lvm/server-vg/root"]["size_bytes"],
        (104857600u64 * 512).to_string()
    );
    // An LV on a dm-crypt mapping names the mapping, not its boot-order number.
    assert_eq!(hw["lvm/backup/archive"]["devices"], "backup_crypt");
    assert_eq!(keys_with(hw, "dm/"), ["dm/backup_crypt"]);
    assert_eq!(hw["dm/backup_crypt"]["devices"], "md2");

    assert_eq!(
        keys_with(hw, "printer/"),
        [
            "printer/Archive_PDF",
            "printer/Label_Zebra",
            "printer/Office_LaserJet"
        ]
    );
    let office = &hw["printer/Office_LaserJet"];
    assert_eq!(office["default"], "true");
    assert_eq!(office["shared"], "true");
    assert_eq!(
        office["make_model"],
        "HP LaserJet Pro M404-M405 Postscript (recommended)"
    );
    let label = &hw["printer/Label_Zebra"];
    assert_eq!(label["uri"], "smb://fs01.example.org/zebra-zd421");
    assert_eq!(label["default"], "false");
    assert_eq!(label["shared"], "false");
    for (key, attrs) in hw {
        for v in attrs.values() {
            assert!(!v.contains("Pr1nt"), "a password leaked into {key}: {v}");
        }
    }

    assert_eq!(hw["user/alice"]["groups"], "adm,alice,lpadmin,sudo,users");
    assert_eq!(hw["user/postgres"]["groups"], "postgres,ssl-cert");
    assert_eq!(hw["user/postgres"]["system"], "true");
    assert_eq!(hw["user/systemd-network"]["system"], "true");
    assert_eq!(hw["user/bob"]["shell"], "/usr/bin/zsh");
    assert_eq!(keys_with(hw, "user/").len(), 17);

    assert_eq!(
        hw["service/cups.service"]["target"],
        "multi-user.target,printer.target"
    );
    assert_eq!(hw["service/cups-browsed.service"]["enabled"], "false");
    assert_eq!(hw["service/cups-browsed.service"]["masked"], "true");
    assert_eq!(hw["service/ssh.service"]["enabled"], "true");
    assert_eq!(
        hw["service/lvm2-monitor.service"]["target"],
        "sysinit.target"
    );
    assert_eq!(keys_with(hw, "service/").len(), 11);

    assert_eq!(hw["kmod/md_mod"]["used_by"], "raid1,raid456");
    assert_eq!(hw["kmod/raid1"]["used_by"], "");
    assert!(hw["kmod/dm_mod"].keys().eq(["size", "used_by"]));
}

/// Collecting twice gives the same hash on every new root.
#[test]
fn deterministic() {
    for name in ["kvm-guest", "docker", "server-raid"] {
        let a = Snapshot::new(collect(Class::Hw, &fixture(name)).items).hash();
        let b = Snapshot::new(collect(Class::Hw, &fixture(name)).items).hash();
        assert_eq!(a, b, "{name}");
    }
}
