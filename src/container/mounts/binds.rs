//! One `HostConfig.Binds` entry (`-v src:dst[:mode]`).

use super::parse::{check_driver, check_target, invalid, valid_mode, PROPAGATIONS};
use super::{clean_path, MountPoint, MountType, StoredMount, Wanted};
use crate::error::EngineResult;
use crate::volume::LOCAL_DRIVER;

/// One `Binds` entry: `src:dst[:mode]`, src an absolute host path (bind)
/// or a volume name.
pub fn parse_bind(raw: &str, volume_driver: &str) -> EngineResult<Wanted> {
    let spec_err = || invalid(format!("invalid volume specification: '{raw}'"));
    let parts: Vec<&str> = raw.splitn(4, ':').collect();
    if parts[0].is_empty() {
        return Err(spec_err());
    }
    let (src, dst, mode) = match parts[..] {
        [dst] => ("", dst, ""),
        [_, m] if valid_mode(m) => return Err(spec_err()),
        [src, dst] => (src, dst, ""),
        [src, dst, mode] => (src, dst, mode),
        _ => return Err(spec_err()),
    };
    if !valid_mode(mode) {
        return Err(invalid(format!("invalid mode: {mode}")));
    }
    let words: Vec<&str> = mode.split(',').collect();
    let kind = if src.starts_with('/') {
        MountType::Bind
    } else {
        MountType::Volume
    };
    let rw = !words.contains(&"ro");
    let propagation = words.iter().find(|w| PROPAGATIONS.contains(w)).copied();
    let wrap = |e: String| {
        invalid(format!(
            "invalid volume specification: '{raw}': invalid mount config for type \"{}\": {e}",
            kind.as_str()
        ))
    };
    check_target(dst).map_err(wrap)?;
    let mut point = MountPoint {
        kind,
        destination: clean_path(dst),
        mode: mode.to_string(),
        rw,
        ..Default::default()
    };
    match kind {
        MountType::Bind => {
            point.source = clean_path(src);
            point.propagation = propagation.unwrap_or("rprivate").to_string();
        }
        _ => {
            if propagation.is_some() {
                return Err(wrap("field BindOptions must not be specified".into()));
            }
            if src.is_empty() && !rw {
                return Err(wrap(
                    "must not set ReadOnly mode when using anonymous volumes".into(),
                ));
            }
            check_driver(volume_driver)?;
            point.name = src.to_string();
            point.driver = LOCAL_DRIVER.into();
            if point.mode.is_empty() {
                point.mode = "z".into();
            }
        }
    }
    Ok(Wanted {
        mount: StoredMount {
            point,
            create_source: kind == MountType::Bind,
            ..Default::default()
        },
        copy: !words.contains(&"nocopy"),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::EngineError;

    #[test]
    fn binds_parse_with_dockerd_rules() {
        let w = parse_bind("/host/dir/:/data:ro,rshared", "").unwrap();
        let p = &w.mount.point;
        assert_eq!(p.kind, MountType::Bind);
        assert_eq!(
            (p.source.as_str(), p.destination.as_str()),
            ("/host/dir", "/data")
        );
        assert!(!p.rw);
        assert_eq!(p.propagation, "rshared");
        assert_eq!(p.mode, "ro,rshared");
        assert!(w.mount.create_source);

        let w = parse_bind("/h:/x", "").unwrap();
        assert_eq!(w.mount.point.propagation, "rprivate");
        assert!(w.mount.point.rw);

        let w = parse_bind("cache:/var/cache:nocopy", "").unwrap();
        let p = &w.mount.point;
        assert_eq!(
            (p.kind, p.name.as_str(), p.driver.as_str()),
            (MountType::Volume, "cache", "local")
        );
        assert_eq!(p.mode, "nocopy");
        assert!(!w.copy);
        let w = parse_bind("cache:/c", "").unwrap();
        assert_eq!(
            w.mount.point.mode, "z",
            "dockerd's default mode for local volumes"
        );
        assert!(w.copy);
        assert!(parse_bind("v:/z:Z", "").is_ok());

        for (raw, want) in [
            ("", "invalid volume specification: ''"),
            (":/x", "invalid volume specification: ':/x'"),
            ("/x:rw", "invalid volume specification: '/x:rw'"),
            ("a:b:c:d", "invalid volume specification: 'a:b:c:d'"),
            ("/a:/b:bogus", "invalid mode: bogus"),
            ("/a:/b:ro,rw", "invalid mode: ro,rw"),
            (
                "/a:rel",
                "invalid volume specification: '/a:rel': invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be absolute",
            ),
            (
                "/a:/",
                "invalid volume specification: '/a:/': invalid mount config for type \"bind\": invalid specification: destination can't be '/'",
            ),
            (
                "v:/x:rshared",
                "invalid volume specification: 'v:/x:rshared': invalid mount config for type \"volume\": field BindOptions must not be specified",
            ),
        ] {
            let e = parse_bind(raw, "").unwrap_err();
            assert!(matches!(e, EngineError::InvalidParameter(_)), "{raw}");
            assert_eq!(e.to_string(), want, "{raw}");
        }
        assert!(matches!(
            parse_bind("v:/x", "flocker").unwrap_err(),
            EngineError::NotFound(_)
        ));
    }
}
