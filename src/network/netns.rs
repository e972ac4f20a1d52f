//! Named network namespaces for containers: a new namespace bind-mounted
//! on a file under the exec root, so that it exists (and can be wired)
//! before the container's process starts, and outlives nothing: the
//! container's exit unmounts it.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// `<dir>/<container id>`.
pub fn path(dir: &Path, id: &str) -> PathBuf {
    dir.join(id)
}

/// Creates a fresh namespace pinned at `target`. Runs on a thread of its
/// own, which unshares and then exits: the daemon's threads keep theirs.
pub fn create(target: &Path) -> std::io::Result<()> {
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::File::create(target)?;
    let t = target.to_path_buf();
    let r = std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || -> std::io::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &t,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(std::io::Error::from)
        })?
        .join()
        .map_err(|_| std::io::Error::other("netns thread panicked"))?;
    if r.is_err() {
        let _ = std::fs::remove_file(target);
    }
    r
}

/// Unmounts and removes a pinned namespace; absent is fine.
pub fn remove(target: &Path) {
    let _ = umount2(target, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(target);
}

/// Whether `target` is a pinned namespace (a mount point, not a plain file).
pub fn is_pinned(target: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            let t = target.to_string_lossy();
            m.lines().any(|l| l.split(' ').nth(4) == Some(&*t))
        })
        .unwrap_or(false)
}
