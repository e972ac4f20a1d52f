//! How much disk a folder takes: the writable layer of a container
//! (`docker ps -s`, prune reports) and volumes (`volume prune`).

use std::path::Path;

/// Bytes of regular files under `dir` (folders and symlinks not counted,
/// as dockerd's directory size walk).
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}
