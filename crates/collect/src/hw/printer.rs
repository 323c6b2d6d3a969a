//! The `printer/<name>` items: queues CUPS knows, from `etc/cups/printers.conf` (the
//! `<Printer name>` and `<DefaultPrinter name>` blocks): `make_model`, `uri` (the device URI
//! with any `user:password@` removed, as CUPS itself hides it), `default` and `shared`
//! (`true`/`false`), and `info` and `location` when set.
//!
//! The file is readable by root only: an agent running as another user gets a warning. The
//! queue's state, its times and messages are left out; they change with every job.

use invsync_proto::{Attrs, Items};

use crate::read::Reader;

/// One queue of `printers.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Printer<'a> {
    pub name: &'a str,
    pub default: bool,
    pub make_model: Option<&'a str>,
    pub uri: Option<&'a str>,
    pub shared: Option<bool>,
    pub info: Option<&'a str>,
    pub location: Option<&'a str>,
}

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    let Some(text) = r.read_optional("etc/cups/printers.conf") else {
        return;
    };
    for p in parse_printers_conf(&text) {
        let mut attrs = Attrs::new();
        attrs.insert("default".into(), p.default.to_string());
        if let Some(s) = p.shared {
            attrs.insert("shared".into(), s.to_string());
        }
        for (attr, v) in [
            ("make_model", p.make_model),
            ("info", p.info),
            ("location", p.location),
        ] {
            if let Some(v) = v {
                attrs.insert(attr.into(), v.to_string());
            }
        }
        if let Some(uri) = p.uri {
            attrs.insert("uri".into(), strip_credentials(uri));
        }
        items.insert(format!("printer/{}", p.name), attrs);
    }
}

/// Parses `printers.conf`: blocks `<Printer name>` or `<DefaultPrinter name>` up to
/// `</Printer>` or `</DefaultPrinter>`, holding `Key value` lines. Lines outside a block,
/// comments and unknown keys are skipped; a queue named twice keeps its first block, as
/// cupsd refuses the second.
pub fn parse_printers_conf(text: &str) -> Vec<Printer<'_>> {
    let mut out: Vec<Printer<'_>> = Vec::new();
    let mut current: Option<Printer<'_>> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(tag) = line.strip_prefix('<').and_then(|l| l.strip_suffix('>')) {
            if tag.starts_with('/') {
                if let Some(p) = current.take()
                    && !out.iter().any(|o| o.name == p.name)
                {
                    out.push(p);
                }
                continue;
            }
            let (kind, name) = tag.split_once(char::is_whitespace).unwrap_or((tag, ""));
            let name = name.trim();
            current = (matches!(kind, "Printer" | "DefaultPrinter")
                && !name.is_empty()
                && !name.contains(|c: char| {
                    c.is_whitespace() || c.is_control() || matches!(c, '/' | '\\' | '#')
                }))
            .then(|| Printer {
                name,
                default: kind == "DefaultPrinter",
                ..Printer::default()
            });
            continue;
        }
        let Some(p) = current.as_mut() else {
            continue;
        };
        let (key, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let v = v.trim();
        let v = (!v.is_empty()).then_some(v);
        match key {
            "MakeModel" => p.make_model = v,
            "DeviceURI" => p.uri = v,
            "Info" => p.info = v,
            "Location" => p.location = v,
            "Shared" => {
                p.shared =
                    v.map(|v| matches!(v.to_ascii_lowercase().as_str(), "yes" | "on" | "true"))
            }
            _ => {}
        }
    }
    out
}

/// A URI without the `user:password@` of its authority (`smb://u:p@srv/q` → `smb://srv/q`).
/// The authority ends at the first `/`, `?` or `#` after `//`, as in RFC 3986 and CUPS's
/// `httpSeparateURI`; a URI without `//` (`hp:/usb/...`) has none.
pub fn strip_credentials(uri: &str) -> String {
    let Some(start) = uri.find("://").map(|i| i + 3) else {
        return uri.to_string();
    };
    let rest = &uri[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{}{}", &uri[..start], &rest[at + 1..]),
        None => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf() {
        let text = "# Printer configuration file for CUPS v2.4.2\nNextPrinterId 4\n\
            <DefaultPrinter Office>\nPrinterId 1\nInfo Office laser\nMakeModel HP LaserJet Pro M404\n\
            DeviceURI ipp://printer.lan/ipp/print\nState Idle\nShared Yes\n</DefaultPrinter>\n\
            <Printer Label>\nDeviceURI smb://jo:s3cret@WORKGROUP/srv/label\nShared No\n</Printer>\n\
            <Printer Office>\nInfo duplicate\n</Printer>\n\
            <Class all>\nPrinter Office\n</Class>\n\
            <Printer>\n</Printer>\nStray line\n<Printer Unclosed>\nInfo x\n";
        let p = parse_printers_conf(text);
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0],
            Printer {
                name: "Office",
                default: true,
                make_model: Some("HP LaserJet Pro M404"),
                uri: Some("ipp://printer.lan/ipp/print"),
                shared: Some(true),
                info: Some("Office laser"),
                location: None,
            }
        );
        assert_eq!(p[1].name, "Label");
        assert_eq!(p[1].shared, Some(false));
        assert!(!p[1].default);
        assert!(parse_printers_conf("").is_empty());
    }

    #[test]
    fn credentials() {
        assert_eq!(
            strip_credentials("smb://jo:s3cret@WORKGROUP/srv/label"),
            "smb://WORKGROUP/srv/label"
        );
        assert_eq!(
            strip_credentials("ipps://a@b:x@host:631/ipp/print"),
            "ipps://host:631/ipp/print"
        );
        assert_eq!(
            strip_credentials("ipp://host/printers/a@b"),
            "ipp://host/printers/a@b"
        );
        assert_eq!(
            strip_credentials("hp:/usb/LaserJet?serial=1"),
            "hp:/usb/LaserJet?serial=1"
        );
        assert_eq!(strip_credentials("lpd://u@h"), "lpd://h");
    }
}
