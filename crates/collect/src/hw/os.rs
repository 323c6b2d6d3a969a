//! The `os` item: distribution from `etc/os-release` (else `usr/lib/os-release`), kernel
//! release from `proc/sys/kernel/osrelease` (else the third word of `proc/version`) and
//! machine architecture from `proc/sys/kernel/arch`.
//!
//! Kernels before 6.1 have no `kernel/arch`; on the live system the architecture this agent
//! was built for stands in, spelt as `uname -m` spells it. On a fake root without the file
//! the architecture is left out rather than guessed from the host running the collector.

use invsync_proto::{Attrs, Items};

use crate::read::{Reader, value};

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    let mut attrs = Attrs::new();
    let release = r
        .read_optional("etc/os-release")
        .or_else(|| r.read_optional("usr/lib/os-release"));
    match &release {
        Some(text) => {
            let fields = parse_os_release(text);
            let get = |k: &str| {
                fields
                    .iter()
                    .rev()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.as_str())
                    .and_then(value)
            };
            for (attr, keys) in [
                ("name", &["NAME"][..]),
                ("version", &["VERSION_ID", "VERSION"][..]),
                ("id", &["ID"][..]),
                ("pretty_name", &["PRETTY_NAME"][..]),
                ("codename", &["VERSION_CODENAME"][..]),
            ] {
                if let Some(v) = keys.iter().find_map(|k| get(k)) {
                    attrs.insert(attr.into(), v.to_string());
                }
            }
        }
        None => r.warn("no os-release (looked for etc/os-release and usr/lib/os-release)"),
    }
    let kernel = match r
        .read_optional("proc/sys/kernel/osrelease")
        .as_deref()
        .and_then(value)
    {
        Some(k) => Some(k.to_string()),
        None => r
            .read("proc/version")
            .as_deref()
            .and_then(kernel_from_version)
            .map(str::to_string),
    };
    if let Some(k) = kernel {
        attrs.insert("kernel".into(), k);
    }
    let arch = match r
        .read_optional("proc/sys/kernel/arch")
        .as_deref()
        .and_then(value)
    {
        Some(a) => Some(a.to_string()),
        None if r.live() => Some(uname_arch(std::env::consts::ARCH).to_string()),
        None => None,
    };
    if let Some(a) = arch {
        attrs.insert("arch".into(), a);
    }
    if !attrs.is_empty() {
        items.insert("os".into(), attrs);
    }
}

/// Parses os-release (a shell-compatible `KEY=value` list) into (key, unquoted value) in file
/// order. Lines that are not assignments are skipped.
pub fn parse_os_release(text: &str) -> Vec<(&str, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let (key, raw) = line.split_once('=')?;
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return None;
            }
            Some((key, unquote(raw)))
        })
        .collect()
}

/// Removes shell quoting: double quotes with backslash escapes, or single quotes verbatim.
fn unquote(raw: &str) -> String {
    if raw.len() >= 2 && raw.starts_with('\'') && raw.ends_with('\'') {
        return raw[1..raw.len() - 1].to_string();
    }
    if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') {
        let inner = &raw[1..raw.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some(n @ ('"' | '\\' | '$' | '`')) => out.push(n),
                    Some(n) => {
                        out.push('\\');
                        out.push(n);
                    }
                    None => out.push('\\'),
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    raw.to_string()
}

/// The kernel release in `proc/version`: `Linux version 6.1.0-18-amd64 (…) …` → the third word.
pub fn kernel_from_version(text: &str) -> Option<&str> {
    text.split_ascii_whitespace().nth(2)
}

/// Rust's name for an architecture as `uname -m` prints it.
pub fn uname_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86" => "i686",
        "arm" => "armv7l",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc" => "ppc",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME='Debian GNU/Linux'\nVERSION_ID=\"12\"\n\
                    # comment=1\nID=debian\nHOME_URL=\"https://x/\\\"q\\\"\\n\"\n=broken\nno equals\nBAD KEY=1\n";
        let f = parse_os_release(text);
        assert_eq!(
            f,
            vec![
                ("PRETTY_NAME", "Debian GNU/Linux 12 (bookworm)".to_string()),
                ("NAME", "Debian GNU/Linux".to_string()),
                ("VERSION_ID", "12".to_string()),
                ("ID", "debian".to_string()),
                ("HOME_URL", "https://x/\"q\"\\n".to_string()),
            ]
        );
        assert!(parse_os_release("").is_empty());
        assert_eq!(
            parse_os_release("A=\"unterminated\n"),
            vec![("A", "\"unterminated".to_string())]
        );
        assert_eq!(
            parse_os_release("A=\"\\\"\n"),
            vec![("A", "\\".to_string())]
        );
        assert_eq!(
            parse_os_release("A=\"x\\\"\n"),
            vec![("A", "x\\".to_string())]
        );
        assert_eq!(
            parse_os_release("\u{fffd}=1\nB=\u{fffd}\n"),
            vec![("B", "\u{fffd}".to_string())]
        );
    }

    #[test]
    fn kernel_version() {
        let v = "Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0) #1 SMP";
        assert_eq!(kernel_from_version(v), Some("6.1.0-18-amd64"));
        assert_eq!(kernel_from_version("Linux version"), None);
        assert_eq!(kernel_from_version(""), None);
    }

    #[test]
    fn arch_names() {
        assert_eq!(uname_arch("x86_64"), "x86_64");
        assert_eq!(uname_arch("aarch64"), "aarch64");
        assert_eq!(uname_arch("x86"), "i686");
        assert_eq!(uname_arch("riscv64"), "riscv64");
    }
}
