//! Restart policies (`--restart no|always|unless-stopped|on-failure[:N]`)
//! and dockerd's back-off between restarts: 100 ms, doubled at each
//! restart up to one minute, back to 100 ms once a run lasted 10 s.

use std::time::Duration;

use serde_json::Value;

use crate::error::{EngineError, EngineResult};

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long resets the back-off.
const STABLE_RUN: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RestartPolicy {
    #[default]
    No,
    Always,
    UnlessStopped,
    /// At most `max` restarts; 0 means no limit.
    OnFailure {
        max: u32,
    },
}

impl RestartPolicy {
    /// `HostConfig.RestartPolicy`, validated with dockerd's messages.
    pub fn parse(v: Option<&Value>) -> EngineResult<RestartPolicy> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(RestartPolicy::No);
        };
        let name = v.get("Name").and_then(Value::as_str).unwrap_or("");
        let count = v
            .get("MaximumRetryCount")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let bad = |m: String| EngineError::InvalidParameter(format!("invalid restart policy: {m}"));
        match name {
            "" => Ok(RestartPolicy::No),
            "no" | "always" | "unless-stopped" if count != 0 => {
                let mut m =
                    "maximum retry count can only be used with 'on-failure'".to_string();
                if count < 0 {
                    m.push_str(" and cannot be negative");
                }
                Err(bad(m))
            }
            "no" => Ok(RestartPolicy::No),
            "always" => Ok(RestartPolicy::Always),
            "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
            "on-failure" if count < 0 => Err(bad("maximum retry count cannot be negative".into())),
            "on-failure" => Ok(RestartPolicy::OnFailure {
                max: u32::try_from(count).unwrap_or(u32::MAX),
            }),
            other => Err(bad(format!(
                "unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
            ))),
        }
    }

    /// The policy stored in a container's HostConfig (already validated).
    pub fn of(host_config: &Value) -> RestartPolicy {
        RestartPolicy::parse(host_config.get("RestartPolicy")).unwrap_or_default()
    }

    pub fn is_none(self) -> bool {
        self == RestartPolicy::No
    }

    /// Whether an exit calls for a restart. `manually_stopped`: the user
    /// stopped it (or the daemon is going down).
    pub fn should_restart(self, exit_code: i32, manually_stopped: bool, restarts: u32) -> bool {
        if manually_stopped {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure { max } => exit_code != 0 && (max == 0 || restarts < max),
        }
    }

    /// Whether the daemon, starting, brings a stopped container back.
    /// `always` does even after `docker stop`; `unless-stopped` does not.
    pub fn restart_at_daemon_start(
        self,
        exit_code: i32,
        manually_stopped: bool,
        restarts: u32,
    ) -> bool {
        match self {
            RestartPolicy::Always => true,
            other => other.should_restart(exit_code, manually_stopped, restarts),
        }
    }
}

/// The delay before the next restart, given the previous one (zero for
/// none yet) and how long the last run lasted.
pub fn next_delay(previous: Duration, last_run: Duration) -> Duration {
    let previous = if last_run >= STABLE_RUN {
        Duration::ZERO
    } else {
        previous
    };
    if previous.is_zero() {
        FIRST_DELAY
    } else {
        (previous * 2).min(MAX_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policies_parse_with_dockerds_messages() {
        let p = |v: Value| RestartPolicy::parse(Some(&v));
        assert_eq!(p(json!({"Name": ""})).unwrap(), RestartPolicy::No);
        assert_eq!(RestartPolicy::parse(None).unwrap(), RestartPolicy::No);
        assert_eq!(p(json!({"Name": "always"})).unwrap(), RestartPolicy::Always);
        assert_eq!(
            p(json!({"Name": "on-failure", "MaximumRetryCount": 3})).unwrap(),
            RestartPolicy::OnFailure { max: 3 }
        );
        let e = p(json!({"Name": "always", "MaximumRetryCount": 2}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("can only be used with 'on-failure'"), "{e}");
        let e = p(json!({"Name": "on-failure", "MaximumRetryCount": -1}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be negative"), "{e}");
        let e = p(json!({"Name": "sometimes"})).unwrap_err().to_string();
        assert!(e.contains("unknown policy 'sometimes'"), "{e}");
    }

    #[test]
    fn decisions() {
        let f = RestartPolicy::OnFailure { max: 2 };
        assert!(f.should_restart(1, false, 0));
        assert!(f.should_restart(1, false, 1));
        assert!(!f.should_restart(1, false, 2));
        assert!(!f.should_restart(0, false, 0));
        assert!(RestartPolicy::OnFailure { max: 0 }.should_restart(1, false, 99));
        assert!(RestartPolicy::Always.should_restart(0, false, 0));
        assert!(!RestartPolicy::Always.should_restart(0, true, 0));
        assert!(RestartPolicy::Always.restart_at_daemon_start(0, true, 0));
        assert!(!RestartPolicy::UnlessStopped.restart_at_daemon_start(0, true, 0));
        assert!(RestartPolicy::UnlessStopped.restart_at_daemon_start(0, false, 0));
        assert!(!RestartPolicy::No.should_restart(1, false, 0));
    }

    #[test]
    fn back_off_doubles_and_resets() {
        let short = Duration::from_secs(1);
        let d1 = next_delay(Duration::ZERO, short);
        assert_eq!(d1, Duration::from_millis(100));
        let d2 = next_delay(d1, short);
        assert_eq!(d2, Duration::from_millis(200));
        assert_eq!(next_delay(Duration::from_secs(50), short), MAX_DELAY);
        assert_eq!(next_delay(d2, Duration::from_secs(10)), FIRST_DELAY);
    }
}
