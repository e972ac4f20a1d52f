//! Networks through the stock docker CLI: create/ls/inspect/rm with IPAM
//! options, bad input in dockerd's words, containers on a user network
//! reaching each other, connect/disconnect on a running container (seen
//! from inside its namespace), `--network container:`, `none` and `host`,
//! and nothing of ours left in the kernel or the database after removal
//! and after a daemon crash.

mod common;

use std::process::Command;

use common::{registry, TestDaemon};
use serde_json::Value;

fn busybox() -> String {
    format!("{}/busybox", registry())
}

fn daemon() -> TestDaemon {
    let d = TestDaemon::start();
    d.pull(&busybox());
    d
}

fn inspect(d: &TestDaemon, what: &[&str]) -> Value {
    let mut args = what.to_vec();
    args.insert(0, "inspect");
    let out = d.docker_ok(&args);
    let v: Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0].clone()
}

/// Runs `cmd` in the network namespace of a running container (from the
/// host: no exec needed, and no waiting).
fn in_netns(d: &TestDaemon, container: &str, cmd: &[&str]) -> String {
    let pid = inspect(d, &["--type", "container", container])["State"]["Pid"]
        .as_i64()
        .expect("pid");
    assert!(pid > 0, "{container} is not running");
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(cmd)
        .output()
        .expect("nsenter");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The IPv4 addresses per interface inside a container: "eth0 a.b.c.d/len".
fn addrs(d: &TestDaemon, container: &str) -> Vec<String> {
    in_netns(d, container, &["ip", "-o", "-4", "addr", "show"])
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() > 3 && w[1] != "lo").then(|| format!("{} {}", w[1], w[3]))
        })
        .collect()
}

/// Leases recorded in the daemon's database.
fn leases(d: &TestDaemon) -> Vec<String> {
    let db = rusqlite::Connection::open(d.data_root().join("mydocker.db")).expect("db");
    let mut st = db
        .prepare("SELECT container_id || ' ' || address FROM ip_leases")
        .expect("query");
    let rows = st.query_map([], |r| r.get::<_, String>(0)).expect("rows");
    rows.map(|r| r.unwrap()).collect()
}

/// Removes every container and user network, then asserts that only the
/// default bridge (and its rules) is left of ours.
fn assert_clean(d: &TestDaemon) {
    for id in common::lines(&d.docker_ok(&["ps", "-aq"])) {
        d.docker_ok(&["rm", "-f", &id]);
    }
    d.docker_ok(&["network", "prune", "-f"]);
    let nets = common::lines(&d.docker_ok(&["network", "ls", "--format", "{{.Name}}"]));
    assert_eq!(nets, ["bridge", "host", "none"], "networks left");
    assert_eq!(d.net.veths(), Vec::<String>::new(), "veths left");
    assert_eq!(d.net.bridges(), vec![d.net.bridge()], "bridges left");
    let rules = d.net.iptables_rules();
    let bridge = d.net.bridge();
    let stray: Vec<&String> = rules
        .iter()
        .filter(|r| {
            let generic = r.contains(&format!("-j {}-", d.net.chain_prefix()));
            !generic && !r.contains(&bridge)
        })
        .collect();
    assert!(stray.is_empty(), "rules of removed networks left: {stray:?}");
    assert_eq!(leases(d), Vec::<String>::new(), "leases left");
    let netns = std::fs::read_dir(d.exec_root().join("netns"))
        .map(|rd| rd.count())
        .unwrap_or(0);
    assert_eq!(netns, 0, "pinned namespaces left");
}

#[test]
fn create_ls_inspect_rm_with_ipam_options() {
    let d = TestDaemon::start();
    let subnet = d.net.subnet(0);
    let gw = d.net.addr(0, 14);
    let range = format!("{}/29", d.net.addr(0, 8));
    let id = d
        .docker_ok(&[
            "network", "create", "--subnet", &subnet, "--gateway", &gw, "--ip-range", &range,
            "--label", "team=net", "--internal", "backend",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    let n = inspect(&d, &["--type", "network", "backend"]);
    assert_eq!(n["Id"], id);
    assert_eq!(n["Driver"], "bridge");
    assert_eq!(n["Scope"], "local");
    assert_eq!(n["Internal"], true);
    assert_eq!(n["Labels"]["team"], "net");
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], subnet);
    assert_eq!(n["IPAM"]["Config"][0]["Gateway"], gw);
    assert_eq!(n["IPAM"]["Config"][0]["IPRange"], range);
    let bridge = format!("br-{}", &id[..12]);
    assert!(d.net.bridges().contains(&bridge), "bridge {bridge} missing");
    // Internal: no way out, no masquerade.
    let rules = d.net.iptables_rules().join("\n");
    assert!(rules.contains(&format!("-i {bridge} ! -o {bridge} -j DROP")), "{rules}");
    assert!(!rules.contains(&subnet), "internal network masqueraded:\n{rules}");

    // A second network from the pools gets the first free pool subnet
    // and its masquerade rule.
    d.docker_ok(&["network", "create", "front"]);
    let f = inspect(&d, &["--type", "network", "front"]);
    let fsub = f["IPAM"]["Config"][0]["Subnet"].as_str().unwrap().to_string();
    assert_eq!(fsub, format!("172.31.{}.0/28", d.net.index));
    let rules = d.net.iptables_rules().join("\n");
    assert!(rules.contains(&format!("-s {fsub} ! -o br-")), "{rules}");

    let ls = d.docker_ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    for want in ["bridge bridge", "host host", "none null", "backend bridge", "front bridge"] {
        assert!(common::lines(&ls).iter().any(|l| l == want), "{want} not in\n{ls}");
    }
    let filtered = d.docker_ok(&["network", "ls", "-q", "--no-trunc", "--filter", "label=team=net"]);
    assert_eq!(common::lines(&filtered), [id.clone()]);
    let custom = d.docker_ok(&["network", "ls", "--format", "{{.Name}}", "--filter", "type=custom"]);
    assert_eq!(common::lines(&custom).len(), 2, "{custom}");

    // Predefined networks stay.
    let err = d.docker_fails(&["network", "rm", "bridge"]);
    assert!(err.contains("pre-defined network and cannot be removed"), "{err}");

    let since = common::unix_now().to_string();
    d.docker_ok(&["network", "rm", "backend"]);
    assert!(!d.net.bridges().contains(&bridge), "bridge {bridge} left");
    let err = d.docker_fails(&["network", "inspect", "backend"]);
    assert!(err.contains("network backend not found"), "{err}");
    let until = (common::unix_now() + 1).to_string();
    let ev = d.docker_ok(&[
        "events", "--since", &since, "--until", &until, "--filter", "type=network",
        "--format", "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    assert!(ev.contains("destroy backend"), "{ev}");
    assert_clean(&d);
}
