//! The single event broadcaster behind `GET /events`. Engine code publishes
//! after its change is committed; subscribers get a live stream, and a short
//! in-memory history serves `since` like dockerd's.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

/// dockerd keeps this many past events for `since`.
const HISTORY: usize = 256;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// One event in dockerd's wire shape.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    /// Deprecated fields older clients still read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

impl Event {
    pub fn new(kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) -> Event {
        let nanos = crate::store::images::now_nanos();
        // Images and containers also carry the legacy status/id/from trio.
        let legacy = kind == "image" || kind == "container";
        Event {
            status: legacy.then(|| action.to_string()),
            id: legacy.then(|| id.to_string()),
            from: (kind == "container")
                .then(|| attributes.get("image").cloned())
                .flatten(),
            kind: kind.to_string(),
            action: action.to_string(),
            actor: Actor {
                id: id.to_string(),
                attributes,
            },
            scope: "local".into(),
            time: nanos / 1_000_000_000,
            time_nano: nanos,
        }
    }
}

#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    history: Arc<Mutex<VecDeque<Event>>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl EventBus {
    pub fn new() -> EventBus {
        let (tx, _) = broadcast::channel(1024);
        EventBus {
            tx,
            history: Arc::new(Mutex::new(VecDeque::with_capacity(HISTORY))),
        }
    }

    pub fn publish(&self, event: Event) {
        tracing::debug!(kind = %event.kind, action = %event.action, id = %event.actor.id, "event");
        if let Ok(mut h) = self.history.lock() {
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(event.clone());
        }
        // No subscriber is not an error.
        let _ = self.tx.send(event);
    }

    /// Past events plus a live receiver, taken atomically so none is lost
    /// or seen twice in between.
    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.tx.subscribe();
        (h.iter().cloned().collect(), rx)
    }
}

/// dockerd's event filters: `type`, `event` (action), `scope`, per-kind
/// names/IDs (`image`, `container`, `network`, `volume`, `daemon`) and
/// `label`. Values of one filter are ORed, filters are ANDed.
pub fn event_matches(e: &Event, f: &crate::filters::Filters) -> bool {
    let attrs = &e.actor.attributes;
    let name = attrs.get("name").map(String::as_str).unwrap_or("");
    let matches_object = |kind: &str| {
        f.any_or_absent(kind, |v| {
            e.kind == kind && (e.actor.id == v || e.actor.id.starts_with(v) || name == v)
                || (kind == "image"
                    && (attrs.get("image").is_some_and(|i| i == v) || e.from.as_deref() == Some(v)))
        })
    };
    f.any_or_absent("type", |t| e.kind == t)
        && f.any_or_absent("event", |a| {
            e.action == a || e.action.split(':').next() == Some(a)
        })
        && f.any_or_absent("scope", |s| e.scope == s)
        && matches_object("image")
        && matches_object("container")
        && matches_object("network")
        && matches_object("volume")
        && matches_object("daemon")
        && f.labels_match("label", attrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::Filters;

    fn ev(kind: &str, action: &str, id: &str, name: &str) -> Event {
        let mut a = BTreeMap::new();
        a.insert("name".to_string(), name.to_string());
        a.insert("l".to_string(), "v".to_string());
        Event::new(kind, action, id, a)
    }

    #[test]
    fn filters_select_events() {
        let e = ev("image", "pull", "busybox:latest", "busybox");
        let f = |s: &str| Filters::parse(s).unwrap();
        assert!(event_matches(&e, &f("")));
        assert!(event_matches(&e, &f(r#"{"type":["image"]}"#)));
        assert!(!event_matches(&e, &f(r#"{"type":["container"]}"#)));
        assert!(event_matches(&e, &f(r#"{"event":["pull","tag"]}"#)));
        assert!(!event_matches(&e, &f(r#"{"event":["delete"]}"#)));
        assert!(event_matches(&e, &f(r#"{"image":["busybox"]}"#)));
        assert!(!event_matches(&e, &f(r#"{"image":["alpine"]}"#)));
        assert!(event_matches(&e, &f(r#"{"label":["l=v"]}"#)));
        assert!(!event_matches(&e, &f(r#"{"label":["l=w"]}"#)));
    }

    #[tokio::test]
    async fn history_and_live_events_do_not_overlap() {
        let bus = EventBus::new();
        bus.publish(ev("image", "pull", "a", "a"));
        let (past, mut rx) = bus.subscribe();
        bus.publish(ev("image", "tag", "b", "b"));
        assert_eq!(past.len(), 1);
        assert_eq!(rx.recv().await.unwrap().action, "tag");
        let json = serde_json::to_value(&past[0]).unwrap();
        assert_eq!(json["Type"], "image");
        assert_eq!(json["status"], "pull");
        assert_eq!(json["Actor"]["Attributes"]["name"], "a");
        assert_eq!(json["scope"], "local");
    }
}
