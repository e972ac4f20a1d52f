//! The unpacked layers are overlay2-ready: mounting them as a read-only
//! overlay (what a container rootfs will be) shows exactly the image's
//! filesystem, with whiteouts, opaque dirs, links, modes and owners honoured.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{registry, TestDaemon};

/// Unmounts on drop, even when an assertion fails first.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Mounts `lowers` (top first) read-only as an overlay at `target`.
fn mount_overlay(lowers: &[String], target: &Path) -> MountGuard {
    fs::create_dir_all(target).unwrap();
    let opts = format!("lowerdir={}", lowers.join(":"));
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(opts.as_str()),
    )
    .unwrap_or_else(|e| panic!("mount overlay {opts}: {e}"));
    MountGuard(target.to_path_buf())
}

/// Layer dirs of NAME from `GraphDriver.Data`, top first.
fn layer_stack(d: &TestDaemon, name: &str) -> Vec<String> {
    let i = d.inspect(name);
    let data = &i["GraphDriver"]["Data"];
    let upper = data["UpperDir"]
        .as_str()
        .expect("GraphDriver.Data.UpperDir");
    let lower = data["LowerDir"]
        .as_str()
        .expect("GraphDriver.Data.LowerDir");
    let mut v = vec![upper.to_string()];
    v.extend(lower.split(':').map(str::to_string));
    assert_eq!(v.len(), 4, "layers image has 4 layers: {data}");
    for dir in &v {
        assert!(
            dir.starts_with(d.data_root().to_str().unwrap()),
            "{dir} outside the data root"
        );
        assert!(Path::new(dir).is_dir(), "{dir} missing");
    }
    v
}

fn gone(p: &Path) -> bool {
    matches!(fs::symlink_metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

#[test]
fn layers_image_mounts_as_overlay() {
    let d = TestDaemon::start();
    let name = format!("{}/layers", registry());
    d.pull(&name);
    let stack = layer_stack(&d, &name);
    let target = d.root().join("merged");
    let _guard = mount_overlay(&stack, &target);
    let m = |p: &str| target.join(p.trim_start_matches('/'));

    // Layer 3 deleted these (whiteouts).
    assert!(
        gone(&m("/data/remove.txt")),
        "whiteout of /data/remove.txt ignored"
    );
    assert!(gone(&m("/data/dir")), "whiteout of /data/dir ignored");
    // Layer 3 made /opq opaque and added `new`.
    let opq: Vec<String> = fs::read_dir(m("/opq"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(opq, vec!["new"], "opaque dir contents");
    assert_eq!(fs::read_to_string(m("/opq/new")).unwrap(), "new\n");

    // Links, modes, owners, times from layer 2.
    let keep = fs::symlink_metadata(m("/data/keep.txt")).unwrap();
    let hard = fs::symlink_metadata(m("/data/hard")).unwrap();
    assert_eq!(hard.ino(), keep.ino(), "hard link lost");
    assert_eq!(keep.nlink(), 2);
    assert_eq!(fs::read_to_string(m("/data/hard")).unwrap(), "keep\n");
    assert_eq!(keep.mtime(), 1_767_225_600, "mtime not kept");
    let sym = fs::symlink_metadata(m("/data/sym")).unwrap();
    assert!(sym.file_type().is_symlink());
    assert_eq!(
        fs::read_link(m("/data/sym")).unwrap(),
        Path::new("keep.txt")
    );
    let suid = fs::symlink_metadata(m("/data/suid")).unwrap();
    assert_eq!(suid.permissions().mode() & 0o7777, 0o4755, "suid bit lost");
    let owned = fs::symlink_metadata(m("/data/owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (1000, 1000), "owner lost");

    // Layer 4 and the shared base layer.
    assert_eq!(fs::metadata(m("/data/big.bin")).unwrap().len(), 1 << 20);
    let bb = fs::symlink_metadata(m("/bin/busybox")).unwrap();
    assert!(bb.is_file() && bb.permissions().mode() & 0o777 == 0o755);
    assert_eq!(fs::read_link(m("/bin/sh")).unwrap(), Path::new("busybox"));
    assert_eq!(
        fs::symlink_metadata(m("/tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );
    assert!(fs::read_to_string(m("/etc/passwd"))
        .unwrap()
        .starts_with("root:x:0:0"));
}

#[test]
fn whiteouts_are_stored_in_overlay_format() {
    // Layer 3 on disk: `.wh.*` entries became 0:0 char devices and the
    // opaque marker became the trusted.overlay.opaque xattr.
    let d = TestDaemon::start();
    let name = format!("{}/layers", registry());
    d.pull(&name);
    let stack = layer_stack(&d, &name);
    let l3 = Path::new(&stack[1]);
    for w in ["data/remove.txt", "data/dir"] {
        let md = fs::symlink_metadata(l3.join(w)).unwrap_or_else(|e| panic!("{w}: {e}"));
        assert!(
            md.file_type().is_char_device(),
            "{w} is not a whiteout device"
        );
        assert_eq!(md.rdev(), 0, "{w}: whiteout must be device 0/0");
    }
    for leftover in ["data/.wh.remove.txt", "data/.wh.dir", "opq/.wh..wh..opq"] {
        assert!(gone(&l3.join(leftover)), "{leftover} kept as a plain file");
    }
    let opaque = xattr::get(l3.join("opq"), "trusted.overlay.opaque").unwrap();
    assert_eq!(opaque.as_deref(), Some(&b"y"[..]), "opaque xattr");
}
