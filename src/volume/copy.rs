//! First-use copy: an empty volume mounted where the image has content
//! gets that content (owners, modes, times) before its first mount, as
//! dockerd does. The image is read from its unpacked layers, top first,
//! honouring overlay whiteouts (0/0 character devices) and opaque
//! directories (`trusted.overlay.opaque=y`), so the copy is what the
//! container would have seen at that path.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    matches!(xattr::get(dir, "trusted.overlay.opaque"), Ok(Some(v)) if v == b"y")
}

/// The layer directories (top first) whose content is visible at `rel`
/// (relative, already cleaned) in the merged tree; empty when the merged
/// path is missing or not a directory.
fn visible_dirs(layers: &[PathBuf], rel: &[String]) -> Vec<PathBuf> {
    let mut out = vec![];
    'layers: for layer in layers {
        let mut p = layer.clone();
        let mut hides_lower = false;
        for comp in rel {
            p.push(comp);
            match fs::symlink_metadata(&p) {
                // Missing here: lower layers decide, unless an opaque
                // parent in this layer hides them.
                Err(_) if hides_lower => break 'layers,
                Err(_) => continue 'layers,
                // A whiteout or a non-directory shadows everything below.
                Ok(m) if is_whiteout(&m) || !m.is_dir() => break 'layers,
                Ok(_) => hides_lower |= is_opaque(&p),
            }
        }
        out.push(p);
        if hides_lower {
            break;
        }
    }
    out
}

/// Copies the merged image content at `path` (absolute, in the container)
/// into `dst` when `dst` is an empty directory. Returns whether it copied.
pub fn copy_image_path(layers: &[PathBuf], path: &str, dst: &Path) -> io::Result<bool> {
    let mut rel = vec![];
    for c in Path::new(path).components() {
        match c {
            Component::Normal(s) => rel.push(s.to_string_lossy().into_owned()),
            Component::RootDir | Component::CurDir => {}
            // Destinations are cleaned at create; refuse rather than guess.
            Component::ParentDir | Component::Prefix(_) => return Ok(false),
        }
    }
    if fs::read_dir(dst)?.next().is_some() {
        return Ok(false);
    }
    let srcs = visible_dirs(layers, &rel);
    if srcs.is_empty() {
        return Ok(false);
    }
    copy_dir(&srcs, dst)?;
    copy_owner_and_mode(&fs::symlink_metadata(&srcs[0])?, dst)?;
    Ok(true)
}

/// Merges the directories `srcs` (top first) into the existing `dst`.
fn copy_dir(srcs: &[PathBuf], dst: &Path) -> io::Result<()> {
    let mut names = BTreeSet::new();
    for s in srcs {
        for e in fs::read_dir(s)? {
            names.insert(e?.file_name());
        }
    }
    for name in names {
        // The topmost layer that has the name decides what it is.
        let Some((i, meta)) = srcs
            .iter()
            .enumerate()
            .find_map(|(i, s)| fs::symlink_metadata(s.join(&name)).ok().map(|m| (i, m)))
        else {
            continue;
        };
        let src = srcs[i].join(&name);
        let to = dst.join(&name);
        let ft = meta.file_type();
        if is_whiteout(&meta) {
            continue;
        }
        if ft.is_dir() {
            let mut children = vec![];
            for s in &srcs[i..] {
                let p = s.join(&name);
                match fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => {
                        let opaque = is_opaque(&p);
                        children.push(p);
                        if opaque {
                            break;
                        }
                    }
                    Ok(_) => break,
                    Err(_) => continue,
                }
            }
            fs::create_dir(&to)?;
            copy_dir(&children, &to)?;
        } else if ft.is_file() {
            fs::copy(&src, &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &to)?;
        } else {
            let kind = if ft.is_char_device() {
                nix::sys::stat::SFlag::S_IFCHR
            } else if ft.is_block_device() {
                nix::sys::stat::SFlag::S_IFBLK
            } else if ft.is_fifo() {
                nix::sys::stat::SFlag::S_IFIFO
            } else {
                continue; // sockets mean nothing in a copy
            };
            nix::sys::stat::mknod(
                &to,
                kind,
                nix::sys::stat::Mode::from_bits_truncate(meta.mode() & 0o7777),
                meta.rdev(),
            )?;
        }
        copy_owner_and_mode(&meta, &to)?;
    }
    Ok(())
}

/// Owner first (chown clears set-id bits), then mode, then times.
fn copy_owner_and_mode(meta: &fs::Metadata, to: &Path) -> io::Result<()> {
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    if !meta.file_type().is_symlink() {
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    let at = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mt = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(
        nix::fcntl::AT_FDCWD,
        to,
        &at,
        &mt,
        UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_the_merged_view_with_modes() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("top");
        let low = t.path().join("low");
        let dst = t.path().join("dst");
        for d in [&top, &low, &dst] {
            fs::create_dir_all(d).unwrap();
        }
        fs::create_dir_all(low.join("etc/sub")).unwrap();
        fs::write(low.join("etc/passwd"), "low").unwrap();
        fs::write(low.join("etc/gone"), "x").unwrap();
        fs::write(low.join("etc/sub/deep"), "d").unwrap();
        fs::create_dir_all(top.join("etc")).unwrap();
        fs::write(top.join("etc/passwd"), "top").unwrap();
        fs::write(top.join("etc/tool"), "#!/bin/sh").unwrap();
        fs::set_permissions(top.join("etc/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::set_permissions(top.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::symlink("passwd", top.join("etc/link")).unwrap();
        // Whiteouts need mknod (root); skip that part elsewhere.
        let root = nix::unistd::geteuid().is_root();
        if root {
            nix::sys::stat::mknod(
                &top.join("etc/gone"),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                0,
            )
            .unwrap();
        }
        let layers = vec![top.clone(), low.clone()];
        assert!(copy_image_path(&layers, "/etc", &dst).unwrap());
        assert_eq!(fs::read_to_string(dst.join("passwd")).unwrap(), "top");
        assert_eq!(fs::read_to_string(dst.join("sub/deep")).unwrap(), "d");
        assert_eq!(
            fs::read_link(dst.join("link")).unwrap(),
            Path::new("passwd")
        );
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&dst.join("tool")), 0o4755);
        assert_eq!(
            mode(&dst),
            0o750,
            "the volume root takes the image dir's mode"
        );
        assert_eq!(dst.join("gone").exists(), !root);
        // Not empty any more: a second copy does nothing.
        assert!(!copy_image_path(&layers, "/etc", &dst).unwrap());
        // Nothing there in the image: nothing to copy.
        let empty = t.path().join("empty");
        fs::create_dir(&empty).unwrap();
        assert!(!copy_image_path(&layers, "/nope", &empty).unwrap());
        assert!(!copy_image_path(&layers, "/etc/passwd", &empty).unwrap());
    }

    #[test]
    fn whiteouts_and_opaque_dirs_hide_lower_layers() {
        if !nix::unistd::geteuid().is_root() {
            return; // mknod and trusted.* xattrs need root
        }
        let t = tempfile::tempdir().unwrap();
        let (top, low) = (t.path().join("top"), t.path().join("low"));
        fs::create_dir_all(low.join("a/b")).unwrap();
        fs::write(low.join("a/b/old"), "o").unwrap();
        fs::create_dir_all(top.join("a")).unwrap();
        xattr::set(top.join("a"), "trusted.overlay.opaque", b"y").unwrap();
        let layers = vec![top.clone(), low.clone()];
        assert!(visible_dirs(&layers, &["a".into(), "b".into()]).is_empty());
        assert_eq!(visible_dirs(&layers, &["a".into()]), vec![top.join("a")]);
        nix::sys::stat::mknod(
            &top.join("x"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        fs::create_dir_all(low.join("x")).unwrap();
        assert!(visible_dirs(&layers, &["x".into()]).is_empty());
    }
}
