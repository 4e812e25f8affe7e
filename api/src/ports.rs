//! Named ports of an App or Job template, with dynamic host ports (hostPort 0).

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::{check_label, Path, ValidationErrors};

/// Transport protocol of a port.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// One port the task listens on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortSpec {
    /// Name (DNS-1123 label), exported as `PORT_<NAME>` and usable as `portName` in checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port inside the container's network namespace, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<i32>,
    /// Port on the node; 0 (the default) = pick one from the node's range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i32>,
    /// `tcp` (default) or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

impl PortSpec {
    /// hostPort 0 (dynamic), protocol tcp.
    pub fn apply_defaults(&mut self) {
        crate::defaults::or_set(&mut self.host_port, 0);
        crate::defaults::or_set(&mut self.protocol, Protocol::Tcp);
    }
}

/// Checks a list of ports at `path`: names are labels and unique, numbers in range,
/// fixed host ports unique per protocol.
pub fn validate_ports(ports: &[PortSpec], path: &Path, errors: &mut ValidationErrors) {
    let mut names = BTreeSet::new();
    let mut host_ports = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        if let Some(name) = &port.name {
            check_label(errors, &p.child("name"), name);
            if !names.insert(name.as_str()) {
                errors.duplicate(&p.child("name"), name);
            }
        }
        if let Some(cp) = port.container_port {
            if !(1..=65535).contains(&cp) {
                errors.invalid(&p.child("containerPort"), "must be between 1 and 65535");
            }
        }
        if let Some(hp) = port.host_port {
            if !(0..=65535).contains(&hp) {
                errors.invalid(
                    &p.child("hostPort"),
                    "must be between 0 and 65535 (0 = dynamic)",
                );
            } else if hp != 0 && !host_ports.insert((hp, port.protocol.unwrap_or_default())) {
                errors.duplicate(&p.child("hostPort"), &hp.to_string());
            }
        }
    }
}
