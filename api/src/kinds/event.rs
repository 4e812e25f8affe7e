//! Event: what happened to an object and why. Flat like a core `v1` Event (no spec or
//! status), so it converts one-to-one for `kubectl describe`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults::Defaulting;
use crate::kinds::metadata_accessors;
use crate::meta::{ObjectMeta, ObjectRef};
use crate::resource::{validate_object_header, DroverKind, PrinterColumn, AGE_COLUMN};
use crate::validation::{Path, Validate, ValidationErrors};

/// Something that happened to an object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// `drover.dev/v1alpha1`.
    #[serde(default)]
    pub api_version: String,
    /// `Event`.
    #[serde(default)]
    pub kind: String,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The object it is about.
    #[serde(default)]
    pub involved_object: ObjectRef,
    /// One-word CamelCase reason (`FailedScheduling`, `Killing`, `Unhealthy`).
    #[serde(default)]
    pub reason: String,
    /// Human-readable detail ("0/12 nodes: 7 insufficient memMiB, …").
    #[serde(default)]
    pub message: String,
    /// `Normal` or `Warning`.
    #[serde(rename = "type", default)]
    pub type_: EventType,
    /// How many times it happened (repeats are folded into one Event).
    #[serde(default)]
    pub count: i32,
    /// First time it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_timestamp: Option<Time>,
    /// Last time it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_timestamp: Option<Time>,
    /// Who reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<EventSource>,
}

/// Severity of an Event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum EventType {
    /// Informational.
    #[default]
    Normal,
    /// Needs attention.
    Warning,
}

/// Reporter of an Event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventSource {
    /// Component (`drover-controller`, `drover-agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// Host it ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl Event {
    /// An Event about `involved` in `namespace`.
    pub fn new(
        namespace: &str,
        name: &str,
        involved: ObjectRef,
        reason: &str,
        message: &str,
    ) -> Self {
        Event {
            api_version: Self::API_VERSION.to_string(),
            kind: Self::KIND.to_string(),
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                ..Default::default()
            },
            involved_object: involved,
            reason: reason.to_string(),
            message: message.to_string(),
            count: 1,
            ..Default::default()
        }
    }
}

impl DroverKind for Event {
    const KIND: &'static str = "Event";
    const PLURAL: &'static str = "events";
    const SINGULAR: &'static str = "event";
    // `ev` is kubectl's short name for core events.
    const SHORT_NAMES: &'static [&'static str] = &["devent"];
    const CATEGORIES: &'static [&'static str] = &["drover"];
    const NAMESPACED: bool = true;
    const HAS_STATUS: bool = false;
    const PRINTER_COLUMNS: &'static [PrinterColumn] = &[
        PrinterColumn {
            name: "Type",
            type_: "string",
            json_path: ".type",
            description: "Normal or Warning",
            priority: 0,
        },
        PrinterColumn {
            name: "Reason",
            type_: "string",
            json_path: ".reason",
            description: "Why",
            priority: 0,
        },
        PrinterColumn {
            name: "Object",
            type_: "string",
            json_path: ".involvedObject.name",
            description: "The object it is about",
            priority: 0,
        },
        PrinterColumn {
            name: "Count",
            type_: "integer",
            json_path: ".count",
            description: "How many times",
            priority: 0,
        },
        PrinterColumn {
            name: "Last Seen",
            type_: "date",
            json_path: ".lastTimestamp",
            description: "Last time it happened",
            priority: 0,
        },
        AGE_COLUMN,
        PrinterColumn {
            name: "Message",
            type_: "string",
            json_path: ".message",
            description: "Detail",
            priority: 1,
        },
    ];
    metadata_accessors!();
}

impl Defaulting for Event {
    fn apply_defaults(&mut self) {
        crate::kinds::default_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        if self.count == 0 {
            self.count = 1;
        }
    }
}

impl Validate for Event {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        validate_object_header::<Self>(&self.api_version, &self.kind, &self.metadata, &mut errors);
        let obj = Path::root("involvedObject");
        if self.involved_object.kind.is_empty() {
            errors.required(&obj.child("kind"), "");
        }
        if self.involved_object.name.is_empty() {
            errors.required(&obj.child("name"), "");
        }
        if self.reason.is_empty() {
            errors.required(&Path::root("reason"), "");
        }
        if self.count < 1 {
            errors.invalid(&Path::root("count"), "must be >= 1");
        }
        errors.into_result()
    }
}
