//! HostConfig's security and process options, in dockerd's semantics:
//! `CapAdd`/`CapDrop`, `SecurityOpt`, `Ulimits`, `Sysctls`, `Devices` (the
//! nodes; their cgroup rules are a resource), `GroupAdd`, `Dns`,
//! `DnsSearch`, `DnsOptions`, `ExtraHosts`, `Init`, `OomScoreAdj`.
//!
//! [`validate`] runs at create and refuses bad values with dockerd's
//! messages (400) before anything is stored; [`plan`] turns the stored
//! HostConfig into the runtime spec at start; [`StartOptions`] carries what
//! needs the image's files or the host's `/dev` to the blocking part of the
//! start, and renders `/etc/hosts` and `/etc/resolv.conf` (an `ExtraHosts`
//! address of `host-gateway` becomes the default bridge's gateway, given
//! by the caller, as dockerd does).
//!
//! Seccomp as dockerd: the default profile unless privileged or
//! `seccomp=unconfined`; `seccomp=builtin` names the default; any other
//! value is a profile's JSON text (the CLI reads the file), checked and
//! compiled at create so a bad one is a 400 (dockerd finds out at start).
//! The filter is compiled for the container's capabilities at start
//! ([`crate::runtime::seccomp`]).
//!
//! Not applied, and refused rather than ignored: AppArmor profiles (we
//! load none, so only `unconfined` is accepted, which is what every
//! container gets), SELinux labels.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::error::{EngineError, EngineResult};
use crate::runtime::cgroups::{resources, DeviceMapping};
use crate::runtime::process::{rlimit_resource, CAPABILITIES};
use crate::runtime::seccomp;
use crate::runtime::spec::{ContainerSpec, DeviceNode, Rlimit, DEFAULT_CAPABILITIES};

/// HostConfig keys this module handles (create.rs lets them through).
pub const HOST_KEYS: &[&str] = &[
    "CapAdd",
    "CapDrop",
    "SecurityOpt",
    "Ulimits",
    "Sysctls",
    "GroupAdd",
    "Dns",
    "DnsSearch",
    "DnsOptions",
    "ExtraHosts",
    "Init",
    "OomScoreAdj",
];

/// Decodes `null` as the default, like Go's zero values.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One `--ulimit`: Go's `units.Ulimit`; -1 means unlimited.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ulimit {
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    #[serde(deserialize_with = "null_default")]
    pub soft: i64,
    #[serde(deserialize_with = "null_default")]
    pub hard: i64,
}

/// The HostConfig fields read here.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Options {
    #[serde(deserialize_with = "null_default")]
    cap_add: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    cap_drop: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    security_opt: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    ulimits: Vec<Ulimit>,
    #[serde(deserialize_with = "null_default")]
    sysctls: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_default")]
    group_add: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    dns: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    dns_search: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    dns_options: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    extra_hosts: Vec<String>,
    init: Option<bool>,
    #[serde(deserialize_with = "null_default")]
    oom_score_adj: i64,
    #[serde(deserialize_with = "null_default")]
    privileged: bool,
    #[serde(deserialize_with = "null_default")]
    network_mode: String,
    #[serde(deserialize_with = "null_default")]
    devices: Vec<DeviceMapping>,
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidParameter(msg.into())
}

fn options(hc: &serde_json::Map<String, Value>) -> EngineResult<Options> {
    serde_json::from_value(Value::Object(hc.clone()))
        .map_err(|e| invalid(format!("invalid HostConfig: {e}")))
}

/// Checks the options at create, with dockerd's messages.
pub fn validate(hc: &serde_json::Map<String, Value>) -> EngineResult<()> {
    let o = options(hc)?;
    normalize_caps(&o.cap_add).map_err(|e| invalid(format!("invalid CapAdd: {e}")))?;
    normalize_caps(&o.cap_drop).map_err(|e| invalid(format!("invalid CapDrop: {e}")))?;
    let sec = parse_security_opts(&o.security_opt)?;
    if let Seccomp::Profile(json) = &sec.seccomp {
        // Compiled now for the capabilities it will run with, so every
        // error (bad JSON, unknown action, a rule libseccomp refuses)
        // comes before anything is stored; the start reuses the result.
        let caps = if o.privileged {
            CAPABILITIES.iter().map(|c| c.to_string()).collect()
        } else {
            tweak_caps(&o.cap_add, &o.cap_drop).map_err(invalid)?
        };
        seccomp::program_for(Some(json), &caps).map_err(invalid)?;
    }
    rlimits(&o.ulimits)?;
    let own_netns = o.network_mode != "host";
    for key in o.sysctls.keys() {
        check_sysctl(key, own_netns)?;
    }
    if o.sysctls.values().any(|v| v.contains('\0')) {
        return Err(invalid("invalid sysctl value: NUL byte"));
    }
    if !(-1000..=1000).contains(&o.oom_score_adj) {
        return Err(invalid(format!(
            "Invalid value {}, range for oom score adj is [-1000, 1000]",
            o.oom_score_adj
        )));
    }
    for g in &o.group_add {
        if g.is_empty() || g.contains([':', '\n', '\0']) {
            return Err(invalid(format!("invalid group in GroupAdd: {g:?}")));
        }
    }
    for d in &o.dns {
        if d.parse::<IpAddr>().is_err() {
            return Err(invalid(format!(
                "IP address is not correctly formatted: {d}"
            )));
        }
    }
    for s in o.dns_search.iter().chain(&o.dns_options) {
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == '\0') {
            return Err(invalid(format!(
                "invalid DNS search domain or option: {s:?}"
            )));
        }
    }
    for h in &o.extra_hosts {
        extra_host(h)?;
    }
    for d in &o.devices {
        if !d.path_in_container.is_empty() && !d.path_in_container.starts_with('/') {
            return Err(invalid(format!(
                "invalid device path in container: {:?} is not an absolute path",
                d.path_in_container
            )));
        }
    }
    // The host node must exist now (dockerd finds out at start; a 400 at
    // create leaves nothing behind).
    resources::device_mapping_rules(&o.devices).map_err(invalid)?;
    Ok(())
}

/// dockerd's `NormalizeLegacyCapabilities`: upper case, `CAP_` prefixed,
/// `ALL` kept as is; unknown names refused.
fn normalize_caps(caps: &[String]) -> Result<Vec<String>, String> {
    caps.iter()
        .map(|c| {
            let c = c.to_ascii_uppercase();
            if c == "ALL" {
                return Ok(c);
            }
            let full = if c.starts_with("CAP_") {
                c
            } else {
                format!("CAP_{c}")
            };
            if CAPABILITIES.contains(&full.as_str()) {
                Ok(full)
            } else {
                Err(format!("unknown capability: {full:?}"))
            }
        })
        .collect()
}

/// dockerd's `TweakCapabilities` over its default set (not privileged).
fn tweak_caps(add: &[String], drop: &[String]) -> Result<Vec<String>, String> {
    let add = normalize_caps(add)?;
    let drop = normalize_caps(drop)?;
    let all = "ALL".to_string();
    let mut caps: Vec<String> = if add.contains(&all) {
        CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    } else if drop.contains(&all) {
        add
    } else {
        let mut caps: Vec<String> = DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect();
        caps.extend(add);
        caps
    };
    let mut seen = BTreeSet::new();
    caps.retain(|c| seen.insert(c.clone()));
    Ok(caps)
}

/// What `SecurityOpt` asks for that we apply.
#[derive(Debug, Default, PartialEq, Eq)]
struct SecurityOpts {
    no_new_privileges: bool,
    seccomp: Seccomp,
}

/// The `seccomp=` choice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Seccomp {
    /// Our default profile (no option, or `seccomp=builtin`).
    #[default]
    Default,
    Unconfined,
    /// A profile's JSON text.
    Profile(String),
}

/// dockerd's `parseSecurityOpt`, refusing what we cannot honour by name.
fn parse_security_opts(opts: &[String]) -> EngineResult<SecurityOpts> {
    let unsupported = |opt: &str, why: &str| {
        invalid(format!(
            "SecurityOpt {opt:?} is not supported by mydocker yet: {why}"
        ))
    };
    let mut out = SecurityOpts::default();
    for opt in opts {
        if opt == "no-new-privileges" {
            out.no_new_privileges = true;
            continue;
        }
        if opt == "disable" {
            return Err(unsupported(opt, "no SELinux labels are applied"));
        }
        let split = if opt.contains('=') {
            opt.split_once('=')
        } else {
            opt.split_once(':')
        };
        let Some((k, v)) = split else {
            return Err(invalid(format!("invalid --security-opt 1: {opt:?}")));
        };
        match k {
            "no-new-privileges" => {
                out.no_new_privileges = parse_go_bool(v)
                    .ok_or_else(|| invalid(format!("invalid --security-opt 2: {opt:?}")))?;
            }
            // The last one wins, as in dockerd.
            "seccomp" => {
                out.seccomp = match v {
                    "unconfined" => Seccomp::Unconfined,
                    // dockerd reads an empty profile as the default one.
                    "builtin" | "" => Seccomp::Default,
                    json => Seccomp::Profile(json.to_string()),
                }
            }
            "apparmor" if v == "unconfined" => {}
            "apparmor" => {
                return Err(unsupported(
                    opt,
                    "no AppArmor profile is applied, only apparmor=unconfined is accepted",
                ))
            }
            "label" => return Err(unsupported(opt, "no SELinux labels are applied")),
            "writable-cgroups" if parse_go_bool(v) == Some(false) => {}
            "writable-cgroups" => return Err(unsupported(opt, "cgroups are read-only")),
            _ => return Err(invalid(format!("invalid --security-opt 2: {opt:?}"))),
        }
    }
    Ok(out)
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `Ulimits` as the runtime's rlimits (-1 is unlimited), checked like
/// go-units' parser.
fn rlimits(ulimits: &[Ulimit]) -> EngineResult<Vec<Rlimit>> {
    let mut out: Vec<Rlimit> = Vec::new();
    for u in ulimits {
        if rlimit_resource(&u.name).is_none() || u.name.starts_with("rlimit_") {
            return Err(invalid(format!("invalid ulimit type: {}", u.name)));
        }
        if u.hard != -1 {
            if u.soft == -1 {
                return Err(invalid(format!(
                    "ulimit soft limit must be less than or equal to hard limit: soft: -1 (unlimited), hard: {}",
                    u.hard
                )));
            }
            if u.soft > u.hard {
                return Err(invalid(format!(
                    "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                    u.soft, u.hard
                )));
            }
        }
        let value = |v: i64| -> EngineResult<u64> {
            match v {
                -1 => Ok(u64::MAX),
                v if v >= 0 => Ok(v as u64),
                v => Err(invalid(format!("invalid ulimit value {v} for {}", u.name))),
            }
        };
        let r = Rlimit {
            name: u.name.clone(),
            soft: value(u.soft)?,
            hard: value(u.hard)?,
        };
        // The last one of a name wins, as in the CLI.
        out.retain(|x| x.name != r.name);
        out.push(r);
    }
    Ok(out)
}

/// The IPC sysctls runc lets a container set in its own IPC namespace.
const IPC_SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Only namespaced sysctls, in runc's words (dockerd passes the refusal on
/// at start; we refuse at create).
fn check_sysctl(key: &str, own_netns: bool) -> EngineResult<()> {
    let well_formed =
        !key.is_empty() && !key.contains(['/', '\0']) && !key.split('.').any(str::is_empty);
    if well_formed && (IPC_SYSCTLS.contains(&key) || key.starts_with("fs.mqueue.")) {
        return Ok(());
    }
    if well_formed && key.starts_with("net.") {
        if own_netns {
            return Ok(());
        }
        return Err(invalid(format!(
            "sysctl {key:?} is not allowed in the hosts network namespace"
        )));
    }
    Err(invalid(format!(
        "sysctl {key:?} is not in a separate kernel namespace"
    )))
}

/// The `ExtraHosts` address that stands for the host's gateway address.
const HOST_GATEWAY: &str = "host-gateway";

/// One `ExtraHosts` entry as (name, address), like dockerd's
/// `ValidateExtraHost` (`name:ip` or `name=ip`).
fn extra_host(entry: &str) -> EngineResult<(String, String)> {
    let split = if entry.contains('=') {
        entry.split_once('=')
    } else {
        entry.split_once(':')
    };
    let Some((name, addr)) = split.filter(|(n, _)| !n.is_empty() && !n.contains(':')) else {
        return Err(invalid(format!("bad format for add-host: {entry:?}")));
    };
    if addr == HOST_GATEWAY {
        return Ok((name.to_string(), addr.to_string()));
    }
    let bare = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    if bare.parse::<IpAddr>().is_err() {
        return Err(invalid(format!("invalid IP address in add-host: {bare:?}")));
    }
    Ok((name.to_string(), bare.to_string()))
}

/// What the blocking part of a start does with these options.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    group_add: Vec<String>,
    devices: Vec<DeviceMapping>,
    privileged: bool,
    dns: Vec<String>,
    dns_search: Vec<String>,
    dns_options: Vec<String>,
    extra_hosts: Vec<(String, String)>,
    /// The profile to compile at start (`None`: no filter).
    seccomp: Option<SeccompSource>,
}

/// Which profile a container's filter comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SeccompSource {
    Default,
    Json(String),
}

/// Puts the stored options into `spec` (capabilities, no_new_privs,
/// rlimits, sysctls, OOM score, init) and returns the rest for
/// [`StartOptions::apply`]. Call after `spec.privileged` is set.
pub fn plan(hc: &Value, spec: &mut ContainerSpec) -> EngineResult<StartOptions> {
    let map = match hc {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    let o = options(&map)?;
    if !spec.privileged {
        spec.process.capabilities =
            tweak_caps(&o.cap_add, &o.cap_drop).map_err(EngineError::InvalidParameter)?;
    }
    let sec = parse_security_opts(&o.security_opt)?;
    spec.process.no_new_privileges = sec.no_new_privileges;
    // dockerd: a privileged container has no filter.
    let seccomp = match sec.seccomp {
        _ if spec.privileged => None,
        Seccomp::Unconfined => None,
        Seccomp::Default if !seccomp::supported() => {
            tracing::warn!(
                "seccomp is not enabled in your kernel, running container without default profile"
            );
            None
        }
        Seccomp::Profile(_) if !seccomp::supported() => {
            return Err(invalid(
                "seccomp is not enabled in your kernel, cannot run a custom seccomp profile",
            ))
        }
        Seccomp::Default => Some(SeccompSource::Default),
        Seccomp::Profile(json) => Some(SeccompSource::Json(json)),
    };
    spec.process.rlimits = rlimits(&o.ulimits)?;
    spec.sysctls = o.sysctls.clone();
    if o.oom_score_adj != 0 {
        spec.process.oom_score_adj = i32::try_from(o.oom_score_adj).ok();
    }
    spec.process.init = o.init == Some(true);
    let extra_hosts = o
        .extra_hosts
        .iter()
        .map(|h| extra_host(h))
        .collect::<EngineResult<Vec<_>>>()?;
    Ok(StartOptions {
        group_add: o.group_add,
        devices: o.devices,
        privileged: o.privileged,
        dns: o.dns,
        dns_search: o.dns_search,
        dns_options: o.dns_options,
        extra_hosts,
        seccomp,
    })
}

impl StartOptions {
    /// Whether an `ExtraHosts` entry names `host-gateway`.
    pub fn wants_host_gateway(&self) -> bool {
        self.extra_hosts.iter().any(|(_, a)| a == HOST_GATEWAY)
    }

    /// Puts `gateway` where `ExtraHosts` says `host-gateway`; without one,
    /// dockerd's error.
    pub fn resolve_host_gateway(&mut self, gateway: Option<IpAddr>) -> EngineResult<()> {
        for (_, addr) in self
            .extra_hosts
            .iter_mut()
            .filter(|(_, a)| a == HOST_GATEWAY)
        {
            let Some(ip) = gateway else {
                return Err(EngineError::InvalidParameter(
                    "unable to derive the IP value for host-gateway".into(),
                ));
            };
            *addr = ip.to_string();
        }
        Ok(())
    }

    /// The parts that read files or take time: supplementary groups from
    /// the image's `/etc/group` (the user's memberships, then
    /// `GroupAdd`), the device nodes (`Devices`; every host device when
    /// privileged), and the seccomp filter for the container's
    /// capabilities (compiled once per profile and capability set).
    /// Errors are in dockerd's words.
    pub fn apply(
        &self,
        spec: &mut ContainerSpec,
        layers: &[PathBuf],
        user: &str,
    ) -> Result<(), String> {
        let group = super::start::read_layered(layers, "group");
        let passwd = super::start::read_layered(layers, "passwd");
        let mut gids: BTreeSet<u32> = member_gids(&passwd, &group, user, spec.process.uid)
            .into_iter()
            .collect();
        for g in &self.group_add {
            gids.insert(group_gid(&group, g)?);
        }
        spec.process.additional_gids = gids.into_iter().collect();
        let mut nodes = Vec::new();
        if self.privileged {
            walk_devices(Path::new("/dev"), Path::new("/dev"), true, &mut nodes, 0);
        }
        for d in &self.devices {
            let inside = if d.path_in_container.is_empty() {
                &d.path_on_host
            } else {
                &d.path_in_container
            };
            let before = nodes.len();
            walk_devices(
                Path::new(&d.path_on_host),
                Path::new(inside),
                false,
                &mut nodes,
                0,
            );
            if nodes.len() == before {
                return Err(format!(
                    "error gathering device information while adding custom device \"{}\": not a device node",
                    d.path_on_host
                ));
            }
        }
        for n in &nodes {
            if let Some(slot) = spec.devices.iter_mut().find(|d| d.path == n.path) {
                *slot = n.clone();
            } else {
                spec.devices.push(n.clone());
            }
        }
        spec.process.seccomp = match &self.seccomp {
            None => None,
            Some(source) => {
                let json = match source {
                    SeccompSource::Default => None,
                    SeccompSource::Json(j) => Some(j.as_str()),
                };
                seccomp::program_for(json, &spec.process.capabilities)?.map(|p| (*p).clone())
            }
        };
        Ok(())
    }

    /// The container's `/etc/hosts`: the standard entries, then
    /// `ExtraHosts`.
    pub fn hosts_file(&self) -> String {
        let mut s = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        );
        for (name, addr) in &self.extra_hosts {
            s.push_str(&format!("{addr}\t{name}\n"));
        }
        s
    }

    /// The container's `/etc/resolv.conf` from the host's: loopback
    /// resolvers dropped (they cannot answer from the container's network
    /// namespace, dockerd does the same), then `Dns`, `DnsSearch` and
    /// `DnsOptions` replacing the host's nameservers, search list and
    /// options.
    pub fn resolv_conf(&self, host: &str) -> String {
        if self.dns.is_empty() && self.dns_search.is_empty() && self.dns_options.is_empty() {
            let kept: Vec<&str> = host.lines().filter(|l| !loopback_nameserver(l)).collect();
            return kept.join("\n") + "\n";
        }
        let r = self.resolver(host);
        render_resolv_conf(&r.servers, &r.search, &r.options)
    }

    /// For a container on a user-defined network: only the embedded DNS
    /// server (which forwards to [`Resolver::servers`]), the search list,
    /// and `ndots:0` first, as dockerd writes it.
    pub fn resolv_conf_embedded(&self, host: &str) -> String {
        let r = self.resolver(host);
        let mut opts = vec!["ndots:0".to_string()];
        opts.extend(r.options.into_iter().filter(|o| !o.starts_with("ndots:")));
        render_resolv_conf(&[EMBEDDED_DNS.to_string()], &r.search, &opts)
    }

    /// The resolver settings: the host's, each part replaced by the
    /// container's own when given.
    pub fn resolver(&self, host: &str) -> Resolver {
        let mut r = Resolver::default();
        for l in host.lines().filter(|l| !loopback_nameserver(l)) {
            let mut w = l.split_whitespace();
            match w.next() {
                Some("nameserver") => r.servers.extend(w.next().map(str::to_string)),
                Some("search") | Some("domain") => {
                    r.search = w.map(str::to_string).collect();
                }
                Some("options") => r.options.extend(w.map(str::to_string)),
                _ => {}
            }
        }
        if !self.dns.is_empty() {
            r.servers = self.dns.clone();
        }
        if !self.dns_search.is_empty() {
            // dockerd: a lone "." means no search list at all.
            r.search = if self.dns_search == ["."] {
                Vec::new()
            } else {
                self.dns_search.clone()
            };
        }
        if !self.dns_options.is_empty() {
            r.options = self.dns_options.clone();
        }
        r
    }
}

/// The embedded DNS server's address inside each container.
pub const EMBEDDED_DNS: &str = "127.0.0.11";

/// Nameservers, search list and options of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolver {
    pub servers: Vec<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// The container's DNS settings from its stored `HostConfig` (for the
/// embedded server, e.g. when the daemon starts again).
pub fn resolver_of(hc: &Value, host: &str) -> Resolver {
    let map = match hc {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    let o = options(&map).unwrap_or_default();
    StartOptions {
        dns: o.dns,
        dns_search: o.dns_search,
        dns_options: o.dns_options,
        ..Default::default()
    }
    .resolver(host)
}

fn loopback_nameserver(l: &str) -> bool {
    let mut w = l.split_whitespace();
    w.next() == Some("nameserver")
        && w.next()
            .is_some_and(|a| a.starts_with("127.") || a == "::1")
}

fn render_resolv_conf(servers: &[String], search: &[String], opts: &[String]) -> String {
    let mut s = String::new();
    for ns in servers {
        s.push_str(&format!("nameserver {ns}\n"));
    }
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !opts.is_empty() {
        s.push_str(&format!("options {}\n", opts.join(" ")));
    }
    s
}

/// The gids of the groups that list the user as a member, as runc adds
/// them when `User` names no group; none for an explicit `user:group`.
fn member_gids(passwd: &str, group: &str, user: &str, uid: u32) -> Vec<u32> {
    if user.contains(':') {
        return Vec::new();
    }
    let name = if user.is_empty() { "0" } else { user };
    let name = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && (f[0] == name || f[2] == uid.to_string()))
        .map(|f| f[0].to_string());
    let Some(name) = name else {
        return Vec::new();
    };
    group
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let members = f.get(3)?;
            members
                .split(',')
                .any(|m| m.trim() == name)
                .then(|| f[2].parse().ok())?
        })
        .collect()
}

/// A `GroupAdd` entry: a group name or gid from the image's `/etc/group`,
/// else a number as is (runc's `GetAdditionalGroups`).
fn group_gid(group: &str, entry: &str) -> Result<u32, String> {
    let found = group.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && (f[0] == entry || f[2] == entry)).then(|| f[2].parse::<u32>().ok())?
    });
    match found.or_else(|| entry.parse().ok()) {
        Some(g) => Ok(g),
        None => Err(format!(
            "Unable to find group {entry}: no matching entries in group file"
        )),
    }
}

/// Device nodes at `host` (or below it, for a directory), as nodes at
/// `inside`. `skip_special` leaves out what runc leaves out of a
/// privileged container's `/dev` walk (its own mounts and the console).
fn walk_devices(
    host: &Path,
    inside: &Path,
    skip_special: bool,
    out: &mut Vec<DeviceNode>,
    depth: usize,
) {
    let Ok(md) = std::fs::symlink_metadata(host) else {
        return;
    };
    let ft = md.file_type();
    if ft.is_dir() && depth < 8 {
        let Ok(rd) = std::fs::read_dir(host) else {
            return;
        };
        let mut entries: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
        entries.sort();
        for name in entries {
            let n = name.to_string_lossy();
            if skip_special
                && depth == 0
                && matches!(
                    n.as_ref(),
                    "pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev" | "console"
                )
            {
                continue;
            }
            walk_devices(
                &host.join(&name),
                &inside.join(&name),
                skip_special,
                out,
                depth + 1,
            );
        }
    } else if ft.is_char_device() || ft.is_block_device() {
        let rdev = md.rdev();
        out.push(DeviceNode {
            path: inside.to_string_lossy().into_owned(),
            kind: if ft.is_char_device() { 'c' } else { 'b' },
            major: nix::sys::stat::major(rdev),
            minor: nix::sys::stat::minor(rdev),
            mode: md.mode() & 0o777,
            uid: md.uid(),
            gid: md.gid(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(json: &str) -> serde_json::Map<String, Value> {
        match serde_json::from_str(json).expect("json") {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn err(json: &str) -> String {
        validate(&hc(json)).expect_err(json).to_string()
    }

    #[test]
    fn capabilities() {
        assert_eq!(
            err(r#"{"CapAdd":["bogus"]}"#),
            r#"invalid CapAdd: unknown capability: "CAP_BOGUS""#
        );
        assert_eq!(
            err(r#"{"CapDrop":["CAP_NOPE"]}"#),
            r#"invalid CapDrop: unknown capability: "CAP_NOPE""#
        );
        validate(&hc(
            r#"{"CapAdd":["net_admin","CAP_SYS_TIME","all"],"CapDrop":null}"#,
        ))
        .expect("valid");
        let caps = tweak_caps(&["sys_admin".into()], &["chown".into(), "Net_Raw".into()]).unwrap();
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert!(!caps.contains(&"CAP_NET_RAW".to_string()));
        assert_eq!(caps.len(), 13);
        assert_eq!(
            tweak_caps(&["CHOWN".into()], &["ALL".into()]).unwrap(),
            vec!["CAP_CHOWN"]
        );
        let all = tweak_caps(&["ALL".into()], &["MKNOD".into()]).unwrap();
        assert_eq!(all.len(), CAPABILITIES.len() - 1);
        // Adding a default one does not list it twice.
        assert_eq!(tweak_caps(&["KILL".into()], &[]).unwrap().len(), 14);
    }

    #[test]
    fn security_opts() {
        let p =
            |o: &[&str]| parse_security_opts(&o.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(p(&["no-new-privileges"]).unwrap().no_new_privileges);
        assert!(p(&["no-new-privileges:true"]).unwrap().no_new_privileges);
        assert!(p(&["no-new-privileges=true"]).unwrap().no_new_privileges);
        assert!(
            !p(&["no-new-privileges", "no-new-privileges=false"])
                .unwrap()
                .no_new_privileges
        );
        let o = p(&[
            "seccomp=unconfined",
            "apparmor=unconfined",
            "seccomp:unconfined",
        ])
        .expect("ok");
        assert_eq!(o.seccomp, Seccomp::Unconfined);
        assert_eq!(p(&[]).unwrap().seccomp, Seccomp::Default);
        assert_eq!(
            p(&["seccomp=unconfined", "seccomp=builtin"])
                .unwrap()
                .seccomp,
            Seccomp::Default
        );
        assert_eq!(
            p(&["seccomp=unconfined", "seccomp="]).unwrap().seccomp,
            Seccomp::Default
        );
        let json = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}"#;
        assert_eq!(
            p(&[&format!("seccomp={json}")]).unwrap().seccomp,
            Seccomp::Profile(json.into())
        );
        assert_eq!(
            p(&["no-new-privileges=maybe"]).unwrap_err().to_string(),
            r#"invalid --security-opt 2: "no-new-privileges=maybe""#
        );
        assert_eq!(
            p(&["bogus"]).unwrap_err().to_string(),
            r#"invalid --security-opt 1: "bogus""#
        );
        assert_eq!(
            p(&["bogus=1"]).unwrap_err().to_string(),
            r#"invalid --security-opt 2: "bogus=1""#
        );
        for o in ["label=level:s0", "apparmor=docker-default"] {
            let e = p(&[o]).unwrap_err().to_string();
            assert!(e.contains("not supported by mydocker"), "{o}: {e}");
        }
    }

    #[test]
    fn seccomp_choices() {
        // A bad profile is a 400 at create, naming what is wrong.
        assert!(
            err(r#"{"SecurityOpt":["seccomp={not json"]}"#)
                .starts_with("Decoding seccomp profile failed: "),
            "bad JSON"
        );
        assert_eq!(
            err(r#"{"SecurityOpt":["seccomp={\"defaultAction\":\"SCMP_ACT_NOPE\"}"]}"#),
            r#"invalid seccomp profile: defaultAction: unknown action "SCMP_ACT_NOPE""#
        );
        validate(&hc(
            r#"{"SecurityOpt":["seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[\"mkdir\"],\"action\":\"SCMP_ACT_ERRNO\"}]}"]}"#,
        ))
        .expect("a good profile");
        validate(&hc(r#"{"SecurityOpt":["seccomp=builtin"]}"#)).expect("builtin");

        let filter_of = |hc: Value, privileged: bool| {
            let mut spec = ContainerSpec {
                privileged,
                ..Default::default()
            };
            let opts = plan(&hc, &mut spec).expect("plans");
            opts.apply(&mut spec, &[], "").expect("applies");
            spec.process.seccomp
        };
        let default = filter_of(serde_json::json!({}), false).expect("the default profile");
        default.validate().expect("a valid program");
        assert_eq!(
            filter_of(
                serde_json::json!({"SecurityOpt": ["seccomp=builtin"]}),
                false
            ),
            Some(default.clone())
        );
        // More capabilities, other rules.
        let admin = filter_of(serde_json::json!({"CapAdd": ["SYS_ADMIN"]}), false);
        assert_ne!(admin, Some(default.clone()));
        assert_eq!(
            filter_of(
                serde_json::json!({"SecurityOpt": ["seccomp=unconfined"]}),
                false
            ),
            None
        );
        assert_eq!(filter_of(serde_json::json!({}), true), None, "privileged");
        let custom = filter_of(
            serde_json::json!({"SecurityOpt": [r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#]}),
            false,
        )
        .expect("a custom filter");
        assert!(custom.len() < default.len());
    }

    #[test]
    fn ulimits() {
        assert_eq!(
            err(r#"{"Ulimits":[{"Name":"nofile","Soft":300,"Hard":200}]}"#),
            "ulimit soft limit must be less than or equal to hard limit: 300 > 200"
        );
        assert_eq!(
            err(r#"{"Ulimits":[{"Name":"bogus","Soft":1,"Hard":2}]}"#),
            "invalid ulimit type: bogus"
        );
        let r = rlimits(&[
            Ulimit {
                name: "nofile".into(),
                soft: 100,
                hard: 200,
            },
            Ulimit {
                name: "core".into(),
                soft: -1,
                hard: -1,
            },
            Ulimit {
                name: "nofile".into(),
                soft: 10,
                hard: 20,
            },
        ])
        .unwrap();
        assert_eq!(
            r,
            vec![
                Rlimit {
                    name: "core".into(),
                    soft: u64::MAX,
                    hard: u64::MAX
                },
                Rlimit {
                    name: "nofile".into(),
                    soft: 10,
                    hard: 20
                },
            ]
        );
    }

    #[test]
    fn sysctls() {
        validate(&hc(
            r#"{"Sysctls":{"kernel.shmmax":"1","fs.mqueue.msg_max":"2","net.ipv4.ip_forward":"1"}}"#,
        ))
        .expect("namespaced");
        assert_eq!(
            err(r#"{"Sysctls":{"kernel.hostname":"x"}}"#),
            r#"sysctl "kernel.hostname" is not in a separate kernel namespace"#
        );
        assert_eq!(
            err(r#"{"Sysctls":{"vm.max_map_count":"262144"}}"#),
            r#"sysctl "vm.max_map_count" is not in a separate kernel namespace"#
        );
        assert_eq!(
            err(r#"{"NetworkMode":"host","Sysctls":{"net.core.somaxconn":"1"}}"#),
            r#"sysctl "net.core.somaxconn" is not allowed in the hosts network namespace"#
        );
        assert!(err(r#"{"Sysctls":{"net..x/../y":"1"}}"#).contains("not in a separate"));
        assert!(err(r#"{"Sysctls":{"net.x":"a\u0000"}}"#).contains("NUL"));
    }

    #[test]
    fn other_values() {
        assert_eq!(
            err(r#"{"OomScoreAdj":1001}"#),
            "Invalid value 1001, range for oom score adj is [-1000, 1000]"
        );
        validate(&hc(
            r#"{"OomScoreAdj":-1000,"Init":true,"GroupAdd":["wheel","42"]}"#,
        ))
        .expect("valid");
        assert_eq!(
            err(r#"{"Dns":["1.2.3"]}"#),
            "IP address is not correctly formatted: 1.2.3"
        );
        assert_eq!(
            err(r#"{"ExtraHosts":["nocolon"]}"#),
            r#"bad format for add-host: "nocolon""#
        );
        assert_eq!(
            err(r#"{"ExtraHosts":["h:1.2.3.x"]}"#),
            r#"invalid IP address in add-host: "1.2.3.x""#
        );
        assert_eq!(
            extra_host("h:host-gateway").unwrap(),
            ("h".into(), "host-gateway".into())
        );
        assert_eq!(extra_host("h=::1").unwrap(), ("h".into(), "::1".into()));
        assert_eq!(
            extra_host("h:[fe80::1]").unwrap(),
            ("h".into(), "fe80::1".into())
        );
        assert!(err(r#"{"Devices":[{"PathOnHost":"/dev/no-such","PathInContainer":"/dev/x","CgroupPermissions":"rwm"}]}"#)
            .contains("error gathering device information while adding custom device \"/dev/no-such\""));
        assert!(err(r#"{"Devices":[{"PathOnHost":"/dev/null","PathInContainer":"rel","CgroupPermissions":"rwm"}]}"#)
            .contains("not an absolute path"));
        assert!(err(r#"{"CapAdd":"x"}"#).starts_with("invalid HostConfig"));
    }

    #[test]
    fn plan_fills_the_spec() {
        let hc: Value = serde_json::from_str(
            r#"{"CapDrop":["ALL"],"CapAdd":["chown"],"SecurityOpt":["no-new-privileges"],
            "Ulimits":[{"Name":"nofile","Soft":100,"Hard":200}],"Sysctls":{"kernel.shmmax":"99"},
            "OomScoreAdj":300,"Init":true,"ExtraHosts":["db:10.0.0.2"],"Dns":["9.9.9.9"]}"#,
        )
        .unwrap();
        let mut spec = ContainerSpec::default();
        let opts = plan(&hc, &mut spec).expect("plans");
        assert_eq!(spec.process.capabilities, vec!["CAP_CHOWN"]);
        assert!(spec.process.no_new_privileges && spec.process.init);
        assert_eq!(spec.process.oom_score_adj, Some(300));
        assert_eq!(spec.process.rlimits[0].soft, 100);
        assert_eq!(spec.sysctls["kernel.shmmax"], "99");
        assert!(opts
            .hosts_file()
            .ends_with("ff02::2\tip6-allrouters\n10.0.0.2\tdb\n"));
        assert_eq!(
            opts.resolv_conf("nameserver 127.0.0.53\nsearch lan\noptions edns0\n"),
            "nameserver 9.9.9.9\nsearch lan\noptions edns0\n"
        );
        // Privileged keeps every capability.
        let mut spec = ContainerSpec {
            privileged: true,
            ..Default::default()
        };
        spec.process.capabilities = vec!["CAP_X".into()];
        plan(&hc, &mut spec).unwrap();
        assert_eq!(spec.process.capabilities, vec!["CAP_X"]);
        // Nothing set: the defaults stay.
        let mut spec = ContainerSpec::default();
        let opts = plan(&serde_json::json!({}), &mut spec).unwrap();
        assert_eq!(spec.process.capabilities.len(), 14);
        assert!(!spec.process.init && spec.process.oom_score_adj.is_none());
        assert_eq!(
            opts.resolv_conf("nameserver 127.0.0.1\nnameserver 1.1.1.1\n"),
            "nameserver 1.1.1.1\n"
        );
        let opts = StartOptions {
            dns_search: vec![".".into()],
            ..Default::default()
        };
        assert_eq!(
            opts.resolv_conf("nameserver 1.1.1.1\nsearch a b\n"),
            "nameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn host_gateway_becomes_the_given_address() {
        let hc = serde_json::json!({"ExtraHosts": ["gw:host-gateway", "db:10.0.0.2"]});
        let mut opts = plan(&hc, &mut ContainerSpec::default()).unwrap();
        assert!(opts.wants_host_gateway());
        let mut none = opts.clone();
        assert_eq!(
            none.resolve_host_gateway(None).unwrap_err().to_string(),
            "unable to derive the IP value for host-gateway"
        );
        opts.resolve_host_gateway(Some("172.30.7.1".parse().unwrap()))
            .unwrap();
        assert!(!opts.wants_host_gateway());
        assert!(opts
            .hosts_file()
            .ends_with("172.30.7.1\tgw\n10.0.0.2\tdb\n"));
    }

    #[test]
    fn groups_and_devices() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            etc.join("group"),
            "root:x:0:\nwheel:x:10:root\nstaff:x:50:www,root\naudio:x:29:\n",
        )
        .unwrap();
        let layers = vec![dir.path().to_path_buf()];
        let opts = StartOptions {
            group_add: vec!["audio".into(), "1234".into(), "50".into()],
            devices: vec![DeviceMapping {
                path_on_host: "/dev/null".into(),
                path_in_container: "/dev/mynull".into(),
                cgroup_permissions: "rwm".into(),
            }],
            ..Default::default()
        };
        let mut spec = ContainerSpec::default();
        opts.apply(&mut spec, &layers, "").unwrap();
        assert_eq!(spec.process.additional_gids, vec![10, 29, 50, 1234]);
        assert_eq!(spec.devices.len(), 1);
        let d = &spec.devices[0];
        assert_eq!(
            (d.path.as_str(), d.kind, d.major, d.minor),
            ("/dev/mynull", 'c', 1, 3)
        );
        let mut spec = ContainerSpec::default();
        spec.process.uid = 33;
        StartOptions::default()
            .apply(&mut spec, &layers, "33")
            .unwrap();
        assert_eq!(spec.process.additional_gids, vec![50]);
        let mut spec = ContainerSpec::default();
        StartOptions::default()
            .apply(&mut spec, &layers, "www:audio")
            .unwrap();
        assert!(spec.process.additional_gids.is_empty());
        let bad = StartOptions {
            group_add: vec!["nogroup".into()],
            ..Default::default()
        };
        assert_eq!(
            bad.apply(&mut ContainerSpec::default(), &layers, "")
                .unwrap_err(),
            "Unable to find group nogroup: no matching entries in group file"
        );
        let notdev = StartOptions {
            devices: vec![DeviceMapping {
                path_on_host: etc.join("group").display().to_string(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(notdev
            .apply(&mut ContainerSpec::default(), &layers, "")
            .unwrap_err()
            .contains("not a device node"));
        // Privileged: the host's devices, without the console or /dev/pts.
        let mut spec = ContainerSpec::default();
        StartOptions {
            privileged: true,
            ..Default::default()
        }
        .apply(&mut spec, &layers, "")
        .unwrap();
        assert!(spec.devices.iter().any(|d| d.path == "/dev/null"));
        assert!(!spec
            .devices
            .iter()
            .any(|d| d.path == "/dev/console" || d.path.starts_with("/dev/pts/")));
    }
}
