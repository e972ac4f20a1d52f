//! Device access on cgroup v2: the devices-cgroup rules as an eBPF
//! program (`BPF_PROG_TYPE_CGROUP_DEVICE`) attached to the container's
//! cgroup, as runc, crun and youki do it.
//!
//! The rules keep their v1 meaning: [`Emulator`] replays them the way the
//! v1 controller does (a wildcard `a` rule sets the default and clears the
//! exceptions, a rule against the default adds an exception, a rule with
//! the default removes the exact same exception), and [`program`] emits
//! one check per remaining exception, ending in the default. Both are
//! pure. [`set`] loads, attaches and replaces the program through
//! [`BpfSys`].
//!
//! A program sees `struct bpf_cgroup_dev_ctx { u32 access_type; u32
//! major; u32 minor; }`, `access_type` being `(access << 16) | type`, and
//! returns 1 to allow, 0 to refuse (EPERM).

use std::os::fd::AsFd;
use std::path::Path;

use super::bpf::BpfSys;
use super::{CgroupError, DeviceRule};

/// `BPF_DEVCG_DEV_*`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
/// `BPF_DEVCG_ACC_*`.
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
const ACC_ALL: i32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes: class | operation | source.
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// The 8 bytes the kernel reads, as one native-endian word.
    pub fn encode(&self) -> u64 {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = if cfg!(target_endian = "little") {
            (self.src << 4) | (self.dst & 0xf)
        } else {
            (self.dst << 4) | (self.src & 0xf)
        };
        b[2..4].copy_from_slice(&self.off.to_ne_bytes());
        b[4..8].copy_from_slice(&self.imm.to_ne_bytes());
        u64::from_ne_bytes(b)
    }
}

/// An exception of the v1 controller: a device (wildcards `None`) and the
/// accesses it grants (default deny) or refuses (default allow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception {
    pub kind: char,
    pub major: Option<u64>,
    pub minor: Option<u64>,
    /// `ACC_*` bits.
    pub access: i32,
}

/// The v1 devices controller's state, replayed from its rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emulator {
    pub default_allow: bool,
    pub exceptions: Vec<Exception>,
}

impl Default for Emulator {
    /// A fresh v1 cgroup allows everything.
    fn default() -> Emulator {
        Emulator {
            default_allow: true,
            exceptions: Vec::new(),
        }
    }
}

fn access_bits(r: &DeviceRule) -> i32 {
    (if r.mknod { ACC_MKNOD } else { 0 })
        | (if r.read { ACC_READ } else { 0 })
        | (if r.write { ACC_WRITE } else { 0 })
}

impl Emulator {
    /// The state after writing `rules` in order to `devices.allow` /
    /// `devices.deny`.
    pub fn replay(rules: &[DeviceRule]) -> Emulator {
        let mut e = Emulator::default();
        for r in rules.iter().flat_map(DeviceRule::expanded) {
            e.apply(&r);
        }
        e
    }

    fn apply(&mut self, r: &DeviceRule) {
        let access = access_bits(r);
        if r.kind == 'a' && r.major.is_none() && r.minor.is_none() && access == ACC_ALL {
            self.default_allow = r.allow;
            self.exceptions.clear();
            return;
        }
        let same = |x: &Exception| x.kind == r.kind && x.major == r.major && x.minor == r.minor;
        if r.allow != self.default_allow {
            match self.exceptions.iter_mut().find(|x| same(x)) {
                Some(x) => x.access |= access,
                None => self.exceptions.push(Exception {
                    kind: r.kind,
                    major: r.major,
                    minor: r.minor,
                    access,
                }),
            }
        } else {
            for x in self.exceptions.iter_mut().filter(|x| same(x)) {
                x.access &= !access;
            }
            self.exceptions.retain(|x| x.access != 0);
        }
    }
}

/// Device numbers above this cannot exist (majors have 12 bits, minors
/// 20) and do not fit the 32-bit immediates the checks compare with.
const MAX_NUMBER: u64 = i32::MAX as u64;

/// The program enforcing `rules` with their v1 meaning.
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let emu = Emulator::replay(rules);
    // Registers: r1 the context, then r2 type, r3 access, r4 major,
    // r5 minor; r1 is scratch once they are loaded.
    let mut p = vec![
        Insn::new(LDX_MEM_W, 2, 1, 0, 0),
        Insn::new(ALU32_AND_K, 2, 0, 0, 0xffff),
        Insn::new(LDX_MEM_W, 3, 1, 0, 0),
        Insn::new(ALU32_RSH_K, 3, 0, 0, 16),
        Insn::new(LDX_MEM_W, 4, 1, 4, 0),
        Insn::new(LDX_MEM_W, 5, 1, 8, 0),
    ];
    let verdict = i32::from(!emu.default_allow);
    for x in &emu.exceptions {
        if x.major.is_some_and(|m| m > MAX_NUMBER) || x.minor.is_some_and(|m| m > MAX_NUMBER) {
            continue; // matches no device
        }
        // Each check jumps past the block on a mismatch; offsets are
        // patched once the block's length is known.
        let mut block: Vec<Insn> = Vec::new();
        let mut jumps = Vec::new();
        match x.kind {
            'b' | 'c' => {
                let t = if x.kind == 'b' { DEV_BLOCK } else { DEV_CHAR };
                jumps.push(block.len());
                block.push(Insn::new(JNE_K, 2, 0, 0, t));
            }
            _ => {} // 'a': any type
        }
        if x.access != ACC_ALL {
            block.push(Insn::new(ALU32_MOV_X, 1, 3, 0, 0));
            block.push(Insn::new(ALU32_AND_K, 1, 0, 0, x.access));
            jumps.push(block.len());
            if emu.default_allow {
                // A refusal applies to any overlap (v1's partial match).
                block.push(Insn::new(JEQ_K, 1, 0, 0, 0));
            } else {
                // A grant must cover every access asked for.
                block.push(Insn::new(JNE_X, 1, 3, 0, 0));
            }
        }
        if let Some(m) = x.major {
            jumps.push(block.len());
            block.push(Insn::new(JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = x.minor {
            jumps.push(block.len());
            block.push(Insn::new(JNE_K, 5, 0, 0, m as i32));
        }
        block.push(Insn::new(ALU64_MOV_K, 0, 0, 0, verdict));
        block.push(Insn::new(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for j in jumps {
            block[j].off = (len - j - 1) as i16;
        }
        p.extend(block);
    }
    p.push(Insn::new(
        ALU64_MOV_K,
        0,
        0,
        0,
        i32::from(emu.default_allow),
    ));
    p.push(Insn::new(EXIT, 0, 0, 0, 0));
    p
}

fn bpf_err(dir: &Path) -> impl FnOnce(super::bpf::BpfError) -> CgroupError {
    let path = dir.display().to_string();
    move |e| CgroupError::DeviceFilter {
        path,
        reason: e.to_string(),
    }
}

/// Makes `rules` the device filter of the cgroup at `dir`: the new
/// program is attached first, then the ones it replaces are detached, so
/// the cgroup is never unfiltered in between. `None` (allow everything)
/// only detaches. Programs stay while attached; removing the cgroup
/// releases them.
pub fn set(bpf: &dyn BpfSys, dir: &Path, rules: Option<&[DeviceRule]>) -> Result<(), CgroupError> {
    let cgroup = std::fs::File::open(dir).map_err(super::io_err("open", dir))?;
    let old = bpf
        .attached_device_programs(cgroup.as_fd())
        .map_err(bpf_err(dir))?;
    if let Some(rules) = rules {
        let prog = bpf
            .load_device_program(&program(rules))
            .map_err(bpf_err(dir))?;
        bpf.attach_device_program(cgroup.as_fd(), prog.as_fd())
            .map_err(bpf_err(dir))?;
    }
    for id in old {
        let prog = match bpf.program_by_id(id) {
            Ok(fd) => fd,
            // Detached and freed meanwhile.
            Err(e) if e.errno == nix::errno::Errno::ENOENT => continue,
            Err(e) => return Err(bpf_err(dir)(e)),
        };
        match bpf.detach_device_program(cgroup.as_fd(), prog.as_fd()) {
            Ok(()) => {}
            Err(e) if e.errno == nix::errno::Errno::ENOENT => {}
            Err(e) => return Err(bpf_err(dir)(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::bpf::FakeBpf;
    use super::super::resources::default_device_rules;
    use super::*;

    /// Runs `prog` the way the kernel would for one access: a tiny
    /// interpreter of the instructions [`program`] emits.
    fn run(prog: &[Insn], kind: char, major: u32, minor: u32, access: i32) -> bool {
        let t = if kind == 'b' { DEV_BLOCK } else { DEV_CHAR };
        let ctx = [((access as u32) << 16) | t as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        for _ in 0..10_000 {
            let i = prog[pc];
            let (d, s) = (i.dst as usize, i.src as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(s, 1, "loads only from the context");
                    r[d] = u64::from(ctx[i.off as usize / 4]);
                }
                ALU32_AND_K => r[d] = u64::from(r[d] as u32 & i.imm as u32),
                ALU32_RSH_K => r[d] = u64::from((r[d] as u32) >> i.imm),
                ALU32_MOV_X => r[d] = u64::from(r[s] as u32),
                ALU64_MOV_K => r[d] = i.imm as i64 as u64,
                JNE_K if r[d] != i.imm as i64 as u64 => pc += i.off as usize,
                JEQ_K if r[d] == i.imm as i64 as u64 => pc += i.off as usize,
                JNE_X if r[d] != r[s] => pc += i.off as usize,
                JNE_K | JEQ_K | JNE_X => {}
                EXIT => return r[0] == 1,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
        panic!("the program does not end");
    }

    fn rule(
        allow: bool,
        kind: char,
        major: Option<u64>,
        minor: Option<u64>,
        acc: &str,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            read: acc.contains('r'),
            write: acc.contains('w'),
            mknod: acc.contains('m'),
        }
    }

    const R: i32 = ACC_READ;
    const W: i32 = ACC_WRITE;
    const M: i32 = ACC_MKNOD;

    #[test]
    fn deny_all_but_dev_null_read_write() {
        let rules = [
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(3), "rw"),
        ];
        let p = program(&rules);
        // The exact program: prologue, one check block, the default.
        let expected = vec![
            Insn::new(LDX_MEM_W, 2, 1, 0, 0),
            Insn::new(ALU32_AND_K, 2, 0, 0, 0xffff),
            Insn::new(LDX_MEM_W, 3, 1, 0, 0),
            Insn::new(ALU32_RSH_K, 3, 0, 0, 16),
            Insn::new(LDX_MEM_W, 4, 1, 4, 0),
            Insn::new(LDX_MEM_W, 5, 1, 8, 0),
            Insn::new(JNE_K, 2, 0, 7, DEV_CHAR),
            Insn::new(ALU32_MOV_X, 1, 3, 0, 0),
            Insn::new(ALU32_AND_K, 1, 0, 0, R | W),
            Insn::new(JNE_X, 1, 3, 4, 0),
            Insn::new(JNE_K, 4, 0, 3, 1),
            Insn::new(JNE_K, 5, 0, 2, 3),
            Insn::new(ALU64_MOV_K, 0, 0, 0, 1),
            Insn::new(EXIT, 0, 0, 0, 0),
            Insn::new(ALU64_MOV_K, 0, 0, 0, 0),
            Insn::new(EXIT, 0, 0, 0, 0),
        ];
        assert_eq!(p, expected);
        assert!(run(&p, 'c', 1, 3, R));
        assert!(run(&p, 'c', 1, 3, R | W));
        assert!(!run(&p, 'c', 1, 3, M), "mknod not granted");
        assert!(!run(&p, 'c', 1, 3, R | M));
        assert!(!run(&p, 'c', 1, 5, R), "/dev/zero");
        assert!(!run(&p, 'b', 1, 3, R), "a block device 1:3");
        // Little-endian x86: dst in the low nibble, src in the high one.
        if cfg!(target_endian = "little") {
            assert_eq!(
                Insn::new(LDX_MEM_W, 2, 1, 4, 0).encode().to_le_bytes(),
                [0x61, 0x12, 4, 0, 0, 0, 0, 0]
            );
        }
    }

    #[test]
    fn dockers_default_rules() {
        let p = program(&default_device_rules());
        for (kind, maj, min) in [
            ('c', 1, 3),
            ('c', 1, 5),
            ('c', 1, 9),
            ('c', 1, 8),
            ('c', 5, 0),
        ] {
            assert!(run(&p, kind, maj, min, R | W), "{kind} {maj}:{min}");
            assert!(run(&p, kind, maj, min, M), "{kind} {maj}:{min}");
        }
        assert!(run(&p, 'c', 136, 7, R | W), "pts");
        assert!(run(&p, 'c', 5, 2, R | W), "ptmx");
        assert!(run(&p, 'c', 10, 200, R | W), "tun");
        // mknod of anything, but no access to what is not listed.
        assert!(run(&p, 'b', 8, 0, M));
        assert!(!run(&p, 'b', 8, 0, R), "sda");
        assert!(!run(&p, 'c', 1, 11, W), "kmsg");
        assert!(!run(&p, 'c', 10, 229, R | W), "fuse");
        assert!(run(&p, 'c', 10, 229, M), "fuse mknod (c *:* m)");
        // --device /dev/fuse after the defaults grants it back.
        let mut rules = default_device_rules();
        rules.push(rule(true, 'c', Some(10), Some(229), "rwm"));
        assert!(run(&program(&rules), 'c', 10, 229, R | W));
    }

    #[test]
    fn v1_semantics() {
        // Allow-all with a refusal: any overlap is refused.
        let p = program(&[rule(false, 'b', Some(8), None, "w")]);
        assert!(run(&p, 'b', 8, 1, R));
        assert!(!run(&p, 'b', 8, 1, R | W));
        assert!(run(&p, 'c', 8, 1, W));
        // A deny removes the same allow (access bits), not others.
        let e = Emulator::replay(&[
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(3), "rwm"),
            rule(true, 'c', None, None, "m"),
            rule(false, 'c', Some(1), Some(3), "w"),
            rule(false, 'c', Some(4), None, "rwm"),
        ]);
        assert!(!e.default_allow);
        assert_eq!(
            e.exceptions,
            [
                Exception {
                    kind: 'c',
                    major: Some(1),
                    minor: Some(3),
                    access: R | M
                },
                Exception {
                    kind: 'c',
                    major: None,
                    minor: None,
                    access: M
                }
            ]
        );
        // A partial `a` rule is a char and a block rule; a full one resets.
        let e = Emulator::replay(&[
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'a', None, None, "m"),
        ]);
        assert_eq!(e.exceptions.len(), 2);
        let e = Emulator::replay(&[
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(3), "rwm"),
            rule(true, 'a', None, None, "rwm"),
        ]);
        assert_eq!(e, Emulator::default());
        assert_eq!(program(&[]).len(), 8, "allow-all: prologue and default");
        assert!(run(&program(&[]), 'b', 8, 0, R | W | M));
        // Impossible numbers never match and are left out.
        let p = program(&[
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1 << 40), Some(3), "rwm"),
        ]);
        assert_eq!(p.len(), 8);
    }

    #[test]
    fn set_attaches_replaces_and_detaches() {
        let dir = tempfile::tempdir().unwrap();
        let bpf = FakeBpf::default();
        let rules = [
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(3), "rw"),
        ];
        set(&bpf, dir.path(), Some(&rules)).unwrap();
        assert_eq!(bpf.attached_to(dir.path()), [program(&rules)]);
        // Again with other rules: the new one attached, then the old
        // one detached.
        set(&bpf, dir.path(), Some(&default_device_rules())).unwrap();
        assert_eq!(
            bpf.attached_to(dir.path()),
            [program(&default_device_rules())]
        );
        // Allow all: nothing attached any more.
        set(&bpf, dir.path(), None).unwrap();
        assert!(bpf.attached_to(dir.path()).is_empty());
        assert_eq!(
            bpf.calls(),
            [
                "query []",
                "load 1 (16 insns)",
                "attach 1",
                "query [1]",
                format!("load 2 ({} insns)", program(&default_device_rules()).len()).as_str(),
                "attach 2",
                "detach 1",
                "query [2]",
                "detach 2",
            ]
        );
        // A refused load changes nothing and says why.
        set(&bpf, dir.path(), Some(&rules)).unwrap();
        bpf.fail_loads();
        let e = set(&bpf, dir.path(), Some(&default_device_rules())).unwrap_err();
        assert!(e.to_string().contains("R0 !read_ok"), "{e}");
        assert_eq!(bpf.attached_to(dir.path()), [program(&rules)]);
        assert!(set(&bpf, &dir.path().join("missing"), None).is_err());
    }
}
