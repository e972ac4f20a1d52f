//! Docker's seccomp profile format, read and resolved for one container
//! as dockerd does it (moby's `setupSeccomp`) with runc's checks: the
//! architectures come from `archMap` (the host's entry and its
//! sub-architectures) or `architectures`; a syscall rule applies only if
//! its `includes` hold and its `excludes` do not (`caps` against the
//! container's capabilities, `arches` against the host's, `minKernel`
//! against the running kernel). The result is a [`Rules`] list of plain
//! (names, action, argument checks) for [`super::compile`].

use serde::{Deserialize, Deserializer};

/// A profile as the JSON says it; unknown keys are ignored (as Go does).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Profile {
    #[serde(deserialize_with = "null_default")]
    default_action: String,
    default_errno_ret: Option<u32>,
    #[serde(deserialize_with = "null_default")]
    architectures: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    arch_map: Vec<ArchMapEntry>,
    #[serde(deserialize_with = "null_default")]
    flags: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    listener_path: String,
    #[serde(deserialize_with = "null_default")]
    syscalls: Vec<SyscallEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ArchMapEntry {
    #[serde(rename = "architecture", deserialize_with = "null_default")]
    arch: String,
    #[serde(rename = "subArchitectures", deserialize_with = "null_default")]
    sub_arches: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct SyscallEntry {
    #[serde(deserialize_with = "null_default")]
    name: String,
    #[serde(deserialize_with = "null_default")]
    names: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    action: String,
    errno_ret: Option<u32>,
    #[serde(deserialize_with = "null_default")]
    args: Vec<ArgEntry>,
    #[serde(deserialize_with = "null_default")]
    includes: Filter,
    #[serde(deserialize_with = "null_default")]
    excludes: Filter,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ArgEntry {
    index: u32,
    value: u64,
    value_two: u64,
    #[serde(deserialize_with = "null_default")]
    op: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Filter {
    #[serde(deserialize_with = "null_default")]
    caps: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    arches: Vec<String>,
    #[serde(deserialize_with = "kernel_version")]
    min_kernel: Option<(u32, u32)>,
}

/// Decodes `null` as the default, like Go's zero values.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `minKernel` is `"<kernel>.<major>"`, as in moby's `KernelVersion`.
fn kernel_version<'de, D: Deserializer<'de>>(d: D) -> Result<Option<(u32, u32)>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    if s.is_empty() {
        return Ok(None);
    }
    parse_kernel(&s).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "invalid kernel version: {s}, expected \"<kernel>.<major>\""
        ))
    })
}

fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// What a rule (or the default) does to a matching syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    KillThread,
    KillProcess,
    Trap,
    Errno(u32),
    Trace(u32),
    Log,
    Allow,
}

/// Argument comparisons (`SCMP_CMP_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    /// `(arg & value) == value_two`.
    MaskedEq,
}

/// One argument check of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgCheck {
    pub index: u32,
    pub value: u64,
    pub value_two: u64,
    pub op: Op,
}

/// One resolved rule: these syscalls, when every check holds, get
/// `action`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub names: Vec<String>,
    pub action: Action,
    pub args: Vec<ArgCheck>,
}

/// A profile resolved for one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    pub default_action: Action,
    /// `SCMP_ARCH_*` names; empty: the native one only.
    pub architectures: Vec<String>,
    /// `SECCOMP_FILTER_FLAG_*` bits.
    pub flags: u32,
    pub syscalls: Vec<Rule>,
}

/// What rules are resolved against.
#[derive(Clone, Debug)]
pub struct Target {
    /// The architecture in the profile's words (`amd64`, `arm64`, ...).
    pub arch: String,
    /// The same as libseccomp names it (`SCMP_ARCH_X86_64`), for `archMap`.
    pub scmp_arch: String,
    /// The container's capabilities (`CAP_*`).
    pub caps: Vec<String>,
    /// The running kernel's version; unknown: every `minKernel` fails.
    pub kernel: Option<(u32, u32)>,
}

impl Target {
    /// This host, for a container with `caps`.
    pub fn host(caps: &[String]) -> Target {
        let (arch, scmp) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
            "x86" => ("x86", "SCMP_ARCH_X86"),
            "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
            "arm" => ("arm", "SCMP_ARCH_ARM"),
            "s390x" => ("s390x", "SCMP_ARCH_S390X"),
            "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", "SCMP_ARCH_PPC64LE"),
            "powerpc64" => ("ppc64", "SCMP_ARCH_PPC64"),
            other => (other, ""),
        };
        let kernel = nix::sys::utsname::uname()
            .ok()
            .and_then(|u| parse_kernel(&u.release().to_string_lossy()));
        Target {
            arch: arch.to_string(),
            scmp_arch: scmp.to_string(),
            caps: caps.to_vec(),
            kernel,
        }
    }

    fn has_cap(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c == cap)
    }

    fn kernel_at_least(&self, v: (u32, u32)) -> bool {
        self.kernel.is_some_and(|k| k >= v)
    }
}

fn bad(msg: impl std::fmt::Display) -> String {
    format!("invalid seccomp profile: {msg}")
}

/// `SCMP_ACT_*` with its errno (EPERM when none is given, as runc).
fn action(name: &str, errno_ret: Option<u32>, what: &str) -> Result<Action, String> {
    let errno = errno_ret.unwrap_or(libc::EPERM as u32);
    let a = match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_ERRNO" => Action::Errno(errno),
        "SCMP_ACT_TRACE" => Action::Trace(errno),
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_NOTIFY" => {
            return Err(bad(format!(
                "{what}: SCMP_ACT_NOTIFY is not supported by mydocker (no seccomp agent)"
            )))
        }
        "" => return Err(bad(format!("{what}: no action given"))),
        other => return Err(bad(format!("{what}: unknown action {other:?}"))),
    };
    if errno_ret.is_some() && !matches!(a, Action::Errno(_) | Action::Trace(_)) {
        return Err(bad(format!(
            "{what}: errnoRet is only supported for SCMP_ACT_ERRNO and SCMP_ACT_TRACE"
        )));
    }
    if errno > 4095 {
        return Err(bad(format!("{what}: errno {errno} is out of range")));
    }
    Ok(a)
}

fn op(name: &str, what: &str) -> Result<Op, String> {
    Ok(match name {
        "SCMP_CMP_NE" => Op::Ne,
        "SCMP_CMP_LT" => Op::Lt,
        "SCMP_CMP_LE" => Op::Le,
        "SCMP_CMP_EQ" => Op::Eq,
        "SCMP_CMP_GE" => Op::Ge,
        "SCMP_CMP_GT" => Op::Gt,
        "SCMP_CMP_MASKED_EQ" => Op::MaskedEq,
        other => return Err(bad(format!("{what}: unknown argument operator {other:?}"))),
    })
}

/// `SECCOMP_FILTER_FLAG_*` names runc passes on (TSYNC is moot: the
/// process loading the filter has one thread).
fn flag(name: &str) -> Result<u32, String> {
    match name {
        "SECCOMP_FILTER_FLAG_TSYNC" => Ok(0),
        "SECCOMP_FILTER_FLAG_LOG" => Ok(libc::SECCOMP_FILTER_FLAG_LOG as u32),
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => Ok(libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32),
        other => Err(bad(format!("flag {other:?} is not supported"))),
    }
}

impl Profile {
    /// Decodes a profile, in dockerd's words when the JSON is bad.
    pub fn parse(text: &str) -> Result<Profile, String> {
        serde_json::from_str(text).map_err(|e| format!("Decoding seccomp profile failed: {e}"))
    }

    /// The rules for `target`; `None` when the profile asks for no filter
    /// at all (no `defaultAction` and no `syscalls`, as dockerd reads it).
    pub fn resolve(&self, target: &Target) -> Result<Option<Rules>, String> {
        if self.default_action.is_empty() && self.syscalls.is_empty() {
            return Ok(None);
        }
        if !self.architectures.is_empty() && !self.arch_map.is_empty() {
            return Err("'architectures' and 'archMap' were specified in the seccomp profile, use either 'architectures' or 'archMap'".into());
        }
        if !self.listener_path.is_empty() {
            return Err(bad(
                "listenerPath is not supported by mydocker (no seccomp agent)",
            ));
        }
        let default_action = action(
            &self.default_action,
            self.default_errno_ret,
            "defaultAction",
        )?;
        let mut architectures = self.architectures.clone();
        if let Some(m) = self.arch_map.iter().find(|m| m.arch == target.scmp_arch) {
            architectures.push(m.arch.clone());
            architectures.extend(m.sub_arches.iter().cloned());
        }
        let mut flags = 0;
        for f in &self.flags {
            flags |= flag(f)?;
        }
        let mut syscalls = Vec::new();
        for (i, s) in self.syscalls.iter().enumerate() {
            let what = format!("syscalls[{i}]");
            // Checked for every entry, applicable or not: a profile is
            // either well-formed or refused.
            if !s.name.is_empty() && !s.names.is_empty() {
                return Err("'name' and 'names' were specified in the seccomp profile, use either 'name' or 'names'".into());
            }
            let action = action(&s.action, s.errno_ret, &what)?;
            let mut args = Vec::new();
            for a in &s.args {
                if a.index >= 6 {
                    return Err(bad(format!(
                        "{what}: argument index {} is out of range (0 to 5)",
                        a.index
                    )));
                }
                args.push(ArgCheck {
                    index: a.index,
                    value: a.value,
                    value_two: a.value_two,
                    op: op(&a.op, &what)?,
                });
            }
            if !s.applies_to(target) {
                continue;
            }
            let names = if s.name.is_empty() {
                s.names.clone()
            } else {
                vec![s.name.clone()]
            };
            if names.is_empty() {
                return Err(bad(format!("{what}: no syscall names")));
            }
            syscalls.push(Rule {
                names,
                action,
                args,
            });
        }
        Ok(Some(Rules {
            default_action,
            architectures,
            flags,
            syscalls,
        }))
    }
}

impl SyscallEntry {
    /// moby's include/exclude logic: excluded by any listed arch or cap
    /// present, or a kernel at least `minKernel`; included only with the
    /// arch listed, every cap present and a kernel at least `minKernel`.
    fn applies_to(&self, t: &Target) -> bool {
        let ex = &self.excludes;
        if ex.arches.contains(&t.arch)
            || ex.caps.iter().any(|c| t.has_cap(c))
            || ex.min_kernel.is_some_and(|v| t.kernel_at_least(v))
        {
            return false;
        }
        let inc = &self.includes;
        if !inc.arches.is_empty() && !inc.arches.contains(&t.arch) {
            return false;
        }
        if !inc.caps.iter().all(|c| t.has_cap(c)) {
            return false;
        }
        inc.min_kernel.is_none_or(|v| t.kernel_at_least(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(caps: &[&str]) -> Target {
        Target {
            arch: "amd64".into(),
            scmp_arch: "SCMP_ARCH_X86_64".into(),
            caps: caps.iter().map(|c| c.to_string()).collect(),
            kernel: Some((6, 1)),
        }
    }

    fn default_rules(caps: &[&str]) -> Rules {
        Profile::parse(super::super::DEFAULT_PROFILE)
            .expect("parses")
            .resolve(&target(caps))
            .expect("resolves")
            .expect("rules")
    }

    /// The rules naming `name`.
    fn rules_for<'a>(r: &'a Rules, name: &str) -> Vec<&'a Rule> {
        r.syscalls
            .iter()
            .filter(|s| s.names.iter().any(|n| n == name))
            .collect()
    }

    #[test]
    fn default_profile_without_cap_sys_admin() {
        let r = default_rules(&["CAP_CHOWN", "CAP_SYS_CHROOT"]);
        assert_eq!(r.default_action, Action::Errno(1));
        assert_eq!(
            r.architectures,
            ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        );
        for allowed in ["read", "mkdir", "execve", "arch_prctl", "chroot", "ptrace"] {
            assert!(
                rules_for(&r, allowed)
                    .iter()
                    .any(|s| s.action == Action::Allow && s.args.is_empty()),
                "{allowed}"
            );
        }
        for denied in [
            "mount",
            "unshare",
            "setns",
            "reboot",
            "init_module",
            "bpf",
            "kcmp",
        ] {
            assert!(rules_for(&r, denied).is_empty(), "{denied}");
        }
        // clone only without namespace flags; clone3 answers ENOSYS.
        let clone = rules_for(&r, "clone");
        assert_eq!(clone.len(), 1, "{clone:?}");
        assert_eq!(
            clone[0].args,
            [ArgCheck {
                index: 0,
                value: 0x7E02_0000,
                value_two: 0,
                op: Op::MaskedEq
            }]
        );
        assert_eq!(rules_for(&r, "clone3")[0].action, Action::Errno(38));
        // socket: anything but AF_VSOCK.
        let socket = rules_for(&r, "socket");
        assert_eq!(socket[0].args[0].op, Op::Ne);
        assert_eq!(socket[0].args[0].value, 40);
        let personas: Vec<u64> = rules_for(&r, "personality")
            .iter()
            .map(|s| s.args[0].value)
            .collect();
        assert_eq!(personas, [0, 8, 0x20000, 0x20008, 0xffff_ffff]);
        // Other architectures' calls stay out.
        assert!(rules_for(&r, "s390_runtime_instr").is_empty());
        assert!(rules_for(&r, "set_tls").is_empty());
    }

    #[test]
    fn default_profile_with_capabilities() {
        let r = default_rules(&["CAP_SYS_ADMIN", "CAP_SYS_TIME", "CAP_SYS_PTRACE"]);
        let clone = rules_for(&r, "clone");
        assert!(clone.iter().all(|s| s.args.is_empty()), "{clone:?}");
        assert!(rules_for(&r, "clone3")
            .iter()
            .all(|s| s.action == Action::Allow));
        for name in ["mount", "unshare", "setns", "settimeofday", "kcmp"] {
            assert!(!rules_for(&r, name).is_empty(), "{name}");
        }
        // minKernel: ptrace is given from 4.8 on, not before.
        let mut old = target(&[]);
        old.kernel = Some((4, 4));
        let r = Profile::parse(super::super::DEFAULT_PROFILE)
            .unwrap()
            .resolve(&old)
            .unwrap()
            .unwrap();
        assert!(rules_for(&r, "ptrace").is_empty());
    }

    #[test]
    fn custom_profiles() {
        let p = Profile::parse(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
            "flags":["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls":[{"name":"mkdir","action":"SCMP_ACT_ERRNO","errnoRet":13},
            {"names":["kill"],"action":"SCMP_ACT_KILL","args":[{"index":1,"value":9,"op":"SCMP_CMP_EQ"}],
             "excludes":{"minKernel":"3.0"}},
            {"names":["chmod"],"action":"SCMP_ACT_LOG","comment":"x","includes":{"caps":["CAP_A","CAP_B"]}}]}"#,
        )
        .unwrap();
        let r = p.resolve(&target(&["CAP_A"])).unwrap().unwrap();
        assert_eq!(r.default_action, Action::Allow);
        assert_eq!(r.architectures, ["SCMP_ARCH_X86_64"]);
        assert_eq!(r.flags, 4);
        assert_eq!(
            r.syscalls,
            [Rule {
                names: vec!["mkdir".into()],
                action: Action::Errno(13),
                args: vec![]
            }]
        );
        let r = p.resolve(&target(&["CAP_A", "CAP_B"])).unwrap().unwrap();
        assert_eq!(r.syscalls[1].action, Action::Log);
        // Nothing asked for: no filter at all.
        assert_eq!(
            Profile::parse("{}").unwrap().resolve(&target(&[])),
            Ok(None)
        );
    }

    #[test]
    fn bad_profiles() {
        let err = |json: &str| match Profile::parse(json) {
            Err(e) => e,
            Ok(p) => p.resolve(&target(&[])).expect_err(json),
        };
        assert!(err("{").starts_with("Decoding seccomp profile failed: "));
        assert!(err(r#"{"defaultAction":1}"#).starts_with("Decoding seccomp profile failed: "));
        assert_eq!(
            err(r#"{"defaultAction":"SCMP_ACT_BOGUS"}"#),
            r#"invalid seccomp profile: defaultAction: unknown action "SCMP_ACT_BOGUS""#
        );
        assert_eq!(
            err(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_DENY"}]}"#
            ),
            r#"invalid seccomp profile: syscalls[0]: unknown action "SCMP_ACT_DENY""#
        );
        assert!(
            err(r#"{"syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ALLOW"}]}"#)
                .contains("defaultAction: no action given")
        );
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#)
            .contains("argument index 6"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_XX"}]}]}"#)
            .contains("unknown argument operator \"SCMP_CMP_XX\""));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_LOG","errnoRet":1}]}"#)
            .contains("errnoRet is only supported"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"x","names":["y"],"action":"SCMP_ACT_LOG"}]}"#)
            .contains("use either 'name' or 'names'"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86"],"archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#)
            .contains("use either 'architectures' or 'archMap'"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#).contains("SCMP_ACT_NOTIFY"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_LOG","includes":{"minKernel":"four"}}]}"#)
            .contains("invalid kernel version: four"));
        assert!(err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_NEW_LISTENER"]}"#
        )
        .contains("is not supported"));
    }
}
