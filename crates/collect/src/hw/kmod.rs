//! The `kmod/<name>` items: loaded kernel modules from `proc/modules`, with their `size` in
//! bytes and the modules using them (`used_by`, sorted and comma-separated, empty when none).
//!
//! The reference count, the load address and the state are left out: the count moves with
//! every open file or socket, the address with every boot (and reads as zero without
//! privileges), and `Loading`/`Unloading` last milliseconds. A kernel without module support
//! has no `proc/modules`, which is silent.

use invsync_proto::{Attrs, Items};

use crate::read::Reader;

/// One line of `proc/modules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module<'a> {
    pub name: &'a str,
    pub size: u64,
    /// Sorted, without duplicates.
    pub used_by: Vec<&'a str>,
}

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    let Some(text) = r.read_optional("proc/modules") else {
        return;
    };
    for m in parse_modules(&text) {
        let mut attrs = Attrs::new();
        attrs.insert("size".into(), m.size.to_string());
        attrs.insert("used_by".into(), m.used_by.join(","));
        items.insert(format!("kmod/{}", m.name), attrs);
    }
}

/// Parses `proc/modules`: `name size refcount users state address [taints]`, where users is
/// `-` or a list of names each followed by a comma (`[permanent]` is not a module name and
/// is left out).
pub fn parse_modules(text: &str) -> Vec<Module<'_>> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let name = f.next().filter(|n| !n.contains('/'))?;
            let size = f.next()?.parse().ok()?;
            let _refcount = f.next()?;
            let mut used_by: Vec<&str> = f
                .next()?
                .split(',')
                .filter(|u| !u.is_empty() && *u != "-" && !u.starts_with('['))
                .collect();
            used_by.sort_unstable();
            used_by.dedup();
            Some(Module {
                name,
                size,
                used_by,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules() {
        let text = "nf_tables 376832 1 nft_compat, Live 0x0000000000000000\n\
                    x_tables 61440 3 xt_conntrack,nft_compat,ip_tables, Live 0xffffffffc0a10000\n\
                    loop 40960 - - Live 0x0000000000000000\n\
                    snd 131072 2 [permanent], Live 0x0\n\
                    vboxdrv 663552 0 - Live 0x0000000000000000 (OE)\n\
                    garbage\n\
                    bad notasize 0 - Live 0x0\n";
        let m = parse_modules(text);
        assert_eq!(m.len(), 5);
        assert_eq!(
            m[1],
            Module {
                name: "x_tables",
                size: 61440,
                used_by: vec!["ip_tables", "nft_compat", "xt_conntrack"]
            }
        );
        assert!(m[2].used_by.is_empty());
        assert!(m[3].used_by.is_empty());
        assert_eq!(m[4].name, "vboxdrv");
        assert!(parse_modules("").is_empty());
    }
}
