//! One `HostConfig.Mounts` entry (`--mount`), and tmpfs options as
//! `mount -o` words (for `--tmpfs` too).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::parse::{check_driver, check_target, invalid, mount_config_error, PROPAGATIONS};
use super::{clean_path, MountPoint, MountType, StoredMount, Wanted};
use crate::error::EngineResult;
use crate::volume::LOCAL_DRIVER;

/// `HostConfig.Mounts[]` in the API's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ApiMount {
    #[serde(rename = "Type")]
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
    pub consistency: String,
    pub bind_options: Option<BindOptions>,
    pub volume_options: Option<VolumeOptions>,
    pub tmpfs_options: Option<TmpfsOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BindOptions {
    pub propagation: String,
    pub non_recursive: bool,
    pub create_mountpoint: bool,
    pub read_only_non_recursive: bool,
    pub read_only_force_recursive: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeOptions {
    pub no_copy: bool,
    pub labels: Option<BTreeMap<String, String>>,
    pub driver_config: Option<DriverConfig>,
    pub subpath: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DriverConfig {
    pub name: String,
    pub options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TmpfsOptions {
    pub size_bytes: i64,
    pub mode: u32,
    pub options: Option<Vec<Vec<String>>>,
}

/// `TmpfsOptions` as `mount -o` words, like dockerd's conversion.
fn tmpfs_data(o: Option<&TmpfsOptions>, read_only: bool) -> Result<Vec<String>, String> {
    let mut out = vec![];
    if read_only {
        out.push("ro".to_string());
    }
    let Some(o) = o else { return Ok(out) };
    if o.mode != 0 {
        out.push(format!("mode={:o}", o.mode));
    }
    if o.size_bytes < 0 {
        return Err(format!("invalid tmpfs size: {}", o.size_bytes));
    }
    if o.size_bytes != 0 {
        let (mut size, mut suffix) = (o.size_bytes, "");
        for (s, d) in [("g", 1i64 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
            if size % d == 0 {
                size /= d;
                suffix = s;
                break;
            }
        }
        out.push(format!("size={size}{suffix}"));
    }
    for opt in o.options.iter().flatten() {
        match opt.as_slice() {
            [k] | [k, _] if !matches!(k.as_str(), "exec" | "noexec") => {
                return Err(format!("invalid option: {k}"))
            }
            [k] => out.push(k.clone()),
            [k, v] => out.push(format!("{k}={v}")),
            _ => return Err("invalid option array length".into()),
        }
    }
    Ok(out)
}

/// dockerd's defaults for tmpfs mounts, then the user's words; a later
/// word wins over an earlier one of its kind (`exec` over `noexec`, the
/// last `size=`).
fn merge_tmpfs_options(user: &[String]) -> Vec<String> {
    fn kind(o: &str) -> &str {
        match o {
            "ro" | "rw" => "rw",
            "exec" | "noexec" => "exec",
            "suid" | "nosuid" => "suid",
            "dev" | "nodev" => "dev",
            "atime" | "noatime" => "atime",
            "diratime" | "nodiratime" => "diratime",
            o if PROPAGATIONS.contains(&o) => "propagation",
            o => o.split_once('=').map(|(k, _)| k).unwrap_or(o),
        }
    }
    let all: Vec<&str> = ["noexec", "nosuid", "nodev", "rprivate"]
        .into_iter()
        .chain(user.iter().map(String::as_str))
        .filter(|o| !o.is_empty())
        .collect();
    let mut out: Vec<String> = vec![];
    for o in all.iter().rev() {
        if !out.iter().any(|x| kind(x) == kind(o)) {
            out.push(o.to_string());
        }
    }
    out.reverse();
    out
}

pub(super) fn tmpfs_mount(dest: &str, user: &[String]) -> Result<StoredMount, String> {
    let options = merge_tmpfs_options(user);
    crate::runtime::rootfs::parse_options(&options).map_err(|e| e.to_string())?;
    Ok(StoredMount {
        point: MountPoint {
            kind: MountType::Tmpfs,
            destination: clean_path(dest),
            rw: !options.iter().any(|o| o == "ro"),
            ..Default::default()
        },
        tmpfs_options: options,
        ..Default::default()
    })
}

/// One `Mounts` entry, checked like dockerd's `ValidateMountConfig`.
pub fn parse_mount(m: &ApiMount, volume_driver: &str) -> EngineResult<Wanted> {
    let kind = m.kind.as_str();
    let err = |e: &str| mount_config_error(kind, e);
    check_target(&m.target).map_err(|e| err(&e))?;
    let destination = clean_path(&m.target);
    match kind {
        "bind" => {
            if m.source.is_empty() {
                return Err(err("field Source must not be empty"));
            }
            let b = m.bind_options.as_ref();
            let propagation = b.map(|b| b.propagation.as_str()).unwrap_or("");
            if !propagation.is_empty() && !PROPAGATIONS.contains(&propagation) {
                return Err(err(&format!("invalid propagation mode: {propagation}")));
            }
            if m.volume_options.is_some() {
                return Err(err("field VolumeOptions must not be specified"));
            }
            if !m.source.starts_with('/') {
                return Err(err(&format!(
                    "invalid mount path: '{}' mount path must be absolute",
                    m.source
                )));
            }
            if b.is_some_and(|b| {
                b.non_recursive || b.read_only_non_recursive || b.read_only_force_recursive
            }) {
                return Err(invalid(
                    "BindOptions.NonRecursive and the ReadOnly*Recursive options are not supported by mydocker yet",
                ));
            }
            let create = b.is_some_and(|b| b.create_mountpoint);
            if !create && std::fs::symlink_metadata(&m.source).is_err() {
                return Err(err(&format!(
                    "bind source path does not exist: {}",
                    m.source
                )));
            }
            Ok(Wanted {
                mount: StoredMount {
                    point: MountPoint {
                        kind: MountType::Bind,
                        source: clean_path(&m.source),
                        destination,
                        rw: !m.read_only,
                        propagation: if propagation.is_empty() {
                            "rprivate".into()
                        } else {
                            propagation.into()
                        },
                        ..Default::default()
                    },
                    create_source: create,
                    ..Default::default()
                },
                ..Default::default()
            })
        }
        "volume" => {
            if m.bind_options.is_some() {
                return Err(err("field BindOptions must not be specified"));
            }
            let vo = m.volume_options.as_ref();
            if vo.is_some_and(|v| !v.subpath.is_empty()) {
                return Err(invalid(
                    "VolumeOptions.Subpath is not supported by mydocker yet",
                ));
            }
            if m.read_only && m.source.is_empty() {
                return Err(err(
                    "must not set ReadOnly mode when using anonymous volumes",
                ));
            }
            let dc = vo.and_then(|v| v.driver_config.as_ref());
            check_driver(dc.map(|d| d.name.as_str()).unwrap_or(volume_driver))?;
            Ok(Wanted {
                mount: StoredMount {
                    point: MountPoint {
                        kind: MountType::Volume,
                        name: m.source.clone(),
                        destination,
                        driver: LOCAL_DRIVER.into(),
                        mode: "z".into(),
                        rw: !m.read_only,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                labels: vo.and_then(|v| v.labels.clone()),
                driver_opts: dc.and_then(|d| d.options.clone()),
                copy: !vo.is_some_and(|v| v.no_copy),
            })
        }
        "tmpfs" => {
            if m.bind_options.is_some() {
                return Err(err("field BindOptions must not be specified"));
            }
            if !m.source.is_empty() {
                return Err(err("field Source must not be specified"));
            }
            let data = tmpfs_data(m.tmpfs_options.as_ref(), m.read_only).map_err(|e| err(&e))?;
            let mount = tmpfs_mount(&m.target, &data).map_err(|e| err(&e))?;
            Ok(Wanted {
                mount,
                ..Default::default()
            })
        }
        _ => Err(err("mount type unknown")),
    }
}
