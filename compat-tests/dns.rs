//! Names between containers through the stock docker CLI: on a user
//! network each container's embedded DNS server (127.0.0.11) answers for
//! container names, network aliases and short IDs of the networks it is
//! on (and PTR queries for their addresses), and forwards the rest
//! upstream (here a fake resolver on the test daemon's own loopback
//! address: no query leaves the machine). The default bridge has no
//! names. It all comes back after a daemon crash.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{registry, TestDaemon};

fn busybox() -> String {
    format!("{}/busybox", registry())
}

fn ip_on(d: &TestDaemon, container: &str, network: &str) -> String {
    let out = d.docker_ok(&["inspect", "--type", "container", container]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    let v = &v[0];
    v["NetworkSettings"]["Networks"][network]["IPAddress"]
        .as_str()
        .unwrap_or_else(|| panic!("{container} has no address on {network}: {v}"))
        .to_string()
}

/// The addresses `nslookup` prints for `name` from inside `client`, or
/// `None` when it cannot resolve it.
fn lookup(d: &TestDaemon, client: &str, name: &str) -> Option<Vec<String>> {
    let out = d.docker(&["exec", client, "nslookup", "-type=a", name]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return None;
    }
    // busybox: "Server: ..." / "Address: <server>#53", then for the
    // answer "Name: x" / "Address: a.b.c.d".
    let answer = text.split_once("Name:")?.1;
    let addrs: Vec<String> = answer
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Address:"))
        .map(|a| a.trim().to_string())
        .collect();
    (!addrs.is_empty()).then_some(addrs)
}

/// A minimal upstream resolver on `addr:53`: every A query gets
/// 127.1.2.3, anything else an empty answer.
fn fake_upstream(addr: &str) -> common::servers::UdpServer {
    let addr = addr.to_string();
    common::servers::UdpServer::start(
        move || UdpSocket::bind((addr.as_str(), 53)).expect("bind fake upstream"),
        fake_answer,
    )
}

/// One question in, the same message back as a response with one A
/// record (127.1.2.3) when it asks for an A.
fn fake_answer(q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    // The question's name, then type and class.
    let mut i = 12;
    while *q.get(i)? != 0 {
        i += 1 + *q.get(i)? as usize;
    }
    let end = i + 5;
    let qtype = u16::from_be_bytes([*q.get(i + 1)?, *q.get(i + 2)?]);
    let mut r = q[..end].to_vec();
    r[2] = 0x81; // QR, RD
    r[3] = 0x80; // RA, NOERROR
    r[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    if qtype == 1 {
        r[7] = 1;
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 1, 2, 3]);
    }
    Some(r)
}

#[test]
fn containers_find_each_other_by_name_alias_and_short_id() {
    let mut d = TestDaemon::start();
    let b = busybox();
    d.pull(&b);
    d.docker_ok(&["network", "create", "front"]);
    d.docker_ok(&["network", "create", "back"]);
    let web = d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "front",
        "--network-alias",
        "www",
        &b,
        "sleep",
        "1000",
    ]);
    let web_short = web.trim()[..12].to_string();
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "client",
        "--network",
        "front",
        &b,
        "sleep",
        "1000",
    ]);
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "other",
        "--network",
        "back",
        &b,
        "sleep",
        "1000",
    ]);
    d.docker_ok(&["run", "-d", "--name", "plain", &b, "sleep", "1000"]);
    let web_ip = ip_on(&d, "web", "front");

    // resolv.conf as dockerd writes it on a user network.
    let conf = d.docker_ok(&["exec", "client", "cat", "/etc/resolv.conf"]);
    assert!(conf.contains("nameserver 127.0.0.11\n"), "{conf}");
    assert!(conf.contains("options ndots:0"), "{conf}");
    assert_eq!(conf.matches("nameserver").count(), 1, "{conf}");

    for name in ["web", "WWW", "web.front", &web_short] {
        assert_eq!(
            lookup(&d, "client", name),
            Some(vec![web_ip.clone()]),
            "{name}"
        );
    }
    // And back: the address is web.front.
    let out = d.docker_ok(&["exec", "client", "nslookup", &web_ip]);
    assert!(out.contains("name = web.front"), "{out}");
    // Reached by name, not only resolved.
    for name in ["web", "www"] {
        d.docker_ok(&["exec", "client", "ping", "-c", "1", "-W", "5", name]);
    }

    // Another network, and the default bridge, do not see it.
    assert_eq!(lookup(&d, "other", "web"), None);
    let conf = d.docker_ok(&["exec", "plain", "cat", "/etc/resolv.conf"]);
    assert!(!conf.contains("127.0.0.11"), "{conf}");
    assert_eq!(lookup(&d, "plain", "web"), None);

    // Connected to `front` while running: now it does.
    d.docker_ok(&["network", "connect", "front", "other"]);
    assert_eq!(lookup(&d, "other", "web"), Some(vec![web_ip.clone()]));

    // Other names go upstream: the daemon's `--dns`, a fake resolver here.
    let upstream = fake_upstream(&d.net.dns());
    assert_eq!(
        lookup(&d, "client", "elsewhere.test"),
        Some(vec!["127.1.2.3".to_string()])
    );

    // The servers come back for the containers that kept running.
    d.kill9_and_restart();
    assert_eq!(lookup(&d, "client", "web"), Some(vec![web_ip.clone()]));
    assert_eq!(
        lookup(&d, "client", "elsewhere.test"),
        Some(vec!["127.1.2.3".to_string()])
    );
    drop(upstream);

    // Gone with its container.
    d.docker_ok(&["rm", "-f", "web"]);
    assert_eq!(lookup(&d, "client", "web"), None);
    d.docker_ok(&["rm", "-f", "client", "other", "plain"]);
    d.docker_ok(&["network", "rm", "front", "back"]);
    assert!(
        d.net.veths().is_empty()
            || common::wait_until(Duration::from_secs(5), || d.net.veths().is_empty())
    );
}
