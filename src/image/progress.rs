//! dockerd's JSON progress messages (`jsonmessage.JSONMessage`), streamed by
//! pulls, imports and loads so the docker CLI can draw its progress bars.

use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::{EngineError, EngineResult};

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ProgressDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ErrorDetail {
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Message {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(rename = "progressDetail", skip_serializing_if = "Option::is_none")]
    pub progress_detail: Option<ProgressDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(rename = "errorDetail", skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<ErrorDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Message {
    pub fn status(s: impl Into<String>) -> Message {
        Message {
            status: Some(s.into()),
            ..Default::default()
        }
    }

    /// A per-layer status line (`Pulling fs layer`, `Pull complete`, ...).
    pub fn layer(id: &str, s: &str) -> Message {
        Message {
            status: Some(s.into()),
            id: Some(id.into()),
            progress_detail: Some(ProgressDetail::default()),
            ..Default::default()
        }
    }

    /// A progress bar line (`Downloading`, `Extracting`).
    pub fn bar(id: &str, s: &str, current: u64, total: u64) -> Message {
        Message {
            status: Some(s.into()),
            id: Some(id.into()),
            progress_detail: Some(ProgressDetail {
                current: Some(current),
                total: Some(total),
            }),
            progress: Some(bar_text(current, total)),
            ..Default::default()
        }
    }

    /// A message carrying build-style output, as `docker import`/`load` print.
    pub fn stream(s: impl Into<String>) -> Message {
        Message {
            stream: Some(s.into()),
            ..Default::default()
        }
    }

    pub fn error(msg: impl Into<String>) -> Message {
        let msg = msg.into();
        Message {
            error_detail: Some(ErrorDetail {
                message: msg.clone(),
            }),
            error: Some(msg),
            ..Default::default()
        }
    }
}

/// The text bar older clients print as is: `[=====>    ]  1.2MB/3.4MB`.
fn bar_text(current: u64, total: u64) -> String {
    const WIDTH: u64 = 50;
    let filled = (current.min(total) * WIDTH)
        .checked_div(total)
        .unwrap_or(0)
        .min(WIDTH);
    let mut bar = "=".repeat(filled as usize);
    if filled < WIDTH {
        bar.push('>');
        bar.push_str(&" ".repeat((WIDTH - filled - 1) as usize));
    } else {
        bar.pop();
        bar.push('>');
    }
    format!("[{bar}] {:>8}/{}", human_size(current), human_size(total))
}

/// Decimal units with three significant digits, like go-units' HumanSize.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", UNITS[i])
}

/// Where an operation reports progress. A closed receiver (the client went
/// away) cancels the operation at its next report.
#[derive(Clone)]
pub struct Progress {
    tx: Option<mpsc::Sender<Message>>,
}

impl Progress {
    pub fn channel(depth: usize) -> (Progress, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(depth);
        (Progress { tx: Some(tx) }, rx)
    }

    /// Reports nowhere.
    pub fn discard() -> Progress {
        Progress { tx: None }
    }

    pub async fn send(&self, m: Message) -> EngineResult<()> {
        match &self.tx {
            None => Ok(()),
            Some(tx) => tx
                .send(m)
                .await
                .map_err(|_| EngineError::Internal("operation cancelled: client went away".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_bars_look_like_dockers() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(2_150_000), "2.15MB");
        assert_eq!(human_size(12_300_000), "12.3MB");
        assert_eq!(human_size(123_000_000), "123MB");
        let b = bar_text(50, 100);
        assert!(b.starts_with("[=========================>"), "{b}");
        assert!(
            bar_text(100, 100).starts_with("[=================================================>]")
        );
        let m = serde_json::to_string(&Message::layer("abc", "Pull complete")).unwrap();
        assert_eq!(
            m,
            r#"{"status":"Pull complete","progressDetail":{},"id":"abc"}"#
        );
    }
}
