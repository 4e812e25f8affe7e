//! Release: an installed chart with its revision history (what `drover chart` manages).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults::Defaulting;
use crate::kinds::{kind_constructor, metadata_accessors};
use crate::meta::{Condition, ObjectMeta};
use crate::resource::{validate_object_header, DroverKind, PrinterColumn, AGE_COLUMN};
use crate::validation::{Path, Validate, ValidationErrors};

/// An installed chart.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// `drover.dev/v1alpha1`.
    #[serde(default)]
    pub api_version: String,
    /// `Release`.
    #[serde(default)]
    pub kind: String,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The current revision and its history.
    #[serde(default)]
    pub spec: ReleaseSpec,
    /// Deployment state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ReleaseStatus>,
}

/// Which chart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChartRef {
    /// Chart name.
    pub name: String,
    /// Chart version (SemVer).
    pub version: String,
    /// Version of the packaged application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
}

/// Outcome of one revision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReleasePhase {
    /// Being applied.
    #[default]
    Pending,
    /// Applied, current.
    Deployed,
    /// Replaced by a later revision.
    Superseded,
    /// Could not be applied.
    Failed,
    /// Being removed.
    Uninstalling,
}

/// One past revision, kept for `history` and `rollback`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRevision {
    /// Revision number.
    pub revision: i32,
    /// Chart of that revision.
    pub chart: ChartRef,
    /// Values of that revision.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, serde_json::Value>,
    /// Rendered manifest of that revision (multi-document YAML).
    #[serde(default)]
    pub manifest: String,
    /// Outcome.
    #[serde(default)]
    pub phase: ReleasePhase,
    /// When it was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<Time>,
    /// `Install complete`, `Upgrade complete`, `Rollback to 2`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Desired state of a Release.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseSpec {
    /// The chart.
    #[serde(default)]
    pub chart: ChartRef,
    /// Merged values (free-form).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, serde_json::Value>,
    /// Current revision (1 for a fresh install).
    #[serde(default)]
    pub revision: i32,
    /// Rendered manifest of the current revision (multi-document YAML).
    #[serde(default)]
    pub manifest: String,
    /// Earlier revisions, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<ReleaseRevision>,
}

/// Observed state of a Release.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseStatus {
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Phase of the current revision.
    #[serde(default)]
    pub phase: ReleasePhase,
    /// Detail of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Deployed`, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

kind_constructor!(Release, ReleaseSpec);

impl DroverKind for Release {
    const KIND: &'static str = "Release";
    const PLURAL: &'static str = "releases";
    const SINGULAR: &'static str = "release";
    const SHORT_NAMES: &'static [&'static str] = &["rel"];
    const CATEGORIES: &'static [&'static str] = &["drover"];
    const NAMESPACED: bool = true;
    const PRINTER_COLUMNS: &'static [PrinterColumn] = &[
        PrinterColumn {
            name: "Chart",
            type_: "string",
            json_path: ".spec.chart.name",
            description: "Chart name",
            priority: 0,
        },
        PrinterColumn {
            name: "Version",
            type_: "string",
            json_path: ".spec.chart.version",
            description: "Chart version",
            priority: 0,
        },
        PrinterColumn {
            name: "Revision",
            type_: "integer",
            json_path: ".spec.revision",
            description: "Current revision",
            priority: 0,
        },
        PrinterColumn {
            name: "Status",
            type_: "string",
            json_path: ".status.phase",
            description: "Phase of the current revision",
            priority: 0,
        },
        AGE_COLUMN,
    ];
    metadata_accessors!();
}

impl Defaulting for Release {
    fn apply_defaults(&mut self) {
        crate::kinds::default_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        if self.spec.revision == 0 {
            self.spec.revision = 1;
        }
    }
}

impl Validate for Release {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        validate_object_header::<Self>(&self.api_version, &self.kind, &self.metadata, &mut errors);
        let spec = Path::root("spec");
        let s = &self.spec;
        validate_chart(&s.chart, &spec.child("chart"), &mut errors);
        if s.revision < 1 {
            errors.invalid(&spec.child("revision"), "must be >= 1");
        }
        let mut seen = BTreeSet::new();
        for (i, rev) in s.history.iter().enumerate() {
            let p = spec.child("history").index(i);
            validate_chart(&rev.chart, &p.child("chart"), &mut errors);
            if rev.revision < 1 || rev.revision >= s.revision.max(1) {
                errors.invalid(&p.child("revision"), "must be >= 1 and below spec.revision");
            } else if !seen.insert(rev.revision) {
                errors.duplicate(&p.child("revision"), &rev.revision.to_string());
            }
        }
        errors.into_result()
    }
}

fn validate_chart(chart: &ChartRef, path: &Path, errors: &mut ValidationErrors) {
    if chart.name.is_empty() {
        errors.required(&path.child("name"), "");
    }
    if chart.version.is_empty() {
        errors.required(&path.child("version"), "");
    }
}
