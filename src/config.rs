//! Daemon configuration: `mydockerd` command-line flags merged with the
//! `daemon.json` configuration file, following `dockerd --config-file`.
//!
//! Merge rules (same as dockerd):
//!
//! * Every option can be set either as a flag or in the file, never both: a
//!   key present in the file whose flag was also given is an error listing
//!   every such conflict (`... specified both as a flag and in the
//!   configuration file: debug: (from flag: true, from file: false)`).
//! * Unknown keys in the file are an error listing all of them.
//! * Values given nowhere take the built-in defaults (the `DEFAULT_*`
//!   constants and [`default_address_pools`]).
//! * The default config file may be missing; an explicitly given
//!   `--config-file` must exist.
//!
//! After merging, values are validated and normalised (registry mirrors,
//! insecure registries, `bip`, address pools, DNS servers, log options, ...).
//! File-level problems (unreadable file, bad JSON, unknown keys, conflicts,
//! wrongly typed values) are reported with dockerd's prefix
//! `unable to configure the Docker daemon with file <path>: `.
//!
//! [`proxy_env`] reads the proxy environment variables the way Go's
//! `httpproxy.FromEnvironment` does; the daemon uses it for outbound registry
//! traffic and reports it in `/info`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Socket served when no `-H`/`hosts` is given.
pub const DEFAULT_HOST: &str = "unix:///var/run/mydocker.sock";
/// Socket path used for a bare `unix://` host (dockerd does the same).
pub const DEFAULT_UNIX_SOCKET: &str = "/var/run/mydocker.sock";
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/mydocker";
pub const DEFAULT_EXEC_ROOT: &str = "/run/mydocker";
pub const DEFAULT_CONFIG_FILE: &str = "/etc/mydocker/daemon.json";
pub const DEFAULT_PIDFILE: &str = "/var/run/mydocker.pid";
/// Name of the default bridge device (dockerd's is `docker0`).
pub const DEFAULT_BRIDGE: &str = "mydocker0";
pub const DEFAULT_IPTABLES_CHAIN_PREFIX: &str = "MYDOCKER";
/// Group given the API socket when `--group` is unset, if that group exists.
pub const DEFAULT_GROUP: &str = "docker";
/// The only log driver implemented.
pub const DEFAULT_LOG_DRIVER: &str = "json-file";

/// Options accepted by the json-file driver, plus the driver-independent
/// `mode` and `max-buffer-size` (as in dockerd).
const JSON_FILE_LOG_OPTS: &[&str] = &[
    "compress",
    "env",
    "env-regex",
    "labels",
    "labels-regex",
    "max-buffer-size",
    "max-file",
    "max-size",
    "mode",
    "tag",
];

/// Keys accepted in daemon.json. Like dockerd, each flag's (named-option)
/// name is a valid key; `default-address-pools` and `log-driver` are
/// file-only for now.
const FILE_KEYS: &[&str] = &[
    "bip",
    "bridge",
    "data-root",
    "debug",
    "default-address-pools",
    "default-ulimits",
    "dns",
    "exec-root",
    "group",
    "hosts",
    "insecure-registries",
    "iptables-chain-prefix",
    "log-driver",
    "log-opts",
    "no-new-privileges",
    "pidfile",
    "registry-mirrors",
];

/// Command-line flags of `mydockerd`. `None`/empty/`false` means "not given",
/// which is what the conflict check against the config file relies on.
#[derive(clap::Parser, Debug, Clone, Default)]
#[command(
    name = "mydockerd",
    version,
    about = "A Docker-Engine-compatible container daemon"
)]
pub struct Flags {
    /// Daemon socket(s) to connect to (only unix:// is supported) [default: unix:///var/run/mydocker.sock]
    #[arg(short = 'H', long = "host", value_name = "HOST")]
    pub host: Vec<String>,

    /// Root directory of persistent state [default: /var/lib/mydocker]
    #[arg(long, value_name = "PATH")]
    pub data_root: Option<PathBuf>,

    /// Root directory for execution state files [default: /run/mydocker]
    #[arg(long, value_name = "PATH")]
    pub exec_root: Option<PathBuf>,

    /// Daemon configuration file [default: /etc/mydocker/daemon.json]
    #[arg(long, value_name = "PATH")]
    pub config_file: Option<PathBuf>,

    /// Enable debug mode
    #[arg(short = 'D', long)]
    pub debug: bool,

    /// Preferred registry mirror (http:// or https://)
    #[arg(long = "registry-mirror", value_name = "URL")]
    pub registry_mirrors: Vec<String>,

    /// Enable insecure registry communication (host, host:port or CIDR)
    #[arg(long = "insecure-registry", value_name = "REGISTRY")]
    pub insecure_registries: Vec<String>,

    /// Path to use for daemon PID file [default: /var/run/mydocker.pid]
    #[arg(short = 'p', long, value_name = "PATH")]
    pub pidfile: Option<PathBuf>,

    /// Specify default-bridge IP (CIDR with a host address, e.g. 172.17.0.1/16)
    #[arg(long, value_name = "CIDR")]
    pub bip: Option<String>,

    /// Attach containers to a network bridge [default: mydocker0]
    #[arg(short = 'b', long, value_name = "NAME")]
    pub bridge: Option<String>,

    /// Prefix for the daemon's iptables chain names [default: MYDOCKER]
    #[arg(long, value_name = "PREFIX")]
    pub iptables_chain_prefix: Option<String>,

    /// DNS server to use
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,

    /// Default log driver option (key=value)
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opts: Vec<String>,

    /// Group for the unix socket [default: docker, if it exists]
    #[arg(long = "group", short = 'G', value_name = "GROUP")]
    pub group: Option<String>,

    /// Default ulimits for containers (name=soft[:hard])
    #[arg(long = "default-ulimit", value_name = "ULIMIT")]
    pub default_ulimits: Vec<String>,

    /// Set no-new-privileges by default for new containers
    #[arg(long)]
    pub no_new_privileges: bool,
}

/// The merged, validated daemon configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// Normalised `unix://<path>` addresses; never empty.
    pub hosts: Vec<String>,
    /// Absolute.
    pub data_root: PathBuf,
    /// Absolute.
    pub exec_root: PathBuf,
    /// Absolute.
    pub pidfile: PathBuf,
    pub debug: bool,
    /// `http(s)://host[:port]`, scheme lower-cased, no trailing slash.
    pub registry_mirrors: Vec<String>,
    /// `host[:port]`, IP or canonical CIDR (network address), scheme-free.
    pub insecure_registries: Vec<String>,
    /// `a.b.c.d/n` with a host address, if configured.
    pub bip: Option<String>,
    pub bridge: String,
    pub iptables_chain_prefix: String,
    /// Never empty; bases are canonical (host bits cleared).
    pub default_address_pools: Vec<AddressPool>,
    /// Normalised IP addresses.
    pub dns: Vec<String>,
    /// Options for the json-file log driver.
    pub log_opts: BTreeMap<String, String>,
    /// `None`: use [`DEFAULT_GROUP`] if it exists.
    pub group: Option<String>,
    /// Ulimits every container gets unless it sets the same one.
    pub default_ulimits: Vec<DefaultUlimit>,
    /// `no_new_privs` for containers that do not say otherwise.
    pub no_new_privileges: bool,
    /// The config file that was (or would have been) read.
    pub config_file: PathBuf,
}

/// A `default-ulimits` entry (Go's `units.Ulimit`; -1 is unlimited).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DefaultUlimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// A `default-address-pools` entry: `base` is split into subnets of prefix
/// length `size`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct AddressPool {
    pub base: String,
    pub size: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read (missing explicit file, permissions, ...).
    #[error("unable to configure the Docker daemon with file {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Bad JSON, or a key with a value of the wrong type.
    #[error("unable to configure the Docker daemon with file {}: {message}", path.display())]
    InvalidFile { path: PathBuf, message: String },
    /// Keys in the file that match no option (sorted).
    #[error(
        "unable to configure the Docker daemon with file {}: the following directives don't match any configuration option: {}",
        path.display(),
        keys.join(", ")
    )]
    UnknownDirectives { path: PathBuf, keys: Vec<String> },
    /// Options set both as a flag and in the file, each rendered as
    /// `name: (from flag: X, from file: Y)`.
    #[error(
        "unable to configure the Docker daemon with file {}: the following directives are specified both as a flag and in the configuration file: {}",
        path.display(),
        conflicts.join(", ")
    )]
    Conflicts {
        path: PathBuf,
        conflicts: Vec<String>,
    },
    /// A value (from either source) failed validation.
    #[error("{0}")]
    Invalid(String),
}

impl DaemonConfig {
    /// Reads the config file named by `flags` (or the default one) and merges
    /// it with `flags`, which the caller got from `Flags::parse()`.
    pub fn load(flags: &Flags) -> Result<DaemonConfig, ConfigError> {
        let path = config_file_path(flags);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            // Only the implicit default file may be absent (dockerd checks
            // `flags.Changed("config-file")` the same way).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && flags.config_file.is_none() => {
                None
            }
            Err(source) => return Err(ConfigError::ReadFile { path, source }),
        };
        Self::from_parts(flags, text.as_deref())
    }

    /// Merges `flags` with the JSON text of the config file (`None`: no file).
    /// Does no file-system access, so tests can drive it directly.
    pub fn from_parts(flags: &Flags, file: Option<&str>) -> Result<DaemonConfig, ConfigError> {
        let path = config_file_path(flags);
        let file = FileConfig::parse(&path, file.unwrap_or(""))?;
        check_file_keys(&path, flags, &file.raw)?;
        let f = FileValues::extract(&path, &file.raw)?;

        let hosts_in = if flags.host.is_empty() {
            f.hosts.unwrap_or_default()
        } else {
            flags.host.clone()
        };
        let mut hosts = hosts_in
            .iter()
            .map(|h| validate_host(h))
            .collect::<Result<Vec<_>, _>>()?;
        if hosts.is_empty() {
            hosts.push(DEFAULT_HOST.to_string());
        }

        let data_root = absolute_path(
            "data-root",
            flags.data_root.clone().or(f.data_root),
            DEFAULT_DATA_ROOT,
        )?;
        let exec_root = absolute_path(
            "exec-root",
            flags.exec_root.clone().or(f.exec_root),
            DEFAULT_EXEC_ROOT,
        )?;
        let pidfile = absolute_path(
            "pidfile",
            flags.pidfile.clone().or(f.pidfile),
            DEFAULT_PIDFILE,
        )?;
        let debug = flags.debug || f.debug.unwrap_or(false);

        let registry_mirrors = pick_list(&flags.registry_mirrors, f.registry_mirrors)
            .iter()
            .map(|m| validate_mirror(m))
            .collect::<Result<Vec<_>, _>>()?;
        let mut insecure_registries = Vec::new();
        for r in pick_list(&flags.insecure_registries, f.insecure_registries) {
            let r = validate_insecure_registry(&r)?;
            // dockerd de-duplicates CIDRs; do it for every entry.
            if !insecure_registries.contains(&r) {
                insecure_registries.push(r);
            }
        }

        // An empty bip means "unset", as in dockerd.
        let bip = match flags.bip.clone().or(f.bip).filter(|b| !b.trim().is_empty()) {
            Some(b) => Some(validate_bip(&b)?),
            None => None,
        };
        let bridge = match flags.bridge.clone().or(f.bridge).filter(|b| !b.is_empty()) {
            Some(b) => validate_bridge(&b)?,
            None => DEFAULT_BRIDGE.to_string(),
        };
        let iptables_chain_prefix = match flags
            .iptables_chain_prefix
            .clone()
            .or(f.iptables_chain_prefix)
        {
            Some(p) => validate_chain_prefix(&p)?,
            None => DEFAULT_IPTABLES_CHAIN_PREFIX.to_string(),
        };

        // An empty pool list would leave no subnets for new networks, so it
        // falls back to the defaults.
        let default_address_pools = match f.default_address_pools.filter(|p| !p.is_empty()) {
            Some(pools) => pools
                .iter()
                .map(validate_pool)
                .collect::<Result<Vec<_>, _>>()?,
            None => default_address_pools(),
        };

        let dns = pick_list(&flags.dns, f.dns)
            .iter()
            .map(|d| validate_dns(d))
            .collect::<Result<Vec<_>, _>>()?;

        if let Some(driver) = &f.log_driver {
            if !driver.is_empty() && driver != DEFAULT_LOG_DRIVER {
                return Err(ConfigError::Invalid(format!(
                    "unsupported log driver {driver:?}: only {DEFAULT_LOG_DRIVER:?} is supported"
                )));
            }
        }
        let log_opts = if flags.log_opts.is_empty() {
            f.log_opts.unwrap_or_default()
        } else {
            parse_log_opt_flags(&flags.log_opts)?
        };
        validate_log_opts(&log_opts)?;

        let group = match flags.group.clone().or(f.group) {
            Some(g) if g.trim().is_empty() => {
                return Err(ConfigError::Invalid("group must not be empty".to_string()))
            }
            g => g,
        };

        let default_ulimits = if flags.default_ulimits.is_empty() {
            f.default_ulimits.unwrap_or_default()
        } else {
            flags
                .default_ulimits
                .iter()
                .map(|u| parse_ulimit_flag(u))
                .collect::<Result<Vec<_>, _>>()?
        };
        let no_new_privileges = flags.no_new_privileges || f.no_new_privileges.unwrap_or(false);

        Ok(DaemonConfig {
            hosts,
            data_root,
            exec_root,
            pidfile,
            debug,
            registry_mirrors,
            insecure_registries,
            bip,
            bridge,
            iptables_chain_prefix,
            default_address_pools,
            dns,
            log_opts,
            group,
            default_ulimits,
            no_new_privileges,
            config_file: path,
        })
    }

    /// Socket paths of the `unix://` hosts (all hosts, after validation).
    pub fn unix_socket_paths(&self) -> Vec<PathBuf> {
        self.hosts
            .iter()
            .filter_map(|h| h.strip_prefix("unix://"))
            .map(PathBuf::from)
            .collect()
    }
}

impl Default for DaemonConfig {
    /// The configuration with no flags and no config file.
    fn default() -> Self {
        DaemonConfig::from_parts(&Flags::default(), None).expect("built-in defaults are valid")
    }
}

/// dockerd's built-in local-scope pools (libnetwork `ipamutils`):
/// 172.17-19.0.0/16 and 172.20/14, 172.24/14, 172.28/14 split into /16s
/// (i.e. 172.17-31.x.x), plus 192.168.0.0/16 split into /20s.
pub fn default_address_pools() -> Vec<AddressPool> {
    [
        ("172.17.0.0/16", 16),
        ("172.18.0.0/16", 16),
        ("172.19.0.0/16", 16),
        ("172.20.0.0/14", 16),
        ("172.24.0.0/14", 16),
        ("172.28.0.0/14", 16),
        ("192.168.0.0/16", 20),
    ]
    .into_iter()
    .map(|(base, size)| AddressPool {
        base: base.to_string(),
        size,
    })
    .collect()
}

fn config_file_path(flags: &Flags) -> PathBuf {
    flags
        .config_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE))
}

fn pick_list(flag: &[String], file: Option<Vec<String>>) -> Vec<String> {
    if flag.is_empty() {
        file.unwrap_or_default()
    } else {
        flag.to_vec()
    }
}

/// Relative paths are resolved against the current directory now, so a later
/// chdir cannot change their meaning.
fn absolute_path(
    name: &str,
    value: Option<PathBuf>,
    default: &str,
) -> Result<PathBuf, ConfigError> {
    let p = value.unwrap_or_else(|| PathBuf::from(default));
    if p.as_os_str().is_empty() {
        return Err(ConfigError::Invalid(format!("{name} must not be empty")));
    }
    std::path::absolute(&p)
        .map_err(|e| ConfigError::Invalid(format!("invalid {name} {}: {e}", p.display())))
}

// ---------------------------------------------------------------------------
// Config file parsing

struct FileConfig {
    raw: Map<String, Value>,
}

impl FileConfig {
    fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
        // Editors on some systems write a UTF-8 BOM; dockerd tolerates it too.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        // dockerd accepts an empty file as "no settings".
        if text.trim().is_empty() {
            return Ok(FileConfig { raw: Map::new() });
        }
        let value: Value = serde_json::from_str(text).map_err(|e| ConfigError::InvalidFile {
            path: path.to_path_buf(),
            message: format!("invalid JSON: {e}"),
        })?;
        match value {
            Value::Object(raw) => Ok(FileConfig { raw }),
            other => Err(ConfigError::InvalidFile {
                path: path.to_path_buf(),
                message: format!(
                    "the configuration file must contain a JSON object, found {}",
                    json_type(&other)
                ),
            }),
        }
    }
}

/// Unknown keys first, then flag/file conflicts, in dockerd's order.
fn check_file_keys(
    path: &Path,
    flags: &Flags,
    raw: &Map<String, Value>,
) -> Result<(), ConfigError> {
    let mut unknown: Vec<String> = raw
        .keys()
        .filter(|k| !FILE_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        // Go map order is random; sorting keeps our message deterministic.
        unknown.sort();
        return Err(ConfigError::UnknownDirectives {
            path: path.to_path_buf(),
            keys: unknown,
        });
    }

    let conflicts: Vec<String> = given_flags(flags)
        .into_iter()
        .filter_map(|(key, flag_value)| {
            raw.get(key).map(|file_value| {
                format!(
                    "{key}: (from flag: {flag_value}, from file: {})",
                    go_fmt(file_value)
                )
            })
        })
        .collect();
    if !conflicts.is_empty() {
        return Err(ConfigError::Conflicts {
            path: path.to_path_buf(),
            conflicts,
        });
    }
    Ok(())
}

/// The flags that were given, as (config-file key, value rendered like Go's
/// `%v`), ordered by flag name as pflag's `Visit` does.
fn given_flags(flags: &Flags) -> Vec<(&'static str, String)> {
    fn list(v: &[String]) -> Option<String> {
        (!v.is_empty()).then(|| format!("[{}]", v.join(" ")))
    }
    fn path(p: &Option<PathBuf>) -> Option<String> {
        p.as_ref().map(|p| p.display().to_string())
    }
    let log_opts = (!flags.log_opts.is_empty()).then(|| {
        // pflag renders map options as Go's `map[k:v ...]` with sorted keys.
        let map: BTreeMap<&str, &str> = flags
            .log_opts
            .iter()
            .map(|o| o.split_once('=').unwrap_or((o.as_str(), "")))
            .collect();
        let inner: Vec<String> = map.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        format!("map[{}]", inner.join(" "))
    });
    let ulimits = (!flags.default_ulimits.is_empty()).then(|| {
        let map: BTreeMap<&str, &str> = flags
            .default_ulimits
            .iter()
            .map(|u| (u.split_once('=').map_or(u.as_str(), |(n, _)| n), u.as_str()))
            .collect();
        let inner: Vec<String> = map.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        format!("map[{}]", inner.join(" "))
    });
    // Sorted by *flag* name: bip, bridge, data-root, debug, default-ulimit,
    // dns, exec-root, group, host, insecure-registry,
    // iptables-chain-prefix, log-opt, no-new-privileges, pidfile,
    // registry-mirror.
    let candidates: [(&'static str, Option<String>); 15] = [
        ("bip", flags.bip.clone()),
        ("bridge", flags.bridge.clone()),
        ("data-root", path(&flags.data_root)),
        ("debug", flags.debug.then(|| "true".to_string())),
        ("default-ulimits", ulimits),
        ("dns", list(&flags.dns)),
        ("exec-root", path(&flags.exec_root)),
        ("group", flags.group.clone()),
        ("hosts", list(&flags.host)),
        ("insecure-registries", list(&flags.insecure_registries)),
        ("iptables-chain-prefix", flags.iptables_chain_prefix.clone()),
        ("log-opts", log_opts),
        (
            "no-new-privileges",
            flags.no_new_privileges.then(|| "true".to_string()),
        ),
        ("pidfile", path(&flags.pidfile)),
        ("registry-mirrors", list(&flags.registry_mirrors)),
    ];
    candidates
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

/// Formats a JSON value like Go's `fmt` `%v` of the decoded `interface{}`.
fn go_fmt(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_fmt).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{k}:{}", go_fmt(v)))
                .collect();
            format!("map[{}]", inner.join(" "))
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Typed values from the file. JSON `null` counts as unset (Go's decoder
/// leaves the field untouched too).
#[derive(Default)]
struct FileValues {
    hosts: Option<Vec<String>>,
    data_root: Option<PathBuf>,
    exec_root: Option<PathBuf>,
    pidfile: Option<PathBuf>,
    debug: Option<bool>,
    registry_mirrors: Option<Vec<String>>,
    insecure_registries: Option<Vec<String>>,
    bip: Option<String>,
    bridge: Option<String>,
    iptables_chain_prefix: Option<String>,
    default_address_pools: Option<Vec<AddressPool>>,
    dns: Option<Vec<String>>,
    log_driver: Option<String>,
    log_opts: Option<BTreeMap<String, String>>,
    group: Option<String>,
    default_ulimits: Option<Vec<DefaultUlimit>>,
    no_new_privileges: Option<bool>,
}

impl FileValues {
    fn extract(path: &Path, raw: &Map<String, Value>) -> Result<FileValues, ConfigError> {
        let r = FileReader { path, raw };
        Ok(FileValues {
            hosts: r.string_list("hosts")?,
            data_root: r.string("data-root")?.map(PathBuf::from),
            exec_root: r.string("exec-root")?.map(PathBuf::from),
            pidfile: r.string("pidfile")?.map(PathBuf::from),
            debug: r.boolean("debug")?,
            registry_mirrors: r.string_list("registry-mirrors")?,
            insecure_registries: r.string_list("insecure-registries")?,
            bip: r.string("bip")?,
            bridge: r.string("bridge")?,
            iptables_chain_prefix: r.string("iptables-chain-prefix")?,
            default_address_pools: r.pools("default-address-pools")?,
            dns: r.string_list("dns")?,
            log_driver: r.string("log-driver")?,
            log_opts: r.string_map("log-opts")?,
            group: r.string("group")?,
            default_ulimits: r.ulimits("default-ulimits")?,
            no_new_privileges: r.boolean("no-new-privileges")?,
        })
    }
}

struct FileReader<'a> {
    path: &'a Path,
    raw: &'a Map<String, Value>,
}

impl FileReader<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.raw.get(key).filter(|v| !v.is_null())
    }

    fn type_error(&self, key: &str, expected: &str, found: &Value) -> ConfigError {
        ConfigError::InvalidFile {
            path: self.path.to_path_buf(),
            message: format!(
                "invalid value for {key:?}: expected {expected}, found {}",
                json_type(found)
            ),
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.type_error(key, "a string", v)),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.type_error(key, "a boolean", v)),
        }
    }

    fn string_list(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(self.type_error(key, "an array of strings", v));
        };
        items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(self.type_error(key, "an array of strings", other)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn string_map(&self, key: &str) -> Result<Option<BTreeMap<String, String>>, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let Value::Object(m) = v else {
            return Err(self.type_error(key, "an object of strings", v));
        };
        m.iter()
            .map(|(k, val)| match val {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(self.type_error(key, "an object of strings", other)),
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map(Some)
    }

    /// `{"nofile": {"Name": "nofile", "Soft": 1024, "Hard": 2048}}`, as a
    /// list ordered by name.
    fn ulimits(&self, key: &str) -> Result<Option<Vec<DefaultUlimit>>, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        serde_json::from_value::<BTreeMap<String, DefaultUlimit>>(v.clone())
            .map(|m| Some(m.into_values().collect()))
            .map_err(|e| ConfigError::InvalidFile {
                path: self.path.to_path_buf(),
                message: format!(
                    "invalid value for {key:?}: expected an object of {{\"Name\", \"Soft\", \"Hard\"}}: {e}"
                ),
            })
    }

    fn pools(&self, key: &str) -> Result<Option<Vec<AddressPool>>, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        serde_json::from_value::<Vec<AddressPool>>(v.clone())
            .map(Some)
            .map_err(|e| ConfigError::InvalidFile {
                path: self.path.to_path_buf(),
                message: format!(
                    "invalid value for {key:?}: expected an array of {{\"base\": CIDR, \"size\": prefix length}}: {e}"
                ),
            })
    }
}

// ---------------------------------------------------------------------------
// Value validation

/// `--default-ulimit name=soft[:hard]` as go-units parses it (the hard
/// limit is the soft one when left out). The name is checked with the
/// containers' own ulimits, when the daemon starts.
fn parse_ulimit_flag(v: &str) -> Result<DefaultUlimit, ConfigError> {
    let bad = || ConfigError::Invalid(format!("invalid ulimit argument: {v}"));
    let (name, limits) = v.split_once('=').ok_or_else(bad)?;
    let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
    let num = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| ConfigError::Invalid(format!("invalid ulimit value {s:?} in {v}")))
    };
    let (soft, hard) = (num(soft)?, num(hard)?);
    if name.is_empty() {
        return Err(bad());
    }
    if hard != -1 && soft > hard {
        return Err(ConfigError::Invalid(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        )));
    }
    Ok(DefaultUlimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// Only unix sockets are served; `unix://` alone means the default socket and
/// an empty string means the default host, like dockerd's `ParseHost`.
fn validate_host(host: &str) -> Result<String, ConfigError> {
    let host = host.trim();
    if host.is_empty() {
        return Ok(DEFAULT_HOST.to_string());
    }
    match host.split_once("://") {
        Some(("unix", path)) => {
            if path.contains("://") {
                return Err(ConfigError::Invalid(format!(
                    "invalid proto, expected unix: {path}"
                )));
            }
            let path = if path.is_empty() {
                DEFAULT_UNIX_SOCKET
            } else {
                path
            };
            Ok(format!("unix://{path}"))
        }
        _ => Err(ConfigError::Invalid(format!(
            "unsupported host {host:?}: only unix:// sockets are supported"
        ))),
    }
}

/// Validates and normalises a registry mirror to `scheme://host[:port]`.
///
/// Messages follow dockerd's `registry.ValidateMirror`. Paths are rejected as
/// dockerd did before v25 (mirrors are addressed by host only here); a bare
/// trailing `/` is fine and dropped.
pub fn validate_mirror(mirror: &str) -> Result<String, ConfigError> {
    let invalid = |msg: String| ConfigError::Invalid(format!("invalid mirror: {msg}"));
    let (scheme, rest) = match mirror.split_once("://") {
        Some((scheme, rest)) if !scheme.is_empty() => (scheme, rest),
        _ => {
            return Err(invalid(format!(
                "no scheme specified for {mirror:?}: must use either 'https://' or 'http://'"
            )))
        }
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || mirror.chars().any(|c| c.is_control() || c == ' ') {
        return Err(invalid(format!("{mirror:?} is not a valid URI")));
    }
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(invalid(format!(
            "unsupported scheme {scheme:?} in {mirror:?}: must use either 'https://' or 'http://'"
        )));
    }
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if let Some((userinfo, host)) = authority.rsplit_once('@') {
        // Never echo a password back into logs.
        let user = userinfo.split(':').next().unwrap_or("");
        return Err(invalid(format!(
            "username/password not allowed in URI \"{scheme}://{user}:xxxxx@{host}{path}\""
        )));
    }
    if !path.trim_end_matches('/').is_empty() {
        return Err(invalid(format!(
            "path, query, or fragment at end of the URI {mirror:?}"
        )));
    }
    if !is_host_port(authority) {
        return Err(invalid(format!("{mirror:?} is not a valid URI")));
    }
    Ok(format!("{scheme}://{authority}"))
}

/// Validates an insecure registry (`host[:port]`, IP or CIDR) like dockerd's
/// `loadInsecureRegistries`: `http://`/`https://` prefixes are stripped with a
/// warning, any other scheme is an error.
pub fn validate_insecure_registry(registry: &str) -> Result<String, ConfigError> {
    let mut r = if registry == "index.docker.io" {
        "docker.io"
    } else {
        registry
    };
    if r.starts_with('-') || r.ends_with('-') {
        return Err(ConfigError::Invalid(format!(
            "invalid index name ({r}). Cannot begin or end with a hyphen"
        )));
    }
    if let Some((scheme, host)) = r.split_once("://") {
        if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
            tracing::warn!(
                "insecure registry {registry} should not contain '{scheme}://' and '{scheme}://' has been removed from the insecure registry config"
            );
            r = host;
        } else {
            return Err(ConfigError::Invalid(format!(
                "insecure registry {registry} should not contain '://'"
            )));
        }
    }
    if let Ok((addr, prefix)) = parse_cidr(r) {
        return Ok(format!("{}/{prefix}", mask_ip(addr, prefix)));
    }
    validate_host_port(r)
        .map(|()| r.to_string())
        .map_err(|e| ConfigError::Invalid(format!("insecure registry {r} is not valid: {e}")))
}

/// dockerd's `validateHostPort`: `host[:port]` by the reference domain
/// grammar, or an IP (possibly bracketed, with port).
fn validate_host_port(s: &str) -> Result<(), String> {
    let (host, port) = split_host_port(s).unwrap_or((s, ""));
    if !is_host_port(s) && host.parse::<IpAddr>().is_err() {
        return Err(format!("invalid host {host:?}"));
    }
    if !port.is_empty() && port.parse::<u16>().is_err() {
        return Err(format!("invalid port {port:?}"));
    }
    Ok(())
}

/// Go's `net.SplitHostPort`, returning `None` where it would fail.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(inner) = s.strip_prefix('[') {
        let (host, after) = inner.split_once(']')?;
        let port = after.strip_prefix(':')?;
        (!host.contains(['[', ']']) && !port.contains(':')).then_some((host, port))
    } else {
        let (host, port) = s.rsplit_once(':')?;
        (!host.contains(':')).then_some((host, port))
    }
}

/// The distribution/reference `DomainRegexp` anchored at both ends:
/// `(domain-name | [ipv6]) (:digits)?`.
fn is_host_port(s: &str) -> bool {
    let (host_ok, port) = if let Some(inner) = s.strip_prefix('[') {
        let Some((v6, after)) = inner.split_once(']') else {
            return false;
        };
        let ok = !v6.is_empty() && v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':');
        if after.is_empty() {
            return ok;
        }
        match after.strip_prefix(':') {
            Some(port) => (ok, port),
            None => return false,
        }
    } else {
        match s.split_once(':') {
            Some((host, port)) => (is_domain_name(host), port),
            None => return is_domain_name(s),
        }
    };
    host_ok && !port.is_empty() && port.chars().all(|c| c.is_ascii_digit())
}

fn is_domain_name(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(is_domain_component)
}

fn is_domain_component(c: &str) -> bool {
    !c.is_empty()
        && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
        && !c.starts_with('-')
        && !c.ends_with('-')
}

/// Parses `a.b.c.d/n` or `v6/n` strictly (as Go's `net.ParseCIDR`).
fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = s
        .split_once('/')
        .ok_or_else(|| "missing prefix length".to_string())?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("invalid IP address {addr:?}"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let valid_digits = !prefix.is_empty()
        && prefix.len() <= 3
        && prefix.chars().all(|c| c.is_ascii_digit())
        && !(prefix.len() > 1 && prefix.starts_with('0'));
    match prefix.parse::<u8>() {
        Ok(p) if valid_digits && p <= max => Ok((addr, p)),
        _ => Err(format!("invalid prefix length {prefix:?}")),
    }
}

fn mask_ip(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & v4_mask(prefix))),
        IpAddr::V6(a) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

fn v4_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// `bip` must be an IPv4 host address with its prefix (`172.17.0.1/16`): it is
/// the bridge's own address, so neither the network nor broadcast address.
pub fn validate_bip(bip: &str) -> Result<String, ConfigError> {
    let bip = bip.trim();
    let invalid = |msg: String| ConfigError::Invalid(format!("invalid bip {bip:?}: {msg}"));
    let (addr, prefix) = parse_cidr(bip).map_err(|e| {
        invalid(format!(
            "{e}; expected an IPv4 address in CIDR notation, e.g. 172.17.0.1/16"
        ))
    })?;
    let IpAddr::V4(v4) = addr else {
        return Err(invalid("bip must be an IPv4 address".to_string()));
    };
    if prefix > 30 {
        return Err(invalid(format!(
            "prefix length /{prefix} leaves no room for containers (at most /30)"
        )));
    }
    let host_bits = u32::from(v4) & !v4_mask(prefix);
    if host_bits == 0 {
        return Err(invalid(format!(
            "{v4} is the network address; a host address is required (e.g. {}/{prefix})",
            Ipv4Addr::from(u32::from(v4) + 1)
        )));
    }
    if host_bits == !v4_mask(prefix) {
        return Err(invalid(format!(
            "{v4} is the broadcast address; a host address is required"
        )));
    }
    Ok(format!("{v4}/{prefix}"))
}

/// Pools must be IPv4 CIDRs (networking is IPv4-only) and split into
/// subnets no larger than the base: `base prefix <= size <= 32`.
fn validate_pool(pool: &AddressPool) -> Result<AddressPool, ConfigError> {
    let invalid = |msg: String| {
        ConfigError::Invalid(format!(
            "invalid default-address-pools entry {{base: {:?}, size: {}}}: {msg}",
            pool.base, pool.size
        ))
    };
    let (addr, prefix) =
        parse_cidr(pool.base.trim()).map_err(|e| invalid(format!("invalid base pool: {e}")))?;
    if !addr.is_ipv4() {
        return Err(invalid("only IPv4 pools are supported".to_string()));
    }
    if pool.size == 0 || pool.size > 32 || pool.size < prefix {
        return Err(invalid(format!(
            "invalid pools size: {} (must be between the base prefix length {prefix} and 32)",
            pool.size
        )));
    }
    Ok(AddressPool {
        base: format!("{}/{prefix}", mask_ip(addr, prefix)),
        size: pool.size,
    })
}

fn validate_dns(dns: &str) -> Result<String, ConfigError> {
    dns.trim()
        .parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| ConfigError::Invalid(format!("IP address is not correctly formatted: {dns}")))
}

/// Linux interface name rules (`dev_valid_name`): 1-15 bytes, not `.`/`..`,
/// no `/`, `:` or whitespace.
fn validate_bridge(name: &str) -> Result<String, ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(name.to_string())
    } else {
        Err(ConfigError::Invalid(format!(
            "invalid bridge name {name:?}: must be 1-15 characters without '/', ':' or whitespace"
        )))
    }
}

/// iptables chain names are at most 28 characters; the prefix alone must
/// fit, and we keep to characters that need no quoting anywhere.
fn validate_chain_prefix(prefix: &str) -> Result<String, ConfigError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 28
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(prefix.to_string())
    } else {
        Err(ConfigError::Invalid(format!(
            "invalid iptables-chain-prefix {prefix:?}: must be 1-28 characters of [A-Za-z0-9_-]"
        )))
    }
}

fn parse_log_opt_flags(opts: &[String]) -> Result<BTreeMap<String, String>, ConfigError> {
    opts.iter()
        .map(|o| match o.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(ConfigError::Invalid(format!(
                "invalid log-opt {o:?}: expected key=value"
            ))),
        })
        .collect()
}

fn validate_log_opts(opts: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (k, v) in opts {
        if !JSON_FILE_LOG_OPTS.contains(&k.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "unknown log opt '{k}' for json-file log driver"
            )));
        }
        if k == "mode" && v != "blocking" && v != "non-blocking" {
            return Err(ConfigError::Invalid(format!(
                "logger: logging mode not supported: {v}"
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Proxy environment

/// Proxy settings from the environment; empty string means unset (as in
/// `/info`'s `HttpProxy`, `HttpsProxy`, `NoProxy`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    pub http_proxy: String,
    pub https_proxy: String,
    pub no_proxy: String,
}

impl ProxyEnv {
    /// Copy with `user:password@` in the proxy URLs replaced by
    /// `xxxxx:xxxxx@`, as dockerd does before reporting them in `/info`.
    pub fn masked(&self) -> ProxyEnv {
        ProxyEnv {
            http_proxy: mask_credentials(&self.http_proxy),
            https_proxy: mask_credentials(&self.https_proxy),
            no_proxy: self.no_proxy.clone(),
        }
    }
}

/// Reads HTTP_PROXY/http_proxy, HTTPS_PROXY/https_proxy, NO_PROXY/no_proxy.
pub fn proxy_env() -> ProxyEnv {
    proxy_env_from(|name| std::env::var(name).ok())
}

/// [`proxy_env`] over an arbitrary lookup, so tests need not mutate the
/// process environment. Like Go's `httpproxy.FromEnvironment`, the upper-case
/// name wins unless it is empty.
pub fn proxy_env_from(lookup: impl Fn(&str) -> Option<String>) -> ProxyEnv {
    let any = |names: [&str; 2]| {
        names
            .into_iter()
            .filter_map(&lookup)
            .find(|v| !v.is_empty())
            .unwrap_or_default()
    };
    ProxyEnv {
        http_proxy: any(["HTTP_PROXY", "http_proxy"]),
        https_proxy: any(["HTTPS_PROXY", "https_proxy"]),
        no_proxy: any(["NO_PROXY", "no_proxy"]),
    }
}

/// dockerd's `MaskCredentials`: hides the userinfo of a URL; anything that
/// is not `scheme://...` or has no userinfo is returned unchanged.
pub fn mask_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://xxxxx:xxxxx@{host}{tail}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn flags(args: &[&str]) -> Flags {
        let mut argv = vec!["mydockerd"];
        argv.extend_from_slice(args);
        Flags::try_parse_from(argv).expect("flags parse")
    }

    fn merge(args: &[&str], file: Option<&str>) -> Result<DaemonConfig, ConfigError> {
        DaemonConfig::from_parts(&flags(args), file)
    }

    fn err(args: &[&str], file: Option<&str>) -> String {
        merge(args, file)
            .expect_err("expected an error")
            .to_string()
    }

    #[test]
    fn default_ulimits_and_no_new_privileges() {
        let c = merge(
            &[
                "--default-ulimit",
                "nofile=10:20",
                "--default-ulimit",
                "nproc=5",
                "--no-new-privileges",
            ],
            None,
        )
        .unwrap();
        let u = |name: &str, soft, hard| DefaultUlimit {
            name: name.into(),
            soft,
            hard,
        };
        assert_eq!(
            c.default_ulimits,
            vec![u("nofile", 10, 20), u("nproc", 5, 5)]
        );
        assert!(c.no_new_privileges);
        let c = merge(
            &[],
            Some(r#"{"default-ulimits": {"nofile": {"Name": "nofile", "Soft": 1, "Hard": -1}}, "no-new-privileges": true}"#),
        )
        .unwrap();
        assert_eq!(c.default_ulimits, vec![u("nofile", 1, -1)]);
        assert!(c.no_new_privileges);
        assert!(!merge(&[], None).unwrap().no_new_privileges);
        assert_eq!(
            err(&["--default-ulimit", "nofile"], None),
            "invalid ulimit argument: nofile"
        );
        assert!(err(&["--default-ulimit", "nofile=a:b"], None).contains("invalid ulimit value"));
        assert!(err(&["--default-ulimit", "nofile=3:2"], None).ends_with("3 > 2"));
        assert!(err(
            &["--no-new-privileges"],
            Some(r#"{"no-new-privileges": true}"#)
        )
        .contains("no-new-privileges"));
        assert!(err(&[], Some(r#"{"default-ulimits": ["nofile=1"]}"#)).contains("default-ulimits"));
    }

    #[test]
    fn defaults() {
        let c = merge(&[], None).unwrap();
        assert_eq!(c.hosts, vec![DEFAULT_HOST.to_string()]);
        assert_eq!(c.data_root, PathBuf::from("/var/lib/mydocker"));
        assert_eq!(c.exec_root, PathBuf::from("/run/mydocker"));
        assert_eq!(c.pidfile, PathBuf::from("/var/run/mydocker.pid"));
        assert!(!c.debug);
        assert!(c.registry_mirrors.is_empty());
        assert!(c.insecure_registries.is_empty());
        assert_eq!(c.bip, None);
        assert_eq!(c.bridge, "mydocker0");
        assert_eq!(c.iptables_chain_prefix, "MYDOCKER");
        assert_eq!(c.default_address_pools, default_address_pools());
        assert!(c.dns.is_empty());
        assert!(c.log_opts.is_empty());
        assert_eq!(c.group, None);
        assert_eq!(c.config_file, PathBuf::from("/etc/mydocker/daemon.json"));
        assert_eq!(c, DaemonConfig::default());
        assert_eq!(
            c.unix_socket_paths(),
            vec![PathBuf::from("/var/run/mydocker.sock")]
        );
    }

    #[test]
    fn default_pools_match_dockerd() {
        let pools = default_address_pools();
        let got: Vec<(&str, u8)> = pools.iter().map(|p| (p.base.as_str(), p.size)).collect();
        assert_eq!(
            got,
            vec![
                ("172.17.0.0/16", 16),
                ("172.18.0.0/16", 16),
                ("172.19.0.0/16", 16),
                ("172.20.0.0/14", 16),
                ("172.24.0.0/14", 16),
                ("172.28.0.0/14", 16),
                ("192.168.0.0/16", 20),
            ]
        );
        // Every default pool passes our own validation unchanged.
        for p in &pools {
            assert_eq!(&validate_pool(p).unwrap(), p);
        }
    }

    #[test]
    fn flags_parse_all_options() {
        let f = flags(&[
            "-H",
            "unix:///a.sock",
            "--host",
            "unix:///b.sock",
            "--data-root",
            "/d",
            "--exec-root",
            "/e",
            "--config-file",
            "/c.json",
            "-D",
            "--registry-mirror",
            "https://m",
            "--insecure-registry",
            "r:5000",
            "-p",
            "/p.pid",
            "--bip",
            "10.0.0.1/24",
            "-b",
            "br0",
            "--iptables-chain-prefix",
            "T1",
            "--dns",
            "1.1.1.1",
            "--log-opt",
            "max-size=1m",
            "-G",
            "wheel",
        ]);
        assert_eq!(f.host, vec!["unix:///a.sock", "unix:///b.sock"]);
        assert_eq!(f.config_file, Some(PathBuf::from("/c.json")));
        assert!(f.debug);
        assert_eq!(f.bridge.as_deref(), Some("br0"));
        assert_eq!(f.group.as_deref(), Some("wheel"));
        let c = DaemonConfig::from_parts(&f, None).unwrap();
        assert_eq!(c.hosts, vec!["unix:///a.sock", "unix:///b.sock"]);
        assert_eq!(c.data_root, PathBuf::from("/d"));
        assert_eq!(c.exec_root, PathBuf::from("/e"));
        assert_eq!(c.pidfile, PathBuf::from("/p.pid"));
        assert!(c.debug);
        assert_eq!(c.registry_mirrors, vec!["https://m"]);
        assert_eq!(c.insecure_registries, vec!["r:5000"]);
        assert_eq!(c.bip.as_deref(), Some("10.0.0.1/24"));
        assert_eq!(c.bridge, "br0");
        assert_eq!(c.iptables_chain_prefix, "T1");
        assert_eq!(c.dns, vec!["1.1.1.1"]);
        assert_eq!(c.log_opts.get("max-size").map(String::as_str), Some("1m"));
        assert_eq!(c.group.as_deref(), Some("wheel"));
        assert_eq!(c.config_file, PathBuf::from("/c.json"));
    }

    #[test]
    fn file_values() {
        let file = r#"{
            "hosts": ["unix:///run/x.sock"],
            "data-root": "/srv/data",
            "exec-root": "/srv/exec",
            "pidfile": "/srv/pid",
            "debug": true,
            "registry-mirrors": ["https://mirror.example.com/"],
            "insecure-registries": ["myreg:5000", "10.1.2.3/8"],
            "bip": "192.168.5.1/24",
            "bridge": "br-test",
            "iptables-chain-prefix": "TEST",
            "default-address-pools": [{"base": "10.10.0.0/16", "size": 24}],
            "dns": ["8.8.8.8", "2001:4860:4860::8888"],
            "log-driver": "json-file",
            "log-opts": {"max-size": "10m", "max-file": "3"},
            "group": "staff"
        }"#;
        let c = merge(&[], Some(file)).unwrap();
        assert_eq!(c.hosts, vec!["unix:///run/x.sock"]);
        assert_eq!(c.data_root, PathBuf::from("/srv/data"));
        assert_eq!(c.exec_root, PathBuf::from("/srv/exec"));
        assert_eq!(c.pidfile, PathBuf::from("/srv/pid"));
        assert!(c.debug);
        assert_eq!(c.registry_mirrors, vec!["https://mirror.example.com"]);
        assert_eq!(c.insecure_registries, vec!["myreg:5000", "10.0.0.0/8"]);
        assert_eq!(c.bip.as_deref(), Some("192.168.5.1/24"));
        assert_eq!(c.bridge, "br-test");
        assert_eq!(c.iptables_chain_prefix, "TEST");
        assert_eq!(
            c.default_address_pools,
            vec![AddressPool {
                base: "10.10.0.0/16".into(),
                size: 24
            }]
        );
        assert_eq!(c.dns, vec!["8.8.8.8", "2001:4860:4860::8888"]);
        assert_eq!(
            c.log_opts,
            BTreeMap::from([
                ("max-file".to_string(), "3".to_string()),
                ("max-size".to_string(), "10m".to_string())
            ])
        );
        assert_eq!(c.group.as_deref(), Some("staff"));
    }

    #[test]
    fn flags_and_file_combine_when_disjoint() {
        let c = merge(
            &["--data-root", "/flag"],
            Some(r#"{"debug": true, "bridge": "br9"}"#),
        )
        .unwrap();
        assert_eq!(c.data_root, PathBuf::from("/flag"));
        assert!(c.debug);
        assert_eq!(c.bridge, "br9");
    }

    #[test]
    fn empty_file_bom_and_nulls_are_fine() {
        assert_eq!(merge(&[], Some("")).unwrap(), DaemonConfig::default());
        assert_eq!(merge(&[], Some("  \n")).unwrap(), DaemonConfig::default());
        assert_eq!(merge(&[], Some("{}")).unwrap(), DaemonConfig::default());
        let c = merge(&[], Some("\u{feff}{\"debug\": true}")).unwrap();
        assert!(c.debug);
        let c = merge(&[], Some(r#"{"bip": null, "dns": null}"#)).unwrap();
        assert_eq!(c.bip, None);
        assert!(c.dns.is_empty());
    }

    #[test]
    fn conflict_message_matches_dockerd() {
        assert_eq!(
            err(&["--debug"], Some(r#"{"debug": false}"#)),
            "unable to configure the Docker daemon with file /etc/mydocker/daemon.json: \
             the following directives are specified both as a flag and in the configuration file: \
             debug: (from flag: true, from file: false)"
        );
    }

    #[test]
    fn conflicts_list_all_in_flag_order() {
        let e = merge(
            &[
                "-H",
                "unix:///a.sock",
                "--debug",
                "--registry-mirror",
                "https://m1",
                "--log-opt",
                "max-size=1m",
                "--data-root",
                "/x",
                "--config-file",
                "/cfg.json",
            ],
            Some(
                r#"{"registry-mirrors": ["https://m2", "https://m3"], "hosts": ["unix:///b.sock"],
                    "debug": true, "data-root": "/y", "log-opts": {"max-file": "2"}}"#,
            ),
        )
        .unwrap_err();
        let ConfigError::Conflicts { path, conflicts } = &e else {
            panic!("unexpected error {e:?}");
        };
        assert_eq!(path, Path::new("/cfg.json"));
        assert_eq!(
            conflicts,
            &vec![
                "data-root: (from flag: /x, from file: /y)".to_string(),
                "debug: (from flag: true, from file: true)".to_string(),
                "hosts: (from flag: [unix:///a.sock], from file: [unix:///b.sock])".to_string(),
                "log-opts: (from flag: map[max-size:1m], from file: map[max-file:2])".to_string(),
                "registry-mirrors: (from flag: [https://m1], from file: [https://m2 https://m3])"
                    .to_string(),
            ]
        );
        assert!(e.to_string().starts_with(
            "unable to configure the Docker daemon with file /cfg.json: the following directives \
             are specified both as a flag and in the configuration file: data-root: (from flag: /x"
        ));
        assert!(e
            .to_string()
            .contains(", debug: (from flag: true, from file: true), hosts: "));
    }

    #[test]
    fn every_flag_conflicts_with_its_key() {
        let cases: &[(&[&str], &str)] = &[
            (&["--bip", "10.0.0.1/8"], r#"{"bip": "10.0.0.1/8"}"#),
            (&["--bridge", "b"], r#"{"bridge": "b"}"#),
            (&["--exec-root", "/e"], r#"{"exec-root": "/e"}"#),
            (&["-p", "/p"], r#"{"pidfile": "/p"}"#),
            (&["--dns", "1.1.1.1"], r#"{"dns": ["1.1.1.1"]}"#),
            (
                &["--insecure-registry", "r"],
                r#"{"insecure-registries": ["r"]}"#,
            ),
            (
                &["--iptables-chain-prefix", "X"],
                r#"{"iptables-chain-prefix": "X"}"#,
            ),
            (&["-G", "g"], r#"{"group": "g"}"#),
        ];
        for (args, file) in cases {
            let e = merge(args, Some(file)).unwrap_err();
            assert!(matches!(e, ConfigError::Conflicts { .. }), "{args:?}: {e}");
        }
    }

    #[test]
    fn debug_flag_not_given_does_not_conflict() {
        let c = merge(&[], Some(r#"{"debug": false}"#)).unwrap();
        assert!(!c.debug);
        let c = merge(&[], Some(r#"{"debug": true}"#)).unwrap();
        assert!(c.debug);
    }

    #[test]
    fn unknown_keys_are_listed() {
        assert_eq!(
            err(&[], Some(r#"{"foo": 1}"#)),
            "unable to configure the Docker daemon with file /etc/mydocker/daemon.json: \
             the following directives don't match any configuration option: foo"
        );
        let e = merge(
            &[],
            Some(r#"{"zeta": 1, "debug": true, "alpha": {}, "D": true}"#),
        )
        .unwrap_err();
        let ConfigError::UnknownDirectives { keys, .. } = &e else {
            panic!("unexpected error {e:?}");
        };
        assert_eq!(
            keys,
            &vec!["D".to_string(), "alpha".to_string(), "zeta".to_string()]
        );
        assert!(e
            .to_string()
            .ends_with("configuration option: D, alpha, zeta"));
    }

    #[test]
    fn unknown_keys_are_reported_before_conflicts() {
        let e = merge(&["--debug"], Some(r#"{"debug": true, "foo": 1}"#)).unwrap_err();
        assert!(matches!(e, ConfigError::UnknownDirectives { .. }), "{e}");
    }

    #[test]
    fn bad_json_names_the_file() {
        let e = err(&["--config-file", "/tmp/my.json"], Some("{\"debug\": tru"));
        assert!(
            e.starts_with(
                "unable to configure the Docker daemon with file /tmp/my.json: invalid JSON:"
            ),
            "{e}"
        );
        let e = err(&[], Some("[1, 2]"));
        assert!(e.contains("/etc/mydocker/daemon.json"), "{e}");
        assert!(e.contains("must contain a JSON object, found array"), "{e}");
    }

    #[test]
    fn wrongly_typed_values_name_the_file_and_key() {
        let cases = [
            (
                r#"{"debug": "yes"}"#,
                "\"debug\": expected a boolean, found string",
            ),
            (
                r#"{"hosts": "unix:///x"}"#,
                "\"hosts\": expected an array of strings, found string",
            ),
            (
                r#"{"dns": [1]}"#,
                "\"dns\": expected an array of strings, found number",
            ),
            (
                r#"{"log-opts": {"max-file": 3}}"#,
                "\"log-opts\": expected an object of strings",
            ),
            (
                r#"{"data-root": 5}"#,
                "\"data-root\": expected a string, found number",
            ),
            (
                r#"{"default-address-pools": [{"base": "10.0.0.0/8"}]}"#,
                "missing field `size`",
            ),
            (
                r#"{"default-address-pools": [{"base": "10.0.0.0/8", "size": 300}]}"#,
                "default-address-pools",
            ),
        ];
        for (file, want) in cases {
            let e = merge(&[], Some(file)).unwrap_err();
            assert!(matches!(e, ConfigError::InvalidFile { .. }), "{file}: {e}");
            let msg = e.to_string();
            assert!(
                msg.starts_with(
                    "unable to configure the Docker daemon with file /etc/mydocker/daemon.json: "
                ),
                "{msg}"
            );
            assert!(msg.contains(want), "{file}: {msg}");
        }
    }

    #[test]
    fn conflict_values_render_like_go() {
        assert_eq!(go_fmt(&serde_json::json!(null)), "<nil>");
        assert_eq!(go_fmt(&serde_json::json!(1)), "1");
        assert_eq!(go_fmt(&serde_json::json!(1.5)), "1.5");
        assert_eq!(go_fmt(&serde_json::json!(["a", "b"])), "[a b]");
        assert_eq!(
            go_fmt(&serde_json::json!({"b": 1, "a": [true]})),
            "map[a:[true] b:1]"
        );
        assert_eq!(go_fmt(&serde_json::json!([])), "[]");
    }

    #[test]
    fn mirror_validation() {
        let ok = [
            ("https://mirror.gcr.io", "https://mirror.gcr.io"),
            ("https://mirror.gcr.io/", "https://mirror.gcr.io"),
            ("http://10.0.0.1:5000/", "http://10.0.0.1:5000"),
            ("HTTPS://Mirror.Example.com", "https://Mirror.Example.com"),
            ("http://[::1]:5000", "http://[::1]:5000"),
            ("http://localhost", "http://localhost"),
        ];
        for (input, want) in ok {
            assert_eq!(validate_mirror(input).unwrap(), want, "{input}");
        }
        let bad = [
            (
                "ftp://mirror.example.com",
                r#"invalid mirror: unsupported scheme "ftp" in "ftp://mirror.example.com""#,
            ),
            (
                "mirror.example.com",
                r#"invalid mirror: no scheme specified for "mirror.example.com""#,
            ),
            (
                "mirror.example.com:5000",
                r#"invalid mirror: no scheme specified for "mirror.example.com:5000""#,
            ),
            ("://x", "invalid mirror: no scheme specified"),
            (
                "!invalid!://%as%",
                r#"invalid mirror: "!invalid!://%as%" is not a valid URI"#,
            ),
            (
                "https://",
                r#"invalid mirror: "https://" is not a valid URI"#,
            ),
            ("https://exa mple.com", "is not a valid URI"),
            (
                "https://host:abc",
                r#"invalid mirror: "https://host:abc" is not a valid URI"#,
            ),
            ("https://-bad-.com", "is not a valid URI"),
            (
                "https://m.com/v1",
                r#"invalid mirror: path, query, or fragment at end of the URI "https://m.com/v1""#,
            ),
            ("https://m.com/?q=1", "path, query, or fragment"),
            ("https://m.com#frag", "path, query, or fragment"),
            (
                "https://user:secret@m.com",
                r#"invalid mirror: username/password not allowed in URI "https://user:xxxxx@m.com""#,
            ),
        ];
        for (input, want) in bad {
            let e = validate_mirror(input).unwrap_err().to_string();
            assert!(e.starts_with(want) || e.contains(want), "{input}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
        // Through the merge, from either source.
        assert!(err(&["--registry-mirror", "ftp://x"], None)
            .starts_with("invalid mirror: unsupported scheme"));
        assert!(err(&[], Some(r#"{"registry-mirrors": ["x"]}"#))
            .starts_with("invalid mirror: no scheme"));
    }

    #[test]
    fn insecure_registry_validation() {
        let ok = [
            ("myregistry:5000", "myregistry:5000"),
            ("localhost", "localhost"),
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]:80", "[2001:db8::1]:80"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("102.10.8.1/24", "102.10.8.0/24"),
            ("2001:db8::/120", "2001:db8::/120"),
            ("http://mytest.com", "mytest.com"),
            ("HTTPS://mytest.com:443", "mytest.com:443"),
            ("index.docker.io", "docker.io"),
        ];
        for (input, want) in ok {
            assert_eq!(validate_insecure_registry(input).unwrap(), want, "{input}");
        }
        let bad = [
            (
                "svn://mytest.com",
                "insecure registry svn://mytest.com should not contain '://'",
            ),
            (
                "-invalid-registry",
                "invalid index name (-invalid-registry). Cannot begin or end with a hyphen",
            ),
            (
                "mytest-.com",
                r#"insecure registry mytest-.com is not valid: invalid host "mytest-.com""#,
            ),
            (
                "1200:0000:AB00:1234:0000:2552:7777:1313:8080",
                r#"insecure registry 1200:0000:AB00:1234:0000:2552:7777:1313:8080 is not valid: invalid host "1200:0000:AB00:1234:0000:2552:7777:1313:8080""#,
            ),
            (
                "mytest.com:500000",
                r#"insecure registry mytest.com:500000 is not valid: invalid port "500000""#,
            ),
            (
                "[fe80::]/64",
                r#"insecure registry [fe80::]/64 is not valid: invalid host "[fe80::]/64""#,
            ),
            ("host:", "is not valid"),
        ];
        for (input, want) in bad {
            let e = validate_insecure_registry(input).unwrap_err().to_string();
            if want.starts_with("insecure") || want.starts_with("invalid index") {
                assert_eq!(e, want, "{input}");
            } else {
                assert!(e.contains(want), "{input}: {e}");
            }
        }
        // Duplicates collapse.
        let c = merge(
            &[
                "--insecure-registry",
                "10.0.0.1/8",
                "--insecure-registry",
                "10.0.0.0/8",
            ],
            None,
        )
        .unwrap();
        assert_eq!(c.insecure_registries, vec!["10.0.0.0/8"]);
    }

    #[test]
    fn bip_validation() {
        assert_eq!(validate_bip("172.17.0.1/16").unwrap(), "172.17.0.1/16");
        assert_eq!(validate_bip(" 10.0.0.254/24 ").unwrap(), "10.0.0.254/24");
        assert_eq!(validate_bip("10.0.0.1/30").unwrap(), "10.0.0.1/30");
        let bad = [
            ("172.17.0.0/16", "172.17.0.0 is the network address; a host address is required (e.g. 172.17.0.1/16)"),
            ("172.17.255.255/16", "is the broadcast address"),
            ("172.17.0.1", "missing prefix length"),
            ("172.17.0.1/33", "invalid prefix length"),
            ("172.17.0.1/016", "invalid prefix length"),
            ("172.17.0/16", "invalid IP address"),
            ("fd00::1/64", "must be an IPv4 address"),
            ("10.0.0.1/31", "at most /30"),
            ("garbage", "expected an IPv4 address in CIDR notation"),
        ];
        for (input, want) in bad {
            let e = validate_bip(input).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("invalid bip {:?}: ", input.trim())),
                "{e}"
            );
            assert!(e.contains(want), "{input}: {e}");
        }
        assert!(err(&["--bip", "172.17.0.0/16"], None).contains("network address"));
        assert!(err(&[], Some(r#"{"bip": "nope"}"#)).starts_with("invalid bip"));
        // Empty means unset, as in dockerd.
        assert_eq!(merge(&[], Some(r#"{"bip": ""}"#)).unwrap().bip, None);
    }

    #[test]
    fn pool_validation() {
        let pools = |json: &str| {
            merge(
                &[],
                Some(&format!(r#"{{"default-address-pools": {json}}}"#)),
            )
        };
        let c = pools(
            r#"[{"base": "10.10.1.0/16", "size": 24}, {"base": "192.168.0.0/24", "size": 32}]"#,
        )
        .unwrap();
        assert_eq!(
            c.default_address_pools,
            vec![
                AddressPool {
                    base: "10.10.0.0/16".into(),
                    size: 24
                },
                AddressPool {
                    base: "192.168.0.0/24".into(),
                    size: 32
                },
            ]
        );
        // Size equal to the base prefix: one subnet, the base itself.
        assert!(pools(r#"[{"base": "10.0.0.0/8", "size": 8}]"#).is_ok());
        // Empty list falls back to the defaults.
        assert_eq!(
            pools("[]").unwrap().default_address_pools,
            default_address_pools()
        );

        let bad = [
            (
                r#"[{"base": "10.0.0.0/16", "size": 8}]"#,
                "invalid pools size: 8",
            ),
            (
                r#"[{"base": "10.0.0.0/16", "size": 0}]"#,
                "invalid pools size: 0",
            ),
            (
                r#"[{"base": "10.0.0.0/16", "size": 33}]"#,
                "invalid pools size: 33",
            ),
            (
                r#"[{"base": "10.0.0.0", "size": 24}]"#,
                "invalid base pool: missing prefix length",
            ),
            (
                r#"[{"base": "10.0.0.300/8", "size": 24}]"#,
                "invalid base pool: invalid IP address",
            ),
            (
                r#"[{"base": "fd00::/8", "size": 64}]"#,
                "only IPv4 pools are supported",
            ),
        ];
        for (json, want) in bad {
            let e = pools(json).unwrap_err();
            assert!(matches!(e, ConfigError::Invalid(_)), "{json}: {e:?}");
            let msg = e.to_string();
            assert!(
                msg.starts_with("invalid default-address-pools entry"),
                "{msg}"
            );
            assert!(msg.contains(want), "{json}: {msg}");
        }
    }

    #[test]
    fn host_validation() {
        let c = merge(
            &["-H", "unix://", "-H", "unix:///tmp/t.sock", "-H", ""],
            None,
        )
        .unwrap();
        assert_eq!(
            c.hosts,
            vec![DEFAULT_HOST, "unix:///tmp/t.sock", DEFAULT_HOST]
        );
        assert_eq!(
            err(&["-H", "tcp://0.0.0.0:2375"], None),
            r#"unsupported host "tcp://0.0.0.0:2375": only unix:// sockets are supported"#
        );
        for h in [
            "fd://",
            "ssh://me@host",
            "0.0.0.0:2375",
            "npipe:////./pipe/x",
        ] {
            assert!(err(&["-H", h], None).starts_with("unsupported host"), "{h}");
        }
        assert!(err(&[], Some(r#"{"hosts": ["tcp://127.0.0.1:2376"]}"#))
            .starts_with("unsupported host"));
        assert!(err(&["-H", "unix://tcp://x"], None).starts_with("invalid proto, expected unix"));
    }

    #[test]
    fn dns_log_and_misc_validation() {
        let c = merge(&["--dns", " 8.8.4.4 ", "--dns", "2001:DB8::1"], None).unwrap();
        assert_eq!(c.dns, vec!["8.8.4.4", "2001:db8::1"]);
        assert_eq!(
            err(&["--dns", "dns.google"], None),
            "IP address is not correctly formatted: dns.google"
        );

        let c = merge(
            &[
                "--log-opt",
                "max-size=10m",
                "--log-opt",
                "labels=a=b",
                "--log-opt",
                "mode=non-blocking",
            ],
            None,
        )
        .unwrap();
        assert_eq!(c.log_opts["labels"], "a=b");
        assert_eq!(c.log_opts["mode"], "non-blocking");
        assert_eq!(
            err(&["--log-opt", "max-size"], None),
            "invalid log-opt \"max-size\": expected key=value"
        );
        assert_eq!(
            err(&["--log-opt", "foo=bar"], None),
            "unknown log opt 'foo' for json-file log driver"
        );
        assert_eq!(
            err(&[], Some(r#"{"log-opts": {"mode": "fast"}}"#)),
            "logger: logging mode not supported: fast"
        );
        assert!(merge(&[], Some(r#"{"log-driver": ""}"#)).is_ok());
        assert_eq!(
            err(&[], Some(r#"{"log-driver": "journald"}"#)),
            r#"unsupported log driver "journald": only "json-file" is supported"#
        );

        assert!(err(&["--bridge", "a-very-long-bridge0"], None).starts_with("invalid bridge name"));
        assert!(err(&["--bridge", "br/0"], None).starts_with("invalid bridge name"));
        // An empty bridge falls back to the default name.
        assert_eq!(
            merge(&["--bridge", ""], None).unwrap().bridge,
            DEFAULT_BRIDGE
        );
        assert!(err(&["--iptables-chain-prefix", ""], None)
            .starts_with("invalid iptables-chain-prefix"));
        assert!(err(&["--iptables-chain-prefix", "A B"], None)
            .starts_with("invalid iptables-chain-prefix"));
        assert_eq!(err(&["-G", ""], None), "group must not be empty");
        assert_eq!(
            err(&[], Some(r#"{"data-root": ""}"#)),
            "data-root must not be empty"
        );
    }

    #[test]
    fn relative_paths_become_absolute() {
        let c = merge(
            &["--data-root", "rel/data"],
            Some(r#"{"pidfile": "x.pid"}"#),
        )
        .unwrap();
        assert!(c.data_root.is_absolute());
        assert!(c.data_root.ends_with("rel/data"));
        assert!(c.pidfile.is_absolute());
        assert!(c.pidfile.ends_with("x.pid"));
    }

    #[test]
    fn load_reads_explicit_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.json");
        std::fs::write(&path, r#"{"debug": true, "bridge": "br-file"}"#).unwrap();
        let f = flags(&["--config-file", path.to_str().unwrap()]);
        let c = DaemonConfig::load(&f).unwrap();
        assert!(c.debug);
        assert_eq!(c.bridge, "br-file");
        assert_eq!(c.config_file, path);
    }

    #[test]
    fn load_explicit_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.json");
        let f = flags(&["--config-file", path.to_str().unwrap()]);
        let e = DaemonConfig::load(&f).unwrap_err();
        assert!(
            matches!(&e, ConfigError::ReadFile { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );
        assert!(e.to_string().starts_with(&format!(
            "unable to configure the Docker daemon with file {}: ",
            path.display()
        )));
    }

    #[test]
    fn load_explicit_unreadable_file_is_an_error() {
        // A directory cannot be read as a file, whoever runs the tests.
        let dir = tempfile::tempdir().unwrap();
        let f = flags(&["--config-file", dir.path().to_str().unwrap()]);
        assert!(matches!(
            DaemonConfig::load(&f),
            Err(ConfigError::ReadFile { .. })
        ));
    }

    #[test]
    fn load_bad_json_in_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.json");
        std::fs::write(&path, "{not json").unwrap();
        let f = flags(&["--config-file", path.to_str().unwrap()]);
        let e = DaemonConfig::load(&f).unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("invalid JSON"),
            "{e}"
        );
    }

    #[test]
    fn load_default_missing_file_is_fine() {
        // Only meaningful where the default file does not exist (test hosts).
        if Path::new(DEFAULT_CONFIG_FILE).exists() {
            return;
        }
        assert_eq!(
            DaemonConfig::load(&Flags::default()).unwrap(),
            DaemonConfig::default()
        );
    }

    #[test]
    fn proxy_env_upper_case_wins() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let p = proxy_env_from(env(&[
            ("HTTP_PROXY", "http://upper:3128"),
            ("http_proxy", "http://lower:3128"),
            ("https_proxy", "http://lower-s:3128"),
            ("NO_PROXY", ""),
            ("no_proxy", "localhost,.corp"),
        ]));
        assert_eq!(
            p,
            ProxyEnv {
                http_proxy: "http://upper:3128".into(),
                https_proxy: "http://lower-s:3128".into(),
                no_proxy: "localhost,.corp".into(),
            }
        );
        assert_eq!(proxy_env_from(|_| None), ProxyEnv::default());
        // The real environment is readable (values depend on the host).
        let _ = proxy_env();
    }

    #[test]
    fn proxy_credentials_are_masked() {
        assert_eq!(
            mask_credentials("http://user:pass@proxy.example.com:3128/path"),
            "http://xxxxx:xxxxx@proxy.example.com:3128/path"
        );
        assert_eq!(mask_credentials("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(mask_credentials("proxy:3128"), "proxy:3128");
        assert_eq!(mask_credentials(""), "");
        let p = ProxyEnv {
            http_proxy: "http://u:p@h".into(),
            https_proxy: "https://u@h".into(),
            no_proxy: "a@b".into(),
        };
        assert_eq!(
            p.masked(),
            ProxyEnv {
                http_proxy: "http://xxxxx:xxxxx@h".into(),
                https_proxy: "https://xxxxx:xxxxx@h".into(),
                no_proxy: "a@b".into(),
            }
        );
    }

    #[test]
    fn host_port_grammar() {
        for ok in ["a", "a.b.c", "a-b.c:1", "[::1]", "[::1]:80", "1.2.3.4:5"] {
            assert!(is_host_port(ok), "{ok}");
        }
        for bad in [
            "", "a:", ":80", "-a", "a..b", "a_b", "[::1", "[]", "[::1]x", "a:b", "a:1:2",
        ] {
            assert!(!is_host_port(bad), "{bad}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Flags::command().debug_assert();
    }
}
