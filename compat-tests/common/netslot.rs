//! Per-daemon network isolation: each test daemon takes a free slot (a
//! `flock`ed file, so parallel test binaries agree and a crashed test frees
//! its slot) and gets from it its own default bridge name, `bip`, address
//! pool and iptables chain prefix. Everything a slot's daemon may have
//! made in the kernel can thus be found and removed again, when the test
//! ends (even by a panic) and before the slot is reused.

use std::fs;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

const SLOTS: u32 = 200;
const LOCK_DIR: &str = "/tmp/mydocker-test-netslots";

pub struct NetSlot {
    pub index: u32,
    _lock: fs::File,
}

impl NetSlot {
    /// Takes the first free slot and clears whatever a crashed holder left.
    pub fn acquire() -> NetSlot {
        fs::create_dir_all(LOCK_DIR).expect("slot dir");
        for index in 0..SLOTS {
            let f = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(format!("{LOCK_DIR}/{index}.lock"))
                .expect("slot lock file");
            // SAFETY: plain syscall on a descriptor we own.
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                let slot = NetSlot { index, _lock: f };
                slot.cleanup();
                return slot;
            }
        }
        panic!("no free network slot for a test daemon");
    }

    /// Default bridge device.
    pub fn bridge(&self) -> String {
        format!("mdt{}", self.index)
    }

    /// `--dns`: a loopback address of the slot's own, so that containers'
    /// DNS queries never leave the machine and a test can answer them.
    pub fn dns(&self) -> String {
        format!("127.0.53.{}", self.index)
    }

    /// `--bip`: the default bridge's /24.
    pub fn bip(&self) -> String {
        format!("172.30.{}.1/24", self.index)
    }

    /// Subnet of the default bridge.
    pub fn bridge_subnet(&self) -> String {
        format!("172.30.{}.0/24", self.index)
    }

    /// `default-address-pools`: eight /28s.
    pub fn pools_json(&self) -> serde_json::Value {
        serde_json::json!([{ "base": format!("172.31.{}.0/25", self.index), "size": 28 }])
    }

    /// The `k`-th (0..8) /28 reserved for explicit `--subnet` in tests,
    /// as (subnet, its first host address as gateway, a host address).
    pub fn subnet(&self, k: u32) -> String {
        assert!(k < 8);
        format!("172.31.{}.{}/28", self.index, 128 + 16 * k)
    }

    /// The `n`-th address of explicit subnet `k`.
    pub fn addr(&self, k: u32, n: u32) -> String {
        format!("172.31.{}.{}", self.index, 128 + 16 * k + n)
    }

    pub fn chain_prefix(&self) -> String {
        format!("MDT{}", self.index)
    }

    fn owns_addr(&self, addr: &str) -> bool {
        addr.starts_with(&format!("172.30.{}.", self.index))
            || addr.starts_with(&format!("172.31.{}.", self.index))
    }

    /// Our bridges: the default one and any holding a slot address.
    pub fn bridges(&self) -> Vec<String> {
        let mut out = vec![];
        for l in ip_json(&["-j", "addr", "show"]) {
            let name = l["ifname"].as_str().unwrap_or("").to_string();
            let ours = name == self.bridge()
                || l["addr_info"].as_array().into_iter().flatten().any(|a| {
                    a["family"] == "inet" && self.owns_addr(a["local"].as_str().unwrap_or(""))
                });
            if ours && !name.is_empty() {
                out.push(name);
            }
        }
        out
    }

    /// Links enslaved to our bridges (the host ends of veths).
    pub fn veths(&self) -> Vec<String> {
        let bridges = self.bridges();
        ip_json(&["-j", "link", "show"])
            .iter()
            .filter(|l| {
                l["master"]
                    .as_str()
                    .is_some_and(|m| bridges.iter().any(|b| b == m))
            })
            .filter_map(|l| l["ifname"].as_str().map(String::from))
            .collect()
    }

    /// Our iptables rules (`-A` lines naming our chains) in filter and nat.
    pub fn iptables_rules(&self) -> Vec<String> {
        let p = format!("{}-", self.chain_prefix());
        let mut out = vec![];
        for table in ["filter", "nat"] {
            let o = Command::new("iptables")
                .args(["-w", "5", "-t", table, "-S"])
                .stderr(Stdio::null())
                .output();
            if let Ok(o) = o {
                for l in String::from_utf8_lossy(&o.stdout).lines() {
                    if l.starts_with("-A") && l.contains(&p) {
                        out.push(format!("{table}: {l}"));
                    }
                }
            }
        }
        out
    }

    /// Removes our veths, bridges, iptables rules and chains.
    pub fn cleanup(&self) {
        for l in self.veths().into_iter().chain(self.bridges()) {
            let _ = Command::new("ip")
                .args(["link", "del", &l])
                .stderr(Stdio::null())
                .status();
        }
        let p = self.chain_prefix();
        for table in ["filter", "nat"] {
            let Ok(o) = Command::new("iptables")
                .args(["-w", "5", "-t", table, "-S"])
                .stderr(Stdio::null())
                .output()
            else {
                continue;
            };
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            // Jumps from other chains first, then our chains.
            for l in text.lines() {
                if let Some(rule) = l.strip_prefix("-A ") {
                    let chain = rule.split(' ').next().unwrap_or("");
                    if !chain.starts_with(&format!("{p}-")) && rule.contains(&format!("{p}-")) {
                        let mut args = vec!["-w", "5", "-t", table, "-D"];
                        args.extend(rule.split(' '));
                        let _ = Command::new("iptables").args(&args).status();
                    }
                }
            }
            for l in text.lines() {
                if let Some(chain) = l.strip_prefix("-N ") {
                    if chain.starts_with(&format!("{p}-")) {
                        let _ = Command::new("iptables")
                            .args(["-w", "5", "-t", table, "-F", chain])
                            .status();
                        let _ = Command::new("iptables")
                            .args(["-w", "5", "-t", table, "-X", chain])
                            .status();
                    }
                }
            }
        }
    }
}

impl Drop for NetSlot {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn ip_json(args: &[&str]) -> Vec<serde_json::Value> {
    let Ok(o) = Command::new("ip").args(args).stderr(Stdio::null()).output() else {
        return vec![];
    };
    serde_json::from_slice(&o.stdout).unwrap_or_default()
}
