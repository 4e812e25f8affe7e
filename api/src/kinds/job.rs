//! Job: batch or scheduled work (Chronos / Aurora cron / CronJob), with DAG parents.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::constraint::{validate_rules, ConstraintRule};
use crate::container::ContainerSpec;
use crate::defaults::{self, or_set, Defaulting};
use crate::kinds::{kind_constructor, metadata_accessors};
use crate::meta::{Condition, ObjectMeta};
use crate::mounts::{validate_mounts, VolumeMount};
use crate::ports::{validate_ports, PortSpec};
use crate::resource::{validate_object_header, DroverKind, PrinterColumn, AGE_COLUMN};
use crate::resources::Resources;
use crate::schedule::{parse_time_zone, Schedule};
use crate::validation::{check_subdomain, Path, Validate, ValidationErrors};

/// Batch or scheduled work.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// `drover.dev/v1alpha1`.
    #[serde(default)]
    pub api_version: String,
    /// `Job`.
    #[serde(default)]
    pub kind: String,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state.
    #[serde(default)]
    pub spec: JobSpec,
    /// Observed state, written by the jobs controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
}

/// What to do when a run is due while another is still active.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Start the new run anyway.
    Allow,
    /// Skip the new run (Chronos: no concurrent runs). The default.
    #[default]
    Forbid,
    /// Kill the active run and start the new one.
    Replace,
}

/// What each run's tasks look like.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobTemplate {
    /// What each task runs.
    #[serde(default)]
    pub container: ContainerSpec,
    /// What each task needs.
    #[serde(default)]
    pub resources: Resources,
    /// Ports each task listens on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// Placement constraints (Marathon syntax, both forms).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<ConstraintRule>,
    /// Volumes mounted into each task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    /// Seconds between SIGTERM and SIGKILL (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_grace_period_seconds: Option<i64>,
    /// Allocation role (default `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Labels put on every Task.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl JobTemplate {
    /// Container, resource and kill-grace defaults.
    pub fn apply_defaults(&mut self) {
        self.container.apply_defaults();
        self.resources.apply_task_defaults();
        self.ports.iter_mut().for_each(PortSpec::apply_defaults);
        or_set(
            &mut self.kill_grace_period_seconds,
            defaults::KILL_GRACE_PERIOD_SECONDS,
        );
        or_set(&mut self.role, defaults::ROLE.to_string());
    }

    /// Checks the template at `path`.
    pub fn validate_into(&self, path: &Path, errors: &mut ValidationErrors) {
        self.container
            .validate_into(&path.child("container"), errors);
        self.resources
            .validate_into(&path.child("resources"), errors);
        validate_ports(&self.ports, &path.child("ports"), errors);
        validate_rules(&self.constraints, &path.child("constraints"), errors);
        validate_mounts(&self.volumes, &path.child("volumes"), errors);
        if self.kill_grace_period_seconds.is_some_and(|n| n < 0) {
            errors.invalid(&path.child("killGracePeriodSeconds"), "must be >= 0");
        }
    }
}

/// Desired state of a Job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    /// 5-field cron (`0 3 * * *`) or ISO 8601 `R[n]/start/period`. Absent: the Job runs
    /// only when triggered or after its parents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA time zone the schedule is read in (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Jobs (same namespace) whose latest runs must all have succeeded; this Job runs
    /// after them (a DAG).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
    /// Tasks of one run that may run at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i32>,
    /// Successful tasks a run needs (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completions: Option<i32>,
    /// Retries of a failed task within a run (default 2, Chronos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i32>,
    /// A run still active after this many seconds fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
    /// Allow, Forbid (default) or Replace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    /// A run that could not start within this many seconds of its time is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<i64>,
    /// Do not start scheduled runs (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Succeeded JobRuns kept (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_runs_history_limit: Option<i32>,
    /// Failed JobRuns kept (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_runs_history_limit: Option<i32>,
    /// What each run's tasks look like.
    #[serde(default)]
    pub template: JobTemplate,
}

impl JobSpec {
    /// The parsed schedule, if any (None also when it does not parse: validation says why).
    pub fn parsed_schedule(&self) -> Option<Schedule> {
        self.schedule
            .as_deref()
            .and_then(|s| Schedule::parse(s).ok())
    }

    /// The time zone of the schedule (UTC when unset or unknown: validation says why).
    pub fn tz(&self) -> chrono_tz::Tz {
        self.time_zone
            .as_deref()
            .and_then(|z| parse_time_zone(z).ok())
            .unwrap_or(chrono_tz::Tz::UTC)
    }
}

/// Observed state of a Job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Names of the active JobRuns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
    /// The latest JobRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    /// When a run was last started by the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When a run last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// When the schedule next fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// `Scheduled`, `ParentsSucceeded`, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

kind_constructor!(Job, JobSpec);

impl DroverKind for Job {
    const KIND: &'static str = "Job";
    const PLURAL: &'static str = "jobs";
    const SINGULAR: &'static str = "job";
    const SHORT_NAMES: &'static [&'static str] = &["djob"];
    const CATEGORIES: &'static [&'static str] = &["drover", "all"];
    const NAMESPACED: bool = true;
    const PRINTER_COLUMNS: &'static [PrinterColumn] = &[
        PrinterColumn {
            name: "Schedule",
            type_: "string",
            json_path: ".spec.schedule",
            description: "Cron or ISO 8601 schedule",
            priority: 0,
        },
        PrinterColumn {
            name: "Suspend",
            type_: "boolean",
            json_path: ".spec.suspend",
            description: "Scheduled runs suspended",
            priority: 0,
        },
        PrinterColumn {
            name: "Last Run",
            type_: "date",
            json_path: ".status.lastScheduleTime",
            description: "When the schedule last started a run",
            priority: 0,
        },
        AGE_COLUMN,
        PrinterColumn {
            name: "Time Zone",
            type_: "string",
            json_path: ".spec.timeZone",
            description: "Time zone of the schedule",
            priority: 1,
        },
    ];
    metadata_accessors!();
}

impl Defaulting for Job {
    fn apply_defaults(&mut self) {
        crate::kinds::default_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        let s = &mut self.spec;
        if s.schedule.is_some() {
            or_set(&mut s.time_zone, defaults::JOB_TIME_ZONE.to_string());
        }
        or_set(&mut s.parallelism, defaults::JOB_PARALLELISM);
        or_set(&mut s.completions, defaults::JOB_COMPLETIONS);
        or_set(&mut s.retries, defaults::JOB_RETRIES);
        or_set(&mut s.concurrency_policy, ConcurrencyPolicy::Forbid);
        or_set(&mut s.suspend, false);
        or_set(
            &mut s.successful_runs_history_limit,
            defaults::JOB_SUCCESSFUL_RUNS_HISTORY_LIMIT,
        );
        or_set(
            &mut s.failed_runs_history_limit,
            defaults::JOB_FAILED_RUNS_HISTORY_LIMIT,
        );
        s.template.apply_defaults();
    }
}

impl Validate for Job {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        validate_object_header::<Self>(&self.api_version, &self.kind, &self.metadata, &mut errors);
        let s = &self.spec;
        let spec = Path::root("spec");
        if let Some(schedule) = &s.schedule {
            if let Err(e) = Schedule::parse(schedule) {
                errors.invalid(&spec.child("schedule"), e.to_string());
            }
        }
        if let Some(tz) = &s.time_zone {
            if let Err(e) = parse_time_zone(tz) {
                errors.invalid(&spec.child("timeZone"), e.to_string());
            }
        }
        if s.schedule.is_some() && !s.parents.is_empty() {
            errors.forbidden(
                &spec.child("parents"),
                "a Job runs either on a schedule or after its parents, not both",
            );
        }
        let own_name = self.metadata.name.as_deref();
        let mut seen = BTreeSet::new();
        for (i, parent) in s.parents.iter().enumerate() {
            let p = spec.child("parents").index(i);
            check_subdomain(&mut errors, &p, parent);
            if Some(parent.as_str()) == own_name {
                errors.invalid(&p, "a Job cannot be its own parent");
            }
            if !seen.insert(parent) {
                errors.duplicate(&p, parent);
            }
        }
        for (value, field) in [
            (s.parallelism, "parallelism"),
            (s.completions, "completions"),
        ] {
            if value.is_some_and(|v| v < 1) {
                errors.invalid(&spec.child(field), "must be >= 1");
            }
        }
        for (value, field) in [
            (s.retries, "retries"),
            (
                s.successful_runs_history_limit,
                "successfulRunsHistoryLimit",
            ),
            (s.failed_runs_history_limit, "failedRunsHistoryLimit"),
        ] {
            if value.is_some_and(|v| v < 0) {
                errors.invalid(&spec.child(field), "must be >= 0");
            }
        }
        for (value, field) in [
            (s.active_deadline_seconds, "activeDeadlineSeconds"),
            (s.starting_deadline_seconds, "startingDeadlineSeconds"),
        ] {
            if value.is_some_and(|v| v <= 0) {
                errors.invalid(&spec.child(field), "must be > 0");
            }
        }
        s.template
            .validate_into(&spec.child("template"), &mut errors);
        errors.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(schedule: Option<&str>) -> Job {
        Job::new(
            "default",
            "backup",
            JobSpec {
                schedule: schedule.map(str::to_string),
                template: JobTemplate {
                    container: ContainerSpec {
                        cmd: Some("backup.sh".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                ..Default::default()
            },
        )
    }

    #[test]
    fn chronos_defaults() {
        let mut j = job(Some("0 3 * * *"));
        j.apply_defaults();
        assert_eq!(j.spec.retries, Some(2));
        assert_eq!(j.spec.concurrency_policy, Some(ConcurrencyPolicy::Forbid));
        assert_eq!(j.spec.time_zone.as_deref(), Some("UTC"));
        assert_eq!(j.spec.parallelism, Some(1));
        assert_eq!(j.spec.completions, Some(1));
        assert_eq!(j.spec.suspend, Some(false));
        assert_eq!(j.spec.successful_runs_history_limit, Some(3));
        assert_eq!(j.spec.failed_runs_history_limit, Some(1));
        assert_eq!(j.spec.template.kill_grace_period_seconds, Some(30));
        assert_eq!(
            j.spec.template.container.driver,
            Some(crate::container::Driver::Process)
        );
        let once = j.clone();
        j.apply_defaults();
        assert_eq!(j, once);
        assert_eq!(j.validate(), Ok(()));
    }

    #[test]
    fn schedule_and_time_zone_errors_are_reported_together() {
        let mut j = job(Some("0 0 3 * * *"));
        j.spec.time_zone = Some("Europe/Atlantis".into());
        j.spec.retries = Some(-1);
        let errors = j.validate().err().unwrap_or_default();
        let fields: Vec<&str> = errors.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["spec.schedule", "spec.timeZone", "spec.retries"],
            "{errors}"
        );
    }
}
