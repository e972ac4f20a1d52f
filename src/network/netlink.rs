//! The kernel side of the bridge driver, over rtnetlink: bridges, veth
//! pairs, addresses and routes, on the host or inside a container's
//! network namespace.
//!
//! Each call runs on a short-lived thread of its own with a one-thread
//! tokio runtime: a netlink socket belongs to the namespace it was opened
//! in, so the thread first `setns`es into the target namespace, and no
//! thread of the daemon's pools ever changes namespace.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlag, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, IpVersion};

use super::subnet::Subnet;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("link {0} not found")]
    NoLink(String),
}

type Result<T> = std::result::Result<T, NetlinkError>;

/// Runs `f` with a netlink handle opened in `netns` (the daemon's own when
/// `None`), on a thread of its own.
fn run<T, F, Fut>(netns: Option<&Path>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    let netns: Option<PathBuf> = netns.map(Path::to_path_buf);
    let worker =
        std::thread::Builder::new()
            .name("netlink".into())
            .spawn(move || -> Result<T> {
                if let Some(p) = &netns {
                    let ns = std::fs::File::open(p)?;
                    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(std::io::Error::from)?;
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()?;
                rt.block_on(async move {
                    let (conn, handle, _) = rtnetlink::new_connection()?;
                    tokio::spawn(conn);
                    f(handle).await
                })
            })?;
    worker
        .join()
        .map_err(|_| NetlinkError::Io(std::io::Error::other("netlink thread panicked")))?
}

fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn add_address(h: &Handle, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<()> {
    match h
        .address()
        .add(index, IpAddr::V4(ip), prefix)
        .execute()
        .await
    {
        Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
        r => Ok(r?),
    }
}

/// Creates the bridge `name` if missing, gives it `gateway/prefix` and
/// brings it up. Returns whether it was created now.
pub fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<bool> {
    let name = name.to_string();
    run(None, move |h| async move {
        let (_, created) = bridge_up(&h, &name, gateway, prefix).await?;
        Ok(created)
    })
}

/// [`ensure_bridge`] on an open handle: the bridge's index and whether it
/// was created now.
async fn bridge_up(h: &Handle, name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<(u32, bool)> {
    let mut created = false;
    let index = match index_of(h, name).await? {
        Some(i) => i,
        None => {
            h.link().add().bridge(name.to_string()).execute().await?;
            created = true;
            index_of(h, name)
                .await?
                .ok_or_else(|| NetlinkError::NoLink(name.to_string()))?
        }
    };
    add_address(h, index, gateway, prefix).await?;
    h.link().set(index).up().execute().await?;
    Ok((index, created))
}

/// Deletes a link (a bridge, or a veth with its peer); absent is fine.
pub fn delete_link(name: &str) -> Result<()> {
    let name = name.to_string();
    run(None, move |h| async move {
        if let Some(i) = index_of(&h, &name).await? {
            match h.link().del(i).execute().await {
                Err(e) if is_errno(&e, libc::ENODEV) => {}
                r => r?,
            }
        }
        Ok(())
    })
}

/// One container interface to wire.
#[derive(Clone, Debug)]
pub struct VethSpec {
    pub bridge: String,
    /// Host end (stays on the bridge).
    pub host: String,
    /// Name inside the container: eth0, eth1, ...
    pub ifname: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub mac: [u8; 6],
    /// Default route via this gateway when set (the first interface).
    pub gateway: Option<Ipv4Addr>,
}

/// Makes the veth pair with its host end up on the bridge (created if
/// missing, with `bridge_addr`) and the other end born inside `netns`,
/// then configures that end. Undoes the pair on failure.
///
/// The peer is created in the namespace rather than moved there: moving
/// a link between namespaces waits out an RCU grace period (10-20 ms),
/// the largest cost of a container start on a network.
pub fn add_veth(spec: &VethSpec, netns: &Path, bridge_addr: (Ipv4Addr, u8)) -> Result<()> {
    let r = plug_veth(spec, netns, bridge_addr).and_then(|()| configure_peer(spec, netns));
    if r.is_err() {
        let _ = delete_link(&spec.host);
    }
    r
}

fn plug_veth(spec: &VethSpec, netns: &Path, (gateway, prefix): (Ipv4Addr, u8)) -> Result<()> {
    let spec = spec.clone();
    let ns = std::fs::File::open(netns)?;
    run(None, move |h| async move {
        let (bridge, _) = bridge_up(&h, &spec.bridge, gateway, prefix).await?;
        let mut peer = LinkMessage::default();
        peer.attributes.extend([
            LinkAttribute::IfName(spec.ifname.clone()),
            LinkAttribute::Address(spec.mac.to_vec()),
            LinkAttribute::NetNsFd(ns.as_raw_fd()),
        ]);
        let mut req = h.link().add();
        let m = req.message_mut();
        m.header.flags.push(LinkFlag::Up);
        m.header.change_mask.push(LinkFlag::Up);
        m.attributes.extend([
            LinkAttribute::IfName(spec.host.clone()),
            LinkAttribute::Controller(bridge),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
            ]),
        ]);
        req.execute().await?;
        Ok(())
    })
}

/// Address, up and default route for the end inside the namespace (the
/// kernel refuses to bring it up at creation, before its peer exists).
fn configure_peer(spec: &VethSpec, netns: &Path) -> Result<()> {
    let spec = spec.clone();
    run(Some(netns), move |h| async move {
        let i = index_of(&h, &spec.ifname)
            .await?
            .ok_or_else(|| NetlinkError::NoLink(spec.ifname.clone()))?;
        add_address(&h, i, spec.address, spec.prefix).await?;
        h.link().set(i).up().execute().await?;
        if let Some(lo) = index_of(&h, "lo").await? {
            h.link().set(lo).up().execute().await?;
        }
        if let Some(gw) = spec.gateway {
            h.route().add().v4().gateway(gw).execute().await?;
        }
        Ok(())
    })
}

/// Brings `lo` up in `netns` (containers without any endpoint).
pub fn loopback_up(netns: &Path) -> Result<()> {
    run(Some(netns), move |h| async move {
        if let Some(lo) = index_of(&h, "lo").await? {
            h.link().set(lo).up().execute().await?;
        }
        Ok(())
    })
}

/// Destination subnets of the host's IPv4 routes, the default route
/// excepted (it would overlap everything).
pub fn host_routes() -> Result<Vec<Subnet>> {
    run(None, |h| async move {
        let mut routes = h.route().get(IpVersion::V4).execute();
        let mut out = vec![];
        while let Some(r) = routes.try_next().await? {
            let len = r.header.destination_prefix_length;
            if len == 0 {
                continue;
            }
            let dst = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            if let Some(net) = dst.and_then(|d| Subnet::new(d, len)) {
                out.push(net);
            }
        }
        Ok(out)
    })
}

/// A host link: name and, when enslaved, its bridge's name.
#[derive(Clone, Debug, PartialEq)]
pub struct HostLink {
    pub name: String,
    pub master: Option<String>,
}

/// Every link of the host namespace.
pub fn host_links() -> Result<Vec<HostLink>> {
    run(None, |h| async move {
        let mut links = h.link().get().execute();
        let mut raw: Vec<LinkMessage> = vec![];
        while let Some(l) = links.try_next().await? {
            raw.push(l);
        }
        let name_of = |l: &LinkMessage| {
            l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })
        };
        let names: std::collections::HashMap<u32, String> = raw
            .iter()
            .filter_map(|l| Some((l.header.index, name_of(l)?)))
            .collect();
        Ok(raw
            .iter()
            .filter_map(|l| {
                let master = l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::Controller(i) => names.get(i).cloned(),
                    _ => None,
                });
                Some(HostLink {
                    name: name_of(l)?,
                    master,
                })
            })
            .collect())
    })
}
