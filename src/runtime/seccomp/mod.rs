//! Seccomp for containers, as dockerd + runc apply it: every container
//! runs under the default profile ([`DEFAULT_PROFILE`], Docker's JSON
//! format) unless it is privileged or asks for `seccomp=unconfined`; a
//! custom profile arrives as its JSON text in `SecurityOpt`.
//!
//! - [`profile`] reads a profile and resolves it for one container (its
//!   capabilities, the host's architecture and kernel) into plain rules:
//!   pure, unit-tested.
//! - [`compile`] turns the rules into a classic BPF program with
//!   libseccomp (the library runc uses), in the daemon, once per profile
//!   and capability set ([`program_for`] caches it).
//! - The program travels in the spec as a [`SeccompProgram`]; the
//!   container's init (and every exec into it) loads it with one
//!   `seccomp(2)` call through [`crate::runtime::sys::Sys`], so nothing is
//!   compiled on the start path of the container itself.

pub mod compile;
pub mod profile;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Our default profile: the syscalls dockerd's default profile allows,
/// with its capability- and architecture-dependent rules.
pub const DEFAULT_PROFILE: &str = include_str!("default.json");

/// One `struct sock_filter` (BPF instruction) is 8 bytes.
pub const INSN_SIZE: usize = 8;

/// The kernel's limit on a classic BPF program (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

/// A compiled filter, ready for `seccomp(SECCOMP_SET_MODE_FILTER)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompProgram {
    /// The `struct sock_filter` array in native byte order (base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub filter: Vec<u8>,
    /// `SECCOMP_FILTER_FLAG_*` bits from the profile's `flags`.
    #[serde(default)]
    pub flags: u32,
}

impl SeccompProgram {
    /// What the kernel would refuse with a bare EINVAL, said plainly.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.filter.len() / INSN_SIZE;
        if !self.filter.len().is_multiple_of(INSN_SIZE) || n == 0 || n > MAX_INSNS {
            return Err(format!(
                "seccomp program of {} bytes is not 1 to {MAX_INSNS} instructions",
                self.filter.len()
            ));
        }
        Ok(())
    }

    /// The number of BPF instructions.
    pub fn len(&self) -> usize {
        self.filter.len() / INSN_SIZE
    }

    pub fn is_empty(&self) -> bool {
        self.filter.is_empty()
    }
}

mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// Whether this kernel has seccomp filters at all (the `Seccomp` line of
/// `/proc/self/status` exists only then).
pub fn supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .map(|s| s.lines().any(|l| l.starts_with("Seccomp:")))
            .unwrap_or(false)
    })
}

/// The program for `profile` (JSON text; `None`: the default profile)
/// and a container with capabilities `caps`, compiled once per distinct
/// pair. `Ok(None)`: the profile asks for no filter (dockerd treats a
/// profile with neither `defaultAction` nor `syscalls` so).
pub fn program_for(
    profile: Option<&str>,
    caps: &[String],
) -> Result<Option<Arc<SeccompProgram>>, String> {
    type Cache = Mutex<HashMap<[u8; 32], Option<Arc<SeccompProgram>>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let text = profile.unwrap_or(DEFAULT_PROFILE);
    let mut sorted: Vec<&str> = caps.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    h.update([0]);
    h.update(sorted.join(",").as_bytes());
    let key: [u8; 32] = h.finalize().into();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(hit.clone());
    }
    let parsed = profile::Profile::parse(text)?;
    let target = profile::Target::host(caps);
    let program = match parsed.resolve(&target)? {
        Some(rules) => Some(Arc::new(compile::compile(&rules)?)),
        None => None,
    };
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    // Custom profiles are rare; a bound keeps a stream of them from
    // growing the daemon.
    if map.len() >= 64 {
        map.clear();
    }
    map.insert(key, program.clone());
    Ok(program)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_caps() -> Vec<String> {
        crate::runtime::spec::DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .collect()
    }

    #[test]
    fn default_profile_compiles_and_is_cached() {
        let caps = default_caps();
        let a = program_for(None, &caps)
            .expect("compiles")
            .expect("a filter");
        a.validate().expect("valid");
        let b = program_for(None, &caps).expect("cached").expect("a filter");
        assert!(Arc::ptr_eq(&a, &b), "the second call is a cache hit");
        let mut admin = caps.clone();
        admin.push("CAP_SYS_ADMIN".into());
        let c = program_for(None, &admin)
            .expect("compiles")
            .expect("a filter");
        assert_ne!(a.filter, c.filter, "CAP_SYS_ADMIN changes the rules");
        assert_eq!(program_for(Some("{}"), &caps).expect("empty profile"), None);
        assert!(program_for(Some("{"), &caps)
            .unwrap_err()
            .starts_with("Decoding seccomp profile failed:"));
    }

    #[test]
    fn program_round_trips_as_base64() {
        let p = SeccompProgram {
            filter: vec![6, 0, 0, 0, 0, 0, 0xff, 0x7f],
            flags: 4,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"filter":"BgAAAAAA/38=","flags":4}"#);
        assert_eq!(serde_json::from_str::<SeccompProgram>(&json).unwrap(), p);
        p.validate().expect("one instruction");
        assert!(SeccompProgram {
            filter: vec![0; 7],
            flags: 0
        }
        .validate()
        .is_err());
    }
}
