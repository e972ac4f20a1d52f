//! IP address management: subnets for new networks (from the address
//! pools, skipping what is used or routed), validation of explicit IPAM
//! configs in dockerd's words, and address allocation. Pure: the leases
//! themselves live in SQLite (`store::networks`), the caller passes them in.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::subnet::Subnet;

/// The IPv4 config of a network, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// Dynamic addresses come from here (the whole subnet when `None`).
    pub range: Option<Subnet>,
}

/// What a client gave in `IPAM.Config[]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolRequest {
    pub subnet: String,
    pub gateway: String,
    pub ip_range: String,
}

/// The first subnet of `pools` (each `(base, size)`) that overlaps none of
/// `used` (other networks and the host's routes).
pub fn pick_subnet(pools: &[(Subnet, u8)], used: &[Subnet]) -> Option<Subnet> {
    pools.iter().find_map(|(base, size)| {
        base.split(*size)
            .find(|cand| !used.iter().any(|u| u.overlaps(cand)))
    })
}

/// Validates an explicit config (dockerd's `ValidateIPAM` messages, joined
/// by newlines like dockerd does), filling in the gateway when absent.
pub fn validate(req: &PoolRequest) -> Result<Pool, String> {
    let mut errs = vec![];
    let Some((addr, subnet)) = Subnet::parse(&req.subnet) else {
        return Err(format!(
            "invalid subnet {}: invalid CIDR block notation",
            req.subnet
        ));
    };
    if addr != subnet.base() {
        errs.push(format!(
            "invalid subnet {}: it should be {subnet}",
            req.subnet
        ));
    }
    if subnet.prefix() > 30 {
        errs.push(format!(
            "invalid subnet {subnet}: no addresses left for containers"
        ));
    }
    let mut range = None;
    if !req.ip_range.is_empty() {
        match Subnet::parse(&req.ip_range) {
            None => errs.push(format!(
                "invalid ip-range {}: invalid CIDR block notation",
                req.ip_range
            )),
            Some((a, r)) if a != r.base() => errs.push(format!(
                "invalid ip-range {}: it should be {r}",
                req.ip_range
            )),
            Some((_, r)) if !subnet.contains_subnet(&r) => errs.push(format!(
                "invalid ip-range {}: parent subnet {subnet} doesn't contain ip-range {r}",
                req.ip_range
            )),
            Some((_, r)) => range = Some(r),
        }
    }
    let gateway = if req.gateway.is_empty() {
        subnet.nth(1).unwrap_or(subnet.base())
    } else {
        match req.gateway.parse::<Ipv4Addr>() {
            Err(_) => {
                errs.push(format!("invalid gateway {}: invalid address", req.gateway));
                subnet.base()
            }
            Ok(g) if !subnet.contains(g) => {
                errs.push(format!(
                    "invalid gateway {g}: it should belong to subnet {subnet}"
                ));
                g
            }
            Ok(g) if g == subnet.base() || g == subnet.broadcast() => {
                errs.push(format!(
                    "invalid gateway {g}: it is the network or broadcast address of {subnet}"
                ));
                g
            }
            Ok(g) => g,
        }
    };
    if errs.is_empty() {
        Ok(Pool {
            subnet,
            gateway,
            range,
        })
    } else {
        Err(errs.join("\n"))
    }
}

impl Pool {
    /// A pool on a whole subnet with its first address as gateway.
    pub fn on(subnet: Subnet) -> Pool {
        Pool {
            gateway: subnet.nth(1).unwrap_or(subnet.base()),
            subnet,
            range: None,
        }
    }

    /// Whether `ip` can be handed to a container at all.
    fn assignable(&self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(ip)
            && ip != self.subnet.base()
            && ip != self.subnet.broadcast()
            && ip != self.gateway
    }

    /// The lowest free dynamic address.
    pub fn allocate(&self, taken: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        let from = self.range.unwrap_or(self.subnet);
        (0..from.size().min(u64::from(u32::MAX)) as u32)
            .filter_map(|n| from.nth(n))
            .find(|ip| self.assignable(*ip) && !taken.contains(ip))
    }

    /// Checks a requested static address.
    pub fn check_static(&self, ip: Ipv4Addr, taken: &HashSet<Ipv4Addr>) -> Result<(), StaticError> {
        if !self.assignable(ip) {
            return Err(StaticError::Outside);
        }
        if taken.contains(&ip) {
            return Err(StaticError::Taken);
        }
        Ok(())
    }
}

#[derive(Debug, PartialEq)]
pub enum StaticError {
    /// Not a usable address of the subnet.
    Outside,
    Taken,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(s: &str) -> Subnet {
        Subnet::parse(s).unwrap().1
    }

    fn req(subnet: &str, gateway: &str, range: &str) -> PoolRequest {
        PoolRequest {
            subnet: subnet.into(),
            gateway: gateway.into(),
            ip_range: range.into(),
        }
    }

    #[test]
    fn picks_the_first_free_subnet() {
        let pools = [(sub("172.17.0.0/16"), 16), (sub("172.20.0.0/14"), 16)];
        assert_eq!(pick_subnet(&pools, &[]), Some(sub("172.17.0.0/16")));
        let used = [sub("172.17.3.0/24"), sub("172.20.0.0/16")];
        assert_eq!(pick_subnet(&pools, &used), Some(sub("172.21.0.0/16")));
        let all = [sub("172.16.0.0/12")];
        assert_eq!(pick_subnet(&pools, &all), None);
    }

    #[test]
    fn validates_like_dockerd() {
        let p = validate(&req("172.30.1.0/24", "", "")).unwrap();
        assert_eq!(p.gateway, Ipv4Addr::new(172, 30, 1, 1));
        let p = validate(&req("172.30.1.0/24", "172.30.1.254", "172.30.1.128/25")).unwrap();
        assert_eq!(p.gateway, Ipv4Addr::new(172, 30, 1, 254));
        assert_eq!(p.range, Some(sub("172.30.1.128/25")));
        assert_eq!(
            validate(&req("banana", "", "")).unwrap_err(),
            "invalid subnet banana: invalid CIDR block notation"
        );
        assert_eq!(
            validate(&req("172.30.1.5/24", "", "")).unwrap_err(),
            "invalid subnet 172.30.1.5/24: it should be 172.30.1.0/24"
        );
        assert_eq!(
            validate(&req("172.30.1.0/24", "172.30.2.1", "")).unwrap_err(),
            "invalid gateway 172.30.2.1: it should belong to subnet 172.30.1.0/24"
        );
        assert!(validate(&req("172.30.1.0/24", "", "172.30.2.0/25"))
            .unwrap_err()
            .contains("doesn't contain ip-range"));
        assert!(validate(&req("172.30.1.0/24", "x", "")).is_err());
        assert!(validate(&req("172.30.1.0/31", "", "")).is_err());
    }

    #[test]
    fn allocates_lowest_free_skipping_reserved() {
        let p = Pool::on(sub("172.30.1.0/29"));
        let mut taken = HashSet::new();
        let mut got = vec![];
        while let Some(ip) = p.allocate(&taken) {
            taken.insert(ip);
            got.push(ip.octets()[3]);
        }
        // .0 network, .1 gateway, .7 broadcast.
        assert_eq!(got, [2, 3, 4, 5, 6]);
        let r = validate(&req("172.30.1.0/24", "", "172.30.1.64/30")).unwrap();
        assert_eq!(
            r.allocate(&HashSet::new()),
            Some(Ipv4Addr::new(172, 30, 1, 64))
        );
    }

    #[test]
    fn static_addresses() {
        let p = Pool::on(sub("172.30.1.0/24"));
        let taken: HashSet<_> = [Ipv4Addr::new(172, 30, 1, 9)].into();
        assert_eq!(
            p.check_static(Ipv4Addr::new(172, 30, 1, 10), &taken),
            Ok(())
        );
        assert_eq!(
            p.check_static(Ipv4Addr::new(172, 30, 1, 9), &taken),
            Err(StaticError::Taken)
        );
        for bad in [
            [172, 30, 2, 9],
            [172, 30, 1, 1],
            [172, 30, 1, 255],
            [172, 30, 1, 0],
        ] {
            assert_eq!(
                p.check_static(bad.into(), &taken),
                Err(StaticError::Outside)
            );
        }
    }
}
