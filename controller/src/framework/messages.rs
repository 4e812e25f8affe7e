//! The Mesos-v1-shaped JSON of the scheduler API: the calls frameworks send and the
//! events they receive, and how Drover's Tasks and offers map onto them
//! (docs/frameworks.md is the reference for users).

use std::collections::BTreeMap;

use drover_api::kinds::task::{Task, TaskPhase};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::allocator::offers::Offer;
use crate::allocator::Amounts;

/// An id, as Mesos writes it (`{"value": "x"}`) or plainly (`"x"`).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Id {
    Wrapped { value: String },
    Plain(String),
}

impl Id {
    pub fn as_str(&self) -> &str {
        match self {
            Id::Wrapped { value } | Id::Plain(value) => value,
        }
    }
}

/// One call: `type` says which of the parts is filled in.
#[derive(Debug, Default, Deserialize)]
pub struct Call {
    #[serde(rename = "type", default)]
    pub type_: String,
    #[serde(default)]
    pub framework_id: Option<Id>,
    #[serde(default)]
    pub subscribe: Option<Subscribe>,
    #[serde(default)]
    pub accept: Option<Accept>,
    #[serde(default)]
    pub decline: Option<Decline>,
    #[serde(default)]
    pub kill: Option<Kill>,
    #[serde(default)]
    pub reconcile: Option<Reconcile>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Subscribe {
    #[serde(default)]
    pub framework_info: FrameworkInfo,
}

#[derive(Debug, Default, Deserialize)]
pub struct FrameworkInfo {
    /// The Framework object's name (a DNS label); also the framework id.
    #[serde(default)]
    pub name: String,
    /// Allocation role (default: the Framework object's, else `*`).
    #[serde(default)]
    pub role: Option<String>,
    /// Seconds its tasks survive a disconnection before they are killed (Mesos'
    /// `failover_timeout`; sets the Framework's `spec.failoverTimeoutSeconds`; unset on
    /// both = they are never killed for it).
    #[serde(default)]
    pub failover_timeout: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    /// Seconds the declined (or accepted) node is not offered again (default 5).
    #[serde(default, alias = "refuseSeconds")]
    pub refuse_seconds: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Accept {
    #[serde(default)]
    pub offer_ids: Vec<Id>,
    #[serde(default)]
    pub operations: Vec<Operation>,
    #[serde(default)]
    pub filters: Option<Filters>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Operation {
    #[serde(rename = "type", default)]
    pub type_: String,
    #[serde(default)]
    pub launch: Option<Launch>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Launch {
    #[serde(default)]
    pub task_infos: Vec<TaskInfo>,
}

/// What to launch: Drover's small task shape (docs/frameworks.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskInfo {
    /// Free text, kept as the Task's `drover.dev/task-name` annotation.
    #[serde(default)]
    pub name: Option<String>,
    /// Becomes the Task's name (a DNS subdomain) in the framework's namespace.
    #[serde(default)]
    pub task_id: Option<Id>,
    /// Ignored: the offer says the node (accepted for Mesos clients' sake).
    #[serde(default)]
    pub agent_id: Option<Id>,
    #[serde(default)]
    pub resources: TaskResources,
    /// A shell command line (`/bin/sh -c`).
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Host ports, each from the offer's port ranges (`PORT0..n` in the task's env).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// SIGTERM to SIGKILL on a kill (default 30).
    #[serde(default)]
    pub kill_grace_period_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskResources {
    #[serde(default)]
    pub cpus: Option<f64>,
    /// MiB.
    #[serde(default)]
    pub mem: Option<f64>,
    /// MiB.
    #[serde(default)]
    pub disk: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Decline {
    #[serde(default)]
    pub offer_ids: Vec<Id>,
    #[serde(default)]
    pub filters: Option<Filters>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Kill {
    #[serde(default)]
    pub task_id: Option<Id>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Reconcile {
    #[serde(default)]
    pub tasks: Vec<ReconcileTask>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ReconcileTask {
    #[serde(default)]
    pub task_id: Option<Id>,
}

/// `namespace/name` of a Task.
pub fn task_key(t: &Task) -> String {
    format!(
        "{}/{}",
        t.metadata.namespace.as_deref().unwrap_or_default(),
        t.metadata.name.as_deref().unwrap_or_default()
    )
}

/// What a Task holds on its node (Marathon's defaults where unset, as the apps
/// controller counts).
pub fn task_amounts(t: &Task) -> Amounts {
    let r = &t.spec.resources;
    Amounts {
        cpus: r.cpus.unwrap_or(drover_api::defaults::CPUS),
        mem_mib: r.mem_mib.unwrap_or(drover_api::defaults::MEM_MIB),
        disk_mib: r.disk_mib.unwrap_or(0),
        gpus: r.gpus.unwrap_or(0),
    }
}

fn scalar(name: &str, value: f64) -> Value {
    json!({"name": name, "type": "SCALAR", "scalar": {"value": value}})
}

/// An offer as Mesos writes it: resources as a list of scalars and port ranges.
pub fn offer_json(o: &Offer) -> Value {
    let mut resources = vec![
        scalar("cpus", o.resources.cpus),
        scalar("mem", o.resources.mem_mib as f64),
    ];
    if o.resources.disk_mib > 0 {
        resources.push(scalar("disk", o.resources.disk_mib as f64));
    }
    if o.resources.gpus > 0 {
        resources.push(scalar("gpus", f64::from(o.resources.gpus)));
    }
    if !o.ports.is_empty() {
        let ranges: Vec<Value> = o
            .ports
            .iter()
            .map(|(a, b)| json!({"begin": a, "end": b}))
            .collect();
        resources.push(json!({"name": "ports", "type": "RANGES", "ranges": {"range": ranges}}));
    }
    json!({
        "id": {"value": o.id},
        "framework_id": {"value": o.framework},
        "agent_id": {"value": o.node},
        "hostname": o.node,
        "resources": resources,
    })
}

pub fn rescind_event(offer_id: &str) -> Value {
    json!({"type": "RESCIND", "rescind": {"offer_id": {"value": offer_id}}})
}

pub fn error_event(message: &str) -> Value {
    json!({"type": "ERROR", "error": {"message": message}})
}

/// Mesos's name of a task state.
pub fn mesos_state(phase: TaskPhase) -> &'static str {
    match phase {
        TaskPhase::Pending | TaskPhase::Scheduled => "TASK_STAGING",
        TaskPhase::Starting => "TASK_STARTING",
        TaskPhase::Running => "TASK_RUNNING",
        TaskPhase::Finished => "TASK_FINISHED",
        TaskPhase::Failed => "TASK_FAILED",
        TaskPhase::Killed => "TASK_KILLED",
        TaskPhase::Lost => "TASK_LOST",
    }
}

/// The UPDATE event of `t`, in `phase` if given (a deleted Task: Killed), else its own.
pub fn update_event(t: &Task, phase: Option<TaskPhase>) -> Value {
    let status = t.status.clone().unwrap_or_default();
    let phase = phase.unwrap_or(status.phase);
    let mut s = json!({
        "task_id": {"value": t.metadata.name.as_deref().unwrap_or_default()},
        "state": mesos_state(phase),
        "source": "SOURCE_AGENT",
        "timestamp": chrono::Utc::now().timestamp_millis() as f64 / 1000.0,
    });
    if let Some(node) = &t.spec.node_name {
        s["agent_id"] = json!({"value": node});
    }
    if let Some(m) = &status.message {
        s["message"] = json!(m);
    }
    if let Some(r) = &status.reason {
        s["reason"] = json!(r);
    }
    if let Some(h) = status.healthy {
        s["healthy"] = json!(h);
    }
    json!({"type": "UPDATE", "update": {"status": s}})
}

/// The UPDATE of a task this framework does not have (RECONCILE of an unknown id).
pub fn unknown_task_update(task_id: &str) -> Value {
    json!({"type": "UPDATE", "update": {"status": {
        "task_id": {"value": task_id},
        "state": "TASK_UNKNOWN",
        "source": "SOURCE_MASTER",
        "message": "no such task of this framework",
    }}})
}
