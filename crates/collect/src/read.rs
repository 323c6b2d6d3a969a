//! Reading files under the inventory root.
//!
//! Every collector reads `root.join(relative)` through a [`Reader`], which turns a missing or
//! unreadable file into a warning of the inventory instead of a failure: one unreadable file
//! (DMI serials are readable by root only) must never cost the whole inventory. Files are read
//! as bytes and decoded lossily, so a stray non-UTF-8 byte in a package description does not
//! make the whole package database unreadable. Warnings name the path relative to the root, so
//! the same tree gives the same warnings wherever it is mounted.

use std::io;
use std::path::{Path, PathBuf};

use crate::CollectOptions;

/// Reads files under one root and collects the warnings of one inventory class.
pub(crate) struct Reader<'a> {
    root: &'a Path,
    /// `hw` or `sw`: the first word of every warning.
    class: &'static str,
    /// Whether `root` is the running system's `/`, so that live system calls (`statvfs`,
    /// `getifaddrs`) describe the same machine as the files.
    live: bool,
    warnings: Vec<String>,
    options: CollectOptions,
    /// Item keys whose previous value the caller should keep (see `Collected::keep_previous`).
    keep: Vec<String>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(root: &'a Path, class: &'static str) -> Reader<'a> {
        Reader::with_options(root, class, CollectOptions::default())
    }

    pub(crate) fn with_options(
        root: &'a Path,
        class: &'static str,
        options: CollectOptions,
    ) -> Reader<'a> {
        // A root given as `/` or as any path that resolves to it is the live system. The
        // canonicalisation costs one system call and is done once per inventory.
        let live = root == Path::new("/") || root.canonicalize().is_ok_and(|p| p == Path::new("/"));
        Reader {
            root,
            class,
            live,
            warnings: Vec::new(),
            options,
            keep: Vec::new(),
        }
    }

    pub(crate) fn options(&self) -> &CollectOptions {
        &self.options
    }

    /// Asks the caller to keep the previous item `key`: its source failed this time in a way
    /// that says nothing about the item (a custom script that timed out).
    pub(crate) fn keep_previous(&mut self, key: String) {
        self.keep.push(key);
    }

    pub(crate) fn take_keep(&mut self) -> Vec<String> {
        std::mem::take(&mut self.keep)
    }

    /// True when the root is the running system's `/`.
    pub(crate) fn live(&self) -> bool {
        self.live
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Adds a warning, prefixed with the inventory class.
    pub(crate) fn warn(&mut self, message: &str) {
        self.warnings.push(format!("{}: {message}", self.class));
    }

    pub(crate) fn into_warnings(self) -> Vec<String> {
        self.warnings
    }

    /// Reads a file that should be there: any failure becomes a warning.
    pub(crate) fn read(&mut self, rel: &str) -> Option<String> {
        match std::fs::read(self.path(rel)) {
            Ok(bytes) => Some(decode(bytes)),
            Err(e) => {
                self.warn_io(rel, &e);
                None
            }
        }
    }

    /// Reads a file that may legitimately be absent: a missing file is silent, any other
    /// failure (permissions, I/O errors) is a warning.
    pub(crate) fn read_optional(&mut self, rel: &str) -> Option<String> {
        match std::fs::read(self.path(rel)) {
            Ok(bytes) => Some(decode(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                self.warn_io(rel, &e);
                None
            }
        }
    }

    /// Reads a file whose absence or failure is normal and not worth a warning, such as the
    /// link speed of a virtual interface (the kernel answers `EINVAL`).
    pub(crate) fn read_quiet(&self, rel: &str) -> Option<String> {
        std::fs::read(self.path(rel)).ok().map(decode)
    }

    /// Whether `rel` exists (following symbolic links, as sysfs is made of them).
    pub(crate) fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    /// Whether `rel` is a directory (following symbolic links).
    pub(crate) fn is_dir(&self, rel: &str) -> bool {
        self.path(rel).is_dir()
    }

    /// The entry names of a directory, sorted so that output and warnings are deterministic.
    /// A missing directory is `None` without a warning (the caller decides whether that is
    /// worth saying); any other failure is a warning.
    pub(crate) fn list_dir(&mut self, rel: &str) -> Option<Vec<String>> {
        let entries = match std::fs::read_dir(self.path(rel)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                self.warn_io(rel, &e);
                return None;
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort_unstable();
        Some(names)
    }

    /// The target of the symbolic link `rel`, without following it (a link to `/dev/null` is
    /// read as that text, never as the host's `/dev/null`). `None` when `rel` is missing or
    /// not a link.
    pub(crate) fn link_target(&self, rel: &str) -> Option<PathBuf> {
        std::fs::read_link(self.path(rel)).ok()
    }

    /// `rel` with symbolic links of its last component followed inside the root, as a chroot
    /// would: an absolute target names a path under the root, not on the host running the
    /// collector. (`etc/resolv.conf` is usually a link to `/run/...`; followed by the kernel on
    /// a fake root, it would read the host's file.) Gives up after eight links, as a loop
    /// would otherwise never end, and returns the last path reached.
    pub(crate) fn resolve_in_root(&self, rel: &str) -> String {
        let mut current = rel.trim_start_matches('/').to_string();
        for _ in 0..8 {
            let Some(target) = self.link_target(&current) else {
                break;
            };
            let target = target.to_string_lossy();
            current = if let Some(absolute) = target.strip_prefix('/') {
                absolute.to_string()
            } else {
                let parent = Path::new(&current).parent().unwrap_or(Path::new(""));
                normalise(&parent.join(&*target).to_string_lossy())
            };
        }
        current
    }

    fn warn_io(&mut self, rel: &str, e: &io::Error) {
        self.warn(&format!("cannot read {rel}: {}", io_message(e)));
    }
}

/// A relative path with `.` and `..` resolved lexically and never above the root, so that
/// `etc/../../../run/x` stays `run/x`.
fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Decodes file contents, replacing invalid UTF-8 instead of failing. Valid input (the usual
/// case) is taken over without a copy.
pub(crate) fn decode(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// The message of an I/O error without the `(os error N)` suffix, which adds nothing for an
/// administrator and differs between platforms.
pub(crate) fn io_message(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// A trimmed, non-empty value: sysfs and procfs values end in a newline, and firmware pads
/// DMI strings with spaces.
pub(crate) fn value(text: &str) -> Option<&str> {
    let t = text.trim();
    (!t.is_empty()).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_keeps_valid_utf8_and_replaces_garbage() {
        assert_eq!(decode(b"abc\n".to_vec()), "abc\n");
        assert_eq!(decode(vec![b'a', 0xff, 0xfe, b'b']), "a\u{fffd}\u{fffd}b");
        assert_eq!(decode(Vec::new()), "");
    }

    #[test]
    fn io_message_drops_os_error_suffix() {
        let e = io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(io_message(&e), "Permission denied");
        let e = io::Error::other("plain");
        assert_eq!(io_message(&e), "plain");
    }

    #[test]
    fn value_trims_and_drops_empty() {
        assert_eq!(value("  Dell Inc.  \n"), Some("Dell Inc."));
        assert_eq!(value(" \n\t"), None);
        assert_eq!(value(""), None);
    }

    #[test]
    fn reader_warns_on_missing_and_unreadable_but_not_on_optional_missing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ok"), b"fine\n").unwrap();
        std::fs::create_dir(dir.path().join("adir")).unwrap();
        let mut r = Reader::new(dir.path(), "hw");
        assert!(!r.live());
        assert_eq!(r.read("ok").as_deref(), Some("fine\n"));
        assert_eq!(r.read("missing"), None);
        assert_eq!(r.read_optional("missing"), None);
        assert_eq!(r.read_quiet("missing"), None);
        // Reading a directory fails with something other than "not found", which is how a
        // permission problem looks to the optional reader (tests run as root, so a mode-000
        // file would still be readable here).
        assert_eq!(r.read_optional("adir"), None);
        assert_eq!(r.list_dir("nothing"), None);
        assert_eq!(
            r.list_dir("").unwrap(),
            vec!["adir".to_string(), "ok".to_string()]
        );
        let w = r.into_warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(w[0], "hw: cannot read missing: No such file or directory");
        assert!(w[1].starts_with("hw: cannot read adir: "), "{w:?}");
    }

    #[test]
    fn links_are_followed_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("run/systemd/resolve")).unwrap();
        std::os::unix::fs::symlink(
            "/run/systemd/resolve/stub-resolv.conf",
            root.join("etc/resolv.conf"),
        )
        .unwrap();
        std::os::unix::fs::symlink("../../../../etc/loop", root.join("etc/loop")).unwrap();
        std::os::unix::fs::symlink("../run/a", root.join("etc/rel")).unwrap();
        let r = Reader::new(root, "hw");
        assert_eq!(
            r.resolve_in_root("etc/resolv.conf"),
            "run/systemd/resolve/stub-resolv.conf"
        );
        assert_eq!(r.resolve_in_root("etc/rel"), "run/a");
        assert_eq!(r.resolve_in_root("etc/loop"), "etc/loop");
        assert_eq!(r.resolve_in_root("etc/plain"), "etc/plain");
        assert_eq!(
            r.link_target("etc/resolv.conf"),
            Some(PathBuf::from("/run/systemd/resolve/stub-resolv.conf"))
        );
        assert_eq!(r.link_target("etc"), None);
        assert_eq!(normalise("a/./b/../../../c"), "c");
    }

    #[test]
    fn slash_is_live() {
        assert!(Reader::new(Path::new("/"), "hw").live());
        assert!(Reader::new(Path::new("/usr/.."), "hw").live());
    }
}
