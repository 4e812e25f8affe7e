//! Registers this agent's Node: what the machine has (cpus, memory, disk of the data
//! dir's filesystem), its attributes, port range and drivers, and a Ready condition.

use std::path::Path;

use chrono::Utc;
use drover_api::kinds::node::{
    AddressType, DriverInfo, NodeAddress, NodeResources, NodeSpec, NodeStatus,
};
use drover_api::meta::time_from_chrono;
use drover_api::{Condition, ConditionStatus, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Client;

use crate::client::{encode, nodes};
use crate::config::AgentConfig;
use crate::error::Error;

/// What the machine has.
#[derive(Clone, Debug, PartialEq)]
pub struct Capacity {
    /// CPUs.
    pub cpus: f64,
    /// Memory in MiB.
    pub mem_mib: i64,
    /// Disk of the data dir's filesystem, in MiB.
    pub disk_mib: i64,
}

/// Detects cpus, memory (`/proc/meminfo`) and disk (statvfs of `data_dir`).
pub fn detect_capacity(data_dir: &Path) -> Capacity {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .unwrap_or(1.0);
    let mem_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_mem_total_kib(&t))
        .map(|kib| kib / 1024)
        .unwrap_or(0);
    let disk_mib = nix::sys::statvfs::statvfs(data_dir)
        .map(|s| (s.blocks() as u128 * s.fragment_size() as u128 / (1024 * 1024)) as i64)
        .unwrap_or(0);
    Capacity {
        cpus,
        mem_mib,
        disk_mib,
    }
}

fn parse_mem_total_kib(meminfo: &str) -> Option<i64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The Node spec this agent advertises.
pub fn node_spec(config: &AgentConfig) -> NodeSpec {
    NodeSpec {
        attributes: config.attributes.clone(),
        hostname: Some(config.hostname.clone()),
        port_ranges: vec![config.port_range],
        ..Default::default()
    }
}

/// The Node status: capacity (= allocatable), Ready, heartbeat, drivers.
pub fn node_status(config: &AgentConfig, capacity: &Capacity, ready_since: &Time) -> NodeStatus {
    let now = time_from_chrono(Utc::now());
    // `--cpus` / `--mem-mib` override what was detected.
    let resources = NodeResources {
        cpus: config.cpus.unwrap_or(capacity.cpus),
        mem_mib: config.mem_mib.unwrap_or(capacity.mem_mib),
        disk_mib: capacity.disk_mib,
        gpus: 0,
        ports: vec![config.port_range],
    };
    NodeStatus {
        capacity: resources.clone(),
        allocatable: resources,
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: ConditionStatus::True,
            reason: Some("AgentReady".into()),
            message: Some("the agent is running and heartbeating".into()),
            last_transition_time: Some(ready_since.clone()),
            observed_generation: None,
        }],
        addresses: vec![NodeAddress {
            type_: AddressType::Hostname,
            address: config.hostname.clone(),
        }],
        last_heartbeat_time: Some(now),
        drivers: advertised_drivers(),
        agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        daemon_endpoint: config.daemon_endpoint.clone(),
        ..Default::default()
    }
}

/// `process` always; `runc` when it is on `PATH` and the agent runs as root (checked
/// once per process).
fn advertised_drivers() -> Vec<DriverInfo> {
    static RUNC: std::sync::OnceLock<Option<Option<String>>> = std::sync::OnceLock::new();
    let runc =
        RUNC.get_or_init(|| crate::driver::runc::available().then(crate::driver::runc::version));
    let mut drivers = vec![DriverInfo {
        name: "process".into(),
        version: None,
    }];
    if let Some(version) = runc {
        drivers.push(DriverInfo {
            name: "runc".into(),
            version: version.clone(),
        });
    }
    // `docker` when the agent found a daemon at its --docker-host (`driver::docker`).
    if let Some(version) = crate::driver::docker::advertised() {
        drivers.push(DriverInfo {
            name: "docker".into(),
            version,
        });
    }
    drivers
}

/// Creates the Node, or updates the spec fields the agent owns; then writes its status.
/// Returns when the node became Ready (for the heartbeats' condition).
pub async fn register(
    client: &Client,
    config: &AgentConfig,
    capacity: &Capacity,
) -> Result<Time, Error> {
    let api = nodes(client);
    let spec = node_spec(config);
    match api.get_opt(&config.node_name).await? {
        None => {
            let node = Node::new("", &config.node_name, spec);
            let mut obj = encode(&node)?;
            obj.metadata.namespace = None;
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => tracing::info!(node = %config.node_name, "registered a new node"),
                // Another start raced us: fall through to the status update.
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Some(_) => {
            let patch = serde_json::json!({
                "spec": {
                    "attributes": spec.attributes,
                    "hostname": spec.hostname,
                    "portRanges": spec.port_ranges,
                }
            });
            api.patch(
                &config.node_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
            tracing::info!(node = %config.node_name, "node registration refreshed");
        }
    }
    let ready_since = time_from_chrono(Utc::now());
    write_status(client, config, capacity, &ready_since).await?;
    Ok(ready_since)
}

/// The heartbeat: the Node status without its conditions (a merge patch leaves
/// them as they are), so nothing needs reading first. Ready is written at
/// registration ([`write_status`]); when a lost heartbeat made it False, the nodes
/// controller sets it True again as soon as these writes renew the node's lease.
pub async fn write_heartbeat(
    client: &Client,
    config: &AgentConfig,
    capacity: &Capacity,
    ready_since: &Time,
) -> Result<(), Error> {
    let mut status = status_value(config, capacity, ready_since)?;
    if let Some(s) = status.as_object_mut() {
        s.remove("conditions");
    }
    nodes(client)
        .patch_status(
            &config.node_name,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({ "status": status })),
        )
        .await?;
    Ok(())
}

/// Writes the whole Node status (at registration). A merge patch replaces
/// `status.conditions` whole, so the conditions other writers own (the nodes
/// controller's `Maintenance`, …) are read first and written back unchanged; the patch
/// carries the resourceVersion read, and a conflict (someone wrote in between) reads
/// again.
pub async fn write_status(
    client: &Client,
    config: &AgentConfig,
    capacity: &Capacity,
    ready_since: &Time,
) -> Result<(), Error> {
    let api = nodes(client);
    let mut attempt = 0;
    loop {
        let current = api.get(&config.node_name).await?;
        let mut status = status_value(config, capacity, ready_since)?;
        keep_foreign_conditions(&mut status, &current.data["status"]["conditions"]);
        let body = serde_json::json!({
            "metadata": { "resourceVersion": current.metadata.resource_version },
            "status": status,
        });
        match api
            .patch_status(
                &config.node_name,
                &PatchParams::default(),
                &Patch::Merge(&body),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 5 => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// [`node_status`] as JSON, to patch with.
fn status_value(
    config: &AgentConfig,
    capacity: &Capacity,
    ready_since: &Time,
) -> Result<serde_json::Value, Error> {
    serde_json::to_value(node_status(config, capacity, ready_since)).map_err(|source| {
        Error::Decode {
            what: "the Node status".into(),
            source,
        }
    })
}

/// Appends to `status.conditions` the conditions in `current` (the stored Node's) of
/// types the agent does not write.
fn keep_foreign_conditions(status: &mut serde_json::Value, current: &serde_json::Value) {
    let Some(conditions) = status
        .get_mut("conditions")
        .and_then(serde_json::Value::as_array_mut)
    else {
        return;
    };
    let type_of = |c: &serde_json::Value| c.get("type").and_then(|t| t.as_str()).map(String::from);
    let ours: Vec<Option<String>> = conditions.iter().map(type_of).collect();
    let foreign = current
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| !ours.contains(&type_of(c)))
        .cloned();
    conditions.extend(foreign.collect::<Vec<_>>());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_keeps_conditions_it_does_not_write() {
        let mut status = serde_json::json!({
            "conditions": [{"type": "Ready", "status": "True"}]
        });
        let stored = serde_json::json!([
            {"type": "Ready", "status": "False", "reason": "NodeHeartbeatLost"},
            {"type": "Maintenance", "status": "True", "reason": "MaintenanceWindow"}
        ]);
        keep_foreign_conditions(&mut status, &stored);
        assert_eq!(
            status["conditions"],
            serde_json::json!([
                {"type": "Ready", "status": "True"},
                {"type": "Maintenance", "status": "True", "reason": "MaintenanceWindow"}
            ])
        );
        keep_foreign_conditions(&mut status, &serde_json::Value::Null);
        assert_eq!(status["conditions"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn mem_total_is_read_from_meminfo() {
        let text = "MemTotal:       16318480 kB\nMemFree:  1 kB\n";
        assert_eq!(parse_mem_total_kib(text), Some(16318480));
        assert_eq!(parse_mem_total_kib("nothing"), None);
    }

    #[test]
    fn capacity_is_detected_on_this_machine() {
        let c = detect_capacity(Path::new("/"));
        assert!(c.cpus >= 1.0);
        assert!(c.mem_mib > 0);
        assert!(c.disk_mib > 0);
    }

    #[test]
    fn status_is_ready_with_a_heartbeat_and_the_process_driver() {
        let mut config = AgentConfig::new("n1", "h1", "/tmp".into());
        config.attributes.insert("rack".into(), "r1".into());
        let cap = Capacity {
            cpus: 2.0,
            mem_mib: 1024,
            disk_mib: 2048,
        };
        let s = node_status(&config, &cap, &time_from_chrono(Utc::now()));
        assert_eq!(s.conditions[0].status, ConditionStatus::True);
        assert!(s.last_heartbeat_time.is_some());
        assert_eq!(s.drivers[0].name, "process");
        assert_eq!(s.capacity.ports[0].begin, 31000);
        let spec = node_spec(&config);
        assert_eq!(spec.attributes.get("rack").map(String::as_str), Some("r1"));
        assert_eq!(spec.hostname.as_deref(), Some("h1"));
        assert_eq!((s.allocatable.cpus, s.allocatable.mem_mib), (2.0, 1024));
    }

    #[test]
    fn cpus_and_memory_can_be_overridden() {
        let mut config = AgentConfig::new("n1", "h1", "/tmp".into());
        config.cpus = Some(4.0);
        config.mem_mib = Some(4096);
        let cap = Capacity {
            cpus: 2.0,
            mem_mib: 1024,
            disk_mib: 2048,
        };
        let s = node_status(&config, &cap, &time_from_chrono(Utc::now()));
        assert_eq!((s.capacity.cpus, s.capacity.mem_mib), (4.0, 4096));
        assert_eq!((s.allocatable.cpus, s.allocatable.mem_mib), (4.0, 4096));
        assert_eq!(s.allocatable.disk_mib, 2048);
    }
}
