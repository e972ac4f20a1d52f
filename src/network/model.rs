//! A network as the engine sees it: its row with the JSON config parsed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ipam::{self, Pool};
use crate::store::networks::NetworkRow;

/// The predefined networks, which cannot be created or removed.
pub const PREDEFINED: &[&str] = &["bridge", "host", "none"];

/// The `config` column.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetConfig {
    /// The Linux bridge device (bridge driver only).
    pub bridge: String,
    /// Empty for networks without IPAM (host, none).
    pub subnet: String,
    pub gateway: String,
    pub ip_range: String,
    pub internal: bool,
    pub attachable: bool,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub ipam_options: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// bridge, host or null.
    pub driver: String,
    pub created_at: i64,
    pub config: NetConfig,
}

impl Network {
    pub fn from_row(r: NetworkRow) -> Network {
        Network {
            config: serde_json::from_str(&r.config).unwrap_or_default(),
            id: r.id,
            name: r.name,
            driver: r.driver,
            created_at: r.created_at,
        }
    }

    pub fn to_row(&self) -> NetworkRow {
        NetworkRow {
            id: self.id.clone(),
            name: self.name.clone(),
            driver: self.driver.clone(),
            config: serde_json::to_string(&self.config).unwrap_or_else(|_| "{}".into()),
            created_at: self.created_at,
        }
    }

    pub fn is_predefined(&self) -> bool {
        PREDEFINED.contains(&self.name.as_str())
    }

    /// The IPv4 pool (bridge networks only); validated when stored.
    pub fn pool(&self) -> Option<Pool> {
        if self.driver != "bridge" || self.config.subnet.is_empty() {
            return None;
        }
        ipam::validate(&ipam::PoolRequest {
            subnet: self.config.subnet.clone(),
            gateway: self.config.gateway.clone(),
            ip_range: self.config.ip_range.clone(),
        })
        .ok()
    }

    /// Whether names resolve on it (user-defined bridges, as in dockerd).
    pub fn is_user_defined(&self) -> bool {
        !self.is_predefined()
    }
}
