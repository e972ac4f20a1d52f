//! Published ports through the stock docker CLI: UDP through the userland
//! proxy, DNAT from the host on our own bridge's gateway address, host
//! port ranges, the rules and proxies of a container gone with it and
//! back exactly once after a daemon crash; `--add-host h:host-gateway`;
//! `network disconnect --force` for a container that is gone.
//!
//! Traffic goes only to loopback and to our own test bridge. The stock
//! busybox `nc` has no UDP, so the UDP echo server runs on a thread of
//! this test that has entered the container's network namespace.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

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

fn container(d: &TestDaemon, name: &str) -> Value {
    let out = d.docker_ok(&["inspect", "--type", "container", name]);
    let v: Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0].clone()
}

fn ip_of(d: &TestDaemon, name: &str) -> String {
    container(d, name)["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The rules in our PORTS chains (DNAT in nat, ACCEPT in filter) and the
/// hairpin MASQUERADEs: what published ports add.
fn port_rules(d: &TestDaemon) -> Vec<String> {
    let ports = format!("-A {}-PORTS ", d.net.chain_prefix());
    let mut rules: Vec<String> = d
        .net
        .iptables_rules()
        .into_iter()
        .filter(|r| r.contains(&ports) || r.contains("/32 -d "))
        .collect();
    rules.sort();
    rules
}

/// Two adjacent ports free on loopback for TCP (and so, here, likely
/// free for a moment).
fn free_ports(n: u16) -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p.checked_add(n).is_some()
            && (1..n).all(|i| TcpListener::bind(("127.0.0.1", p + i)).is_ok())
        {
            return p;
        }
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A UDP echo server bound inside a running container's network
/// namespace (from a thread of ours that entered it), stopped on drop.
/// A UDP echo server inside a container's network namespace.
fn udp_echo(d: &TestDaemon, name: &str, port: u16) -> common::servers::UdpServer {
    let pid = container(d, name)["State"]["Pid"].as_i64().expect("pid");
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("netns");
    common::servers::UdpServer::start(
        move || {
            // SAFETY: setns on this thread only, with a descriptor we own.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            UdpSocket::bind(("0.0.0.0", port)).expect("bind in the container")
        },
        |b| Some(b.to_vec()),
    )
}

/// Sends `what` to `to` over UDP and returns the answer, retrying a few
/// times (UDP may drop a datagram).
fn udp_ask(to: SocketAddr, what: &str) -> Option<String> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 1500];
    for _ in 0..10 {
        s.send_to(what.as_bytes(), to).unwrap();
        if let Ok(n) = s.recv(&mut buf) {
            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    None
}

const HTTPD: &str =
    "mkdir -p /www && echo published > /www/index.html && exec httpd -f -p 80 -h /www";

#[test]
fn udp_through_the_proxy_with_its_dnat_rule_gone_at_stop() {
    let d = daemon();
    let b = busybox();
    let port = free_udp_port();
    let spec = format!("127.0.0.1:{port}:9053/udp");
    d.docker_ok(&[
        "run", "-d", "--name", "udp", "-p", &spec, &b, "sleep", "300",
    ]);
    let echo = udp_echo(&d, "udp", 9053);
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    assert_eq!(udp_ask(to, "ping").as_deref(), Some("ping"));
    // A second client gets its own flow, and its own answers.
    assert_eq!(udp_ask(to, "pong").as_deref(), Some("pong"));

    assert_eq!(
        d.docker_ok(&["port", "udp"]).trim(),
        format!("9053/udp -> 127.0.0.1:{port}")
    );
    let ports = &container(&d, "udp")["NetworkSettings"]["Ports"];
    assert_eq!(
        ports["9053/udp"][0]["HostPort"],
        port.to_string(),
        "{ports}"
    );
    let ps = d.docker_ok(&["ps", "--format", "{{.Ports}}", "--filter", "name=udp"]);
    assert_eq!(ps.trim(), format!("127.0.0.1:{port}->9053/udp"));

    let ip = ip_of(&d, "udp");
    let (p, br) = (d.net.chain_prefix(), d.net.bridge());
    let rules = port_rules(&d);
    for want in [
        format!("nat: -A {p}-PORTS -d 127.0.0.1/32 ! -i {br} -p udp -m udp --dport {port} -j DNAT --to-destination {ip}:9053"),
        format!("filter: -A {p}-PORTS -d {ip}/32 ! -i {br} -o {br} -p udp -m udp --dport 9053 -j ACCEPT"),
    ] {
        assert!(rules.contains(&want), "missing {want:?} in {rules:#?}");
    }

    drop(echo);
    d.docker_ok(&["stop", "-t", "0", "udp"]);
    assert_eq!(port_rules(&d), Vec::<String>::new());
    // The proxy let go of the port.
    UdpSocket::bind(("127.0.0.1", port)).expect("the UDP port is free again");
    d.docker_ok(&["rm", "udp"]);
}

#[test]
fn dnat_from_the_host_to_our_bridge_gateway() {
    let d = daemon();
    let b = busybox();
    let gw = d.net.bip().trim_end_matches("/24").to_string();
    let port = free_ports(1);
    let spec = format!("{gw}:{port}:80");
    d.docker_ok(&[
        "run", "-d", "--name", "web", "-p", &spec, &b, "sh", "-c", HTTPD,
    ]);
    let ip = ip_of(&d, "web");
    let (p, br) = (d.net.chain_prefix(), d.net.bridge());
    let dnat = format!(
        "-d {gw}/32 ! -i {br} -p tcp -m tcp --dport {port} -j DNAT --to-destination {ip}:80"
    );
    assert!(
        port_rules(&d).contains(&format!("nat: -A {p}-PORTS {dnat}")),
        "{:#?}",
        port_rules(&d)
    );
    let page =
        common::servers::http_get(SocketAddr::new(gw.parse().unwrap(), port)).expect("no answer");
    assert!(page.contains("published"), "{page}");
    // The connection went through the DNAT rule (from OUTPUT), not only
    // through the proxy listening on the same address.
    let out = std::process::Command::new("iptables")
        .args([
            "-w",
            "5",
            "-t",
            "nat",
            "-L",
            &format!("{p}-PORTS"),
            "-v",
            "-n",
            "-x",
        ])
        .output()
        .expect("iptables");
    let listing = String::from_utf8_lossy(&out.stdout);
    let hits: u64 = listing
        .lines()
        .find(|l| l.contains("DNAT") && l.contains(&format!("dpt:{port}")))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no DNAT line in\n{listing}"));
    assert!(hits > 0, "the DNAT rule saw no packet:\n{listing}");

    // Disconnected from the network its ports go through, the container
    // keeps running elsewhere without them.
    d.docker_ok(&["network", "create", "--subnet", &d.net.subnet(1), "other"]);
    d.docker_ok(&["network", "connect", "other", "web"]);
    d.docker_ok(&["network", "disconnect", "bridge", "web"]);
    assert_eq!(port_rules(&d), Vec::<String>::new());
    assert_eq!(d.docker_ok(&["port", "web"]).trim(), "");
    TcpListener::bind((gw.as_str(), port)).expect("the port is free again");

    d.docker_ok(&["rm", "-f", "web"]);
    d.docker_ok(&["network", "rm", "other"]);
    assert_eq!(port_rules(&d), Vec::<String>::new());
}

#[test]
fn host_port_ranges_take_the_first_free_port() {
    let d = daemon();
    let b = busybox();
    // The first port of the range is taken: the next one is used.
    let first = free_ports(3);
    let taken = TcpListener::bind(("127.0.0.1", first)).unwrap();
    let spec = format!("127.0.0.1:{first}-{}:80", first + 2);
    d.docker_ok(&[
        "run", "-d", "--name", "ranged", "-p", &spec, &b, "sh", "-c", HTTPD,
    ]);
    let got = format!("127.0.0.1:{}", first + 1);
    assert_eq!(
        d.docker_ok(&["port", "ranged", "80"]).trim(),
        got,
        "{}",
        d.docker_ok(&["port", "ranged"])
    );
    let page =
        common::servers::http_get(got.parse().unwrap()).expect("no answer on the chosen port");
    assert!(page.contains("published"), "{page}");
    drop(taken);

    // A range for a range: the CLI pairs them up.
    let base = free_ports(2);
    let spec = format!("127.0.0.1:{base}-{}:80-81", base + 1);
    d.docker_ok(&[
        "run", "-d", "--name", "pairs", "-p", &spec, &b, "sleep", "300",
    ]);
    let mut lines = common::lines(&d.docker_ok(&["port", "pairs"]));
    lines.sort();
    assert_eq!(
        lines,
        [
            format!("80/tcp -> 127.0.0.1:{base}"),
            format!("81/tcp -> 127.0.0.1:{}", base + 1)
        ]
    );

    // Every port of the range taken: the start fails and says so.
    let err = d.docker_fails(&[
        "run",
        "-d",
        "--name",
        "full",
        "-p",
        &format!("127.0.0.1:{base}-{}:80", base + 1),
        &b,
        "sleep",
        "300",
    ]);
    assert!(err.contains("address already in use"), "{err}");

    // A reversed range is the daemon's 400 in dockerd's words (the CLI
    // refuses it itself, so through the API).
    let body = serde_json::json!({
        "Image": b,
        "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "20-10"}]}},
    });
    let r = d.raw("POST", "/containers/create", body.to_string().as_bytes());
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        String::from_utf8_lossy(&r.body).contains(r#"invalid port specification: \"20-10\""#),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    for c in ["ranged", "pairs", "full"] {
        d.docker_ok(&["rm", "-f", c]);
    }
    assert_eq!(port_rules(&d), Vec::<String>::new());
}

#[test]
fn rules_and_proxies_come_back_once_after_a_crash() {
    let mut d = daemon();
    let b = busybox();
    let tcp = free_ports(1);
    let udp = free_udp_port();
    let (tspec, uspec) = (
        format!("127.0.0.1:{tcp}:80"),
        format!("127.0.0.1:{udp}:9053/udp"),
    );
    d.docker_ok(&[
        "run", "-d", "--name", "keeps", "-p", &tspec, "-p", &uspec, &b, "sh", "-c", HTTPD,
    ]);
    let dies_port = free_ports(1);
    let dspec = format!("127.0.0.1:{dies_port}:80");
    d.docker_ok(&[
        "run", "-d", "--name", "dies", "-p", &dspec, &b, "sh", "-c", HTTPD,
    ]);
    let dies_pid = container(&d, "dies")["State"]["Pid"].as_i64().unwrap();
    let keeps_ip = ip_of(&d, "keeps");
    let before: Vec<String> = port_rules(&d)
        .into_iter()
        .filter(|r| r.contains(&format!("{keeps_ip}/")) || r.contains(&format!("{keeps_ip}:")))
        .collect();
    assert_eq!(before.len(), 6, "{before:#?}"); // DNAT, ACCEPT, hairpin for each

    d.kill9();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dies_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    d.start_again();

    // Exactly the survivor's rules, once; the dead one's are gone.
    assert_eq!(port_rules(&d), before);
    let jumps: Vec<String> = d
        .net
        .iptables_rules()
        .into_iter()
        .filter(|r| r.contains(&format!("-j {}-PORTS", d.net.chain_prefix())))
        .collect();
    assert_eq!(jumps.len(), 3, "{jumps:#?}"); // PREROUTING, OUTPUT, FORWARD
    let page =
        common::servers::http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, tcp))).expect("no answer");
    assert!(page.contains("published"), "{page}");
    let echo = udp_echo(&d, "keeps", 9053);
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, udp));
    assert_eq!(udp_ask(to, "again").as_deref(), Some("again"));
    drop(echo);
    // The dead one's port is free, and it starts again on it.
    d.docker_ok(&["start", "dies"]);
    assert!(
        common::servers::http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, dies_port))).is_some()
    );

    d.docker_ok(&["rm", "-f", "keeps", "dies"]);
    assert_eq!(port_rules(&d), Vec::<String>::new());
    d.kill9_and_restart();
    assert_eq!(port_rules(&d), Vec::<String>::new());
}

#[test]
fn add_host_host_gateway_is_the_default_bridge_gateway() {
    let d = daemon();
    let gw = d.net.bip().trim_end_matches("/24").to_string();
    let hosts = d.docker_ok(&[
        "run",
        "--rm",
        "--add-host",
        "outside:host-gateway",
        &busybox(),
        "cat",
        "/etc/hosts",
    ]);
    assert!(
        hosts.lines().any(|l| l == format!("{gw}\toutside")),
        "{hosts}"
    );
}

#[test]
fn disconnect_force_removes_what_a_gone_container_left() {
    let d = daemon();
    d.docker_ok(&[
        "network",
        "create",
        "--subnet",
        &d.net.subnet(2),
        "forcenet",
    ]);
    let net_id = d
        .docker_ok(&["network", "inspect", "-f", "{{.Id}}", "forcenet"])
        .trim()
        .to_string();
    // What a container that vanished under the daemon would leave: its
    // address lease on the network.
    let ghost = "f".repeat(64);
    let db = rusqlite::Connection::open(d.data_root().join("mydocker.db")).expect("db");
    db.execute(
        "INSERT INTO ip_leases (network_id, address, container_id, endpoint_id, mac, ifname, veth)
         VALUES (?1, ?2, ?3, ?4, '02:42:00:00:00:00', 'eth0', 'vethghost0')",
        rusqlite::params![net_id, d.net.addr(2, 5), ghost, "e".repeat(64)],
    )
    .expect("insert a stale lease");
    let leases = |db: &rusqlite::Connection| -> i64 {
        db.query_row(
            "SELECT COUNT(*) FROM ip_leases WHERE container_id = ?1",
            [&ghost],
            |r| r.get(0),
        )
        .unwrap()
    };

    // Without --force it is just an unknown container.
    let err = d.docker_fails(&["network", "disconnect", "forcenet", &ghost[..12]]);
    assert!(err.contains("No such container"), "{err}");
    assert_eq!(leases(&db), 1);
    // The network is still busy because of it.
    let err = d.docker_fails(&["network", "rm", "forcenet"]);
    assert!(err.contains("has active endpoints"), "{err}");

    d.docker_ok(&["network", "disconnect", "--force", "forcenet", &ghost[..12]]);
    assert_eq!(leases(&db), 0);
    let err = d.docker_fails(&["network", "disconnect", "-f", "forcenet", &ghost[..12]]);
    assert!(
        err.contains(&format!("endpoint {} not found", &ghost[..12])),
        "{err}"
    );
    d.docker_ok(&["network", "rm", "forcenet"]);
}
