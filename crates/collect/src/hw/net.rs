//! The `net` item: the machine's name and how it reaches the network. `hostname` is the
//! kernel's (`proc/sys/kernel/hostname`, else `etc/hostname`); `domain` is the resolver's
//! (`etc/resolv.conf`: the last `domain` or `search` line wins, as in the resolver, and a
//! `search` gives its first domain), else what follows the host name's first dot;
//! `default_gateway` and `default_gateway_v6` are the gateways of the default routes with
//! the lowest metric (`proc/net/route`, `proc/net/ipv6_route`; several of equal metric
//! sorted and comma-separated); `dns_servers` are the `nameserver` lines, sorted by address.
//!
//! Two attributes rather than one mixed list for the gateways, because a query asks for one
//! family or the other. When the only name server is systemd-resolved's stub (`127.0.0.53`),
//! the servers it forwards to (`run/systemd/resolve/resolv.conf`) are reported instead, as
//! those are the ones an administrator configured. `etc/resolv.conf` is usually a link to
//! `/run/...`: it is followed inside the root, never to the host's file.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use invsync_proto::{Attrs, Items};

use crate::read::Reader;

const STUB: &str = "127.0.0.53";

/// What `etc/resolv.conf` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolver {
    /// Sorted by address (unparsable ones last, by text), without duplicates.
    pub nameservers: Vec<String>,
    pub domain: Option<String>,
}

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    let mut attrs = Attrs::new();
    let hostname = crate::read_hostname(r);
    let conf = r.resolve_in_root("etc/resolv.conf");
    let mut resolver = r
        .read_optional(&conf)
        .map(|t| parse_resolv_conf(&t))
        .unwrap_or_default();
    if resolver.nameservers == [STUB]
        && let Some(upstream) = r.read_optional("run/systemd/resolve/resolv.conf")
    {
        resolver.nameservers = parse_resolv_conf(&upstream).nameservers;
    }
    let domain = resolver.domain.or_else(|| {
        hostname
            .as_deref()
            .and_then(|h| h.split_once('.'))
            .map(|(_, d)| d.trim_end_matches('.').to_string())
            .filter(|d| !d.is_empty())
    });
    if let Some(h) = hostname {
        attrs.insert("hostname".into(), h);
    }
    if let Some(d) = domain {
        attrs.insert("domain".into(), d);
    }
    if !resolver.nameservers.is_empty() {
        attrs.insert("dns_servers".into(), resolver.nameservers.join(","));
    }
    if let Some(t) = r.read_optional("proc/net/route") {
        let gw = default_gateways_v4(&t);
        if !gw.is_empty() {
            attrs.insert("default_gateway".into(), join(&gw));
        }
    }
    if let Some(t) = r.read_optional("proc/net/ipv6_route") {
        let gw = default_gateways_v6(&t);
        if !gw.is_empty() {
            attrs.insert("default_gateway_v6".into(), join(&gw));
        }
    }
    if !attrs.is_empty() {
        items.insert("net".into(), attrs);
    }
}

fn join<T: ToString>(list: &[T]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses `resolv.conf`: `nameserver` lines, and the domain of the last `domain` or `search`
/// line (a trailing dot dropped; `search .`, which systemd-resolved writes, is no domain).
pub fn parse_resolv_conf(text: &str) -> Resolver {
    let mut servers: Vec<String> = Vec::new();
    let mut domain = None;
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(s) = words.next() {
                    servers.push(s.to_string());
                }
            }
            Some("domain" | "search") => {
                domain = words
                    .next()
                    .map(|d| d.trim_end_matches('.'))
                    .filter(|d| !d.is_empty())
                    .map(str::to_string);
            }
            _ => {}
        }
    }
    servers.sort_by(|a, b| {
        let key = |s: &str| s.parse::<IpAddr>().map_err(|_| s.to_string());
        key(a).cmp(&key(b))
    });
    servers.dedup();
    Resolver {
        nameservers: servers,
        domain,
    }
}

/// The gateways of the IPv4 default routes with the lowest metric, sorted. Each line of
/// `proc/net/route` is `Iface Destination Gateway Flags RefCnt Use Metric Mask ...`, the
/// addresses in hexadecimal in the byte order of the machine that wrote them (this reads
/// them in the order of the machine reading, which is the same on the live system; fixtures
/// come from little-endian machines).
pub fn default_gateways_v4(text: &str) -> Vec<Ipv4Addr> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    let routes = text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 8 {
            return None;
        }
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let (dest, gw, flags, metric, mask) =
            (hex(f[1])?, hex(f[2])?, hex(f[3])?, f[6], hex(f[7])?);
        let metric: u32 = metric.parse().ok()?;
        (dest == 0
            && mask == 0
            && gw != 0
            && flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY)
            .then(|| (metric, Ipv4Addr::from(gw.to_ne_bytes())))
    });
    lowest_metric(routes)
}

/// The gateways of the IPv6 default routes with the lowest metric, sorted. Each line of
/// `proc/net/ipv6_route` is `dest plen src plen nexthop metric refcnt use flags iface`, in
/// hexadecimal, addresses in network order. The kernel's own unreachable default route on
/// `lo` has no gateway and the reject flag, and is not a gateway.
pub fn default_gateways_v6(text: &str) -> Vec<Ipv6Addr> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    const RTF_REJECT: u32 = 0x200;
    let routes = text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 10 || f[0].len() != 32 || f[4].len() != 32 {
            return None;
        }
        let dest = u128::from_str_radix(f[0], 16).ok()?;
        let plen = u8::from_str_radix(f[1], 16).ok()?;
        let gw = u128::from_str_radix(f[4], 16).ok()?;
        let metric = u32::from_str_radix(f[5], 16).ok()?;
        let flags = u32::from_str_radix(f[8], 16).ok()?;
        (dest == 0
            && plen == 0
            && gw != 0
            && flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY
            && flags & RTF_REJECT == 0)
            .then(|| (metric, Ipv6Addr::from(gw)))
    });
    lowest_metric(routes)
}

fn lowest_metric<T: Ord + Copy>(routes: impl Iterator<Item = (u32, T)>) -> Vec<T> {
    let routes: Vec<(u32, T)> = routes.collect();
    let Some(min) = routes.iter().map(|(m, _)| *m).min() else {
        return Vec::new();
    };
    let mut out: Vec<T> = routes
        .into_iter()
        .filter(|(m, _)| *m == min)
        .map(|(_, a)| a)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf() {
        let r = parse_resolv_conf(
            "# generated\nnameserver 9.9.9.9\nnameserver 10.0.0.2\nnameserver 2001:db8::53\n\
             nameserver 10.0.0.2\ndomain old.example\nsearch corp.example.com. example.com\n\
             options edns0\nnameserver\n",
        );
        assert_eq!(r.nameservers, ["9.9.9.9", "10.0.0.2", "2001:db8::53"]);
        assert_eq!(r.domain.as_deref(), Some("corp.example.com"));
        let r = parse_resolv_conf("nameserver 127.0.0.53\nsearch .\n");
        assert_eq!(r.nameservers, [STUB]);
        assert_eq!(r.domain, None);
        assert_eq!(parse_resolv_conf(""), Resolver::default());
    }

    #[test]
    fn route_v4() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            wlan0\t00000000\t0100000A\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
            eth0\t0002A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
            ppp0\t00000000\t00000000\t0001\t0\t0\t50\t00000000\t0\t0\t0\n";
        let gw = default_gateways_v4(text);
        if cfg!(target_endian = "little") {
            assert_eq!(gw, [Ipv4Addr::new(192, 168, 2, 1)]);
        }
        assert!(default_gateways_v4("").is_empty());
    }

    #[test]
    fn route_v6() {
        let text = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00450003 eth0\n\
            20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n\
            00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
        assert_eq!(
            default_gateways_v6(text),
            ["fe80::1".parse::<Ipv6Addr>().unwrap()]
        );
    }

    #[test]
    fn stub_is_replaced_and_links_stay_in_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("run/systemd/resolve")).unwrap();
        std::fs::write(root.join("etc/hostname"), "web1.lan.example\n").unwrap();
        std::fs::write(
            root.join("run/systemd/resolve/stub-resolv.conf"),
            "nameserver 127.0.0.53\nsearch .\n",
        )
        .unwrap();
        std::fs::write(
            root.join("run/systemd/resolve/resolv.conf"),
            "nameserver 192.168.1.1\nnameserver 1.1.1.1\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "/run/systemd/resolve/stub-resolv.conf",
            root.join("etc/resolv.conf"),
        )
        .unwrap();
        let mut r = Reader::new(root, "hw");
        let mut items = Items::new();
        collect(&mut r, &mut items);
        let net = &items["net"];
        assert_eq!(net["hostname"], "web1.lan.example");
        assert_eq!(net["domain"], "lan.example");
        assert_eq!(net["dns_servers"], "1.1.1.1,192.168.1.1");
        assert!(!net.contains_key("default_gateway"));
        assert!(r.into_warnings().is_empty());
    }
}
