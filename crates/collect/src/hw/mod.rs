//! The hardware inventory (class `hw`): one module per source of information, each reading
//! its own files under the root. The order here is only the order of the warnings; the items
//! are sorted by key whatever the order.

mod cpu;
pub mod custom;
mod disk;
mod dmi;
mod fs;
mod memory;
mod nic;
mod os;

pub use cpu::{CpuInfo, khz_to_mhz, mhz_from_model, parse_cpuinfo, parse_mhz};
pub use disk::{is_virtual_name, parse_rotational, parse_size};
pub use fs::{FsTypes, Mount, is_real, parse_filesystems, parse_mounts, quantise_free, unescape};
pub use memory::{Dimm, parse_mem_total, parse_type17};
pub use nic::{group_addresses, parse_speed, parse_temporary_ipv6, prefix_len};
pub use os::{kernel_from_version, parse_os_release, uname_arch};

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
    custom::collect(r, items);
}
