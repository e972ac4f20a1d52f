//! Messages between the daemon and a monitor: the one-shot ready report
//! on the pipe handed to `mydockerd __monitor`, and the newline-delimited
//! JSON requests of the control socket `<bundle>/monitor.sock`.
//!
//! Control requests: `{"kill": 9}`, `{"resize": [rows, cols]}`, `"state"`,
//! `{"attach": {"stdin": true, "stdout": true, "stderr": true,
//! "close_stdin": true}}`.
//! Each gets one [`Response`] line. A connection that sends nothing is a
//! waiter: the monitor closes it only when it exits, after the final state
//! is on disk.

use serde::{Deserialize, Serialize};

use super::state::State;

/// Name of the control socket inside a bundle.
pub const SOCKET_FILE: &str = "monitor.sock";
/// Name of the monitor's pid file inside a bundle.
pub const PID_FILE: &str = "monitor.pid";
/// The monitor's own stderr, for post-mortems.
pub const MONITOR_LOG_FILE: &str = "monitor.log";
/// Environment variable naming the ready pipe's fd in the monitor.
pub const READY_FD_ENV: &str = "MYDOCKER_MONITOR_READY_FD";

/// What the monitor reports once the container's process was exec'd (or
/// could not be).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Ready {
    /// The container's init on the host; 0 on failure.
    pub pid: i32,
    /// Empty on success.
    pub error: String,
    pub exit_code: i32,
}

/// A control request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Request {
    /// Send this signal number to the container's init.
    Kill(i32),
    /// Resize the pty: rows, columns.
    Resize([u16; 2]),
    /// Reply with the current state.
    State,
    /// After the `{"ok":true}` reply the connection streams: see [`Attach`].
    Attach(Attach),
}

/// What an attached connection carries. From the monitor: the container's
/// output, in stdcopy frames (8-byte header) without a TTY, raw with one.
/// To the monitor: raw bytes for the container's stdin; a half-close
/// (`shutdown(SHUT_WR)`) ends that input, closing the container's stdin
/// when `close_stdin` (dockerd's `StdinOnce`). The connection closes when
/// the container has exited.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Attach {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub close_stdin: bool,
}

/// The answer to one request.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Response {
    pub ok: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
}

impl Response {
    pub fn ok() -> Response {
        Response {
            ok: true,
            ..Default::default()
        }
    }
    pub fn error(msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: msg.into(),
            state: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shapes() {
        let kill: Request = serde_json::from_str(r#"{"kill":9}"#).expect("kill");
        assert_eq!(kill, Request::Kill(9));
        let resize: Request = serde_json::from_str(r#"{"resize":[24,80]}"#).expect("resize");
        assert_eq!(resize, Request::Resize([24, 80]));
        let state: Request = serde_json::from_str(r#""state""#).expect("state");
        assert_eq!(state, Request::State);
        assert_eq!(
            serde_json::to_string(&Request::State).expect("enc"),
            r#""state""#
        );
        assert!(serde_json::from_str::<Request>(r#"{"bogus":1}"#).is_err());
        let attach: Request =
            serde_json::from_str(r#"{"attach":{"stdout":true}}"#).expect("attach");
        assert_eq!(
            attach,
            Request::Attach(Attach {
                stdout: true,
                ..Default::default()
            })
        );
        assert_eq!(
            serde_json::to_string(&Response::ok()).expect("enc"),
            r#"{"ok":true}"#
        );
        let r: Ready = serde_json::from_str(r#"{"pid":5}"#).expect("ready");
        assert_eq!(r.pid, 5);
    }
}
