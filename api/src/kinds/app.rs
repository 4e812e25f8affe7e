//! App: a long-running service (Marathon app / Aurora service).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::constraint::{validate_rules, ConstraintRule};
use crate::container::ContainerSpec;
use crate::defaults::{self, or_set, Defaulting};
use crate::health::HealthCheck;
use crate::kinds::{kind_constructor, metadata_accessors};
use crate::meta::{Condition, ObjectMeta};
use crate::mounts::{validate_mounts, VolumeMount};
use crate::ports::{validate_ports, PortSpec};
use crate::resource::{
    validate_object_header, DroverKind, PrinterColumn, ScaleSubresource, AGE_COLUMN,
};
use crate::resources::Resources;
use crate::validation::{check_subdomain, Path, Validate, ValidationErrors};

/// A long-running service: `instances` copies of one task template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct App {
    /// `drover.dev/v1alpha1`.
    #[serde(default)]
    pub api_version: String,
    /// `App`.
    #[serde(default)]
    pub kind: String,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state.
    #[serde(default)]
    pub spec: AppSpec,
    /// Observed state, written by the apps controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AppStatus>,
}

/// Which instances go first when scaling down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum KillSelection {
    /// Kill the most recently started instances first (Marathon's default).
    #[default]
    YoungestFirst,
    /// Kill the oldest instances first.
    OldestFirst,
}

/// How a new version replaces the old one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStrategy {
    /// Fraction of `instances` that must stay healthy during an upgrade (0–1, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_health_capacity: Option<f64>,
    /// Fraction of `instances` that may run in addition during an upgrade (0–1, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_over_capacity: Option<f64>,
    /// Seconds a rollout may go without progress before it counts as failed (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i64>,
    /// Roll back to the previous version when the deadline passes (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_rollback: Option<bool>,
}

/// Launch delay after failed or finished tasks (not after kills).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    /// First delay in seconds (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Multiplier per consecutive failure (default 1.15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// Upper bound of the delay in seconds (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_launch_delay_seconds: Option<i64>,
}

/// Desired state of an App.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppSpec {
    /// Number of instances (default 1; 0 suspends the App).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<i32>,
    /// What each instance runs.
    #[serde(default)]
    pub container: ContainerSpec,
    /// What each instance needs.
    #[serde(default)]
    pub resources: Resources,
    /// Ports each instance listens on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// Health checks: failing instances are killed and replaced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheck>,
    /// Readiness checks: gate rollouts and service registration, never kill.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readiness_checks: Vec<HealthCheck>,
    /// Placement constraints (Marathon syntax, both forms).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<ConstraintRule>,
    /// Volumes mounted into each instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    /// Rolling upgrade policy.
    #[serde(default)]
    pub upgrade_strategy: UpgradeStrategy,
    /// Relaunch delay policy.
    #[serde(default)]
    pub backoff: Backoff,
    /// Apps (same namespace) that must be healthy before this one is deployed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
    /// Which instances to kill first when scaling down (default YoungestFirst).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_selection: Option<KillSelection>,
    /// Seconds between SIGTERM and SIGKILL (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_grace_period_seconds: Option<i64>,
    /// Allocation role (default `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Labels put on every Task of the App (Marathon's app labels).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl AppSpec {
    /// True when an instance owns a persistent volume (a resident App).
    pub fn is_resident(&self) -> bool {
        self.volumes.iter().any(VolumeMount::is_persistent)
    }
}

/// Current launch delay of an App, visible so users see why nothing starts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackoffStatus {
    /// Current delay in seconds.
    pub delay_seconds: f64,
    /// Failures since the last healthy run.
    pub consecutive_failures: i32,
    /// No launch before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_launch_time: Option<Time>,
}

/// Observed state of an App.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Tasks that exist and are not terminal.
    #[serde(default)]
    pub instances: i32,
    /// Tasks not yet running (Pending, Scheduled, Starting).
    #[serde(default)]
    pub staged: i32,
    /// Tasks running.
    #[serde(default)]
    pub running: i32,
    /// Running tasks whose health checks pass.
    #[serde(default)]
    pub healthy: i32,
    /// Running tasks whose health checks fail.
    #[serde(default)]
    pub unhealthy: i32,
    /// Running tasks of the current version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<i32>,
    /// Running tasks whose readiness checks pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<i32>,
    /// Current version (hash of the task template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Label selector of the App's tasks, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Launch delay, when backing off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffStatus>,
    /// `Available`, `Progressing`, `Scheduled` (with why not), …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The current rollout: which revision, how far, and how it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentStatus>,
    /// Every distinct task template seen, oldest first (at most 10), so a rollout can
    /// be undone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Revision>,
}

/// Annotation `drover rollout restart` bumps: part of the task template, so changing
/// it forces a new version.
pub const RESTARTED_AT_ANNOTATION: &str = "drover.dev/restartedAt";

/// The parts of an App that make its task template (their hash is the version).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppTemplate {
    /// `spec.container`.
    #[serde(default)]
    pub container: ContainerSpec,
    /// `spec.resources`.
    #[serde(default)]
    pub resources: Resources,
    /// `spec.ports`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// `spec.healthChecks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheck>,
    /// `spec.readinessChecks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readiness_checks: Vec<HealthCheck>,
    /// `spec.volumes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    /// The `drover.dev/restartedAt` annotation, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
}

/// One entry of an App's revision history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    /// Increasing number; a template seen again (rollback, undo) gets a new number.
    pub revision: i64,
    /// Hash of the template.
    pub version: String,
    /// When this revision was (last) rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// Why it was rolled out: `update`, `rollback from revision N`, `undo`, `restart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// The template itself, to restore on rollback.
    #[serde(default)]
    pub template: AppTemplate,
}

/// Phase of a rollout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeploymentPhase {
    /// New-version tasks are replacing old ones.
    #[default]
    Progressing,
    /// Every instance runs the current version and is healthy and ready.
    Complete,
    /// The progress deadline passed (and no rollback was made).
    Failed,
    /// The progress deadline passed and the previous revision was restored.
    RolledBack,
}

/// The current rollout of an App.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    /// Revision being rolled out.
    pub revision: i64,
    /// Its version (template hash).
    pub version: String,
    /// Progressing, Complete, Failed or RolledBack.
    pub phase: DeploymentPhase,
    /// Instances of this version that are healthy and ready.
    pub updated: i32,
    /// Instances wanted.
    pub total: i32,
    /// What is happening, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When this rollout started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Time>,
    /// Last time an instance of this version became healthy and ready (or the start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_progress: Option<Time>,
}

kind_constructor!(App, AppSpec);

impl DroverKind for App {
    const KIND: &'static str = "App";
    const PLURAL: &'static str = "apps";
    const SINGULAR: &'static str = "app";
    const SHORT_NAMES: &'static [&'static str] = &["app"];
    const CATEGORIES: &'static [&'static str] = &["drover", "all"];
    const NAMESPACED: bool = true;
    const PRINTER_COLUMNS: &'static [PrinterColumn] = &[
        PrinterColumn {
            name: "Instances",
            type_: "integer",
            json_path: ".spec.instances",
            description: "Desired instances",
            priority: 0,
        },
        PrinterColumn {
            name: "Running",
            type_: "integer",
            json_path: ".status.running",
            description: "Running instances",
            priority: 0,
        },
        PrinterColumn {
            name: "Healthy",
            type_: "integer",
            json_path: ".status.healthy",
            description: "Healthy instances",
            priority: 0,
        },
        AGE_COLUMN,
        PrinterColumn {
            name: "Version",
            type_: "string",
            json_path: ".status.version",
            description: "Current version",
            priority: 1,
        },
    ];
    const SCALE: Option<ScaleSubresource> = Some(ScaleSubresource {
        spec_replicas_path: ".spec.instances",
        status_replicas_path: ".status.instances",
        label_selector_path: Some(".status.selector"),
    });

    metadata_accessors!();
}

impl Defaulting for App {
    fn apply_defaults(&mut self) {
        crate::kinds::default_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        let resident = self.spec.is_resident();
        let s = &mut self.spec;
        or_set(&mut s.instances, defaults::INSTANCES);
        s.container.apply_defaults();
        s.resources.apply_task_defaults();
        s.ports.iter_mut().for_each(PortSpec::apply_defaults);
        s.health_checks
            .iter_mut()
            .for_each(HealthCheck::apply_defaults);
        s.readiness_checks
            .iter_mut()
            .for_each(HealthCheck::apply_defaults);
        let u = &mut s.upgrade_strategy;
        if resident {
            or_set(
                &mut u.minimum_health_capacity,
                defaults::RESIDENT_MINIMUM_HEALTH_CAPACITY,
            );
            or_set(
                &mut u.maximum_over_capacity,
                defaults::RESIDENT_MAXIMUM_OVER_CAPACITY,
            );
        }
        or_set(
            &mut u.minimum_health_capacity,
            defaults::MINIMUM_HEALTH_CAPACITY,
        );
        or_set(
            &mut u.maximum_over_capacity,
            defaults::MAXIMUM_OVER_CAPACITY,
        );
        or_set(
            &mut u.progress_deadline_seconds,
            defaults::PROGRESS_DEADLINE_SECONDS,
        );
        or_set(&mut u.auto_rollback, defaults::AUTO_ROLLBACK);
        or_set(&mut s.backoff.seconds, defaults::BACKOFF_SECONDS);
        or_set(&mut s.backoff.factor, defaults::BACKOFF_FACTOR);
        or_set(
            &mut s.backoff.max_launch_delay_seconds,
            defaults::BACKOFF_MAX_LAUNCH_DELAY_SECONDS,
        );
        or_set(&mut s.kill_selection, KillSelection::YoungestFirst);
        or_set(
            &mut s.kill_grace_period_seconds,
            defaults::KILL_GRACE_PERIOD_SECONDS,
        );
        or_set(&mut s.role, defaults::ROLE.to_string());
    }
}

impl Validate for App {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        validate_object_header::<Self>(&self.api_version, &self.kind, &self.metadata, &mut errors);
        let s = &self.spec;
        let spec = Path::root("spec");
        if s.instances.is_some_and(|n| n < 0) {
            errors.invalid(&spec.child("instances"), "must be >= 0");
        }
        s.container
            .validate_into(&spec.child("container"), &mut errors);
        s.resources
            .validate_into(&spec.child("resources"), &mut errors);
        validate_ports(&s.ports, &spec.child("ports"), &mut errors);
        for (i, hc) in s.health_checks.iter().enumerate() {
            hc.validate_into(&spec.child("healthChecks").index(i), &s.ports, &mut errors);
        }
        for (i, rc) in s.readiness_checks.iter().enumerate() {
            rc.validate_into(
                &spec.child("readinessChecks").index(i),
                &s.ports,
                &mut errors,
            );
        }
        validate_rules(&s.constraints, &spec.child("constraints"), &mut errors);
        validate_mounts(&s.volumes, &spec.child("volumes"), &mut errors);
        validate_upgrade_strategy(
            &s.upgrade_strategy,
            s.is_resident(),
            &spec.child("upgradeStrategy"),
            &mut errors,
        );
        validate_backoff(&s.backoff, &spec.child("backoff"), &mut errors);
        let own_name = self.metadata.name.as_deref();
        let mut seen = BTreeSet::new();
        for (i, dep) in s.dependencies.iter().enumerate() {
            let p = spec.child("dependencies").index(i);
            check_subdomain(&mut errors, &p, dep);
            if Some(dep.as_str()) == own_name {
                errors.invalid(&p, "an App cannot depend on itself");
            }
            if !seen.insert(dep) {
                errors.duplicate(&p, dep);
            }
        }
        if s.kill_grace_period_seconds.is_some_and(|n| n < 0) {
            errors.invalid(&spec.child("killGracePeriodSeconds"), "must be >= 0");
        }
        if s.role.as_deref().is_some_and(str::is_empty) {
            errors.invalid(&spec.child("role"), "must not be empty");
        }
        errors.into_result()
    }
}

fn validate_upgrade_strategy(
    u: &UpgradeStrategy,
    resident: bool,
    path: &Path,
    errors: &mut ValidationErrors,
) {
    for (value, field) in [
        (u.minimum_health_capacity, "minimumHealthCapacity"),
        (u.maximum_over_capacity, "maximumOverCapacity"),
    ] {
        if value.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
            errors.invalid(&path.child(field), "must be between 0 and 1");
        }
    }
    if resident && u.maximum_over_capacity.is_some_and(|v| v > 0.0) {
        errors.invalid(
            &path.child("maximumOverCapacity"),
            "must be 0 for an App with persistent volumes",
        );
    }
    if u.progress_deadline_seconds.is_some_and(|v| v <= 0) {
        errors.invalid(&path.child("progressDeadlineSeconds"), "must be > 0");
    }
}

fn validate_backoff(b: &Backoff, path: &Path, errors: &mut ValidationErrors) {
    if b.seconds.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
        errors.invalid(&path.child("seconds"), "must be >= 0");
    }
    if b.factor.is_some_and(|v| !(v.is_finite() && v >= 1.0)) {
        errors.invalid(&path.child("factor"), "must be >= 1");
    }
    if b.max_launch_delay_seconds.is_some_and(|v| v < 0) {
        errors.invalid(&path.child("maxLaunchDelaySeconds"), "must be >= 0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::Driver;
    use crate::health::{HttpCheck, Scheme};
    use crate::mounts::PersistentSource;

    fn minimal() -> App {
        App::new(
            "default",
            "web",
            AppSpec {
                container: ContainerSpec {
                    cmd: Some("python3 -m http.server $PORT0".into()),
                    ..Default::default()
                },
                health_checks: vec![HealthCheck {
                    http: Some(HttpCheck::default()),
                    ..Default::default()
                }],
                ports: vec![PortSpec {
                    name: Some("http".into()),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
    }

    #[test]
    fn every_anchor_default_is_applied() {
        let mut app = minimal();
        app.apply_defaults();
        let s = &app.spec;
        assert_eq!(s.instances, Some(1));
        assert_eq!(s.container.driver, Some(Driver::Process));
        assert_eq!(s.kill_grace_period_seconds, Some(30));
        assert_eq!(s.kill_selection, Some(KillSelection::YoungestFirst));
        assert_eq!(s.role.as_deref(), Some("*"));
        assert_eq!(s.upgrade_strategy.minimum_health_capacity, Some(1.0));
        assert_eq!(s.upgrade_strategy.maximum_over_capacity, Some(1.0));
        assert_eq!(s.upgrade_strategy.progress_deadline_seconds, Some(600));
        assert_eq!(s.upgrade_strategy.auto_rollback, Some(true));
        assert_eq!(s.backoff.seconds, Some(1.0));
        assert_eq!(s.backoff.factor, Some(1.15));
        assert_eq!(s.backoff.max_launch_delay_seconds, Some(300));
        assert_eq!(s.resources.cpus, Some(1.0));
        assert_eq!(s.resources.mem_mib, Some(128));
        assert_eq!(s.resources.disk_mib, Some(0));
        assert_eq!(s.resources.gpus, Some(0));
        assert_eq!(s.ports[0].host_port, Some(0));
        let hc = &s.health_checks[0];
        assert_eq!(hc.delay_seconds, Some(15));
        assert_eq!(hc.interval_seconds, Some(10));
        assert_eq!(hc.timeout_seconds, Some(20));
        assert_eq!(hc.grace_period_seconds, Some(10));
        assert_eq!(hc.max_consecutive_failures, Some(3));
        assert_eq!(hc.http.as_ref().and_then(|h| h.scheme), Some(Scheme::Http));
        assert_eq!(app.api_version, "drover.dev/v1alpha1");
        assert_eq!(app.kind, "App");
        let once = app.clone();
        app.apply_defaults();
        assert_eq!(app, once, "defaulting is idempotent");
        assert_eq!(app.validate(), Ok(()));
    }

    #[test]
    fn image_defaults_driver_to_runc() {
        let mut app = minimal();
        app.spec.container = ContainerSpec {
            image: Some("docker.io/library/nginx:1.27".into()),
            ..Default::default()
        };
        app.apply_defaults();
        assert_eq!(app.spec.container.driver, Some(Driver::Runc));
    }

    #[test]
    fn resident_apps_do_not_overlap_during_upgrades() {
        let mut app = minimal();
        app.spec.volumes = vec![VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            persistent: Some(PersistentSource { size_mib: 512 }),
            ..Default::default()
        }];
        app.apply_defaults();
        assert_eq!(app.spec.upgrade_strategy.minimum_health_capacity, Some(0.5));
        assert_eq!(app.spec.upgrade_strategy.maximum_over_capacity, Some(0.0));
        assert_eq!(app.validate(), Ok(()));
    }

    #[test]
    fn validation_reports_every_problem_at_once() {
        let mut app = minimal();
        app.metadata.name = Some("Web_1".into());
        app.spec.instances = Some(-1);
        app.spec.resources.cpus = Some(0.0);
        app.spec.upgrade_strategy.minimum_health_capacity = Some(1.5);
        app.spec.health_checks[0].interval_seconds = Some(0);
        app.spec.health_checks[0].http = Some(HttpCheck {
            port_name: Some("admin".into()),
            ..Default::default()
        });
        app.spec.ports.push(PortSpec {
            name: Some("http".into()),
            ..Default::default()
        });
        app.spec.constraints = vec![ConstraintRule::new("hostname", "UNIQ", None)];
        let errors = app.validate().err().unwrap_or_default();
        let fields: Vec<&str> = errors.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "metadata.name",
                "spec.instances",
                "spec.resources.cpus",
                "spec.ports[1].name",
                "spec.healthChecks[0].http.portName",
                "spec.healthChecks[0].intervalSeconds",
                "spec.constraints[0].operator",
                "spec.upgradeStrategy.minimumHealthCapacity",
            ],
            "{errors}"
        );
        assert_eq!(errors.to_string().lines().count(), 8);
        assert!(errors
            .to_string()
            .contains("spec.healthChecks[0].intervalSeconds: must be > 0"));
    }
}
