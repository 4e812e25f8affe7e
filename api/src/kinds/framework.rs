//! Framework: an external scheduler using the offers API (level 2 of the allocator).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults::{self, or_set, Defaulting};
use crate::kinds::{kind_constructor, metadata_accessors};
use crate::meta::{Condition, ObjectMeta};
use crate::resource::{validate_object_header, DroverKind, PrinterColumn, AGE_COLUMN};
use crate::validation::{Path, Validate, ValidationErrors};

/// An external scheduler.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Framework {
    /// `drover.dev/v1alpha1`.
    #[serde(default)]
    pub api_version: String,
    /// `Framework`.
    #[serde(default)]
    pub kind: String,
    /// Standard object metadata (cluster-scoped).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state.
    #[serde(default)]
    pub spec: FrameworkSpec,
    /// Connection state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<FrameworkStatus>,
}

/// Desired state of a Framework.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FrameworkSpec {
    /// Role its offers are allocated under (default `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// DRF weight (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Seconds its tasks survive a disconnection before they are killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_timeout_seconds: Option<i64>,
    /// Namespace its Tasks are created in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_namespace: Option<String>,
}

/// Observed state of a Framework.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FrameworkStatus {
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Subscribed right now.
    #[serde(default)]
    pub connected: bool,
    /// When it last subscribed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_subscribed_time: Option<Time>,
    /// Offers outstanding.
    #[serde(default)]
    pub outstanding_offers: i32,
    /// `Connected`, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

kind_constructor!(Framework, FrameworkSpec);

impl DroverKind for Framework {
    const KIND: &'static str = "Framework";
    const PLURAL: &'static str = "frameworks";
    const SINGULAR: &'static str = "framework";
    const SHORT_NAMES: &'static [&'static str] = &["fw"];
    const CATEGORIES: &'static [&'static str] = &["drover"];
    const NAMESPACED: bool = false;
    const PRINTER_COLUMNS: &'static [PrinterColumn] = &[
        PrinterColumn {
            name: "Role",
            type_: "string",
            json_path: ".spec.role",
            description: "Allocation role",
            priority: 0,
        },
        PrinterColumn {
            name: "Weight",
            type_: "number",
            json_path: ".spec.weight",
            description: "DRF weight",
            priority: 0,
        },
        PrinterColumn {
            name: "Connected",
            type_: "boolean",
            json_path: ".status.connected",
            description: "Subscribed right now",
            priority: 0,
        },
        AGE_COLUMN,
    ];
    metadata_accessors!();
}

impl Defaulting for Framework {
    fn apply_defaults(&mut self) {
        crate::kinds::default_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        or_set(&mut self.spec.role, defaults::ROLE.to_string());
        or_set(&mut self.spec.weight, defaults::FRAMEWORK_WEIGHT);
    }
}

impl Validate for Framework {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        validate_object_header::<Self>(&self.api_version, &self.kind, &self.metadata, &mut errors);
        let spec = Path::root("spec");
        if self.spec.role.as_deref().is_some_and(str::is_empty) {
            errors.invalid(&spec.child("role"), "must not be empty");
        }
        if self
            .spec
            .weight
            .is_some_and(|w| !(w.is_finite() && w > 0.0))
        {
            errors.invalid(&spec.child("weight"), "must be > 0");
        }
        if self.spec.failover_timeout_seconds.is_some_and(|s| s < 0) {
            errors.invalid(&spec.child("failoverTimeoutSeconds"), "must be >= 0");
        }
        if let Some(ns) = &self.spec.task_namespace {
            crate::validation::check_label(&mut errors, &spec.child("taskNamespace"), ns);
        }
        errors.into_result()
    }
}
