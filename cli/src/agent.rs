//! `drover agent`: the node agent — registers this machine as a Node, runs the Tasks
//! bound to it with the process driver, and reports their status.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use drover_agent::client::{connect, Connection};
use drover_agent::config::{detect_hostname, parse_attribute};
use drover_agent::driver::process::ProcessDriver;
use drover_agent::{Agent, AgentConfig};

#[derive(clap::Args)]
pub struct AgentArgs {
    /// API server URL (with --token); or use --kubeconfig.
    #[arg(long, requires = "token", conflicts_with = "kubeconfig")]
    server: Option<String>,
    /// Bearer token of this node's agent (role `agent`).
    #[arg(long, env = "DROVER_AGENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM file of the CA that signed the server's certificate.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Kubeconfig to connect with instead of --server/--token.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Where task sandboxes and checkpoints live.
    #[arg(long)]
    data_dir: PathBuf,
    /// Node attribute for constraints, `k=v` (repeatable).
    #[arg(long = "attribute", value_name = "K=V")]
    attributes: Vec<String>,
    /// Host name (default: this machine's).
    #[arg(long)]
    hostname: Option<String>,
    /// Node name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// Where to serve task logs for the API server (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Host ports this node offers to tasks, `BEGIN-END` (several agents on one
    /// machine need ranges of their own).
    #[arg(long, value_name = "BEGIN-END", default_value = "31000-32000", value_parser = parse_port_range)]
    port_range: (i32, i32),
    /// Seconds between heartbeats (keep it well under the server's node lease).
    #[arg(long, default_value_t = 5.0)]
    heartbeat_seconds: f64,
    /// CPUs to advertise instead of the detected ones (e.g. to build a small test
    /// cluster of several agents on one machine).
    #[arg(long)]
    cpus: Option<f64>,
    /// Memory in MiB to advertise instead of the detected memory.
    #[arg(long)]
    mem_mib: Option<i64>,
    /// The Docker daemon for the `docker` driver, `unix:///PATH`: advertised only when
    /// it answers `/_ping` at start.
    #[arg(long, value_name = "URL", default_value = drover_agent::driver::docker::DEFAULT_HOST)]
    docker_host: String,
    /// A registry (`HOST:PORT`, or `HOST` for any port) pulled from over plain HTTP
    /// (repeatable); loopback registries always are.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registries: Vec<String>,
    /// A docker config.json with basic credentials per registry (`auths`).
    #[arg(long, value_name = "FILE")]
    registry_auth: Option<PathBuf>,
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let connection = match (args.server, args.token, args.kubeconfig) {
        (Some(server), Some(token), _) => Connection::Token {
            server,
            ca_file: args.ca_file,
            token,
        },
        (None, _, Some(path)) => Connection::Kubeconfig(path),
        _ => anyhow::bail!("give --server and --token, or --kubeconfig"),
    };
    let hostname = args.hostname.unwrap_or_else(detect_hostname);
    let node = args.node_name.unwrap_or_else(|| hostname.clone());
    let mut config = AgentConfig::new(node, hostname, args.data_dir);
    if !(args.heartbeat_seconds.is_finite() && args.heartbeat_seconds > 0.0) {
        anyhow::bail!("--heartbeat-seconds must be a positive number of seconds");
    }
    config.heartbeat_interval = std::time::Duration::from_secs_f64(args.heartbeat_seconds);
    if let Some(cpus) = args.cpus {
        if !(cpus.is_finite() && cpus > 0.0) {
            anyhow::bail!("--cpus must be a positive number, not {cpus}");
        }
        config.cpus = Some(cpus);
    }
    if let Some(mem) = args.mem_mib {
        if mem <= 0 {
            anyhow::bail!("--mem-mib must be a positive number of MiB, not {mem}");
        }
        config.mem_mib = Some(mem);
    }
    config.port_range.begin = args.port_range.0;
    config.port_range.end = args.port_range.1;
    for a in &args.attributes {
        let (k, v) =
            parse_attribute(a).with_context(|| format!("--attribute {a:?}: expected k=v"))?;
        config.attributes.insert(k, v);
    }
    let registries = drover_agent::driver::oci::registry::RegistrySettings {
        insecure: args.insecure_registries,
        auth_file: args.registry_auth,
    };
    registries.validate().map_err(anyhow::Error::msg)?;
    drover_agent::driver::oci::registry::configure(registries);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let stop = crate::signals::stop_signal().context("installing signal handlers")?;
        let client = connect(&connection)
            .await
            .context("connecting to the API server")?;
        let node = config.node_name.clone();
        let drivers = drover_agent::driver::runc::agent_drivers(
            Arc::new(ProcessDriver::new(config.shim_exe.clone())),
            &config.data_dir,
        );
        let drivers = drover_agent::driver::docker::with_docker(drivers, &args.docker_host).await;
        let logs = drover_agent::logserver::LogAuth::for_connection(&connection, client.clone());
        let agent = Agent::new(config, client, drivers).serve_logs(args.listen, logs);
        println!("drover agent: serving node {node}");
        agent
            .run(stop)
            .await
            .with_context(|| format!("agent for node {node}"))
    })
}

/// `31000-32000` → (31000, 32000): two ports in 1..=65535, the first not above the second.
pub(crate) fn parse_port_range(text: &str) -> Result<(i32, i32), String> {
    let bad = || format!("{text:?} is not a port range: expected BEGIN-END, e.g. 31000-32000");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((i32::from(a), i32::from(b)))
}

#[cfg(test)]
mod tests {
    use super::parse_port_range;

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("31000-32000"), Ok((31000, 32000)));
        assert_eq!(parse_port_range("80-80"), Ok((80, 80)));
        for bad in ["", "31000", "32000-31000", "0-10", "1-70000", "a-b"] {
            assert!(parse_port_range(bad).is_err(), "{bad:?} accepted");
        }
    }
}
