//! The `virt` item: whether the machine is a virtual machine (`hypervisor`) and whether the
//! inventory runs in a container (`container`), with the same answers as
//! `systemd-detect-virt --vm` and `--container` (`kvm`, `qemu`, `vmware`, `microsoft`, `xen`,
//! `oracle`, `amazon`, `google`, ..., `vm-other`; `docker`, `podman`, `lxc`,
//! `systemd-nspawn`, `wsl`, ..., `container-other`; `none` for neither).
//!
//! The checks follow systemd's `src/basic/virt.c` in its order, because the order is the
//! answer: a KVM guest whose DMI says QEMU is `kvm`, VirtualBox is `oracle` although it runs
//! on KVM, and a container is found by what its manager wrote (`run/host/container-manager`,
//! `run/systemd/container`, PID 1's `container=`) before the files any image may carry
//! (`run/.containerenv`, `.dockerenv`). systemd's strongest VM check is the CPUID instruction,
//! which no file holds: on the live system (root `/`) of an x86 machine the agent executes it
//! as systemd does; on a fake root it stands in the kernel's traces of the same facts, the
//! `hypervisor` flag of `proc/cpuinfo` and the clock source the hypervisor provides
//! (`kvm-clock`, `hyperv_clocksource_tsc_page`, `xen`). `proc/1/cgroup`, which older tools
//! read, is not used: systemd stopped trusting it once cgroup namespaces hid it.
//!
//! The item is reported when the root has a `proc` or `sys` directory: without either there
//! is nothing to decide from, and `none` would be a guess.

use invsync_proto::{Attrs, Items};

use crate::read::Reader;

/// DMI files in systemd's order: `product_name` first so that KVM is found before QEMU.
const DMI_FILES: [&str; 5] = [
    "sys/class/dmi/id/product_name",
    "sys/class/dmi/id/sys_vendor",
    "sys/class/dmi/id/board_vendor",
    "sys/class/dmi/id/bios_vendor",
    "sys/class/dmi/id/product_version",
];

/// Prefixes of DMI strings and the hypervisor they name, first match wins.
const DMI_VENDORS: [(&str, &str); 17] = [
    ("KVM", "kvm"),
    ("OpenStack", "kvm"),
    ("KubeVirt", "kvm"),
    ("Amazon EC2", "amazon"),
    ("QEMU", "qemu"),
    ("VMware", "vmware"),
    ("VMW", "vmware"),
    ("innotek GmbH", "oracle"),
    ("VirtualBox", "oracle"),
    ("Oracle Corporation", "oracle"),
    ("Xen", "xen"),
    ("Bochs", "bochs"),
    ("Parallels", "parallels"),
    ("BHYVE", "bhyve"),
    ("Hyper-V", "microsoft"),
    ("Apple Virtualization", "apple"),
    ("Google Compute Engine", "google"),
];

/// Container manager names systemd knows; any other name is `container-other`.
const CONTAINERS: [&str; 9] = [
    "lxc",
    "lxc-libvirt",
    "systemd-nspawn",
    "docker",
    "podman",
    "rkt",
    "wsl",
    "proot",
    "pouch",
];

const NONE: &str = "none";
const VM_OTHER: &str = "vm-other";
const CONTAINER_OTHER: &str = "container-other";

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    if !r.is_dir("proc") && !r.is_dir("sys") {
        return;
    }
    let facts = vm_facts(r);
    let mut attrs = Attrs::new();
    attrs.insert("hypervisor".into(), decide_vm(&facts).to_string());
    attrs.insert("container".into(), detect_container(r).to_string());
    items.insert("virt".into(), attrs);
}

/// What the checks of `detect_vm` found, each as the name it gives (`none` when it found
/// nothing), so that [`decide_vm`] applies systemd's order as a pure function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmFacts {
    /// The DMI check, after the Amazon and SMBIOS refinements.
    pub dmi: &'static str,
    /// User-Mode Linux in `proc/cpuinfo`.
    pub uml: bool,
    /// `None` outside Xen (no `proc/xen`); `Some(true)` in the control domain (dom0).
    pub xen_dom0: Option<bool>,
    /// The CPUID check (or what stands in for it on a fake root).
    pub cpuid: &'static str,
    /// `sys/hypervisor/type`.
    pub hypervisor_type: &'static str,
    /// The device-tree check of ARM, POWER and RISC-V machines.
    pub device_tree: &'static str,
    /// The s390 check of `proc/sysinfo`.
    pub zvm: &'static str,
}

/// systemd's `detect_vm` over the facts: DMI names that hide behind another hypervisor
/// first, then UML, Xen guests, CPUID, the rest of DMI, `sys/hypervisor`, the device tree
/// and z/VM; an unrecognised hypervisor is `vm-other`, and Hyper-V's CPUID signature (which
/// QEMU also shows) only counts when nothing else answered.
pub fn decide_vm(f: &VmFacts) -> &'static str {
    let mut hyperv = false;
    let mut other = false;
    let v = 'found: {
        if matches!(f.dmi, "oracle" | "xen" | "amazon" | "parallels" | "google") {
            break 'found f.dmi;
        }
        if f.uml {
            break 'found "uml";
        }
        if f.xen_dom0 == Some(false) {
            break 'found "xen";
        }
        match f.cpuid {
            "microsoft" => hyperv = true,
            VM_OTHER => other = true,
            NONE => {}
            v => break 'found v,
        }
        if f.xen_dom0 == Some(true) {
            break 'found NONE;
        }
        for v in [f.dmi, f.hypervisor_type, f.device_tree] {
            match v {
                VM_OTHER => other = true,
                NONE => {}
                v => break 'found v,
            }
        }
        f.zvm
    };
    match v {
        NONE if hyperv => "microsoft",
        NONE if other => VM_OTHER,
        v => v,
    }
}

fn vm_facts(r: &mut Reader<'_>) -> VmFacts {
    let cpuinfo = r.read_quiet("proc/cpuinfo").unwrap_or_default();
    let xen_dom0 = r.exists("proc/xen").then(|| {
        match r
            .read_quiet("sys/hypervisor/properties/features")
            .and_then(|t| xen_features_dom0(&t))
        {
            Some(dom0) => dom0,
            None => r
                .read_quiet("proc/xen/capabilities")
                .is_some_and(|t| xen_capabilities_dom0(&t)),
        }
    });
    let cpuid = if r.live() {
        live_cpuid()
    } else {
        let clocksource = r
            .read_quiet("sys/devices/system/clocksource/clocksource0/available_clocksource")
            .unwrap_or_default();
        cpuid_from_files(&cpuinfo, &clocksource)
    };
    let hypervisor_type = match r
        .read_quiet("sys/hypervisor/type")
        .as_deref()
        .map(first_line)
    {
        Some("xen") => "xen",
        Some(_) => VM_OTHER,
        None => NONE,
    };
    VmFacts {
        dmi: dmi_check(r),
        uml: is_uml(&cpuinfo),
        xen_dom0,
        cpuid,
        hypervisor_type,
        device_tree: device_tree_check(r),
        zvm: r
            .read_quiet("proc/sysinfo")
            .map_or(NONE, |t| zvm_from_sysinfo(&t)),
    }
}

/// The first line of a file without its newline, as systemd's `read_one_line_file` gives it.
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// The hypervisor a DMI string names (`None` when it names none).
pub fn dmi_vendor(text: &str) -> Option<&'static str> {
    DMI_VENDORS
        .iter()
        .find(|(prefix, _)| text.starts_with(prefix))
        .map(|(_, v)| *v)
}

/// The SMBIOS "is a virtual machine" bit (BIOS characteristics extension byte 2, bit 4) of
/// `sys/firmware/dmi/entries/0-0/raw`; `None` when the table is too short to hold it.
pub fn smbios_vm_bit(raw: &[u8]) -> Option<bool> {
    if raw.len() < 20 || raw[1] < 20 {
        return None;
    }
    Some(raw[19] & (1 << 4) != 0)
}

fn dmi_check(r: &Reader<'_>) -> &'static str {
    let found = DMI_FILES
        .iter()
        .find_map(|f| r.read_quiet(f).and_then(|t| dmi_vendor(first_line(&t))));
    let smbios = || {
        std::fs::read(r.path("sys/firmware/dmi/entries/0-0/raw"))
            .ok()
            .and_then(|raw| smbios_vm_bit(&raw))
    };
    match found {
        // EC2's DMI names Amazon on bare-metal instances too; the SMBIOS bit, else a product
        // name ending in `.metal`, tells them apart.
        Some("amazon") => match smbios() {
            Some(true) => "amazon",
            Some(false) => NONE,
            None => match r.read_quiet("sys/class/dmi/id/product_name") {
                Some(name) if is_metal(name.trim_end_matches('\n')) => NONE,
                _ => "amazon",
            },
        },
        Some(v) => v,
        None if smbios() == Some(true) => VM_OTHER,
        None => NONE,
    }
}

/// Whether an EC2 product name names a bare-metal instance (`c5.metal`, `m7i.metal-24xl`).
fn is_metal(name: &str) -> bool {
    name.find(".metal")
        .map(|i| &name[i + ".metal".len()..])
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

/// User-Mode Linux: the first `vendor_id` line of `proc/cpuinfo` says so.
pub fn is_uml(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("vendor_id\t: "))
        .is_some_and(|v| v.starts_with("User Mode Linux"))
}

/// Xen's feature bits (hex without `0x`): whether `XENFEAT_dom0` (bit 11) is set; `None` when
/// the text is not a number.
pub fn xen_features_dom0(text: &str) -> Option<bool> {
    let hex = first_line(text).trim();
    let end = hex
        .find(|c: char| !c.is_ascii_hexdigit())
        .unwrap_or(hex.len());
    u64::from_str_radix(&hex[..end], 16)
        .ok()
        .map(|f| f & (1 << 11) != 0)
}

/// `proc/xen/capabilities` lists `control_d` in the control domain.
pub fn xen_capabilities_dom0(text: &str) -> bool {
    first_line(text).split(',').any(|c| c.trim() == "control_d")
}

/// The fake root's stand-in for CPUID: no `hypervisor` flag in `proc/cpuinfo` is no
/// hypervisor; with it, the paravirtual clock the hypervisor offers names it, and otherwise
/// it is one systemd would name but the files cannot (`vm-other`, which DMI may refine).
pub fn cpuid_from_files(cpuinfo: &str, clocksource: &str) -> &'static str {
    let flagged = cpuinfo.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim() == "flags" && v.split_ascii_whitespace().any(|f| f == "hypervisor")
        })
    });
    if !flagged {
        return NONE;
    }
    let sources: Vec<&str> = clocksource.split_ascii_whitespace().collect();
    if sources.contains(&"kvm-clock") {
        "kvm"
    } else if sources.contains(&"hyperv_clocksource_tsc_page") {
        "microsoft"
    } else if sources.contains(&"xen") {
        "xen"
    } else {
        VM_OTHER
    }
}

/// The hypervisor a CPUID leaf 0x40000000 signature names, as systemd's table does.
pub fn cpuid_signature(sig: &[u8; 12]) -> &'static str {
    const TABLE: [(&[u8], &str); 11] = [
        (b"XenVMMXenVMM", "xen"),
        (b"KVMKVMKVM\0\0\0", "kvm"),
        (b"Linux KVM Hv", "kvm"),
        (b"TCGTCGTCGTCG", "qemu"),
        (b"VMwareVMware", "vmware"),
        (b"Microsoft Hv", "microsoft"),
        (b"bhyve bhyve ", "bhyve"),
        (b"QNXQVMBSQG\0\0", "qnx"),
        (b"ACRNACRNACRN", "acrn"),
        (b"SRESRESRESRE", "sre"),
        (b"Apple VZ\0\0\0\0", "apple"),
    ];
    TABLE
        .iter()
        .find(|(s, _)| *s == sig)
        .map_or(VM_OTHER, |(_, v)| *v)
}

/// CPUID on the machine running the agent: the hypervisor bit of leaf 1, then the vendor
/// signature of leaf 0x40000000.
#[cfg(target_arch = "x86_64")]
fn live_cpuid() -> &'static str {
    use std::arch::x86_64::__cpuid;
    let leaf1 = __cpuid(1);
    if leaf1.ecx & 0x8000_0000 == 0 {
        return NONE;
    }
    let l = __cpuid(0x4000_0000);
    let mut sig = [0u8; 12];
    sig[..4].copy_from_slice(&l.ebx.to_le_bytes());
    sig[4..8].copy_from_slice(&l.ecx.to_le_bytes());
    sig[8..].copy_from_slice(&l.edx.to_le_bytes());
    cpuid_signature(&sig)
}

/// CPUID is x86 only; systemd answers `none` for it elsewhere too.
#[cfg(not(target_arch = "x86_64"))]
fn live_cpuid() -> &'static str {
    NONE
}

fn device_tree_check(r: &mut Reader<'_>) -> &'static str {
    const DT: &str = "proc/device-tree";
    if let Some(t) = r.read_quiet(&format!("{DT}/hypervisor/compatible")) {
        // Device-tree strings end in NUL rather than a newline.
        let hv = first_line(&t).trim_end_matches('\0');
        return if hv == "linux,kvm" {
            "kvm"
        } else if hv.contains("xen") {
            "xen"
        } else if hv.contains("vmware") {
            "vmware"
        } else {
            VM_OTHER
        };
    }
    if r.exists(&format!("{DT}/ibm,partition-name"))
        && r.exists(&format!("{DT}/hmc-managed?"))
        && !r.exists(&format!("{DT}/chosen/qemu,graphic-width"))
    {
        return "powervm";
    }
    let Some(entries) = r.list_dir(DT) else {
        return NONE;
    };
    if entries.iter().any(|e| e.contains("fw-cfg")) {
        return "qemu";
    }
    match r.read_quiet(&format!("{DT}/compatible")) {
        Some(c) if first_line(&c).trim_end_matches('\0') == "qemu,pseries" => "qemu",
        _ => NONE,
    }
}

/// s390: the `VM00 Control Program` of `proc/sysinfo` is `z/VM` or (under KVM) `KVM/Linux`.
pub fn zvm_from_sysinfo(text: &str) -> &'static str {
    match text.lines().find_map(|l| {
        l.strip_prefix("VM00 Control Program:")
            .map(|v| v.split_ascii_whitespace().next().unwrap_or(""))
    }) {
        None => NONE,
        Some("z/VM") => "zvm",
        Some(_) => "kvm",
    }
}

/// The container a manager's name means: systemd's names, `oci` resolved by the files an
/// image carries, anything else `container-other`.
pub fn container_from_name(name: &str, files: &'static str) -> &'static str {
    if name == "oci" {
        return if files == NONE {
            CONTAINER_OTHER
        } else {
            files
        };
    }
    CONTAINERS
        .iter()
        .find(|c| **c == name)
        .copied()
        .unwrap_or(CONTAINER_OTHER)
}

/// The value of `container=` in a NUL-separated environment (`proc/1/environ`).
pub fn environ_container(environ: &[u8]) -> Option<String> {
    environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(b"container="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn container_files(r: &Reader<'_>) -> &'static str {
    if r.exists("run/.containerenv") {
        "podman"
    } else if r.exists(".dockerenv") {
        "docker"
    } else {
        NONE
    }
}

/// systemd's `detect_container` for a process that is not PID 1.
fn detect_container(r: &mut Reader<'_>) -> &'static str {
    if r.exists("proc/vz") && !r.exists("proc/bc") {
        return "openvz";
    }
    if r.read_quiet("proc/sys/kernel/osrelease")
        .is_some_and(|o| o.contains("Microsoft") || o.contains("WSL"))
    {
        return "wsl";
    }
    // proot traces the processes it runs; only our own process can be asked, so only live.
    if r.live() && traced_by_proot(r) {
        return "proot";
    }
    let files = container_files(r);
    for path in ["run/host/container-manager", "run/systemd/container"] {
        if let Some(text) = r.read_quiet(path).filter(|t| !t.is_empty()) {
            return container_from_name(first_line(&text), files);
        }
    }
    // Readable by root only, and not even by root across user namespaces: failure is normal.
    if let Some(name) = std::fs::read(r.path("proc/1/environ"))
        .ok()
        .and_then(|e| environ_container(&e))
    {
        return container_from_name(&name, files);
    }
    if files != NONE {
        return files;
    }
    if in_cgroup_namespace(r) {
        return CONTAINER_OTHER;
    }
    NONE
}

fn traced_by_proot(r: &Reader<'_>) -> bool {
    let Some(status) = r.read_quiet("proc/self/status") else {
        return false;
    };
    let Some(pid) = status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|p| *p != 0)
    else {
        return false;
    };
    r.read_quiet(&format!("proc/{pid}/comm"))
        .is_some_and(|c| c.starts_with("proot"))
}

/// systemd's `running_in_cgroupns`: a nested cgroup seen as the root of the hierarchy.
/// cgroup v2 is recognised by `cgroup.controllers` at the top of `sys/fs/cgroup` (systemd
/// asks `statfs`, which a fake root cannot answer).
fn in_cgroup_namespace(r: &Reader<'_>) -> bool {
    if !r.exists("proc/self/ns/cgroup") {
        return false;
    }
    if r.exists("sys/fs/cgroup/cgroup.controllers") {
        if !r.exists("sys/fs/cgroup/cgroup.events") {
            return false;
        }
        if r.exists("sys/fs/cgroup/cgroup.type") {
            return true;
        }
        !r.exists("sys/kernel/cgroup/features")
    } else {
        r.exists("sys/fs/cgroup/systemd") && !r.exists("sys/fs/cgroup/systemd/release_agent")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> VmFacts {
        VmFacts {
            dmi: NONE,
            uml: false,
            xen_dom0: None,
            cpuid: NONE,
            hypervisor_type: NONE,
            device_tree: NONE,
            zvm: NONE,
        }
    }

    #[test]
    fn order_of_vm_checks() {
        assert_eq!(decide_vm(&facts()), "none");
        // A KVM guest whose DMI says QEMU is KVM: CPUID comes before the rest of DMI.
        let kvm = VmFacts {
            dmi: "qemu",
            cpuid: "kvm",
            ..facts()
        };
        assert_eq!(decide_vm(&kvm), "kvm");
        // VirtualBox on KVM is VirtualBox.
        let vbox = VmFacts {
            dmi: "oracle",
            cpuid: "kvm",
            ..facts()
        };
        assert_eq!(decide_vm(&vbox), "oracle");
        // QEMU with Hyper-V enlightenments is what DMI says, Hyper-V only when nothing says.
        let hv = VmFacts {
            dmi: "qemu",
            cpuid: "microsoft",
            ..facts()
        };
        assert_eq!(decide_vm(&hv), "qemu");
        let hv = VmFacts {
            cpuid: "microsoft",
            ..facts()
        };
        assert_eq!(decide_vm(&hv), "microsoft");
        let other = VmFacts {
            cpuid: VM_OTHER,
            hypervisor_type: VM_OTHER,
            ..facts()
        };
        assert_eq!(decide_vm(&other), "vm-other");
        let domu = VmFacts {
            xen_dom0: Some(false),
            cpuid: "kvm",
            ..facts()
        };
        assert_eq!(decide_vm(&domu), "xen");
        // dom0 is not a VM unless nested in one CPUID names.
        let dom0 = VmFacts {
            xen_dom0: Some(true),
            hypervisor_type: "xen",
            ..facts()
        };
        assert_eq!(decide_vm(&dom0), "none");
        let uml = VmFacts {
            uml: true,
            cpuid: "kvm",
            ..facts()
        };
        assert_eq!(decide_vm(&uml), "uml");
        let arm = VmFacts {
            device_tree: "kvm",
            ..facts()
        };
        assert_eq!(decide_vm(&arm), "kvm");
        let s390 = VmFacts {
            zvm: "zvm",
            ..facts()
        };
        assert_eq!(decide_vm(&s390), "zvm");
    }

    #[test]
    fn dmi_strings() {
        assert_eq!(dmi_vendor("KVM"), Some("kvm"));
        assert_eq!(dmi_vendor("QEMU"), Some("qemu"));
        assert_eq!(dmi_vendor("VMware, Inc."), Some("vmware"));
        assert_eq!(dmi_vendor("innotek GmbH"), Some("oracle"));
        assert_eq!(dmi_vendor("Microsoft Corporation"), None);
        assert_eq!(dmi_vendor("Hyper-V UEFI Release v4.1"), Some("microsoft"));
        assert_eq!(dmi_vendor("Google Compute Engine"), Some("google"));
        assert_eq!(dmi_vendor("Dell Inc."), None);
        assert_eq!(dmi_vendor(""), None);
        assert!(is_metal("c5.metal") && is_metal("m7i.metal-24xl"));
        assert!(!is_metal("c5.large") && !is_metal("x.metalx"));
    }

    #[test]
    fn smbios_bit() {
        let mut raw = vec![0u8; 24];
        raw[1] = 24;
        assert_eq!(smbios_vm_bit(&raw), Some(false));
        raw[19] = 0x10;
        assert_eq!(smbios_vm_bit(&raw), Some(true));
        raw[1] = 18;
        assert_eq!(smbios_vm_bit(&raw), None);
        assert_eq!(smbios_vm_bit(&raw[..10]), None);
    }

    #[test]
    fn cpuid_stand_ins() {
        let flags = "processor\t: 0\nflags\t\t: fpu vme hypervisor lahf_lm\n";
        assert_eq!(cpuid_from_files(flags, "tsc kvm-clock acpi_pm \n"), "kvm");
        assert_eq!(
            cpuid_from_files(flags, "hyperv_clocksource_tsc_page acpi_pm"),
            "microsoft"
        );
        assert_eq!(cpuid_from_files(flags, "xen tsc"), "xen");
        assert_eq!(cpuid_from_files(flags, ""), "vm-other");
        assert_eq!(
            cpuid_from_files("flags\t\t: fpu vme\n", "tsc kvm-clock"),
            "none"
        );
        assert_eq!(cpuid_signature(b"KVMKVMKVM\0\0\0"), "kvm");
        assert_eq!(cpuid_signature(b"VMwareVMware"), "vmware");
        assert_eq!(cpuid_signature(b"SomethingNew"), "vm-other");
        assert!(is_uml("vendor_id\t: User Mode Linux\nvendor_id\t: x\n"));
        assert!(!is_uml("vendor_id\t: GenuineIntel\n"));
    }

    #[test]
    fn xen_and_zvm() {
        assert_eq!(xen_features_dom0("00000801\n"), Some(true));
        assert_eq!(xen_features_dom0("00000001\n"), Some(false));
        assert_eq!(xen_features_dom0("zz"), None);
        assert!(xen_capabilities_dom0("control_d\n"));
        assert!(!xen_capabilities_dom0("\n"));
        assert_eq!(
            zvm_from_sysinfo("VM00 Name:            LINUX1\nVM00 Control Program: z/VM    7.2.0\n"),
            "zvm"
        );
        assert_eq!(zvm_from_sysinfo("VM00 Control Program: KVM/Linux\n"), "kvm");
        assert_eq!(zvm_from_sysinfo("Manufacturer: IBM\n"), "none");
    }

    #[test]
    fn container_names() {
        assert_eq!(container_from_name("docker", NONE), "docker");
        assert_eq!(
            container_from_name("systemd-nspawn", NONE),
            "systemd-nspawn"
        );
        assert_eq!(container_from_name("oci", "podman"), "podman");
        assert_eq!(container_from_name("oci", NONE), "container-other");
        assert_eq!(container_from_name("kubernetes", NONE), "container-other");
        assert_eq!(container_from_name("", NONE), "container-other");
        assert_eq!(
            environ_container(b"PATH=/bin\0container=lxc\0HOME=/\0").as_deref(),
            Some("lxc")
        );
        assert_eq!(environ_container(b"PATH=/bin\0xcontainer=lxc\0"), None);
    }

    #[test]
    fn a_root_without_proc_or_sys_has_no_virt_item() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Reader::new(dir.path(), "hw");
        let mut items = Items::new();
        collect(&mut r, &mut items);
        assert!(items.is_empty());
        std::fs::create_dir(dir.path().join("proc")).unwrap();
        std::fs::write(dir.path().join(".dockerenv"), "").unwrap();
        collect(&mut r, &mut items);
        assert_eq!(items["virt"]["hypervisor"], "none");
        assert_eq!(items["virt"]["container"], "docker");
        assert!(r.into_warnings().is_empty());
    }
}
