//! The exec spec: one process to run inside a running container, written
//! by the daemon as `<exec dir>/exec.json` and read by the exec monitor
//! (`mydockerd __exec <exec dir>`).
//!
//! Unlike [`super::ContainerSpec`], the user stays a name: it is resolved
//! in the container's own `/etc/passwd`, from inside its mount namespace.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::spec::{CgroupSpec, ProcessSpec, SpecError};

/// Name of the spec file inside an exec folder.
pub const EXEC_SPEC_FILE: &str = "exec.json";

/// One exec process, as the exec monitor starts it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ExecSpec {
    pub id: String,
    pub container_id: String,
    /// The exec's folder: spec, state, socket.
    pub dir: PathBuf,
    /// The container's init on the host; its namespaces are joined.
    pub init_pid: i32,
    /// The container's cgroup, joined before anything runs.
    pub cgroup: Option<CgroupSpec>,
    /// `args`, `env` (complete but for HOME, which comes from the user's
    /// passwd entry when missing), `cwd`, `tty`, capabilities, rlimits,
    /// `no_new_privileges`; uid and gids are filled in from `user`.
    pub process: ProcessSpec,
    /// `User` as given (`name`, `uid`, `name:group`, ...); empty: root.
    pub user: String,
    /// Every capability.
    pub privileged: bool,
    /// Rows and columns of the pty.
    pub console_size: Option<[u16; 2]>,
    /// Which streams a client attaches to; the others are /dev/null.
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl ExecSpec {
    /// Reads `<dir>/exec.json`.
    pub fn load(dir: &Path) -> Result<ExecSpec, SpecError> {
        let spec: ExecSpec = super::spec::read_json(&dir.join(EXEC_SPEC_FILE))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Writes `<dir>/exec.json` (tmp + rename).
    pub fn save(&self) -> Result<(), SpecError> {
        self.validate()?;
        let path = self.dir.join(EXEC_SPEC_FILE);
        let bytes = serde_json::to_vec(self)
            .map_err(|e| SpecError::Invalid(format!("cannot encode exec spec: {e}")))?;
        super::state::write_atomic(&path, &bytes)
            .map_err(|source| SpecError::Write { path, source })
    }

    /// What the monitor relies on, refused before anything is joined.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.process.args.is_empty() {
            return Err(SpecError::Invalid("no command specified".into()));
        }
        if self.init_pid <= 0 {
            return Err(SpecError::Invalid("no container process to join".into()));
        }
        if !self.dir.is_absolute() {
            return Err(SpecError::Invalid(
                "exec dir must be an absolute path".into(),
            ));
        }
        if !self.process.cwd.starts_with('/') {
            return Err(SpecError::Invalid(format!(
                "the working directory '{}' is invalid, it needs to be an absolute path",
                self.process.cwd
            )));
        }
        let nul = |v: &[String]| v.iter().any(|a| a.contains('\0'));
        if nul(&self.process.args) || nul(&self.process.env) || self.user.contains('\0') {
            return Err(SpecError::Invalid(
                "NUL byte in command, environment or user".into(),
            ));
        }
        Ok(())
    }

    /// The PATH the command is looked up in.
    pub fn lookup_path(&self) -> &str {
        self.process
            .env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(super::spec::DEFAULT_PATH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_validates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = ExecSpec {
            id: "e".into(),
            dir: dir.path().to_path_buf(),
            init_pid: 1,
            ..Default::default()
        };
        assert!(spec.validate().is_err(), "no args");
        spec.process.args = vec!["sh".into()];
        spec.console_size = Some([24, 80]);
        spec.save().expect("save");
        assert_eq!(ExecSpec::load(dir.path()).expect("load"), spec);
        spec.process.cwd = "rel".into();
        assert!(spec.validate().is_err());
        spec.process.cwd = "/".into();
        spec.init_pid = 0;
        assert!(spec.validate().is_err());
        spec.init_pid = 1;
        spec.user = "a\0b".into();
        assert!(spec.validate().is_err());
    }
}
