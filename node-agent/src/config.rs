//! What an agent is told at start: which node it is, where it keeps its state, and
//! what it advertises.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use drover_api::kinds::node::PortRange;

/// The agent's configuration (from `drover agent` flags).
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The Node this agent registers and serves (its token is bound to it).
    pub node_name: String,
    /// Host name advertised in the Node and given to tasks as `HOST`.
    pub hostname: String,
    /// Where task sandboxes and checkpoints live.
    pub data_dir: PathBuf,
    /// Node attributes for constraints.
    pub attributes: BTreeMap<String, String>,
    /// Host ports the node offers.
    pub port_range: PortRange,
    /// How often the Node status is refreshed.
    pub heartbeat_interval: Duration,
    /// Where the agent serves task logs (`http://host:port`), advertised in the Node
    /// status; set once the log server listens.
    pub daemon_endpoint: Option<String>,
    /// The executable drivers run as a task's shim (`<shim_exe> shim --spec …`):
    /// by default this very executable, `drover`.
    pub shim_exe: PathBuf,
    /// CPUs to advertise instead of the detected ones (`--cpus`): several agents on one
    /// machine can then form a small cluster of known size.
    pub cpus: Option<f64>,
    /// Memory in MiB to advertise instead of the detected memory (`--mem-mib`).
    pub mem_mib: Option<i64>,
}

impl AgentConfig {
    /// A configuration with the defaults: port range 31000–32000, heartbeat every 5 s.
    pub fn new(
        node_name: impl Into<String>,
        hostname: impl Into<String>,
        data_dir: PathBuf,
    ) -> Self {
        AgentConfig {
            node_name: node_name.into(),
            hostname: hostname.into(),
            data_dir,
            attributes: BTreeMap::new(),
            port_range: PortRange {
                begin: drover_api::defaults::NODE_PORT_RANGE_BEGIN,
                end: drover_api::defaults::NODE_PORT_RANGE_END,
            },
            heartbeat_interval: Duration::from_secs(5),
            daemon_endpoint: None,
            shim_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("drover")),
            cpus: None,
            mem_mib: None,
        }
    }

    /// Where per-task directories live.
    pub fn tasks_dir(&self) -> PathBuf {
        self.data_dir.join("tasks")
    }
}

/// The host name of this machine (`gethostname`), or `localhost` if it has none.
pub fn detect_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Parses `k=v` into a pair.
pub fn parse_attribute(s: &str) -> Option<(String, String)> {
    let (k, v) = s.split_once('=')?;
    let k = k.trim();
    if k.is_empty() {
        return None;
    }
    Some((k.to_string(), v.trim().to_string()))
}
