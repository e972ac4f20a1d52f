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
//!   leaves a non-internal network's subnet through another interface.
//!
//! The whole rule set is rendered from the networks and loaded at once
//! with `iptables-restore --noflush`, which flushes only the chains it
//! declares: adding or removing a network rewrites our chains atomically
//! and leaves everything else alone. Forwarding itself
//! (`net.ipv4.ip_forward`) is never switched on here.

use std::io::Write;
use std::process::{Command, Stdio};

use super::subnet::Subnet;

/// What the rules need to know of one bridge network.
#[derive(Clone, Debug, PartialEq)]
pub struct BridgeRules {
    pub bridge: String,
    pub subnet: Subnet,
    pub internal: bool,
}

pub struct Chains {
    pub forward: String,
    pub isolation1: String,
    pub isolation2: String,
    pub postrouting: String,
}

impl Chains {
    pub fn new(prefix: &str) -> Chains {
        Chains {
            forward: format!("{prefix}-FORWARD"),
            isolation1: format!("{prefix}-ISOLATION-1"),
            isolation2: format!("{prefix}-ISOLATION-2"),
            postrouting: format!("{prefix}-POSTROUTING"),
        }
    }
}

/// The `iptables-restore` input for `nets`.
pub fn render(prefix: &str, nets: &[BridgeRules]) -> String {
    let c = Chains::new(prefix);
    let mut f = vec![
        "*filter".to_string(),
        format!(":{} - [0:0]", c.forward),
        format!(":{} - [0:0]", c.isolation1),
        format!(":{} - [0:0]", c.isolation2),
        format!("-A {} -j {}", c.forward, c.isolation1),
    ];
    for n in nets {
        let br = &n.bridge;
        f.push(format!("-A {} -i {br} -o {br} -j ACCEPT", c.forward));
        if n.internal {
            f.push(format!("-A {} -i {br} ! -o {br} -j DROP", c.forward));
            f.push(format!("-A {} ! -i {br} -o {br} -j DROP", c.forward));
        } else {
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
    f.push("COMMIT".into());
    f.push("*nat".into());
    f.push(format!(":{} - [0:0]", c.postrouting));
    for n in nets.iter().filter(|n| !n.internal) {
        f.push(format!(
            "-A {} -s {} ! -o {} -j MASQUERADE",
            c.postrouting, n.subnet, n.bridge
        ));
    }
    f.push("COMMIT".into());
    f.join("\n") + "\n"
}

/// The jumps from the built-in chains into ours: (table, chain, target).
fn jumps(c: &Chains) -> [(&'static str, &'static str, &str); 2] {
    [
        ("filter", "FORWARD", &c.forward),
        ("nat", "POSTROUTING", &c.postrouting),
    ]
}

fn iptables(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("iptables")
        .args(["-w", "5"])
        .args(args)
        .stdin(Stdio::null())
        .output()
}

/// Loads the rules for `nets` and makes sure our chains are jumped to.
pub fn apply(prefix: &str, nets: &[BridgeRules]) -> std::io::Result<()> {
    let mut child = Command::new("iptables-restore")
        .args(["--noflush", "-w", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(render(prefix, nets).as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "iptables-restore: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let c = Chains::new(prefix);
    for (table, chain, target) in jumps(&c) {
        let present = iptables(&["-t", table, "-C", chain, "-j", target])?
            .status
            .success();
        if !present {
            let out = iptables(&["-t", table, "-I", chain, "1", "-j", target])?;
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
    for (table, chain, target) in jumps(&c) {
        while iptables(&["-t", table, "-D", chain, "-j", target])
            .map(|o| o.status.success())
            .unwrap_or(false)
        {}
    }
    for (table, chain) in [
        ("filter", &c.forward),
        ("filter", &c.isolation1),
        ("filter", &c.isolation2),
        ("nat", &c.postrouting),
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
        let text = render("X", &[]);
        assert!(text.contains(":X-FORWARD - [0:0]"));
        assert!(text.contains(":X-POSTROUTING - [0:0]"));
        assert!(!text.contains("MASQUERADE"));
    }
}
