//! Task: one attempt of one instance, bound to one node (Mesos task / Pod). Never
//! restarted in place: a replacement is a new Task.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::container::ContainerSpec;
use crate::defaults::{self, or_set, Defaulting};
use crate::health::HealthCheck;
use crate::kinds::{kind_constructor, metadata_accessors};
use crate::meta::{Condition, ObjectMeta};
use crate::ports::Protocol;
use crate::resource::{validate_object_header, DroverKind, PrinterColumn, AGE_COLUMN};
use crate::resources::Resources;
use crate::validation::{check_label, check_subdomain, Path, Validate, ValidationErrors};

/// One attempt of one instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// `drover.dev/v1alpha1`.
    #[serde(default)]
    pub api_version: String,
    /// `Task`.
    #[serde(default)]
    pub kind: String,
    /// Standard object metadata (ownerReferences point at the owner).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What to run, and where.
    #[serde(default)]
    pub spec: TaskSpec,
    /// What the agent observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
}

/// What owns a Task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OwnerKind {
    /// An instance of an App.
    App,
    /// An attempt of a JobRun.
    JobRun,
    /// Launched by an external framework through the offers API.
    Framework,
}

/// The owner of a Task, denormalised from ownerReferences for agents and selectors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskOwner {
    /// App, JobRun or Framework.
    pub kind: OwnerKind,
    /// Name of the owner.
    pub name: String,
    /// UID of the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// A port with its host port resolved.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskPort {
    /// Port name, if the App named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port inside the container, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<i32>,
    /// Port allocated on the node.
    pub host_port: i32,
    /// `tcp` or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

/// A volume as mounted for this task on its node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeBinding {
    /// Name of the mount in the App/Job.
    pub name: String,
    /// Path inside the task.
    pub mount_path: String,
    /// The `Volume` object (persistent volumes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_name: Option<String>,
    /// Path on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// Read-only mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// Desired state of a Task: fully resolved, so the agent needs nothing else.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    /// The node the task is bound to (empty until scheduled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Who owns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<TaskOwner>,
    /// Instance index within the owner (stable across replacements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<i32>,
    /// Version of the owner's template this task runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// What to run.
    #[serde(default)]
    pub container: ContainerSpec,
    /// What it needs.
    #[serde(default)]
    pub resources: Resources,
    /// Ports with their host ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<TaskPort>,
    /// Volumes with their node paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeBinding>,
    /// Health checks the agent runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheck>,
    /// Readiness checks the agent runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readiness_checks: Vec<HealthCheck>,
    /// Seconds between SIGTERM and SIGKILL (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_grace_period_seconds: Option<i64>,
    /// Allocation role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Lifecycle phase of a Task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum TaskPhase {
    /// Created, waiting for a node.
    #[default]
    Pending,
    /// Bound to a node, not yet picked up by its agent.
    Scheduled,
    /// The agent is preparing or starting it.
    Starting,
    /// Running.
    Running,
    /// Exited with status 0.
    Finished,
    /// Exited non-zero, failed to start, or killed by a failing health check.
    Failed,
    /// Killed on request.
    Killed,
    /// Its node went away.
    Lost,
}

impl TaskPhase {
    /// True for Finished, Failed, Killed and Lost: the task will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskPhase::Finished | TaskPhase::Failed | TaskPhase::Killed | TaskPhase::Lost
        )
    }

    /// Whether the lifecycle allows moving from `self` to `next` (terminal phases are final;
    /// any live phase may become Failed, Killed or Lost).
    pub fn can_become(self, next: TaskPhase) -> bool {
        use TaskPhase::*;
        if self.is_terminal() {
            return false;
        }
        match next {
            Pending => false,
            Scheduled => self == Pending,
            Starting => matches!(self, Pending | Scheduled),
            Running => matches!(self, Scheduled | Starting),
            Finished => self == Running,
            Failed | Killed | Lost => true,
        }
    }
}

/// Observed state of a Task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase.
    #[serde(default)]
    pub phase: TaskPhase,
    /// Health check verdict (absent: no checks or not yet known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// Readiness verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Exit status, once exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Signal that ended it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// One-word CamelCase reason for the phase (`HealthCheckFailed`, `NodeLost`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it started running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When it reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Process id (process driver) on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i64>,
    /// Container id (runc, docker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Address of the node, for clients connecting to host ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// Consecutive failed health checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_health_failures: Option<i32>,
    /// `Healthy`, `Ready`, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Resource usage, sampled by the agent from the task's cgroup every ~10 s while it
    /// runs and once at its end (absent where the node gives tasks no cgroup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TaskUsage>,
}

/// What a task uses, as its node's agent last sampled it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskUsage {
    /// CPU time used so far (user + system), in seconds.
    pub cpu_seconds: f64,
    /// Memory charged to the task when sampled (cgroup v1 `memory.usage_in_bytes`,
    /// v2 `memory.current`), in bytes.
    pub memory_bytes: u64,
    /// When the agent sampled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled_at: Option<Time>,
}

kind_constructor!(Task, TaskSpec);

impl DroverKind for Task {
    const KIND: &'static str = "Task";
    const PLURAL: &'static str = "tasks";
    const SINGULAR: &'static str = "task";
    const SHORT_NAMES: &'static [&'static str] = &["tk"];
    const CATEGORIES: &'static [&'static str] = &["drover", "all"];
    const NAMESPACED: bool = true;
    const PRINTER_COLUMNS: &'static [PrinterColumn] = &[
        PrinterColumn {
            name: "Node",
            type_: "string",
            json_path: ".spec.nodeName",
            description: "Node the task is bound to",
            priority: 0,
        },
        PrinterColumn {
            name: "Phase",
            type_: "string",
            json_path: ".status.phase",
            description: "Lifecycle phase",
            priority: 0,
        },
        PrinterColumn {
            name: "Healthy",
            type_: "boolean",
            json_path: ".status.healthy",
            description: "Health check verdict",
            priority: 0,
        },
        AGE_COLUMN,
        PrinterColumn {
            name: "Exit",
            type_: "integer",
            json_path: ".status.exitCode",
            description: "Exit status",
            priority: 1,
        },
    ];
    metadata_accessors!();
}

impl Defaulting for Task {
    fn apply_defaults(&mut self) {
        crate::kinds::default_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        let s = &mut self.spec;
        s.container.apply_defaults();
        s.health_checks
            .iter_mut()
            .for_each(HealthCheck::apply_defaults);
        s.readiness_checks
            .iter_mut()
            .for_each(HealthCheck::apply_defaults);
        or_set(
            &mut s.kill_grace_period_seconds,
            defaults::KILL_GRACE_PERIOD_SECONDS,
        );
        or_set(&mut s.role, defaults::ROLE.to_string());
    }
}

impl Validate for Task {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        validate_object_header::<Self>(&self.api_version, &self.kind, &self.metadata, &mut errors);
        let s = &self.spec;
        let spec = Path::root("spec");
        if let Some(node) = &s.node_name {
            check_subdomain(&mut errors, &spec.child("nodeName"), node);
        }
        if let Some(owner) = &s.owner {
            check_subdomain(&mut errors, &spec.child("owner").child("name"), &owner.name);
        }
        if s.instance.is_some_and(|i| i < 0) {
            errors.invalid(&spec.child("instance"), "must be >= 0");
        }
        s.container
            .validate_into(&spec.child("container"), &mut errors);
        s.resources
            .validate_into(&spec.child("resources"), &mut errors);
        let mut host_ports = BTreeSet::new();
        for (i, port) in s.ports.iter().enumerate() {
            let p = spec.child("ports").index(i);
            if let Some(name) = &port.name {
                check_label(&mut errors, &p.child("name"), name);
            }
            if !(1..=65535).contains(&port.host_port) {
                errors.invalid(&p.child("hostPort"), "must be between 1 and 65535");
            } else if !host_ports.insert((port.host_port, port.protocol.unwrap_or_default())) {
                errors.duplicate(&p.child("hostPort"), &port.host_port.to_string());
            }
        }
        let task_ports: Vec<crate::ports::PortSpec> = s
            .ports
            .iter()
            .map(|p| crate::ports::PortSpec {
                name: p.name.clone(),
                container_port: p.container_port,
                host_port: Some(p.host_port),
                protocol: p.protocol,
            })
            .collect();
        for (i, hc) in s.health_checks.iter().enumerate() {
            hc.validate_into(
                &spec.child("healthChecks").index(i),
                &task_ports,
                &mut errors,
            );
        }
        for (i, rc) in s.readiness_checks.iter().enumerate() {
            rc.validate_into(
                &spec.child("readinessChecks").index(i),
                &task_ports,
                &mut errors,
            );
        }
        for (i, v) in s.volumes.iter().enumerate() {
            if !v.mount_path.starts_with('/') {
                errors.invalid(
                    &spec.child("volumes").index(i).child("mountPath"),
                    "must be an absolute path",
                );
            }
        }
        if s.kill_grace_period_seconds.is_some_and(|n| n < 0) {
            errors.invalid(&spec.child("killGracePeriodSeconds"), "must be >= 0");
        }
        errors.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_move_forward_only() {
        use TaskPhase::*;
        assert!(Pending.can_become(Scheduled));
        assert!(Scheduled.can_become(Starting));
        assert!(Starting.can_become(Running));
        assert!(Running.can_become(Finished));
        assert!(Running.can_become(Lost));
        assert!(!Finished.can_become(Running));
        assert!(!Killed.can_become(Failed));
        assert!(!Running.can_become(Pending));
    }

    #[test]
    fn defaults_kill_grace_and_driver() {
        let mut t = Task::new(
            "default",
            "web-0-abc",
            TaskSpec {
                container: ContainerSpec {
                    cmd: Some("sleep 100".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        t.apply_defaults();
        assert_eq!(t.spec.kill_grace_period_seconds, Some(30));
        assert_eq!(
            t.spec.container.driver,
            Some(crate::container::Driver::Process)
        );
        assert_eq!(t.validate(), Ok(()));
    }
}
