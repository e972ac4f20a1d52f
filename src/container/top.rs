//! `docker top`: the host's `ps` output, kept to the container's
//! processes, as dockerd does it.

use super::ContainerService;
use crate::error::{EngineError, EngineResult};
use crate::runtime::cgroups;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Top {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

/// Keeps the rows of `ps` output whose PID column is in `pids`; the last
/// column takes the rest of the line (commands have spaces).
pub fn parse_ps(output: &str, pids: &[i32]) -> EngineResult<Top> {
    let mut lines = output.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| EngineError::Internal("Couldn't find PID field in ps output".into()))?;
    let mut processes = vec![];
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() <= pid_col {
            continue;
        }
        let Ok(pid) = fields[pid_col].parse::<i32>() else {
            return Err(EngineError::Internal(format!(
                "Unexpected pid '{}': invalid pid",
                fields[pid_col]
            )));
        };
        if !pids.contains(&pid) {
            continue;
        }
        let last = titles.len().saturating_sub(1).min(fields.len());
        let mut row: Vec<String> = fields[..last].iter().map(|s| s.to_string()).collect();
        row.push(fields[last..].join(" "));
        processes.push(row);
    }
    Ok(Top { titles, processes })
}

impl ContainerService {
    pub async fn top(&self, name: &str, ps_args: &str) -> EngineResult<Top> {
        let c = self.get(name).await?;
        if !c.state.running() {
            return Err(c.not_running());
        }
        let args: Vec<String> = if ps_args.trim().is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.split_whitespace().map(str::to_string).collect()
        };
        let root = self.cgroup_root.clone();
        let path = Self::cgroup_path(c.id());
        let pids = tokio::task::spawn_blocking(move || cgroups::manager_for(&root, &path)?.pids())
            .await
            .map_err(EngineError::internal)?
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        let out = tokio::process::Command::new("ps")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| EngineError::Internal(format!("Error running ps: {e}")))?;
        if !out.status.success() {
            return Err(EngineError::Internal(format!(
                "Error running ps: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let top = parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)?;
        self.emit(&c, "top", &[]);
        Ok(top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_containers_rows() {
        let out = "UID PID PPID C STIME TTY TIME CMD\n\
                   root 1 0 0 10:00 ? 00:00:01 /sbin/init\n\
                   root 4242 4241 0 10:01 ? 00:00:00 sleep 100 now\n";
        let top = parse_ps(out, &[4242]).unwrap();
        assert_eq!(top.titles.len(), 8);
        assert_eq!(top.processes.len(), 1);
        assert_eq!(top.processes[0][1], "4242");
        assert_eq!(top.processes[0][7], "sleep 100 now");
        assert!(parse_ps("USER COMMAND\nroot x\n", &[1]).is_err());
    }
}
