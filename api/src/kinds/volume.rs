//! Volume: a persistent local volume (Mesos persistent volume / Marathon resident app).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults::{or_set, Defaulting};
use crate::kinds::{kind_constructor, metadata_accessors};
use crate::meta::{Condition, ObjectMeta};
use crate::resource::{validate_object_header, DroverKind, PrinterColumn, AGE_COLUMN};
use crate::validation::{Path, Validate, ValidationErrors};

/// A persistent local volume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// `drover.dev/v1alpha1`.
    #[serde(default)]
    pub api_version: String,
    /// `Volume`.
    #[serde(default)]
    pub kind: String,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state.
    #[serde(default)]
    pub spec: VolumeSpec,
    /// Where it lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<VolumeStatus>,
}

/// What happens to the data when the Volume is released.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReclaimPolicy {
    /// Keep the data and the reservation (the default: data is never lost by accident).
    #[default]
    Retain,
    /// Delete the data and free the disk.
    Delete,
}

/// Desired state of a Volume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSpec {
    /// Size in MiB reserved on the node's disk.
    #[serde(rename = "sizeMiB", default)]
    pub size_mib: i64,
    /// Retain (default) or Delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclaim_policy: Option<ReclaimPolicy>,
    /// The App this volume was created for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_name: Option<String>,
    /// The mount name in the App.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_name: Option<String>,
    /// The instance index it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<i32>,
}

/// Phase of a Volume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VolumePhase {
    /// Not yet reserved on a node.
    #[default]
    Pending,
    /// Reserved on a node and bound to an instance.
    Bound,
    /// Its instance is gone; data kept (Retain).
    Released,
    /// Something went wrong.
    Failed,
}

/// Observed state of a Volume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Phase.
    #[serde(default)]
    pub phase: VolumePhase,
    /// Node holding the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Directory on that node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Instance (Task name or `<app>-<index>`) using it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_instance: Option<String>,
    /// `Bound`, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

kind_constructor!(Volume, VolumeSpec);

impl DroverKind for Volume {
    const KIND: &'static str = "Volume";
    const PLURAL: &'static str = "volumes";
    const SINGULAR: &'static str = "volume";
    const SHORT_NAMES: &'static [&'static str] = &["vol"];
    const CATEGORIES: &'static [&'static str] = &["drover"];
    const NAMESPACED: bool = true;
    const PRINTER_COLUMNS: &'static [PrinterColumn] = &[
        PrinterColumn {
            name: "Size",
            type_: "integer",
            json_path: ".spec.sizeMiB",
            description: "Size in MiB",
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
            name: "Node",
            type_: "string",
            json_path: ".status.nodeName",
            description: "Node holding the data",
            priority: 0,
        },
        PrinterColumn {
            name: "Instance",
            type_: "string",
            json_path: ".status.boundInstance",
            description: "Instance using it",
            priority: 0,
        },
        AGE_COLUMN,
    ];
    metadata_accessors!();
}

impl Defaulting for Volume {
    fn apply_defaults(&mut self) {
        crate::kinds::default_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        or_set(&mut self.spec.reclaim_policy, ReclaimPolicy::Retain);
    }
}

impl Validate for Volume {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        validate_object_header::<Self>(&self.api_version, &self.kind, &self.metadata, &mut errors);
        let spec = Path::root("spec");
        if self.spec.size_mib <= 0 {
            errors.invalid(&spec.child("sizeMiB"), "must be > 0");
        }
        if self.spec.instance.is_some_and(|i| i < 0) {
            errors.invalid(&spec.child("instance"), "must be >= 0");
        }
        errors.into_result()
    }
}
