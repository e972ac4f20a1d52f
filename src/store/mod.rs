//! The SQLite state of the daemon, at `<data-root>/mydocker.db`.
//!
//! Schema (see `migrations.rs` for the exact DDL):
//! - `layers`: one row per unpacked layer, keyed by chain ID; the unpacked
//!   tree lives at `image/layers/<chain-hex>/diff`, the blob it came from at
//!   `image/blobs/sha256/<hex>`.
//! - `images`: one row per image ID, holding the raw config JSON (the bytes
//!   the ID hashes), with its ordered layers in `image_layers`.
//! - `tags` and `repo_digests`: references pointing at images.
//! - `containers`: one row per container; its image row cannot go while it
//!   exists (foreign key).
//! - `volumes`: one row per volume; its data lives at
//!   `volumes/<name>/_data`.
//! - `container_mounts`: the mount points of each container (cascading
//!   with it); a row naming a volume keeps that volume from being deleted.
//! - `execs`: one row per exec instance, deleted with its container.
//! - `networks`, `endpoints` (a container's configured attachments) and
//!   `ip_leases` (addresses in use by running containers, with the veth
//!   and interface names needed to undo them).
//!
//! Files are written (and renamed into place) before the rows that name them
//! are committed, and rows are deleted before their files, so a crash leaves
//! at worst unowned files, which start-up removes. Rows never point at
//! missing files.
//!
//! rusqlite is blocking: every call goes through [`Store::call`], which runs
//! the closure on tokio's blocking pool.

pub mod containers;
pub mod execs;
pub mod images;
mod migrations;
pub mod mounts;
pub mod networks;
pub mod volumes;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::error::{EngineError, EngineResult};

/// A cheap-to-clone handle on the one database connection.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> EngineResult<Store> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL keeps committed transactions across power loss in WAL mode.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::migrate(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// An in-memory database, for unit tests.
    pub fn open_in_memory() -> EngineResult<Store> {
        let mut conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrations::migrate(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<F, R>(&self, f: F) -> EngineResult<R>
    where
        F: FnOnce(&mut Connection) -> EngineResult<R> + Send + 'static,
        R: Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| EngineError::Internal("database lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(EngineError::internal)?
    }

    /// Runs `f` in the calling thread; for code already off the async threads.
    pub fn call_blocking<F, R>(&self, f: F) -> EngineResult<R>
    where
        F: FnOnce(&mut Connection) -> EngineResult<R>,
    {
        let mut guard = self
            .conn
            .lock()
            .map_err(|_| EngineError::Internal("database lock poisoned".into()))?;
        f(&mut guard)
    }
}

/// Every row `sql` selects, each read by `f`, collected (into a `Vec`, a
/// map, ...).
pub(crate) fn query_all<T, C: FromIterator<T>>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> EngineResult<C> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, f)?;
    Ok(rows.collect::<Result<C, _>>()?)
}
