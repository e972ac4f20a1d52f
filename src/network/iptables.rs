//! iptables rules of the bridge driver, in chains of our own named after
//! the configured prefix, like dockerd's DOCKER-* chains:
//!
//! - filter `<P>-FORWARD` (jumped to first from `FORWARD`): isolation,
//!   then per network: replies in, traffic within the bridge, and out of
//!   the bridge unless the network is internal (internal ones drop both
//!   ways);
//! - filter `<P>-ISOLATION-1`/`-2`: a packet leaving one of our bridges
//!   for another of them is dropped (dockerd's two-stage isolation);
//! - nat `<P>-POSTROUTING` (from `POSTROUTING`): MASQUERADE for what
//!   leaves a non-internal network's subnet through another interface,
//!   and for a container reaching its own published port (hairpin);
//! - nat `<P>-PORTS` (from `PREROUTING` for local destinations, from
//!   `OUTPUT` for local non-loopback ones, like dockerd's DOCKER chain):
//!   DNAT of each published port to its container, except for traffic
//!   coming from the container's own bridge (the userland proxy serves
//!   that, and loopback); filter `<P>-PORTS` (from `<P>-FORWARD` for
//!   traffic into a bridge) accepts the forwarded connections.
//!
//! The whole rule set is rendered from the networks and loaded at once
//! with `iptables-restore --noflush`, which flushes only the chains it
//! declares: adding or removing a network rewrites our chains atomically
//! and leaves everything else alone. Forwarding itself
//! (`net.ipv4.ip_forward`) is never switched on here.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use super::ports::Proto;
use super::subnet::Subnet;

/// What the rules need to know of one bridge network.
#[derive(Clone, Debug, PartialEq)]
pub struct BridgeRules {
    pub bridge: String,
    pub subnet: Subnet,
    pub internal: bool,
}

/// What the rules need to know of one published port.
#[derive(Clone, Debug, PartialEq)]
pub struct PortRule {
    pub proto: Proto,
    /// `0.0.0.0`: every local address.
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
    /// The bridge of the container's address.
    pub bridge: String,
}

pub struct Chains {
    pub forward: String,
    pub isolation1: String,
    pub isolation2: String,
    pub postrouting: String,
    /// Published ports: DNAT in nat, ACCEPT in filter.
    pub ports: String,
}

impl Chains {
    pub fn new(prefix: &str) -> Chains {
        Chains {
            forward: format!("{prefix}-FORWARD"),
            isolation1: format!("{prefix}-ISOLATION-1"),
            isolation2: format!("{prefix}-ISOLATION-2"),
            postrouting: format!("{prefix}-POSTROUTING"),
            ports: format!("{prefix}-PORTS"),
        }
    }
}

/// The `iptables-restore` input for `nets` and the published `ports`
/// (those on internal networks get no rules: nothing may reach them).
pub fn render(prefix: &str, nets: &[BridgeRules], ports: &[PortRule]) -> String {
    let c = Chains::new(prefix);
    let internal = |br: &str| nets.iter().any(|n| n.bridge == br && n.internal);
    let ports: Vec<&PortRule> = ports.iter().filter(|p| !internal(&p.bridge)).collect();
    let mut f = vec![
        "*filter".to_string(),
        format!(":{} - [0:0]", c.forward),
        format!(":{} - [0:0]", c.isolation1),
        format!(":{} - [0:0]", c.isolation2),
        format!(":{} - [0:0]", c.ports),
        format!("-A {} -j {}", c.forward, c.isolation1),
    ];
    for n in nets {
        let br = &n.bridge;
        f.push(format!("-A {} -i {br} -o {br} -j ACCEPT", c.forward));
        if n.internal {
            f.push(format!("-A {} -i {br} ! -o {br} -j DROP", c.forward));
            f.push(format!("-A {} ! -i {br} -o {br} -j DROP", c.forward));
        } else {
            f.push(format!("-A {} -o {br} -j {}", c.forward, c.ports));
            f.push(format!(
                "-A {} -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                c.forward
            ));
            f.push(format!("-A {} -i {br} ! -o {br} -j ACCEPT", c.forward));
            f.push(format!(
                "-A {} -i {br} ! -o {br} -j {}",
                c.isolation1, c.isolation2
            ));
            f.push(format!("-A {} -o {br} -j DROP", c.isolation2));
        }
    }
    for p in &ports {
        f.push(format!(
            "-A {} -d {}/32 ! -i {br} -o {br} -p {proto} -m {proto} --dport {} -j ACCEPT",
            c.ports,
            p.container_ip,
            p.container_port,
            br = p.bridge,
            proto = p.proto
        ));
    }
    f.push("COMMIT".into());
    f.push("*nat".into());
    f.push(format!(":{} - [0:0]", c.postrouting));
    f.push(format!(":{} - [0:0]", c.ports));
    for n in nets.iter().filter(|n| !n.internal) {
        f.push(format!(
            "-A {} -s {} ! -o {} -j MASQUERADE",
            c.postrouting, n.subnet, n.bridge
        ));
    }
    for p in &ports {
        let dest = if p.host_ip.is_unspecified() {
            String::new()
        } else {
            format!("-d {}/32 ", p.host_ip)
        };
        f.push(format!(
            "-A {} {dest}! -i {} -p {proto} -m {proto} --dport {} -j DNAT --to-destination {}:{}",
            c.ports,
            p.bridge,
            p.host_port,
            p.container_ip,
            p.container_port,
            proto = p.proto
        ));
        f.push(format!(
            "-A {} -s {ip}/32 -d {ip}/32 -p {proto} -m {proto} --dport {} -j MASQUERADE",
            c.postrouting,
            p.container_port,
            ip = p.container_ip,
            proto = p.proto
        ));
    }
    f.push("COMMIT".into());
    f.join("\n") + "\n"
}

/// The jumps from the built-in chains into ours: (table, chain, rule).
fn jumps(c: &Chains) -> [(&'static str, &'static str, Vec<&str>); 4] {
    let local = ["-m", "addrtype", "--dst-type", "LOCAL"];
    [
        ("filter", "FORWARD", vec!["-j", &c.forward]),
        ("nat", "POSTROUTING", vec!["-j", &c.postrouting]),
        (
            "nat",
            "PREROUTING",
            [&local[..], &["-j", &c.ports]].concat(),
        ),
        (
            "nat",
            "OUTPUT",
            [&["!", "-d", "127.0.0.0/8"], &local[..], &["-j", &c.ports]].concat(),
        ),
    ]
}

fn iptables(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("iptables")
        .args(["-w", "5"])
        .args(args)
        .stdin(Stdio::null())
        .output()
}

/// Loads the rules for `nets` and `ports` and makes sure our chains are
/// jumped to.
pub fn apply(prefix: &str, nets: &[BridgeRules], ports: &[PortRule]) -> std::io::Result<()> {
    let mut child = Command::new("iptables-restore")
        .args(["--noflush", "-w", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(render(prefix, nets, ports).as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "iptables-restore: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let c = Chains::new(prefix);
    for (table, chain, rule) in jumps(&c) {
        let present = iptables(&[&["-t", table, "-C", chain], &rule[..]].concat())?
            .status
            .success();
        if !present {
            let out = iptables(&[&["-t", table, "-I", chain, "1"], &rule[..]].concat())?;
            if !out.status.success() {
                return Err(std::io::Error::other(format!(
                    "iptables: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
    }
    Ok(())
}

/// Removes our jumps and chains altogether (best effort).
pub fn remove_all(prefix: &str) {
    let c = Chains::new(prefix);
    for (table, chain, rule) in jumps(&c) {
        while iptables(&[&["-t", table, "-D", chain], &rule[..]].concat())
            .map(|o| o.status.success())
            .unwrap_or(false)
        {}
    }
    for (table, chain) in [
        ("filter", &c.forward),
        ("filter", &c.isolation1),
        ("filter", &c.isolation2),
        ("filter", &c.ports),
        ("nat", &c.postrouting),
        ("nat", &c.ports),
    ] {
        let _ = iptables(&["-t", table, "-F", chain]);
        let _ = iptables(&["-t", table, "-X", chain]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(bridge: &str, subnet: &str, internal: bool) -> BridgeRules {
        BridgeRules {
            bridge: bridge.into(),
            subnet: Subnet::parse(subnet).unwrap().1,
            internal,
        }
    }

    #[test]
    fn renders_isolation_masquerade_and_internal() {
        let text = render(
            "MD",
            &[
                net("md0", "172.30.0.0/24", false),
                net("br-int", "172.30.1.0/24", true),
            ],
            &[],
        );
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "*filter",
            ":MD-FORWARD - [0:0]",
            "-A MD-FORWARD -j MD-ISOLATION-1",
            "-A MD-FORWARD -i md0 -o md0 -j ACCEPT",
            "-A MD-FORWARD -o md0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-A MD-FORWARD -i md0 ! -o md0 -j ACCEPT",
            "-A MD-ISOLATION-1 -i md0 ! -o md0 -j MD-ISOLATION-2",
            "-A MD-ISOLATION-2 -o md0 -j DROP",
            "-A MD-FORWARD -i br-int ! -o br-int -j DROP",
            "-A MD-FORWARD ! -i br-int -o br-int -j DROP",
            ":MD-POSTROUTING - [0:0]",
            "-A MD-POSTROUTING -s 172.30.0.0/24 ! -o md0 -j MASQUERADE",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in\n{text}");
        }
        // No way out for the internal network.
        assert!(!text.contains("172.30.1.0/24"), "{text}");
        assert!(!text.contains("-i br-int ! -o br-int -j ACCEPT"));
        assert_eq!(lines.iter().filter(|l| **l == "COMMIT").count(), 2);
    }

    #[test]
    fn no_networks_still_declares_the_chains() {
        let text = render("X", &[], &[]);
        assert!(text.contains(":X-FORWARD - [0:0]"));
        assert!(text.contains(":X-POSTROUTING - [0:0]"));
        // Declared in both tables, so that stale port rules are flushed.
        assert_eq!(text.matches(":X-PORTS - [0:0]").count(), 2);
        assert!(!text.contains("MASQUERADE"));
    }

    fn port(proto: Proto, host: &str, hport: u16, cip: &str, cport: u16, br: &str) -> PortRule {
        PortRule {
            proto,
            host_ip: host.parse().unwrap(),
            host_port: hport,
            container_ip: cip.parse().unwrap(),
            container_port: cport,
            bridge: br.into(),
        }
    }

    #[test]
    fn renders_dnat_accept_and_hairpin_for_published_ports() {
        let text = render(
            "MD",
            &[
                net("md0", "172.30.0.0/24", false),
                net("br-int", "172.30.1.0/24", true),
            ],
            &[
                port(Proto::Tcp, "0.0.0.0", 8080, "172.30.0.2", 80, "md0"),
                port(Proto::Udp, "127.0.0.1", 15353, "172.30.0.2", 53, "md0"),
                port(Proto::Tcp, "0.0.0.0", 9090, "172.30.1.2", 90, "br-int"),
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "-A MD-FORWARD -o md0 -j MD-PORTS",
            "-A MD-PORTS -d 172.30.0.2/32 ! -i md0 -o md0 -p tcp -m tcp --dport 80 -j ACCEPT",
            "-A MD-PORTS -d 172.30.0.2/32 ! -i md0 -o md0 -p udp -m udp --dport 53 -j ACCEPT",
            "-A MD-PORTS ! -i md0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.30.0.2:80",
            "-A MD-PORTS -d 127.0.0.1/32 ! -i md0 -p udp -m udp --dport 15353 -j DNAT --to-destination 172.30.0.2:53",
            "-A MD-POSTROUTING -s 172.30.0.2/32 -d 172.30.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in\n{text}");
        }
        // The DNAT and ACCEPT rules sit in the tables' own sections.
        let nat = text.split("*nat").nth(1).unwrap();
        assert!(nat.contains("DNAT") && !nat.contains("-j ACCEPT"), "{text}");
        // Nothing reaches a container on an internal network.
        assert!(!text.contains("172.30.1.2"), "{text}");
        assert!(!text.contains("-o br-int -j MD-PORTS"), "{text}");
    }
}
