//! Constraint: a placement policy applied by label selector to the Apps and Jobs of its
//! namespace.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::constraint::{validate_rules, ConstraintRule};
use crate::defaults::{or_set, Defaulting};
use crate::kinds::{kind_constructor, metadata_accessors};
use crate::meta::{Condition, ObjectMeta};
use crate::resource::{validate_object_header, DroverKind, PrinterColumn, AGE_COLUMN};
use crate::selector::validate_selector;
use crate::validation::{Path, Validate, ValidationErrors};

/// A namespace-wide placement policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Constraint {
    /// `drover.dev/v1alpha1`.
    #[serde(default)]
    pub api_version: String,
    /// `Constraint`.
    #[serde(default)]
    pub kind: String,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The policy.
    #[serde(default)]
    pub spec: ConstraintSpec,
    /// What it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ConstraintStatus>,
}

/// Whether a rule filters nodes or only ranks them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// Nodes that break a rule are not eligible (the default).
    #[default]
    Required,
    /// Nodes that break a rule score lower.
    Preferred,
}

/// Desired state of a Constraint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConstraintSpec {
    /// Apps and Jobs whose labels match; an empty selector matches all of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Rules (Marathon syntax, both forms).
    #[serde(default)]
    pub rules: Vec<ConstraintRule>,
    /// `required` (default) or `preferred`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,
}

/// Observed state of a Constraint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConstraintStatus {
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Apps and Jobs it currently applies to.
    #[serde(default)]
    pub matched: i32,
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

kind_constructor!(Constraint, ConstraintSpec);

impl DroverKind for Constraint {
    const KIND: &'static str = "Constraint";
    const PLURAL: &'static str = "constraints";
    const SINGULAR: &'static str = "constraint";
    const SHORT_NAMES: &'static [&'static str] = &["dcon"];
    const CATEGORIES: &'static [&'static str] = &["drover"];
    const NAMESPACED: bool = true;
    const PRINTER_COLUMNS: &'static [PrinterColumn] = &[
        PrinterColumn {
            name: "Enforcement",
            type_: "string",
            json_path: ".spec.enforcement",
            description: "required or preferred",
            priority: 0,
        },
        PrinterColumn {
            name: "Matched",
            type_: "integer",
            json_path: ".status.matched",
            description: "Apps and Jobs it applies to",
            priority: 0,
        },
        AGE_COLUMN,
    ];
    metadata_accessors!();
}

impl Defaulting for Constraint {
    fn apply_defaults(&mut self) {
        crate::kinds::default_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        or_set(&mut self.spec.enforcement, Enforcement::Required);
    }
}

impl Validate for Constraint {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        validate_object_header::<Self>(&self.api_version, &self.kind, &self.metadata, &mut errors);
        let spec = Path::root("spec");
        if let Some(selector) = &self.spec.selector {
            validate_selector(selector, &spec.child("selector"), &mut errors);
        }
        if self.spec.rules.is_empty() {
            errors.required(&spec.child("rules"), "at least one rule");
        }
        validate_rules(&self.spec.rules, &spec.child("rules"), &mut errors);
        errors.into_result()
    }
}
