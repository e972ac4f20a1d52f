//! IPv4 subnets: parsing, overlap, address arithmetic and dockerd's MAC
//! derivation. Pure functions, no I/O.

use std::fmt;
use std::net::Ipv4Addr;

/// An IPv4 network in canonical form (host bits cleared).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    base: u32,
    prefix: u8,
}

impl Subnet {
    /// A subnet from an address and prefix, clearing the host bits.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Subnet> {
        (prefix <= 32).then(|| Subnet {
            base: u32::from(addr) & mask(prefix),
            prefix,
        })
    }

    /// `a.b.c.d/n`: the address as written and its canonical subnet;
    /// callers decide whether host bits are an error.
    pub fn parse(s: &str) -> Option<(Ipv4Addr, Subnet)> {
        let (a, p) = s.split_once('/')?;
        let addr: Ipv4Addr = a.parse().ok()?;
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix: u8 = p.parse().ok()?;
        Some((addr, Subnet::new(addr, prefix)?))
    }

    pub fn base(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.base
    }

    /// Whether `other` lies entirely inside `self`.
    pub fn contains_subnet(&self, other: &Subnet) -> bool {
        other.prefix >= self.prefix && self.contains(other.base())
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.base()) || other.contains(self.base())
    }

    /// The `n`-th address of the subnet (0 is the network address).
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        (u64::from(n) < self.size()).then(|| Ipv4Addr::from(self.base + n))
    }

    /// The offset of `ip` in the subnet.
    pub fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        self.contains(ip).then(|| u32::from(ip) - self.base)
    }

    /// Number of addresses.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The broadcast address (last one).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base | !mask(self.prefix))
    }

    /// Splits `self` into consecutive subnets of length `prefix`.
    pub fn split(&self, prefix: u8) -> impl Iterator<Item = Subnet> + '_ {
        let count = if prefix < self.prefix || prefix > 32 {
            0
        } else {
            1u64 << (prefix - self.prefix)
        };
        let step = 1u64 << (32 - u32::from(prefix.min(32)));
        (0..count).map(move |i| Subnet {
            base: (u64::from(self.base) + i * step) as u32,
            prefix,
        })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base(), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

/// dockerd's MAC for an IPv4 endpoint: `02:42` followed by the address.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Subnet {
        Subnet::parse(x).unwrap().1
    }

    #[test]
    fn parses_and_canonicalises() {
        let (addr, net) = Subnet::parse("172.20.1.5/16").unwrap();
        assert_eq!(addr, Ipv4Addr::new(172, 20, 1, 5));
        assert_eq!(net.to_string(), "172.20.0.0/16");
        for bad in [
            "",
            "1.2.3.4",
            "1.2.3.4/",
            "1.2.3.4/33",
            "1.2.3/8",
            "x/8",
            "1.2.3.4/+1",
        ] {
            assert!(Subnet::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(s("0.0.0.0/0").size(), 1 << 32);
    }

    #[test]
    fn overlap_and_containment() {
        assert!(s("172.20.0.0/16").overlaps(&s("172.20.5.0/24")));
        assert!(s("172.20.5.0/24").overlaps(&s("172.20.0.0/16")));
        assert!(!s("172.20.0.0/16").overlaps(&s("172.21.0.0/16")));
        assert!(s("10.0.0.0/8").contains_subnet(&s("10.1.0.0/16")));
        assert!(!s("10.1.0.0/16").contains_subnet(&s("10.0.0.0/8")));
        assert!(s("0.0.0.0/0").overlaps(&s("1.2.3.0/24")));
    }

    #[test]
    fn arithmetic() {
        let n = s("192.168.7.0/28");
        assert_eq!(n.nth(1), Some(Ipv4Addr::new(192, 168, 7, 1)));
        assert_eq!(n.nth(16), None);
        assert_eq!(n.broadcast(), Ipv4Addr::new(192, 168, 7, 15));
        assert_eq!(n.offset(Ipv4Addr::new(192, 168, 7, 9)), Some(9));
        assert_eq!(n.offset(Ipv4Addr::new(192, 168, 8, 9)), None);
        let parts: Vec<String> = s("172.28.0.0/14")
            .split(16)
            .map(|x| x.to_string())
            .collect();
        assert_eq!(
            parts,
            [
                "172.28.0.0/16",
                "172.29.0.0/16",
                "172.30.0.0/16",
                "172.31.0.0/16"
            ]
        );
        assert_eq!(s("10.0.0.0/24").split(8).count(), 0);
    }

    #[test]
    fn mac_is_derived_from_the_address() {
        let mac = mac_for(Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(mac_string(&mac), "02:42:ac:11:00:02");
    }
}
