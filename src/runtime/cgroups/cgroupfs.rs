//! What a container sees at `/sys/fs/cgroup` ([`CgroupFs`]). On v1 the
//! container shares the host's cgroup namespace, so, like runc, we bind
//! into a tmpfs the directory of the cgroup it is in, for every v1
//! hierarchy mounted at the root: its own cgroup for the controllers we
//! manage, the one it inherits from the daemon for the others (such as
//! `name=systemd`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{io_err, CgroupError, CgroupVersion, V1Manager};
use crate::runtime::spec::{CgroupFs, CgroupHierarchy};

/// The [`CgroupFs`] of a container whose cgroup is `relative` under
/// `root`. `host_namespace` (`--cgroupns host`) matters on v2 only: on v1
/// there is no other choice.
pub fn container_cgroupfs(
    root: &Path,
    relative: &str,
    host_namespace: bool,
) -> Result<CgroupFs, CgroupError> {
    match crate::system::detect_cgroup_version(root) {
        CgroupVersion::V2 => Ok(CgroupFs::V2 { host_namespace }),
        CgroupVersion::V1 => {
            let read = |p: &str| std::fs::read_to_string(p).map_err(io_err("read", Path::new(p)));
            let mountinfo = read("/proc/self/mountinfo")?;
            let own = read("/proc/self/cgroup")?;
            let manager = V1Manager::new(root, relative)?;
            Ok(CgroupFs::V1(v1_hierarchies(
                &manager, root, &mountinfo, &own,
            )))
        }
    }
}

/// The v1 hierarchies mounted directly below `root` (by `mountinfo`),
/// each with the directory the container will be in: the manager's for
/// the controllers it manages, else this process's (from `own`, the text
/// of `/proc/self/cgroup`), which the container inherits.
pub(super) fn v1_hierarchies(
    manager: &V1Manager,
    root: &Path,
    mountinfo: &str,
    own: &str,
) -> Vec<CgroupHierarchy> {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let managed: BTreeMap<PathBuf, PathBuf> = manager
        .all_dirs()
        .into_iter()
        .map(|(dir, mount)| (mount, dir))
        .collect();
    let mut out = vec![];
    for m in mountinfo.lines().filter_map(CgroupMount::parse) {
        if m.mountpoint.parent() != Some(root.as_path()) {
            continue;
        }
        let Some(name) = m.mountpoint.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let source = match managed.get(&m.mountpoint) {
            Some(dir) => dir.clone(),
            None => match m.own_dir(own) {
                Some(dir) => dir,
                None => continue,
            },
        };
        out.push(CgroupHierarchy {
            name: name.to_string(),
            source,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A v1 `cgroup` line of `/proc/self/mountinfo`.
struct CgroupMount {
    /// The cgroup shown at the mount point (`/` unless a sub-tree is).
    root: String,
    mountpoint: PathBuf,
    /// Super options: `rw`, the controllers, `name=systemd`, ...
    options: Vec<String>,
}

impl CgroupMount {
    fn parse(line: &str) -> Option<CgroupMount> {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        if fields.get(sep + 1) != Some(&"cgroup") || sep < 5 {
            return None;
        }
        Some(CgroupMount {
            root: unescape(fields[3]),
            mountpoint: PathBuf::from(unescape(fields[4])),
            options: fields.get(sep + 3)?.split(',').map(String::from).collect(),
        })
    }

    /// This process's cgroup directory in the hierarchy, by the line of
    /// `/proc/self/cgroup` whose controllers the mount carries.
    fn own_dir(&self, own: &str) -> Option<PathBuf> {
        own.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let ours = !controllers.is_empty()
                && controllers
                    .split(',')
                    .all(|c| self.options.iter().any(|o| o == c));
            if !ours {
                return None;
            }
            let rel = path.strip_prefix(self.root.as_str())?;
            Some(self.mountpoint.join(rel.trim_start_matches('/')))
        })
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_hierarchies_bind_the_containers_cgroups() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        for d in [
            "cpu,cpuacct",
            "memory",
            "pids",
            "net_cls,net_prio",
            "systemd",
            "unified",
        ] {
            std::fs::create_dir(root.join(d)).unwrap();
        }
        for l in ["cpu", "cpuacct"] {
            std::os::unix::fs::symlink("cpu,cpuacct", root.join(l)).unwrap();
        }
        let r = root.display();
        let mountinfo = format!(
            "31 23 0:28 / {r} rw,relatime - tmpfs tmpfs rw,mode=755\n\
             32 31 0:29 / {r}/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n\
             35 31 0:32 / {r}/memory rw,relatime - cgroup cgroup rw,memory\n\
             39 31 0:36 / {r}/pids rw,relatime - cgroup cgroup rw,pids\n\
             40 31 0:37 / {r}/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n\
             42 31 0:39 /host {r}/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio\n\
             41 31 0:38 / {r}/unified rw,relatime - cgroup2 cgroup2 rw\n\
             50 23 0:40 / /mnt/other\\040dir rw,relatime - cgroup cgroup rw,hugetlb\n"
        );
        let own = "12:hugetlb:/\n9:name=systemd:/system.slice/mydocker.service\n\
                   8:pids:/\n5:net_cls,net_prio:/host/daemon\n4:memory:/\n1:cpu,cpuacct:/\n0::/\n";
        let mgr = V1Manager::new(&root, "mydocker/abc").unwrap();
        let got = v1_hierarchies(&mgr, &root, &mountinfo, own);
        let got: Vec<(&str, PathBuf)> = got
            .iter()
            .map(|h| {
                (
                    h.name.as_str(),
                    h.source.strip_prefix(&root).unwrap().into(),
                )
            })
            .collect();
        let want: Vec<(&str, PathBuf)> = vec![
            ("cpu,cpuacct", "cpu,cpuacct/mydocker/abc".into()),
            ("memory", "memory/mydocker/abc".into()),
            ("net_cls,net_prio", "net_cls,net_prio/daemon".into()),
            ("pids", "pids/mydocker/abc".into()),
            ("systemd", "systemd/system.slice/mydocker.service".into()),
        ];
        assert_eq!(got, want);
        assert_eq!(unescape("/a\\040b\\134c"), "/a b\\c");
    }
}
