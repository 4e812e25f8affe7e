//! JobRun: one execution of a Job; owns its Tasks.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults::{self, or_set, Defaulting};
use crate::kinds::job::JobTemplate;
use crate::kinds::{kind_constructor, metadata_accessors};
use crate::meta::{Condition, ObjectMeta};
use crate::resource::{validate_object_header, DroverKind, PrinterColumn, AGE_COLUMN};
use crate::validation::{check_subdomain, Path, Validate, ValidationErrors};

/// One execution of a Job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRun {
    /// `drover.dev/v1alpha1`.
    #[serde(default)]
    pub api_version: String,
    /// `JobRun`.
    #[serde(default)]
    pub kind: String,
    /// Standard object metadata (owned by its Job).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What this run does, frozen when it was created.
    #[serde(default)]
    pub spec: JobRunSpec,
    /// How it went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<JobRunStatus>,
}

/// What started a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RunTrigger {
    /// The Job's schedule.
    #[default]
    Schedule,
    /// `drover job run` or an API call.
    Manual,
    /// All parents succeeded.
    Parents,
}

/// Desired state of a JobRun.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRunSpec {
    /// The Job this run belongs to.
    #[serde(default)]
    pub job_name: String,
    /// What started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<RunTrigger>,
    /// The schedule time this run is for (scheduled runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<Time>,
    /// Tasks that may run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i32>,
    /// Successful tasks needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completions: Option<i32>,
    /// Retries of a failed task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i32>,
    /// The run fails when still active after this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
    /// The Job's template when the run was created.
    #[serde(default)]
    pub template: JobTemplate,
}

/// Phase of a JobRun.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RunPhase {
    /// Waiting for resources or placement.
    #[default]
    Pending,
    /// Tasks running.
    Running,
    /// Enough tasks finished.
    Succeeded,
    /// Retries or the deadline ran out.
    Failed,
}

/// Observed state of a JobRun.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRunStatus {
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Phase.
    #[serde(default)]
    pub phase: RunPhase,
    /// Tasks launched so far, retries included.
    #[serde(default)]
    pub attempts: i32,
    /// Tasks running now.
    #[serde(default)]
    pub active: i32,
    /// Tasks that finished successfully.
    #[serde(default)]
    pub succeeded: i32,
    /// Tasks that failed.
    #[serde(default)]
    pub failed: i32,
    /// When the first task started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run reached Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Why it is in this phase (`DeadlineExceeded`, `Unschedulable`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail, e.g. why it cannot be placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Scheduled`, `Complete`, `Failed`, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

kind_constructor!(JobRun, JobRunSpec);

impl DroverKind for JobRun {
    const KIND: &'static str = "JobRun";
    const PLURAL: &'static str = "jobruns";
    const SINGULAR: &'static str = "jobrun";
    const SHORT_NAMES: &'static [&'static str] = &["jr"];
    const CATEGORIES: &'static [&'static str] = &["drover", "all"];
    const NAMESPACED: bool = true;
    const PRINTER_COLUMNS: &'static [PrinterColumn] = &[
        PrinterColumn {
            name: "Job",
            type_: "string",
            json_path: ".spec.jobName",
            description: "The Job",
            priority: 0,
        },
        PrinterColumn {
            name: "Phase",
            type_: "string",
            json_path: ".status.phase",
            description: "Phase",
            priority: 0,
        },
        PrinterColumn {
            name: "Attempts",
            type_: "integer",
            json_path: ".status.attempts",
            description: "Tasks launched, retries included",
            priority: 0,
        },
        AGE_COLUMN,
    ];
    metadata_accessors!();
}

impl Defaulting for JobRun {
    fn apply_defaults(&mut self) {
        crate::kinds::default_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        let s = &mut self.spec;
        or_set(&mut s.trigger, RunTrigger::Manual);
        or_set(&mut s.parallelism, defaults::JOB_PARALLELISM);
        or_set(&mut s.completions, defaults::JOB_COMPLETIONS);
        or_set(&mut s.retries, defaults::JOB_RETRIES);
        s.template.apply_defaults();
    }
}

impl Validate for JobRun {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        validate_object_header::<Self>(&self.api_version, &self.kind, &self.metadata, &mut errors);
        let s = &self.spec;
        let spec = Path::root("spec");
        if s.job_name.is_empty() {
            errors.required(&spec.child("jobName"), "");
        } else {
            check_subdomain(&mut errors, &spec.child("jobName"), &s.job_name);
        }
        for (value, field) in [
            (s.parallelism, "parallelism"),
            (s.completions, "completions"),
        ] {
            if value.is_some_and(|v| v < 1) {
                errors.invalid(&spec.child(field), "must be >= 1");
            }
        }
        if s.retries.is_some_and(|v| v < 0) {
            errors.invalid(&spec.child("retries"), "must be >= 0");
        }
        if s.active_deadline_seconds.is_some_and(|v| v <= 0) {
            errors.invalid(&spec.child("activeDeadlineSeconds"), "must be > 0");
        }
        s.template
            .validate_into(&spec.child("template"), &mut errors);
        errors.into_result()
    }
}
