//! The hardware inventory (class `hw`): one module per source of information, each reading
//! its own files under the root. The order here is only the order of the warnings; the items
//! are sorted by key whatever the order.

mod battery;
mod cpu;
pub mod custom;
mod disk;
mod dm;
pub(crate) mod dmi;
mod edid;
mod fs;
mod gpu;
mod ids;
mod kmod;
mod memory;
mod monitor;
mod net;
mod nic;
mod os;
mod pci;
mod printer;
mod raid;
mod service;
mod usb;
mod user;
mod virt;

pub use battery::{Capacity, parse_capacity};
pub use cpu::{CpuInfo, khz_to_mhz, mhz_from_model, parse_cpuinfo, parse_mhz};
pub use disk::{is_virtual_name, parse_rotational, parse_size};
pub use dm::{is_lvm_layer, split_lvm_name};
pub use edid::{EDID_BLOCK, EDID_HEADER, Edid, EdidError, parse_edid};
pub use fs::{FsTypes, Mount, is_real, parse_filesystems, parse_mounts, quantise_free, unescape};
pub use gpu::parse_vram_total;
pub use ids::{IdNames, IdQuery, parse_hex_id, parse_ids};
pub use kmod::{Module, parse_modules};
pub use memory::{Dimm, parse_mem_total, parse_type17};
pub use monitor::monitor_attrs;
pub use net::{Resolver, default_gateways_v4, default_gateways_v6, parse_resolv_conf};
pub use nic::{group_addresses, parse_speed, parse_temporary_ipv6, prefix_len};
pub use os::{kernel_from_version, parse_os_release, uname_arch};
pub use pci::{PciDevice, parse_class, parse_id16, parse_subsystem_id};
pub use printer::{Printer, parse_printers_conf, strip_credentials};
pub use raid::{MdArray, MdMember, parse_mdstat, stable_state};
pub use service::{dependency_dir, is_unit_name};
pub use usb::is_device_name as is_usb_device_name;
pub use user::{
    GroupEntry, PasswdEntry, UidRange, groups_of, parse_group, parse_login_defs, parse_passwd,
};
pub use virt::{
    VmFacts, container_from_name, cpuid_from_files, cpuid_signature, decide_vm, dmi_vendor,
    environ_container, is_uml, smbios_vm_bit, xen_capabilities_dom0, xen_features_dom0,
    zvm_from_sysinfo,
};

use invsync_proto::Items;

use crate::read::Reader;

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    dmi::collect(r, items);
    cpu::collect(r, items);
    memory::collect(r, items);
    disk::collect(r, items);
    fs::collect(r, items);
    nic::collect(r, items);
    os::collect(r, items);
    // Devices: the PCI functions, then the graphics cards among them, USB devices, monitors
    // and batteries.
    let pci = pci::collect(r, items);
    gpu::collect(r, items, &pci);
    usb::collect(r, items);
    monitor::collect(r, items);
    battery::collect(r, items);
    virt::collect(r, items);
    net::collect(r, items);
    user::collect(r, items);
    service::collect(r, items);
    kmod::collect(r, items);
    raid::collect(r, items);
    dm::collect(r, items);
    printer::collect(r, items);
    custom::collect(r, items);
}
