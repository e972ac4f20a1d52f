//! Daemon-wide defaults for containers (`default-ulimits`,
//! `no-new-privileges`, `dns`), merged into a container's `HostConfig` at start
//! as dockerd does: a container's own ulimit of the same name wins, and
//! its own `no-new-privileges` setting (either way) wins over the daemon's.

use serde_json::{json, Value};

use crate::config::{DaemonConfig, DefaultUlimit};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerDefaults {
    pub ulimits: Vec<DefaultUlimit>,
    pub no_new_privileges: bool,
    /// The daemon's `dns`: for containers without `Dns` of their own.
    pub dns: Vec<String>,
}

impl ContainerDefaults {
    pub fn from_config(c: &DaemonConfig) -> ContainerDefaults {
        ContainerDefaults {
            ulimits: c.default_ulimits.clone(),
            no_new_privileges: c.no_new_privileges,
            dns: c.dns.clone(),
        }
    }

    /// Checks the defaults as a container's own options would be, so a bad
    /// one stops the daemon at start instead of every container later.
    pub fn validate(&self) -> Result<(), String> {
        let hc = self.apply(&json!({}));
        let Value::Object(map) = hc else {
            return Ok(());
        };
        super::security::validate(&map).map_err(|e| format!("default-ulimits: {e}"))
    }

    /// `hc` with the defaults merged in.
    pub fn apply(&self, hc: &Value) -> Value {
        let mut hc = match hc {
            Value::Object(_) => hc.clone(),
            _ => json!({}),
        };
        if !self.ulimits.is_empty() {
            let own: Vec<Value> = hc["Ulimits"].as_array().cloned().unwrap_or_default();
            let mut merged: Vec<Value> = self
                .ulimits
                .iter()
                .filter(|d| !own.iter().any(|u| u["Name"] == d.name.as_str()))
                .map(|d| json!({"Name": d.name, "Soft": d.soft, "Hard": d.hard}))
                .collect();
            merged.extend(own);
            hc["Ulimits"] = Value::Array(merged);
        }
        let own_dns = hc["Dns"].as_array().is_some_and(|d| !d.is_empty());
        if !self.dns.is_empty() && !own_dns {
            hc["Dns"] = json!(self.dns);
        }
        if self.no_new_privileges {
            let mut opts: Vec<Value> = hc["SecurityOpt"].as_array().cloned().unwrap_or_default();
            // First, so that the container's own setting (parsed later) wins.
            opts.insert(0, json!("no-new-privileges"));
            hc["SecurityOpt"] = Value::Array(opts);
        }
        hc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nofile(soft: i64, hard: i64) -> DefaultUlimit {
        DefaultUlimit {
            name: "nofile".into(),
            soft,
            hard,
        }
    }

    #[test]
    fn container_ulimits_win_by_name() {
        let d = ContainerDefaults {
            ulimits: vec![
                nofile(100, 200),
                DefaultUlimit {
                    name: "nproc".into(),
                    soft: 50,
                    hard: 60,
                },
            ],
            no_new_privileges: false,
            dns: vec![],
        };
        let hc = d.apply(&json!({"Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": 2}]}));
        assert_eq!(
            hc["Ulimits"],
            json!([
                {"Name": "nproc", "Soft": 50, "Hard": 60},
                {"Name": "nofile", "Soft": 1, "Hard": 2}
            ])
        );
        assert_eq!(hc.get("SecurityOpt"), None);
    }

    #[test]
    fn no_new_privileges_comes_first_so_the_container_can_turn_it_off() {
        let d = ContainerDefaults {
            ulimits: vec![],
            no_new_privileges: true,
            dns: vec![],
        };
        let hc = d.apply(&json!({"SecurityOpt": ["no-new-privileges=false"]}));
        assert_eq!(
            hc["SecurityOpt"],
            json!(["no-new-privileges", "no-new-privileges=false"])
        );
        assert_eq!(
            d.apply(&Value::Null)["SecurityOpt"],
            json!(["no-new-privileges"])
        );
    }

    #[test]
    fn daemon_dns_only_for_containers_without_their_own() {
        let d = ContainerDefaults {
            dns: vec!["127.0.0.1".into()],
            ..Default::default()
        };
        assert_eq!(d.apply(&json!({}))["Dns"], json!(["127.0.0.1"]));
        assert_eq!(d.apply(&json!({"Dns": []}))["Dns"], json!(["127.0.0.1"]));
        assert_eq!(
            d.apply(&json!({"Dns": ["1.2.3.4"]}))["Dns"],
            json!(["1.2.3.4"])
        );
    }

    #[test]
    fn bad_defaults_are_refused_like_container_ulimits() {
        let bad = ContainerDefaults {
            ulimits: vec![DefaultUlimit {
                name: "bogus".into(),
                soft: 1,
                hard: 1,
            }],
            no_new_privileges: false,
            dns: vec![],
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .contains("invalid ulimit type: bogus"));
        let good = ContainerDefaults {
            ulimits: vec![nofile(10, 20)],
            no_new_privileges: true,
            dns: vec![],
        };
        assert_eq!(good.validate(), Ok(()));
    }
}
