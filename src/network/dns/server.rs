//! One container's embedded DNS server: a UDP socket and a TCP listener on
//! 127.0.0.11:53 inside its network namespace, served by the daemon. Names
//! of ours are answered from the database ([`super::lookup`]); everything
//! else is forwarded to the upstream servers from the daemon's own
//! namespace (so a resolver on the host's loopback works too).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::AbortHandle;

use super::lookup;
use crate::store::networks as rows;
use crate::store::Store;

/// The address containers see.
pub const LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)), 53);
/// dockerd's TTL for its own records.
const TTL: u32 = 600;
/// How long an upstream server gets to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// A TCP client that says nothing for this long is dropped.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// What a container's server answers with.
pub struct Context {
    pub store: Store,
    /// The container asking (names are those of its networks).
    pub container_id: String,
    pub upstream: Vec<SocketAddr>,
    pub search: Vec<String>,
}

/// Binds the server's sockets inside the namespace pinned at `netns`, from
/// a short-lived thread of its own: the sockets stay in that namespace,
/// the daemon's threads never change theirs.
pub fn bind_in(netns: &Path) -> std::io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let ns = std::fs::File::open(netns)?;
    std::thread::Builder::new()
        .name("dns-bind".into())
        .spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            let udp = std::net::UdpSocket::bind(LISTEN)?;
            let tcp = std::net::TcpListener::bind(LISTEN)?;
            udp.set_nonblocking(true)?;
            tcp.set_nonblocking(true)?;
            Ok((udp, tcp))
        })?
        .join()
        .map_err(|_| std::io::Error::other("dns bind thread panicked"))?
}

/// Serves both sockets until the returned tasks are aborted.
pub fn spawn(
    sockets: (std::net::UdpSocket, std::net::TcpListener),
    ctx: Context,
) -> std::io::Result<Vec<AbortHandle>> {
    let udp = Arc::new(UdpSocket::from_std(sockets.0)?);
    let tcp = TcpListener::from_std(sockets.1)?;
    let ctx = Arc::new(ctx);
    let u = tokio::spawn(serve_udp(udp, ctx.clone()));
    let t = tokio::spawn(serve_tcp(tcp, ctx));
    Ok(vec![u.abort_handle(), t.abort_handle()])
}

async fn serve_udp(sock: Arc<UdpSocket>, ctx: Arc<Context>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let query = buf[..n].to_vec();
        let (sock, ctx) = (sock.clone(), ctx.clone());
        tokio::spawn(async move {
            if let Some(reply) = answer(&ctx, &query, false).await {
                let _ = sock.send_to(&reply, peer).await;
            }
        });
    }
}

async fn serve_tcp(listener: TcpListener, ctx: Arc<Context>) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _ = serve_tcp_client(conn, &ctx).await;
        });
    }
}

/// RFC 1035 TCP framing: a two-byte length before each message.
async fn serve_tcp_client(mut conn: TcpStream, ctx: &Context) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let mut query = vec![0u8; u16::from_be_bytes(len) as usize];
        conn.read_exact(&mut query).await?;
        let Some(reply) = answer(ctx, &query, true).await else {
            return Ok(());
        };
        let n = u16::try_from(reply.len()).map_err(std::io::Error::other)?;
        conn.write_all(&n.to_be_bytes()).await?;
        conn.write_all(&reply).await?;
    }
}

/// The reply to one query: ours, forwarded, or an error; `None` for what
/// is not a DNS query at all.
async fn answer(ctx: &Context, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let req = Message::from_vec(query).ok()?;
    if req.metadata.message_type != MessageType::Query {
        return None;
    }
    if req.metadata.op_code != OpCode::Query || req.queries.len() != 1 {
        return reply(&req, ResponseCode::NotImp, vec![]);
    }
    let q = &req.queries[0];
    if matches!(q.query_type(), RecordType::A | RecordType::AAAA) {
        let names = ctx
            .store
            .call(|conn| rows::names(conn))
            .await
            .unwrap_or_default();
        let qname = q.name().to_ascii();
        let ips = lookup::resolve(&names, &ctx.container_id, &qname, &ctx.search);
        if !ips.is_empty() {
            // Ours: A records; no IPv6 addresses, so AAAA gets none.
            let records = match q.query_type() {
                RecordType::A => ips
                    .into_iter()
                    .map(|ip| Record::from_rdata(q.name().clone(), TTL, RData::A(A(ip))))
                    .collect(),
                _ => vec![],
            };
            return reply(&req, ResponseCode::NoError, records);
        }
    }
    if q.query_type() == RecordType::PTR {
        if let Some(ip) = lookup::arpa_to_ipv4(&q.name().to_ascii()) {
            let names = ctx
                .store
                .call(|conn| rows::names(conn))
                .await
                .unwrap_or_default();
            let target = lookup::reverse(&names, &ctx.container_id, ip)
                .and_then(|n| Name::from_ascii(format!("{n}.")).ok());
            if let Some(target) = target {
                let record = Record::from_rdata(q.name().clone(), TTL, RData::PTR(PTR(target)));
                return reply(&req, ResponseCode::NoError, vec![record]);
            }
        }
    }
    match forward(&ctx.upstream, query, tcp).await {
        Some(r) => Some(r),
        None => reply(&req, ResponseCode::ServFail, vec![]),
    }
}

fn reply(req: &Message, code: ResponseCode, answers: Vec<Record>) -> Option<Vec<u8>> {
    let mut m = Message::response(req.metadata.id, req.metadata.op_code);
    m.metadata.recursion_desired = req.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.authoritative = code == ResponseCode::NoError;
    m.metadata.response_code = code;
    m.queries = req.queries.clone();
    m.answers = answers;
    m.to_vec().ok()
}

/// The first upstream answer carrying the query's ID.
async fn forward(upstream: &[SocketAddr], query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let id = query.get(..2)?;
    for server in upstream {
        let got = if tcp {
            tokio::time::timeout(UPSTREAM_TIMEOUT, forward_tcp(*server, query)).await
        } else {
            tokio::time::timeout(UPSTREAM_TIMEOUT, forward_udp(*server, query)).await
        };
        if let Ok(Ok(r)) = got {
            if r.get(..2) == Some(id) {
                return Some(r);
            }
        }
    }
    None
}

async fn forward_udp(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(server).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 65535];
    let n = sock.recv(&mut buf).await?;
    buf.truncate(n);
    Ok(buf)
}

async fn forward_tcp(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut conn = TcpStream::connect(server).await?;
    let n = u16::try_from(query.len()).map_err(std::io::Error::other)?;
    conn.write_all(&n.to_be_bytes()).await?;
    conn.write_all(query).await?;
    let mut len = [0u8; 2];
    conn.read_exact(&mut len).await?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    conn.read_exact(&mut buf).await?;
    Ok(buf)
}
