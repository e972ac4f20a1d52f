//! The container's mount namespace, as runc builds it for dockerd: the
//! overlay2 root, `/proc`, `/dev` and friends, `/sys`, the bundle's etc
//! files, user mounts, then `pivot_root`, masked and read-only paths and
//! the read-only root. Runs in the container's init, after the mount
//! namespace was unshared, through [`Sys`] so tests can record it.
//!
//! The overlay is mounted inside the container's mount namespace only: it
//! disappears with the namespace, so no host mount can leak even if the
//! monitor is killed.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use thiserror::Error;

use super::spec::{CgroupFs, ContainerSpec, MountKind, MountSpec, NetworkNs, RootfsSpec};
use super::sys::{FileKind, Sys, SysError};

/// The longest mount data string the kernel takes is one page; keep a
/// margin for the rest of the options.
const MAX_MOUNT_DATA: usize = 4000;

/// Where the container sees its cgroups.
const CGROUPFS: &str = "/sys/fs/cgroup";

/// Directory of the bundle holding short symlinks to the layers, for
/// images whose lowerdir list would not fit in a page (dockerd's `l/`).
pub const LAYER_LINKS_DIR: &str = "l";

#[derive(Debug, Error)]
pub enum RootfsError {
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("too many layers for one overlay mount ({0} lower directories)")]
    TooManyLayers(usize),
    #[error("invalid mount option {0:?}")]
    BadOption(String),
}

const DEV_NODES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// Builds the whole root file system and pivots into it.
pub fn prepare_rootfs(sys: &dyn Sys, spec: &ContainerSpec) -> Result<(), RootfsError> {
    // Nothing we mount may propagate back to the host.
    sys.mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    mount_overlay(sys, &spec.rootfs, &spec.bundle)?;
    let root = spec.rootfs.mountpoint.as_path();
    mount_standard(sys, spec, root)?;
    create_devices(sys, spec, root)?;
    mount_etc_files(sys, spec, root)?;
    for m in &spec.mounts {
        mount_user(sys, root, m)?;
    }
    sys.pivot_root(root)?;
    // runc's order: sysctls go in while /proc/sys is still writable.
    write_sysctls(sys, spec)?;
    if !spec.privileged {
        for p in &spec.masked_paths {
            mask_path(sys, Path::new(p))?;
        }
        for p in &spec.readonly_paths {
            readonly_path(sys, Path::new(p))?;
        }
    }
    if spec.rootfs.readonly {
        sys.mount(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        )?;
    }
    Ok(())
}

/// Binds the TTY container's pty slave (`/dev/pts/N` of its own devpts)
/// over `/dev/console`, as runc does; runs after the pivot (`/dev` is a
/// writable tmpfs even on a read-only root).
pub fn mount_console(sys: &dyn Sys, slave: &Path) -> Result<(), RootfsError> {
    let target = Path::new("/dev/console");
    sys.create_file(target)?;
    sys.mount(Some(slave), target, None, MsFlags::MS_BIND, None)?;
    Ok(())
}

/// The overlay mount data for `rootfs`, and whether the lower layers are
/// named through `<bundle>/l/<n>` links (relative to the bundle, which must
/// then be the working directory at mount time).
pub fn overlay_data(rootfs: &RootfsSpec, bundle: &Path) -> Result<(String, bool), RootfsError> {
    let join = |dirs: &mut dyn Iterator<Item = String>| dirs.collect::<Vec<_>>().join(":");
    let upper = if rootfs.upperdir.as_os_str().is_empty() {
        String::new()
    } else {
        format!(
            ",upperdir={},workdir={}",
            rootfs.upperdir.display(),
            rootfs.workdir.display()
        )
    };
    let long = format!(
        "lowerdir={}{upper}",
        join(&mut rootfs.lowerdirs.iter().map(|p| p.display().to_string()))
    );
    if long.len() <= MAX_MOUNT_DATA {
        return Ok((long, false));
    }
    let short = format!(
        "lowerdir={}{upper}",
        join(&mut (0..rootfs.lowerdirs.len()).map(|i| format!("{LAYER_LINKS_DIR}/{i}")))
    );
    if short.len() > MAX_MOUNT_DATA || bundle.as_os_str().is_empty() {
        return Err(RootfsError::TooManyLayers(rootfs.lowerdirs.len()));
    }
    Ok((short, true))
}

/// Mounts the overlay at `rootfs.mountpoint`.
pub fn mount_overlay(sys: &dyn Sys, rootfs: &RootfsSpec, bundle: &Path) -> Result<(), RootfsError> {
    let (data, linked) = overlay_data(rootfs, bundle)?;
    if rootfs.lowerdirs.is_empty() {
        // overlay needs a lower layer: bind the upper dir alone.
        sys.mount(
            Some(&rootfs.upperdir),
            &rootfs.mountpoint,
            None,
            MsFlags::MS_BIND,
            None,
        )?;
        return Ok(());
    }
    if linked {
        let links = bundle.join(LAYER_LINKS_DIR);
        sys.mkdir_all(&links, 0o700)?;
        for (i, dir) in rootfs.lowerdirs.iter().enumerate() {
            sys.symlink(dir, &links.join(i.to_string()))?;
        }
        // Relative lowerdirs are resolved against the caller's cwd.
        sys.chdir(bundle)?;
    }
    sys.mount(
        Some(Path::new("overlay")),
        &rootfs.mountpoint,
        Some("overlay"),
        MsFlags::empty(),
        Some(&data),
    )?;
    if linked {
        sys.chdir(Path::new("/"))?;
    }
    Ok(())
}

fn mount_standard(sys: &dyn Sys, spec: &ContainerSpec, root: &Path) -> Result<(), RootfsError> {
    let nsd = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let dir = |rel: &str| -> Result<PathBuf, RootfsError> {
        let p = sys.resolve_in_root(root, Path::new(rel))?;
        sys.mkdir_all(&p, 0o755)?;
        Ok(p)
    };
    let proc_dir = dir("/proc")?;
    sys.mount(
        Some(Path::new("proc")),
        &proc_dir,
        Some("proc"),
        nsd | MsFlags::MS_NOEXEC,
        None,
    )?;
    let dev = dir("/dev")?;
    sys.mount(
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for (name, major, minor) in DEV_NODES {
        sys.mknod_char(&dev.join(name), 0o666, major, minor)?;
    }
    let pts = dev.join("pts");
    sys.mkdir_all(&pts, 0o755)?;
    sys.mount(
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    for (name, target) in DEV_LINKS {
        sys.symlink(Path::new(target), &dev.join(name))?;
    }
    let shm = dev.join("shm");
    sys.mkdir_all(&shm, 0o1777)?;
    let shm_data = format!("mode=1777,size={}", spec.shm_size);
    sys.mount(
        Some(Path::new("shm")),
        &shm,
        Some("tmpfs"),
        nsd | MsFlags::MS_NOEXEC,
        Some(&shm_data),
    )?;
    let mqueue = dev.join("mqueue");
    sys.mkdir_all(&mqueue, 0o755)?;
    sys.mount(
        Some(Path::new("mqueue")),
        &mqueue,
        Some("mqueue"),
        nsd | MsFlags::MS_NOEXEC,
        None,
    )?;
    let sys_dir = dir("/sys")?;
    let ro = if spec.privileged {
        MsFlags::empty()
    } else {
        MsFlags::MS_RDONLY
    };
    if matches!(spec.network, NetworkNs::Host) {
        // sysfs shows the network namespace of its mounter: a fresh one
        // would show ours, so the host's is bound instead (as runc does).
        sys.mount(
            Some(Path::new("/sys")),
            &sys_dir,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        if !ro.is_empty() {
            sys.mount(
                None,
                &sys_dir,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | ro,
                None,
            )?;
        }
    } else {
        sys.mount(
            Some(Path::new("sysfs")),
            &sys_dir,
            Some("sysfs"),
            nsd | MsFlags::MS_NOEXEC | ro,
            None,
        )?;
    }
    mount_cgroupfs(sys, spec, root)
}

/// `/sys/fs/cgroup` as runc mounts it: on v1 a tmpfs with the container's
/// directory of each hierarchy bound in, plus links such as `cpu` ->
/// `cpu,cpuacct`; on v2 the cgroup2 filesystem. Read-only unless
/// privileged.
fn mount_cgroupfs(sys: &dyn Sys, spec: &ContainerSpec, root: &Path) -> Result<(), RootfsError> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let ro = if spec.privileged {
        MsFlags::empty()
    } else {
        MsFlags::MS_RDONLY
    };
    let hierarchies = match &spec.cgroupfs {
        CgroupFs::None => return Ok(()),
        CgroupFs::V2 { .. } => {
            let dir = sys.resolve_in_root(root, Path::new(CGROUPFS))?;
            sys.mkdir_all(&dir, 0o755)?;
            sys.mount(
                Some(Path::new("cgroup")),
                &dir,
                Some("cgroup2"),
                flags | MsFlags::MS_RELATIME | ro,
                None,
            )?;
            return Ok(());
        }
        CgroupFs::V1(h) => h,
    };
    let dir = sys.resolve_in_root(root, Path::new(CGROUPFS))?;
    sys.mkdir_all(&dir, 0o755)?;
    sys.mount(
        Some(Path::new("tmpfs")),
        &dir,
        Some("tmpfs"),
        flags,
        Some("mode=755"),
    )?;
    for h in hierarchies {
        let target = dir.join(&h.name);
        sys.mkdir_all(&target, 0o755)?;
        sys.mount(
            Some(&h.source),
            &target,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        sys.mount(
            None,
            &target,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | ro,
            None,
        )?;
    }
    for h in hierarchies {
        for part in h.name.split(',').filter(|p| *p != h.name) {
            if !hierarchies.iter().any(|o| o.name == part) {
                sys.symlink(Path::new(&h.name), &dir.join(part))?;
            }
        }
    }
    if !ro.is_empty() {
        sys.mount(
            None,
            &dir,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | ro,
            None,
        )?;
    }
    Ok(())
}

/// Makes the spec's extra device nodes in the new `/dev` (a node that is
/// already there, such as `/dev/null`, is kept).
fn create_devices(sys: &dyn Sys, spec: &ContainerSpec, root: &Path) -> Result<(), RootfsError> {
    for d in &spec.devices {
        let target = sys.resolve_in_root(root, Path::new(&d.path))?;
        if sys.kind(&target).is_some() {
            continue;
        }
        if let Some(parent) = target.parent() {
            sys.mkdir_all(parent, 0o755)?;
        }
        sys.mknod_device(&target, d.kind, d.mode, d.major, d.minor)?;
        sys.chown(&target, d.uid, d.gid)?;
    }
    Ok(())
}

/// Writes the spec's sysctls below `/proc/sys` (of the container's own
/// namespaces: the init runs in them).
fn write_sysctls(sys: &dyn Sys, spec: &ContainerSpec) -> Result<(), RootfsError> {
    for (key, value) in &spec.sysctls {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        sys.write_file(&path, value)?;
    }
    Ok(())
}

fn mount_etc_files(sys: &dyn Sys, spec: &ContainerSpec, root: &Path) -> Result<(), RootfsError> {
    let files = [
        ("/etc/hostname", &spec.etc_files.hostname),
        ("/etc/hosts", &spec.etc_files.hosts),
        ("/etc/resolv.conf", &spec.etc_files.resolv_conf),
    ];
    for (dst, src) in files {
        let Some(src) = src else { continue };
        let target = sys.resolve_in_root(root, Path::new(dst))?;
        sys.create_file(&target)?;
        sys.mount(
            Some(src),
            &target,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
    }
    Ok(())
}

/// Splits `mount -o` style options into flags and the data string.
pub fn parse_options(options: &[String]) -> Result<(MsFlags, MsFlags, String), RootfsError> {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" | "defaults" => {}
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "suid" | "dev" | "exec" => {}
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "private" => propagation = MsFlags::MS_PRIVATE,
            "rprivate" => propagation = MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            "shared" => propagation = MsFlags::MS_SHARED,
            "rshared" => propagation = MsFlags::MS_SHARED | MsFlags::MS_REC,
            "slave" => propagation = MsFlags::MS_SLAVE,
            "rslave" => propagation = MsFlags::MS_SLAVE | MsFlags::MS_REC,
            other if other.contains('=') && !other.contains(',') => data.push(other),
            other => return Err(RootfsError::BadOption(other.to_string())),
        }
    }
    Ok((flags, propagation, data.join(",")))
}

fn mount_user(sys: &dyn Sys, root: &Path, m: &MountSpec) -> Result<(), RootfsError> {
    let (mut flags, propagation, data) = parse_options(&m.options)?;
    if m.readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    let target = sys.resolve_in_root(root, Path::new(&m.destination))?;
    let data = (!data.is_empty()).then_some(data.as_str());
    match m.kind {
        MountKind::Tmpfs => {
            sys.mkdir_all(&target, 0o755)?;
            sys.mount(
                Some(Path::new("tmpfs")),
                &target,
                Some("tmpfs"),
                flags - MsFlags::MS_BIND - MsFlags::MS_REC,
                data,
            )?;
        }
        MountKind::Bind => {
            match sys.kind(&m.source) {
                Some(FileKind::File) => sys.create_file(&target)?,
                _ => sys.mkdir_all(&target, 0o755)?,
            }
            sys.mount(
                Some(&m.source),
                &target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
            // A bind ignores all other flags: they need a remount.
            let extra = flags - MsFlags::MS_BIND - MsFlags::MS_REC;
            if !extra.is_empty() {
                sys.mount(
                    None,
                    &target,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra,
                    None,
                )?;
            }
        }
    }
    if !propagation.is_empty() {
        sys.mount(None, &target, None, propagation, None)?;
    }
    Ok(())
}

/// Hides `path` (inside the new root): `/dev/null` over a file, an empty
/// read-only tmpfs over a directory; nothing if it does not exist.
fn mask_path(sys: &dyn Sys, path: &Path) -> Result<(), RootfsError> {
    match sys.kind(path) {
        None => Ok(()),
        Some(FileKind::Dir) => Ok(sys.mount(
            Some(Path::new("tmpfs")),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None,
        )?),
        Some(FileKind::File) => Ok(sys.mount(
            Some(Path::new("/dev/null")),
            path,
            None,
            MsFlags::MS_BIND,
            None,
        )?),
    }
}

/// Makes `path` read-only by binding it over itself and remounting.
fn readonly_path(sys: &dyn Sys, path: &Path) -> Result<(), RootfsError> {
    if sys.kind(path).is_none() {
        return Ok(());
    }
    sys.mount(
        Some(path),
        path,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    sys.mount(
        Some(path),
        path,
        None,
        MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC
            | MsFlags::MS_REC,
        None,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::sys::FakeSys;

    fn spec() -> ContainerSpec {
        let mut s = ContainerSpec {
            bundle: "/b".into(),
            ..Default::default()
        };
        s.process.args = vec!["sh".into()];
        s.rootfs = RootfsSpec {
            lowerdirs: vec!["/l2".into(), "/l1".into()],
            upperdir: "/b/up".into(),
            workdir: "/b/work".into(),
            mountpoint: "/b/merged".into(),
            readonly: false,
        };
        s
    }

    fn index_of(calls: &[String], prefix: &str) -> usize {
        calls
            .iter()
            .position(|c| c.starts_with(prefix))
            .unwrap_or_else(|| panic!("no call {prefix:?} in {calls:#?}"))
    }

    #[test]
    fn standard_mount_sequence() {
        let sys = FakeSys::new()
            .with("/proc/kcore", FileKind::File)
            .with("/proc/acpi", FileKind::Dir)
            .with("/proc/sys", FileKind::Dir);
        let mut s = spec();
        s.etc_files.hosts = Some("/b/hosts".into());
        prepare_rootfs(&sys, &s).expect("plan");
        let m = sys.mounts();
        let expected = [
            "mount - / - MS_REC|MS_PRIVATE -",
            "mount overlay /b/merged overlay  lowerdir=/l2:/l1,upperdir=/b/up,workdir=/b/work",
            "mount proc /b/merged/proc proc MS_NOSUID|MS_NODEV|MS_NOEXEC -",
            "mount tmpfs /b/merged/dev tmpfs MS_NOSUID|MS_STRICTATIME mode=755,size=65536k",
            "mount devpts /b/merged/dev/pts devpts MS_NOSUID|MS_NOEXEC newinstance,ptmxmode=0666,mode=0620,gid=5",
            "mount shm /b/merged/dev/shm tmpfs MS_NOSUID|MS_NODEV|MS_NOEXEC mode=1777,size=67108864",
            "mount mqueue /b/merged/dev/mqueue mqueue MS_NOSUID|MS_NODEV|MS_NOEXEC -",
            "mount sysfs /b/merged/sys sysfs MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC -",
            "mount /b/hosts /b/merged/etc/hosts - MS_BIND|MS_REC -",
            "pivot_root /b/merged",
            "mount tmpfs /proc/acpi tmpfs MS_RDONLY -",
            "mount /dev/null /proc/kcore - MS_BIND -",
            "mount /proc/sys /proc/sys - MS_BIND|MS_REC -",
            "mount /proc/sys /proc/sys - MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC|MS_REMOUNT|MS_BIND|MS_REC -",
        ];
        assert_eq!(m, expected);
        let calls = sys.calls();
        for node in [
            "null 666 1:3",
            "zero 666 1:5",
            "tty 666 5:0",
            "urandom 666 1:9",
        ] {
            index_of(&calls, &format!("mknod /b/merged/dev/{node}"));
        }
        index_of(&calls, "symlink /b/merged/dev/ptmx -> pts/ptmx");
        index_of(&calls, "symlink /b/merged/dev/stderr -> /proc/self/fd/2");
        index_of(&calls, "create /b/merged/etc/hosts");
        // Devices are made on the new /dev, before pivoting.
        assert!(
            index_of(&calls, "mknod /b/merged/dev/null")
                > index_of(&calls, "mount tmpfs /b/merged/dev")
        );
    }

    #[test]
    fn privileged_host_network_readonly_rootfs_and_console() {
        let sys = FakeSys::new().with("/proc/kcore", FileKind::File);
        let mut s = spec();
        s.privileged = true;
        s.network = NetworkNs::Host;
        s.rootfs.readonly = true;
        s.shm_size = 1 << 20;
        prepare_rootfs(&sys, &s).expect("plan");
        let m = sys.mounts();
        assert!(m.contains(&"mount /sys /b/merged/sys - MS_BIND|MS_REC -".to_string()));
        assert!(!m.iter().any(|c| c.contains("/proc/kcore")), "{m:#?}");
        assert!(!m.iter().any(|c| c.contains("console")), "{m:#?}");
        assert!(m.iter().any(|c| c.ends_with("size=1048576")));
        assert_eq!(
            m.last().map(String::as_str),
            Some("mount - / - MS_RDONLY|MS_REMOUNT|MS_BIND -")
        );
    }

    #[test]
    fn user_mounts() {
        let sys = FakeSys::new().with("/host/file", FileKind::File);
        let mut s = spec();
        s.mounts = vec![
            MountSpec {
                source: "/host/dir".into(),
                destination: "/data".into(),
                kind: MountKind::Bind,
                options: vec!["rprivate".into()],
                readonly: true,
            },
            MountSpec {
                source: "/host/file".into(),
                destination: "/etc/../cfg".into(),
                kind: MountKind::Bind,
                options: vec![],
                readonly: false,
            },
            MountSpec {
                source: PathBuf::new(),
                destination: "/run".into(),
                kind: MountKind::Tmpfs,
                options: vec!["noexec".into(), "size=65536k".into()],
                readonly: false,
            },
        ];
        prepare_rootfs(&sys, &s).expect("plan");
        let m = sys.mounts();
        let want = [
            "mount /host/dir /b/merged/data - MS_BIND|MS_REC -",
            "mount - /b/merged/data - MS_RDONLY|MS_REMOUNT|MS_BIND -",
            "mount - /b/merged/data - MS_REC|MS_PRIVATE -",
            "mount /host/file /b/merged/cfg - MS_BIND|MS_REC -",
            "mount tmpfs /b/merged/run tmpfs MS_NOEXEC size=65536k",
        ];
        let start = index_of(&m, want[0]);
        assert_eq!(&m[start..start + want.len()], want);
        index_of(&sys.calls(), "create /b/merged/cfg");
        assert!(parse_options(&["bogus".into()]).is_err());
    }

    #[test]
    fn many_layers_use_short_links() {
        let mut rootfs = spec().rootfs;
        rootfs.lowerdirs = (0..120)
            .map(|i| PathBuf::from(format!("/var/lib/mydocker/overlay2/{i:064}/diff")))
            .collect();
        let (data, linked) = overlay_data(&rootfs, Path::new("/b")).expect("fits");
        assert!(linked);
        assert!(data.starts_with("lowerdir=l/0:l/1:"), "{data}");
        assert!(data.len() < MAX_MOUNT_DATA);
        let sys = FakeSys::new();
        mount_overlay(&sys, &rootfs, Path::new("/b")).expect("mounts");
        let calls = sys.calls();
        let link = index_of(
            &calls,
            &format!(
                "symlink /b/l/119 -> /var/lib/mydocker/overlay2/{:064}/diff",
                119
            ),
        );
        let chdir = index_of(&calls, "chdir /b");
        let mount = index_of(&calls, "mount overlay /b/merged overlay  lowerdir=l/0:");
        assert!(link < chdir && chdir < mount);
        assert_eq!(calls.last().map(String::as_str), Some("chdir /"));

        rootfs.lowerdirs = vec![PathBuf::from("/x"); 2000];
        assert!(matches!(
            overlay_data(&rootfs, Path::new("/b")),
            Err(RootfsError::TooManyLayers(2000))
        ));
    }

    #[test]
    fn devices_and_sysctls() {
        let sys = FakeSys::new()
            .with("/b/merged/dev/null", FileKind::File)
            .with("/proc/sys", FileKind::Dir);
        let mut s = spec();
        let node = |path: &str, kind, major, minor| crate::runtime::spec::DeviceNode {
            path: path.into(),
            kind,
            major,
            minor,
            mode: 0o660,
            uid: 0,
            gid: 6,
        };
        s.devices = vec![
            node("/dev/fuse", 'c', 10, 229),
            node("/dev/null", 'c', 1, 3),
            node("/dev/disk/sda", 'b', 8, 0),
        ];
        s.sysctls = [("kernel.shmmax", "1000000"), ("net.ipv4.ip_forward", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        prepare_rootfs(&sys, &s).expect("plan");
        let calls = sys.calls();
        let fuse = index_of(&calls, "mknod /b/merged/dev/fuse c 660 10:229");
        assert!(fuse > index_of(&calls, "mount tmpfs /b/merged/dev"));
        assert!(fuse < index_of(&calls, "chown /b/merged/dev/fuse 0:6"));
        assert!(
            index_of(&calls, "mkdir /b/merged/dev/disk 755")
                < index_of(&calls, "mknod /b/merged/dev/disk/sda b 660 8:0")
        );
        assert!(
            !calls
                .iter()
                .any(|c| c.starts_with("mknod /b/merged/dev/null c")),
            "an existing node is kept: {calls:#?}"
        );
        // Sysctls after the pivot, before /proc/sys turns read-only.
        let shm = index_of(&calls, "write /proc/sys/kernel/shmmax 1000000");
        index_of(&calls, "write /proc/sys/net/ipv4/ip_forward 1");
        assert!(shm > index_of(&calls, "pivot_root"));
        assert!(shm < index_of(&calls, "mount /proc/sys /proc/sys - MS_BIND|MS_REC"));
    }

    #[test]
    fn cgroupfs_v1_binds_each_hierarchy_read_only() {
        let sys = FakeSys::new();
        let mut s = spec();
        let h = |name: &str, source: &str| crate::runtime::spec::CgroupHierarchy {
            name: name.into(),
            source: source.into(),
        };
        s.cgroupfs = CgroupFs::V1(vec![
            h("cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/mydocker/c1"),
            h("memory", "/sys/fs/cgroup/memory/mydocker/c1"),
            h("net_cls,net_prio", "/sys/fs/cgroup/net_cls,net_prio"),
            h("net_prio", "/sys/fs/cgroup/net_prio"),
        ]);
        prepare_rootfs(&sys, &s).expect("plan");
        let m = sys.mounts();
        let cg = "/b/merged/sys/fs/cgroup";
        let want = [
            format!("mount tmpfs {cg} tmpfs MS_NOSUID|MS_NODEV|MS_NOEXEC mode=755"),
            format!("mount /sys/fs/cgroup/cpu,cpuacct/mydocker/c1 {cg}/cpu,cpuacct - MS_BIND|MS_REC -"),
            format!("mount - {cg}/cpu,cpuacct - MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC|MS_REMOUNT|MS_BIND -"),
            format!("mount /sys/fs/cgroup/memory/mydocker/c1 {cg}/memory - MS_BIND|MS_REC -"),
            format!("mount - {cg}/memory - MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC|MS_REMOUNT|MS_BIND -"),
            format!("mount /sys/fs/cgroup/net_cls,net_prio {cg}/net_cls,net_prio - MS_BIND|MS_REC -"),
            format!("mount - {cg}/net_cls,net_prio - MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC|MS_REMOUNT|MS_BIND -"),
            format!("mount /sys/fs/cgroup/net_prio {cg}/net_prio - MS_BIND|MS_REC -"),
            format!("mount - {cg}/net_prio - MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC|MS_REMOUNT|MS_BIND -"),
            format!("mount - {cg} - MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC|MS_REMOUNT|MS_BIND -"),
        ];
        let start = index_of(&m, &want[0]);
        assert_eq!(m[start..start + want.len()], want);
        // After /sys, before the user mounts and the pivot.
        assert!(start > index_of(&m, "mount sysfs /b/merged/sys"));
        assert!(start + want.len() <= index_of(&m, "pivot_root"));
        let calls = sys.calls();
        let links: Vec<&String> = calls
            .iter()
            .filter(|c| c.starts_with("symlink /b/merged/sys"))
            .collect();
        assert_eq!(
            links,
            [
                &format!("symlink {cg}/cpu -> cpu,cpuacct"),
                &format!("symlink {cg}/cpuacct -> cpu,cpuacct"),
                &format!("symlink {cg}/net_cls -> net_cls,net_prio"),
            ]
        );
        // The links go in before the tmpfs turns read-only.
        assert!(index_of(&calls, &format!("symlink {cg}/cpu ")) < index_of(&calls, &want[9]));

        // Privileged: the same, read-write.
        let sys = FakeSys::new();
        s.privileged = true;
        s.cgroupfs = CgroupFs::V1(vec![h("memory", "/sys/fs/cgroup/memory/mydocker/c1")]);
        prepare_rootfs(&sys, &s).expect("plan");
        let m = sys.mounts();
        let start = index_of(&m, &format!("mount tmpfs {cg} "));
        assert_eq!(
            m[start + 1..start + 3],
            [
                format!("mount /sys/fs/cgroup/memory/mydocker/c1 {cg}/memory - MS_BIND|MS_REC -"),
                format!("mount - {cg}/memory - MS_NOSUID|MS_NODEV|MS_NOEXEC|MS_REMOUNT|MS_BIND -"),
            ]
        );
        assert!(
            !m.iter()
                .any(|c| c.contains("MS_RDONLY") && c.contains("cgroup")),
            "{m:#?}"
        );
    }

    #[test]
    fn cgroupfs_v2_mounts_cgroup2() {
        for (privileged, flags) in [
            (false, "MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC|MS_RELATIME"),
            (true, "MS_NOSUID|MS_NODEV|MS_NOEXEC|MS_RELATIME"),
        ] {
            let sys = FakeSys::new();
            let mut s = spec();
            s.privileged = privileged;
            s.cgroupfs = CgroupFs::V2 {
                host_namespace: false,
            };
            prepare_rootfs(&sys, &s).expect("plan");
            let m = sys.mounts();
            let cg = index_of(&m, "mount cgroup /b/merged/sys/fs/cgroup cgroup2 ");
            assert_eq!(
                m[cg],
                format!("mount cgroup /b/merged/sys/fs/cgroup cgroup2 {flags} -")
            );
            assert_eq!(m.iter().filter(|c| c.contains("/sys/fs/cgroup")).count(), 1);
        }
        // No cgroup: nothing there.
        let sys = FakeSys::new();
        prepare_rootfs(&sys, &spec()).expect("plan");
        assert!(!sys.mounts().iter().any(|c| c.contains("/sys/fs/cgroup")));
    }

    #[test]
    fn console_is_the_slave_bound_after_the_pivot() {
        let sys = FakeSys::new();
        mount_console(&sys, Path::new("/dev/pts/0")).expect("console");
        assert_eq!(
            sys.calls(),
            vec![
                "create /dev/console".to_string(),
                "mount /dev/pts/0 /dev/console - MS_BIND -".to_string(),
            ]
        );
        let sys = FakeSys {
            fail_on: Some("mount /dev/pts/0".into()),
            ..FakeSys::default()
        };
        let err = mount_console(&sys, Path::new("/dev/pts/0")).expect_err("fails");
        assert!(err.to_string().contains("/dev/console"), "{err}");
    }

    #[test]
    fn failures_propagate() {
        let sys = FakeSys {
            fail_on: Some("pivot_root".into()),
            ..FakeSys::default()
        };
        let err = prepare_rootfs(&sys, &spec()).expect_err("fails");
        assert!(err.to_string().contains("pivot_root"), "{err}");
    }
}
