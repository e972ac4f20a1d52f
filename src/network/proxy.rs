//! The userland proxy of published ports, in the daemon (dockerd runs a
//! docker-proxy process per port; one task each does the same here): it
//! serves what DNAT cannot, connections to `127.0.0.1:PORT`, and holds
//! the host port so nothing else takes it.
//!
//! Listeners are bound before anything is recorded, all or none, so a
//! port in use fails the start with nothing half-wired. TCP connections
//! are piped to the container; UDP datagrams go through one flow per
//! client address (a socket of its own towards the container, so replies
//! find their way back), dropped after [`UDP_IDLE`] without traffic, as
//! docker-proxy does.

use std::collections::hash_map::{Entry, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UdpSocket};
use tokio::task::{AbortHandle, JoinSet};

use super::ports::{PortMapping, PortRequest, Proto};
use crate::error::{EngineError, EngineResult};

/// docker-proxy's UDP connection-tracking timeout.
pub const UDP_IDLE: Duration = Duration::from_secs(90);
/// The largest UDP payload over IPv4.
const UDP_MAX: usize = 65507;

/// A bound host port, not yet served.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Listener {
    async fn bind(proto: Proto, addr: SocketAddr) -> std::io::Result<Listener> {
        Ok(match proto {
            Proto::Tcp => Listener::Tcp(TcpListener::bind(addr).await?),
            Proto::Udp => Listener::Udp(UdpSocket::bind(addr).await?),
        })
    }

    fn port(&self) -> Option<u16> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok().map(|a| a.port()),
            Listener::Udp(s) => s.local_addr().ok().map(|a| a.port()),
        }
    }

    /// Serves the port until the returned handle aborts it.
    pub fn serve(self, target: SocketAddr) -> AbortHandle {
        match self {
            Listener::Tcp(l) => tokio::spawn(serve_tcp(l, target)).abort_handle(),
            Listener::Udp(s) => tokio::spawn(serve_udp(s, target, UDP_IDLE)).abort_handle(),
        }
    }
}

/// Binds one host port per request (the first free one of a range, a
/// kernel-chosen one for port 0), all or none; errors in dockerd's words.
pub async fn bind_all(
    endpoint: &str,
    reqs: &[PortRequest],
) -> EngineResult<Vec<(PortMapping, Listener)>> {
    let mut bound = vec![];
    for r in reqs {
        let (first, last) = r.host_ports;
        let mut failure = None;
        for port in first..=last {
            let addr = SocketAddr::new(IpAddr::V4(r.host_ip), port);
            match Listener::bind(r.proto, addr).await {
                Ok(l) => {
                    let host_port = l.port().unwrap_or(port);
                    let m = PortMapping {
                        container_port: r.container_port,
                        proto: r.proto,
                        host_ip: r.host_ip,
                        host_port,
                    };
                    bound.push((m, l));
                    failure = None;
                    break;
                }
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            let why = if e.kind() == std::io::ErrorKind::AddrInUse {
                "bind: address already in use".to_string()
            } else {
                e.to_string()
            };
            let ports = if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            };
            return Err(EngineError::Internal(format!(
                "driver failed programming external connectivity on endpoint {endpoint}: Error starting userland proxy: listen {}4 {}:{ports}: {why}",
                r.proto, r.host_ip
            )));
        }
    }
    Ok(bound)
}

async fn serve_tcp(listener: TcpListener, target: SocketAddr) {
    loop {
        let mut client = match listener.accept().await {
            Ok((c, _)) => c,
            Err(_) => {
                // Out of descriptors, say: give the others a moment.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            if let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await {
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
    }
}

/// One client's flow: its socket towards the container, and when it last
/// carried anything (milliseconds since the proxy started).
struct Flow {
    upstream: Arc<UdpSocket>,
    last: Arc<AtomicU64>,
}

async fn serve_udp(front: UdpSocket, target: SocketAddr, idle: Duration) {
    let front = Arc::new(front);
    let epoch = Instant::now();
    let now = move || epoch.elapsed().as_millis() as u64;
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    // The reply relays; each ends with its client's address when idle.
    // Dropped (and so aborted) with this task.
    let mut relays: JoinSet<SocketAddr> = JoinSet::new();
    let mut buf = vec![0u8; UDP_MAX];
    loop {
        tokio::select! {
            got = front.recv_from(&mut buf) => {
                let Ok((n, client)) = got else {
                    continue;
                };
                let flow = match flows.entry(client) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => {
                        let Ok(upstream) = connect_udp(target).await else {
                            continue;
                        };
                        let upstream = Arc::new(upstream);
                        let last = Arc::new(AtomicU64::new(now()));
                        let relay = relay_replies(
                            front.clone(),
                            upstream.clone(),
                            client,
                            last.clone(),
                            idle,
                            now,
                        );
                        relays.spawn(relay);
                        e.insert(Flow { upstream, last })
                    }
                };
                flow.last.store(now(), Ordering::Relaxed);
                let _ = flow.upstream.send(&buf[..n]).await;
            }
            Some(Ok(client)) = relays.join_next(), if !relays.is_empty() => {
                flows.remove(&client);
            }
        }
    }
}

async fn connect_udp(target: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind(SocketAddr::new(IpAddr::V4([0, 0, 0, 0].into()), 0)).await?;
    s.connect(target).await?;
    Ok(s)
}

/// Sends the container's replies back to `client` until the flow has
/// been idle for `idle`.
async fn relay_replies(
    front: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
    last: Arc<AtomicU64>,
    idle: Duration,
    now: impl Fn() -> u64,
) -> SocketAddr {
    let idle_ms = idle.as_millis() as u64;
    let mut buf = vec![0u8; UDP_MAX];
    loop {
        let quiet = now().saturating_sub(last.load(Ordering::Relaxed));
        if quiet >= idle_ms {
            return client;
        }
        let wait = Duration::from_millis(idle_ms - quiet);
        match tokio::time::timeout(wait, upstream.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                last.store(now(), Ordering::Relaxed);
                let _ = front.send_to(&buf[..n], client).await;
            }
            // An ICMP error for an earlier datagram (nothing listening
            // yet): the flow stays, as a later datagram may find a server.
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn req(port: u16, proto: Proto, ports: (u16, u16)) -> PortRequest {
        PortRequest {
            container_port: port,
            proto,
            host_ip: Ipv4Addr::LOCALHOST,
            host_ports: ports,
        }
    }

    #[tokio::test]
    async fn a_taken_port_fails_the_whole_set() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let reqs = [req(1, Proto::Tcp, (0, 0)), req(2, Proto::Tcp, (port, port))];
        let e = bind_all("web", &reqs).await.unwrap_err().to_string();
        assert!(e.contains("address already in use"), "{e}");
        assert!(e.contains(&format!("listen tcp4 127.0.0.1:{port}")), "{e}");
    }

    #[tokio::test]
    async fn a_range_takes_its_first_free_port() {
        // Two adjacent free ports, the first then taken.
        let (taken, next) = loop {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let p = l.local_addr().unwrap().port();
            if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
                break (l, p + 1);
            }
        };
        let first = taken.local_addr().unwrap().port();
        let bound = bind_all("web", &[req(80, Proto::Tcp, (first, next))])
            .await
            .unwrap();
        assert_eq!(bound[0].0.host_port, next);
        drop(bound);
        let e = bind_all("web", &[req(80, Proto::Tcp, (first, first))])
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("address already in use"), "{e}");
    }

    /// A UDP echo server that answers with the sender's port, so a test
    /// can tell flows apart.
    async fn echo_server() -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = s.recv_from(&mut buf).await {
                let reply = format!("{}:{}", String::from_utf8_lossy(&buf[..n]), from.port());
                let _ = s.send_to(reply.as_bytes(), from).await;
            }
        });
        addr
    }

    async fn ask(client: &UdpSocket, to: SocketAddr, what: &str) -> String {
        client.send_to(what.as_bytes(), to).await.unwrap();
        let mut buf = [0u8; 1500];
        let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
            .await
            .expect("no reply through the proxy")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn udp_flows_per_client_and_idle_timeout() {
        let target = echo_server().await;
        let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let at = front.local_addr().unwrap();
        let proxy = tokio::spawn(serve_udp(front, target, Duration::from_millis(300)));

        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a1 = ask(&a, at, "a").await;
        let a2 = ask(&a, at, "a").await;
        let b1 = ask(&b, at, "b").await;
        // One flow (one upstream port) per client, kept while in use.
        assert!(a1.starts_with("a:") && b1.starts_with("b:"), "{a1} {b1}");
        assert_eq!(a1, a2);
        assert_ne!(a1[2..], b1[2..]);
        // Idle past the timeout: the flow is gone, a new one is opened.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let a3 = ask(&a, at, "a").await;
        assert_ne!(a1, a3);
        proxy.abort();
    }
}
