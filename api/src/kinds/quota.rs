//! Quota: per-role guarantees and limits (Aurora quota / Mesos quota).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults::Defaulting;
use crate::kinds::{kind_constructor, metadata_accessors};
use crate::meta::{Condition, ObjectMeta};
use crate::resource::{validate_object_header, DroverKind, PrinterColumn, AGE_COLUMN};
use crate::resources::Resources;
use crate::validation::{Path, Validate, ValidationErrors};

/// Guarantees and limits of one role.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// `drover.dev/v1alpha1`.
    #[serde(default)]
    pub api_version: String,
    /// `Quota`.
    #[serde(default)]
    pub kind: String,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state.
    #[serde(default)]
    pub spec: QuotaSpec,
    /// Usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<QuotaStatus>,
}

/// Desired state of a Quota.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaSpec {
    /// The role.
    #[serde(default)]
    pub role: String,
    /// Resources set aside for the role: what it does not hold of them is given to no
    /// other role, and it goes first while below them (unset = none).
    #[serde(default)]
    pub guarantee: Resources,
    /// Resources the role may never exceed (unset = unlimited).
    #[serde(default)]
    pub limit: Resources,
    /// Weight of the role in weighted DRF (unset = 1): weight 2 → about twice the
    /// dominant share of a weight-1 role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

/// Observed state of a Quota.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaStatus {
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Resources the role's tasks hold now.
    #[serde(default)]
    pub used: Resources,
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

kind_constructor!(Quota, QuotaSpec);

impl DroverKind for Quota {
    const KIND: &'static str = "Quota";
    const PLURAL: &'static str = "quotas";
    const SINGULAR: &'static str = "quota";
    // `quota` is kubectl's short name for resourcequotas.
    const SHORT_NAMES: &'static [&'static str] = &["dquota"];
    const CATEGORIES: &'static [&'static str] = &["drover"];
    const NAMESPACED: bool = true;
    const PRINTER_COLUMNS: &'static [PrinterColumn] = &[
        PrinterColumn {
            name: "Role",
            type_: "string",
            json_path: ".spec.role",
            description: "The role",
            priority: 0,
        },
        PrinterColumn {
            name: "CPU Limit",
            type_: "number",
            json_path: ".spec.limit.cpus",
            description: "CPU limit",
            priority: 0,
        },
        PrinterColumn {
            name: "Mem Limit",
            type_: "integer",
            json_path: ".spec.limit.memMiB",
            description: "Memory limit in MiB",
            priority: 0,
        },
        AGE_COLUMN,
    ];
    metadata_accessors!();
}

impl Defaulting for Quota {
    fn apply_defaults(&mut self) {
        crate::kinds::default_type_meta::<Self>(&mut self.api_version, &mut self.kind);
    }
}

impl Validate for Quota {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        validate_object_header::<Self>(&self.api_version, &self.kind, &self.metadata, &mut errors);
        let spec = Path::root("spec");
        let s = &self.spec;
        if s.role.is_empty() {
            errors.required(&spec.child("role"), "");
        }
        s.guarantee
            .validate_amounts_into(&spec.child("guarantee"), &mut errors);
        s.limit
            .validate_amounts_into(&spec.child("limit"), &mut errors);
        if s.weight.is_some_and(|w| !(w.is_finite() && w > 0.0)) {
            errors.invalid(&spec.child("weight"), "must be a positive number");
        }
        let g = &s.guarantee;
        let l = &s.limit;
        let above = |g: Option<f64>, l: Option<f64>| matches!((g, l), (Some(g), Some(l)) if g > l);
        let checks = [
            ("cpus", above(g.cpus, l.cpus)),
            (
                "memMiB",
                above(g.mem_mib.map(|v| v as f64), l.mem_mib.map(|v| v as f64)),
            ),
            (
                "diskMiB",
                above(g.disk_mib.map(|v| v as f64), l.disk_mib.map(|v| v as f64)),
            ),
            ("gpus", above(g.gpus.map(f64::from), l.gpus.map(f64::from))),
        ];
        for (field, bad) in checks {
            if bad {
                errors.invalid(
                    &spec.child("guarantee").child(field),
                    format!("must be <= spec.limit.{field}"),
                );
            }
        }
        errors.into_result()
    }
}
