//! Node: one agent, its schedulability, maintenance windows, attributes and capacity.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults::{self, Defaulting};
use crate::kinds::{kind_constructor, metadata_accessors};
use crate::meta::{time_to_chrono, Condition, ObjectMeta};
use crate::resource::{validate_object_header, DroverKind, PrinterColumn, AGE_COLUMN};
use crate::validation::{Path, Validate, ValidationErrors};

/// One agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// `drover.dev/v1alpha1`.
    #[serde(default)]
    pub api_version: String,
    /// `Node`.
    #[serde(default)]
    pub kind: String,
    /// Standard object metadata (cluster-scoped).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state, set by the agent's config and by operators.
    #[serde(default)]
    pub spec: NodeSpec,
    /// What the agent reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
}

/// An inclusive range of host ports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortRange {
    /// First port.
    pub begin: i32,
    /// Last port (inclusive).
    pub end: i32,
}

/// A window in which the node is drained and offers nothing (Mesos maintenance).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceWindow {
    /// Start of the window.
    pub start: Time,
    /// End of the window.
    pub end: Time,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Desired state of a Node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    /// Cordoned: no new tasks (running ones stay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unschedulable: Option<bool>,
    /// Maintenance windows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintenance: Vec<MaintenanceWindow>,
    /// Attributes for constraints (`rack: r1`, `zone: a`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Host name (the `hostname` constraint field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Host ports the node offers (default 31000–32000).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_ranges: Vec<PortRange>,
}

/// Resources of a node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeResources {
    /// CPUs.
    #[serde(default)]
    pub cpus: f64,
    /// Memory in MiB.
    #[serde(rename = "memMiB", default)]
    pub mem_mib: i64,
    /// Disk in MiB.
    #[serde(rename = "diskMiB", default)]
    pub disk_mib: i64,
    /// GPUs.
    #[serde(default)]
    pub gpus: i32,
    /// Host port ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRange>,
}

/// Kind of node address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AddressType {
    /// Host name.
    Hostname,
    /// Address reachable inside the cluster.
    InternalIP,
    /// Address reachable from outside.
    ExternalIP,
}

/// One address of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeAddress {
    /// Kind of address.
    #[serde(rename = "type")]
    pub type_: AddressType,
    /// The address.
    pub address: String,
}

/// A task driver the agent offers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriverInfo {
    /// `process`, `runc` or `docker`.
    pub name: String,
    /// Version of the runtime, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// What the agent reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Everything the node has.
    #[serde(default)]
    pub capacity: NodeResources,
    /// What tasks may use (capacity minus reserved).
    #[serde(default)]
    pub allocatable: NodeResources,
    /// `Ready`, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    /// Last heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<Time>,
    /// Drivers available.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drivers: Vec<DriverInfo>,
    /// Agent version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Where the agent serves task logs (`http://host:port`); the API server proxies
    /// `tasks/{name}/log` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon_endpoint: Option<String>,
}

kind_constructor!(Node, NodeSpec);

impl DroverKind for Node {
    const KIND: &'static str = "Node";
    const PLURAL: &'static str = "nodes";
    const SINGULAR: &'static str = "node";
    const SHORT_NAMES: &'static [&'static str] = &["dnode"];
    const CATEGORIES: &'static [&'static str] = &["drover"];
    const NAMESPACED: bool = false;
    const PRINTER_COLUMNS: &'static [PrinterColumn] = &[
        PrinterColumn {
            name: "Ready",
            type_: "string",
            json_path: ".status.conditions[?(@.type==\"Ready\")].status",
            description: "Ready condition",
            priority: 0,
        },
        PrinterColumn {
            name: "CPUs",
            type_: "number",
            json_path: ".status.capacity.cpus",
            description: "CPU capacity",
            priority: 0,
        },
        PrinterColumn {
            name: "Mem",
            type_: "integer",
            json_path: ".status.capacity.memMiB",
            description: "Memory capacity in MiB",
            priority: 0,
        },
        PrinterColumn {
            name: "Maintenance",
            type_: "string",
            json_path: ".status.conditions[?(@.type==\"Maintenance\")].message",
            description: "Open maintenance window: its reason and end",
            priority: 0,
        },
        AGE_COLUMN,
        PrinterColumn {
            name: "Unschedulable",
            type_: "boolean",
            json_path: ".spec.unschedulable",
            description: "Cordoned",
            priority: 1,
        },
    ];
    metadata_accessors!();
}

impl Defaulting for Node {
    fn apply_defaults(&mut self) {
        crate::kinds::default_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        if self.spec.port_ranges.is_empty() {
            self.spec.port_ranges = vec![PortRange {
                begin: defaults::NODE_PORT_RANGE_BEGIN,
                end: defaults::NODE_PORT_RANGE_END,
            }];
        }
        crate::defaults::or_set(&mut self.spec.unschedulable, false);
    }
}

fn validate_ranges(ranges: &[PortRange], path: &Path, errors: &mut ValidationErrors) {
    let mut sorted: Vec<(usize, &PortRange)> = ranges.iter().enumerate().collect();
    for (i, r) in &sorted {
        if !(1..=65535).contains(&r.begin) || !(1..=65535).contains(&r.end) {
            errors.invalid(&path.index(*i), "ports must be between 1 and 65535");
        } else if r.begin > r.end {
            errors.invalid(&path.index(*i).child("end"), "must be >= begin");
        }
    }
    sorted.sort_by_key(|(_, r)| r.begin);
    for pair in sorted.windows(2) {
        if let [(_, a), (j, b)] = pair {
            if b.begin <= a.end {
                errors.invalid(&path.index(*j), "overlaps another range");
            }
        }
    }
}

impl Validate for Node {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        validate_object_header::<Self>(&self.api_version, &self.kind, &self.metadata, &mut errors);
        let spec = Path::root("spec");
        validate_ranges(
            &self.spec.port_ranges,
            &spec.child("portRanges"),
            &mut errors,
        );
        for (i, w) in self.spec.maintenance.iter().enumerate() {
            if time_to_chrono(&w.end) <= time_to_chrono(&w.start) {
                errors.invalid(
                    &spec.child("maintenance").index(i).child("end"),
                    "must be after start",
                );
            }
        }
        for key in self.spec.attributes.keys() {
            if key.is_empty() || key == "hostname" {
                errors.invalid(
                    &spec.child("attributes").key(key),
                    "attribute names must be non-empty and not \"hostname\"",
                );
            }
        }
        if let Some(status) = &self.status {
            let st = Path::root("status");
            validate_ranges(
                &status.capacity.ports,
                &st.child("capacity").child("ports"),
                &mut errors,
            );
            validate_ranges(
                &status.allocatable.ports,
                &st.child("allocatable").child("ports"),
                &mut errors,
            );
        }
        errors.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_port_range_is_31000_to_32000() {
        let mut n = Node::new("", "node-1", NodeSpec::default());
        n.apply_defaults();
        assert_eq!(
            n.spec.port_ranges,
            vec![PortRange {
                begin: 31000,
                end: 32000
            }]
        );
        assert_eq!(n.spec.unschedulable, Some(false));
        assert_eq!(n.metadata.namespace, None);
        assert_eq!(n.validate(), Ok(()));
    }

    #[test]
    fn overlapping_and_inverted_ranges_are_reported() {
        let mut n = Node::new("", "node-1", NodeSpec::default());
        n.spec.port_ranges = vec![
            PortRange {
                begin: 31000,
                end: 32000,
            },
            PortRange {
                begin: 31500,
                end: 31600,
            },
            PortRange {
                begin: 40000,
                end: 39000,
            },
        ];
        let e = n.validate().err().unwrap_or_default();
        assert_eq!(
            e.to_string(),
            "spec.portRanges[2].end: must be >= begin\nspec.portRanges[1]: overlaps another range"
        );
    }
}
