//! A container's life, as stored in the `state` column and shown by
//! inspect: created → running → exited (→ running again on start), and
//! the transitions' rules.

use serde::{Deserialize, Serialize};

/// Go's zero time, which dockerd prints for times not reached yet.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Exited,
    Removing,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
            Status::Removing => "removing",
            Status::Dead => "dead",
        }
    }

    /// The `status` filter's accepted values (dockerd's list).
    pub fn is_filter_value(v: &str) -> bool {
        matches!(
            v,
            "created" | "restarting" | "running" | "removing" | "paused" | "exited" | "dead"
        )
    }
}

/// The stored state of one container.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ContainerState {
    pub status: Status,
    /// The container's init on the host while it runs.
    pub pid: i32,
    pub exit_code: i32,
    pub error: String,
    pub oom_killed: bool,
    pub started_at: String,
    pub finished_at: String,
    /// Set by `docker stop` / `docker kill` until the exit is recorded, so
    /// the `die` event is followed by `stop` like dockerd's.
    pub stopping: bool,
    /// Frozen by `docker pause` (the status stays running).
    pub paused: bool,
    /// Exited and waiting for its restart policy's back-off to end.
    pub restarting: bool,
    /// Restarts done by the restart policy since the last user start.
    pub restart_count: u32,
    /// Stopped by the user: `always` waits for the daemon's next start,
    /// `unless-stopped` stays stopped (dockerd's HasBeenManuallyStopped).
    pub manually_stopped: bool,
}

impl Default for ContainerState {
    fn default() -> Self {
        ContainerState {
            status: Status::Created,
            pid: 0,
            exit_code: 0,
            error: String::new(),
            oom_killed: false,
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
            stopping: false,
            paused: false,
            restarting: false,
            restart_count: 0,
            manually_stopped: false,
        }
    }
}

impl ContainerState {
    /// Whether the container's process exists (paused ones included).
    pub fn running(&self) -> bool {
        self.status == Status::Running
    }

    /// inspect's `Running`: dockerd counts a restarting container too.
    pub fn running_or_restarting(&self) -> bool {
        self.running() || self.restarting
    }

    /// The status word of inspect, `docker ps` and the `status` filter.
    pub fn status_str(&self) -> &'static str {
        if self.running() && self.paused {
            "paused"
        } else if self.restarting && !self.running() {
            "restarting"
        } else {
            self.status.as_str()
        }
    }

    pub fn parse(json: &str) -> ContainerState {
        // A row is written only by us; a bad one reads as dead, not a panic.
        serde_json::from_str(json).unwrap_or_else(|_| ContainerState {
            status: Status::Dead,
            error: "unreadable container state".into(),
            ..Default::default()
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The container's init was exec'd.
    pub fn mark_started(&mut self, pid: i32, started_at: &str) {
        self.status = Status::Running;
        self.pid = pid;
        self.exit_code = 0;
        self.error.clear();
        self.oom_killed = false;
        self.started_at = started_at.to_string();
        self.finished_at = ZERO_TIME.into();
        self.stopping = false;
        self.paused = false;
        self.restarting = false;
    }

    /// The start failed: the container stays created, with the reason.
    pub fn mark_start_failed(&mut self, exit_code: i32, error: &str) {
        // A container that ran before stays exited (a failed restart).
        if self.status != Status::Exited {
            self.status = Status::Created;
        }
        self.restarting = false;
        self.pid = 0;
        self.exit_code = exit_code;
        self.error = error.to_string();
    }

    /// The init exited.
    pub fn mark_exited(&mut self, exit_code: i32, finished_at: &str, oom: bool, error: &str) {
        self.status = Status::Exited;
        self.paused = false;
        self.pid = 0;
        self.exit_code = exit_code;
        self.oom_killed = oom;
        self.error = error.to_string();
        self.finished_at = if finished_at.is_empty() {
            crate::runtime::state::now_rfc3339()
        } else {
            finished_at.to_string()
        };
    }

    /// `docker ps`'s STATUS column: `Up 3 seconds`, `Exited (0) 2 minutes ago`, `Created`.
    pub fn human_status(&self, now: chrono::DateTime<chrono::Utc>) -> String {
        let since = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| (now - t.with_timezone(&chrono::Utc)).num_seconds().max(0))
                .unwrap_or(0)
        };
        match self.status {
            Status::Running if self.paused => {
                format!("Up {} (Paused)", human_duration(since(&self.started_at)))
            }
            Status::Running => format!("Up {}", human_duration(since(&self.started_at))),
            Status::Exited if self.restarting => format!(
                "Restarting ({}) {} ago",
                self.exit_code,
                human_duration(since(&self.finished_at))
            ),
            Status::Exited => format!(
                "Exited ({}) {} ago",
                self.exit_code,
                human_duration(since(&self.finished_at))
            ),
            Status::Created => "Created".into(),
            Status::Removing => "Removal In Progress".into(),
            Status::Dead => "Dead".into(),
        }
    }
}

/// Go's `units.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let (m, h) = (secs / 60, secs / 3600);
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{} days", h / 24),
        _ if h < 24 * 30 * 2 => format!("{} weeks", h / 24 / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", h / 24 / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_and_status_text() {
        let mut st = ContainerState::default();
        assert_eq!(st.human_status(chrono::Utc::now()), "Created");
        let now = chrono::Utc::now();
        st.mark_started(42, &now.to_rfc3339());
        assert!(st.running());
        assert_eq!(st.finished_at, ZERO_TIME);
        let later = now + chrono::Duration::seconds(5);
        assert_eq!(st.human_status(later), "Up 5 seconds");
        st.mark_exited(3, &now.to_rfc3339(), false, "");
        assert_eq!(st.human_status(later), "Exited (3) 5 seconds ago");
        assert_eq!(ContainerState::parse(&st.to_json()), st);
        assert_eq!(ContainerState::parse("junk").status, Status::Dead);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(7200), "2 hours");
    }
}
