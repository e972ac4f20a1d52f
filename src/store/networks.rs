//! Network, endpoint and IP lease rows. The JSON columns belong to the
//! network engine.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::EngineResult;

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkRow {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub config: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EndpointRow {
    pub container_id: String,
    pub network_id: String,
    pub config: String,
    pub position: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LeaseRow {
    pub network_id: String,
    pub address: String,
    pub container_id: String,
    pub endpoint_id: String,
    pub mac: String,
    pub ifname: String,
    pub veth: String,
}

fn network(r: &rusqlite::Row<'_>) -> rusqlite::Result<NetworkRow> {
    Ok(NetworkRow {
        id: r.get(0)?,
        name: r.get(1)?,
        driver: r.get(2)?,
        config: r.get(3)?,
        created_at: r.get(4)?,
    })
}

fn endpoint(r: &rusqlite::Row<'_>) -> rusqlite::Result<EndpointRow> {
    Ok(EndpointRow {
        container_id: r.get(0)?,
        network_id: r.get(1)?,
        config: r.get(2)?,
        position: r.get(3)?,
    })
}

fn lease(r: &rusqlite::Row<'_>) -> rusqlite::Result<LeaseRow> {
    Ok(LeaseRow {
        network_id: r.get(0)?,
        address: r.get(1)?,
        container_id: r.get(2)?,
        endpoint_id: r.get(3)?,
        mac: r.get(4)?,
        ifname: r.get(5)?,
        veth: r.get(6)?,
    })
}

const NET_COLS: &str = "id, name, driver, config, created_at";
const EP_COLS: &str = "container_id, network_id, config, position";
const LEASE_COLS: &str = "network_id, address, container_id, endpoint_id, mac, ifname, veth";

pub fn insert(conn: &Connection, n: &NetworkRow) -> EngineResult<()> {
    conn.execute(
        &format!("INSERT INTO networks ({NET_COLS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
        params![n.id, n.name, n.driver, n.config, n.created_at],
    )?;
    Ok(())
}

pub fn get(conn: &Connection, id: &str) -> EngineResult<Option<NetworkRow>> {
    let sql = format!("SELECT {NET_COLS} FROM networks WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], network).optional()?)
}

pub fn by_name(conn: &Connection, name: &str) -> EngineResult<Option<NetworkRow>> {
    let sql = format!("SELECT {NET_COLS} FROM networks WHERE name = ?1");
    Ok(conn.query_row(&sql, [name], network).optional()?)
}

/// Networks whose ID starts with `prefix` (hex, checked by the caller).
pub fn with_id_prefix(conn: &Connection, prefix: &str) -> EngineResult<Vec<NetworkRow>> {
    let sql = format!("SELECT {NET_COLS} FROM networks WHERE substr(id, 1, ?2) = ?1");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![prefix, prefix.len() as i64], network)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn list(conn: &Connection) -> EngineResult<Vec<NetworkRow>> {
    let sql = format!("SELECT {NET_COLS} FROM networks ORDER BY created_at, id");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], network)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn set_config(conn: &Connection, id: &str, config: &str) -> EngineResult<()> {
    conn.execute(
        "UPDATE networks SET config = ?2 WHERE id = ?1",
        params![id, config],
    )?;
    Ok(())
}

/// Deletes a network and the (inactive) attachments naming it.
pub fn delete(conn: &mut Connection, id: &str) -> EngineResult<bool> {
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM endpoints WHERE network_id = ?1", [id])?;
    let n = tx.execute("DELETE FROM networks WHERE id = ?1", [id])?;
    tx.commit()?;
    Ok(n > 0)
}

pub fn insert_endpoint(conn: &Connection, e: &EndpointRow) -> EngineResult<()> {
    conn.execute(
        &format!("INSERT INTO endpoints ({EP_COLS}) VALUES (?1, ?2, ?3, ?4)"),
        params![e.container_id, e.network_id, e.config, e.position],
    )?;
    Ok(())
}

pub fn delete_endpoint(
    conn: &Connection,
    container_id: &str,
    network_id: &str,
) -> EngineResult<bool> {
    Ok(conn.execute(
        "DELETE FROM endpoints WHERE container_id = ?1 AND network_id = ?2",
        params![container_id, network_id],
    )? > 0)
}

/// A container's attachments in connection order.
pub fn endpoints_of(conn: &Connection, container_id: &str) -> EngineResult<Vec<EndpointRow>> {
    let sql = format!("SELECT {EP_COLS} FROM endpoints WHERE container_id = ?1 ORDER BY position");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([container_id], endpoint)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Attachments to a network (of running and stopped containers).
pub fn endpoints_on(conn: &Connection, network_id: &str) -> EngineResult<Vec<EndpointRow>> {
    let sql = format!("SELECT {EP_COLS} FROM endpoints WHERE network_id = ?1");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([network_id], endpoint)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn insert_lease(conn: &Connection, l: &LeaseRow) -> EngineResult<()> {
    conn.execute(
        &format!("INSERT INTO ip_leases ({LEASE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![
            l.network_id,
            l.address,
            l.container_id,
            l.endpoint_id,
            l.mac,
            l.ifname,
            l.veth
        ],
    )?;
    Ok(())
}

pub fn delete_lease(conn: &Connection, container_id: &str, network_id: &str) -> EngineResult<bool> {
    Ok(conn.execute(
        "DELETE FROM ip_leases WHERE container_id = ?1 AND network_id = ?2",
        params![container_id, network_id],
    )? > 0)
}

pub fn leases_on(conn: &Connection, network_id: &str) -> EngineResult<Vec<LeaseRow>> {
    let sql = format!("SELECT {LEASE_COLS} FROM ip_leases WHERE network_id = ?1 ORDER BY address");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([network_id], lease)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn leases_of(conn: &Connection, container_id: &str) -> EngineResult<Vec<LeaseRow>> {
    let sql = format!("SELECT {LEASE_COLS} FROM ip_leases WHERE container_id = ?1");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([container_id], lease)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// One address of a container on a network, with the names it answers
/// to there (for the embedded DNS server).
#[derive(Debug, Clone, PartialEq)]
pub struct NameRow {
    pub network_id: String,
    pub network_name: String,
    pub container_id: String,
    pub container_name: String,
    pub address: String,
    /// The endpoint's JSON config (aliases), if the endpoint row exists.
    pub endpoint_config: Option<String>,
}

/// Every leased address with its container's name and endpoint config.
pub fn names(conn: &Connection) -> EngineResult<Vec<NameRow>> {
    let mut stmt = conn.prepare(
        "SELECT l.network_id, n.name, l.container_id, c.name, l.address, e.config
         FROM ip_leases l
         JOIN networks n ON n.id = l.network_id
         JOIN containers c ON c.id = l.container_id
         LEFT JOIN endpoints e ON e.container_id = l.container_id AND e.network_id = l.network_id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(NameRow {
            network_id: r.get(0)?,
            network_name: r.get(1)?,
            container_id: r.get(2)?,
            container_name: r.get(3)?,
            address: r.get(4)?,
            endpoint_config: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn all_leases(conn: &Connection) -> EngineResult<Vec<LeaseRow>> {
    let sql = format!("SELECT {LEASE_COLS} FROM ip_leases");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], lease)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A bound published port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortLease {
    pub container_id: String,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
    pub host_ip: String,
    pub host_port: u16,
    /// The container address the port forwards to.
    pub target: String,
}

const PORT_COLS: &str = "container_id, container_port, proto, host_ip, host_port, target";

pub fn insert_port(conn: &Connection, p: &PortLease) -> EngineResult<()> {
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO port_leases ({PORT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        ),
        params![
            p.container_id,
            p.container_port,
            p.proto,
            p.host_ip,
            p.host_port,
            p.target
        ],
    )?;
    Ok(())
}

/// Published ports, of one container or (`None`) of all.
pub fn ports(conn: &Connection, container_id: Option<&str>) -> EngineResult<Vec<PortLease>> {
    let sql = format!(
        "SELECT {PORT_COLS} FROM port_leases
         WHERE ?1 IS NULL OR container_id = ?1 ORDER BY container_port, proto, host_ip, host_port"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([container_id], |r| {
        Ok(PortLease {
            container_id: r.get(0)?,
            container_port: r.get(1)?,
            proto: r.get(2)?,
            host_ip: r.get(3)?,
            host_port: r.get(4)?,
            target: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Forgets the ports of a container that forward to `target`.
pub fn delete_ports_to(conn: &Connection, container_id: &str, target: &str) -> EngineResult<usize> {
    Ok(conn.execute(
        "DELETE FROM port_leases WHERE container_id = ?1 AND target = ?2",
        [container_id, target],
    )?)
}

/// Forgets one published port.
pub fn delete_port(conn: &Connection, p: &PortLease) -> EngineResult<()> {
    conn.execute(
        "DELETE FROM port_leases WHERE host_ip = ?1 AND host_port = ?2 AND proto = ?3",
        params![p.host_ip, p.host_port, p.proto],
    )?;
    Ok(())
}

pub fn delete_ports(conn: &Connection, container_id: &str) -> EngineResult<()> {
    conn.execute(
        "DELETE FROM port_leases WHERE container_id = ?1",
        [container_id],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn networks_endpoints_and_leases() {
        let store = Store::open_in_memory().expect("store");
        store
            .call_blocking(|conn| {
                conn.execute(
                    "INSERT INTO images (id, config, size, created_at) VALUES ('sha256:i', x'7b7d', 0, 0)",
                    [],
                )?;
                conn.execute(
                    "INSERT INTO containers VALUES ('c1', 'one', 'sha256:i', 'b', '{}', '{}', '{}', 0)",
                    [],
                )?;
                let n = NetworkRow {
                    id: "abcd".into(),
                    name: "net".into(),
                    driver: "bridge".into(),
                    config: "{}".into(),
                    created_at: 1,
                };
                insert(conn, &n)?;
                assert!(insert(conn, &NetworkRow { id: "ffff".into(), ..n.clone() }).is_err());
                assert_eq!(by_name(conn, "net")?.map(|r| r.id), Some("abcd".into()));
                assert_eq!(with_id_prefix(conn, "ab")?.len(), 1);
                let ep = EndpointRow {
                    container_id: "c1".into(),
                    network_id: "abcd".into(),
                    config: "{}".into(),
                    position: 0,
                };
                insert_endpoint(conn, &ep)?;
                let l = LeaseRow {
                    network_id: "abcd".into(),
                    address: "172.30.0.2".into(),
                    container_id: "c1".into(),
                    endpoint_id: "e".into(),
                    mac: "m".into(),
                    ifname: "eth0".into(),
                    veth: "v".into(),
                };
                insert_lease(conn, &l)?;
                assert!(insert_lease(conn, &l).is_err(), "one lease per address");
                assert_eq!(leases_on(conn, "abcd")?.len(), 1);
                // Removing the container drops its attachments; the lease
                // stays until the engine has undone its veth.
                conn.execute("DELETE FROM containers WHERE id = 'c1'", [])?;
                assert!(endpoints_on(conn, "abcd")?.is_empty());
                assert_eq!(leases_of(conn, "c1")?.len(), 1);
                assert!(delete_lease(conn, "c1", "abcd")?);
                assert!(all_leases(conn)?.is_empty());
                assert!(delete(conn, "abcd")?);
                Ok(())
            })
            .expect("rows");
    }
}
