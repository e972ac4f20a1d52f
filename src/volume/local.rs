//! The `local` driver's rules: volume names, driver options, and the
//! backing each option set asks for.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{EngineError, EngineResult};

/// dockerd's name rule for local volumes.
pub const NAME_CHARS: &str = "[a-zA-Z0-9][a-zA-Z0-9_.-]";

/// Checks a volume name like dockerd's local driver; the error is wrapped
/// by the caller with the operation (`create NAME: ...`).
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.len() == 1 {
        return Err(
            "volume name is too short, names should be at least two alphanumeric characters".into(),
        );
    }
    let mut b = name.bytes();
    let ok = matches!(b.next(), Some(c) if c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if !ok {
        return Err(format!(
            "{name:?} includes invalid characters for a local volume name, only {NAME_CHARS:?} are allowed. If you intended to pass a host directory, use absolute path"
        ));
    }
    Ok(())
}

/// What holds a volume's data.
#[derive(Clone, Debug, PartialEq)]
pub enum Backing {
    /// The plain `_data` directory.
    Dir,
    /// `type=none o=bind device=/path`: the device is bound in its place.
    Bind { device: PathBuf },
    /// `type=tmpfs device=tmpfs o=...`: a tmpfs mounted on `_data` on the
    /// host while a container uses it, so that containers share it.
    Tmpfs { options: Vec<String> },
}

const VALID_OPTS: &[&str] = &["type", "o", "device", "size"];

fn invalid(msg: String) -> EngineError {
    EngineError::InvalidParameter(msg)
}

/// Validates the driver options (dockerd's checks and wording) and says
/// what backs the volume. Option sets we cannot honour are refused by name.
pub fn parse_options(opts: &BTreeMap<String, String>) -> EngineResult<Backing> {
    if opts.is_empty() {
        return Ok(Backing::Dir);
    }
    for k in opts.keys() {
        if !VALID_OPTS.contains(&k.as_str()) {
            return Err(invalid(format!("invalid option: {k:?}")));
        }
    }
    if let Some(size) = opts.get("size") {
        if !matches!(size.trim(), "" | "0") {
            return Err(invalid("quota size requested but no quota support".into()));
        }
    }
    for (opt, needs) in [
        ("device", &["type"][..]),
        ("type", &["device"][..]),
        ("o", &["device", "type"][..]),
    ] {
        if opts.contains_key(opt) {
            if let Some(missing) = needs.iter().find(|n| !opts.contains_key(**n)) {
                return Err(invalid(format!("missing required option: {missing:?}")));
            }
        }
    }
    let kind = opts.get("type").map(String::as_str).unwrap_or("");
    let device = opts.get("device").map(String::as_str).unwrap_or("");
    let o: Vec<String> = opts
        .get("o")
        .map(|o| {
            o.split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    match kind {
        "" => Ok(Backing::Dir),
        "tmpfs" => {
            crate::runtime::rootfs::parse_options(&o)
                .map_err(|e| invalid(format!("invalid option: \"o\": {e}")))?;
            Ok(Backing::Tmpfs { options: o })
        }
        "none" | "bind" if o.iter().any(|x| x == "bind" || x == "rbind") => {
            if !device.starts_with('/') {
                return Err(invalid(format!(
                    "invalid option: \"device\": {device:?} is not an absolute path"
                )));
            }
            if let Some(x) = o
                .iter()
                .find(|x| !matches!(x.as_str(), "bind" | "rbind" | "rw"))
            {
                return Err(invalid(format!(
                    "invalid option: \"o={x}\" is not supported by mydocker for bind volumes"
                )));
            }
            Ok(Backing::Bind {
                device: PathBuf::from(device),
            })
        }
        other => Err(invalid(format!(
            "invalid option: \"type={other}\" is not supported by mydocker (only type=tmpfs, and type=none with o=bind)"
        ))),
    }
}

/// Whether `dir` is a mount point: its device differs from its parent's.
pub fn is_mounted(dir: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(d), Some(Ok(p))) = (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) else {
        return false;
    };
    d.dev() != p.dev()
}

/// Mounts the tmpfs of a `type=tmpfs` volume on its `_data`, unless it is
/// mounted already (by another container, or before a daemon restart).
pub fn mount_tmpfs(dir: &std::path::Path, options: &[String]) -> std::io::Result<()> {
    if is_mounted(dir) {
        return Ok(());
    }
    let (flags, _, data) = crate::runtime::rootfs::parse_options(options)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let data = (!data.is_empty()).then_some(data.as_str());
    nix::mount::mount(Some("tmpfs"), dir, Some("tmpfs"), flags, data)?;
    Ok(())
}

/// Unmounts a tmpfs volume's `_data` if it is mounted.
pub fn unmount_tmpfs(dir: &std::path::Path) -> std::io::Result<()> {
    if !is_mounted(dir) {
        return Ok(());
    }
    nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_follow_dockerd() {
        assert!(validate_name("data").is_ok());
        assert!(validate_name("a.b_c-1").is_ok());
        assert!(validate_name("x").unwrap_err().contains("too short"));
        for bad in ["../x", "a/b", "-ab", ".ab", "a b", ""] {
            let e = validate_name(bad).unwrap_err();
            assert!(e.contains("includes invalid characters"), "{bad}: {e}");
        }
    }

    #[test]
    fn options_are_checked_and_backed() {
        assert_eq!(parse_options(&opts(&[])).unwrap(), Backing::Dir);
        let e = parse_options(&opts(&[("foo", "1")])).unwrap_err();
        assert_eq!(e.to_string(), "invalid option: \"foo\"");
        let e = parse_options(&opts(&[("type", "tmpfs")])).unwrap_err();
        assert_eq!(e.to_string(), "missing required option: \"device\"");
        let e = parse_options(&opts(&[("o", "size=1m"), ("device", "tmpfs")])).unwrap_err();
        assert_eq!(e.to_string(), "missing required option: \"type\"");
        assert!(parse_options(&opts(&[("size", "10m")]))
            .unwrap_err()
            .to_string()
            .contains("no quota support"));
        assert_eq!(
            parse_options(&opts(&[
                ("type", "tmpfs"),
                ("device", "tmpfs"),
                ("o", "size=1m,uid=5")
            ]))
            .unwrap(),
            Backing::Tmpfs {
                options: vec!["size=1m".into(), "uid=5".into()]
            }
        );
        assert_eq!(
            parse_options(&opts(&[
                ("type", "none"),
                ("device", "/srv"),
                ("o", "bind")
            ]))
            .unwrap(),
            Backing::Bind {
                device: "/srv".into()
            }
        );
        for bad in [
            opts(&[("type", "none"), ("device", "rel"), ("o", "bind")]),
            opts(&[("type", "none"), ("device", "/srv"), ("o", "ro")]),
            opts(&[("type", "nfs"), ("device", ":/x"), ("o", "addr=1.2.3.4")]),
            opts(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "bogus")]),
        ] {
            let e = parse_options(&bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid option: "), "{bad:?}: {e}");
        }
    }
}
