//! A create request's mounts (`Binds`, `Mounts`, `Tmpfs`, `VolumesFrom`,
//! `Config.Volumes`) checked with dockerd's rules and messages, and the
//! checks the kinds share.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::api_mounts::{tmpfs_mount, ApiMount};
use super::{parse_bind, parse_mount, Requested, Wanted};
use crate::error::{EngineError, EngineResult};
use crate::volume::LOCAL_DRIVER;

pub(super) fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidParameter(msg.into())
}

pub(super) const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

/// Go's `path.Clean` for the paths we take.
pub fn clean_path(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut out: Vec<&str> = vec![];
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !abs {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    match (abs, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// dockerd's check of a `-v` mode: known words, at most one of a kind.
pub(super) fn valid_mode(mode: &str) -> bool {
    if mode.is_empty() {
        return true;
    }
    let mut counts = [0; 5];
    for o in mode.split(',') {
        let kind = match o {
            "rw" | "ro" => 0,
            "z" | "Z" => 1,
            o if PROPAGATIONS.contains(&o) => 2,
            "nocopy" => 3,
            "consistent" | "cached" | "delegated" => 4,
            _ => return false,
        };
        counts[kind] += 1;
    }
    counts.iter().all(|c| *c <= 1)
}

/// The checks of a mount target, in dockerd's words (unwrapped).
pub(super) fn check_target(target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("field Target must not be empty".into());
    }
    if clean_path(target) == "/" {
        return Err("invalid specification: destination can't be '/'".into());
    }
    if !target.starts_with('/') {
        return Err(format!(
            "invalid mount path: '{target}' mount path must be absolute"
        ));
    }
    Ok(())
}

pub(super) fn mount_config_error(kind: &str, e: impl std::fmt::Display) -> EngineError {
    invalid(format!("invalid mount config for type {kind:?}: {e}"))
}

pub(super) fn check_driver(driver: &str) -> EngineResult<()> {
    if driver.is_empty() || driver == LOCAL_DRIVER {
        return Ok(());
    }
    Err(EngineError::NotFound(format!(
        "error looking up volume plugin {driver}: plugin \"{driver}\" not found"
    )))
}

fn strings(hc: &Map<String, Value>, key: &str) -> EngineResult<Vec<String>> {
    match hc.get(key) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| invalid(format!("invalid HostConfig.{key}: {e}"))),
    }
}

/// Parses and checks the mount options of a create request.
pub fn parse(hc: &Map<String, Value>, config_volumes: &[String]) -> EngineResult<Requested> {
    let driver = hc
        .get("VolumeDriver")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let tmpfs: BTreeMap<String, String> = match hc.get("Tmpfs") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| invalid(format!("invalid HostConfig.Tmpfs: {e}")))?,
    };
    let mounts: Vec<ApiMount> = match hc.get("Mounts") {
        None | Some(Value::Null) => vec![],
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| invalid(format!("invalid HostConfig.Mounts: {e}")))?,
    };
    let mut req = Requested::default();
    for spec in strings(hc, "VolumesFrom")? {
        if spec.is_empty() {
            return Err(invalid(
                "volumes-from specification cannot be an empty string",
            ));
        }
        let (id, mode) = spec.split_once(':').unwrap_or((&spec, ""));
        let bad = !valid_mode(mode)
            || mode
                .split(',')
                .any(|w| PROPAGATIONS.contains(&w) || w == "nocopy");
        if bad {
            return Err(invalid(format!("invalid mode: {mode}")));
        }
        req.volumes_from
            .push((id.to_string(), !mode.split(',').any(|w| w == "ro")));
    }
    let tmpfs_dests: Vec<String> = tmpfs.keys().map(|d| clean_path(d)).collect();
    let mut taken: Vec<String> = vec![];
    for raw in strings(hc, "Binds")? {
        let w = parse_bind(&raw, &driver)?;
        let d = w.mount.point.destination.clone();
        if taken.contains(&d) || tmpfs_dests.contains(&d) {
            return Err(invalid(format!("Duplicate mount point: {d}")));
        }
        taken.push(d);
        req.explicit.push(w);
    }
    for m in &mounts {
        let w = parse_mount(m, &driver)?;
        let d = w.mount.point.destination.clone();
        if taken.contains(&d) || tmpfs_dests.contains(&d) {
            return Err(invalid(format!("Duplicate mount point: {}", m.target)));
        }
        taken.push(d);
        req.explicit.push(w);
    }
    for (dest, opts) in &tmpfs {
        check_target(dest).map_err(invalid)?;
        let words: Vec<String> = opts.split(',').map(String::from).collect();
        let mut mount = tmpfs_mount(dest, &words)
            .map_err(|e| invalid(format!("invalid tmpfs options for {dest}: {e}")))?;
        mount.hidden = true;
        req.explicit.push(Wanted {
            mount,
            ..Default::default()
        });
    }
    for raw in config_volumes {
        check_target(raw).map_err(|e| {
            invalid(format!(
                "invalid volume specification: '{raw}': invalid mount config for type \"volume\": {e}"
            ))
        })?;
        let d = clean_path(raw);
        if !req.anonymous.contains(&d) {
            req.anonymous.push(d);
        }
    }
    check_driver(&driver)?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::mounts::{MountPoint, MountType};

    fn hc(j: &str) -> Map<String, Value> {
        match serde_json::from_str(j).expect("json") {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn err(j: &str) -> String {
        parse(&hc(j), &[]).unwrap_err().to_string()
    }

    #[test]
    fn paths_clean_like_go() {
        assert_eq!(clean_path("/a/b/../c/"), "/a/c");
        assert_eq!(clean_path("/../x"), "/x");
        assert_eq!(clean_path("//"), "/");
        assert_eq!(clean_path("a/./b"), "a/b");
    }

    #[test]
    fn mounts_parse_and_check() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().display().to_string();
        let r = parse(
            &hc(&format!(
                r#"{{"Mounts":[
                {{"Type":"bind","Source":"{src}","Target":"/b","ReadOnly":true,"BindOptions":{{"Propagation":"slave"}}}},
                {{"Type":"volume","Source":"v1","Target":"/v","VolumeOptions":{{"NoCopy":true,"Labels":{{"a":"b"}}}}}},
                {{"Type":"volume","Target":"/anon"}},
                {{"Type":"tmpfs","Target":"/t","TmpfsOptions":{{"SizeBytes":1048576,"Mode":1777,"Options":[["exec"]]}}}}
            ]}}"#
            )),
            &[],
        )
        .expect("parses");
        let pts: Vec<&MountPoint> = r.explicit.iter().map(|w| &w.mount.point).collect();
        assert_eq!(pts[0].propagation, "slave");
        assert!(!pts[0].rw && !r.explicit[0].mount.create_source);
        assert_eq!(pts[1].name, "v1");
        assert!(!r.explicit[1].copy);
        assert_eq!(r.explicit[1].labels.as_ref().unwrap()["a"], "b");
        assert_eq!(pts[2].name, "");
        assert!(r.explicit[2].copy);
        assert_eq!(pts[3].kind, MountType::Tmpfs);
        assert_eq!(
            r.explicit[3].mount.tmpfs_options,
            [
                "nosuid",
                "nodev",
                "rprivate",
                "mode=3361",
                "size=1m",
                "exec"
            ]
        );

        let missing =
            err(r#"{"Mounts":[{"Type":"bind","Source":"/no/such/dir/x","Target":"/b"}]}"#);
        assert_eq!(
            missing,
            "invalid mount config for type \"bind\": bind source path does not exist: /no/such/dir/x"
        );
        for (j, want) in [
            (
                r#"{"Mounts":[{"Type":"bind","Target":"/b"}]}"#,
                "field Source must not be empty",
            ),
            (
                r#"{"Mounts":[{"Type":"tmpfs","Source":"x","Target":"/b"}]}"#,
                "field Source must not be specified",
            ),
            (
                r#"{"Mounts":[{"Type":"volume","Target":"/b","ReadOnly":true}]}"#,
                "must not set ReadOnly mode when using anonymous volumes",
            ),
            (
                r#"{"Mounts":[{"Type":"volume","Target":"/b","BindOptions":{}}]}"#,
                "field BindOptions must not be specified",
            ),
            (
                r#"{"Mounts":[{"Type":"npipe","Target":"/b"}]}"#,
                "invalid mount config for type \"npipe\": mount type unknown",
            ),
            (
                r#"{"Mounts":[{"Type":"volume","Target":"b"}]}"#,
                "invalid mount path: 'b' mount path must be absolute",
            ),
            (
                r#"{"Mounts":[{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"Options":[["uid","1"]]}}]}"#,
                "invalid option: uid",
            ),
            (
                r#"{"Binds":["/a:/x"],"Mounts":[{"Type":"tmpfs","Target":"/x/"}]}"#,
                "Duplicate mount point: /x/",
            ),
            (r#"{"Binds":["/a:/x","v:/x"]}"#, "Duplicate mount point: /x"),
            (
                r#"{"Binds":["/a:/x"],"Tmpfs":{"/x":""}}"#,
                "Duplicate mount point: /x",
            ),
            (
                r#"{"Tmpfs":{"rel":""}}"#,
                "invalid mount path: 'rel' mount path must be absolute",
            ),
            (
                r#"{"Tmpfs":{"/t":"bogus"}}"#,
                "invalid tmpfs options for /t",
            ),
            (r#"{"VolumesFrom":["c:rshared"]}"#, "invalid mode: rshared"),
            (
                r#"{"VolumesFrom":[""]}"#,
                "volumes-from specification cannot be an empty string",
            ),
            (r#"{"Binds":"nope"}"#, "invalid HostConfig.Binds"),
        ] {
            let e = err(j);
            assert!(e.contains(want), "{j}: {e}");
        }
    }

    #[test]
    fn tmpfs_map_and_anonymous_volumes() {
        let r = parse(
            &hc(r#"{"Tmpfs":{"/run":"rw,size=64m,exec"},"VolumesFrom":["other:ro","x"]}"#),
            &["/data/".into(), "/data".into()],
        )
        .unwrap();
        let t = &r.explicit[0].mount;
        assert!(t.hidden && t.point.rw);
        assert_eq!(
            t.tmpfs_options,
            ["nosuid", "nodev", "rprivate", "rw", "size=64m", "exec"]
        );
        assert_eq!(r.anonymous, ["/data"]);
        assert_eq!(
            r.volumes_from,
            [("other".to_string(), false), ("x".to_string(), true)]
        );
        let e = parse(&hc("{}"), &["data".into()]).unwrap_err().to_string();
        assert!(
            e.contains("invalid mount path: 'data' mount path must be absolute"),
            "{e}"
        );
    }
}
