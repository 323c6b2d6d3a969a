//! The `nic/<name>` items: network interfaces from `sys/class/net/<name>/` (`address`,
//! `speed`, `mtu`, the `device` link and its driver), physical and virtual alike but not
//! the loopback `lo`; on the live system (root `/`) also their IPv4 and IPv6 addresses from
//! `getifaddrs`, in CIDR form, sorted and comma-separated.
//!
//! The kernel refuses to tell the speed of a virtual or disconnected interface (`EINVAL` or
//! `-1`); the attribute is then left out without a warning, as that is normal. IPv6
//! temporary ("privacy") addresses are left out because they rotate daily and would make an
//! idle machine report a change every day; they are recognised by the `IFA_F_TEMPORARY`
//! flag in `proc/net/if_inet6`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use invsync_proto::{Attrs, Items};

use crate::read::{Reader, value};

const DIR: &str = "sys/class/net";

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    let Some(names) = r.list_dir(DIR) else {
        r.warn(&format!(
            "cannot read {DIR}: No such file or directory; network interfaces are not reported"
        ));
        return;
    };
    let addresses = if r.live() {
        let temporary = r
            .read_quiet("proc/net/if_inet6")
            .map(|t| parse_temporary_ipv6(&t))
            .unwrap_or_default();
        match live_addresses() {
            Ok(list) => Some(group_addresses(&list, &temporary)),
            Err(e) => {
                r.warn(&format!(
                    "cannot list interface addresses: {}",
                    crate::read::io_message(&e)
                ));
                None
            }
        }
    } else {
        None
    };
    // `bonding_masters` and similar control files sit beside the interface directories.
    for name in names.iter().filter(|n| *n != "lo") {
        let dir = format!("{DIR}/{name}");
        if !r.is_dir(&dir) {
            continue;
        }
        let mut attrs = Attrs::new();
        if let Some(mac) = r
            .read_optional(&format!("{dir}/address"))
            .as_deref()
            .and_then(value)
        {
            attrs.insert("mac".into(), mac.to_string());
        }
        if let Some(speed) = r
            .read_quiet(&format!("{dir}/speed"))
            .and_then(|t| parse_speed(&t))
        {
            attrs.insert("speed_mbps".into(), speed.to_string());
        }
        if let Some(mtu) = r
            .read_optional(&format!("{dir}/mtu"))
            .and_then(|t| t.trim().parse::<u32>().ok())
        {
            attrs.insert("mtu".into(), mtu.to_string());
        }
        let physical = r.exists(&format!("{dir}/device"));
        attrs.insert("virtual".into(), (!physical).to_string());
        if physical
            && let Ok(target) = std::fs::read_link(r.path(&format!("{dir}/device/driver")))
            && let Some(driver) = target.file_name()
        {
            attrs.insert("driver".into(), driver.to_string_lossy().into_owned());
        }
        if let Some(list) = addresses
            .as_ref()
            .and_then(|a| a.get(name.as_str()))
            .filter(|l| !l.is_empty())
        {
            attrs.insert("addresses".into(), list.join(","));
        }
        items.insert(format!("nic/{name}"), attrs);
    }
}

/// `speed` in Mbit/s; unknown speeds are `-1` or unreadable and give `None`.
pub fn parse_speed(text: &str) -> Option<u64> {
    let v: i64 = text.trim().parse().ok()?;
    u64::try_from(v).ok().filter(|v| *v > 0)
}

/// The prefix length of a netmask (the number of leading one bits; masks are contiguous).
pub fn prefix_len(mask: IpAddr) -> u32 {
    match mask {
        IpAddr::V4(m) => u32::from(m).count_ones(),
        IpAddr::V6(m) => u128::from(m).count_ones(),
    }
}

/// The IPv6 addresses flagged `IFA_F_TEMPORARY` in `proc/net/if_inet6`, with their interface.
/// Each line is: address (32 hex digits), index, prefix length, scope, flags, name.
pub fn parse_temporary_ipv6(text: &str) -> Vec<(String, Ipv6Addr)> {
    const IFA_F_TEMPORARY: u32 = 0x01;
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            let [addr, _, _, _, flags, name] = f[..] else {
                return None;
            };
            let flags = u32::from_str_radix(flags, 16).ok()?;
            if flags & IFA_F_TEMPORARY == 0 || addr.len() != 32 {
                return None;
            }
            let bits = u128::from_str_radix(addr, 16).ok()?;
            Some((name.to_string(), Ipv6Addr::from(bits)))
        })
        .collect()
}

/// Groups (interface, address, prefix) by interface as sorted, de-duplicated CIDR strings,
/// leaving out temporary IPv6 addresses. Alias labels (`eth0:1`) count for their interface.
pub fn group_addresses(
    list: &[(String, IpAddr, u32)],
    temporary: &[(String, Ipv6Addr)],
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (label, ip, prefix) in list {
        let name = label.split_once(':').map_or(label.as_str(), |(n, _)| n);
        if let IpAddr::V6(v6) = ip
            && temporary.iter().any(|(n, t)| n == name && t == v6)
        {
            continue;
        }
        out.entry(name.to_string())
            .or_default()
            .push(format!("{ip}/{prefix}"));
    }
    for v in out.values_mut() {
        v.sort_unstable();
        v.dedup();
    }
    out
}

/// The addresses of the running system's interfaces: (label, address, prefix length).
fn live_addresses() -> std::io::Result<Vec<(String, IpAddr, u32)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list returned by getifaddrs, valid until freed; its
        // name is a NUL-terminated string and its addresses point to sockaddrs of the family
        // they declare.
        unsafe {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .into_owned();
            let family = i32::from((*ifa.ifa_addr).sa_family);
            let (ip, mask) = match family {
                libc::AF_INET => {
                    let a = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    let ip = IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)));
                    let mask = (!ifa.ifa_netmask.is_null()).then(|| {
                        let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in);
                        IpAddr::V4(Ipv4Addr::from(u32::from_be(m.sin_addr.s_addr)))
                    });
                    (ip, mask)
                }
                libc::AF_INET6 => {
                    let a = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    let ip = IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr));
                    let mask = (!ifa.ifa_netmask.is_null()).then(|| {
                        let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in6);
                        IpAddr::V6(Ipv6Addr::from(m.sin6_addr.s6_addr))
                    });
                    (ip, mask)
                }
                _ => continue,
            };
            let prefix = mask.map_or(if ip.is_ipv4() { 32 } else { 128 }, prefix_len);
            out.push((name, ip, prefix));
        }
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed() {
        assert_eq!(parse_speed("1000\n"), Some(1000));
        assert_eq!(parse_speed("-1\n"), None);
        assert_eq!(parse_speed("0"), None);
        assert_eq!(parse_speed(""), None);
        assert_eq!(parse_speed("99999999999999999999999"), None);
        assert_eq!(parse_speed("\u{fffd}"), None);
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix_len("255.255.255.0".parse().unwrap()), 24);
        assert_eq!(prefix_len("0.0.0.0".parse().unwrap()), 0);
        assert_eq!(prefix_len("ffff:ffff:ffff:ffff::".parse().unwrap()), 64);
    }

    #[test]
    fn temporary_addresses() {
        let text = "20010db8000000000000000000000001 02 40 00 80 eth0\n\
                    20010db80000000012345678abcdef01 02 40 00 01 eth0\n\
                    fe80000000000000000000000000beef 02 40 20 80 eth0\n\
                    garbage\n\
                    zz010db80000000012345678abcdef01 02 40 00 01 eth0\n";
        let t = parse_temporary_ipv6(text);
        assert_eq!(
            t,
            vec![(
                "eth0".to_string(),
                "2001:db8::1234:5678:abcd:ef01".parse().unwrap()
            )]
        );
        assert!(parse_temporary_ipv6("").is_empty());
    }

    #[test]
    fn grouping() {
        let list = vec![
            ("eth0".to_string(), "192.168.1.20".parse().unwrap(), 24),
            (
                "eth0".to_string(),
                "2001:db8::1234:5678:abcd:ef01".parse().unwrap(),
                64,
            ),
            ("eth0".to_string(), "fe80::beef".parse().unwrap(), 64),
            ("eth0:1".to_string(), "10.0.0.1".parse().unwrap(), 8),
            ("eth0".to_string(), "192.168.1.20".parse().unwrap(), 24),
            ("lo".to_string(), "127.0.0.1".parse().unwrap(), 8),
        ];
        let temporary = vec![(
            "eth0".to_string(),
            "2001:db8::1234:5678:abcd:ef01".parse().unwrap(),
        )];
        let g = group_addresses(&list, &temporary);
        assert_eq!(
            g["eth0"],
            vec!["10.0.0.1/8", "192.168.1.20/24", "fe80::beef/64"]
        );
        assert_eq!(g["lo"], vec!["127.0.0.1/8"]);
    }

    #[test]
    fn control_files_and_loopback_are_not_interfaces() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join(DIR);
        std::fs::create_dir_all(net.join("lo")).unwrap();
        std::fs::create_dir_all(net.join("bond0")).unwrap();
        std::fs::write(net.join("bonding_masters"), "bond0\n").unwrap();
        std::fs::write(net.join("bond0/address"), "\n").unwrap();
        std::fs::write(net.join("bond0/mtu"), "9000\n").unwrap();
        std::fs::write(net.join("bond0/speed"), "-1\n").unwrap();
        let mut r = Reader::new(dir.path(), "hw");
        let mut items = Items::new();
        collect(&mut r, &mut items);
        assert_eq!(items.len(), 1);
        let bond = &items["nic/bond0"];
        assert_eq!(bond.get("mtu").map(String::as_str), Some("9000"));
        assert_eq!(bond.get("virtual").map(String::as_str), Some("true"));
        assert!(
            !bond.contains_key("mac")
                && !bond.contains_key("speed_mbps")
                && !bond.contains_key("addresses")
        );
        assert!(r.into_warnings().is_empty());
    }

    #[test]
    fn live_list_has_loopback() {
        let list = live_addresses().unwrap();
        assert!(
            list.iter()
                .any(|(n, ip, p)| n == "lo" && *ip == IpAddr::V4(Ipv4Addr::LOCALHOST) && *p == 8),
            "{list:?}"
        );
    }
}
