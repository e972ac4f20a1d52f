//! Ordered schema migrations, keyed by `PRAGMA user_version`. Each runs in
//! one transaction together with the version bump, so a crash mid-migration
//! leaves the previous version intact.

use rusqlite::Connection;

use crate::error::EngineResult;

/// Migration N (1-based) brings the schema from version N-1 to N.
const MIGRATIONS: &[&str] = &[
    // 1: images and layers.
    r#"
    CREATE TABLE layers (
        chain_id     TEXT PRIMARY KEY,
        diff_id      TEXT NOT NULL,
        parent       TEXT REFERENCES layers(chain_id),
        size         INTEGER NOT NULL,      -- bytes of file content unpacked
        blob_digest  TEXT NOT NULL,         -- the blob this layer was unpacked from
        blob_size    INTEGER NOT NULL,
        media_type   TEXT NOT NULL,
        created_at   INTEGER NOT NULL       -- unix nanoseconds
    );
    CREATE TABLE images (
        id           TEXT PRIMARY KEY,      -- "sha256:" + sha256(config)
        config       BLOB NOT NULL,         -- the raw config JSON
        size         INTEGER NOT NULL,
        created_at   INTEGER NOT NULL,      -- unix nanoseconds, when stored here
        last_tag_at  INTEGER               -- unix nanoseconds of the last tag
    );
    CREATE TABLE image_layers (
        image_id     TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position     INTEGER NOT NULL,
        chain_id     TEXT NOT NULL REFERENCES layers(chain_id),
        PRIMARY KEY (image_id, position)
    );
    CREATE INDEX image_layers_chain ON image_layers(chain_id);
    CREATE TABLE tags (
        reference    TEXT PRIMARY KEY,      -- "docker.io/library/busybox:latest"
        image_id     TEXT NOT NULL REFERENCES images(id),
        created_at   INTEGER NOT NULL
    );
    CREATE INDEX tags_image ON tags(image_id);
    CREATE TABLE repo_digests (
        reference    TEXT PRIMARY KEY,      -- "docker.io/library/busybox@sha256:..."
        image_id     TEXT NOT NULL REFERENCES images(id)
    );
    CREATE INDEX repo_digests_image ON repo_digests(image_id);
    "#,
    // 2: containers. `config`, `host_config` and `state` are JSON documents
    // (the engine's own types); the columns queried on are kept apart.
    r#"
    CREATE TABLE containers (
        id           TEXT PRIMARY KEY,      -- 64 hex
        name         TEXT NOT NULL UNIQUE,  -- without the leading '/'
        image_id     TEXT NOT NULL REFERENCES images(id),
        image        TEXT NOT NULL,         -- Config.Image as the client gave it
        config       TEXT NOT NULL,
        host_config  TEXT NOT NULL,
        state        TEXT NOT NULL,
        created_at   INTEGER NOT NULL       -- unix nanoseconds
    );
    CREATE INDEX containers_image ON containers(image_id);
    "#,
    // 3: volumes, and the mounts of each container. A mount row naming a
    // volume keeps it from being deleted (the usage count is those rows);
    // rows go with their container.
    r#"
    CREATE TABLE volumes (
        name         TEXT PRIMARY KEY,
        driver       TEXT NOT NULL,
        labels       TEXT,                  -- JSON object, or NULL
        options      TEXT,                  -- JSON object, or NULL
        created_at   INTEGER NOT NULL       -- unix nanoseconds
    );
    CREATE TABLE container_mounts (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        destination  TEXT NOT NULL,
        volume       TEXT REFERENCES volumes(name),
        spec         TEXT NOT NULL,         -- JSON, owned by the container engine
        PRIMARY KEY (container_id, destination)
    );
    CREATE INDEX container_mounts_volume ON container_mounts(volume);
    "#,
    // 4: execs. `config` and `state` are JSON documents of the container
    // engine; an exec goes with its container.
    r#"
    CREATE TABLE execs (
        id           TEXT PRIMARY KEY,      -- 64 hex
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        config       TEXT NOT NULL,
        state        TEXT NOT NULL,
        created_at   INTEGER NOT NULL       -- unix nanoseconds
    );
    CREATE INDEX execs_container ON execs(container_id);
    "#,
    // 5: networks. `config` is the network engine's JSON (IPAM, options,
    // labels, flags). `endpoints` are a container's attachments as
    // configured (kept while it is stopped); `ip_leases` are the live
    // ones: an address handed out on a network while the container runs.
    r#"
    CREATE TABLE networks (
        id           TEXT PRIMARY KEY,      -- 64 hex
        name         TEXT NOT NULL UNIQUE,
        driver       TEXT NOT NULL,         -- bridge, host, null
        config       TEXT NOT NULL,
        created_at   INTEGER NOT NULL       -- unix nanoseconds
    );
    CREATE TABLE endpoints (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        network_id   TEXT NOT NULL REFERENCES networks(id),
        config       TEXT NOT NULL,         -- aliases, requested address
        position     INTEGER NOT NULL,      -- connection order: eth0, eth1, ...
        PRIMARY KEY (container_id, network_id)
    );
    CREATE INDEX endpoints_network ON endpoints(network_id);
    CREATE TABLE ip_leases (
        network_id   TEXT NOT NULL REFERENCES networks(id),
        address      TEXT NOT NULL,
        -- No foreign key: a lease outlives a force-removed container's row
        -- until its veth is gone (the network engine deletes both).
        container_id TEXT NOT NULL,
        endpoint_id  TEXT NOT NULL,
        mac          TEXT NOT NULL,
        ifname       TEXT NOT NULL,         -- inside the container
        veth         TEXT NOT NULL,         -- the host end
        PRIMARY KEY (network_id, address),
        UNIQUE (container_id, network_id)
    );
    "#,
    // 6: published ports bound by running containers (the host port is
    // the one actually bound, so a restarted daemon binds it again).
    r#"
    CREATE TABLE port_leases (
        container_id   TEXT NOT NULL,       -- no foreign key, as ip_leases
        container_port INTEGER NOT NULL,
        host_ip        TEXT NOT NULL,
        host_port      INTEGER NOT NULL,
        PRIMARY KEY (host_ip, host_port)
    );
    CREATE INDEX port_leases_container ON port_leases(container_id);
    "#,
    // 7: published UDP ports beside TCP ones (the same host port may be
    // bound once per protocol), and the container address each port
    // forwards to, so that the proxies and the DNAT rules agree.
    r#"
    CREATE TABLE port_leases_v7 (
        container_id   TEXT NOT NULL,
        container_port INTEGER NOT NULL,
        proto          TEXT NOT NULL,       -- tcp, udp
        host_ip        TEXT NOT NULL,
        host_port      INTEGER NOT NULL,
        target         TEXT NOT NULL,       -- the container's address
        PRIMARY KEY (host_ip, host_port, proto)
    );
    INSERT INTO port_leases_v7
        SELECT p.container_id, p.container_port, 'tcp', p.host_ip, p.host_port,
               COALESCE((SELECT l.address FROM ip_leases l
                         WHERE l.container_id = p.container_id
                         ORDER BY l.ifname LIMIT 1), '')
        FROM port_leases p;
    DROP TABLE port_leases;
    ALTER TABLE port_leases_v7 RENAME TO port_leases;
    CREATE INDEX port_leases_container ON port_leases(container_id);
    "#,
];

pub fn migrate(conn: &mut Connection) -> EngineResult<()> {
    let current: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
pub fn latest_version() -> usize {
    MIGRATIONS.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_are_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, latest_version());
    }

    #[test]
    fn port_leases_of_version_6_become_tcp_with_their_target() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..6] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 6).unwrap();
        conn.execute_batch(
            "INSERT INTO networks VALUES ('n', 'bridge', 'bridge', '{}', 0);
             INSERT INTO ip_leases VALUES ('n', '172.30.0.2', 'c', 'e', 'm', 'eth0', 'v');
             INSERT INTO port_leases VALUES ('c', 80, '127.0.0.1', 8080);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let row: (String, String, u16) = conn
            .query_row(
                "SELECT proto, target, host_port FROM port_leases WHERE container_id = 'c'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(row, ("tcp".into(), "172.30.0.2".into(), 8080));
    }
}
