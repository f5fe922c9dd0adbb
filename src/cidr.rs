//! A set of CIDR ranges with fast lookup, shared by trusted proxies and the allowlist.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::ConfigError;

/// Disjoint, sorted, merged ranges: a lookup is one binary search, whatever the number of
/// ranges. IPv4-mapped IPv6 ranges and addresses are treated as IPv4.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CidrSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

/// `::ffff:0:0/96`, where IPv4-mapped IPv6 addresses live.
const MAPPED_BLOCK: Ipv6Net =
    match Ipv6Net::new(std::net::Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96) {
        Ok(net) => net,
        Err(_) => panic!("valid prefix"),
    };

/// The IPv4 address for an IPv4-mapped IPv6 one (`::ffff:a.b.c.d`); any other unchanged.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl CidrSet {
    pub(crate) fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match canonical_net(net) {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => {
                    // A wider IPv6 range that holds the whole IPv4-mapped block holds every
                    // IPv4 address too, since mapped addresses are looked up as IPv4.
                    if n.contains(&MAPPED_BLOCK) {
                        v4.push((0, u32::MAX));
                    }
                    v6.push((u128::from(n.network()), u128::from(n.broadcast())));
                }
            }
        }
        Self {
            v4: merge(v4),
            v6: merge(v6),
        }
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(ip) => find(&self.v4, u32::from(ip)),
            IpAddr::V6(ip) => find(&self.v6, u128::from(ip)),
        }
    }

    /// Number of disjoint ranges after merging.
    pub(crate) fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// One CIDR, or one address (as a /32 or /128).
pub(crate) fn parse_net(text: &str) -> Result<IpNet, ConfigError> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| ConfigError::InvalidCidr {
            value: text.to_owned(),
        })
}

fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.network().to_ipv4_mapped() {
            Some(v4) => IpNet::V4(Ipv4Net::new(v4, n.prefix_len() - 96).expect("prefix <= 32")),
            None => net,
        },
        _ => net,
    }
}

fn merge<T: Ord + Copy + num_like::Succ>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1.succ() => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out.shrink_to_fit();
    out
}

fn find<T: Ord + Copy>(ranges: &[(T, T)], ip: T) -> bool {
    let i = ranges.partition_point(|&(start, _)| start <= ip);
    i > 0 && ip <= ranges[i - 1].1
}

mod num_like {
    /// The next value, saturating: adjacent ranges merge.
    pub(crate) trait Succ {
        fn succ(self) -> Self;
    }
    impl Succ for u32 {
        fn succ(self) -> Self {
            self.saturating_add(1)
        }
    }
    impl Succ for u128 {
        fn succ(self) -> Self {
            self.saturating_add(1)
        }
    }
}

/// The /`prefix` network of an IPv6 address (IPv4 unchanged).
pub(crate) fn group(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            IpAddr::V6(Ipv6Net::new(v6, v6_prefix.min(128)).map_or(v6, |n| n.network()))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidrs(list: &str) -> Result<CidrSet, ConfigError> {
        crate::parse_cidrs(list).map(CidrSet::new)
    }

    #[test]
    fn lookups_cover_edges_merges_and_mapped_addresses() {
        let set =
            cidrs("10.0.0.0/8, 11.0.0.0/8, 192.168.1.7, 2001:db8::/32, ::ffff:172.16.0.0/108")
                .unwrap();
        assert_eq!(set.ranges(), 4, "10/8 and 11/8 merge");
        for yes in [
            "10.0.0.0",
            "11.255.255.255",
            "192.168.1.7",
            "2001:db8::1",
            "172.16.5.5",
            "::ffff:10.1.2.3",
            "::ffff:172.31.255.255",
        ] {
            assert!(set.contains(ip(yes)), "{yes}");
        }
        for no in [
            "9.255.255.255",
            "12.0.0.0",
            "192.168.1.8",
            "2001:db9::",
            "172.32.0.0",
            "::ffff:12.0.0.1",
            "::1",
            "0.0.0.0",
        ] {
            assert!(!set.contains(ip(no)), "{no}");
        }
        assert!(cidrs("10.0.0.0/33").is_err());
        assert!(cidrs("fe80::1%eth0").is_err());
        assert_eq!(cidrs("").unwrap().ranges(), 0);
    }

    #[test]
    fn ipv6_ranges_holding_the_mapped_block_hold_ipv4() {
        // Found by fuzzing: `::/80` holds `::ffff:255.255.255.255`.
        let set = cidrs("::/80").unwrap();
        assert!(set.contains(ip("::ffff:ffff:ffff")));
        assert!(set.contains(ip("203.0.113.9")));
        assert!(!cidrs("2001:db8::/32").unwrap().contains(ip("203.0.113.9")));
        assert!(cidrs("::/0").unwrap().contains(ip("203.0.113.9")));
    }

    #[test]
    fn whole_spaces() {
        let all = cidrs("0.0.0.0/0, ::/0").unwrap();
        assert!(all.contains(ip("255.255.255.255")) && all.contains(ip("ffff::")));
    }

    #[test]
    fn ipv6_grouping() {
        assert_eq!(group(ip("2001:db8:1:2:3:4:5:6"), 64), ip("2001:db8:1:2::"));
        assert_eq!(group(ip("::ffff:1.2.3.4"), 64), ip("1.2.3.4"));
        assert_eq!(group(ip("1.2.3.4"), 64), ip("1.2.3.4"));
    }
}
