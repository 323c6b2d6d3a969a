//! The `fs/<mountpoint>` items: mounted real filesystems from `proc/mounts`, with their type
//! and device, and on the live system (root `/`) their size and free space from `statvfs`.
//!
//! Which filesystems are real is decided in this order:
//!
//! 1. A fixed list of types is never real: kernel pseudo filesystems (proc, sysfs, tmpfs,
//!    devtmpfs, devpts, cgroup, cgroup2, …), read-only images (squashfs: every snap is one,
//!    always full), user-space FUSE mounts (`fuse`, `fuse.*`, which come and go with
//!    desktop sessions; `fuseblk`, FUSE on a block device such as NTFS, is real) and network
//!    or host-shared filesystems (nfs, cifs, 9p, virtiofs, …): those belong to the
//!    inventory of the machine that serves them, and `statvfs` on a dead NFS server hangs.
//! 2. `overlay` is real only when mounted at `/`, where it is a container's root; elsewhere
//!    it is a container's view of a filesystem that is already reported (Docker makes one
//!    per running container).
//! 3. A type listed in `proc/filesystems` is real unless it is marked `nodev` there, except
//!    `zfs`, which is marked `nodev` but stores data on local disks.
//! 4. A type that `proc/filesystems` does not list (or when that file is missing) is real
//!    when its device is a path (`/dev/…`).
//!
//! A mount point mounted more than once (bind mounts of the same device, or one mount
//! hiding another) is one item, the last in `proc/mounts`, which is the one visible there.
//! Free space is what unprivileged users can use (`f_bavail`, as `df` shows it), rounded to
//! the nearest 1 % of the size so that ordinary churn does not change the inventory.

use std::collections::BTreeMap;

use invsync_proto::{Attrs, Items};

use crate::read::Reader;

/// Types that are never real filesystems (rule 1).
const NOT_REAL: &[&str] = &[
    // Kernel pseudo filesystems.
    "proc",
    "sysfs",
    "tmpfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "cpuset",
    "securityfs",
    "debugfs",
    "tracefs",
    "pstore",
    "bpf",
    "mqueue",
    "hugetlbfs",
    "configfs",
    "fusectl",
    "binfmt_misc",
    "autofs",
    "rpc_pipefs",
    "nfsd",
    "nsfs",
    "efivarfs",
    "selinuxfs",
    "ramfs",
    "rootfs",
    "sockfs",
    "pipefs",
    "devfs",
    "usbfs",
    "resctrl",
    // Read-only images.
    "squashfs",
    // FUSE in user space (fuse.* is matched separately).
    "fuse",
    // Network and host-shared filesystems.
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "glusterfs",
    "lustre",
    "afs",
    "9p",
    "virtiofs",
    "davfs",
];

/// `nodev` types in `proc/filesystems` that still keep data on local disks (rule 3).
const NODEV_REAL: &[&str] = &["zfs"];

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    let Some(mounts) = r.read("proc/mounts") else {
        return;
    };
    let filesystems = r.read_optional("proc/filesystems");
    let types = filesystems.as_deref().map(parse_filesystems);
    // Later mounts on the same mount point win: they are the ones visible there.
    let mut real: BTreeMap<String, Mount> = BTreeMap::new();
    for m in parse_mounts(&mounts) {
        if is_real(&m, types.as_ref()) {
            real.insert(m.mountpoint.clone(), m);
        }
    }
    for (mountpoint, m) in real {
        let mut attrs = Attrs::from([
            ("type".to_string(), m.fstype),
            ("device".to_string(), m.device),
        ]);
        if r.live() {
            match statvfs(&mountpoint) {
                Ok((size, free)) => {
                    attrs.insert("size_bytes".into(), size.to_string());
                    attrs.insert("free_bytes".into(), quantise_free(free, size).to_string());
                }
                Err(e) => r.warn(&format!(
                    "cannot statvfs {mountpoint}: {}",
                    crate::read::io_message(&e)
                )),
            }
        }
        items.insert(format!("fs/{mountpoint}"), attrs);
    }
}

/// One line of `proc/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
}

/// Parses `proc/mounts` (the fstab format). Lines with fewer than three fields are skipped;
/// octal escapes (`\040` for a space) in the device and mount point are decoded.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let device = unescape(f.next()?);
            let mountpoint = unescape(f.next()?);
            let fstype = unescape(f.next()?);
            Some(Mount {
                device,
                mountpoint,
                fstype,
            })
        })
        .collect()
}

/// Decodes the kernel's `\ooo` octal escapes (space, tab, newline and backslash). A backslash
/// not followed by three octal digits stays as it is.
pub fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            // `\777` is more than a byte; such a field was not written by the kernel.
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The filesystem types of `proc/filesystems`: (name, marked `nodev`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FsTypes {
    pub types: Vec<(String, bool)>,
}

impl FsTypes {
    fn nodev(&self, fstype: &str) -> Option<bool> {
        self.types
            .iter()
            .find(|(t, _)| t == fstype)
            .map(|(_, nodev)| *nodev)
    }
}

/// Parses `proc/filesystems`: one type a line, after an optional `nodev` and a tab.
pub fn parse_filesystems(text: &str) -> FsTypes {
    let types = text
        .lines()
        .filter_map(|line| {
            let (flag, name) = line.split_once('\t').unwrap_or(("", line));
            let name = name.trim();
            (!name.is_empty() && !name.contains(char::is_whitespace))
                .then(|| (name.to_string(), flag.trim() == "nodev"))
        })
        .collect();
    FsTypes { types }
}

/// Whether a mount is a real filesystem (see the module documentation for the rules).
pub fn is_real(m: &Mount, types: Option<&FsTypes>) -> bool {
    let t = m.fstype.as_str();
    if NOT_REAL.contains(&t) || t.starts_with("fuse.") {
        return false;
    }
    if t == "overlay" {
        return m.mountpoint == "/";
    }
    match types.and_then(|ft| ft.nodev(t)) {
        Some(nodev) => !nodev || NODEV_REAL.contains(&t),
        None => m.device.starts_with('/'),
    }
}

/// Free space rounded to the nearest 1 % of the size.
pub fn quantise_free(free: u64, size: u64) -> u64 {
    if size == 0 {
        return 0;
    }
    let (free, size) = (u128::from(free.min(size)), u128::from(size));
    let percent = (free * 100 + size / 2) / size;
    // percent ≤ 100, so the result is at most `size` and fits.
    (percent * size / 100) as u64
}

/// Size and space available to unprivileged users of the filesystem mounted at `path`.
fn statvfs(path: &str) -> std::io::Result<(u64, u64)> {
    let c = std::ffi::CString::new(path)
        .map_err(|_| std::io::Error::other("path contains a NUL byte"))?;
    // SAFETY: `statvfs` writes into the zeroed struct we own and reads the NUL-terminated
    // path, which lives until the call returns.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // The field types differ between platforms.
    let (frsize, blocks, bavail) = (s.f_frsize as u64, s.f_blocks as u64, s.f_bavail as u64);
    Ok((blocks.saturating_mul(frsize), bavail.saturating_mul(frsize)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(device: &str, mountpoint: &str, fstype: &str) -> Mount {
        Mount {
            device: device.into(),
            mountpoint: mountpoint.into(),
            fstype: fstype.into(),
        }
    }

    const FILESYSTEMS: &str = "nodev\tsysfs\nnodev\ttmpfs\n\text4\nnodev\toverlay\nnodev\tzfs\n\tbtrfs\n\tfuseblk\nnodev\tfuse\n\tsquashfs\nnodev\tnfs4\n";

    #[test]
    fn mounts() {
        let text = "/dev/sda1 / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n\
                    /dev/sdb1 /mnt/my\\040disk\\011x ext4 rw 0 0\nshort line\n\n";
        let m = parse_mounts(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0], mount("/dev/sda1", "/", "ext4"));
        assert_eq!(m[2].mountpoint, "/mnt/my disk\tx");
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("a\\012"), "a\n");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
        assert_eq!(unescape("\\"), "\\");
        assert_eq!(unescape("\\999"), "\\999");
        assert_eq!(unescape("\\777"), "\\777");
        assert_eq!(unescape("\\377"), "\u{fffd}");
        assert_eq!(unescape("plain"), "plain");
    }

    #[test]
    fn filesystems() {
        let t = parse_filesystems(FILESYSTEMS);
        assert_eq!(t.nodev("ext4"), Some(false));
        assert_eq!(t.nodev("tmpfs"), Some(true));
        assert_eq!(t.nodev("xfs"), None);
        assert_eq!(parse_filesystems(""), FsTypes::default());
        assert_eq!(
            parse_filesystems("garbage with spaces\n\u{fffd}\n").types,
            vec![("\u{fffd}".to_string(), false)]
        );
    }

    #[test]
    fn real_or_not() {
        let t = parse_filesystems(FILESYSTEMS);
        let t = Some(&t);
        assert!(is_real(&mount("/dev/sda1", "/", "ext4"), t));
        assert!(is_real(&mount("rpool/ROOT", "/", "zfs"), t));
        assert!(is_real(&mount("/dev/sdc1", "/mnt/win", "fuseblk"), t));
        assert!(is_real(&mount("overlay", "/", "overlay"), t));
        assert!(!is_real(
            &mount("overlay", "/var/lib/docker/overlay2/x/merged", "overlay"),
            t
        ));
        assert!(!is_real(&mount("tmpfs", "/run", "tmpfs"), t));
        assert!(!is_real(
            &mount("/dev/loop3", "/snap/core/1", "squashfs"),
            t
        ));
        assert!(!is_real(&mount("server:/export", "/home", "nfs4"), t));
        assert!(!is_real(&mount("sshfs#me@h:", "/mnt/h", "fuse.sshfs"), t));
        assert!(!is_real(
            &mount("portal", "/run/user/1000/doc", "fuse.portal"),
            t
        ));
        // Types proc/filesystems does not list are judged by their device.
        assert!(is_real(&mount("/dev/sdd1", "/data", "xfs"), t));
        assert!(is_real(&mount("/dev/sdd1", "/data", "xfs"), None));
        assert!(!is_real(&mount("none", "/x", "weirdfs"), None));
        // Without proc/filesystems the fixed list still applies.
        assert!(!is_real(&mount("/dev/shm", "/dev/shm", "tmpfs"), None));
    }

    #[test]
    fn quantise() {
        let size = 100_000_000_000u64;
        assert_eq!(quantise_free(41_400_000_000, size), 41_000_000_000);
        assert_eq!(quantise_free(41_600_000_000, size), 42_000_000_000);
        assert_eq!(
            quantise_free(41_499_999_999, size),
            quantise_free(40_500_000_001, size)
        );
        assert_eq!(quantise_free(0, size), 0);
        assert_eq!(quantise_free(size, size), size);
        assert_eq!(quantise_free(u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(
            quantise_free(u64::MAX / 3, u64::MAX),
            (u128::from(u64::MAX) * 33 / 100) as u64
        );
        assert_eq!(quantise_free(5, 0), 0);
        assert_eq!(quantise_free(10, 5), 5);
    }

    #[test]
    fn live_root_is_measured() {
        let (size, free) = statvfs("/").unwrap();
        assert!(size > 0 && free <= size);
        assert!(statvfs("/nonexistent/path").is_err());
        assert!(statvfs("a\0b").is_err());
    }
}
