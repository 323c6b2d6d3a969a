//! Flatpak applications of the system installation (`var/lib/flatpak`), as items
//! `flatpak/<id>/<arch>` with `version`, `branch` and `origin`.
//!
//! Flatpak deploys an application at `var/lib/flatpak/app/<id>/<arch>/<branch>/<commit>` and
//! points `.../<branch>/active` at the deployed commit; an application with an `active` link is
//! installed. Its deploy data, `active/deploy`, is a GVariant of type `(ssasta{sv})` whose first
//! member is the origin (the remote it was installed from); a GVariant tuple puts its first
//! variable-sized member at offset 0, NUL-terminated, so the origin is the bytes before the
//! first NUL, without a GVariant parser. The version is the first `<release version="…">` of
//! the application's AppStream metainfo (`active/files/share/metainfo/<id>.metainfo.xml`, else
//! the older `appdata` names), found by a small scan for that element and attribute rather
//! than an XML parser; releases are listed newest first by the AppStream specification.
//!
//! One application installed from two branches (`stable` and `beta`) gives one item per
//! branch, `flatpak/<id>/<arch>/<branch>`; a single branch keeps the key without it. Runtimes
//! (`var/lib/flatpak/runtime`) are not inventoried: they are what applications run on, like
//! shared libraries, not what an administrator installed. Per-user installations under home
//! directories are not read either.

use std::collections::BTreeMap;

use invsync_proto::{Attrs, Items};

use super::{add_each, package_attrs};
use crate::read::Reader;

pub(crate) const APPS: &str = "var/lib/flatpak/app";

/// How much of a deploy file is looked at for the origin; remote names are short.
const MAX_ORIGIN: usize = 256;

/// Adds the installed applications; returns whether a system installation is there.
pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) -> bool {
    let Some(ids) = r.list_dir(APPS) else {
        return false;
    };
    for id in ids {
        let mut by_arch: BTreeMap<String, Vec<(String, Attrs)>> = BTreeMap::new();
        let app = format!("{APPS}/{id}");
        // `current` links to the default arch and branch; the arch directories are the rest.
        let Some(arches) = r.list_dir(&app) else {
            continue;
        };
        for arch in arches.into_iter().filter(|a| a != "current") {
            let Some(branches) = r.list_dir(&format!("{app}/{arch}")) else {
                continue;
            };
            for branch in branches {
                let active = format!("{app}/{arch}/{branch}/active");
                if !r.is_dir(&active) {
                    continue;
                }
                let mut attrs = package_attrs("flatpak", &id, "", &arch);
                if let Some(v) = version(r, &active, &id) {
                    attrs.insert("version".into(), v);
                }
                attrs.insert("branch".into(), branch.clone());
                let deploy = read_bytes(r, &format!("{active}/deploy"));
                if let Some(origin) = deploy.as_deref().and_then(parse_deploy_origin) {
                    attrs.insert("origin".into(), origin.to_string());
                }
                by_arch
                    .entry(arch.clone())
                    .or_default()
                    .push((branch, attrs));
            }
        }
        for (arch, copies) in by_arch {
            add_each(items, &format!("flatpak/{id}/{arch}"), copies);
        }
    }
    true
}

/// The version from the first metainfo file there is.
fn version(r: &mut Reader<'_>, active: &str, id: &str) -> Option<String> {
    let share = format!("{active}/files/share");
    [
        format!("{share}/metainfo/{id}.metainfo.xml"),
        format!("{share}/metainfo/{id}.appdata.xml"),
        format!("{share}/appdata/{id}.appdata.xml"),
    ]
    .iter()
    .find_map(|p| r.read_optional(p))
    .and_then(|text| parse_metainfo_version(&text).map(str::to_string))
}

/// Reads a binary file; a missing one is silent, another failure a warning.
fn read_bytes(r: &mut Reader<'_>, rel: &str) -> Option<Vec<u8>> {
    match std::fs::read(r.path(rel)) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            r.warn(&format!(
                "cannot read {rel}: {}",
                crate::read::io_message(&e)
            ));
            None
        }
    }
}

/// The origin (remote name) at the start of a flatpak deploy file: the bytes before the first
/// NUL, when they are a plausible remote name (printable ASCII without spaces or slashes, at
/// most 256 bytes). Anything else is `None`.
pub fn parse_deploy_origin(deploy: &[u8]) -> Option<&str> {
    let head = &deploy[..deploy.len().min(MAX_ORIGIN + 1)];
    let end = head.iter().position(|&b| b == 0)?;
    let name = &head[..end];
    let ok = !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'/' && b != b'\\');
    if !ok {
        return None;
    }
    std::str::from_utf8(name).ok()
}

/// The `version` attribute of the first `<release>` element of an AppStream metainfo file,
/// entity-free (a version with `&` in it is refused rather than half-decoded). Comments are
/// skipped so that a commented-out release does not count.
pub fn parse_metainfo_version(xml: &str) -> Option<&str> {
    let mut rest = xml;
    loop {
        let lt = rest.find('<')?;
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = &after[after.find("-->")? + 3..];
            continue;
        }
        let tag_end = rest.find('>')?;
        let tag = &rest[1..tag_end];
        rest = &rest[tag_end + 1..];
        let Some(attrs) = tag.strip_prefix("release") else {
            continue;
        };
        // `<releases>` is the list, `<release ...>` an element of it.
        if !attrs.starts_with(|c: char| c.is_ascii_whitespace()) {
            continue;
        }
        return attribute(attrs, "version").filter(|v| !v.is_empty() && !v.contains('&'));
    }
}

/// The value of `name="…"` or `name='…'` in a start tag's attributes.
fn attribute<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = attrs;
    loop {
        rest = rest.trim_start();
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let body = &after[1..];
        let end = body.find(quote)?;
        if key == name {
            return Some(body[..end].trim());
        }
        rest = &body[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_origin() {
        assert_eq!(
            parse_deploy_origin(b"flathub\0b2a9c3d4e5\0\0\0more"),
            Some("flathub")
        );
        assert_eq!(parse_deploy_origin(b"fedora\0"), Some("fedora"));
        assert_eq!(parse_deploy_origin(b""), None);
        assert_eq!(parse_deploy_origin(b"\0flathub"), None);
        assert_eq!(parse_deploy_origin(b"no terminator"), None);
        assert_eq!(parse_deploy_origin(b"bad name\0"), None);
        assert_eq!(parse_deploy_origin(b"a/b\0"), None);
        assert_eq!(parse_deploy_origin(&[0xff, 0xfe, 0]), None);
        let long = [b'a'; 300];
        assert_eq!(parse_deploy_origin(&long), None);
    }

    #[test]
    fn metainfo_version() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<component type="desktop-application">
  <id>org.gnome.Calculator</id>
  <!-- <release version="99.0" date="2030-01-01"/> -->
  <releases>
    <release version="46.1" date="2024-04-20">
      <description><p>Fixes</p></description>
    </release>
    <release version='46.0' date="2024-03-16"/>
  </releases>
</component>"#;
        assert_eq!(parse_metainfo_version(xml), Some("46.1"));
        assert_eq!(
            parse_metainfo_version(
                r#"<releases><release date="2024-01-01" version = '1.2' /></releases>"#
            ),
            Some("1.2")
        );
        assert_eq!(parse_metainfo_version("<releases></releases>"), None);
        assert_eq!(parse_metainfo_version(r#"<release date="x"/>"#), None);
        assert_eq!(
            parse_metainfo_version(r#"<release version="1&amp;2"/>"#),
            None
        );
        assert_eq!(
            parse_metainfo_version(r#"<release version="unterminated"#),
            None
        );
        assert_eq!(
            parse_metainfo_version("<!-- never closed <release version=\"1\"/>"),
            None
        );
        assert_eq!(parse_metainfo_version(""), None);
    }

    #[test]
    fn nothing_there_is_silent() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Reader::new(dir.path(), "sw");
        let mut items = Items::new();
        assert!(!collect(&mut r, &mut items));
        assert!(items.is_empty());
        assert!(r.into_warnings().is_empty());
    }
}
