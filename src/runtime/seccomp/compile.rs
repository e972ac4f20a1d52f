//! Resolved [`Rules`] to a BPF program, with libseccomp as runc drives
//! it: rules whose action is the default one are left out (libseccomp
//! refuses them), syscall names this libseccomp does not know are skipped
//! (a profile may list calls newer than the library), and a rule checking
//! the same argument twice becomes one rule per check, as in runc.

use std::io::{Read, Seek};
use std::os::fd::{FromRawFd, OwnedFd};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};

use super::profile::{Action, ArgCheck, Op, Rules};
use super::SeccompProgram;

fn scmp_action(a: Action) -> ScmpAction {
    match a {
        Action::KillThread => ScmpAction::KillThread,
        Action::KillProcess => ScmpAction::KillProcess,
        Action::Trap => ScmpAction::Trap,
        // Both are checked to be at most 4095 by the profile reader.
        Action::Errno(e) => ScmpAction::Errno(e as i32),
        Action::Trace(e) => ScmpAction::Trace(e as u16),
        Action::Log => ScmpAction::Log,
        Action::Allow => ScmpAction::Allow,
    }
}

fn compare(c: &ArgCheck) -> ScmpArgCompare {
    let (op, datum) = match c.op {
        Op::Ne => (ScmpCompareOp::NotEqual, c.value),
        Op::Lt => (ScmpCompareOp::Less, c.value),
        Op::Le => (ScmpCompareOp::LessOrEqual, c.value),
        Op::Eq => (ScmpCompareOp::Equal, c.value),
        Op::Ge => (ScmpCompareOp::GreaterEqual, c.value),
        Op::Gt => (ScmpCompareOp::Greater, c.value),
        // Docker's (and the OCI spec's) order: value is the mask.
        Op::MaskedEq => (ScmpCompareOp::MaskedEqual(c.value), c.value_two),
    };
    ScmpArgCompare::new(c.index, op, datum)
}

fn fail(what: impl std::fmt::Display, e: libseccomp::error::SeccompError) -> String {
    format!("seccomp: {what}: {e}")
}

/// Compiles `rules` into a program for `seccomp(2)`.
pub fn compile(rules: &Rules) -> Result<SeccompProgram, String> {
    let default = scmp_action(rules.default_action);
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| fail("default action", e))?;
    for arch in &rules.architectures {
        let a: ScmpArch = arch
            .parse()
            .map_err(|_| format!("invalid seccomp profile: unknown architecture {arch:?}"))?;
        ctx.add_arch(a).map_err(|e| fail(arch, e))?;
    }
    for rule in &rules.syscalls {
        let action = scmp_action(rule.action);
        if action == default {
            continue;
        }
        let mut per_index = [0usize; 6];
        for a in &rule.args {
            per_index[a.index as usize] += 1;
        }
        let conditions: Vec<ScmpArgCompare> = rule.args.iter().map(compare).collect();
        for name in &rule.names {
            let Ok(sys) = ScmpSyscall::from_name(name) else {
                tracing::debug!(syscall = %name, "seccomp: syscall unknown to libseccomp, rule skipped");
                continue;
            };
            let added = if conditions.is_empty() {
                ctx.add_rule(action, sys).map(drop)
            } else if per_index.iter().any(|&n| n > 1) {
                conditions
                    .iter()
                    .try_for_each(|c| ctx.add_rule_conditional(action, sys, &[*c]).map(drop))
            } else {
                ctx.add_rule_conditional(action, sys, &conditions).map(drop)
            };
            added.map_err(|e| fail(format!("rule for {name}"), e))?;
        }
    }
    Ok(SeccompProgram {
        filter: export(&ctx)?,
        flags: rules.flags,
    })
}

/// The filter's BPF, through a memfd (libseccomp 2.5 exports to an fd
/// only).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>, String> {
    // SAFETY: memfd_create takes a NUL-terminated name and flags.
    let fd = unsafe { libc::memfd_create(c"seccomp-bpf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!(
            "seccomp: memfd_create: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: fd was just created and is owned by nothing else.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ctx.export_bpf(&file).map_err(|e| fail("export", e))?;
    let mut bpf = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bpf))
        .map_err(|e| format!("seccomp: read the exported filter: {e}"))?;
    let program = SeccompProgram {
        filter: bpf,
        flags: 0,
    };
    program.validate()?;
    Ok(program.filter)
}

#[cfg(test)]
mod tests {
    use super::super::profile::{Profile, Rule, Target};
    use super::*;
    use crate::runtime::sys::{LinuxSys, Sys};

    fn rules(default: Action, syscalls: Vec<Rule>) -> Rules {
        Rules {
            default_action: default,
            architectures: vec![],
            flags: 0,
            syscalls,
        }
    }

    /// Runs `probe` in a forked child under `program` (no_new_privs set
    /// first, so no privilege is needed) and returns its exit code.
    fn run_under(program: &SeccompProgram, probe: fn() -> i32) -> i32 {
        // SAFETY: the child only makes raw syscalls and _exits.
        match unsafe { libc::fork() } {
            0 => {
                let code = if nix::sys::prctl::set_no_new_privs().is_err()
                    || LinuxSys.load_seccomp(program).is_err()
                {
                    99
                } else {
                    probe()
                };
                // SAFETY: leaving the forked child without unwinding.
                unsafe { libc::_exit(code) }
            }
            pid if pid > 0 => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert!(libc::WIFEXITED(status), "child status {status:#x}");
                libc::WEXITSTATUS(status)
            }
            _ => panic!("fork failed"),
        }
    }

    /// The errno of `mkdir("/nonexistent-dir/x")` (ENOENT when allowed).
    fn mkdir_errno() -> i32 {
        // SAFETY: a static NUL-terminated path.
        let r = unsafe { libc::mkdir(c"/nonexistent-dir-mydocker/x".as_ptr(), 0o755) };
        if r == 0 {
            0
        } else {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
        }
    }

    fn getppid_errno() -> i32 {
        // SAFETY: getppid cannot fail, unless a filter says so.
        let r = unsafe { libc::syscall(libc::SYS_getppid) };
        if r >= 0 {
            0
        } else {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
        }
    }

    #[test]
    fn a_rule_changes_what_the_kernel_answers() {
        let deny_mkdir = compile(&rules(
            Action::Allow,
            vec![Rule {
                names: vec!["mkdir".into(), "mkdirat".into(), "no_such_call".into()],
                action: Action::Errno(libc::EPERM as u32),
                args: vec![],
            }],
        ))
        .expect("compiles");
        assert_eq!(run_under(&deny_mkdir, mkdir_errno), libc::EPERM);
        assert_eq!(run_under(&deny_mkdir, getppid_errno), 0);
        // Without the filter the same probe fails for its own reason.
        assert_eq!(mkdir_errno(), libc::ENOENT);
    }

    #[test]
    fn argument_checks_and_default_errno() {
        // Default ENOSYS; getppid allowed; mkdir only with mode 0o700.
        let p = compile(&rules(
            Action::Errno(libc::ENOSYS as u32),
            vec![
                Rule {
                    names: ["getppid", "exit_group", "exit"].map(String::from).to_vec(),
                    action: Action::Allow,
                    args: vec![],
                },
                Rule {
                    names: vec!["mkdir".into(), "mkdirat".into()],
                    action: Action::Allow,
                    args: vec![ArgCheck {
                        index: 1,
                        value: 0o700,
                        value_two: 0,
                        op: Op::Eq,
                    }],
                },
                // Same as the default: left out, not an error.
                Rule {
                    names: vec!["read".into()],
                    action: Action::Errno(libc::ENOSYS as u32),
                    args: vec![],
                },
            ],
        ))
        .expect("compiles");
        assert_eq!(run_under(&p, getppid_errno), 0);
        // mkdir with 0o755 is not allowed: ENOSYS (mkdirat's mode is arg 2,
        // so libc's mkdir through mkdirat is refused too).
        assert_eq!(run_under(&p, mkdir_errno), libc::ENOSYS);
    }

    #[test]
    fn default_profile_keeps_a_shell_working() {
        let caps: Vec<String> = crate::runtime::spec::DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .collect();
        let r = Profile::parse(super::super::DEFAULT_PROFILE)
            .unwrap()
            .resolve(&Target::host(&caps))
            .unwrap()
            .unwrap();
        let p = compile(&r).expect("compiles");
        assert!(p.len() > 100 && p.len() < crate::runtime::seccomp::MAX_INSNS);
        assert_eq!(run_under(&p, getppid_errno), 0);
        assert_eq!(run_under(&p, mkdir_errno), libc::ENOENT);
        // unshare is CAP_SYS_ADMIN's: EPERM from the filter.
        fn unshare_errno() -> i32 {
            // SAFETY: unshare with a flag; fails under the filter.
            let r = unsafe { libc::unshare(libc::CLONE_NEWUTS) };
            if r == 0 {
                0
            } else {
                std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
            }
        }
        assert_eq!(run_under(&p, unshare_errno), libc::EPERM);
    }

    #[test]
    fn unknown_architecture_is_refused() {
        let mut r = rules(Action::Allow, vec![]);
        r.architectures = vec!["SCMP_ARCH_PDP11".into()];
        assert_eq!(
            compile(&r).unwrap_err(),
            "invalid seccomp profile: unknown architecture \"SCMP_ARCH_PDP11\""
        );
    }
}
