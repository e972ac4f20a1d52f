//! `<bundle>/state.json`: what the monitor knows about its container,
//! rewritten atomically (tmp + rename) at each change so that a reader
//! (the daemon, also after a restart) never sees half a file.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Name of the state file inside a bundle.
pub const STATE_FILE: &str = "state.json";

/// Errors reading a state file.
#[derive(Debug, Error)]
pub enum StateError {
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parse {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Where the container is in its life.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The monitor runs but the process has not been exec'd yet.
    #[default]
    Created,
    Running,
    Exited,
}

/// The content of `state.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct State {
    /// The container's init, as seen from the host; 0 before start.
    pub pid: i32,
    /// The monitor process.
    pub monitor_pid: i32,
    pub status: Status,
    /// RFC 3339 with nanoseconds, UTC; empty until started.
    pub started_at: String,
    pub exit_code: i32,
    pub finished_at: String,
    pub oom_killed: bool,
    /// Why the container could not start (`exec: "foo": executable file not
    /// found in $PATH`), or why the monitor gave up.
    pub error: String,
}

impl State {
    /// Reads `<bundle>/state.json`.
    pub fn load(bundle: &Path) -> Result<State, StateError> {
        let path = bundle.join(STATE_FILE);
        let bytes = fs::read(&path).map_err(|source| StateError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| StateError::Parse { path, source })
    }

    /// Writes `<bundle>/state.json` atomically.
    pub fn save(&self, bundle: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        write_atomic(&bundle.join(STATE_FILE), &bytes)
    }
}

/// The current time as dockerd prints `StartedAt`/`FinishedAt`.
pub fn now_rfc3339() -> String {
    crate::logs::jsonfile::format_timestamp(crate::logs::now_nanos())
}

/// Writes `path` through `<path>.tmp` and a rename, fsyncing the data so a
/// crash leaves the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    drop(f);
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let st = State {
            pid: 42,
            status: Status::Exited,
            exit_code: 137,
            started_at: now_rfc3339(),
            ..Default::default()
        };
        st.save(dir.path()).expect("save");
        assert_eq!(State::load(dir.path()).expect("load"), st);
        let raw = fs::read_to_string(dir.path().join(STATE_FILE)).expect("read");
        assert!(raw.contains(r#""status":"exited""#), "{raw}");
        assert!(!dir.path().join("state.json.tmp").exists());
        assert!(st.started_at.ends_with('Z'));
    }
}
