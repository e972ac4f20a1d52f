//! Tar archives for tests: entries with raw name and link fields (so
//! hostile paths can be written), as layers and image archives.

use tar::{EntryType, Header};

/// Builds tars with raw name/link fields: `Header::set_path` refuses `..`, and hostile
/// paths are the point.
pub struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    pub fn new() -> Self {
        Tar(tar::Builder::new(Vec::new()))
    }

    pub fn entry(
        mut self,
        path: &[u8],
        kind: EntryType,
        link: &[u8],
        data: &[u8],
        edit: impl FnOnce(&mut Header),
    ) -> Self {
        let mut h = Header::new_gnu();
        let old = h.as_old_mut();
        old.name[..path.len()].copy_from_slice(path);
        old.linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        edit(&mut h);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    pub fn file(self, path: &[u8], data: &[u8]) -> Self {
        self.entry(path, EntryType::Regular, b"", data, |_| {})
    }

    pub fn dir(self, path: &[u8]) -> Self {
        self.entry(path, EntryType::Directory, b"", b"", |_| {})
    }

    pub fn symlink(self, path: &[u8], target: &[u8]) -> Self {
        self.entry(path, EntryType::Symlink, target, b"", |_| {})
    }

    pub fn hardlink(self, path: &[u8], target: &[u8]) -> Self {
        self.entry(path, EntryType::Link, target, b"", |_| {})
    }

    pub fn pax(mut self, exts: &[(&str, &[u8])]) -> Self {
        self.0.append_pax_extensions(exts.iter().copied()).unwrap();
        self
    }

    pub fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// A tar of regular files.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    files
        .iter()
        .fold(Tar::new(), |t, (name, data)| t.file(name.as_bytes(), data))
        .bytes()
}
