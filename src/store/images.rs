//! Rows for images, their layers and the references (tags, repo digests)
//! that point at them. Functions take a connection or transaction so that
//! callers compose them into one atomic change.

use rusqlite::{params, Connection, OptionalExtension};

use super::query_all;
use crate::error::EngineResult;

#[derive(Debug, Clone, PartialEq)]
pub struct LayerRow {
    pub chain_id: String,
    pub diff_id: String,
    pub parent: Option<String>,
    pub size: i64,
    pub blob_digest: String,
    pub blob_size: i64,
    pub media_type: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImageRow {
    pub id: String,
    pub config: Vec<u8>,
    pub size: i64,
    pub created_at: i64,
    pub last_tag_at: Option<i64>,
    /// Chain IDs, bottom layer first.
    pub layers: Vec<String>,
    pub tags: Vec<String>,
    pub digests: Vec<String>,
}

pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

pub fn layer_exists(conn: &Connection, chain_id: &str) -> EngineResult<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM layers WHERE chain_id = ?1",
            [chain_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

const LAYER_COLUMNS: &str =
    "chain_id, diff_id, parent, size, blob_digest, blob_size, media_type, created_at";

fn layer_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LayerRow> {
    Ok(LayerRow {
        chain_id: r.get(0)?,
        diff_id: r.get(1)?,
        parent: r.get(2)?,
        size: r.get(3)?,
        blob_digest: r.get(4)?,
        blob_size: r.get(5)?,
        media_type: r.get(6)?,
        created_at: r.get(7)?,
    })
}

/// Layer rows selected by a `WHERE` clause over the `layers` table `l`.
fn layers_where(conn: &Connection, condition: &str) -> EngineResult<Vec<LayerRow>> {
    let sql = format!("SELECT {LAYER_COLUMNS} FROM layers l WHERE {condition}");
    query_all(conn, &sql, [], layer_from_row)
}

pub fn get_layer(conn: &Connection, chain_id: &str) -> EngineResult<Option<LayerRow>> {
    let sql = format!("SELECT {LAYER_COLUMNS} FROM layers WHERE chain_id = ?1");
    Ok(conn
        .query_row(&sql, [chain_id], layer_from_row)
        .optional()?)
}

/// Inserts a layer row; a row already there (same chain ID) is kept.
pub fn insert_layer(conn: &Connection, l: &LayerRow) -> EngineResult<()> {
    conn.execute(
        "INSERT OR IGNORE INTO layers
         (chain_id, diff_id, parent, size, blob_digest, blob_size, media_type, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            l.chain_id,
            l.diff_id,
            l.parent,
            l.size,
            l.blob_digest,
            l.blob_size,
            l.media_type,
            l.created_at
        ],
    )?;
    Ok(())
}

/// Inserts an image with its ordered layers; returns false when it existed.
pub fn insert_image(
    conn: &Connection,
    id: &str,
    config: &[u8],
    size: i64,
    layers: &[String],
) -> EngineResult<bool> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO images (id, config, size, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![id, config, size, now_nanos()],
    )?;
    if n == 0 {
        return Ok(false);
    }
    for (i, chain) in layers.iter().enumerate() {
        conn.execute(
            "INSERT INTO image_layers (image_id, position, chain_id) VALUES (?1, ?2, ?3)",
            params![id, i as i64, chain],
        )?;
    }
    Ok(true)
}

/// Points `reference` at `image_id`; returns the image it pointed at before.
pub fn set_tag(conn: &Connection, reference: &str, image_id: &str) -> EngineResult<Option<String>> {
    let old: Option<String> = conn
        .query_row(
            "SELECT image_id FROM tags WHERE reference = ?1",
            [reference],
            |r| r.get(0),
        )
        .optional()?;
    let now = now_nanos();
    conn.execute(
        "INSERT INTO tags (reference, image_id, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(reference) DO UPDATE SET image_id = excluded.image_id, created_at = excluded.created_at",
        params![reference, image_id, now],
    )?;
    conn.execute(
        "UPDATE images SET last_tag_at = ?2 WHERE id = ?1",
        params![image_id, now],
    )?;
    Ok(old)
}

pub fn add_repo_digest(conn: &Connection, reference: &str, image_id: &str) -> EngineResult<()> {
    conn.execute(
        "INSERT INTO repo_digests (reference, image_id) VALUES (?1, ?2)
         ON CONFLICT(reference) DO UPDATE SET image_id = excluded.image_id",
        params![reference, image_id],
    )?;
    Ok(())
}

pub fn delete_tag(conn: &Connection, reference: &str) -> EngineResult<bool> {
    Ok(conn.execute("DELETE FROM tags WHERE reference = ?1", [reference])? > 0)
}

pub fn delete_repo_digest(conn: &Connection, reference: &str) -> EngineResult<bool> {
    Ok(conn.execute("DELETE FROM repo_digests WHERE reference = ?1", [reference])? > 0)
}

/// Deletes the image row and every reference to it (its layers stay until
/// [`unreferenced_layers`] finds them).
pub fn delete_image(conn: &Connection, id: &str) -> EngineResult<()> {
    conn.execute("DELETE FROM tags WHERE image_id = ?1", [id])?;
    conn.execute("DELETE FROM repo_digests WHERE image_id = ?1", [id])?;
    conn.execute("DELETE FROM images WHERE id = ?1", [id])?;
    Ok(())
}

pub fn tag_target(conn: &Connection, reference: &str) -> EngineResult<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT image_id FROM tags WHERE reference = ?1",
            [reference],
            |r| r.get(0),
        )
        .optional()?)
}

pub fn repo_digest_target(conn: &Connection, reference: &str) -> EngineResult<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT image_id FROM repo_digests WHERE reference = ?1",
            [reference],
            |r| r.get(0),
        )
        .optional()?)
}

/// Image IDs starting with `prefix` (which includes "sha256:").
pub fn ids_with_prefix(conn: &Connection, prefix: &str) -> EngineResult<Vec<String>> {
    query_all(
        conn,
        "SELECT id FROM images WHERE substr(id, 1, ?2) = ?1 LIMIT 2",
        params![prefix, prefix.len() as i64],
        |r| r.get(0),
    )
}

pub fn get_image(conn: &Connection, id: &str) -> EngineResult<Option<ImageRow>> {
    let row = conn
        .query_row(
            "SELECT id, config, size, created_at, last_tag_at FROM images WHERE id = ?1",
            [id],
            |r| {
                Ok(ImageRow {
                    id: r.get(0)?,
                    config: r.get(1)?,
                    size: r.get(2)?,
                    created_at: r.get(3)?,
                    last_tag_at: r.get(4)?,
                    layers: vec![],
                    tags: vec![],
                    digests: vec![],
                })
            },
        )
        .optional()?;
    let Some(mut row) = row else { return Ok(None) };
    row.layers = strings(
        conn,
        "SELECT chain_id FROM image_layers WHERE image_id = ?1 ORDER BY position",
        id,
    )?;
    row.tags = strings(
        conn,
        "SELECT reference FROM tags WHERE image_id = ?1 ORDER BY created_at, reference",
        id,
    )?;
    row.digests = strings(
        conn,
        "SELECT reference FROM repo_digests WHERE image_id = ?1 ORDER BY reference",
        id,
    )?;
    Ok(Some(row))
}

pub fn list_images(conn: &Connection) -> EngineResult<Vec<ImageRow>> {
    let ids: Vec<String> = query_all(
        conn,
        "SELECT id FROM images ORDER BY created_at DESC",
        [],
        |r| r.get(0),
    )?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(row) = get_image(conn, &id)? {
            out.push(row);
        }
    }
    Ok(out)
}

pub fn count_images(conn: &Connection) -> EngineResult<i64> {
    Ok(conn.query_row("SELECT count(*) FROM images", [], |r| r.get(0))?)
}

/// Layers that no image uses and that are no other layer's parent, so that
/// they can be removed top-down.
pub fn unreferenced_layers(conn: &Connection) -> EngineResult<Vec<LayerRow>> {
    layers_where(
        conn,
        "NOT EXISTS (SELECT 1 FROM image_layers il WHERE il.chain_id = l.chain_id)
         AND NOT EXISTS (SELECT 1 FROM layers c WHERE c.parent = l.chain_id)",
    )
}

pub fn delete_layer(conn: &Connection, chain_id: &str) -> EngineResult<()> {
    conn.execute("DELETE FROM layers WHERE chain_id = ?1", [chain_id])?;
    Ok(())
}

/// Whether any layer row still names this blob (layers can share a blob).
pub fn blob_in_use(conn: &Connection, digest: &str) -> EngineResult<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM layers WHERE blob_digest = ?1 LIMIT 1",
            [digest],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

pub fn all_layers(conn: &Connection) -> EngineResult<Vec<LayerRow>> {
    layers_where(conn, "1")
}

fn strings(conn: &Connection, sql: &str, arg: &str) -> EngineResult<Vec<String>> {
    query_all(conn, sql, [arg], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn layer(chain: &str, parent: Option<&str>) -> LayerRow {
        LayerRow {
            chain_id: chain.into(),
            diff_id: format!("diff-{chain}"),
            parent: parent.map(String::from),
            size: 10,
            blob_digest: format!("blob-{chain}"),
            blob_size: 5,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            created_at: 1,
        }
    }

    #[test]
    fn image_rows_round_trip_and_layers_are_freed_top_down() {
        let store = Store::open_in_memory().unwrap();
        store
            .call_blocking(|c| {
                insert_layer(c, &layer("a", None))?;
                insert_layer(c, &layer("b", Some("a")))?;
                assert!(insert_image(
                    c,
                    "sha256:1",
                    b"{}",
                    15,
                    &["a".into(), "b".into()]
                )?);
                assert!(!insert_image(c, "sha256:1", b"{}", 15, &[])?);
                assert_eq!(set_tag(c, "docker.io/library/x:latest", "sha256:1")?, None);
                add_repo_digest(c, "docker.io/library/x@sha256:d", "sha256:1")?;
                let img = get_image(c, "sha256:1")?.unwrap();
                assert_eq!(img.layers, vec!["a", "b"]);
                assert_eq!(img.tags, vec!["docker.io/library/x:latest"]);
                assert_eq!(img.digests, vec!["docker.io/library/x@sha256:d"]);
                assert_eq!(ids_with_prefix(c, "sha256:")?, vec!["sha256:1"]);
                assert!(unreferenced_layers(c)?.is_empty());
                delete_image(c, "sha256:1")?;
                assert!(get_image(c, "sha256:1")?.is_none());
                let free: Vec<_> = unreferenced_layers(c)?
                    .into_iter()
                    .map(|l| l.chain_id)
                    .collect();
                assert_eq!(free, vec!["b"]);
                delete_layer(c, "b")?;
                let free: Vec<_> = unreferenced_layers(c)?
                    .into_iter()
                    .map(|l| l.chain_id)
                    .collect();
                assert_eq!(free, vec!["a"]);
                Ok(())
            })
            .unwrap();
    }
}
