//! Events the agent records about its tasks (Started, Unhealthy, Killed, Failed,
//! OOMKilled, Adopted, Completed), as drover.dev Events the API also serves as core v1
//! Events, so `kubectl describe task/X` shows them.
//!
//! Recording never blocks a task's runner: events go through a queue to one writer.
//! Repeats of the same reason and message about the same task are aggregated as
//! Kubernetes does — one Event whose `count` and `lastTimestamp` grow — and a repeat
//! within [`MIN_INTERVAL`] of the last write is only counted, written at the next tick.
//! The agent may create and patch Events but not read them, so what it wrote is
//! remembered in memory (for [`FORGET_AFTER`]); a patch of an Event that is gone
//! creates it again.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use drover_api::Event;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::mpsc;

use crate::client::resource;
use crate::lifecycle::TaskState;

/// A repeat written sooner than this after the last write is only counted.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// After this long without a repeat, an event is forgotten (a new one starts at 1).
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

/// The component named in `source`.
const COMPONENT: &str = "drover-agent";

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Informational.
    Normal,
    /// Needs attention.
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Normal => "Normal",
            Severity::Warning => "Warning",
        }
    }
}

/// One event to record.
#[derive(Clone, Debug)]
struct Record {
    namespace: String,
    task: String,
    uid: Option<String>,
    severity: Severity,
    reason: String,
    message: String,
    at: DateTime<Utc>,
}

impl Record {
    fn key(&self) -> Key {
        (
            self.namespace.clone(),
            self.task.clone(),
            self.uid.clone().unwrap_or_default(),
            self.reason.clone(),
            self.message.clone(),
        )
    }
}

type Key = (String, String, String, String, String);

/// Records events about tasks through the API.
pub struct EventRecorder {
    client: Client,
    host: String,
    queue: OnceLock<mpsc::UnboundedSender<Record>>,
}

impl EventRecorder {
    /// Records through `client`; `host` is named in each event's `source`.
    pub fn new(client: Client, host: String) -> Self {
        EventRecorder {
            client,
            host,
            queue: OnceLock::new(),
        }
    }

    /// A `Normal` event about the task of `state`.
    pub fn normal(&self, state: &TaskState, reason: &str, message: impl Into<String>) {
        self.record(state, Severity::Normal, reason, message.into());
    }

    /// A `Warning` event about the task of `state`.
    pub fn warning(&self, state: &TaskState, reason: &str, message: impl Into<String>) {
        self.record(state, Severity::Warning, reason, message.into());
    }

    /// The event of a task that reached a terminal phase: Killed, OOMKilled, Failed or
    /// Completed, with the status message (why, the exit code, what was not found).
    pub fn ended(&self, state: &TaskState) {
        use drover_api::kinds::task::TaskPhase;
        let reason = state.reason.as_deref().unwrap_or_default();
        let message = state.message.clone().unwrap_or_default();
        match state.phase {
            TaskPhase::Killed => self.normal(state, "Killed", message),
            TaskPhase::Failed if reason == "OOMKilled" => self.warning(state, "OOMKilled", message),
            TaskPhase::Failed if reason == crate::supervisor::UNHEALTHY_REASON => {
                self.warning(state, "Killed", message)
            }
            TaskPhase::Failed => {
                let why = if reason.is_empty() {
                    message
                } else {
                    format!("{reason}: {message}")
                };
                self.warning(state, "Failed", why)
            }
            TaskPhase::Finished => self.normal(state, "Completed", message),
            _ => {}
        }
    }

    fn record(&self, state: &TaskState, severity: Severity, reason: &str, message: String) {
        let record = Record {
            namespace: state.namespace.clone(),
            task: state.name.clone(),
            uid: state.uid.clone(),
            severity,
            reason: reason.to_string(),
            message,
            at: Utc::now(),
        };
        tracing::debug!(task = %state.key(), reason, message = %record.message, "event");
        // The writer starts with the first event, inside the runtime the runners use.
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let writer = Writer {
                client: self.client.clone(),
                host: self.host.clone(),
                seen: HashMap::new(),
            };
            tokio::spawn(writer.run(rx));
            tx
        });
        let _ = queue.send(record);
    }
}

/// What was written for one aggregated event.
struct Seen {
    name: String,
    count: i32,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    last_write: Instant,
    /// Counted but not written yet.
    dirty: bool,
    record: Record,
}

/// The one task that writes events, in order.
struct Writer {
    client: Client,
    host: String,
    seen: HashMap<Key, Seen>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Record>) {
        let mut tick = tokio::time::interval(MIN_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                record = rx.recv() => match record {
                    Some(r) => self.on_record(r).await,
                    None => break,
                },
                _ = tick.tick() => self.flush().await,
            }
        }
        self.flush().await;
    }

    async fn on_record(&mut self, record: Record) {
        let key = record.key();
        self.seen
            .retain(|_, s| s.dirty || s.last_write.elapsed() < FORGET_AFTER);
        if let Some(seen) = self.seen.get_mut(&key) {
            seen.count += 1;
            seen.last = record.at;
            seen.dirty = true;
            if seen.last_write.elapsed() >= MIN_INTERVAL {
                write(&self.client, &self.host, seen).await;
            }
            return;
        }
        let mut seen = Seen {
            name: event_name(&record.task, record.at),
            count: 1,
            first: record.at,
            last: record.at,
            last_write: Instant::now(),
            dirty: true,
            record,
        };
        write(&self.client, &self.host, &mut seen).await;
        self.seen.insert(key, seen);
    }

    async fn flush(&mut self) {
        for seen in self.seen.values_mut().filter(|s| s.dirty) {
            if seen.last_write.elapsed() >= MIN_INTERVAL {
                write(&self.client, &self.host, seen).await;
            }
        }
    }
}

/// `<task>.<hex nanoseconds>`, unique per first occurrence (as Kubernetes names them).
fn event_name(task: &str, at: DateTime<Utc>) -> String {
    let nanos = at.timestamp_nanos_opt().unwrap_or_default();
    format!("{task}.{nanos:x}")
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The Event object of `seen`.
fn event_object(host: &str, seen: &Seen) -> serde_json::Value {
    let r = &seen.record;
    let mut involved = json!({
        "apiVersion": drover_api::API_VERSION,
        "kind": "Task",
        "namespace": r.namespace,
        "name": r.task,
    });
    if let Some(uid) = &r.uid {
        involved["uid"] = json!(uid);
    }
    json!({
        "apiVersion": drover_api::API_VERSION,
        "kind": "Event",
        "metadata": {"name": seen.name, "namespace": r.namespace},
        "involvedObject": involved,
        "reason": r.reason,
        "message": r.message,
        "type": r.severity.as_str(),
        "count": seen.count,
        "firstTimestamp": rfc3339(seen.first),
        "lastTimestamp": rfc3339(seen.last),
        "source": {"component": COMPONENT, "host": host},
    })
}

/// Creates the Event (count 1) or patches its count; failures are logged, never fatal.
async fn write(client: &Client, host: &str, seen: &mut Seen) {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &seen.record.namespace, &resource::<Event>());
    seen.last_write = Instant::now();
    seen.dirty = false;
    let result = if seen.count == 1 {
        create(&api, host, seen).await
    } else {
        let patch = json!({"count": seen.count, "lastTimestamp": rfc3339(seen.last)});
        match api
            .patch(&seen.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 404 => create(&api, host, seen).await,
            other => other.map(|_| ()),
        }
    };
    if let Err(error) = result {
        tracing::warn!(
            task = %format!("{}/{}", seen.record.namespace, seen.record.task),
            reason = %seen.record.reason,
            %error,
            "could not record an event"
        );
    }
}

async fn create(api: &Api<DynamicObject>, host: &str, seen: &Seen) -> Result<(), kube::Error> {
    let object: DynamicObject = match serde_json::from_value(event_object(host, seen)) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "encoding an event");
            return Ok(());
        }
    };
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => Ok(()),
        // Written already (a retry): the next repeat patches it.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_the_task_by_uid_and_say_who_reported_them() {
        let at = Utc::now();
        let record = Record {
            namespace: "default".into(),
            task: "web-0".into(),
            uid: Some("u1".into()),
            severity: Severity::Warning,
            reason: "Unhealthy".into(),
            message: "HTTP GET / returned 503".into(),
            at,
        };
        let seen = Seen {
            name: event_name("web-0", at),
            count: 3,
            first: at,
            last: at,
            last_write: Instant::now(),
            dirty: false,
            record,
        };
        let ev = event_object("h1", &seen);
        assert_eq!(ev["involvedObject"]["uid"], "u1");
        assert_eq!(ev["involvedObject"]["kind"], "Task");
        assert_eq!(ev["type"], "Warning");
        assert_eq!(ev["count"], 3);
        assert_eq!(ev["source"]["component"], "drover-agent");
        assert!(seen.name.starts_with("web-0."), "{}", seen.name);
        assert_ne!(
            event_name("a", at),
            event_name("a", at + chrono::Duration::nanoseconds(1))
        );
    }
}
