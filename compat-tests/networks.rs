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
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    assert!(
        stray.is_empty(),
        "rules of removed networks left: {stray:?}"
    );
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
            "network",
            "create",
            "--subnet",
            &subnet,
            "--gateway",
            &gw,
            "--ip-range",
            &range,
            "--label",
            "team=net",
            "--internal",
            "backend",
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
    assert!(
        rules.contains(&format!("-i {bridge} ! -o {bridge} -j DROP")),
        "{rules}"
    );
    assert!(
        !rules.contains(&subnet),
        "internal network masqueraded:\n{rules}"
    );

    // A second network from the pools gets the first free pool subnet
    // and its masquerade rule.
    d.docker_ok(&["network", "create", "front"]);
    let f = inspect(&d, &["--type", "network", "front"]);
    let fsub = f["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(fsub, format!("172.31.{}.0/28", d.net.index));
    let rules = d.net.iptables_rules().join("\n");
    assert!(rules.contains(&format!("-s {fsub} ! -o br-")), "{rules}");

    let ls = d.docker_ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    for want in [
        "bridge bridge",
        "host host",
        "none null",
        "backend bridge",
        "front bridge",
    ] {
        assert!(
            common::lines(&ls).iter().any(|l| l == want),
            "{want} not in\n{ls}"
        );
    }
    let filtered = d.docker_ok(&[
        "network",
        "ls",
        "-q",
        "--no-trunc",
        "--filter",
        "label=team=net",
    ]);
    assert_eq!(common::lines(&filtered), vec![id.clone()]);
    let custom = d.docker_ok(&[
        "network",
        "ls",
        "--format",
        "{{.Name}}",
        "--filter",
        "type=custom",
    ]);
    assert_eq!(common::lines(&custom).len(), 2, "{custom}");

    // Predefined networks stay.
    let err = d.docker_fails(&["network", "rm", "bridge"]);
    assert!(
        err.contains("pre-defined network and cannot be removed"),
        "{err}"
    );

    let since = common::unix_now().to_string();
    d.docker_ok(&["network", "rm", "backend"]);
    assert!(!d.net.bridges().contains(&bridge), "bridge {bridge} left");
    let err = d.docker_fails(&["network", "inspect", "backend"]);
    assert!(err.contains("network backend not found"), "{err}");
    let until = (common::unix_now() + 1).to_string();
    let ev = d.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=network",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    assert!(ev.contains("destroy backend"), "{ev}");
    assert_clean(&d);
}

#[test]
fn containers_on_a_user_network_reach_each_other() {
    let d = daemon();
    let b = busybox();
    let subnet = d.net.subnet(1);
    let ip1 = d.net.addr(1, 5);
    d.docker_ok(&["network", "create", "--subnet", &subnet, "appnet"]);
    let one = d
        .docker_ok(&[
            "run",
            "-d",
            "--name",
            "one",
            "--network",
            "appnet",
            "--ip",
            &ip1,
            "--network-alias",
            "db",
            &b,
            "sleep",
            "300",
        ])
        .trim()
        .to_string();
    let c = inspect(&d, &["--type", "container", "one"]);
    let ep = &c["NetworkSettings"]["Networks"]["appnet"];
    assert_eq!(ep["IPAddress"], ip1);
    assert_eq!(ep["IPPrefixLen"], 28);
    assert_eq!(ep["Gateway"], d.net.addr(1, 1));
    assert_eq!(ep["Aliases"][0], "db");
    let o: Vec<u8> = ip1.split('.').map(|x| x.parse().unwrap()).collect();
    let mac = format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
    assert_eq!(ep["MacAddress"], mac);
    assert_eq!(ep["EndpointID"].as_str().unwrap().len(), 64);
    assert_eq!(
        ep["NetworkID"],
        inspect(&d, &["--type", "network", "appnet"])["Id"]
    );
    assert_eq!(addrs(&d, "one"), [format!("eth0 {ip1}/28")]);
    let route = in_netns(&d, "one", &["ip", "route", "show", "default"]);
    assert!(
        route.contains(&format!("via {}", d.net.addr(1, 1))),
        "{route}"
    );

    // The network lists it.
    let n = inspect(&d, &["--type", "network", "appnet"]);
    assert_eq!(n["Containers"][&one]["Name"], "one");
    assert_eq!(n["Containers"][&one]["IPv4Address"], format!("{ip1}/28"));

    // A second container pings the first by address; its /etc/hosts names
    // its own address.
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        "--hostname",
        "two",
        &b,
        "sh",
        "-c",
        &format!("ping -c 1 -W 5 {ip1} >/dev/null && echo reached; grep two /etc/hosts"),
    ]);
    assert!(out.contains("reached"), "{out}");
    assert!(
        out.contains(&d.net.addr(1, 2)),
        "own address not in /etc/hosts: {out}"
    );

    // The address is taken while `one` runs.
    let err = d.docker_fails(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        "--ip",
        &ip1,
        &b,
        "true",
    ]);
    assert!(err.contains("Address already in use"), "{err}");
    // Removal is refused while in use.
    let err = d.docker_fails(&["network", "rm", "appnet"]);
    assert!(err.contains("has active endpoints"), "{err}");
    // Stopping releases the address; the interface goes with the namespace.
    d.docker_ok(&["stop", "-t", "0", "one"]);
    assert_eq!(leases(&d), Vec::<String>::new());
    assert_eq!(d.net.veths(), Vec::<String>::new());
    assert_clean(&d);
}

#[test]
fn default_bridge_settings_and_etc_hosts() {
    let d = daemon();
    let b = busybox();
    let out = d.docker_ok(&[
        "run",
        "--rm",
        &b,
        "sh",
        "-c",
        "ip -o -4 addr show eth0; ip route",
    ]);
    let want = format!("172.30.{}.2/24", d.net.index);
    assert!(out.contains(&want), "{out}");
    assert!(
        out.contains(&format!("default via 172.30.{}.1", d.net.index)),
        "{out}"
    );
    d.docker_ok(&["run", "-d", "--name", "web", &b, "sleep", "300"]);
    let c = inspect(&d, &["--type", "container", "web"]);
    let ns = &c["NetworkSettings"];
    assert_eq!(ns["IPAddress"], format!("172.30.{}.2", d.net.index));
    assert_eq!(ns["Gateway"], format!("172.30.{}.1", d.net.index));
    assert_eq!(ns["IPPrefixLen"], 24);
    assert_eq!(ns["Networks"]["bridge"]["IPAddress"], ns["IPAddress"]);
    let n = inspect(&d, &["--type", "network", "bridge"]);
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], d.net.bridge_subnet());
    assert_eq!(
        n["Options"]["com.docker.network.bridge.name"],
        d.net.bridge()
    );
    // --ip and aliases need a user-defined network, as in dockerd.
    let err = d.docker_fails(&[
        "run",
        "--rm",
        "--ip",
        &format!("172.30.{}.9", d.net.index),
        &b,
        "true",
    ]);
    assert!(err.contains("user defined networks only"), "{err}");
    // none: loopback only; host: the host's interfaces.
    let out = d.docker_ok(&["run", "--rm", "--network", "none", &b, "ip", "-o", "link"]);
    assert_eq!(common::lines(&out).len(), 1, "{out}");
    let out = d.docker_ok(&["run", "--rm", "--network", "host", &b, "ip", "-o", "link"]);
    assert!(out.contains(&d.net.bridge()), "{out}");
    assert_clean(&d);
}

#[test]
fn connect_and_disconnect_a_running_container() {
    let d = daemon();
    let b = busybox();
    let sub = d.net.subnet(2);
    d.docker_ok(&["network", "create", "--subnet", &sub, "extra"]);
    d.docker_ok(&["run", "-d", "--name", "box", &b, "sleep", "300"]);
    assert_eq!(addrs(&d, "box").len(), 1);
    let ip = d.net.addr(2, 7);
    d.docker_ok(&[
        "network", "connect", "--ip", &ip, "--alias", "side", "extra", "box",
    ]);
    let a = addrs(&d, "box");
    assert!(a.contains(&format!("eth1 {ip}/28")), "{a:?}");
    let c = inspect(&d, &["--type", "container", "box"]);
    assert_eq!(c["NetworkSettings"]["Networks"]["extra"]["IPAddress"], ip);
    let err = d.docker_fails(&["network", "connect", "extra", "box"]);
    assert!(err.contains("already exists"), "{err}");
    d.docker_ok(&["network", "disconnect", "extra", "box"]);
    let a = addrs(&d, "box");
    assert_eq!(a.len(), 1, "{a:?}");
    assert!(a[0].starts_with("eth0 "), "{a:?}");
    let c = inspect(&d, &["--type", "container", "box"]);
    assert!(c["NetworkSettings"]["Networks"].get("extra").is_none());
    // Connected while stopped: the interface comes at the next start.
    d.docker_ok(&["stop", "-t", "0", "box"]);
    d.docker_ok(&["network", "connect", "extra", "box"]);
    d.docker_ok(&["start", "box"]);
    let a = addrs(&d, "box");
    assert_eq!(a.len(), 2, "{a:?}");
    assert!(a.iter().any(|x| x.starts_with("eth1 ")), "{a:?}");
    assert_clean(&d);
}

#[test]
fn container_mode_shares_localhost() {
    let d = daemon();
    let b = busybox();
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        &b,
        "sh",
        "-c",
        "echo shared > /tmp/index.html && exec httpd -f -p 8080 -h /tmp",
    ]);
    let out = d.docker_ok(&["run", "--rm", "--network", "container:srv", &b, "sh", "-c",
        "for i in $(seq 50); do wget -qO- http://127.0.0.1:8080/ && exit 0; sleep 0.1; done; exit 1"]);
    assert_eq!(out.trim(), "shared");
    let mine = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "container:srv",
        &b,
        "ip",
        "-o",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    let srv_ip = inspect(&d, &["--type", "container", "srv"])["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(mine.contains(&srv_ip), "{mine} vs {srv_ip}");
    d.docker_ok(&["stop", "-t", "0", "srv"]);
    let err = d.docker_fails(&["run", "--rm", "--network", "container:srv", &b, "true"]);
    assert!(err.contains("non running container"), "{err}");
    assert_clean(&d);
}

#[test]
fn bad_input_in_dockerds_words() {
    let d = TestDaemon::start();
    let sub = d.net.subnet(3);
    d.docker_ok(&["network", "create", "--subnet", &sub, "first"]);
    let err = d.docker_fails(&["network", "create", "--subnet", &sub, "second"]);
    assert!(
        err.contains("Pool overlaps with other one on this address space"),
        "{err}"
    );
    let err = d.docker_fails(&["network", "create", "first"]);
    assert!(
        err.contains("network with name first already exists"),
        "{err}"
    );

    let r = d.raw(
        "POST",
        "/networks/create",
        br#"{"Name":"x","IPAM":{"Config":[{"Subnet":"banana"}]}}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("invalid CIDR"), "{}", r.text());
    let body = format!(
        r#"{{"Name":"x","IPAM":{{"Config":[{{"Subnet":"{}","Gateway":"{}"}}]}}}}"#,
        d.net.subnet(4),
        d.net.addr(5, 1)
    );
    let r = d.raw("POST", "/networks/create", body.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("invalid gateway"), "{}", r.text());
    let r = d.raw("POST", "/networks/create", br#"{"Name":"bridge"}"#);
    assert_eq!(r.status, 403, "{}", r.text());
    let r = d.raw("GET", "/networks/nope", b"");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("network nope not found"), "{}", r.text());
    let r = d.raw("DELETE", "/networks/nope", b"");
    assert_eq!(r.status, 404);

    d.pull(&busybox());
    let b = busybox();
    let err = d.docker_fails(&["run", "--rm", "--network", "nope", &b, "true"]);
    assert!(err.contains("network nope not found"), "{err}");
    let err = d.docker_fails(&[
        "run",
        "--rm",
        "--network",
        "first",
        "--ip",
        &d.net.addr(6, 3),
        &b,
        "true",
    ]);
    assert!(
        err.contains("no configured subnet or ip-range contain the IP address"),
        "{err}"
    );
    // Nothing half-made by the refused runs.
    assert!(common::lines(&d.docker_ok(&["ps", "-aq"])).is_empty());
    assert_clean(&d);
}

#[test]
fn nothing_left_after_a_daemon_crash() {
    let mut d = daemon();
    let b = busybox();
    d.docker_ok(&[
        "network",
        "create",
        "--subnet",
        &d.net.subnet(5),
        "crashnet",
    ]);
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "keeps",
        "--network",
        "crashnet",
        &b,
        "sleep",
        "300",
    ]);
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "dies",
        "--network",
        "crashnet",
        &b,
        "sleep",
        "300",
    ]);
    let keeps_ip = addrs(&d, "keeps");
    assert_eq!(leases(&d).len(), 2);
    let dies_pid = inspect(&d, &["--type", "container", "dies"])["State"]["Pid"]
        .as_i64()
        .unwrap();

    d.kill9();
    // The container dies while no daemon is there to see it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dies_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    d.start_again();

    // The survivor keeps its address and interface; the dead one's lease,
    // veth and namespace are gone.
    assert_eq!(addrs(&d, "keeps"), keeps_ip);
    let ls = leases(&d);
    assert_eq!(ls.len(), 1, "{ls:?}");
    assert_eq!(d.net.veths().len(), 1, "{:?}", d.net.veths());
    let running = d.docker_ok(&["ps", "--format", "{{.Names}}"]);
    assert_eq!(common::lines(&running), ["keeps"]);
    // And it can start again with the network as before.
    d.docker_ok(&["start", "dies"]);
    assert_eq!(leases(&d).len(), 2);

    d.docker_ok(&["rm", "-f", "keeps", "dies"]);
    d.kill9_and_restart();
    assert_clean(&d);
}

/// `GET /` on 127.0.0.1:port from the host.
fn http_get(port: u16) -> Option<String> {
    common::servers::http_get(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

const HTTPD: &str =
    "mkdir -p /www && echo published > /www/index.html && exec httpd -f -p 80 -h /www";

#[test]
fn published_ports_reach_the_container_and_survive_a_crash() {
    let mut d = daemon();
    let b = busybox();
    let port = free_port();
    let spec = format!("127.0.0.1:{port}:80");
    d.docker_ok(&[
        "run", "-d", "--name", "web", "-p", &spec, &b, "sh", "-c", HTTPD,
    ]);
    let page = http_get(port).expect("no answer on the published port");
    assert!(page.contains("published"), "{page}");
    let out = d.docker_ok(&["port", "web"]);
    assert_eq!(out.trim(), format!("80/tcp -> 127.0.0.1:{port}"));
    let ps = d.docker_ok(&["ps", "--format", "{{.Ports}}", "--filter", "name=web"]);
    assert_eq!(ps.trim(), format!("127.0.0.1:{port}->80/tcp"));

    // -P publishes exposed ports on ephemeral host ports.
    d.docker_ok(&[
        "run", "-d", "--name", "all", "--expose", "80", "-P", &b, "sh", "-c", HTTPD,
    ]);
    let out = d.docker_ok(&["port", "all", "80"]);
    let eph: u16 = out
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("docker port: {out}"));
    assert!(http_get(eph).is_some_and(|p| p.contains("published")));

    // The port is taken: the start fails saying so, with nothing wired.
    let leases_before = leases(&d).len();
    let veths_before = d.net.veths().len();
    let err = d.docker_fails(&[
        "run", "-d", "--name", "clash", "-p", &spec, &b, "sleep", "300",
    ]);
    assert!(err.contains("address already in use"), "{err}");
    assert_eq!(leases(&d).len(), leases_before);
    assert_eq!(d.net.veths().len(), veths_before);

    // Still served after a daemon crash and restart.
    d.kill9_and_restart();
    let page = http_get(port).expect("no answer after the daemon restarted");
    assert!(page.contains("published"), "{page}");
    assert_eq!(
        d.docker_ok(&["port", "web"]).trim(),
        format!("80/tcp -> 127.0.0.1:{port}")
    );

    // Stopping closes the port.
    d.docker_ok(&["stop", "-t", "0", "web"]);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert_clean(&d);
}
