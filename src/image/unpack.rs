//! Unpacks image layer tars into directories that overlayfs can stack (overlay2 layout).
//!
//! Layer tars come from registries and `docker load`, so every header is hostile:
//! - Paths are normalised lexically like tar does: leading `/` and `.` are dropped, `..` pops a
//!   component, and popping above the root refuses the whole layer.
//! - Every filesystem call is relative to a directory fd. Parents are opened one component at a
//!   time with `O_DIRECTORY|O_NOFOLLOW`, so a symlink (e.g. one planted earlier by this same tar)
//!   is never traversed; missing parents are created. Nothing else writes `dest` while we unpack,
//!   so the walk is race-free against the tar's own content.
//! - The last component is never followed either: existing entries are unlinked, not opened,
//!   files are created with `O_CREAT|O_EXCL|O_NOFOLLOW`, links get `AT_SYMLINK_NOFOLLOW` calls.
//! - Symlink targets are stored verbatim (they are only data); hard-link targets go through the
//!   same normalisation and parent walk as entry paths.
//! - Docker/OCI whiteouts become overlayfs ones: `.wh.<name>` turns into a 0/0 character device,
//!   `.wh..wh..opq` into `trusted.overlay.opaque=y` on its directory.
//! - Only `user.*` and `security.capability` xattrs are restored: `trusted.overlay.*` from a layer
//!   could forge whiteouts or redirects, other `security.*` labels belong to the host.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode,
    SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use sha2::{Digest, Sha256};
use tar::EntryType;
use xattr::FileExt;

/// Deeper paths are refused: no real image has them, and it bounds the recursion of
/// `remove_dir_all` when a directory tree is replaced.
pub const MAX_DEPTH: usize = 1024;
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const COPY_BUF: usize = 256 * 1024;

/// Compression detected from magic bytes: gzip (1f 8b), zstd (28 b5 2f fd), otherwise plain tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

pub fn detect_compression(first_bytes: &[u8]) -> Compression {
    if first_bytes.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if first_bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Wraps a reader into a decompressing one, chosen by the magic bytes at its start.
pub fn decompressed<R: BufRead + 'static + Send>(mut r: R) -> io::Result<Box<dyn Read + Send>> {
    // `fill_buf` may legally return fewer bytes than the magic, so read it explicitly and put
    // it back in front of the stream.
    let mut magic = [0u8; 4];
    let mut n = 0;
    while let Some(rest) = magic.get_mut(n..).filter(|rest| !rest.is_empty()) {
        match r.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let kind = detect_compression(magic.get(..n).unwrap_or_default());
    let r = io::Cursor::new(magic).take(n as u64).chain(r);
    Ok(match kind {
        // Multi-member: concatenated gzip streams are valid layers.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        Compression::None => Box::new(r),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    /// `sha256:<hex>` of the whole uncompressed tar stream, read to EOF including padding.
    pub diff_id: String,
    /// Sum of regular file sizes.
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading layer: {0}")]
    Io(#[from] io::Error),
    #[error("unsafe path {path:?} in layer: {reason}")]
    UnsafePath { path: String, reason: &'static str },
    #[error("invalid layer entry {path:?}: {reason}")]
    InvalidEntry { path: String, reason: String },
    #[error("unpacking {path:?}: {source}")]
    Entry {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl From<Errno> for UnpackError {
    fn from(e: Errno) -> Self {
        UnpackError::Io(e.into())
    }
}

fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

fn unsafe_path(raw: &[u8], reason: &'static str) -> UnpackError {
    UnpackError::UnsafePath {
        path: lossy(raw),
        reason,
    }
}

fn invalid(raw: &[u8], reason: impl Into<String>) -> UnpackError {
    UnpackError::InvalidEntry {
        path: lossy(raw),
        reason: reason.into(),
    }
}

/// Unpacks an uncompressed layer tar stream into `dest` (an existing empty dir) for overlayfs.
pub fn unpack_layer<R: Read>(tar_stream: R, dest: &Path) -> Result<UnpackStats, UnpackError> {
    let root = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dest)?;
    let hashing = HashingReader {
        inner: tar_stream,
        hasher: Sha256::new(),
    };
    let mut reader = BufReader::with_capacity(1 << 20, hashing);
    let mut unpacker = Unpacker {
        root,
        cached: None,
        dir_times: Vec::new(),
        size: 0,
        buf: vec![0; COPY_BUF],
    };
    {
        let mut archive = tar::Archive::new(&mut reader);
        for entry in archive.entries()? {
            let mut entry = entry?;
            unpacker.entry(&mut entry).map_err(|e| match e {
                UnpackError::Io(source) => UnpackError::Entry {
                    path: lossy(&entry.path_bytes()),
                    source,
                },
                e => e,
            })?;
        }
    }
    // The archive stops at the first zero block; the padding after it is part of the diff_id.
    io::copy(&mut reader, &mut io::sink())?;
    unpacker.restore_dir_times()?;
    let digest = reader.into_inner().hasher.finalize();
    Ok(UnpackStats {
        diff_id: format!("sha256:{}", hex::encode(digest)),
        size: unpacker.size,
    })
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let data = buf
            .get(..n)
            .ok_or_else(|| io::Error::other("reader returned more bytes than asked for"))?;
        self.hasher.update(data);
        Ok(n)
    }
}

/// Lexically normalises a tar path into components below the root.
fn normalise(path: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop().ok_or("`..` climbs above the layer root")?;
            }
            c if c.contains(&0) => return Err("NUL byte in path"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Parses a PAX time (`secs[.frac]`, possibly negative) into a timespec.
fn parse_pax_time(v: &[u8]) -> Option<TimeSpec> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = frac.get(..frac.len().min(9))?;
    let mut nanos: i64 = format!("{digits:0<9}").parse().ok()?;
    // "-1.5" is 1.5s before the epoch: -2s + 0.5s.
    if s.starts_with('-') && nanos > 0 {
        secs = secs.checked_sub(1)?;
        nanos = 1_000_000_000 - nanos;
    }
    Some(TimeSpec::new(secs, nanos))
}

/// Metadata of one entry, with PAX overrides applied.
struct Meta {
    mode: Mode,
    uid: Uid,
    gid: Gid,
    mtime: TimeSpec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    fn read<R: Read>(entry: &mut tar::Entry<R>, raw: &[u8]) -> Result<Self, UnpackError> {
        let h = entry.header();
        let mode = Mode::from_bits_truncate(h.mode()? & 0o7777);
        let uid = u32::try_from(h.uid()?).map_err(|_| invalid(raw, "uid out of range"))?;
        let gid = u32::try_from(h.gid()?).map_err(|_| invalid(raw, "gid out of range"))?;
        let secs = i64::try_from(h.mtime()?).map_err(|_| invalid(raw, "mtime out of range"))?;
        let mut mtime = TimeSpec::new(secs, 0);
        let mut xattrs = Vec::new();
        if let Some(exts) = entry.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                let key = ext.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    if name.starts_with(b"user.") || name == b"security.capability" {
                        xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                    }
                } else if key == b"mtime" {
                    // The tar crate applies PAX uid/gid/size itself, but not mtime.
                    if let Some(t) = parse_pax_time(ext.value_bytes()) {
                        mtime = t;
                    }
                }
            }
        }
        Ok(Meta {
            mode,
            uid: Uid::from_raw(uid),
            gid: Gid::from_raw(gid),
            mtime,
            xattrs,
        })
    }
}

struct Unpacker {
    root: File,
    /// Last parent directory opened, keyed by its normalised path. Dropped whenever anything
    /// is removed, since the cached directory might be what went away.
    cached: Option<(Vec<u8>, File)>,
    /// Directory mtimes, restored at the end because creating children bumps them.
    dir_times: Vec<(Vec<u8>, TimeSpec)>,
    size: u64,
    buf: Vec<u8>,
}

impl Unpacker {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<(), UnpackError> {
        let raw = entry.path_bytes().into_owned();
        let mut kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        // Old tars mark directories only by a trailing slash.
        if kind == EntryType::Regular && raw.ends_with(b"/") {
            kind = EntryType::Directory;
        }
        let comps = normalise(&raw).map_err(|reason| unsafe_path(&raw, reason))?;
        if comps.len() > MAX_DEPTH {
            return Err(invalid(&raw, "path too deep"));
        }
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let meta = Meta::read(entry, &raw)?;
        let Some((&name, parents)) = comps.split_last() else {
            // `./` describes the layer root itself: only its metadata may change.
            if kind != EntryType::Directory {
                return Err(unsafe_path(&raw, "entry would replace the layer root"));
            }
            let root = self.root.try_clone()?;
            return self.dir_meta(&root, Vec::new(), &meta);
        };
        // AUFS bookkeeping (`.wh..wh.plnk/...`) means nothing to overlayfs.
        if parents
            .first()
            .is_some_and(|c| c.starts_with(WHITEOUT_META_PREFIX))
        {
            return Ok(());
        }
        if name.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(&raw, parents, name, &meta);
        }

        let dir = self.parent(&raw, parents, true)?;
        let name = OsStr::from_bytes(name);
        match kind {
            EntryType::Directory => {
                if !self.clear(&dir, name, true)? {
                    mkdirat(&dir, name, Mode::S_IRWXU)?;
                }
                let sub = open_dir_at(&dir, name)?;
                self.dir_meta(&sub, comps.join(&b'/'), &meta)
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.clear(&dir, name, false)?;
                let flags = OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC;
                let mut file = File::from(openat(&dir, name, flags, Mode::S_IRUSR)?);
                let written = self.copy(entry, &mut file)?;
                self.size = self.size.saturating_add(written);
                // chown clears setuid bits and file capabilities, so it goes first.
                fchown(&file, Some(meta.uid), Some(meta.gid))?;
                fchmod(&file, meta.mode)?;
                set_xattrs(&file, &meta.xattrs)?;
                futimens(&file, &meta.mtime, &meta.mtime)?;
                Ok(())
            }
            EntryType::Symlink => {
                let target = link.ok_or_else(|| invalid(&raw, "symlink without a target"))?;
                self.clear(&dir, name, false)?;
                symlinkat(OsStr::from_bytes(&target), &dir, name)?;
                node_meta(&dir, name, &meta, false)
            }
            EntryType::Link => {
                let target = link.ok_or_else(|| invalid(&raw, "hard link without a target"))?;
                self.hardlink(&raw, &comps, &dir, name, &target)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    EntryType::Char => (SFlag::S_IFCHR, device(entry.header())?),
                    EntryType::Block => (SFlag::S_IFBLK, device(entry.header())?),
                    // Fifos often leave the device fields empty, which does not parse.
                    _ => (SFlag::S_IFIFO, 0),
                };
                self.clear(&dir, name, false)?;
                mknodat(&dir, name, sflag, meta.mode, dev)?;
                node_meta(&dir, name, &meta, true)
            }
            other => Err(invalid(
                &raw,
                format!("unsupported entry type {:?}", other.as_byte() as char),
            )),
        }
    }

    /// Streams file data through a reusable buffer (`io::copy` would use 8 KiB writes).
    fn copy(&mut self, r: &mut impl Read, file: &mut File) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            let n = match r.read(&mut self.buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            file.write_all(self.buf.get(..n).unwrap_or_default())?;
            total = total.saturating_add(n as u64);
        }
    }

    fn whiteout(
        &mut self,
        raw: &[u8],
        parents: &[&[u8]],
        name: &[u8],
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        if name == OPAQUE_MARKER {
            let dir = self.parent(raw, parents, true)?;
            dir.set_xattr(OPAQUE_XATTR, b"y")?;
            return Ok(());
        }
        // Other AUFS metadata, e.g. `.wh..wh.plnk`.
        if name.starts_with(WHITEOUT_META_PREFIX) {
            return Ok(());
        }
        let hidden = name.strip_prefix(WHITEOUT_PREFIX).unwrap_or_default();
        if matches!(hidden, b"" | b"." | b"..") {
            return Err(unsafe_path(raw, "whiteout does not name an entry"));
        }
        let dir = self.parent(raw, parents, true)?;
        let hidden = OsStr::from_bytes(hidden);
        self.clear(&dir, hidden, false)?;
        mknodat(&dir, hidden, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))?;
        fchownat(
            &dir,
            hidden,
            Some(meta.uid),
            Some(meta.gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }

    fn hardlink(
        &mut self,
        raw: &[u8],
        comps: &[&[u8]],
        dir: &File,
        name: &OsStr,
        target: &[u8],
    ) -> Result<(), UnpackError> {
        let tcomps = normalise(target).map_err(|reason| unsafe_path(raw, reason))?;
        let Some((&tname, tparents)) = tcomps.split_last() else {
            return Err(unsafe_path(raw, "hard link to the layer root"));
        };
        // Clearing first would delete the very target of a self-link.
        if tcomps.as_slice() == comps {
            return Ok(());
        }
        let tdir = self.parent(raw, tparents, false)?;
        self.clear(dir, name, false)?;
        // No AT_SYMLINK_FOLLOW: a symlink target gets linked itself, never resolved.
        linkat(&tdir, OsStr::from_bytes(tname), dir, name, AtFlags::empty())?;
        Ok(())
    }

    fn dir_meta(&mut self, dir: &File, key: Vec<u8>, meta: &Meta) -> Result<(), UnpackError> {
        fchown(dir, Some(meta.uid), Some(meta.gid))?;
        fchmod(dir, meta.mode)?;
        set_xattrs(dir, &meta.xattrs)?;
        self.dir_times.push((key, meta.mtime));
        Ok(())
    }

    /// Opens the parent directory of an entry, refusing to traverse symlinks.
    fn parent(&mut self, raw: &[u8], comps: &[&[u8]], create: bool) -> Result<File, UnpackError> {
        self.open_path(comps, create)
            .map_err(|e| match e.raw_os_error() {
                // O_DIRECTORY|O_NOFOLLOW on a symlink gives ENOTDIR (or ELOOP).
                Some(libc::ELOOP | libc::ENOTDIR) => {
                    unsafe_path(raw, "a parent component is a symlink or not a directory")
                }
                _ => e.into(),
            })
    }

    fn open_path(&mut self, comps: &[&[u8]], create: bool) -> io::Result<File> {
        let key = comps.join(&b'/');
        if let Some((cached_key, dir)) = &self.cached {
            if *cached_key == key {
                return dir.try_clone();
            }
        }
        let mut dir = self.root.try_clone()?;
        for &c in comps {
            let name = OsStr::from_bytes(c);
            dir = match open_dir_at(&dir, name) {
                Err(Errno::ENOENT) if create => {
                    // Like docker, create missing parents; a later entry may set their metadata.
                    match mkdirat(&dir, name, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    open_dir_at(&dir, name)?
                }
                other => other?,
            };
        }
        self.cached = Some((key, dir.try_clone()?));
        Ok(dir)
    }

    /// Makes room for a new entry at `dir/name`, never following symlinks. Returns whether an
    /// existing directory was kept (directory over directory).
    fn clear(&mut self, dir: &File, name: &OsStr, keep_dir: bool) -> Result<bool, UnpackError> {
        let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if is_dir && keep_dir {
            return Ok(true);
        }
        self.cached = None;
        if is_dir {
            // std's remove_dir_all never follows symlinks inside the tree; the /proc path keeps
            // the lookup relative to the already verified parent fd.
            std::fs::remove_dir_all(fd_path(dir).join(name))?;
        } else {
            unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)?;
        }
        Ok(false)
    }

    fn restore_dir_times(&mut self) -> Result<(), UnpackError> {
        for (key, mtime) in std::mem::take(&mut self.dir_times) {
            let comps: Vec<&[u8]> = key
                .split(|&b| b == b'/')
                .filter(|c| !c.is_empty())
                .collect();
            let Some((&name, parents)) = comps.split_last() else {
                futimens(&self.root, &mtime, &mtime)?;
                continue;
            };
            // A later entry may have replaced the directory or a parent: its own times win.
            let Ok(dir) = self.open_path(parents, false) else {
                continue;
            };
            let name = OsStr::from_bytes(name);
            match fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                    utimensat(&dir, name, &mtime, &mtime, UtimensatFlags::NoFollowSymlink)?
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn open_dir_at(dir: &File, name: &OsStr) -> nix::Result<File> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(dir, name, flags, Mode::empty()).map(File::from)
}

fn device(h: &tar::Header) -> io::Result<libc::dev_t> {
    let major = h.device_major()?.unwrap_or(0);
    let minor = h.device_minor()?.unwrap_or(0);
    Ok(makedev(major.into(), minor.into()))
}

fn fd_path(f: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

/// Owner, mode and times for symlinks and device nodes, which cannot be opened safely.
fn node_meta(dir: &File, name: &OsStr, meta: &Meta, chmod: bool) -> Result<(), UnpackError> {
    let (uid, gid) = (Some(meta.uid), Some(meta.gid));
    fchownat(dir, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if chmod {
        // mknod applies the umask. We just created this node ourselves, so following is moot.
        fchmodat(dir, name, meta.mode, FchmodatFlags::FollowSymlink)?;
    }
    utimensat(
        dir,
        name,
        &meta.mtime,
        &meta.mtime,
        UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

fn set_xattrs(file: &File, xattrs: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
    for (name, value) in xattrs {
        match file.set_xattr(OsStr::from_bytes(name), value) {
            // Not every filesystem takes every namespace (user.* on tmpfs, for one): a missing
            // xattr beats a failed pull.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EPERM)) => {}
            other => other?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use tar::Header;

    use crate::test_tar::Tar;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// A layer dir two levels below a scratch root, so escapes have somewhere to land.
    struct Sandbox {
        base: tempfile::TempDir,
        dest: PathBuf,
    }

    impl Sandbox {
        fn new() -> Self {
            let base = tempfile::tempdir().unwrap();
            let dest = base.path().join("x/y/layer");
            std::fs::create_dir_all(&dest).unwrap();
            Sandbox { base, dest }
        }

        fn unpack(&self, tar: &[u8]) -> Result<UnpackStats, UnpackError> {
            unpack_layer(tar, &self.dest)
        }

        fn assert_nothing_outside(&self) {
            for (dir, only) in [("", "x"), ("x", "y"), ("x/y", "layer")] {
                let names: Vec<_> = std::fs::read_dir(self.base.path().join(dir))
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                assert_eq!(names, [only], "stray entries next to {dir:?}");
            }
        }
    }

    fn lstat(p: &Path) -> std::fs::Metadata {
        std::fs::symlink_metadata(p).unwrap()
    }

    fn assert_unsafe(r: Result<UnpackStats, UnpackError>) {
        assert!(
            matches!(r, Err(UnpackError::UnsafePath { .. })),
            "expected UnsafePath, got {r:?}"
        );
    }

    fn sha256_id(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(data)))
    }

    #[test]
    fn basic_entries_keep_metadata() {
        if !is_root() {
            return;
        }
        let owner = |h: &mut Header| {
            h.set_uid(1234);
            h.set_gid(5678);
        };
        let tar = Tar::new()
            .entry(b"d/", EntryType::Directory, b"", b"", |h| {
                owner(h);
                h.set_mode(0o1777);
                h.set_mtime(1111);
            })
            .entry(b"d/f", EntryType::Regular, b"", b"hello", |h| {
                owner(h);
                h.set_mode(0o4755);
                h.set_mtime(2222);
            })
            .entry(b"d/s", EntryType::Symlink, b"f", b"", |h| {
                owner(h);
                h.set_mtime(3333);
            })
            .hardlink(b"d/h", b"d/f")
            .entry(b"p", EntryType::Fifo, b"", b"", |h| h.set_mode(0o600))
            .entry(b"null", EntryType::Char, b"", b"", |h| {
                h.set_mode(0o666);
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
            })
            .file(b"/abs/file", b"abc")
            .file(b"bin/\xff\xfe", b"")
            .bytes();
        let sb = Sandbox::new();
        let stats = sb.unpack(&tar).unwrap();
        assert_eq!(stats.size, 8);
        let d = &sb.dest;

        let m = lstat(&d.join("d"));
        assert!(m.is_dir());
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o1777, 1234, 5678));
        assert_eq!(m.mtime(), 1111, "dir mtime restored after children");

        let m = lstat(&d.join("d/f"));
        assert_eq!(std::fs::read(d.join("d/f")).unwrap(), b"hello");
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o4755, 1234, 5678));
        assert_eq!((m.mtime(), m.nlink()), (2222, 2));
        assert_eq!(lstat(&d.join("d/h")).ino(), m.ino());

        let m = lstat(&d.join("d/s"));
        assert!(m.file_type().is_symlink());
        assert_eq!((m.uid(), m.mtime()), (1234, 3333));
        assert_eq!(std::fs::read_link(d.join("d/s")).unwrap(), Path::new("f"));

        let m = lstat(&d.join("p"));
        assert!(m.file_type().is_fifo());
        assert_eq!(m.mode() & 0o7777, 0o600);
        let m = lstat(&d.join("null"));
        assert!(m.file_type().is_char_device());
        assert_eq!((m.rdev(), m.mode() & 0o7777), (makedev(1, 3), 0o666));

        assert_eq!(std::fs::read(d.join("abs/file")).unwrap(), b"abc");
        assert!(lstat(&d.join(OsStr::from_bytes(b"bin/\xff\xfe"))).is_file());
        sb.assert_nothing_outside();
    }

    #[test]
    fn xattrs_round_trip_and_trusted_is_dropped() {
        if !is_root() {
            return;
        }
        // v2 vfs_cap_data: effective, permitted = CAP_NET_BIND_SERVICE.
        let cap: &[u8] = &[1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let tar = Tar::new()
            .pax(&[
                ("SCHILY.xattr.user.foo", b"bar"),
                ("SCHILY.xattr.security.capability", cap),
                ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
                ("mtime", b"1234.5"),
            ])
            .file(b"f", b"x")
            .bytes();
        let sb = Sandbox::new();
        sb.unpack(&tar).unwrap();
        let f = sb.dest.join("f");
        let m = lstat(&f);
        assert_eq!((m.mtime(), m.mtime_nsec()), (1234, 500_000_000));
        assert_eq!(xattr::get(&f, "trusted.overlay.opaque").unwrap(), None);
        let probe = sb.base.path().join("probe");
        std::fs::write(&probe, b"").unwrap();
        match xattr::set(&probe, "user.probe", b"1") {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                eprintln!("skipping user.* assertion: unsupported here")
            }
            r => {
                r.unwrap();
                assert_eq!(
                    xattr::get(&f, "user.foo").unwrap().as_deref(),
                    Some(&b"bar"[..])
                );
            }
        }
        assert_eq!(
            xattr::get(&f, "security.capability").unwrap().as_deref(),
            Some(cap)
        );
    }

    #[test]
    fn whiteouts_become_char_devices() {
        if !is_root() {
            return;
        }
        let tar = Tar::new()
            .file(b".wh.gone", b"")
            .file(b"d/.wh.x", b"")
            .dir(b".wh..wh.plnk/")
            .file(b".wh..wh.plnk/123.456", b"aufs")
            .file(b"d/.wh..wh.other", b"")
            .bytes();
        let sb = Sandbox::new();
        sb.unpack(&tar).unwrap();
        for p in ["gone", "d/x"] {
            let m = lstat(&sb.dest.join(p));
            assert!(m.file_type().is_char_device(), "{p}");
            assert_eq!(m.rdev(), 0);
        }
        let mut names: Vec<_> = std::fs::read_dir(&sb.dest)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["d", "gone"]);
        let names: Vec<_> = std::fs::read_dir(sb.dest.join("d")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn opaque_marker_sets_xattr() {
        if !is_root() {
            return;
        }
        let tar = Tar::new()
            .dir(b"d/")
            .file(b"d/.wh..wh..opq", b"")
            .file(b"e/.wh..wh..opq", b"")
            .bytes();
        let sb = Sandbox::new();
        sb.unpack(&tar).unwrap();
        for d in ["d", "e"] {
            let dir = sb.dest.join(d);
            let v = xattr::get(&dir, OPAQUE_XATTR).unwrap();
            assert_eq!(v.as_deref(), Some(&b"y"[..]));
            assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0);
        }
    }

    #[test]
    fn dotdot_escapes_are_refused() {
        for path in [
            &b"../evil"[..],
            b"a/../../evil",
            b"/../evil",
            b"a/b/../../../evil",
        ] {
            let sb = Sandbox::new();
            assert_unsafe(sb.unpack(&Tar::new().file(path, b"pwned").bytes()));
            sb.assert_nothing_outside();
        }
        // `..` that stays inside is plain normalisation.
        let sb = Sandbox::new();
        let tar = Tar::new().file(b"a/../ok", b"").file(b"./b/./c", b"");
        sb.unpack(&tar.bytes()).unwrap();
        assert!(sb.dest.join("ok").is_file() && sb.dest.join("b/c").is_file());
    }

    #[test]
    fn nothing_is_written_through_symlinked_parents() {
        if !is_root() {
            return;
        }
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().as_os_str().as_bytes();
        type Step = fn(Tar) -> Tar;
        let seconds: [(&str, Step); 6] = [
            ("file", |t| t.file(b"link/file", b"pwned")),
            ("dir", |t| t.dir(b"link/sub/")),
            ("symlink", |t| t.symlink(b"link/s", b"/")),
            ("whiteout", |t| t.file(b"link/.wh.x", b"")),
            ("opaque", |t| t.file(b"link/.wh..wh..opq", b"")),
            ("hardlink", |t| t.file(b"f", b"").hardlink(b"link/h", b"f")),
        ];
        for (what, second) in seconds {
            for link in [target, b".."] {
                let sb = Sandbox::new();
                let tar = second(Tar::new().symlink(b"link", link)).bytes();
                assert_unsafe(sb.unpack(&tar));
                assert_eq!(
                    std::fs::read_dir(outside.path()).unwrap().count(),
                    0,
                    "{what}"
                );
                assert_eq!(xattr::get(outside.path(), OPAQUE_XATTR).unwrap(), None);
                sb.assert_nothing_outside();
            }
        }
    }

    #[test]
    fn hardlink_escapes_are_refused() {
        if !is_root() {
            return;
        }
        let sb = Sandbox::new();
        assert_unsafe(sb.unpack(&Tar::new().hardlink(b"h", b"../../etc/passwd").bytes()));
        sb.assert_nothing_outside();

        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, b"s").unwrap();
        let sb = Sandbox::new();
        let tar = Tar::new()
            .symlink(b"sl", outside.path().as_os_str().as_bytes())
            .hardlink(b"h", b"sl/secret")
            .bytes();
        assert_unsafe(sb.unpack(&tar));
        assert_eq!(lstat(&secret).nlink(), 1);
        assert!(!sb.dest.join("h").exists());
    }

    #[test]
    fn replacing_entries_never_follows_symlinks() {
        if !is_root() {
            return;
        }
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"orig").unwrap();
        let tar = Tar::new()
            .symlink(b"x", victim.as_os_str().as_bytes())
            .file(b"x", b"new")
            .symlink(b"y", outside.path().as_os_str().as_bytes())
            .dir(b"y/")
            .dir(b"d/")
            .file(b"d/f", b"")
            .file(b"d", b"file now")
            .file(b"g", b"")
            .dir(b"g/")
            .dir(b"k/")
            .file(b"k/c", b"kept")
            .entry(b"k/", EntryType::Directory, b"", b"", |h| h.set_mode(0o700))
            .bytes();
        let sb = Sandbox::new();
        sb.unpack(&tar).unwrap();
        let d = &sb.dest;
        assert_eq!(std::fs::read(&victim).unwrap(), b"orig");
        assert_eq!(std::fs::read(d.join("x")).unwrap(), b"new");
        assert!(lstat(&d.join("x")).is_file());
        assert!(lstat(&d.join("y")).is_dir());
        assert_eq!(std::fs::read(d.join("d")).unwrap(), b"file now");
        assert!(lstat(&d.join("g")).is_dir());
        assert_eq!(std::fs::read(d.join("k/c")).unwrap(), b"kept");
        assert_eq!(lstat(&d.join("k")).mode() & 0o7777, 0o700);
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
        sb.assert_nothing_outside();
    }

    #[test]
    fn depth_is_bounded_and_deep_trees_can_be_replaced() {
        if !is_root() {
            return;
        }
        let deep = format!("{}f", "a/".repeat(300));
        let tar = Tar::new()
            .pax(&[("path", deep.as_bytes())])
            .file(b"placeholder", b"deep")
            .file(b"a", b"flat")
            .bytes();
        let sb = Sandbox::new();
        sb.unpack(&tar).unwrap();
        assert_eq!(std::fs::read(sb.dest.join("a")).unwrap(), b"flat");

        let too_deep = format!("{}f", "a/".repeat(MAX_DEPTH));
        let tar = Tar::new()
            .pax(&[("path", too_deep.as_bytes())])
            .file(b"placeholder", b"")
            .bytes();
        let r = Sandbox::new().unpack(&tar);
        assert!(matches!(r, Err(UnpackError::InvalidEntry { .. })), "{r:?}");
    }

    #[test]
    fn diff_id_hashes_the_whole_stream() {
        let mut tar = Tar::new().dir(b"d/").file(b"d/f", b"0123456789").bytes();
        tar.extend_from_slice(&[0; 4096]);
        let sb = Sandbox::new();
        if !is_root() {
            return;
        }
        let stats = sb.unpack(&tar).unwrap();
        assert_eq!(stats.diff_id, sha256_id(&tar));
        assert_eq!(stats.size, 10);
    }

    #[test]
    fn compressed_streams_are_detected() {
        assert_eq!(detect_compression(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            detect_compression(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(detect_compression(b"us"), Compression::None);
        assert_eq!(detect_compression(&[]), Compression::None);
        if !is_root() {
            return;
        }
        let tar = Tar::new().file(b"f", b"payload").bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        for stream in [gz, zst, tar.clone()] {
            // A 1-byte buffer makes fill_buf return less than the whole magic.
            let r = BufReader::with_capacity(1, io::Cursor::new(stream));
            let sb = Sandbox::new();
            let stats = unpack_layer(decompressed(r).unwrap(), &sb.dest).unwrap();
            assert_eq!(stats.diff_id, sha256_id(&tar));
            assert_eq!(std::fs::read(sb.dest.join("f")).unwrap(), b"payload");
        }
        let mut out = Vec::new();
        let mut empty = decompressed(io::Cursor::new(Vec::new())).unwrap();
        assert_eq!(empty.read_to_end(&mut out).unwrap(), 0);
    }

    #[test]
    fn mangled_headers_never_panic_or_escape() {
        if !is_root() {
            return;
        }
        let good = Tar::new()
            .dir(b"d/")
            .file(b"d/f", b"data")
            .symlink(b"l", b"../../../..")
            .hardlink(b"h", b"d/f")
            .file(b"d/.wh.z", b"")
            .symlink(b"m", b"/")
            .bytes();
        let positions: Vec<usize> = tar::Archive::new(&good[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().raw_header_position() as usize)
            .collect();
        let alphabet = b"/..\0a0752134Lx\xffml";
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as usize
        };
        for _ in 0..400 {
            let mut t = good.clone();
            for _ in 0..1 + next() % 4 {
                let pos = positions[next() % positions.len()];
                t[pos + next() % 257] = alphabet[next() % alphabet.len()];
            }
            // Keep checksums valid so mutations reach the unpacker.
            for &pos in &positions {
                let mut h = Header::new_old();
                h.as_mut_bytes().copy_from_slice(&t[pos..pos + 512]);
                h.set_cksum();
                t[pos..pos + 512].copy_from_slice(h.as_bytes());
            }
            let sb = Sandbox::new();
            let _ = sb.unpack(&t);
            sb.assert_nothing_outside();
        }
    }

    #[test]
    fn overlay_mount_merges_two_layers() {
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        if !is_root() {
            return;
        }
        let base = tempfile::tempdir().unwrap();
        let [low, up, merged] = ["low", "up", "merged"].map(|n| base.path().join(n));
        for d in [&low, &up, &merged] {
            std::fs::create_dir(d).unwrap();
        }
        let lower = Tar::new().file(b"a", b"A").dir(b"d/").file(b"d/f", b"F");
        let upper = Tar::new()
            .file(b".wh.a", b"")
            .dir(b"d/")
            .file(b"d/.wh..wh..opq", b"")
            .file(b"d/g", b"G");
        unpack_layer(&lower.bytes()[..], &low).unwrap();
        unpack_layer(&upper.bytes()[..], &up).unwrap();

        let opts = format!("lowerdir={}:{}", up.display(), low.display());
        let flags = MsFlags::MS_RDONLY;
        match mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            flags,
            Some(opts.as_str()),
        ) {
            Ok(()) => {}
            Err(Errno::ENODEV) => return eprintln!("skipping: no overlayfs"),
            Err(e) => panic!("mounting overlay: {e}"),
        }
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = umount2(self.0, MntFlags::MNT_DETACH);
            }
        }
        let _guard = Unmount(&merged);

        assert!(std::fs::symlink_metadata(merged.join("a")).is_err());
        let names: Vec<_> = std::fs::read_dir(merged.join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["g"]);
        assert_eq!(std::fs::read(merged.join("d/g")).unwrap(), b"G");
    }
}
