//! A container's mounts: `HostConfig.Binds`, `Mounts`, `Tmpfs`,
//! `VolumesFrom` and the anonymous volumes of `Config.Volumes` (the
//! image's `VOLUME`s included). Parsed and checked at create with
//! dockerd's rules and messages, turned into volumes (created on first
//! use, filled from the image) and stored as mount rows; resolved into
//! the runtime's [`MountSpec`](crate::runtime::spec::MountSpec)s at each
//! start.
//!
//! - `parse.rs`: a create request's mounts, checked with dockerd's rules;
//!   `binds.rs` reads `Binds`, `api_mounts.rs` reads `Mounts` and tmpfs
//!   options.
//! - `plan.rs`: at create, the volumes made (and filled from the image on
//!   first use) and the mounts to store.
//! - `rows.rs`: the stored mounts, as inspect and `docker ps` show them.
//! - `specs.rs`: at start, the runtime's mounts.
//! - `volumes.rs`: a container's use of volumes: events, tmpfs unmounts,
//!   its anonymous volumes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod api_mounts;
mod binds;
mod parse;
mod plan;
mod rows;
mod specs;
mod volumes;

pub use api_mounts::{
    parse_mount, ApiMount, BindOptions, DriverConfig, TmpfsOptions, VolumeOptions,
};
pub use binds::parse_bind;
pub use parse::{clean_path, parse};
pub(crate) use rows::insert_rows;
pub use rows::mounts_match;

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    #[default]
    Bind,
    Volume,
    Tmpfs,
}

impl MountType {
    fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Volume => "volume",
            MountType::Tmpfs => "tmpfs",
        }
    }
}

/// dockerd's `MountPoint`, as inspect and `docker ps` show it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    #[serde(rename = "Type")]
    pub kind: MountType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub source: String,
    pub destination: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(default)]
    pub mode: String,
    #[serde(rename = "RW", default)]
    pub rw: bool,
    #[serde(default)]
    pub propagation: String,
}

/// A mount as stored: what inspect shows plus what start needs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StoredMount {
    pub point: MountPoint,
    /// tmpfs: the `mount -o` words.
    #[serde(default)]
    pub tmpfs_options: Vec<String>,
    /// `Binds`: a missing host directory is made at start, like dockerd.
    #[serde(default)]
    pub create_source: bool,
    /// `HostConfig.Tmpfs` entries are mounted but not listed, as in dockerd.
    #[serde(default)]
    pub hidden: bool,
}

/// One mount asked for, before its volume exists.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Wanted {
    pub mount: StoredMount,
    /// For a volume made now.
    pub labels: Option<BTreeMap<String, String>>,
    pub driver_opts: Option<BTreeMap<String, String>>,
    /// First-use copy of the image's content.
    pub copy: bool,
}

/// The mounts of a create request, checked.
#[derive(Debug, Default)]
pub struct Requested {
    /// `(container, read-write)`.
    pub volumes_from: Vec<(String, bool)>,
    /// Binds, Mounts and Tmpfs, in that order; destinations unique.
    pub explicit: Vec<Wanted>,
    /// `Config.Volumes` destinations, cleaned.
    pub anonymous: Vec<String>,
}

/// What create made: the mounts to store and the volumes created for
/// them (removed again if the create fails).
#[derive(Debug, Default)]
pub struct MountPlan {
    pub mounts: Vec<StoredMount>,
    pub created: Vec<String>,
}
