//! `POST /containers/create`: the request's Config merged with the image's,
//! HostConfig checked (resources with dockerd's messages, options we do not
//! serve refused by name), then the row and the container's folder.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::restart_policy::RestartPolicy;
use super::state::ContainerState;
use super::{Container, ContainerService};
use crate::error::{EngineError, EngineResult};
use crate::runtime::cgroups::Resources;
use crate::store::containers::{self as rows, ContainerRow};

/// Decodes `null` as the default, like Go's zero values.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Docker's StrSlice: a list, a single string, or null.
fn str_slice<'de, D>(d: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum S {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<S>::deserialize(d)? {
        None => None,
        Some(S::One(s)) => Some(vec![s]),
        Some(S::Many(v)) => Some(v),
    })
}

/// The container's `Config`, in the Engine API's shape, after the merge
/// with the image config (what inspect shows).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    #[serde(deserialize_with = "null_default")]
    pub hostname: String,
    #[serde(deserialize_with = "null_default")]
    pub domainname: String,
    #[serde(deserialize_with = "null_default")]
    pub user: String,
    #[serde(deserialize_with = "null_default")]
    pub attach_stdin: bool,
    #[serde(deserialize_with = "null_default")]
    pub attach_stdout: bool,
    #[serde(deserialize_with = "null_default")]
    pub attach_stderr: bool,
    #[serde(deserialize_with = "null_default")]
    pub tty: bool,
    #[serde(deserialize_with = "null_default")]
    pub open_stdin: bool,
    #[serde(deserialize_with = "null_default")]
    pub stdin_once: bool,
    pub env: Option<Vec<String>>,
    #[serde(deserialize_with = "str_slice")]
    pub cmd: Option<Vec<String>>,
    #[serde(deserialize_with = "null_default")]
    pub image: String,
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(deserialize_with = "null_default")]
    pub working_dir: String,
    #[serde(deserialize_with = "str_slice")]
    pub entrypoint: Option<Vec<String>>,
    pub on_build: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
}

/// The request body: Config fields at the top level, plus HostConfig and
/// NetworkingConfig.
#[derive(Debug, Default)]
pub struct CreateRequest {
    pub name: String,
    pub config: ContainerConfig,
    /// Top-level keys of the body, to refuse Config options we do not serve.
    pub raw: serde_json::Map<String, Value>,
    pub host_config: serde_json::Map<String, Value>,
}

impl CreateRequest {
    /// Parses the JSON body; errors are 400s.
    pub fn parse(name: &str, body: &[u8]) -> EngineResult<CreateRequest> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(EngineError::InvalidParameter(
                "invalid JSON: empty request body".into(),
            ));
        }
        let raw: Value = serde_json::from_slice(body)
            .map_err(|e| EngineError::InvalidParameter(format!("invalid JSON: {e}")))?;
        let Value::Object(raw) = raw else {
            return Err(EngineError::InvalidParameter(
                "invalid JSON: the body must be an object".into(),
            ));
        };
        let config: ContainerConfig = serde_json::from_value(Value::Object(raw.clone()))
            .map_err(|e| EngineError::InvalidParameter(format!("invalid Config: {e}")))?;
        let host_config = match raw.get("HostConfig") {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                return Err(EngineError::InvalidParameter(
                    "invalid HostConfig: not an object".into(),
                ))
            }
        };
        Ok(CreateRequest {
            name: name.to_string(),
            config,
            raw,
            host_config,
        })
    }
}

/// Whether a JSON value is Go's zero value (what the CLI sends for an
/// option not given).
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        // Any entry counts: `{"80/tcp": {}}` publishes a port.
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn unsupported(what: &str) -> EngineError {
    EngineError::InvalidParameter(format!("{what} is not supported by mydocker yet"))
}

/// Config keys that change nothing here or that we apply.
const CONFIG_KEYS: &[&str] = &[
    "Hostname",
    "Domainname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Env",
    "Cmd",
    "Image",
    "WorkingDir",
    "Entrypoint",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "ArgsEscaped",
    "HostConfig",
    "NetworkingConfig",
    // Anonymous volumes (`-v /path`), see mounts/.
    "Volumes",
    // Published ports, see network/ports.rs.
    "ExposedPorts",
];

/// HostConfig keys (besides the resource fields) we honour.
const HOST_KEYS: &[&str] = &[
    "NetworkMode",
    "RestartPolicy",
    "AutoRemove",
    "LogConfig",
    "ConsoleSize",
    "ReadonlyRootfs",
    "Privileged",
    "ShmSize",
    "ContainerIDFile",
    "Isolation",
    "IpcMode",
    "PidMode",
    "CgroupnsMode",
    "PortBindings",
    "PublishAllPorts",
    // Mounts and volumes, see mounts/.
    "Binds",
    "Mounts",
    "Tmpfs",
    "VolumesFrom",
    "VolumeDriver",
];

/// Refuses options we cannot honour, naming them; normalises NetworkMode.
fn check_unsupported(req: &mut CreateRequest) -> EngineResult<()> {
    for (k, v) in &req.raw {
        if !CONFIG_KEYS.contains(&k.as_str()) && !is_zero(v) {
            return Err(unsupported(&format!("Config.{k}")));
        }
    }
    let resource_keys: Vec<String> = match serde_json::to_value(Resources::default()) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => vec![],
    };
    for (k, v) in &req.host_config {
        if HOST_KEYS.contains(&k.as_str())
            || super::security::HOST_KEYS.contains(&k.as_str())
            || resource_keys.contains(k)
            || is_zero(v)
        {
            continue;
        }
        return Err(unsupported(&format!("HostConfig.{k}")));
    }
    let hc = req.host_config.clone();
    let s = |k: &str| hc.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mode = s("NetworkMode");
    // Any mode is checked by the network engine at create (see network.rs).
    if mode.is_empty() || mode == "default" {
        req.host_config
            .insert("NetworkMode".into(), Value::String("bridge".into()));
    }
    for (k, ok) in [
        ("IpcMode", &["", "private", "shareable"][..]),
        ("PidMode", &["", "private"][..]),
        // `host` on v1 is what every container gets; on v2 the init then
        // stays in the host's cgroup namespace.
        ("CgroupnsMode", &["", "private", "host"][..]),
        ("Isolation", &["", "default"][..]),
    ] {
        if !ok.contains(&s(k).as_str()) {
            return Err(unsupported(&format!("HostConfig.{k}={}", s(k))));
        }
    }
    let policy = RestartPolicy::parse(req.host_config.get("RestartPolicy"))?;
    if req.host_config.get("AutoRemove").and_then(Value::as_bool) == Some(true) && !policy.is_none()
    {
        return Err(EngineError::InvalidParameter(
            "can't create 'AutoRemove' container with restart policy".into(),
        ));
    }
    let (log_config, _) = super::log_config::parse(req.host_config.get("LogConfig"))?;
    req.host_config.insert("LogConfig".into(), log_config);
    Ok(())
}

/// dockerd's name rule.
pub(super) fn valid_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() >= 2
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A random `adjective_name`, in the style of dockerd's generator.
fn random_name() -> String {
    const LEFT: &[&str] = &[
        "admiring",
        "brave",
        "clever",
        "eager",
        "focused",
        "gallant",
        "happy",
        "jolly",
        "keen",
        "lucid",
        "modest",
        "nifty",
        "optimistic",
        "quirky",
        "serene",
        "trusting",
        "vibrant",
        "wizardly",
        "zealous",
        "youthful",
    ];
    const RIGHT: &[&str] = &[
        "albattani",
        "babbage",
        "curie",
        "darwin",
        "euclid",
        "fermat",
        "gauss",
        "hopper",
        "hypatia",
        "kepler",
        "lovelace",
        "meitner",
        "newton",
        "noether",
        "pascal",
        "ritchie",
        "shannon",
        "turing",
        "wozniak",
        "yonath",
    ];
    let r: u64 = rand::random();
    let l = LEFT[(r % LEFT.len() as u64) as usize];
    let rr = RIGHT[((r >> 16) % RIGHT.len() as u64) as usize];
    format!("{l}_{rr}")
}

fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Env of the image overridden key by key by the request's.
fn merge_env(image: &[String], user: &[String]) -> Vec<String> {
    let mut out: Vec<String> = image.to_vec();
    for e in user {
        let key = e.split('=').next().unwrap_or("");
        match out
            .iter_mut()
            .find(|x| x.split('=').next().unwrap_or("") == key)
        {
            Some(slot) => *slot = e.clone(),
            None => out.push(e.clone()),
        }
    }
    out
}

impl ContainerService {
    /// Creates a container; returns it and the create response's warnings.
    pub async fn create(&self, mut req: CreateRequest) -> EngineResult<(Container, Vec<String>)> {
        if req.config.image.is_empty() {
            return Err(EngineError::InvalidParameter(
                "config cannot be empty in order to create a container".into(),
            ));
        }
        let name = req.name.strip_prefix('/').unwrap_or(&req.name).to_string();
        if !name.is_empty() && !valid_name(&name) {
            return Err(EngineError::InvalidParameter(format!(
                "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        check_unsupported(&mut req)?;
        super::security::validate(&req.host_config)?;
        let mut res: Resources = serde_json::from_value(Value::Object(req.host_config.clone()))
            .map_err(|e| EngineError::InvalidParameter(format!("invalid HostConfig: {e}")))?;
        res.allow_all_devices = req
            .host_config
            .get("Privileged")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut warnings = res.validate_and_adjust(&self.host, false)?;
        res.adapt_for_create();
        if let Ok(Value::Object(m)) = serde_json::to_value(&res) {
            req.host_config.extend(m);
        }
        if let Some(t) = req.config.stop_timeout {
            if t < -1 {
                warnings.push(format!("invalid stop timeout {t}: using the default"));
                req.config.stop_timeout = None;
            }
        }

        let image = self.images.resolve(&req.config.image).await?;
        let ic = image.config.config.clone().unwrap_or_default();
        let mut cfg = req.config;
        if cfg.entrypoint.as_ref().is_none_or(|e| e.is_empty()) {
            cfg.entrypoint = ic.entrypoint.clone().filter(|e| !e.is_empty());
            if cfg.cmd.as_ref().is_none_or(|c| c.is_empty()) {
                cfg.cmd = ic.cmd.clone();
            }
        } else if cfg.cmd.as_ref().is_some_and(|c| c.is_empty()) {
            cfg.cmd = None;
        }
        if cfg.entrypoint.as_ref().is_none_or(|e| e.is_empty())
            && cfg.cmd.as_ref().is_none_or(|c| c.is_empty())
        {
            return Err(EngineError::InvalidParameter("No command specified".into()));
        }
        cfg.env = Some(merge_env(
            ic.env.as_deref().unwrap_or(&[]),
            cfg.env.as_deref().unwrap_or(&[]),
        ));
        if cfg.working_dir.is_empty() {
            cfg.working_dir = ic.working_dir.clone().unwrap_or_default();
        } else if !cfg.working_dir.starts_with('/') {
            return Err(EngineError::InvalidParameter(format!(
                "the working directory '{}' is invalid, it needs to be an absolute path",
                cfg.working_dir
            )));
        }
        if cfg.user.is_empty() {
            cfg.user = ic.user.clone().unwrap_or_default();
        }
        if let Some(ports) = &ic.exposed_ports {
            let mine = cfg.exposed_ports.get_or_insert_with(BTreeMap::new);
            for (k, v) in ports {
                mine.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let mut labels = image.config.labels();
        labels.extend(cfg.labels.take().unwrap_or_default());
        cfg.labels = Some(labels);
        if cfg.stop_signal.as_deref().is_none_or(str::is_empty) {
            cfg.stop_signal = ic.stop_signal.clone().filter(|s| !s.is_empty());
        }
        if let Some(sig) = &cfg.stop_signal {
            crate::signal::parse(sig)?;
        }
        // The image's VOLUMEs join the request's, as in dockerd.
        if let Some(iv) = &ic.volumes {
            let v = cfg.volumes.get_or_insert_with(BTreeMap::new);
            for (k, x) in iv {
                v.entry(k.clone()).or_insert_with(|| x.clone());
            }
        }
        if cfg.volumes.as_ref().is_some_and(|v| v.is_empty()) {
            cfg.volumes = None;
        }
        // Checked before anything is made; volumes made here go again if
        // the create fails below.
        let config_volumes: Vec<String> = cfg
            .volumes
            .iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect();
        let mounts = self
            .plan_mounts(
                &req.host_config,
                &config_volumes,
                self.images.layer_paths(&image),
            )
            .await?;

        let id = new_id();
        let exposed = cfg.exposed_ports.clone().unwrap_or_default();
        let endpoints = self
            .plan_networks(&id, &req.host_config, &req.raw, &exposed)
            .await?;
        if cfg.hostname.is_empty() {
            cfg.hostname = id[..12].to_string();
        }
        let generated = name.is_empty();
        let name = if generated { random_name() } else { name };
        let mut row = ContainerRow {
            id: id.clone(),
            name,
            image_id: image.row.id.clone(),
            image: cfg.image.clone(),
            config: serde_json::to_string(&cfg)?,
            host_config: serde_json::to_string(&req.host_config)?,
            state: ContainerState::default().to_json(),
            created_at: crate::store::images::now_nanos(),
        };
        // Folder first: a row never names a missing folder.
        let dir = self.container_dir(&id);
        let made = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(dir.join("upper"))?;
                std::fs::create_dir_all(dir.join("work"))
            })
            .await
            .map_err(EngineError::internal)
        };
        if let Err(e) = made.and_then(|r| r.map_err(EngineError::from)) {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            self.volumes.remove_if_unused(&mounts.created).await;
            return Err(e);
        }
        let mut r = row.clone();
        let created_volumes = mounts.created.clone();
        let inserted = self
            .store
            .call(move |conn| {
                let tx = conn.transaction()?;
                // A generated name that is taken gets a digit appended, as
                // dockerd's generator does on retry.
                for _ in 0..10 {
                    match rows::by_name(&tx, &r.name)? {
                        Some(_) if generated => {
                            r.name = format!("{}{}", r.name, rand::random::<u8>() % 10)
                        }
                        Some(other) => return Ok(Err(other.id)),
                        None => {
                            rows::insert(&tx, &r)?;
                            super::mounts::insert_rows(&tx, &r.id, &mounts)?;
                            for ep in &endpoints {
                                crate::store::networks::insert_endpoint(&tx, ep)?;
                            }
                            tx.commit()?;
                            return Ok(Ok(r.name));
                        }
                    }
                }
                Err(EngineError::Internal("no free container name".into()))
            })
            .await;
        match inserted {
            Ok(Ok(name)) => row.name = name,
            other => {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                self.volumes.remove_if_unused(&created_volumes).await;
                return match other {
                    Ok(Err(owner)) => Err(EngineError::Conflict(format!(
                        "Conflict. The container name \"/{}\" is already in use by container \"{owner}\". You have to remove (or rename) that container to be able to reuse that name.",
                        row.name
                    ))),
                    Err(e) => Err(e),
                    Ok(Ok(_)) => unreachable!("handled above"),
                };
            }
        }
        let c = Container::from_row(row);
        self.emit(&c, "create", &[]);
        Ok((c, warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_env() {
        assert!(valid_name("web-1"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a"));
        assert!(!valid_name("a b"));
        assert_eq!(
            merge_env(
                &["PATH=/bin".into(), "A=1".into()],
                &["A=2".into(), "B".into()]
            ),
            vec!["PATH=/bin", "A=2", "B"]
        );
        assert!(valid_name(&random_name()));
    }

    #[test]
    fn cli_defaults_pass_and_options_are_named() {
        let body = br#"{"Image":"busybox","Cmd":"true","Env":[],"Volumes":{},"Entrypoint":null,
            "HostConfig":{"Binds":null,"NetworkMode":"default","RestartPolicy":{"Name":"no"},
            "LogConfig":{"Type":"","Config":{}},"Dns":[],"Memory":0,"ConsoleSize":[24,80]},
            "NetworkingConfig":{"EndpointsConfig":{}}}"#;
        let mut req = CreateRequest::parse("", body).expect("parses");
        assert_eq!(req.config.cmd, Some(vec!["true".to_string()]));
        check_unsupported(&mut req).expect("defaults are fine");
        assert_eq!(req.host_config["NetworkMode"], "bridge");
        let body = br#"{"Image":"busybox","HostConfig":{"Binds":["/a:/b"],"Tmpfs":{"/t":""}}}"#;
        let mut req = CreateRequest::parse("", body).expect("parses");
        check_unsupported(&mut req).expect("mounts are served");
        let body = br#"{"Image":"busybox","ExposedPorts":{"80/tcp":{}},"HostConfig":{"PortBindings":{"80/tcp":[{}]}}}"#;
        let mut req = CreateRequest::parse("", body).expect("parses");
        check_unsupported(&mut req).expect("ports are served");
        assert!(req.config.exposed_ports.is_some());
        for (mode, ok) in [("host", true), ("private", true), ("container:x", false)] {
            let body = format!(r#"{{"Image":"busybox","HostConfig":{{"CgroupnsMode":"{mode}"}}}}"#);
            let mut req = CreateRequest::parse("", body.as_bytes()).expect("parses");
            assert_eq!(check_unsupported(&mut req).is_ok(), ok, "{mode}");
        }
        assert!(CreateRequest::parse("", b"").is_err());
        assert!(CreateRequest::parse("", b"[]").is_err());
    }
}
